//! Items 7 and 8: open time of a large journal, and RSS while it grows.

use std::time::{Duration, Instant};

use logbook::journal::{Durability, Journal, JournalConfig};

use crate::events::EventGen;
use crate::util::{CpuSnapshot, Report, Settings, files_size, mib, rate, rss_bytes, thousands};

const CHUNK: usize = 4096;
/// Allowed RSS growth between the first checkpoint and the end for "flat".
const FLAT_SLACK: u64 = 32 << 20;

pub fn run(settings: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let n = settings.open_events;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal");
    let baseline = rss_bytes();
    let journal = Journal::open(
        &path,
        JournalConfig {
            durability: Durability::None,
            ..JournalConfig::default()
        },
    )?;
    let mut events = EventGen::new(0x5eed_0007);
    // RSS every tenth of the way; the row shows 1/10, 1/2 and the end (1M, 5M, 10M by default).
    let checkpoints: Vec<u64> = (1..=10).map(|k| n * k / 10).collect();
    let mut next_checkpoint = 0;
    let mut rss = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let build_before = CpuSnapshot::take();
    let start = Instant::now();
    let mut done = 0u64;
    while done < n {
        let take = (n - done).min(CHUNK as u64);
        for _ in 0..take {
            chunk.push(serde_json::to_vec(&events.event())?);
        }
        journal.append_batch(&chunk)?;
        chunk.clear();
        done += take;
        while next_checkpoint < checkpoints.len() && done >= checkpoints[next_checkpoint] {
            rss.push((done, rss_bytes()));
            next_checkpoint += 1;
        }
    }
    let appended = start.elapsed();
    let build_cpu = CpuSnapshot::take().since(&build_before);
    let (backlog_bytes, backlog) = files_size(&path, ".log");
    let close_start = Instant::now();
    journal.close()?;
    let closing = close_start.elapsed();
    let (sealed_bytes, sealed) = files_size(&path, ".seg.zst");
    let (tail_bytes, _) = files_size(&path, ".log");
    report.note(format!(
        "7/8 open-time journal: {n} events appended with `none` + `append_batch` of {CHUNK} in \
         {:.1} s ({}); at the end of appending {backlog} unsealed segment files ({}) were \
         waiting for the sealer; `close` took {:.1} s; result: {sealed} sealed segments ({}) \
         and an unsealed active tail of {}.",
        appended.as_secs_f64(),
        rate(n as f64 / appended.as_secs_f64()),
        mib(backlog_bytes),
        closing.as_secs_f64(),
        mib(sealed_bytes),
        mib(tail_bytes),
    ));

    let mut opens = Vec::new();
    let before = CpuSnapshot::take();
    for _ in 0..5 {
        let start = Instant::now();
        let journal = Journal::open(&path, JournalConfig::default())?;
        opens.push(start.elapsed());
        anyhow::ensure!(
            journal.next_offset() == n,
            "reopened at {}",
            journal.next_offset()
        );
        journal.close()?;
    }
    let first = opens[0];
    let max = opens.iter().max().copied().unwrap_or_default();
    let mut sorted = opens.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    report.bg = Some(CpuSnapshot::take().since(&before).bg());
    report.bound(
        "7",
        &format!(
            "`Journal::open` of a {n}-event journal (first / median / max of 5, warm page cache)"
        ),
        format!("{} / {} / {}", ms(first), ms(median), ms(max)),
        "max < 100 ms".into(),
        max < Duration::from_millis(100),
    );

    let show = |(at, bytes): &(u64, u64)| format!("at {}: {}", thousands(*at as f64), mib(*bytes));
    let values: Vec<String> = [0, 4, 9]
        .iter()
        .filter_map(|&i| rss.get(i))
        .map(show)
        .collect();
    report.note(format!(
        "8 VmRSS at every tenth of the build: {}",
        rss.iter().map(show).collect::<Vec<_>>().join("; ")
    ));
    let growth = match (rss.first(), rss.last()) {
        (Some((_, a)), Some((_, b))) => b.saturating_sub(*a),
        _ => 0,
    };
    report.bg = Some(build_cpu.bg());
    report.bound(
        "8",
        "VmRSS while appending (events appended: RSS)",
        format!("before open: {}; {}", mib(baseline), values.join("; ")),
        format!(
            "flat: growth from first to last checkpoint ≤ {} (was {})",
            mib(FLAT_SLACK),
            mib(growth)
        ),
        growth <= FLAT_SLACK,
    );
    report.bg = None;
    Ok(())
}
