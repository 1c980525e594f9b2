//! Black-box tests of the journal library: round trips, seal boundaries, concurrency, tail
//! waiting, time seeks, the writer lock, torn tails, and every kind of damage in sealed and
//! unsealed segments (each in its own test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook::journal::segment::{
    BLOCK_ENTRY_BYTES, TRAILER_MAGIC, decode_footer_from_file_bytes, decompress_block,
};
use logbook::journal::{
    DamageKind, Durability, Journal, JournalConfig, JournalError, StartAt, varint, verify_dir,
};

fn payload(i: u64) -> Vec<u8> {
    format!(
        r#"{{"type":"task.progress","task_id":"t-{}","percentage":{}.0,"message":"step {i} of the plan"}}"#,
        i % 17,
        i % 101
    )
    .into_bytes()
}

/// Small segments and blocks so a few hundred records span many of each.
fn small(durability: Durability) -> JournalConfig {
    JournalConfig {
        durability,
        segment_bytes: 4096,
        block_bytes: 512,
        ..JournalConfig::default()
    }
}

fn fill(dir: &Path, n: u64, config: JournalConfig) {
    let journal = Journal::open(dir, config).unwrap();
    for i in 0..n {
        assert_eq!(journal.append(payload(i)).unwrap(), i);
    }
    journal.close().unwrap();
}

fn read_all(journal: &Journal, start: StartAt) -> Vec<(u64, Vec<u8>)> {
    let mut reader = journal.reader(start).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        out.push((r.offset, r.payload));
    }
    out
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn verify(dir: &Path) -> logbook::journal::VerifyReport {
    verify_dir(dir, 4 << 20, &mut |_| {}).unwrap()
}

#[test]
fn round_trip_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 1000, JournalConfig::default());
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    assert_eq!(journal.next_offset(), 1000);
    let all = read_all(&journal, StartAt::Earliest);
    assert_eq!(all.len(), 1000);
    for (offset, p) in &all {
        assert_eq!(p, &payload(*offset));
    }
    assert_eq!(journal.append(payload(1000)).unwrap(), 1000);
    journal.close().unwrap();
    let report = verify(tmp.path());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 1001);
}

#[test]
fn reads_across_seal_boundaries_from_every_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 400;
    fill(tmp.path(), n, small(Durability::None));
    assert!(
        files(tmp.path(), ".seg.zst").len() >= 10,
        "expected many sealed segments"
    );
    // Reopen and append more so the journal ends in an unsealed segment with records.
    let journal = Journal::open(tmp.path(), small(Durability::None)).unwrap();
    for i in n..n + 20 {
        journal.append(payload(i)).unwrap();
    }
    journal.wait_visible().unwrap();
    let total = n + 20;
    for from in 0..=total {
        let got = read_all(&journal, StartAt::Offset(from));
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (from..total).collect::<Vec<_>>(), "from {from}");
        assert!(got.iter().all(|(o, p)| *p == payload(*o)));
    }
    assert!(matches!(
        journal.reader(StartAt::Offset(total + 1)),
        Err(JournalError::OffsetBeyondEnd { .. })
    ));
    journal.close().unwrap();
    assert!(verify(tmp.path()).is_ok());
}

#[test]
fn reader_keeps_reading_while_segments_roll_and_seal() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(tmp.path(), small(Durability::None)).unwrap());
    let mut reader = journal.reader(StartAt::Earliest).unwrap();
    let writer = {
        let journal = journal.clone();
        std::thread::spawn(move || {
            for i in 0..3000 {
                journal.append(payload(i)).unwrap();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for expected in 0..3000 {
        let record = reader
            .next_blocking(Some(deadline))
            .unwrap()
            .expect("record before deadline");
        assert_eq!(record.offset, expected);
        assert_eq!(record.payload, payload(expected));
    }
    writer.join().unwrap();
    Arc::into_inner(journal).unwrap().close().unwrap();
}

#[test]
fn concurrent_appenders_get_distinct_dense_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(tmp.path(), small(Durability::Sync)).unwrap());
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|i| {
                        let body = format!(r#"{{"producer":{t},"i":{i}}}"#);
                        (journal.append(&body).unwrap(), body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let async_results = runtime.block_on(async {
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..100u64 {
                        let body = format!(r#"{{"task":{t},"i":{i}}}"#);
                        out.push((journal.append_async(&body).await.unwrap(), body));
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut acked: Vec<(u64, String)> = async_results;
    for t in threads {
        acked.extend(t.join().unwrap());
    }
    acked.sort();
    let offsets: Vec<u64> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..3200).collect::<Vec<_>>());
    let stored = read_all(&journal, StartAt::Earliest);
    for ((o1, body), (o2, p)) in acked.iter().zip(&stored) {
        assert_eq!(o1, o2);
        assert_eq!(body.as_bytes(), &p[..]);
    }
    Arc::into_inner(journal).unwrap().close().unwrap();
    assert!(verify(tmp.path()).is_ok());
}

#[test]
fn reader_waiting_on_the_tail_sees_new_records() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(tmp.path(), JournalConfig::default()).unwrap());
    journal.append(payload(0)).unwrap();
    let mut reader = journal.reader(StartAt::Latest).unwrap();
    assert_eq!(reader.position(), 1);
    assert!(reader.next().unwrap().is_none());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        ready_tx.send(()).unwrap();
        reader
            .next_blocking(Some(Instant::now() + Duration::from_secs(30)))
            .unwrap()
    });
    ready_rx.recv().unwrap();
    journal.append(payload(1)).unwrap();
    let got = waiter.join().unwrap().expect("record arrives");
    assert_eq!((got.offset, got.payload), (1, payload(1)));

    // Async reader on a runtime: waits without blocking, then sees the next append.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut reader = journal.reader(StartAt::Offset(2)).unwrap();
    let journal2 = journal.clone();
    let record = runtime.block_on(async move {
        let read = tokio::spawn(async move { reader.next_async().await });
        tokio::task::yield_now().await;
        journal2.append_async(payload(2)).await.unwrap();
        read.await.unwrap()
    });
    assert_eq!(record.unwrap().offset, 2);
    Arc::into_inner(journal).unwrap().close().unwrap();
}

#[test]
fn reader_from_time_starts_at_first_record_at_or_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path(), small(Durability::None)).unwrap();
    for i in 0..600 {
        journal.append(payload(i)).unwrap();
        if i % 50 == 0 {
            // Distinct timestamps across the journal (microsecond clock).
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    journal.wait_visible().unwrap();
    let mut reader = journal.reader(StartAt::Earliest).unwrap();
    let mut stamps = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        stamps.push(r.ts_us);
    }
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps never decrease"
    );
    for probe in [0usize, 1, 51, 299, 450, 599] {
        let t = stamps[probe];
        let expected = stamps.iter().position(|s| *s >= t).unwrap() as u64;
        let reader = journal.reader(StartAt::Time(t)).unwrap();
        assert_eq!(reader.position(), expected, "probe {probe}");
    }
    let after = journal.reader(StartAt::Time(stamps[599] + 1)).unwrap();
    assert_eq!(after.position(), 600);
    journal.close().unwrap();
}

#[test]
fn second_writer_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    journal.append(payload(0)).unwrap();
    match Journal::open(tmp.path(), JournalConfig::default()) {
        Err(JournalError::Locked { holder, .. }) => {
            assert_eq!(holder, std::process::id().to_string())
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Readers are not refused and see committed records.
    let ro = Journal::open_read_only(tmp.path(), JournalConfig::default()).unwrap();
    assert_eq!(read_all(&ro, StartAt::Earliest).len(), 1);
    assert!(matches!(ro.append(b"{}"), Err(JournalError::ReadOnly)));
    journal.close().unwrap();
    // Released on close.
    Journal::open(tmp.path(), JournalConfig::default())
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn bad_payloads_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        record_bytes_max: 100,
        ..JournalConfig::default()
    };
    let journal = Journal::open(tmp.path(), config).unwrap();
    assert!(matches!(
        journal.append(b""),
        Err(JournalError::EmptyRecord)
    ));
    assert!(matches!(
        journal.append(vec![b'x'; 101]),
        Err(JournalError::RecordTooLarge { .. })
    ));
    assert!(matches!(
        journal.append_batch(&[b"{}".to_vec(), Vec::new()]),
        Err(JournalError::EmptyRecord)
    ));
    assert_eq!(journal.next_offset(), 0);
    assert_eq!(journal.append(b"{}").unwrap(), 0);
    journal.close().unwrap();
}

#[test]
fn backpressure_bounds_the_queue_without_losing_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        durability: Durability::None,
        queue_bytes: 64 << 10,
        ..JournalConfig::default()
    };
    let journal = Journal::open(tmp.path(), config).unwrap();
    for i in 0..20_000 {
        assert_eq!(journal.append(payload(i)).unwrap(), i);
    }
    journal.close().unwrap();
    assert_eq!(verify(tmp.path()).records, 20_000);
}

// ---- torn tails -------------------------------------------------------------------------------

fn active_segment(dir: &Path) -> PathBuf {
    files(dir, ".log").pop().expect("an unsealed segment")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn torn_tail_is_cut_for_every_truncation_length_of_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    fill(&base, 5, JournalConfig::default());
    let log = active_segment(&base);
    let full = std::fs::read(&log).unwrap();
    // Frame length of the last record: total minus the first four frames.
    let four = {
        let j = tempfile::tempdir().unwrap();
        fill(j.path(), 4, JournalConfig::default());
        std::fs::metadata(active_segment(j.path())).unwrap().len() as usize
    };
    assert!(four < full.len());
    for keep in four..full.len() {
        let dir = tmp.path().join(format!("cut-{keep}"));
        copy_dir(&base, &dir);
        std::fs::write(active_segment(&dir), &full[..keep]).unwrap();
        let torn = (keep - four) as u64;
        let report = verify(&dir);
        assert!(report.is_ok(), "a torn tail is not damage: {report:?}");
        assert_eq!((report.records, report.torn_tail_bytes), (4, torn));
        let journal = Journal::open(&dir, JournalConfig::default()).unwrap();
        assert_eq!(journal.recovery_report().torn_tail_bytes, torn);
        assert_eq!(journal.next_offset(), 4, "keep {keep}");
        assert_eq!(journal.append(payload(99)).unwrap(), 4);
        journal.close().unwrap();
        assert_eq!(verify(&dir).records, 5);
        if torn > 0 {
            let kept: Vec<_> = files(&dir.join("quarantine"), ".bin");
            assert_eq!(std::fs::read(&kept[0]).unwrap(), &full[four..keep]);
        }
    }
}

#[test]
fn zero_filled_tail_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 10, JournalConfig::default());
    let log = active_segment(tmp.path());
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&log, &bytes).unwrap();
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    assert_eq!(journal.recovery_report().torn_tail_bytes, 4096);
    assert_eq!(journal.next_offset(), 10);
    journal.close().unwrap();
}

// ---- damage in the unsealed (active) segment --------------------------------------------------

/// Byte ranges of the frames of an unsealed segment.
fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize + 8;
        out.push(pos..pos + len);
        pos += len;
    }
    out
}

fn damaged_active(
    edit: impl Fn(&mut Vec<u8>, &[std::ops::Range<usize>]),
) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 10, JournalConfig::default());
    let log = active_segment(tmp.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let ranges = frames(&bytes);
    edit(&mut bytes, &ranges);
    std::fs::write(&log, &bytes).unwrap();
    (tmp, log)
}

fn assert_damage_at(dir: &Path, offset: u64, code: &str) {
    let report = verify(dir);
    let damage = report
        .damage
        .clone()
        .unwrap_or_else(|| panic!("undetected: {report:?}"));
    assert_eq!(
        (damage.offset, damage.kind.code()),
        (offset, code),
        "{damage}"
    );
    // Counted: every record before the damage (unsealed), or before the damaged block (sealed:
    // a block counts only once its end hash checked).
    assert!(report.records <= offset, "{report:?}");
}

#[test]
fn bit_flip_in_active_segment_is_detected_and_blocks_appends() {
    for frame in [0usize, 4, 8] {
        for bit in [0u8, 3, 7] {
            let (tmp, _) = damaged_active(|b, r| b[r[frame].start + 30] ^= 1 << bit);
            assert_damage_at(tmp.path(), frame as u64, "checksum");
            match Journal::open(tmp.path(), JournalConfig::default()) {
                Err(JournalError::Damaged(d)) => assert_eq!(d.offset, frame as u64),
                other => panic!("open must refuse damaged journal: {other:?}"),
            }
        }
    }
}

#[test]
fn deleted_record_in_active_segment_is_detected() {
    let (tmp, _) = damaged_active(|b, r| {
        b.drain(r[3].clone());
    });
    assert_damage_at(tmp.path(), 3, "offset_sequence");
}

#[test]
fn reordered_records_in_active_segment_are_detected() {
    let (tmp, _) = damaged_active(|b, r| {
        let (a, c) = (b[r[5].clone()].to_vec(), b[r[6].clone()].to_vec());
        let mut swapped = c;
        swapped.extend_from_slice(&a);
        b.splice(r[5].start..r[6].end, swapped);
    });
    assert_damage_at(tmp.path(), 5, "offset_sequence");
}

#[test]
fn edited_record_with_recomputed_checksum_breaks_the_chain() {
    let (tmp, _) = damaged_active(|b, r| {
        let f = r[2].clone();
        // Change the payload and fix the CRC, as a forger would; the chain hash stays stale.
        let last = f.end - 2;
        b[last] = b'7';
        let crc = crc32c(&b[f.start + 8..f.end]);
        b[f.start + 4..f.start + 8].copy_from_slice(&crc.to_le_bytes());
    });
    assert_damage_at(tmp.path(), 2, "chain_broken");
}

fn crc32c(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32C, independent of the library's implementation.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn repair_cuts_damage_and_records_it() {
    let (tmp, _) = damaged_active(|b, r| b[r[6].start + 20] ^= 0xff);
    assert!(matches!(
        Journal::open(tmp.path(), JournalConfig::default()),
        Err(JournalError::Damaged(_))
    ));
    let config = JournalConfig {
        repair: true,
        ..JournalConfig::default()
    };
    let journal = Journal::open(tmp.path(), config).unwrap();
    let report = journal.recovery_report().clone();
    assert_eq!(report.repaired.as_ref().map(|d| d.offset), Some(6));
    assert_eq!(
        journal.next_offset(),
        7,
        "records 0..6 kept, the repair note at 6"
    );
    let all = read_all(&journal, StartAt::Earliest);
    let note: serde_json::Value = serde_json::from_slice(&all[6].1).unwrap();
    assert_eq!(note["type"], "journal.repaired");
    assert_eq!(note["cut_from_offset"], 6);
    journal.close().unwrap();
    assert!(verify(tmp.path()).is_ok());
    assert!(report.quarantine.unwrap().exists());
}

// ---- damage in sealed segments ----------------------------------------------------------------

/// Builds a journal of sealed segments (plus an empty active one) and returns the sealed files.
fn sealed_journal(dir: &Path) -> Vec<PathBuf> {
    fill(dir, 300, small(Durability::None));
    let sealed = files(dir, ".seg.zst");
    assert!(sealed.len() >= 5);
    sealed
}

#[test]
fn bit_flip_in_sealed_block_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    let target = &sealed[2];
    let mut bytes = std::fs::read(target).unwrap();
    let footer = decode_footer_from_file_bytes(&bytes).unwrap();
    let block = &footer.blocks[1];
    bytes[block.file_pos as usize + block.compressed_len as usize / 2] ^= 0x04;
    std::fs::write(target, &bytes).unwrap();
    assert_damage_at(tmp.path(), block.first_offset, "block");
    // Open does not scan sealed segments, but a reader is never served the damaged block.
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    let mut reader = journal.reader(StartAt::Offset(block.first_offset)).unwrap();
    match reader.next() {
        Err(JournalError::Damaged(d)) => assert_eq!(d.offset, block.first_offset),
        other => panic!("expected damage, got {other:?}"),
    }
    journal.close().unwrap();
}

#[test]
fn bit_flip_in_sealed_footer_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    let target = &sealed[1];
    let mut bytes = std::fs::read(target).unwrap();
    let n = bytes.len();
    bytes[n - 16 - BLOCK_ENTRY_BYTES / 2] ^= 0x01;
    std::fs::write(target, &bytes).unwrap();
    assert!(
        decode_footer_from_file_bytes(&bytes).is_err(),
        "footer checksum catches it"
    );
    let report = verify(tmp.path());
    assert_eq!(report.damage.unwrap().kind.code(), "footer");
}

#[test]
fn missing_sealed_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    let gone = decode_footer_from_file_bytes(&std::fs::read(&sealed[2]).unwrap()).unwrap();
    std::fs::remove_file(&sealed[2]).unwrap();
    assert_damage_at(tmp.path(), gone.first_offset, "missing_segment");
    match Journal::open(tmp.path(), JournalConfig::default()) {
        Err(JournalError::Damaged(d)) => {
            assert!(matches!(d.kind, DamageKind::MissingSegment { .. }))
        }
        other => panic!("expected damage, got {other:?}"),
    }
}

/// Rewrites one block of a sealed segment as a forger would: decompress, edit the records,
/// recompress, and fix the block index, positions and footer checksum, without being able to
/// recompute the chain (that needs every later hash to change too).
fn tamper_block(path: &Path, block_index: usize, edit: impl Fn(&mut Vec<Vec<u8>>)) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let mut footer = decode_footer_from_file_bytes(&bytes).unwrap();
    let entry = footer.blocks[block_index].clone();
    let start = entry.file_pos as usize;
    let raw =
        decompress_block(&bytes[start..start + entry.compressed_len as usize], &entry).unwrap();
    // Split into records: varint len, varint delta, varint version, payload, 4-byte prefix.
    let mut records = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let (len, a) = varint::decode(&raw[at..]).unwrap();
        let (_, b) = varint::decode(&raw[at + a..]).unwrap();
        let (_, c) = varint::decode(&raw[at + a + b..]).unwrap();
        let end = at + a + b + c + len as usize + 4;
        records.push(raw[at..end].to_vec());
        at = end;
    }
    edit(&mut records);
    let new_raw: Vec<u8> = records.concat();
    let compressed = zstd::bulk::compress(&new_raw, 3).unwrap();
    let delta = compressed.len() as i64 - entry.compressed_len as i64;
    footer.blocks[block_index].compressed_len = compressed.len() as u32;
    footer.blocks[block_index].raw_len = new_raw.len() as u32;
    footer.blocks[block_index].compressed_crc = crc32c(&compressed);
    for b in footer.blocks.iter_mut().skip(block_index + 1) {
        b.file_pos = (b.file_pos as i64 + delta) as u64;
    }
    let trailer = bytes.len() - 16;
    let footer_len = u32::from_le_bytes(bytes[trailer..trailer + 4].try_into().unwrap()) as usize;
    let footer_start = trailer - footer_len;
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&compressed);
    out.extend_from_slice(&bytes[start + entry.compressed_len as usize..footer_start]);
    let encoded = footer.encode();
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(&encoded).to_le_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    std::fs::write(path, out).unwrap();
    entry.first_offset
}

#[test]
fn deleted_record_in_sealed_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    let first = tamper_block(&sealed[1], 0, |records| {
        records.remove(2);
    });
    assert_damage_at(tmp.path(), first + 2, "chain_broken");
}

#[test]
fn reordered_records_in_sealed_segment_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    let first = tamper_block(&sealed[3], 0, |records| records.swap(1, 2));
    assert_damage_at(tmp.path(), first + 1, "chain_broken");
}

#[test]
fn edited_payload_in_sealed_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    let first = tamper_block(&sealed[2], 0, |records| {
        let r = &mut records[0];
        let i = r.len() - 8;
        r[i] = if r[i] == b'1' { b'2' } else { b'1' };
    });
    assert_damage_at(tmp.path(), first, "chain_broken");
}

#[test]
fn unsealed_leftovers_of_a_crash_during_sealing_are_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    // A crash after the rename but before the unsealed file was removed: both exist.
    let last = sealed.last().unwrap();
    let footer = decode_footer_from_file_bytes(&std::fs::read(last).unwrap()).unwrap();
    let twin = tmp
        .path()
        .join(logbook::journal::names::raw(footer.first_offset));
    std::fs::write(&twin, b"stale unsealed copy").unwrap();
    // A crash while writing a sealed segment: a temp file.
    let temp = tmp
        .path()
        .join(logbook::journal::names::sealed_temp(900, 901));
    std::fs::write(&temp, b"partial").unwrap();
    assert!(verify(tmp.path()).is_ok());
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    assert!(!twin.exists() && !temp.exists());
    assert_eq!(read_all(&journal, StartAt::Earliest).len(), 300);
    journal.close().unwrap();
}

#[test]
fn rolled_but_unsealed_segments_are_sealed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    // Age-based rolling with a long-lived writer: segments roll even with little traffic.
    let config = JournalConfig {
        segment_age: Duration::from_millis(20),
        ..JournalConfig::default()
    };
    let journal = Journal::open(tmp.path(), config.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while files(tmp.path(), ".seg.zst").len() < 3 {
        assert!(Instant::now() < deadline, "age-based roll never happened");
        journal.append(payload(i)).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    journal.close().unwrap();
    let report = verify(tmp.path());
    assert!(report.is_ok());
    assert_eq!(report.records, i);
}

#[test]
fn segment_left_unsealed_between_sealed_ones_is_read_verified_and_sealed_on_open() {
    use logbook::journal::record::encode_frame;
    use logbook::journal::segment::decode_segment;
    let tmp = tempfile::tempdir().unwrap();
    let sealed = sealed_journal(tmp.path());
    // As if sealing of segment 2 had failed while segment 3 sealed: turn it back into frames.
    let (footer, records) = decode_segment(&std::fs::read(&sealed[2]).unwrap()).unwrap();
    let mut frames = Vec::new();
    let mut prev = footer.prev_hash;
    for r in &records {
        prev = encode_frame(
            &mut frames,
            &prev,
            r.offset,
            r.ts_us,
            r.schema_version,
            &r.payload,
        );
    }
    std::fs::remove_file(&sealed[2]).unwrap();
    let raw = tmp
        .path()
        .join(logbook::journal::names::raw(footer.first_offset));
    std::fs::write(&raw, &frames).unwrap();
    let report = verify(tmp.path());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 300);
    // Time seeks find records in the unsealed segment between sealed ones (read-only: the
    // writer would seal it on open).
    let ro = Journal::open_read_only(tmp.path(), JournalConfig::default()).unwrap();
    let mut reader = ro.reader(StartAt::Earliest).unwrap();
    let mut stamps = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        stamps.push(r.ts_us);
    }
    for probe in [
        0,
        footer.first_offset,
        footer.first_offset + 3,
        footer.last_offset,
        299,
    ] {
        let t = stamps[probe as usize];
        let expected = stamps.iter().position(|s| *s >= t).unwrap() as u64;
        let position = ro.reader(StartAt::Time(t)).unwrap().position();
        assert_eq!(position, expected, "probe {probe}");
    }
    drop(ro);
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    assert_eq!(read_all(&journal, StartAt::Earliest).len(), 300);
    journal.append(payload(300)).unwrap();
    journal.close().unwrap();
    assert!(!raw.exists(), "sealed on open");
    assert_eq!(verify(tmp.path()).records, 301);
}

#[test]
fn replayed_final_frame_is_damage_not_a_torn_tail() {
    // A valid frame in the wrong place was not torn by a crash: open and verify agree.
    let (tmp, _) = damaged_active(|b, r| {
        let copy = b[r[5].clone()].to_vec();
        b.extend_from_slice(&copy);
    });
    assert_damage_at(tmp.path(), 10, "offset_sequence");
    match Journal::open(tmp.path(), JournalConfig::default()) {
        Err(JournalError::Damaged(d)) => assert_eq!(d.offset, 10),
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn readers_and_verify_beside_a_live_writer_that_seals_constantly() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(tmp.path(), small(Durability::None)).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (journal, stop) = (journal.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200_000 {
                journal.append(payload(i)).unwrap();
                i += 1;
            }
        })
    };
    let mut last = 0;
    // Until the writer has sealed many segments under the readers' feet (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while files(tmp.path(), ".seg.zst").len() < 150 && Instant::now() < deadline {
        let report = verify(tmp.path());
        assert!(report.is_ok(), "{report:?}");
        let ro = Journal::open_read_only(tmp.path(), JournalConfig::default()).unwrap();
        let all = read_all(&ro, StartAt::Earliest);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (o, p))| *o == i as u64 && *p == payload(*o))
        );
        assert!(
            all.len() as u64 >= last,
            "a later snapshot never shows less"
        );
        last = all.len() as u64;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    Arc::into_inner(journal).unwrap().close().unwrap();
    assert!(last > 0);
    assert!(
        files(tmp.path(), ".seg.zst").len() >= 150,
        "the writer sealed under the readers"
    );
}
