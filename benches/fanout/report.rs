//! The markdown report (stdout): a header with the machine, then one table per section with
//! the targets stated as met or NOT met.

use crate::{cpu, eventbridge, ws};

pub fn header(quick: bool) {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# logbook subscriber benchmark");
    println!();
    println!(
        "command: `cargo bench --bench fanout`{}",
        if quick {
            " with LOGBOOK_BENCH_QUICK=1"
        } else {
            ""
        }
    );
    println!(
        "date: {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    println!("machine: nproc {nproc}, CPU {model}");
    println!("load average at the start: {}", cpu::loadavg());
}

/// The value at quantile `q` of sorted nanoseconds, in ms.
fn quantile_ms(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

use crate::procfs::thousands;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn delays(label: &str, d: &ws::Delays, target: bool) {
    let row = |what: &str, sorted: &[i64]| {
        println!(
            "| {label}: {what}, median / p99 / p99.9 / max | {:.2} / {:.2} / {:.2} / {:.2} ms | |",
            quantile_ms(sorted, 0.5),
            quantile_ms(sorted, 0.99),
            quantile_ms(sorted, 0.999),
            quantile_ms(sorted, 1.0)
        );
    };
    let p99 = quantile_ms(&d.from_ack, 0.99);
    println!(
        "| {label}: delay append-ack → client receipt, **p99** | **{p99:.2} ms** | {} |",
        if target {
            format!("< 20 ms: {}", met(p99 < 20.0 && d.missing == 0))
        } else {
            String::new()
        }
    );
    row("delay append-ack → client receipt", &d.from_ack);
    row("delay `record_all` called → client receipt", &d.from_submit);
    row("`record_all` of 100 events (call → ack)", &d.ack_waits);
    let early = d.from_ack.iter().filter(|&&x| x < 0).count();
    println!(
        "| {label}: frames received before their batch's ack (visible after the write, acked after the fdatasync) | {:.1} % | |",
        early as f64 * 100.0 / d.from_ack.len().max(1) as f64
    );
    println!(
        "| {label}: pairs not received within 60 s of the last append | {} | 0 |",
        d.missing
    );
    println!(
        "| {label}: paced rate achieved | {} events/s (worst batch {:.1} ms late) | |",
        thousands(d.events as f64 / d.wall.as_secs_f64()),
        d.late.as_secs_f64() * 1e3
    );
    println!(
        "| {label}: server CPU per delivered frame (paced run until every client caught up) | {:.2} µs (clients {:.2} µs) | |",
        d.cpu.seconds("server") * 1e6 / d.frames.max(1) as f64,
        d.cpu.seconds("clients") * 1e6 / d.frames.max(1) as f64
    );
}

pub fn fanout(s: &ws::Settings, r: &ws::Report) {
    let pairs = r.delays.from_ack.len();
    let zero = median(r.zero.iter().map(ws::Throughput::rate).collect());
    let with = median(r.with_clients.iter().map(ws::Throughput::rate).collect());
    let ratio = with / zero;
    println!(
        "\n### WebSocket fan-out: {} clients, {} events/s paced ({} per `record_all` every {:.0} ms), durability `sync` (JournalConfig::default())\n",
        s.clients,
        thousands(s.rate as f64),
        s.batch,
        s.batch as f64 * 1e3 / s.rate as f64
    );
    println!(
        "Delays over every (client, event) pair of {:.1} s after a {:.1} s warm-up ({} pairs); \
         `task.progress` events of {} B payload; server ({} tokio workers `lb-server`) and clients \
         (tokio-tungstenite, {} workers `lb-client`) in this process; unpaced runs: {} appender \
         threads × 100 events per `record_all`, {:.0} s each, {} round(s) alternating with and \
         without clients.\n",
        s.paced.as_secs_f64(),
        s.warmup.as_secs_f64(),
        thousands(pairs as f64),
        r.payload_bytes,
        s.server_workers,
        s.client_workers,
        s.producers,
        s.unpaced.as_secs_f64(),
        s.rounds
    );
    println!("| measurement | value | target |");
    println!("|---|---:|---|");
    delays("server", &r.delays, true);
    let list = |runs: &[ws::Throughput]| {
        runs.iter()
            .map(|t| thousands(t.rate()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| unpaced appends, 0 clients: median (runs) | {} events/s ({}) | |",
        thousands(zero),
        list(&r.zero)
    );
    println!(
        "| unpaced appends, {} clients attached: median (runs) | {} events/s ({}) | |",
        s.clients,
        thousands(with),
        list(&r.with_clients)
    );
    println!(
        "| append throughput with clients ÷ without | {ratio:.2} | ≥ 0.90: {} |",
        met(ratio >= 0.9)
    );
    let delivered: Vec<f64> = r
        .with_clients
        .iter()
        .map(|t| t.frames as f64 / t.wall.as_secs_f64())
        .collect();
    println!(
        "| frames delivered while appending unpaced with clients (median) | {} frames/s | |",
        thousands(median(delivered))
    );
    let (n, c) = r.costs;
    println!(
        "| per record, alone ({} records): journal read / + upcast / + `to_json_line` | {:.2} / {:.2} / {:.2} µs | |",
        thousands(n as f64),
        c[0],
        c[1],
        c[2]
    );
    match &r.proto {
        Ok((proto_delays, pw)) => {
            delays("prototype", proto_delays, false);
            println!(
                "| prototype: unpaced appends, {} clients attached | {} events/s (÷ 0-client median: {:.2}; {} frames/s delivered) | |",
                s.clients,
                thousands(pw.rate()),
                pw.rate() / zero,
                thousands(pw.frames as f64 / pw.wall.as_secs_f64())
            );
        }
        Err(error) => println!("| prototype | not measured: {error} | |"),
    }
    println!(
        "\nCPU (2 cores; `server` = the server runtime's threads, `clients` = the client runtime's, \
         `other processes` = the rest of the machine):\n"
    );
    println!("- paced run: {}", r.delays.cpu.describe());
    for (i, (z, w)) in r.zero.iter().zip(&r.with_clients).enumerate() {
        println!(
            "- round {}, unpaced, 0 clients: {}",
            i + 1,
            z.cpu.describe()
        );
        println!(
            "- round {}, unpaced, {} clients: {}",
            i + 1,
            s.clients,
            w.cpu.describe()
        );
    }
    if let Some(last) = r.zero.last() {
        println!("- last unpaced, 0 clients: {}", last.cpu.describe());
    }
    if let Ok((proto_delays, pw)) = &r.proto {
        println!("- prototype paced run: {}", proto_delays.cpu.describe());
        println!(
            "- prototype unpaced, {} clients: {}",
            s.clients,
            pw.cpu.describe()
        );
    }
}

pub fn eventbridge(r: &eventbridge::Report) {
    let secs = r.wall.as_secs_f64();
    let (direct_calls, direct_wall, direct_moto) = r.direct;
    let direct_rate = direct_calls as f64 / direct_wall.as_secs_f64();
    println!(
        "\n### EventBridge consumer against moto_server: {} lifecycle events\n",
        thousands(r.lifecycle as f64)
    );
    println!(
        "{} `upgrade.phase_changed` between `upgrade.started` and `upgrade.completed`, recorded \
         (durability `sync`, 1,000 per `record_all`) in {:.2} s before the consumer starts from \
         offset 0.\n",
        thousands(r.lifecycle as f64 - 2.0),
        r.record_wall.as_secs_f64()
    );
    println!("| measurement | value |");
    println!("|---|---:|");
    println!("| time until `committed` reached the end | {:.2} s |", secs);
    println!(
        "| events sent (`sent`) | {} ({} events/s) |",
        thousands(r.sent as f64),
        thousands(r.sent as f64 / secs)
    );
    println!(
        "| PutEvents calls (`calls`) | {} ({:.0} calls/s, {:.1} entries per call, {:.2} ms per call) |",
        thousands(r.calls as f64),
        r.calls as f64 / secs,
        r.sent as f64 / r.calls.max(1) as f64,
        secs * 1e3 / r.calls.max(1) as f64
    );
    println!(
        "| call errors / failed entries | {} / {} |",
        r.call_errors, r.failed_entries
    );
    println!(
        "| direct PutEvents of 10 entries, one at a time (no journal, no checkpoint) | {:.0} calls/s ({:.2} ms per call) |",
        direct_rate,
        1e3 / direct_rate
    );
    println!(
        "| consumer calls/s ÷ direct calls/s | {:.2} |",
        r.calls as f64 / secs / direct_rate
    );
    println!(
        "| the per-batch checkpoint alone (`DurableConsumer::commit`, `synchronous = FULL`), median | {:.2} ms |",
        r.commit_median.as_secs_f64() * 1e3
    );
    println!(
        "\nCPU during the consumer run: {}; moto_server {:.2} cores (direct calls: moto {:.2} cores).",
        r.cpu.describe(),
        r.moto_cores,
        direct_moto
    );
}
