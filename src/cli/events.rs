//! `logbook events`: committed records as NDJSON with their envelope, optionally bounded by
//! offset or time and filtered by type. Reads without taking the writer lock.

use std::io::Write;
use std::process::ExitCode;

use logbook::envelope::{event_type, to_json_line};
use logbook::journal::{Journal, StartAt};
use logbook::timestamp::parse_rfc3339;
use logbook::type_filter::TypeFilter;

use super::{BadInput, Cli};

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to start: an offset, an RFC 3339 time, `earliest` or `latest`.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Where to stop (inclusive): an offset or an RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Only these event types: comma-separated globs, e.g. `task.*,upgrade.failed`.
    #[arg(long)]
    types: Option<String>,
}

/// A position given on the command line.
enum Point {
    Offset(u64),
    Time(i64),
}

fn parse_point(flag: &str, text: &str) -> Result<Point, BadInput> {
    if let Ok(offset) = text.parse::<u64>() {
        return Ok(Point::Offset(offset));
    }
    parse_rfc3339(text).map(Point::Time).map_err(|e| {
        BadInput(format!(
            "{flag}: expected an offset or an RFC 3339 time: {e}"
        ))
    })
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let start = match args.from.as_str() {
        "earliest" => StartAt::Earliest,
        "latest" => StartAt::Latest,
        text => match parse_point("--from", text)? {
            Point::Offset(offset) => StartAt::Offset(offset),
            Point::Time(ts) => StartAt::Time(ts),
        },
    };
    let until = args
        .until
        .as_deref()
        .map(|text| parse_point("--until", text))
        .transpose()?;
    let filter = match &args.types {
        Some(text) => TypeFilter::parse(text).map_err(BadInput)?,
        None => TypeFilter::default(),
    };
    let journal = Journal::open_read_only(cli.existing_journal_dir()?, cli.journal_config()?)?;
    let mut reader = journal.reader(start)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(record) = reader.next()? {
        let past = match until {
            Some(Point::Offset(last)) => record.offset > last,
            Some(Point::Time(last)) => record.ts_us > last,
            None => false,
        };
        if past {
            break;
        }
        if filter.matches(event_type(&record.payload).as_deref()) {
            writeln!(out, "{}", to_json_line(&record))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
