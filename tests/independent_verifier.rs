#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Cross-checks the journal against an independent verifier, `tools/verify_journal.py`, written
//! from `schemas/journal-format.md` alone: on a good journal both must report the same record
//! count and head hash; on damaged copies both must name the same first bad offset and kind.
//!
//! The verifier runs under `.venv/bin/python` (created by `./scripts/test.sh` from
//! `tools/requirements.txt`). A missing venv fails the test: it is never skipped silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use logbook::journal::record::{GENESIS_HASH, PAYLOAD_BYTES_MAX, encode_frame};
use logbook::journal::segment::{decode_footer_from_file_bytes, decode_segment};
use logbook::journal::{Durability, Journal, JournalConfig, verify_dir};

/// Records appended in the first session (several sealed segments), then in the second (the
/// active unsealed segment).
const FIRST_SESSION: u64 = 4000;
const SECOND_SESSION: u64 = 40;

fn config() -> JournalConfig {
    JournalConfig {
        segment_bytes: 64 << 10,
        // Several blocks per sealed segment, so block boundaries and per-block hashes are used.
        block_bytes: 16 << 10,
        durability: Durability::None,
        ..Default::default()
    }
}

fn payload(i: u64) -> String {
    format!(
        r#"{{"type":"task.progress","task_id":"t-{}","step":{i},"percentage":{:.1},"note":"node group ng-{} draining pods {}"}}"#,
        i % 13,
        (i % 1000) as f64 / 10.0,
        i % 7,
        "x".repeat((i % 50) as usize)
    )
}

/// Builds a journal with several sealed segments and an active unsealed one holding records;
/// returns the number of records.
fn build_journal(dir: &Path) -> u64 {
    // With Durability::None a tight loop makes large write batches; the flusher splits them at
    // segment boundaries, so segments still roll near segment_bytes.
    let journal = Journal::open(dir, config()).unwrap();
    for i in 0..FIRST_SESSION {
        journal.append(payload(i)).unwrap();
    }
    journal.close().unwrap();
    let mut total = FIRST_SESSION;
    let mut more = SECOND_SESSION;
    loop {
        // Reopen and append to the active segment. If these records happen to fill it, it rolls
        // (and is sealed on close), leaving a new empty active segment: append a few more then.
        let journal = Journal::open(dir, config()).unwrap();
        for i in total..total + more {
            journal.append(payload(i)).unwrap();
        }
        journal.wait_visible().unwrap();
        total = journal.next_offset();
        journal.close().unwrap();
        let (_, raw) = segment_files(dir);
        if raw
            .last()
            .is_some_and(|log| std::fs::metadata(log).unwrap().len() > 0)
        {
            break;
        }
        more = 5;
    }

    let (sealed, raw) = segment_files(dir);
    assert!(
        sealed.len() >= 3,
        "expected several sealed segments, got {sealed:?}"
    );
    assert_eq!(raw.len(), 1, "expected one unsealed segment, got {raw:?}");
    total
}

/// Sealed and unsealed segment files of `dir`, each sorted by name (= by first offset).
fn segment_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut sealed = Vec::new();
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".seg.zst") {
            sealed.push(path);
        } else if name.ends_with(".log") {
            raw.push(path);
        }
    }
    sealed.sort();
    raw.sort();
    (sealed, raw)
}

/// First offset encoded in a segment file name.
fn first_offset(path: &Path) -> u64 {
    path.file_name().unwrap().to_str().unwrap()[..20]
        .parse()
        .unwrap()
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
        }
    }
    to
}

fn flip_middle_byte(path: &Path) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    at
}

/// A verifier's verdict, in the independent verifier's output format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Ok { records: u64, head: String },
    Damaged { offset: u64, kind: String },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `verify_dir` with the format's hard payload limit, as `logbook verify` calls it.
fn library_verdict(dir: &Path) -> (Verdict, u64) {
    let report = verify_dir(dir, PAYLOAD_BYTES_MAX, &mut |_| {}).unwrap();
    let verdict = match &report.damage {
        None => Verdict::Ok {
            records: report.records,
            head: hex(&report.head_hash),
        },
        Some(damage) => Verdict::Damaged {
            offset: damage.offset,
            kind: damage.kind.code().to_owned(),
        },
    };
    (verdict, report.torn_tail_bytes)
}

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test.sh, which creates the venv with tools/requirements.txt \
         (the independent verifier needs blake3, zstandard and crc32c)",
        python.display()
    );
    python
}

/// Runs tools/verify_journal.py with its default payload limit (which must be the format's hard
/// limit, as for `library_verdict`); returns its verdict and its stderr.
fn independent_verdict(dir: &Path) -> (Verdict, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_journal.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let verdict = match (out.status.code(), fields.as_slice()) {
        (Some(0), ["ok", records, head]) => Verdict::Ok {
            records: records.parse().unwrap(),
            head: (*head).to_owned(),
        },
        (Some(1), ["damaged", offset, kind]) => Verdict::Damaged {
            offset: offset.parse().unwrap(),
            kind: (*kind).to_owned(),
        },
        _ => panic!(
            "verify_journal.py failed: status {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        ),
    };
    (verdict, stderr)
}

/// Both verifiers on `dir`: asserts they agree and returns the common verdict.
fn both_agree(dir: &Path) -> (Verdict, u64, String) {
    let (library, torn) = library_verdict(dir);
    let (independent, stderr) = independent_verdict(dir);
    assert_eq!(
        independent, library,
        "verify_journal.py disagrees with verify_dir; its stderr:\n{stderr}"
    );
    (library, torn, stderr)
}

#[test]
fn good_journal_same_count_and_head_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let total = build_journal(tmp.path());
    let (verdict, torn, _) = both_agree(tmp.path());
    let Verdict::Ok { records, head } = verdict else {
        panic!("a freshly built journal is damaged: {verdict:?}");
    };
    assert_eq!(records, total);
    assert_eq!(head.len(), 64);
    assert_ne!(head, "0".repeat(64));
    assert_eq!(torn, 0);
}

#[test]
fn flipped_byte_in_sealed_segment_same_first_bad_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (sealed, _) = segment_files(copy.path());
    let victim = &sealed[sealed.len() / 2];
    flip_middle_byte(victim);
    let (verdict, _, _) = both_agree(copy.path());
    let Verdict::Damaged { offset, kind } = verdict else {
        panic!("a flipped byte in {} went unnoticed", victim.display());
    };
    // The middle of a sealed segment is compressed block data (the footer is a few hundred
    // bytes at the end), which the index entry's CRC-32C of the compressed bytes rejects.
    assert_eq!(kind, "block");
    let next = &sealed[sealed.len() / 2 + 1];
    assert!(
        (first_offset(victim)..first_offset(next)).contains(&offset),
        "damage at {offset} is outside the damaged segment {}",
        victim.display()
    );
}

#[test]
fn flipped_byte_in_active_segment_same_first_bad_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (_, raw) = segment_files(copy.path());
    let original = std::fs::read(&raw[0]).unwrap();
    let at = flip_middle_byte(&raw[0]);
    let (verdict, _, _) = both_agree(copy.path());
    let Verdict::Damaged { offset, kind } = verdict else {
        panic!("a flipped byte in the middle of the active segment went unnoticed");
    };
    assert!(
        kind == "checksum" || kind == "frame",
        "unexpected kind {kind}"
    );
    // The frame holding the flipped byte, found by walking the `len` fields of the original.
    let (mut pos, mut expected) = (0usize, first_offset(&raw[0]));
    loop {
        let len = u32::from_le_bytes(original[pos..pos + 4].try_into().unwrap()) as usize;
        if at < pos + 8 + len {
            break;
        }
        pos += 8 + len;
        expected += 1;
    }
    assert_eq!(
        offset, expected,
        "the first bad offset is not the flipped frame's"
    );
}

#[test]
fn torn_tail_is_ok_for_both() {
    let tmp = tempfile::tempdir().unwrap();
    let total = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (_, raw) = segment_files(copy.path());
    let bytes = std::fs::read(&raw[0]).unwrap();
    // Cut the last frame short, as a crash in the middle of its write would.
    std::fs::write(&raw[0], &bytes[..bytes.len() - 10]).unwrap();
    let (verdict, torn, stderr) = both_agree(copy.path());
    let Verdict::Ok { records, .. } = verdict else {
        panic!("a torn tail was reported as damage: {verdict:?}");
    };
    assert_eq!(records, total - 1);
    assert!(torn > 0);
    assert!(
        stderr.contains("torn"),
        "no torn-tail note on stderr: {stderr}"
    );
}

/// A damaged last record of a cleanly closed segment is damage for both (its clean-close
/// marker says the segment was whole); without the marker, both take it for a torn tail.
#[test]
fn a_clean_close_marker_makes_a_bad_last_frame_damage_for_both() {
    let tmp = tempfile::tempdir().unwrap();
    let total = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (_, raw) = segment_files(copy.path());
    let marker = PathBuf::from(format!("{}.closed", raw[0].display()));
    assert!(marker.exists(), "a clean close leaves {}", marker.display());
    let mut bytes = std::fs::read(&raw[0]).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x40;
    std::fs::write(&raw[0], &bytes).unwrap();
    let (verdict, _, _) = both_agree(copy.path());
    assert!(
        matches!(&verdict, Verdict::Damaged { offset, .. } if *offset == total - 1),
        "{verdict:?}"
    );
    std::fs::remove_file(&marker).unwrap();
    let (verdict, torn, _) = both_agree(copy.path());
    assert!(matches!(verdict, Verdict::Ok { records, .. } if records == total - 1));
    assert!(torn > 0);
}

#[test]
fn missing_sealed_segment_is_named_by_both() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (sealed, _) = segment_files(copy.path());
    let victim = &sealed[1];
    std::fs::remove_file(victim).unwrap();
    let (verdict, _, _) = both_agree(copy.path());
    assert_eq!(
        verdict,
        Verdict::Damaged {
            offset: first_offset(victim),
            kind: "missing_segment".into()
        }
    );
}

#[test]
fn flipped_byte_in_footer_is_named_by_both() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (sealed, _) = segment_files(copy.path());
    let victim = &sealed[0];
    let mut bytes = std::fs::read(victim).unwrap();
    // Inside the last block-index entry's end hash (the trailer is the last 16 bytes).
    let at = bytes.len() - 16 - 10;
    bytes[at] ^= 0x01;
    std::fs::write(victim, bytes).unwrap();
    let (verdict, _, _) = both_agree(copy.path());
    assert_eq!(
        verdict,
        Verdict::Damaged {
            offset: 0,
            kind: "footer".into()
        }
    );
}

/// Bit 4 (0x10) of a zstd Frame_Header_Descriptor is unused: libzstd ignores it, so flipping it
/// changes the block's bytes but not what it decompresses to. The CRC-32C of the compressed
/// bytes in the block index must still catch it, before decompression, as `block` damage at the
/// block's first offset.
#[test]
fn unused_zstd_header_bit_is_block_damage_for_both() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = build_journal(tmp.path());
    let copy = copy_dir(tmp.path());
    let (sealed, _) = segment_files(copy.path());
    let victim = &sealed[sealed.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let footer = decode_footer_from_file_bytes(&bytes).unwrap();
    assert!(
        footer.blocks.len() >= 2,
        "expected several blocks per segment"
    );
    let entry = &footer.blocks[1];
    let start = entry.file_pos as usize;
    let end = start + entry.compressed_len as usize;
    assert_eq!(
        bytes[start..start + 4],
        [0x28, 0xb5, 0x2f, 0xfd],
        "zstd magic"
    );
    let descriptor = start + 4;
    assert_eq!(
        bytes[descriptor] & 0x10,
        0,
        "the unused bit is written as 0"
    );
    let original = zstd::bulk::decompress(&bytes[start..end], entry.raw_len as usize).unwrap();
    bytes[descriptor] ^= 0x10;
    // The premise: zstd alone would not notice.
    let flipped = zstd::bulk::decompress(&bytes[start..end], entry.raw_len as usize).unwrap();
    assert_eq!(
        flipped, original,
        "zstd no longer ignores the unused header bit"
    );
    std::fs::write(victim, &bytes).unwrap();
    let (verdict, _, _) = both_agree(copy.path());
    assert_eq!(
        verdict,
        Verdict::Damaged {
            offset: entry.first_offset,
            kind: "block".into()
        }
    );
}

/// A segment whose sealing failed stays unsealed between sealed ones (spec section 4): both
/// verifiers walk it in offset order, and since it is not the last segment, a cut in it is
/// damage, never a torn tail.
#[test]
fn unsealed_segment_between_sealed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = build_journal(tmp.path());
    let (expected, _, _) = both_agree(tmp.path());
    assert!(matches!(expected, Verdict::Ok { .. }));

    // Replace a middle sealed segment by the unsealed segment it was sealed from.
    let copy = copy_dir(tmp.path());
    let (sealed, _) = segment_files(copy.path());
    let victim = &sealed[sealed.len() / 2];
    let (footer, records) = decode_segment(&std::fs::read(victim).unwrap()).unwrap();
    assert_ne!(footer.prev_hash, GENESIS_HASH);
    let mut frames = Vec::new();
    let mut chain = footer.prev_hash;
    for r in &records {
        chain = encode_frame(
            &mut frames,
            &chain,
            r.offset,
            r.ts_us,
            r.schema_version,
            &r.payload,
        );
    }
    assert_eq!(chain, footer.last_hash);
    let log = copy.path().join(format!("{:020}.log", footer.first_offset));
    std::fs::remove_file(victim).unwrap();
    std::fs::write(&log, &frames).unwrap();
    let (verdict, torn, _) = both_agree(copy.path());
    assert_eq!(
        verdict, expected,
        "same records and head as the sealed journal"
    );
    assert_eq!(torn, 0);

    // Cut its last frame short: not the last segment, so damage at that record.
    std::fs::write(&log, &frames[..frames.len() - 10]).unwrap();
    let (verdict, _, _) = both_agree(copy.path());
    assert_eq!(
        verdict,
        Verdict::Damaged {
            offset: footer.last_offset,
            kind: "frame".into()
        }
    );
}
