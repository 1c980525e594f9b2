//! Crash test: a child `logbook record --durability sync --acks` appends while this test feeds
//! it lines, reads its acknowledgements on a pipe, and kills it with SIGKILL at a random moment
//! (after a random number of acks plus a random spin). After each kill the journal is reopened
//! (recovery runs) and checked: every acknowledged record is present with the exact bytes sent,
//! no unacknowledged garbage is served, and `verify` passes. Small segments make the kills land
//! during rolls and seals too. Set LOGBOOK_CRASH_SEED to replay a run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logbook::journal::{Journal, JournalConfig, StartAt, verify_dir};

const ROUNDS: u64 = 24;
const LINES_PER_ROUND: u64 = 12_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Line `i` of round `round`: the upgrade and its task first, then progress reports.
fn line(round: u64, i: u64) -> String {
    match i {
        0 => format!(
            r#"{{"type":"upgrade.started","upgrade_id":"u-{round}","plan_id":"p","cluster_name":"c","phase":"crash round {round}"}}"#
        ),
        1 => format!(
            r#"{{"type":"task.added","upgrade_id":"u-{round}","task_id":"t","name":"survive","task_type":"validation"}}"#
        ),
        _ => format!(
            r#"{{"type":"task.progress","upgrade_id":"u-{round}","task_id":"t","percentage":{}.5,"message":"round {round} line {i}"}}"#,
            i % 100
        ),
    }
}

fn next_offset(dir: &Path) -> u64 {
    let journal = Journal::open(dir, JournalConfig::default()).unwrap();
    let next = journal.next_offset();
    journal.close().unwrap();
    next
}

#[test]
fn sigkill_never_loses_an_acknowledged_record() {
    let seed = std::env::var("LOGBOOK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: LOGBOOK_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let journal_dir = data.join("journal");
    let mut total_acked = 0u64;
    for round in 0..ROUNDS {
        let start = if journal_dir.exists() {
            next_offset(&journal_dir)
        } else {
            0
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(["--data", data.to_str().unwrap(), "--segment-bytes", "16384"])
            .args([
                "--segment-age",
                "0.05",
                "record",
                "--durability",
                "sync",
                "--acks",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            for i in 0..LINES_PER_ROUND {
                if writeln!(stdin, "{}", line(round, i)).is_err() {
                    return; // the child was killed
                }
            }
        });
        let kill_after = 1 + rng.below(12);
        let spin = Duration::from_micros(rng.below(3000));
        let mut acks: Vec<(u64, u64)> = Vec::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        while (acks.len() as u64) < kill_after {
            text.clear();
            if stdout.read_line(&mut text).unwrap() == 0 {
                break; // the child finished every line before the kill
            }
            let Ok(ack) = serde_json::from_str::<serde_json::Value>(&text) else {
                break; // the closing summary: every line was recorded before the kill
            };
            acks.push((
                ack["first"].as_u64().unwrap(),
                ack["last"].as_u64().unwrap(),
            ));
        }
        let until = Instant::now() + spin;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        feeder.join().unwrap();

        // Reopen (recovery cuts any torn tail) and check.
        let journal = Journal::open(&journal_dir, JournalConfig::default()).unwrap();
        let last_acked = acks.last().map(|a| a.1);
        if let Some(last) = last_acked {
            assert!(
                journal.next_offset() > last,
                "round {round}: acked offset {last} lost"
            );
        }
        let mut reader = journal.reader(StartAt::Offset(start)).unwrap();
        let mut count = 0;
        while let Some(record) = reader.next().unwrap() {
            let i = record.offset - start;
            let stored: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
            let sent: serde_json::Value = serde_json::from_str(&line(round, i)).unwrap();
            assert_eq!(
                stored, sent,
                "round {round}: offset {} holds the wrong bytes",
                record.offset
            );
            count += 1;
        }
        for (first, last) in &acks {
            assert!(
                *first >= start && last - start < count,
                "round {round}: ack {first}..={last} missing"
            );
            total_acked += last - first + 1;
        }
        journal.close().unwrap();
        let report = verify_dir(&journal_dir, 4 << 20, &mut |_| {}).unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
    }
    assert!(
        total_acked > 0,
        "the child acknowledged nothing in {ROUNDS} rounds"
    );
    eprintln!("crash test: {ROUNDS} rounds, {total_acked} acknowledged records all present");
}
