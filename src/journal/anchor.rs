//! Anchors: how a copy derived from the journal (the SQLite projection, a consumer's checkpoint,
//! the shipped S3 prefix) says which journal it reflects.
//!
//! An [`Anchor`] is the next offset the copy would apply *and the chain hash of the record
//! before it* (the genesis hash at offset 0). The offset alone cannot tell a copy of this
//! journal from a copy of another, or of records a repair cut, or of a tail a crash cut: the
//! chain hash can, since it commits to every record before it. On open a copy checks its anchor
//! ([`Journal::check_anchor`]); one that does not match is rebuilt from the journal, never
//! trusted.

use super::Journal;
use super::error::{JournalError, Result};
use super::reader::StartAt;
use super::record::{GENESIS_HASH, Record};

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The next offset to apply (every record below it is reflected).
    pub next_offset: u64,
    /// The chain hash of the record at `next_offset - 1` ([`GENESIS_HASH`] when 0).
    pub chain: [u8; 32],
}

/// What [`Journal::check_anchor`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorCheck {
    /// The copy reflects a prefix of this journal.
    Matches,
    /// The copy claims records the journal does not hold (a cut tail, another journal).
    BeyondEnd {
        /// The journal's next offset.
        journal_next: u64,
    },
    /// The journal holds another record at the anchor's offset (a repair, another journal).
    Diverged {
        /// The journal's chain hash there.
        journal_chain: [u8; 32],
    },
}

impl Anchor {
    /// The anchor of an empty copy.
    pub const GENESIS: Anchor = Anchor {
        next_offset: 0,
        chain: GENESIS_HASH,
    };

    /// The anchor of a copy that applied every record up to and including `record`.
    pub fn after(record: &Record) -> Anchor {
        Anchor {
            next_offset: record.offset + 1,
            chain: record.hash,
        }
    }

    /// The chain hash as lower-case hex (how copies store it).
    pub fn chain_hex(&self) -> String {
        hex(&self.chain)
    }

    /// An anchor from an offset and a stored hex hash; `None` if the hash is not 64 hex digits.
    pub fn from_hex(next_offset: u64, chain: &str) -> Option<Anchor> {
        let bytes = chain.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            let byte = (digit(*pair.first()?)? << 4) | digit(*pair.get(1)?)?;
            *out.get_mut(i)? = u8::try_from(byte).ok()?;
        }
        Some(Anchor {
            next_offset,
            chain: out,
        })
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "offset {} (chain {})",
            self.next_offset,
            self.chain_hex()
        )
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Journal {
    /// The anchor of a copy that applied every record below `next_offset` of this journal
    /// (reads the record before it: one block of a sealed segment at most).
    pub fn anchor_at(&self, next_offset: u64) -> Result<Anchor> {
        if next_offset == 0 {
            return Ok(Anchor::GENESIS);
        }
        let end = self.next_offset();
        if next_offset > end {
            return Err(JournalError::OffsetBeyondEnd {
                offset: next_offset,
                next: end,
            });
        }
        self.reader(StartAt::Offset(next_offset - 1))?
            .anchor_at(next_offset)
    }

    /// Checks that `anchor` names a point of this journal (see the module docs).
    pub fn check_anchor(&self, anchor: &Anchor) -> Result<AnchorCheck> {
        let journal_next = self.next_offset();
        if anchor.next_offset > journal_next {
            return Ok(AnchorCheck::BeyondEnd { journal_next });
        }
        let ours = self.anchor_at(anchor.next_offset)?;
        Ok(if ours.chain == anchor.chain {
            AnchorCheck::Matches
        } else {
            AnchorCheck::Diverged {
                journal_chain: ours.chain,
            }
        })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let a = Anchor {
            next_offset: 7,
            chain: [0xab; 32],
        };
        assert_eq!(Anchor::from_hex(7, &a.chain_hex()).unwrap(), a);
        assert_eq!(Anchor::from_hex(7, "zz"), None);
        assert_eq!(Anchor::from_hex(7, &"g".repeat(64)), None);
    }
}
