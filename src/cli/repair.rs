//! `logbook repair`: opens the journal as writer with repair on. Damaged committed records in
//! the active segment are cut (the bytes kept under journal/quarantine/) and a
//! `journal.repaired` event records what was cut. A journal without damage is left unchanged.

use std::process::ExitCode;

use logbook::journal::{Journal, JournalConfig};

use super::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = JournalConfig {
        repair: true,
        ..cli.journal_config()?
    };
    let journal = Journal::open(cli.existing_journal_dir()?, config)?;
    let report = journal.recovery_report().clone();
    let next = journal.next_offset();
    journal.close()?;
    match (&report.repaired, cli.json) {
        (Some(d), true) => out!(
            "{}",
            serde_json::json!({"repaired": true, "cut_from_offset": d.offset, "bytes_cut": report.repaired_bytes,
                "reason": d.kind.to_string(), "quarantine": report.quarantine.map(|p| p.display().to_string()),
                "next_offset": next})
        ),
        (Some(d), false) => out!(
            "repaired: cut {} bytes from offset {} ({}); kept in {}; recorded as journal.repaired at offset {}",
            report.repaired_bytes,
            d.offset,
            d.kind,
            report
                .quarantine
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            next - 1
        ),
        (None, true) => out!(
            "{}",
            serde_json::json!({"repaired": false, "next_offset": next})
        ),
        (None, false) => out!("nothing to repair: no damage found on open"),
    }
    Ok(ExitCode::SUCCESS)
}
