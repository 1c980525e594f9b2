//! Segment file names: one function builds each kind, one function parses them all.
//!
//! - active or rolled (unsealed) segment: `{first:020}.log`
//! - sealed segment: `{first:020}-{last:020}.seg.zst`
//! - a segment file being written (sealed, imported or repaired): its name + `.tmp` (deleted on
//!   open)
//! - the clean-close marker of an unsealed segment: `{first:020}.log.closed` (see
//!   `files::CloseMarker`; not a segment)
//!
//! Offsets are zero-padded to 20 digits so lexical order is offset order.

/// What a file name in the journal directory denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentName {
    /// An unsealed segment in the frame format, starting at `first`.
    Raw {
        /// First offset.
        first: u64,
    },
    /// A sealed segment holding `first..=last`.
    Sealed {
        /// First offset.
        first: u64,
        /// Last offset.
        last: u64,
    },
    /// An unfinished sealed segment left by a crash.
    Temp,
}

/// Name of the unsealed segment starting at `first`.
pub fn raw(first: u64) -> String {
    format!("{first:020}.log")
}

/// Name of the sealed segment holding `first..=last`.
pub fn sealed(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.seg.zst")
}

/// Name of the temporary file a sealed segment is written to before its rename.
pub fn sealed_temp(first: u64, last: u64) -> String {
    temp(&sealed(first, last))
}

/// Name of the clean-close marker of the unsealed segment starting at `first`.
pub fn closed(first: u64) -> String {
    format!("{}.closed", raw(first))
}

/// Name of the temporary file the segment file `name` is written to before its rename.
pub fn temp(name: &str) -> String {
    format!("{name}.tmp")
}

/// Parses a journal file name; `None` for files that are not segments (e.g. `LOCK`).
pub fn parse(name: &str) -> Option<SegmentName> {
    if let Some(stem) = name.strip_suffix(".tmp") {
        return parse(stem)
            .filter(|n| *n != SegmentName::Temp)
            .map(|_| SegmentName::Temp);
    }
    if let Some(stem) = name.strip_suffix(".seg.zst") {
        let (first, last) = stem.split_once('-')?;
        let (first, last) = (offset(first)?, offset(last)?);
        return (first <= last).then_some(SegmentName::Sealed { first, last });
    }
    let stem = name.strip_suffix(".log")?;
    Some(SegmentName::Raw {
        first: offset(stem)?,
    })
}

fn offset(digits: &str) -> Option<u64> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn names_round_trip(first in 0u64..u64::MAX / 2, len in 0u64..1_000_000) {
            prop_assert_eq!(parse(&raw(first)), Some(SegmentName::Raw { first }));
            let last = first + len;
            prop_assert_eq!(parse(&sealed(first, last)), Some(SegmentName::Sealed { first, last }));
            prop_assert_eq!(parse(&sealed_temp(first, last)), Some(SegmentName::Temp));
            prop_assert_eq!(parse(&temp(&raw(first))), Some(SegmentName::Temp));
        }
    }

    #[test]
    fn lexical_order_is_offset_order() {
        assert!(raw(9) < raw(10));
        assert!(sealed(9, 99) < sealed(100, 101));
    }

    #[test]
    fn foreign_names_are_ignored() {
        for name in [
            "LOCK",
            "1.log",
            "abc.seg.zst",
            "00000000000000000002-00000000000000000001.seg.zst",
        ] {
            assert_eq!(parse(name), None, "{name}");
        }
    }
}
