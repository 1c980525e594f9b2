//! `logbook verify`: full check of the journal; exit 1 and the first bad offset on damage.

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use logbook::journal::verify_dir;

use super::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.existing_journal_dir()?;
    let bar = if cli.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(ProgressStyle::with_template(
        "{spinner} verifying: {pos} records ({per_sec})",
    )?);
    let report = verify_dir(
        &dir,
        logbook::journal::record::PAYLOAD_BYTES_MAX,
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    let head = hex(&report.head_hash);
    if cli.json {
        let damage = report.damage.as_ref().map(|d| {
            serde_json::json!({
                "offset": d.offset,
                "segment": d.segment.display().to_string(),
                "kind": d.kind.code(),
                "detail": d.kind.to_string(),
            })
        });
        let out = serde_json::json!({
            "ok": report.is_ok(),
            "records": report.records,
            "sealed_segments": report.sealed_segments,
            "unsealed_segments": report.unsealed_segments,
            "head_hash": head,
            "torn_tail_bytes": report.torn_tail_bytes,
            "damage": damage,
        });
        out!("{out}");
    } else {
        match &report.damage {
            None => out!(
                "ok: {} records in {} sealed and {} unsealed segments; chain head {head}",
                report.records,
                report.sealed_segments,
                report.unsealed_segments
            ),
            Some(d) => out!(
                "DAMAGED: first bad offset {} in {}: {} ({} records before it verified)",
                d.offset,
                d.segment.display(),
                d.kind,
                report.records
            ),
        }
        if report.torn_tail_bytes > 0 {
            out!(
                "note: {} bytes of torn tail after the last whole record (an unacknowledged write cut short; cut on the next open)",
                report.torn_tail_bytes
            );
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Lower-case hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
