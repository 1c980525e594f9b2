//! S3 benchmarks (issue 5, "Proof (bench)"), side by side in one run against one moto_server:
//!
//! 1. **Ship**: `Shipper::ship_segment` over every sealed segment of the journal (MiB/s),
//!    beside raw `PutObject` of the same bytes through the same SDK client, sequentially
//!    (concurrency 1, as the shipper). Target ≥ 0.80 of raw. Two more raw variants attribute
//!    the gap: the PUT with the shipper's `If-None-Match: *` and metadata, and that plus the
//!    per-segment `head.json` PUT.
//! 2. **Restore**: `logbook::s3::restore` at concurrency 1 and 4 (the default), beside raw
//!    ListObjectsV2 + `GetObject` of the same objects at the same concurrency. The compared
//!    part is download + verify + write (up to the last segment written, taken from restore's
//!    progress callback). Target ≥ 0.80 of raw. An experiment row, raw GET + BLAKE3 +
//!    `verify_segment` in memory at the same concurrency, gives the floor of any restore that
//!    checks every record; a table of local costs (hashing, decompression, the chain hashes,
//!    write + fsync, the progress commit) attributes the gaps.
//! 3. **End to end**: the whole restore of the ~1M-event journal (list, download, verify,
//!    write + fsync, `head.json` check, projection rebuild), time and events/s.
//!
//! Rounds alternate the sides (rotating which goes first) and the tables give the median with
//! the range; CPU columns are cores used per wall second (this process, moto_server, and every
//! other process on the machine). moto_server keeps objects in memory in one Python process on
//! loopback: it is the "server" of both sides, so the ratios are the meaningful numbers, not
//! the absolute MiB/s (a real S3 has more latency per request and less bandwidth per
//! connection).
//!
//! `cargo bench --bench s3` (1M events, about 75 s on 2 cores once built);
//! `LOGBOOK_BENCH_QUICK=1` for a smoke run (100k events, a few seconds). Needs
//! `.venv/bin/moto_server` (`./scripts/test.sh`). Progress goes to stderr; the markdown report
//! to stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/events.rs"]
mod events;
#[path = "s3/measure.rs"]
mod measure;
#[path = "../tests/support/moto.rs"]
mod moto;
#[path = "support/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use logbook::s3::S3Location;
use measure::{Put, Sample};

const BUCKET: &str = "logbook-bench";
const TARGET: f64 = 0.80;

async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

fn location(prefix: &str) -> S3Location {
    S3Location {
        bucket: BUCKET.into(),
        prefix: prefix.into(),
    }
}

/// Median, min and max of `f` over samples.
fn stats(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = samples.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn verdict(ratio: f64) -> &'static str {
    if ratio >= TARGET { "met" } else { "NOT met" }
}

/// A table row: MiB/s median [range], cores of this process and of moto per wall second.
fn row(name: &str, samples: &[Sample], ratio: Option<f64>) {
    let (m, lo, hi) = stats(samples, Sample::mib_s);
    let wall = median(samples.iter().map(|s| s.wall.as_secs_f64()).collect());
    // CPU per wall second over all rounds (a round is often shorter than a 10 ms tick).
    let walls: f64 = samples.iter().map(|s| s.wall.as_secs_f64()).sum();
    let me = samples.iter().map(|s| s.self_cpu).sum::<f64>() / walls;
    let moto = samples.iter().map(|s| s.moto_cpu).sum::<f64>() / walls;
    let bg = samples.iter().map(|s| s.bg_cpu).sum::<f64>() / walls;
    let ratio = ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}×"));
    println!(
        "| {name} | {wall:.3} s | {m:.1} MiB/s [{lo:.1}–{hi:.1}] | {ratio} | {me:.2} | {moto:.2} | {bg:.2} |"
    );
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("LOGBOOK_BENCH_QUICK").is_some();
    let (shape, (ship_rounds, rounds)) = if quick {
        (
            events::Shape {
                upgrades: 10,
                tasks: 100,
                progress: 95,
                artifacts: 50,
            },
            (3, 2),
        )
    } else {
        (
            events::Shape {
                upgrades: 100,
                tasks: 100,
                progress: 95,
                artifacts: 50,
            },
            (21, 7),
        )
    };
    let began = Instant::now();
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("source");

    eprintln!("recording the journal (default 32 MiB segments)...");
    let t = Instant::now();
    let (recorder, events) = events::record(&data, &shape);
    let paths: Vec<PathBuf> = recorder
        .journal()
        .sealed_segments()
        .into_iter()
        .map(|s| s.path)
        .collect();
    let objects = measure::load_objects(&paths);
    let total_bytes: u64 = objects.iter().map(|o| o.bytes.len() as u64).sum();
    let mib = total_bytes as f64 / 1_048_576.0;
    eprintln!(
        "  {events} events in {:.1?}; {} sealed segments, {mib:.1} MiB",
        t.elapsed(),
        objects.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let moto = moto::Moto::start();
    let pids = measure::child_pids();
    let sdk = rt.block_on(sdk(&moto.endpoint()));
    let client = logbook::s3::client(&sdk);
    rt.block_on(client.create_bucket().bucket(BUCKET).send())?;
    // Warm-up: connections, moto's first-request paths.
    rt.block_on(measure::raw_put(
        &client,
        BUCKET,
        "warmup",
        &objects[..1],
        Put::Plain,
        &pids,
    ));
    rt.block_on(measure::raw_get(
        &client,
        &location("warmup"),
        1,
        false,
        &pids,
    ));

    // 1. Ship.
    let kinds = ["raw", "cond", "cond-head", "ship"];
    let mut ship: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
    for r in 0..ship_rounds {
        eprintln!("ship round {}/{ship_rounds}...", r + 1);
        for i in 0..kinds.len() {
            let k = (i + r) % kinds.len();
            let prefix = format!("{}-{r}", kinds[k]);
            let sample = rt.block_on(async {
                match k {
                    0 => {
                        measure::raw_put(&client, BUCKET, &prefix, &objects, Put::Plain, &pids)
                            .await
                    }
                    1 => {
                        measure::raw_put(
                            &client,
                            BUCKET,
                            &prefix,
                            &objects,
                            Put::Conditional,
                            &pids,
                        )
                        .await
                    }
                    2 => {
                        measure::raw_put(
                            &client,
                            BUCKET,
                            &prefix,
                            &objects,
                            Put::ConditionalHead,
                            &pids,
                        )
                        .await
                    }
                    _ => {
                        measure::ship(&data, recorder.clone(), &client, location(&prefix), &pids)
                            .await
                    }
                }
            });
            assert_eq!(sample.bytes, total_bytes);
            ship[k].push(sample);
        }
    }

    // 2 and 3. Restore from a prefix the shipper wrote (with its head.json).
    let source = location("ship-0");
    // Per round and concurrency: raw GET, raw GET + in-memory verify, and restore, rotating
    // the order.
    let mut gets: Vec<Vec<Sample>> = vec![Vec::new(); 2];
    let mut verified: Vec<Vec<Sample>> = vec![Vec::new(); 2];
    let mut restores: Vec<Vec<measure::Restored>> = vec![Vec::new(), Vec::new()];
    for r in 0..rounds {
        for (c, concurrency) in [1usize, 4].into_iter().enumerate() {
            eprintln!(
                "restore concurrency {concurrency}, round {}/{rounds}...",
                r + 1
            );
            let target = tmp.path().join(format!("restore-{concurrency}-{r}"));
            for i in 0..3 {
                match (i + r) % 3 {
                    0 => {
                        let g = rt.block_on(measure::raw_get(
                            &client,
                            &source,
                            concurrency,
                            false,
                            &pids,
                        ));
                        assert_eq!(g.bytes, total_bytes);
                        gets[c].push(g);
                    }
                    1 => {
                        let g = rt.block_on(measure::raw_get(
                            &client,
                            &source,
                            concurrency,
                            true,
                            &pids,
                        ));
                        verified[c].push(g);
                    }
                    _ => {
                        let restored = rt.block_on(measure::restore_once(
                            &client,
                            &source,
                            &target,
                            concurrency,
                            &pids,
                        ));
                        assert_eq!(restored.events, events);
                        std::fs::remove_dir_all(&target)?;
                        restores[c].push(restored);
                    }
                }
            }
        }
    }

    eprintln!("local costs...");
    let local = measure::local_costs(&paths, &objects, &tmp.path().join("scratch"));
    drop(moto);
    let wall = began.elapsed();

    // Report.
    let segs = objects.len();
    println!(
        "\n### S3 bench ({events} events, {segs} sealed segments, {mib:.1} MiB; {ship_rounds} ship rounds, {rounds} restore rounds{})\n",
        if quick { "; QUICK" } else { "" }
    );
    println!("Ship (sequential, concurrency 1):\n");
    println!(
        "| path | time (median) | throughput | vs raw PUT | bench cores | moto cores | bg cores |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let raw_put = stats(&ship[0], Sample::mib_s).0;
    let labels = [
        "raw PutObject of the segment bytes",
        "raw PutObject + `If-None-Match: *` + the shipper's metadata",
        "… + a `head.json` PutObject per segment",
        "`Shipper::ship_segment` (read + BLAKE3 beside the lease HEAD, conditional PUT, checkpoint) + one head.json",
    ];
    for (k, label) in labels.iter().enumerate() {
        let ratio = (k > 0).then(|| stats(&ship[k], Sample::mib_s).0 / raw_put);
        row(label, &ship[k], ratio);
    }
    let ship_ratio = stats(&ship[3], Sample::mib_s).0 / raw_put;

    println!("\nRestore (download + verify + write, vs raw List + GetObject into memory):\n");
    println!(
        "| path | time (median) | throughput | vs raw GET | bench cores | moto cores | bg cores |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut restore_ratios = Vec::new();
    for (c, concurrency) in [1usize, 4].into_iter().enumerate() {
        let raw = stats(&gets[c], Sample::mib_s).0;
        row(
            &format!("raw List + GetObject, concurrency {concurrency}"),
            &gets[c],
            None,
        );
        let applied: Vec<Sample> = restores[c].iter().map(|r| r.applied).collect();
        let floor = stats(&verified[c], Sample::mib_s).0 / raw;
        row(
            &format!(
                "experiment: raw List + GetObject + BLAKE3 + verify_segment in memory, concurrency {concurrency}"
            ),
            &verified[c],
            Some(floor),
        );
        let ratio = stats(&applied, Sample::mib_s).0 / raw;
        restore_ratios.push((concurrency, ratio));
        row(
            &format!("restore, concurrency {concurrency}: list + download + verify + write/fsync"),
            &applied,
            Some(ratio),
        );
    }

    println!(
        "\nEnd-to-end restore of the whole journal (list, download, verify, write, head.json check, projection rebuild):\n"
    );
    println!(
        "| concurrency | total (median) [range] | events/s | of which download+verify+write | of which rebuild (rest) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for (c, concurrency) in [1usize, 4].into_iter().enumerate() {
        let (total, lo, hi) = stats(
            &restores[c].iter().map(|r| r.total).collect::<Vec<_>>(),
            |s| s.wall.as_secs_f64(),
        );
        let applied = median(
            restores[c]
                .iter()
                .map(|r| r.applied.wall.as_secs_f64())
                .collect(),
        );
        let rest = median(
            restores[c]
                .iter()
                .map(|r| (r.total.wall - r.applied.wall).as_secs_f64())
                .collect(),
        );
        println!(
            "| {concurrency} | {total:.2} s [{lo:.2}–{hi:.2}] | {:.0} | {applied:.2} s | {rest:.2} s |",
            events as f64 / total
        );
    }

    let per_mib = |d: Duration| d.as_secs_f64() * 1e3 / mib;
    println!("\nLocal costs (one thread, warm page cache), per MiB of segments and in total:\n");
    println!("| step | ms/MiB | total |\n|---|---:|---:|");
    for (name, d) in [
        ("ship: read file + footer + BLAKE3", local.read_hash),
        ("restore: BLAKE3 of the object only", local.blake3),
        (
            "restore: zstd decompress + CRC of every block only",
            local.decompress,
        ),
        (
            "restore: `chain_hash` (BLAKE3) of every record only",
            local.chain_hash,
        ),
        (
            "restore: BLAKE3 + verify_segment (CRC, records, chain)",
            local.verify,
        ),
        ("restore: write + fsync + rename", local.write_fsync),
    ] {
        println!("| {name} | {:.2} | {:.3} s |", per_mib(d), d.as_secs_f64());
    }
    println!(
        "| ship: one checkpoint (`Checkpoints::put`, state.sqlite), per segment | — | {:.2} ms × {segs} |",
        local.commit.as_secs_f64() * 1e3
    );

    println!(
        "\nShip: {ship_ratio:.2}× of raw PUT, target ≥ {TARGET:.2}×: {}",
        verdict(ship_ratio)
    );
    for (concurrency, ratio) in restore_ratios {
        println!(
            "Restore (concurrency {concurrency}): {ratio:.2}× of raw GET, target ≥ {TARGET:.2}×: {}",
            verdict(ratio)
        );
    }
    println!(
        "Bench wall time (recording included): {:.0} s",
        wall.as_secs_f64()
    );
    Ok(())
}
