//! [`Checkpoints`]: the anchored checkpoints of the data dir's durable consumers (EventBridge,
//! named subscriptions) and of the shipper, in `state.sqlite`'s `checkpoints` table beside the
//! projection's own: one place for every "how far has this copy got" of the data dir.
//!
//! Each checkpoint is an [`Anchor`] (next offset and the chain hash before it), and
//! `checkpoint_history` keeps a few older anchors of each name, spaced further apart the older
//! they are (the newest [`RECENT`], then one per power-of-two distance from the newest), so at
//! most about 70 rows per name. [`Checkpoints::resume`] checks the stored anchor against the
//! journal; if the journal no longer holds what the checkpoint reflects (a tail cut by a repair
//! or a crash, a restore into the directory), it resumes at the newest historical anchor that
//! still matches (the last matching point), or at the start: records after that point are
//! delivered again (at least once), never skipped.
//!
//! Durability: commits use the file's `synchronous = NORMAL` (WAL): a power loss may roll a
//! checkpoint back to an earlier commit, which redelivers (at least once still holds).

use std::path::Path;

use rusqlite::{Connection, params};

use super::ProjectionError;
use super::apply::sql_offset;
use super::store::{connect_in, read_anchor, write_anchor};
use crate::journal::{Anchor, AnchorCheck, Journal};

/// Anchors kept regardless of spacing.
pub const RECENT: usize = 4;

/// Longest checkpoint name.
pub const NAME_BYTES_MAX: usize = 300;

/// Where a consumer resumes, and why there if not at its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The point to resume at.
    pub anchor: Anchor,
    /// Set when the stored checkpoint did not match the journal: what happened.
    pub rewound: Option<String>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Checkpoints {
    db: Connection,
}

impl Checkpoints {
    /// Opens the checkpoints of `<data_dir>/state.sqlite` (creating the file if needed).
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Checkpoints, ProjectionError> {
        Ok(Checkpoints {
            db: connect_in(data_dir.as_ref())?.0,
        })
    }

    fn check_name(name: &str) -> Result<(), ProjectionError> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
            return Err(ProjectionError::Corrupt {
                what: "checkpoint name (1 to 300 bytes, no control characters)",
                value: name.to_string(),
            });
        }
        Ok(())
    }

    /// The stored anchor of `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Anchor>, ProjectionError> {
        Self::check_name(name)?;
        read_anchor(&self.db, name)
    }

    /// Stores `anchor` as the checkpoint of `name` (one transaction, with its history).
    pub fn put(&mut self, name: &str, anchor: &Anchor) -> Result<(), ProjectionError> {
        Self::check_name(name)?;
        let tx = self.db.transaction()?;
        write_anchor(&tx, name, anchor)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO checkpoint_history (name, next_offset, chain)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            name,
            sql_offset(anchor.next_offset),
            anchor.chain_hex()
        ])?;
        prune(&tx, name, anchor.next_offset)?;
        tx.commit()?;
        Ok(())
    }

    /// Where `name` resumes reading `journal` (see the module docs).
    pub fn resume(&self, name: &str, journal: &Journal) -> Result<Resume, ProjectionError> {
        let Some(stored) = self.get(name)? else {
            return Ok(Resume {
                anchor: Anchor::GENESIS,
                rewound: None,
            });
        };
        if journal.check_anchor(&stored)? == AnchorCheck::Matches {
            return Ok(Resume {
                anchor: stored,
                rewound: None,
            });
        }
        let mut stmt = self.db.prepare_cached(
            "SELECT next_offset, chain FROM checkpoint_history WHERE name = ?1
             ORDER BY next_offset DESC",
        )?;
        let history = stmt
            .query_map([name], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut resume = Anchor::GENESIS;
        for (next, chain) in history {
            let Some(anchor) = u64::try_from(next)
                .ok()
                .and_then(|n| Anchor::from_hex(n, &chain))
            else {
                continue;
            };
            if journal.check_anchor(&anchor)? == AnchorCheck::Matches {
                resume = anchor;
                break;
            }
        }
        Ok(Resume {
            rewound: Some(format!(
                "checkpoint {name:?} at offset {} does not match the journal (records it \
                 reflects were cut or replaced); resuming at offset {}, the last point that \
                 matches: records from there are delivered again",
                stored.next_offset, resume.next_offset
            )),
            anchor: resume,
        })
    }
}

/// Keeps the newest [`RECENT`] anchors of `name`, then the newest one per power-of-two distance
/// from `newest`.
fn prune(db: &Connection, name: &str, newest: u64) -> Result<(), ProjectionError> {
    let offsets = db
        .prepare_cached(
            "SELECT next_offset FROM checkpoint_history WHERE name = ?1 ORDER BY next_offset DESC",
        )?
        .query_map([name], |row| row.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut seen_buckets = std::collections::BTreeSet::new();
    let mut delete =
        db.prepare_cached("DELETE FROM checkpoint_history WHERE name = ?1 AND next_offset = ?2")?;
    for (i, offset) in offsets.into_iter().enumerate() {
        let distance = newest.saturating_sub(u64::try_from(offset).unwrap_or(0));
        let bucket = u64::BITS - distance.leading_zeros();
        let keep = i < RECENT || seen_buckets.insert(bucket);
        if !keep || u64::try_from(offset).map_or(true, |o| o > newest) {
            delete.execute(params![name, offset])?;
        }
    }
    Ok(())
}
