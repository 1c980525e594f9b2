//! The JSON Schemas (draft 2020-12) of the event contract, generated from the Rust types with
//! `schemars`, and checked in under `schemas/` (`schemas/events/<type>.json`,
//! `schemas/envelope.json`).
//!
//! Invariants:
//! - Nothing here is written by hand: each event schema is one branch of the schema `schemars`
//!   derives for [`Event`] (every subschema inlined, so each file stands alone), and the
//!   envelope's fields come from a derived struct too. `tests/schemas.rs` regenerates every file
//!   and fails if a checked-in one differs (`LOGBOOK_BLESS_SCHEMAS=1 cargo test --test schemas`
//!   rewrites them).
//! - An event schema says what [`Event::parse`] accepts (`additionalProperties: false`, the
//!   required fields, `type` as a `const`) and, through patterns, lengths and ranges, what
//!   [`Event::validate`](super::Event::validate) accepts (see [`super::validate`] for the one
//!   difference: schema lengths count characters, the validator counts bytes).
//! - The envelope schema describes one line of `logbook events`: the recorder's `offset`, `ts`
//!   and `schema_version`, then the event's fields. JSON Schema cannot say "the other keys match
//!   schema X" when X forbids additional properties, so each `oneOf` branch of the envelope is
//!   the corresponding event schema with the three envelope keys allowed.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use super::Event;

/// The JSON Schema dialect of every generated schema.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Path of the envelope schema, relative to `schemas/`.
pub const ENVELOPE_FILE: &str = "envelope.json";

/// ECMA-262 pattern of the recorder's timestamp: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const TS_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$";

/// The fields the recorder puts in front of every event (see [`crate::envelope`]); only its
/// schema is used.
#[derive(JsonSchema)]
#[expect(
    dead_code,
    reason = "never built: it exists to derive the envelope's schema"
)]
struct EnvelopeFields {
    /// Position of the record in the journal, dense from 0.
    offset: u64,
    /// Recorder time: RFC 3339, UTC, exactly six fractional digits.
    #[schemars(extend("format" = "date-time"), pattern(TS_PATTERN))]
    ts: String,
    /// Schema version of the event (see `logbook::event::upcast`).
    #[schemars(range(min = 1))]
    schema_version: u16,
}

/// Path of an event type's schema, relative to `schemas/`, e.g. `events/task.progress.json`.
pub fn event_schema_file(kind: &str) -> String {
    format!("events/{kind}.json")
}

fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The `const` of a branch's `type` property.
fn branch_kind(branch: &Map<String, Value>) -> Option<String> {
    branch
        .get("properties")?
        .get("type")?
        .get("const")?
        .as_str()
        .map(str::to_owned)
}

/// A standalone schema document: dialect and title first, then `body`.
fn document(title: &str, body: Map<String, Value>) -> Value {
    let mut doc = Map::new();
    doc.insert("$schema".into(), DIALECT.into());
    doc.insert("title".into(), title.into());
    doc.extend(body);
    Value::Object(doc)
}

/// Every event type's schema, keyed by the type (the order of [`Event`]'s variants).
pub fn event_schemas() -> Vec<(String, Value)> {
    let root = object(
        settings()
            .into_generator()
            .into_root_schema_for::<Event>()
            .to_value(),
    );
    let branches = match root.get("oneOf") {
        Some(Value::Array(branches)) => branches.clone(),
        _ => Vec::new(),
    };
    branches
        .into_iter()
        .map(object)
        .filter_map(|branch| {
            let kind = branch_kind(&branch)?;
            let doc = document(&kind, branch);
            Some((kind, doc))
        })
        .collect()
}

/// The schema of one envelope line: recorder fields plus exactly one event.
pub fn envelope_schema() -> Value {
    let fields = object(
        settings()
            .into_generator()
            .into_root_schema_for::<EnvelopeFields>()
            .to_value(),
    );
    let names: Vec<String> = match fields.get("properties") {
        Some(Value::Object(props)) => props.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let branches: Vec<Value> = event_schemas()
        .into_iter()
        .map(|(_, doc)| {
            let mut branch = object(doc);
            branch.remove("$schema");
            if let Some(Value::Object(props)) = branch.get_mut("properties") {
                for name in &names {
                    props.insert(name.clone(), Value::Bool(true));
                }
            }
            Value::Object(branch)
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "description".into(),
        "One line of `logbook events`: the recorder's fields, then the event's own. Each oneOf \
         branch is the event schema events/<type>.json with the recorder's keys allowed."
            .into(),
    );
    for key in ["type", "properties", "required"] {
        if let Some(value) = fields.get(key) {
            body.insert(key.into(), value.clone());
        }
    }
    body.insert("oneOf".into(), Value::Array(branches));
    document("envelope", body)
}

/// Every checked-in schema file: its path relative to `schemas/` and its content.
pub fn schema_files() -> Vec<(String, Value)> {
    let mut files: Vec<(String, Value)> = event_schemas()
        .into_iter()
        .map(|(kind, doc)| (event_schema_file(&kind), doc))
        .collect();
    files.push((ENVELOPE_FILE.to_owned(), envelope_schema()));
    files
}

/// A schema file's text: pretty JSON with a trailing newline.
pub fn to_file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
