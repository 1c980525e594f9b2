//! `export --format ndjson|csv`: every record of the range, streamed in offset order.
//!
//! - `ndjson`: one line per record with its envelope, byte for byte what `logbook events`
//!   writes (`logbook::envelope::to_json_line`).
//! - `csv` (RFC 4180, header first): `offset,ts,schema_version,type,upgrade_id,task_id,
//!   session_id,artifact_id,payload` — the ids the event names (empty when it names none or is
//!   not a readable event) and the payload as stored (JSON text), quoted where needed.
//!
//! Lines are formatted on the scanner's worker threads and written in order: memory is bounded
//! by the scanner's window, whatever the range.

use logbook::envelope::to_json_line;
use logbook::event::upcast;
use logbook::journal::Record;
use logbook::timestamp::format_us;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, with the envelope.
    Ndjson,
    /// Comma-separated values with a header.
    Csv,
}

/// The CSV header line.
pub const CSV_HEADER: &str =
    "offset,ts,schema_version,type,upgrade_id,task_id,session_id,artifact_id,payload";

/// Formats one record as a line (without newline) in `format`.
pub fn line(format: Format, record: &Record) -> String {
    match format {
        Format::Ndjson => to_json_line(record),
        Format::Csv => csv_line(record),
    }
}

fn csv_line(record: &Record) -> String {
    let event = upcast(record.schema_version, &record.payload).ok();
    let field = |f: Option<&str>| csv_field(f.unwrap_or(""));
    let payload = String::from_utf8_lossy(&record.payload);
    [
        record.offset.to_string(),
        format_us(record.ts_us),
        record.schema_version.to_string(),
        field(event.as_ref().map(|e| e.kind())),
        field(event.as_ref().and_then(|e| e.upgrade_id())),
        field(event.as_ref().and_then(|e| e.task_id())),
        field(event.as_ref().and_then(|e| e.session_id())),
        field(event.as_ref().and_then(|e| e.artifact_id())),
        csv_field(&payload),
    ]
    .join(",")
}

/// One CSV field: quoted (quotes doubled) when it holds a comma, quote, CR or LF.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_line_names_ids() {
        let record = Record {
            offset: 7,
            ts_us: 0,
            schema_version: 1,
            payload: br#"{"type":"task.started","upgrade_id":"u-1","task_id":"t-1"}"#.to_vec(),
            hash: [0; 32],
        };
        assert_eq!(
            line(Format::Csv, &record),
            "7,1970-01-01T00:00:00.000000Z,1,task.started,u-1,t-1,,,\
             \"{\"\"type\"\":\"\"task.started\"\",\"\"upgrade_id\"\":\"\"u-1\"\",\
             \"\"task_id\"\":\"\"t-1\"\"}\""
        );
    }
}
