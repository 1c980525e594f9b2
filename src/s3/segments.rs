//! Reading segment objects: list them, check they are contiguous, download one and verify it on
//! its own. What restore, follow, `repair --from s3://` and `logbook-replay`'s S3 source share.
//!
//! A downloaded object is trusted for nothing: its BLAKE3 must match its metadata, its footer
//! its key, every block its CRC and every record the chain (from the footer's `prev_hash`);
//! only then is it a [`VerifiedSegment`]. Verification runs on the blocking pool, never on the
//! async runtime. Callers check that consecutive objects chain, and that all carry one writer
//! id ([`Writers`]).

use std::path::PathBuf;

use super::layout::{self, Key, meta};
use super::objects::Objects;
use super::{S3Error, S3Location};
use crate::journal::record::Record;
use crate::journal::segment::{Footer, VerifiedSegment, decode_footer_from_file_bytes};
use crate::state::Until;

/// A segment object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: Key,
    /// First offset.
    pub first: u64,
    /// Last offset.
    pub last: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Every segment object under the prefix after `start_after`, in offset order; other keys under
/// `journal/` are logged and ignored.
pub async fn list(objects: &Objects, start_after: Option<&Key>) -> Result<Vec<Listed>, S3Error> {
    let location = objects.location();
    let mut listed = Vec::new();
    for object in objects
        .list(&layout::journal_prefix(location), start_after)
        .await?
    {
        match layout::parse_segment_key(location, object.key.as_str()) {
            Some((first, last)) => listed.push(Listed {
                key: object.key,
                first,
                last,
                size: object.size,
            }),
            None => crate::journal::quietly(|| {
                tracing::warn!(key = %object.key, "not a segment object; ignored");
            }),
        }
    }
    listed.sort_by_key(|l| l.first);
    Ok(listed)
}

/// How many of `listed` continue `expected` (the next offset) without gap or overlap: the
/// contiguous run at their start.
pub fn contiguous_run(listed: &[Listed], mut expected: u64) -> usize {
    let mut n = 0;
    for l in listed {
        if l.first != expected || l.last < l.first {
            break;
        }
        expected = l.last + 1;
        n += 1;
    }
    n
}

/// Checks that `listed` continues `expected` without gap or overlap; `before` is the key of the
/// object before them (`None`: they start the journal).
pub fn check_contiguous(
    location: &S3Location,
    listed: &[Listed],
    expected: u64,
    before: Option<&Key>,
) -> Result<(), S3Error> {
    let n = contiguous_run(listed, expected);
    let Some(bad) = listed.get(n) else {
        return Ok(());
    };
    let (after, next) = match n.checked_sub(1).and_then(|i| listed.get(i)) {
        Some(prev) => (prev.key.to_string(), prev.last + 1),
        None => (
            before.map_or_else(|| format!("the start of {location}"), Key::to_string),
            expected,
        ),
    };
    Err(S3Error::Gap {
        reason: format!(
            "the journal in S3 is not contiguous: after {after} the next offset is {next}, but \
             {} holds {}..={}",
            bad.key, bad.first, bad.last
        ),
    })
}

/// A downloaded, verified segment object.
#[derive(Debug)]
pub struct Fetched {
    /// The object.
    pub listed: Listed,
    /// Its bytes, verified.
    pub segment: VerifiedSegment,
    /// The writer id in its metadata (`None`: none recorded).
    pub writer_id: Option<String>,
    /// Records up to the cut, when a point-in-time `until` falls inside it.
    pub cut: Option<Vec<Record>>,
}

/// Downloads `listed` and verifies it on its own (see the module docs), keeping the records up
/// to `until` if it falls inside the segment.
pub async fn fetch(objects: &Objects, listed: Listed, until: Until) -> Result<Fetched, S3Error> {
    let object = objects
        .get(&listed.key)
        .await?
        .ok_or_else(|| S3Error::Gap {
            reason: format!("{} was listed but is gone", listed.key),
        })?;
    let claimed = object.metadata.get(meta::BLAKE3).cloned();
    let writer_id = object.metadata.get(meta::WRITER).cloned();
    let key = listed.key.clone();
    tokio::task::spawn_blocking(move || verify(listed, object.bytes, claimed, writer_id, until))
        .await
        .map_err(|e| S3Error::io(PathBuf::from(key.as_str()), std::io::Error::other(e)))?
}

fn verify(
    listed: Listed,
    bytes: Vec<u8>,
    claimed: Option<String>,
    writer_id: Option<String>,
    until: Until,
) -> Result<Fetched, S3Error> {
    let tampered = |offset: u64, reason: String| S3Error::Tampered {
        key: listed.key.to_string(),
        offset,
        reason,
    };
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if let Some(claimed) = &claimed
        && *claimed != actual
    {
        return Err(tampered(
            listed.first,
            format!("its BLAKE3 is {actual}, its metadata says {claimed}: the object was changed"),
        ));
    }
    let footer = decode_footer_from_file_bytes(&bytes)
        .map_err(|kind| tampered(listed.first, format!("bad footer: {kind}")))?;
    if footer.first_offset != listed.first || footer.last_offset != listed.last {
        return Err(tampered(
            listed.first,
            format!(
                "its footer holds {}..={}, its name says {}..={}",
                footer.first_offset, footer.last_offset, listed.first, listed.last
            ),
        ));
    }
    let cuts = match until {
        Until::End => false,
        Until::Offset(o) => o < footer.last_offset,
        Until::Time(t) => t < footer.last_ts,
    };
    let mut kept = Vec::new();
    let segment = VerifiedSegment::verify(bytes, |record| {
        let keep = match until {
            Until::End => false,
            Until::Offset(o) => record.offset <= o,
            Until::Time(t) => record.ts_us <= t,
        };
        if cuts && keep {
            kept.push(record.clone());
        }
    })
    .map_err(|(offset, kind)| tampered(offset, kind.to_string()))?;
    Ok(Fetched {
        listed,
        segment,
        writer_id,
        cut: cuts.then_some(kept),
    })
}

/// Downloads the segment object holding `first..=last` and verifies it on its own: what
/// `logbook repair --from s3://...` puts in place of a damaged local segment.
pub async fn download_verified(
    objects: &Objects,
    first: u64,
    last: u64,
) -> Result<VerifiedSegment, S3Error> {
    let listed = Listed {
        key: layout::segment_key(objects.location(), first, last),
        first,
        last,
        size: 0,
    };
    Ok(fetch(objects, listed, Until::End).await?.segment)
}

/// Downloads one segment object and verifies it on its own: its footer and bytes, for readers
/// that stream a prefix without restoring it (`logbook-replay ... s3://...`). The caller checks
/// that consecutive objects chain (`footer.prev_hash` equals the previous `footer.last_hash`).
pub async fn download(objects: &Objects, listed: &Listed) -> Result<(Footer, Vec<u8>), S3Error> {
    let fetched = fetch(objects, listed.clone(), Until::End).await?;
    let footer = fetched.segment.footer().clone();
    Ok((footer, fetched.segment.bytes().to_vec()))
}

/// The writer ids seen in a prefix's segment objects: a prefix is one writer's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Writers {
    first: Option<(String, Key)>,
}

impl Writers {
    /// Notes the writer of `key`; refuses ([`S3Error::MixedWriters`]) a second writer id.
    pub fn note(&mut self, writer_id: Option<&str>, key: &Key) -> Result<(), S3Error> {
        let Some(writer_id) = writer_id else {
            return Ok(());
        };
        match &self.first {
            None => {
                self.first = Some((writer_id.to_string(), key.clone()));
                Ok(())
            }
            Some((first, _)) if first == writer_id => Ok(()),
            Some((first, first_key)) => Err(S3Error::MixedWriters {
                first: first.clone(),
                first_key: first_key.to_string(),
                other: writer_id.to_string(),
                other_key: key.to_string(),
            }),
        }
    }

    /// The writer id of the objects seen, if any carried one.
    pub fn writer_id(&self) -> Option<&str> {
        self.first.as_ref().map(|(w, _)| w.as_str())
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn listed(l: &S3Location, first: u64, last: u64) -> Listed {
        Listed {
            key: layout::segment_key(l, first, last),
            first,
            last,
            size: 1,
        }
    }

    #[test]
    fn contiguity_names_the_objects_around_a_gap() {
        let l: S3Location = "s3://bucket/p".parse().unwrap();
        let run = vec![listed(&l, 0, 9), listed(&l, 10, 19), listed(&l, 25, 30)];
        assert_eq!(contiguous_run(&run, 0), 2);
        assert_eq!(contiguous_run(&run, 10), 0);
        assert_eq!(contiguous_run(&run[..2], 0), 2);
        check_contiguous(&l, &run[..2], 0, None).unwrap();
        let gap = check_contiguous(&l, &run, 0, None).unwrap_err().to_string();
        assert!(
            gap.contains("00000000000000000019.seg.zst the next offset is 20"),
            "{gap}"
        );
        assert!(gap.contains("holds 25..=30"), "{gap}");
        let start = check_contiguous(&l, &run[1..], 0, None)
            .unwrap_err()
            .to_string();
        assert!(
            start.contains("after the start of s3://bucket/p the next offset is 0"),
            "{start}"
        );
    }

    #[test]
    fn one_writer_per_prefix() {
        let l: S3Location = "s3://bucket/p".parse().unwrap();
        let (a, b) = (
            layout::segment_key(&l, 0, 9),
            layout::segment_key(&l, 10, 19),
        );
        let mut writers = Writers::default();
        writers.note(Some("w1"), &a).unwrap();
        writers.note(None, &b).unwrap();
        writers.note(Some("w1"), &b).unwrap();
        assert_eq!(writers.writer_id(), Some("w1"));
        let mixed = writers.note(Some("w2"), &b).unwrap_err().to_string();
        assert!(mixed.contains("w1") && mixed.contains("w2"), "{mixed}");
        assert!(mixed.contains(b.as_str()), "{mixed}");
    }
}
