//! Opening `state.sqlite` (the one place that connects to it), catching up from the anchored
//! checkpoint in batches, setting a file aside, and the digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::ProjectionError;
use super::apply::{Batch, sql_offset};
use super::schema::{DDL, DIGEST_TABLES, SCHEMA_VERSION};
use crate::event::upcast;
use crate::journal::{Anchor, AnchorCheck, Journal, StartAt};

/// The projection's file name in the data directory.
pub const STATE_FILE: &str = "state.sqlite";

/// Records applied per transaction unless [`Projection::set_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 10_000;

/// The checkpoint row of the projection itself.
pub(crate) const CHECKPOINT: &str = "projection";

/// What a catch-up did (so far, when reported per batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CatchUp {
    /// Typed events applied.
    pub applied: u64,
    /// Records skipped because they are not typed events (they still advance the checkpoint).
    pub skipped: u64,
    /// The checkpoint: the next offset to apply.
    pub next_offset: u64,
}

/// How [`Projection::open_anchored`] found the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// It matched the journal (new files match an empty prefix).
    Current,
    /// It could not be used (unreadable, another schema version, or anchored to records the
    /// journal does not hold): set aside and started again, empty.
    Rebuilt {
        /// Why.
        reason: String,
        /// Where the old file was kept (`None` if there was no file to keep).
        set_aside: Option<PathBuf>,
    },
}

/// An open `state.sqlite`; see the module documentation of [`crate::projection`].
#[derive(Debug)]
pub struct Projection {
    pub(crate) db: Connection,
    path: PathBuf,
    batch_size: usize,
    /// The anchor this handle last wrote or checked: a checkpoint row that differs from it was
    /// changed by someone else and is checked against the journal again before use.
    trusted: Option<Anchor>,
}

/// Opens `path` with the connection settings every user of the file shares: WAL, `NORMAL`
/// synchronous (see the module docs of [`crate::projection`]), a busy timeout.
pub(crate) fn connect(path: &Path, read_only: bool) -> Result<Connection, ProjectionError> {
    let db = if read_only {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?
    } else {
        Connection::open(path)?
    };
    db.busy_timeout(Duration::from_secs(30))?;
    if !read_only {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
    }
    db.pragma_update(None, "cache_size", -65_536)?;
    db.pragma_update(None, "temp_store", "MEMORY")?;
    db.set_prepared_statement_cache_capacity(64);
    let found: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found != 0 && found != SCHEMA_VERSION {
        return Err(ProjectionError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    if read_only {
        if found == 0 {
            return Err(ProjectionError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
    } else {
        db.execute_batch(&format!(
            "BEGIN IMMEDIATE; {DDL}
             INSERT OR IGNORE INTO checkpoints (name, next_offset, chain)
                 VALUES ('{CHECKPOINT}', 0, '{}');
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
            Anchor::GENESIS.chain_hex()
        ))?;
    }
    Ok(db)
}

/// Creates `data_dir` if needed and connects to its `state.sqlite` for writing.
pub(crate) fn connect_in(data_dir: &Path) -> Result<(Connection, PathBuf), ProjectionError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ProjectionError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join(STATE_FILE);
    Ok((connect(&path, false)?, path))
}

fn offset_from_sql(value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt {
        what: "offset",
        value: value.to_string(),
    })
}

/// Reads the anchored checkpoint `name`, if it exists.
pub(crate) fn read_anchor(db: &Connection, name: &str) -> Result<Option<Anchor>, ProjectionError> {
    let row: Option<(i64, String)> = db
        .prepare_cached("SELECT next_offset, chain FROM checkpoints WHERE name = ?1")?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(next, chain)| {
        let next = offset_from_sql(next)?;
        Anchor::from_hex(next, &chain).ok_or_else(|| ProjectionError::Corrupt {
            what: "chain hash",
            value: chain,
        })
    })
    .transpose()
}

/// Writes the anchored checkpoint `name` (in the caller's transaction, if any).
pub(crate) fn write_anchor(
    db: &Connection,
    name: &str,
    anchor: &Anchor,
) -> Result<(), ProjectionError> {
    db.prepare_cached(
        "INSERT INTO checkpoints (name, next_offset, chain) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET next_offset = excluded.next_offset,
             chain = excluded.chain",
    )?
    .execute(params![
        name,
        sql_offset(anchor.next_offset),
        anchor.chain_hex()
    ])?;
    Ok(())
}

/// Describes an anchor that does not match the journal.
fn mismatch(anchor: &Anchor, check: AnchorCheck) -> Option<String> {
    match check {
        AnchorCheck::Matches => None,
        AnchorCheck::BeyondEnd { journal_next } => Some(format!(
            "it reflects the journal up to offset {} but the journal ends at {journal_next} \
             (records were cut, or it belongs to another journal)",
            anchor.next_offset
        )),
        AnchorCheck::Diverged { .. } => Some(format!(
            "the journal holds other records before offset {} than it reflects (a repair, or \
             another journal)",
            anchor.next_offset
        )),
    }
}

impl Projection {
    /// Opens (creating if needed) `<data_dir>/state.sqlite` as it is, without checking it
    /// against a journal (see [`Projection::open_anchored`] for a writer's open).
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Projection, ProjectionError> {
        let (db, path) = connect_in(data_dir.as_ref())?;
        Ok(Projection {
            db,
            path,
            batch_size: DEFAULT_BATCH_SIZE,
            trusted: None,
        })
    }

    /// Opens `<data_dir>/state.sqlite` for reading only (never writes, never creates it);
    /// `Ok(None)` if there is none. Beside a live writer, this is how readers see its views.
    pub fn open_read(data_dir: impl AsRef<Path>) -> Result<Option<Projection>, ProjectionError> {
        let path = data_dir.as_ref().join(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Projection {
            db: connect(&path, true)?,
            path,
            batch_size: DEFAULT_BATCH_SIZE,
            trusted: None,
        }))
    }

    /// A writer's open: the file must be readable, of this schema version, and anchored to a
    /// prefix of `journal`. A file that is not is set aside (renamed, never deleted, and named
    /// in the result) and an empty one takes its place, keeping the consumers' checkpoints of
    /// the old file when it was readable (each is checked against the journal when its consumer
    /// opens). The caller then catches it up.
    pub fn open_anchored(
        data_dir: impl AsRef<Path>,
        journal: &Journal,
    ) -> Result<(Projection, Opened), ProjectionError> {
        let data_dir = data_dir.as_ref();
        let reason = match Projection::open(data_dir) {
            Ok(mut projection) => match projection.check(journal) {
                Ok(None) => return Ok((projection, Opened::Current)),
                Ok(Some(reason)) => reason,
                Err(ProjectionError::Journal(e)) => return Err(ProjectionError::Journal(e)),
                Err(e) => e.to_string(),
            },
            Err(e @ ProjectionError::Io { .. }) => return Err(e),
            Err(e) => e.to_string(),
        };
        let kept = Projection::consumer_rows(data_dir);
        let set_aside = Projection::set_aside(data_dir)?;
        let projection = Projection::open(data_dir)?;
        for (name, anchor, current) in kept {
            if current {
                write_anchor(&projection.db, &name, &anchor)?;
            } else {
                projection
                    .db
                    .prepare_cached(
                        "INSERT OR REPLACE INTO checkpoint_history (name, next_offset, chain) \
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        name,
                        sql_offset(anchor.next_offset),
                        anchor.chain_hex()
                    ])?;
            }
        }
        Ok((projection, Opened::Rebuilt { reason, set_aside }))
    }

    /// The consumers' checkpoints and their histories in the file in `data_dir` (best effort:
    /// none if unreadable).
    fn consumer_rows(data_dir: &Path) -> Vec<(String, Anchor, bool)> {
        let path = data_dir.join(STATE_FILE);
        let Ok(db) = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
            return Vec::new();
        };
        let read = |table: &str, current: bool| {
            db.prepare(&format!(
                "SELECT name, next_offset, chain FROM {table} WHERE name != ?1"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([CHECKPOINT], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        current,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap_or_default()
        };
        let mut rows = read("checkpoints", true);
        rows.extend(read("checkpoint_history", false));
        rows.into_iter()
            .filter_map(|(name, next, chain, current)| {
                Some((
                    name,
                    Anchor::from_hex(u64::try_from(next).ok()?, &chain)?,
                    current,
                ))
            })
            .collect()
    }

    /// Renames `<data_dir>/state.sqlite` (and its `-wal` and `-shm`) to
    /// `state.sqlite.set-aside-<time>`; the new name, or `None` if there was no file.
    pub fn set_aside(data_dir: impl AsRef<Path>) -> Result<Option<PathBuf>, ProjectionError> {
        let data_dir = data_dir.as_ref();
        let path = data_dir.join(STATE_FILE);
        if !path.exists() {
            Projection::delete(data_dir)?;
            return Ok(None);
        }
        let stamp = crate::timestamp::now_us();
        let target = data_dir.join(format!("{STATE_FILE}.set-aside-{stamp}"));
        for suffix in ["", "-wal", "-shm"] {
            let from = data_dir.join(format!("{STATE_FILE}{suffix}"));
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ProjectionError::Io { path: from, source }),
            }
        }
        Ok(Some(target))
    }

    /// Deletes `<data_dir>/state.sqlite` and its `-wal` and `-shm` files, if present (close
    /// every `Projection` on it first).
    pub fn delete(data_dir: impl AsRef<Path>) -> Result<(), ProjectionError> {
        for suffix in ["", "-wal", "-shm"] {
            let path = data_dir.as_ref().join(format!("{STATE_FILE}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ProjectionError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records per transaction.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Sets the records per transaction (at least 1).
    pub fn set_batch_size(&mut self, batch_size: usize) -> Result<(), ProjectionError> {
        if batch_size == 0 {
            return Err(ProjectionError::BatchSize);
        }
        self.batch_size = batch_size;
        Ok(())
    }

    /// The checkpoint: the offset of the next record to apply.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self.anchor()?.next_offset)
    }

    /// The anchored checkpoint: the next offset and the chain hash before it.
    pub fn anchor(&self) -> Result<Anchor, ProjectionError> {
        Ok(read_anchor(&self.db, CHECKPOINT)?.unwrap_or(Anchor::GENESIS))
    }

    /// Checks the checkpoint against `journal`: `Ok(None)` if it reflects a prefix of it (it is
    /// then trusted until someone else changes it), else why not.
    pub fn check(&mut self, journal: &Journal) -> Result<Option<String>, ProjectionError> {
        let anchor = self.anchor()?;
        let check = journal.check_anchor(&anchor)?;
        Ok(match mismatch(&anchor, check) {
            None => {
                self.trusted = Some(anchor);
                None
            }
            Some(reason) => Some(reason),
        })
    }

    /// Applies the journal's records from the checkpoint to its current end; see
    /// [`Projection::catch_up_with`].
    pub fn catch_up(&mut self, journal: &Journal) -> Result<CatchUp, ProjectionError> {
        let end = journal.next_offset();
        self.catch_up_with(journal, end, |_| {})
    }

    /// Applies the journal's records from the checkpoint up to `end` (at most the journal's end)
    /// in batches of [`Projection::batch_size`] records, each one transaction with its anchored
    /// checkpoint; calls `on_commit` after each commit with the totals so far. A checkpoint
    /// this handle did not write or check is checked against the journal first: one that does
    /// not match fails with [`ProjectionError::Diverged`] (the caller rebuilds).
    pub fn catch_up_with(
        &mut self,
        journal: &Journal,
        end: u64,
        mut on_commit: impl FnMut(&CatchUp),
    ) -> Result<CatchUp, ProjectionError> {
        let end = end.min(journal.next_offset());
        let mut done = CatchUp {
            next_offset: self.checkpoint()?,
            ..CatchUp::default()
        };
        let mut reader = None;
        loop {
            let tx = self
                .db
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Another process may have advanced (or replaced) the checkpoint since we looked.
            let anchor = read_anchor(&tx, CHECKPOINT)?.unwrap_or(Anchor::GENESIS);
            if self.trusted != Some(anchor) {
                drop(tx);
                let check = journal.check_anchor(&anchor)?;
                if let Some(reason) = mismatch(&anchor, check) {
                    return Err(ProjectionError::Diverged { reason });
                }
                self.trusted = Some(anchor);
                reader = None;
                done.next_offset = anchor.next_offset;
                continue;
            }
            if anchor.next_offset >= end {
                done.next_offset = anchor.next_offset;
                return Ok(done);
            }
            let reader = match &mut reader {
                Some(reader) => reader,
                None => reader.insert(journal.reader(StartAt::Offset(anchor.next_offset))?),
            };
            let mut batch = Batch::default();
            let mut next = anchor;
            let (mut applied, mut skipped) = (0u64, 0u64);
            let mut taken = 0usize;
            while taken < self.batch_size && next.next_offset < end {
                let Some(record) = reader.next()? else { break };
                match upcast(record.schema_version, &record.payload) {
                    Ok(event) => {
                        batch.apply(&tx, record.offset, record.ts_us, &event)?;
                        applied += 1;
                    }
                    Err(_) => skipped += 1,
                }
                next = Anchor::after(&record);
                taken += 1;
            }
            if next == anchor {
                // The journal ended early (cannot happen below its committed end).
                return Ok(done);
            }
            batch.finish(&tx)?;
            write_anchor(&tx, CHECKPOINT, &next)?;
            tx.commit()?;
            self.trusted = Some(next);
            done.applied += applied;
            done.skipped += skipped;
            done.next_offset = next.next_offset;
            on_commit(&done);
        }
    }

    /// A BLAKE3 digest (hex) of every projection table's rows in primary-key order (the
    /// checkpoints excluded): equal digests mean equal content.
    pub fn digest(&self) -> Result<String, ProjectionError> {
        let mut hasher = blake3::Hasher::new();
        for (table, query) in DIGEST_TABLES {
            hasher.update(&(table.len() as u64).to_le_bytes());
            hasher.update(table.as_bytes());
            let mut stmt = self.db.prepare(query)?;
            let columns = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                hasher.update(&[0xff]);
                for i in 0..columns {
                    match row.get_ref(i)? {
                        ValueRef::Null => hasher.update(&[0]),
                        ValueRef::Integer(v) => hasher.update(&[1]).update(&v.to_le_bytes()),
                        ValueRef::Real(v) => hasher.update(&[2]).update(&v.to_bits().to_le_bytes()),
                        ValueRef::Text(v) => hasher
                            .update(&[3])
                            .update(&(v.len() as u64).to_le_bytes())
                            .update(v),
                        ValueRef::Blob(v) => hasher
                            .update(&[4])
                            .update(&(v.len() as u64).to_le_bytes())
                            .update(v),
                    };
                }
            }
            hasher.update(&[0xfe]);
        }
        Ok(hasher.finalize().to_hex().to_string())
    }
}
