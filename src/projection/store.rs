//! Opening `state.sqlite`, catching up from the checkpoint in batches, and the digest.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, TransactionBehavior, params};

use super::ProjectionError;
use super::apply::{Batch, sql_offset};
use super::schema::{DDL, DIGEST_TABLES, SCHEMA_VERSION};
use crate::event::upcast;
use crate::journal::{Journal, StartAt};

/// The projection's file name in the data directory.
pub const STATE_FILE: &str = "state.sqlite";

/// Records applied per transaction unless [`Projection::set_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 10_000;

/// The checkpoint row of this projection.
const CHECKPOINT: &str = "projection";

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

/// An open `state.sqlite`; see the module documentation of [`crate::projection`].
#[derive(Debug)]
pub struct Projection {
    pub(crate) db: Connection,
    path: PathBuf,
    batch_size: usize,
}

fn offset_from_sql(value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt {
        what: "offset",
        value: value.to_string(),
    })
}

impl Projection {
    /// Opens (creating if needed) `<data_dir>/state.sqlite`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Projection, ProjectionError> {
        let data_dir = data_dir.as_ref();
        std::fs::create_dir_all(data_dir).map_err(|source| ProjectionError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(STATE_FILE);
        let db = Connection::open(&path)?;
        db.busy_timeout(std::time::Duration::from_secs(30))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "cache_size", -65_536)?;
        db.pragma_update(None, "temp_store", "MEMORY")?;
        db.set_prepared_statement_cache_capacity(64);
        let found: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found != 0 && found != SCHEMA_VERSION {
            return Err(ProjectionError::SchemaVersion {
                path,
                found,
                expected: SCHEMA_VERSION,
            });
        }
        db.execute_batch(&format!(
            "BEGIN IMMEDIATE; {DDL}
             INSERT OR IGNORE INTO checkpoints (name, next_offset) VALUES ('{CHECKPOINT}', 0);
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
        Ok(Projection {
            db,
            path,
            batch_size: DEFAULT_BATCH_SIZE,
        })
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
        read_checkpoint(&self.db)
    }

    /// Applies the journal's records from the checkpoint to its current end; see
    /// [`Projection::catch_up_with`].
    pub fn catch_up(&mut self, journal: &Journal) -> Result<CatchUp, ProjectionError> {
        self.catch_up_with(journal, |_| {})
    }

    /// Applies the journal's records from the checkpoint to the end the journal had when this
    /// call began, in batches of [`Projection::batch_size`] records, each one transaction with
    /// its checkpoint; calls `on_commit` after each commit with the totals so far.
    pub fn catch_up_with(
        &mut self,
        journal: &Journal,
        mut on_commit: impl FnMut(&CatchUp),
    ) -> Result<CatchUp, ProjectionError> {
        let end = journal.next_offset();
        let mut done = CatchUp {
            next_offset: self.checkpoint()?,
            ..CatchUp::default()
        };
        let mut reader = None;
        loop {
            if done.next_offset > end {
                return Err(ProjectionError::AheadOfJournal {
                    checkpoint: done.next_offset,
                    journal_next: end,
                });
            }
            if done.next_offset == end {
                return Ok(done);
            }
            let tx = self
                .db
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Another process may have advanced the checkpoint since we last looked.
            let checkpoint = read_checkpoint(&tx)?;
            if checkpoint != done.next_offset {
                done.next_offset = checkpoint;
                reader = None;
                continue;
            }
            let reader = match &mut reader {
                Some(reader) => reader,
                None => reader.insert(journal.reader(StartAt::Offset(checkpoint))?),
            };
            let mut batch = Batch::default();
            let mut next = checkpoint;
            let (mut applied, mut skipped) = (0u64, 0u64);
            let mut taken = 0usize;
            while taken < self.batch_size && next < end {
                let Some(record) = reader.next()? else { break };
                match upcast(record.schema_version, &record.payload) {
                    Ok(event) => {
                        batch.apply(&tx, record.offset, record.ts_us, &event)?;
                        applied += 1;
                    }
                    Err(_) => skipped += 1,
                }
                next = record.offset + 1;
                taken += 1;
            }
            if next == checkpoint {
                // The journal ended early (cannot happen below its committed end).
                return Ok(done);
            }
            batch.finish(&tx)?;
            tx.prepare_cached("UPDATE checkpoints SET next_offset = ?2 WHERE name = ?1")?
                .execute(params![CHECKPOINT, sql_offset(next)])?;
            tx.commit()?;
            done.applied += applied;
            done.skipped += skipped;
            done.next_offset = next;
            on_commit(&done);
        }
    }

    /// A BLAKE3 digest (hex) of every projection table's rows in primary-key order (the
    /// checkpoint excluded): equal digests mean equal content.
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

fn read_checkpoint(db: &Connection) -> Result<u64, ProjectionError> {
    let value: i64 = db
        .prepare_cached("SELECT next_offset FROM checkpoints WHERE name = ?1")?
        .query_row([CHECKPOINT], |row| row.get(0))?;
    offset_from_sql(value)
}
