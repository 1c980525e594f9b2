//! Item 4: peers. SQLite WAL (synchronous=FULL) and the naive "rewrite the whole progress
//! document on every update" design this system replaces.

use std::fs::File;
use std::io::Write;
use std::time::Instant;

use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use crate::appends::Appends;
use crate::events::{Progress, TASKS};
use crate::util::{CpuSnapshot, Report, Settings, Target, rate};

pub fn run(
    settings: &Settings,
    pool: &[Progress],
    journal: &Appends,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (per_event, bg) = sqlite(settings, pool, 1)?;
    report.bg = Some(bg);
    report.plain(
        "4a",
        "SQLite WAL, synchronous=FULL, 1 INSERT per transaction (serialize + insert + commit)",
        rate(per_event),
    );
    let (batched, bg) = sqlite(settings, pool, 1000)?;
    report.bg = Some(bg);
    report.plain(
        "4a",
        "SQLite WAL, synchronous=FULL, 1000 INSERTs per transaction",
        rate(batched),
    );
    let naive_fsync = naive(settings, pool, true)?;
    report.bg = Some(naive_fsync.2);
    report.plain(
        "4b",
        "naive: 1,000-task JSON document rewritten per update (write temp + fsync + rename)",
        rate(naive_fsync.0),
    );
    let naive_nosync = naive(settings, pool, false)?;
    report.bg = Some(naive_nosync.2);
    report.plain(
        "4b",
        "naive, no fsync (write temp + rename; not durable)",
        rate(naive_nosync.0),
    );
    report.note(format!(
        "4b naive peer: a serde_json document of {TASKS} tasks (about {:.0} KiB compact) held in \
         memory; each update replaces one task's entry, serializes the whole document, writes it \
         to a temp file, `sync_all` (fsync) on the temp file, renames it over the document; no \
         directory fsync. The no-fsync row skips the `sync_all`.",
        naive_fsync.1 as f64 / 1024.0
    ));

    report.bg = None;
    let sqlite_row = "SQLite per-event FULL commit (4a)";
    for (label, what, target) in [
        (
            "sync, 16 tokio task(s)",
            "journal `sync` 16 producers (tokio) vs SQLite per-event commit",
            Target::AtLeast(8.0),
        ),
        (
            "sync, 16 threads",
            "journal `sync` 16 producers (std threads) vs SQLite per-event commit",
            Target::AtLeast(8.0),
        ),
        (
            "sync, 256 tokio task(s)",
            "journal `sync` 256 producers (tokio) vs SQLite per-event commit",
            Target::AtLeast(50.0),
        ),
        (
            "sync, 1 tokio task(s)",
            "journal `sync` 1 producer vs SQLite per-event commit",
            Target::None,
        ),
    ] {
        let r = journal.sync_rate(label);
        report.compare(
            "4c",
            what,
            (r, rate(r)),
            sqlite_row,
            (per_event, rate(per_event)),
            target,
        );
    }
    for (label, what) in [
        (
            "sync, 1 tokio task(s)",
            "journal `sync` 1 producer vs naive rewrite with fsync",
        ),
        (
            "sync, 256 tokio task(s)",
            "journal `sync` 256 producers vs naive rewrite with fsync",
        ),
    ] {
        let r = journal.sync_rate(label);
        report.compare(
            "4c",
            what,
            (r, rate(r)),
            "naive rewrite + fsync (4b)",
            (naive_fsync.0, rate(naive_fsync.0)),
            Target::None,
        );
    }
    let r = journal.sync_rate("sync, 256 tokio task(s)");
    report.compare(
        "4c",
        "journal `sync` 256 producers vs SQLite 1000 per transaction",
        (r, rate(r)),
        "SQLite batched 1000/txn (4a)",
        (batched, rate(batched)),
        Target::None,
    );
    Ok(())
}

/// SQLite inserts of serialized events, `per_txn` per transaction; events/s and background load.
fn sqlite(settings: &Settings, pool: &[Progress], per_txn: usize) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let mut conn = Connection::open(dir.path().join("events.db"))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.pragma_update(None, "synchronous", "FULL")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    anyhow::ensure!(sync == 2, "synchronous is {sync}, expected 2 (FULL)");
    conn.execute(
        "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, body BLOB)",
        [],
    )?;
    let mask = pool.len() - 1;
    let mut n = 0usize;
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + settings.peer_duration;
    while Instant::now() < deadline {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO events(ts, body) VALUES (?1, ?2)")?;
            for _ in 0..per_txn {
                let body = serde_json::to_vec(&pool[n & mask])?;
                insert.execute(params![logbook::timestamp::now_us(), body])?;
                n += 1;
            }
        }
        tx.commit()?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, CpuSnapshot::take().since(&before).bg()))
}

/// The naive design: events/s, the document's size, background load.
fn naive(settings: &Settings, pool: &[Progress], fsync: bool) -> anyhow::Result<(f64, usize, f64)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("progress.json");
    let tmp = dir.path().join("progress.json.tmp");
    let mut tasks = Map::new();
    // Every task present from the start, so the document has its full size throughout.
    for t in 0..TASKS {
        let mut event = serde_json::to_value(&pool[t as usize % pool.len()])?;
        let id = format!(
            "{}-ng-{t:04}",
            if t.is_multiple_of(2) { "blue" } else { "green" }
        );
        event["task_id"] = Value::String(id.clone());
        tasks.insert(id, event);
    }
    let mut doc = serde_json::json!({
        "upgrade_id": "upgrade-1763853000",
        "status": "running",
        "tasks": Value::Object(tasks),
    });
    let mask = pool.len() - 1;
    let mut n = 0usize;
    let mut size = 0;
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + settings.peer_duration;
    while Instant::now() < deadline {
        let event = &pool[n & mask];
        doc["tasks"][event.task_id.as_str()] = serde_json::to_value(event)?;
        let bytes = serde_json::to_vec(&doc)?;
        size = bytes.len();
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        if fsync {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, &path)?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, size, CpuSnapshot::take().since(&before).bg()))
}
