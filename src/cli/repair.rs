//! `logbook repair [--cut | --from s3://bucket/prefix]`: finds the first damage in the journal
//! (a full verify) and repairs it, always explicitly and on the record (`journal::repair`).
//!
//! - No damage: says so (exit 0), changes nothing.
//! - Damage in the active segment (the newest, unsealed one): cut from the damaged record on,
//!   without a flag (bytes kept under `journal/quarantine/`, a `journal.repaired` note at the
//!   first cut offset).
//! - Damage anywhere else (a sealed segment, a rolled one): nothing is changed without a flag.
//!   It names the damage and the two remedies, and exits 1: `--from s3://bucket/prefix`
//!   replaces the damaged sealed segment with its shipped copy (verified, and linked to its
//!   neighbours on both sides: the journal then holds exactly the records it held), or `--cut`
//!   cuts the journal at the damaged offset (every later record moves to quarantine, recorded
//!   by the note).
//!
//! Both take the journal's writer lock (refused while a writer runs).

use std::process::ExitCode;

use logbook::journal::names::{self, SegmentName};
use logbook::journal::repair::{cut_damage, replace_sealed};
use logbook::journal::{Damage, verify_dir};
use logbook::s3::S3Location;

use super::Cli;

/// Arguments of `repair`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cut the journal at the first damaged offset, wherever it is (every record from there
    /// moves to quarantine; a `journal.repaired` note records the cut).
    #[arg(long, conflicts_with = "from")]
    cut: bool,
    /// Replace the damaged sealed segment with its copy shipped to s3://bucket/prefix
    /// (verified, and linked to the segments around it). AWS settings from the standard chain.
    #[arg(long, value_name = "URL", value_parser = super::aws::parse_location)]
    from: Option<S3Location>,
}

/// Whether `damage` is in the journal's newest segment, an unsealed one (where a torn or
/// damaged tail is cut without asking).
fn in_active_segment(dir: &std::path::Path, damage: &Damage) -> bool {
    let name = damage
        .segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(SegmentName::Raw { first }) = names::parse(name) else {
        return false;
    };
    let newest = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(names::parse))
                .filter_map(|n| match n {
                    SegmentName::Raw { first } | SegmentName::Sealed { first, .. } => Some(first),
                    SegmentName::Temp => None,
                })
                .max()
        })
        .ok()
        .flatten();
    newest == Some(first)
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let dir = cli.existing_journal_dir()?;
    let config = cli.journal_config()?;
    let max = logbook::journal::record::PAYLOAD_BYTES_MAX;
    let report = verify_dir(&dir, max, &mut |_| {})?;
    let Some(damage) = report.damage else {
        if cli.json {
            out!(
                "{}",
                serde_json::json!({"repaired": false, "damage": null, "records": report.records})
            );
        } else {
            out!(
                "nothing to repair: verify found no damage in {} records",
                report.records
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(location) = &args.from {
        return replace(cli, &dir, &config, &damage, location);
    }
    if !args.cut && !in_active_segment(&dir, &damage) {
        let name = damage.segment.display();
        if cli.json {
            out!(
                "{}",
                serde_json::json!({"repaired": false, "damage": {"offset": damage.offset,
                    "segment": name.to_string(), "kind": damage.kind.code(),
                    "detail": damage.kind.to_string()},
                    "remedies": ["repair --from s3://bucket/prefix", "repair --cut"]})
            );
        } else {
            out!("{damage}");
            out!("nothing was changed. The damage is not in the active segment; choose a remedy:");
            out!(
                "  logbook repair --from s3://BUCKET/PREFIX   replace {name} with its shipped copy \
                 (verified; the journal keeps every record)"
            );
            out!(
                "  logbook repair --cut                       cut the journal at offset {}: every \
                 record from there moves to journal/quarantine/, and a journal.repaired note \
                 records the cut",
                damage.offset
            );
        }
        return Ok(ExitCode::from(1));
    }
    let Some(cut) = cut_damage(&dir, &config)? else {
        out!("nothing to repair: no damage found under the lock");
        return Ok(ExitCode::SUCCESS);
    };
    let quarantine: Vec<String> = cut
        .quarantine
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if cli.json {
        out!(
            "{}",
            serde_json::json!({"repaired": true, "cut_from_offset": cut.damage.offset,
                "records_cut": cut.records_cut, "bytes_cut": cut.bytes_cut,
                "reason": cut.damage.kind.to_string(), "quarantine": quarantine,
                "note_offset": cut.note_offset, "next_offset": cut.note_offset + 1})
        );
    } else {
        out!(
            "repaired: cut {} record(s) ({} bytes) from offset {} ({}); kept in {}; recorded as \
             journal.repaired at offset {}",
            cut.records_cut,
            cut.bytes_cut,
            cut.damage.offset,
            cut.damage.kind,
            quarantine.join(", "),
            cut.note_offset
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--from`: the damaged sealed segment's shipped copy, verified, in its place.
fn replace(
    cli: &Cli,
    dir: &std::path::Path,
    config: &logbook::journal::JournalConfig,
    damage: &Damage,
    location: &S3Location,
) -> anyhow::Result<ExitCode> {
    let name = damage
        .segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(SegmentName::Sealed { first, last }) = names::parse(name) else {
        return Err(super::BadInput(format!(
            "{damage}: --from replaces sealed segments only (this one was never shipped); use \
             --cut"
        ))
        .into());
    };
    let runtime = logbook::server::runtime()?;
    let sdk = super::aws::sdk_config(&runtime, "repair --from")?;
    let client = logbook::s3::client(&sdk);
    let segment = runtime
        .block_on(logbook::s3::restore::download_verified(
            &client, location, first, last,
        ))
        .map_err(super::aws::s3_error)?;
    let replaced = replace_sealed(dir, config, &segment)?;
    let after = verify_dir(
        dir,
        logbook::journal::record::PAYLOAD_BYTES_MAX,
        &mut |_| {},
    )?;
    if cli.json {
        out!(
            "{}",
            serde_json::json!({"repaired": true, "replaced": replaced.segment.display().to_string(),
                "from": location.to_string(), "quarantine": replaced.quarantine.display().to_string(),
                "verify_ok": after.is_ok()})
        );
    } else {
        out!(
            "repaired: replaced {} with its copy from {location} (the damaged file is kept as {})",
            replaced.segment.display(),
            replaced.quarantine.display()
        );
        match &after.damage {
            None => out!("verify: ok ({} records)", after.records),
            Some(d) => out!("verify: more damage remains: {d}"),
        }
    }
    Ok(if after.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
