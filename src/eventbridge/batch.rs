//! PutEvents batching, pure: entry sizes as AWS counts them, batch limits, which entries of a
//! response failed. No I/O here, so every limit is unit-tested. (The retry delay is
//! [`crate::backoff::Backoff`], shared with every other retry loop.)
//!
//! # Entry size
//!
//! AWS documents a PutEvents entry's size as the UTF-8 bytes of `Source`, `DetailType`,
//! `Detail` and each `Resources` string, plus 14 bytes when `Time` is set, and limits the whole
//! request to 256 KiB. Our approximation over-counts on purpose: we count those fields, the
//! 14 bytes of `Time` although we never set it, and the `EventBusName` too (AWS does not), and
//! batch against [`MAX_BATCH_BYTES`], which keeps a further 1 KiB safety margin below 256 KiB. An
//! entry alone larger than that budget can never be sent and is skipped by the consumer.

/// At most this many entries per PutEvents call (an 11th makes AWS reject the whole call).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The 256 KiB request limit.
pub const AWS_LIMIT_BYTES: usize = 256 * 1024;

/// Safety margin kept below [`AWS_LIMIT_BYTES`].
pub const SAFETY_MARGIN_BYTES: usize = 1024;

/// Our batch budget: [`AWS_LIMIT_BYTES`] minus [`SAFETY_MARGIN_BYTES`].
pub const MAX_BATCH_BYTES: usize = AWS_LIMIT_BYTES - SAFETY_MARGIN_BYTES;

/// Bytes AWS counts for `Time` when set (we count them always).
const TIME_BYTES: usize = 14;

/// The size we count for an entry; see the module docs.
pub fn entry_size(source: &str, detail_type: &str, detail: &str, bus_name: &str) -> usize {
    TIME_BYTES + source.len() + detail_type.len() + detail.len() + bus_name.len()
}

/// Whether an entry of `size` bytes can never be sent, even alone.
pub fn too_large(size: usize) -> bool {
    size > MAX_BATCH_BYTES
}

/// Entries gathered for one PutEvents call, within both limits.
#[derive(Debug)]
pub struct Batch<T> {
    items: Vec<T>,
    bytes: usize,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            items: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T> Batch<T> {
    /// An empty batch.
    pub fn new() -> Batch<T> {
        Batch::default()
    }

    /// Whether an entry of `size` bytes fits in this batch now.
    pub fn fits(&self, size: usize) -> bool {
        self.items.len() < MAX_BATCH_ENTRIES && self.bytes + size <= MAX_BATCH_BYTES
    }

    /// Adds `item` of `size` bytes if it [fits](Self::fits); gives it back otherwise.
    pub fn try_push(&mut self, item: T, size: usize) -> Result<(), T> {
        if !self.fits(size) {
            return Err(item);
        }
        self.items.push(item);
        self.bytes += size;
        Ok(())
    }

    /// Whether no further entry (of any size) can be added.
    pub fn is_full(&self) -> bool {
        self.items.len() >= MAX_BATCH_ENTRIES
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Counted bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entries, in order.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// The result of one entry of a PutEvents response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Accepted (an `EventId`).
    Ok,
    /// Refused (`ErrorCode`, `ErrorMessage`).
    Failed {
        /// AWS's error code, e.g. `MalformedDetail`, `ThrottlingException`.
        code: String,
        /// AWS's message.
        message: String,
    },
}

/// Indexes (into the `sent` entries) of those that must be resent: the failed ones, and any the
/// response does not account for (a response shorter than the request, which AWS never sends,
/// is treated as failure of the missing entries rather than as success).
pub fn to_resend(sent: usize, outcomes: &[EntryOutcome]) -> Vec<usize> {
    (0..sent)
        .filter(|&i| !matches!(outcomes.get(i), Some(EntryOutcome::Ok)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_ten_entries() {
        let mut batch = Batch::new();
        for i in 0..MAX_BATCH_ENTRIES {
            assert!(batch.try_push(i, 100).is_ok());
        }
        assert!(batch.is_full());
        assert_eq!(batch.try_push(10, 1), Err(10));
        assert_eq!(batch.len(), 10);
        assert_eq!(batch.into_items(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn at_most_256_kib_with_margin() {
        let mut batch = Batch::new();
        let size = 100 * 1024;
        assert!(batch.try_push("a", size).is_ok());
        assert!(batch.try_push("b", size).is_ok());
        // 300 KiB would pass 256 KiB: the third goes to the next batch.
        assert_eq!(batch.try_push("c", size), Err("c"));
        assert_eq!(batch.len(), 2);
        // Filling exactly to the budget is allowed, one byte more is not.
        let rest = MAX_BATCH_BYTES - batch.bytes();
        assert!(!batch.fits(rest + 1));
        assert!(batch.try_push("d", rest).is_ok());
        assert_eq!(batch.bytes(), MAX_BATCH_BYTES);
        assert!(batch.bytes() < AWS_LIMIT_BYTES);
    }

    #[test]
    fn oversized_single_entry_is_never_sendable() {
        assert!(!too_large(MAX_BATCH_BYTES));
        assert!(too_large(MAX_BATCH_BYTES + 1));
        assert!(too_large(AWS_LIMIT_BYTES));
        let detail = "x".repeat(AWS_LIMIT_BYTES);
        let size = entry_size("logbook", "upgrade.started", &detail, "bus");
        assert!(too_large(size));
        // Even an empty batch refuses it: the consumer must skip it, not wait for room.
        let mut batch: Batch<()> = Batch::new();
        assert!(batch.try_push((), size).is_err());
    }

    #[test]
    fn entry_size_counts_fields_and_time() {
        assert_eq!(entry_size("ab", "cde", "{}", "bus"), 14 + 2 + 3 + 2 + 3);
        // UTF-8 bytes, not characters.
        assert_eq!(entry_size("é", "", "", ""), 14 + 2);
    }

    #[test]
    fn only_failed_entries_are_resent() {
        let failed = EntryOutcome::Failed {
            code: "MalformedDetail".into(),
            message: "Detail is malformed.".into(),
        };
        let outcomes = vec![EntryOutcome::Ok, failed.clone(), EntryOutcome::Ok, failed];
        assert_eq!(to_resend(4, &outcomes), vec![1, 3]);
        assert_eq!(
            to_resend(2, &[EntryOutcome::Ok, EntryOutcome::Ok]),
            Vec::<usize>::new()
        );
        // Unaccounted entries count as failed.
        assert_eq!(to_resend(3, &[EntryOutcome::Ok]), vec![1, 2]);
    }
}
