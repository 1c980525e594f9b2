//! Items 5 and 6: sealed replay vs decompress + parse of zstd NDJSON, verify throughput, and
//! on-disk size vs NDJSON.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use logbook::envelope::to_json_line;
use logbook::journal::{Durability, Journal, JournalConfig, StartAt, verify_dir};
use serde_json::Value;

use crate::events::{EventGen, Line};
use crate::util::{
    CpuSnapshot, CpuUse, Report, Settings, Target, files_size, fmt_ratio, mib, rate,
};

const BLOCK: usize = 1 << 20;

pub fn run(settings: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let n = settings.replay_events;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal");
    let config = JournalConfig {
        durability: Durability::None,
        segment_bytes: 32 << 20,
        ..JournalConfig::default()
    };
    let build = Instant::now();
    let payload_bytes = build_journal(&path, &config, n)?;
    let built = build.elapsed();
    let (sealed_bytes, sealed) = files_size(&path, ".seg.zst");
    let (raw_bytes, raw) = files_size(&path, ".log");
    report.note(format!(
        "5 replay journal: {n} events ({} of payload, mean {:.1} B), built with `none` + \
         `append_batch` of 1024 in {:.1} s (incl. close and sealing); {sealed} sealed segments \
         ({}), {raw} unsealed file(s) holding {raw_bytes} bytes. `close` does not seal the \
         active segment, so the bench reopens the journal with `segment_age` = 20 ms and \
         closes it again to roll and seal the tail.",
        mib(payload_bytes),
        payload_bytes as f64 / n as f64,
        built.as_secs_f64(),
        mib(sealed_bytes),
    ));
    anyhow::ensure!(
        raw_bytes == 0,
        "the tail was not sealed ({raw_bytes} bytes)"
    );

    // verify_dir throughput.
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let verified = verify_dir(
        &path,
        logbook::journal::record::PAYLOAD_BYTES_MAX,
        &mut |_| {},
    )?;
    let verify_time = start.elapsed();
    let verify_cpu = CpuSnapshot::take().since(&before);
    anyhow::ensure!(
        verified.is_ok() && verified.records == n,
        "verify_dir: {verified:?}"
    );

    // Sealed replay through a reader.
    let journal = Journal::open_read_only(&path, config.clone())?;
    let (replay_time, count, replay_cpu) = replay(&journal, |r| {
        black_box(&r);
        Ok(())
    })?;
    anyhow::ensure!(count == n, "replayed {count} of {n}");
    let (replay_parse_time, _, replay_parse_cpu) = replay(&journal, |r| {
        black_box(serde_json::from_slice::<Value>(&r.payload)?);
        Ok(())
    })?;

    // The same events as `logbook events` NDJSON, compressed in ~1 MiB blocks.
    let mut ndjson = Vec::with_capacity((n as usize) * 420);
    replay(&journal, |r| {
        ndjson.extend_from_slice(to_json_line(&r).as_bytes());
        ndjson.push(b'\n');
        Ok(())
    })?;
    drop(journal);
    let blocks = compress_blocks(&ndjson)?;
    let zstd_bytes: usize = blocks.iter().map(|(c, _)| c.len()).sum();
    let ndjson_len = ndjson.len();
    drop(ndjson);
    let (parse_value_time, lines, value_cpu) = decompress_parse(&blocks, |line| {
        black_box(serde_json::from_slice::<Value>(line)?);
        Ok(())
    })?;
    anyhow::ensure!(lines == n, "parsed {lines} lines of {n}");
    let (parse_typed_time, _, typed_cpu) = decompress_parse(&blocks, |line| {
        black_box(serde_json::from_slice::<Line>(line)?);
        Ok(())
    })?;

    let per_s = |d: Duration| n as f64 / d.as_secs_f64();
    let replay_rate = per_s(replay_time);
    let value_rate = per_s(parse_value_time);
    let typed_rate = per_s(parse_typed_time);
    report.note(format!(
        "5 background load (cores) during: replay {:.2}, NDJSON Value parse {:.2}, typed parse \
         {:.2}, replay + parse {:.2}, verify {:.2}",
        replay_cpu.bg(),
        value_cpu.bg(),
        typed_cpu.bg(),
        replay_parse_cpu.bg(),
        verify_cpu.bg()
    ));
    report.bg = Some(replay_cpu.bg());
    report.compare(
        "5",
        "sealed replay: `reader(Earliest)` + `next()` over all records (decompress, decode, verify chain)",
        (replay_rate, rate(replay_rate)),
        "zstd NDJSON 1 MiB blocks: decompress + parse into `serde_json::Value`",
        (value_rate, rate(value_rate)),
        Target::AtLeast(0.90),
    );
    report.compare(
        "5",
        "sealed replay (same measurement as the row above)",
        (replay_rate, rate(replay_rate)),
        "zstd NDJSON 1 MiB blocks: decompress + parse into a typed struct",
        (typed_rate, rate(typed_rate)),
        Target::AtLeast(0.90),
    );
    let rp = per_s(replay_parse_time);
    report.bg = Some(replay_parse_cpu.bg());
    report.compare(
        "5",
        "sealed replay + parse each payload into `serde_json::Value`",
        (rp, rate(rp)),
        "zstd NDJSON decompress + parse into `Value`",
        (value_rate, rate(value_rate)),
        Target::None,
    );
    let vr = per_s(verify_time);
    report.bg = Some(verify_cpu.bg());
    report.plain(
        "5",
        "`verify_dir` over the sealed journal",
        format!(
            "{} ({:.0} MiB/s of NDJSON-equivalent)",
            rate(vr),
            ndjson_len as f64 / (1 << 20) as f64 / verify_time.as_secs_f64()
        ),
    );

    report.bg = None;
    let ratio = ndjson_len as f64 / sealed_bytes as f64;
    report.custom(
        "6",
        "on-disk size: sealed journal files (`*.seg.zst`)",
        mib(sealed_bytes),
        "the same records as `logbook events` NDJSON (`to_json_line`)",
        mib(ndjson_len as u64),
        format!("{} smaller", fmt_ratio(ratio)),
        "≥ 7x smaller".into(),
        Some(ratio >= 7.0),
    );
    report.custom(
        "6",
        "context: zstd level 3 alone on that NDJSON, ~1 MiB blocks",
        mib(zstd_bytes as u64),
        "NDJSON",
        mib(ndjson_len as u64),
        format!(
            "{} smaller",
            fmt_ratio(ndjson_len as f64 / zstd_bytes as f64)
        ),
        "—".into(),
        None,
    );
    report.note(format!(
        "6 sizes per event: sealed journal {:.1} B, NDJSON {:.1} B, zstd(NDJSON) {:.1} B, raw \
         payload {:.1} B",
        sealed_bytes as f64 / n as f64,
        ndjson_len as f64 / n as f64,
        zstd_bytes as f64 / n as f64,
        payload_bytes as f64 / n as f64
    ));
    Ok(())
}

/// Builds the replay journal; returns the total payload bytes.
fn build_journal(path: &Path, config: &JournalConfig, n: u64) -> anyhow::Result<u64> {
    let mut events = EventGen::new(0x5eed_0005);
    let journal = Journal::open(path, config.clone())?;
    let mut chunk = Vec::with_capacity(1024);
    let mut bytes = 0u64;
    for i in 0..n {
        let payload = serde_json::to_vec(&events.event())?;
        bytes += payload.len() as u64;
        chunk.push(payload);
        if chunk.len() == 1024 || i + 1 == n {
            journal.append_batch(&chunk)?;
            chunk.clear();
        }
    }
    journal.close()?;
    // Roll and seal the active segment: reopen with a short segment age and let it expire.
    let journal = Journal::open(
        path,
        JournalConfig {
            segment_age: Duration::from_millis(20),
            ..config.clone()
        },
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while files_size(path, ".log").0 > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    journal.close()?;
    Ok(bytes)
}

/// Reads every record with a fresh reader, calling `f` on each; returns time, count, CPU use.
fn replay(
    journal: &Journal,
    mut f: impl FnMut(logbook::journal::Record) -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, u64, CpuUse)> {
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let mut reader = journal.reader(StartAt::Earliest)?;
    let mut n = 0u64;
    while let Some(record) = reader.next()? {
        f(record)?;
        n += 1;
    }
    let elapsed = start.elapsed();
    Ok((elapsed, n, CpuSnapshot::take().since(&before)))
}

/// zstd level 3 over `ndjson` in blocks of whole lines of at least 1 MiB (the last smaller).
fn compress_blocks(ndjson: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, usize)>> {
    let mut compressor = zstd::bulk::Compressor::new(3)?;
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < ndjson.len() {
        let mut end = (start + BLOCK).min(ndjson.len());
        while end < ndjson.len() && ndjson[end - 1] != b'\n' {
            end += 1;
        }
        let raw = &ndjson[start..end];
        blocks.push((compressor.compress(raw)?, raw.len()));
        start = end;
    }
    Ok(blocks)
}

/// Decompresses every block and calls `f` on each line; returns time, line count, CPU use.
fn decompress_parse(
    blocks: &[(Vec<u8>, usize)],
    mut f: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, u64, CpuUse)> {
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let mut decompressor = zstd::bulk::Decompressor::new()?;
    let mut n = 0u64;
    for (compressed, raw_len) in blocks {
        let raw = decompressor.decompress(compressed, *raw_len)?;
        for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            f(line)?;
            n += 1;
        }
    }
    let elapsed = start.elapsed();
    Ok((elapsed, n, CpuSnapshot::take().since(&before)))
}
