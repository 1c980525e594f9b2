//! What a prefix holds, read (never written) and compared with the local journal: the
//! shipper's check at open and whenever `head.json` is not the version it wrote.
//!
//! A [`Survey`] costs one GET (`head.json`), one LIST per 1000 segments and one HEAD (the last
//! segment of the contiguous run from offset 0, for its chain end and writer). The run's end is
//! an [`Anchor`] (offset and chain hash), checked against the local journal with
//! [`Journal::check_anchor`]: S3 may hold less than was shipped (wiped, rewound: shipped again)
//! but never records the local journal does not hold ([`S3Error::Diverged`], naming offsets).

use super::layout::{self, Head, Key, meta};
use super::objects::{ETag, Objects};
use super::segments;
use super::{S3Error, S3Location};
use crate::journal::{Anchor, AnchorCheck, Journal};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Survey {
    /// `head.json` and its ETag, if there is one.
    pub head: Option<(Head, ETag)>,
    /// The end of the contiguous run of segment objects from offset 0.
    pub end: Anchor,
    /// The last object of that run.
    pub last_key: Option<Key>,
    /// The writer id in that object's metadata.
    pub last_writer: Option<String>,
    /// Segment objects beyond a gap (not part of the run).
    pub stray: usize,
}

/// Reads `head.json` of `objects`' prefix and its ETag; `None` if there is none yet.
pub async fn read_head(objects: &Objects) -> Result<Option<(Head, ETag)>, S3Error> {
    let key = layout::head_key(objects.location());
    objects.get_json(&key, "head document").await
}

/// Surveys the prefix of `objects` (see the module docs).
pub async fn survey(objects: &Objects) -> Result<Survey, S3Error> {
    let head = read_head(objects).await?;
    let listed = segments::list(objects, None).await?;
    let run = segments::contiguous_run(&listed, 0);
    let Some(last) = run.checked_sub(1).and_then(|i| listed.get(i)) else {
        return Ok(Survey {
            head,
            end: Anchor::GENESIS,
            last_key: None,
            last_writer: None,
            stray: listed.len(),
        });
    };
    let found = objects.head(&last.key).await?.ok_or_else(|| S3Error::Gap {
        reason: format!("{} was listed but is gone", last.key),
    })?;
    let chain = found
        .metadata
        .get(meta::CHAIN_END)
        .cloned()
        .unwrap_or_default();
    let end = Anchor::from_hex(last.last + 1, &chain).ok_or_else(|| S3Error::Conflict {
        key: last.key.to_string(),
        reason: format!("its chain-end metadata {chain:?} is not a chain hash"),
    })?;
    Ok(Survey {
        head,
        end,
        last_key: Some(last.key.clone()),
        last_writer: found.metadata.get(meta::WRITER).cloned(),
        stray: listed.len() - run,
    })
}

impl Survey {
    /// The other writer the prefix's objects name, and which object names it, if any does.
    pub fn other_writer(&self, ours: &str) -> Option<(String, String)> {
        if let Some((head, _)) = &self.head
            && head.writer_id != ours
        {
            return Some((head.writer_id.clone(), layout::HEAD.to_string()));
        }
        match (&self.last_writer, &self.last_key) {
            (Some(writer), Some(key)) if writer != ours => {
                Some((writer.clone(), format!("segment object {key}")))
            }
            _ => None,
        }
    }

    /// Refuses ([`S3Error::Diverged`]) a prefix holding records `journal` does not hold.
    pub fn check_journal(&self, journal: &Journal, location: &S3Location) -> Result<(), S3Error> {
        let last = self
            .last_key
            .as_ref()
            .map_or_else(String::new, |k| format!(" (up to {k})"));
        let s3_last = self.end.next_offset.saturating_sub(1);
        let reason = match journal.check_anchor(&self.end)? {
            AnchorCheck::Matches => return Ok(()),
            AnchorCheck::BeyondEnd { journal_next } => format!(
                "S3 holds offsets 0..={s3_last}{last}, but this journal holds offsets below \
                 {journal_next} only (cut by `logbook repair --cut`?): S3 has records \
                 {journal_next}..={s3_last} that this journal no longer has"
            ),
            AnchorCheck::Diverged { journal_chain } => format!(
                "the record at offset {s3_last} in S3{last} is not this journal's (chain hash \
                 {} in S3, {} here): S3 holds another history",
                self.end.chain_hex(),
                layout::hex(&journal_chain)
            ),
        };
        Err(S3Error::Diverged {
            location: location.clone(),
            reason,
        })
    }
}
