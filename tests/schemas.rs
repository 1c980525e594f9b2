//! The checked-in JSON Schemas (`schemas/events/*.json`, `schemas/envelope.json`) and the Rust
//! event types agree, so neither can drift from the other (DESIGN.md §3).
//!
//! - Every schema is regenerated from the types and compared with the checked-in file (exact
//!   JSON value equality); `LOGBOOK_BLESS_SCHEMAS=1 cargo test --test schemas` rewrites them.
//! - A real validator (`jsonschema`, draft 2020-12, formats checked) then holds Rust-serialized
//!   samples of every type against the schemas, and deliberately wrong samples must be refused
//!   both by the schema and by `Event::parse` + `Event::validate`.
//! - The schemas' string patterns and the validator's rules give the same verdict on a corpus
//!   of tricky strings.
//!
//! The validation tests use the generated schemas, which the first test proves equal to the
//! checked-in ones; that keeps them correct while a bless run rewrites the files.

use std::path::{Path, PathBuf};

use jsonschema::{Draft, Validator};
use logbook::event::{EVENT_TYPES, Event, SYSTEM_EVENT_TYPES, schema, validate};
use logbook::journal::Record;
use serde_json::{Map, Value, json};

const BLESS: &str = "LOGBOOK_BLESS_SCHEMAS";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|v| v == "1")
}

#[test]
fn checked_in_schemas_match_the_rust_types() {
    let dir = schemas_dir();
    let files = schema::schema_files();
    if blessing() {
        std::fs::create_dir_all(dir.join("events")).unwrap();
        for (rel, doc) in &files {
            let path = dir.join(rel);
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, schema::to_file_text(doc)).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    }
    let mut problems = Vec::new();
    for (rel, expected) in &files {
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Err(e) => problems.push(format!("schemas/{rel}: cannot read ({e})")),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Err(e) => problems.push(format!("schemas/{rel}: not JSON ({e})")),
                Ok(found) if found != *expected => {
                    problems.push(format!("schemas/{rel}: differs from the Rust types"))
                }
                Ok(_) => {}
            },
        }
    }
    // A schema for a type that no longer exists is stale too.
    let generated: Vec<String> = files.iter().map(|(rel, _)| rel.clone()).collect();
    if let Ok(entries) = std::fs::read_dir(dir.join("events")) {
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let rel = format!("events/{name}");
            if !generated.contains(&rel) {
                if blessing() {
                    std::fs::remove_file(dir.join(&rel)).unwrap();
                } else {
                    problems.push(format!("schemas/{rel}: no Rust type generates it"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nThe schemas under schemas/ are generated from src/event/. Regenerate them with\n\n    \
         {BLESS}=1 cargo test --test schemas\n\nand review the diff (a change that is not purely \
         additive needs a new schema version and an upcaster, see src/event/version.rs).",
        problems.join("\n")
    );
}

fn validator(schema: &Value) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

struct Schemas {
    events: Vec<(String, Validator)>,
    envelope: Validator,
}

impl Schemas {
    fn new() -> Schemas {
        let events = schema::event_schemas()
            .into_iter()
            .map(|(kind, doc)| {
                assert!(
                    jsonschema::meta::is_valid(&doc),
                    "{kind}: not a valid schema"
                );
                (kind, validator(&doc))
            })
            .collect();
        let envelope = schema::envelope_schema();
        assert!(jsonschema::meta::is_valid(&envelope));
        Schemas {
            events,
            envelope: validator(&envelope),
        }
    }

    fn of(&self, kind: &str) -> &Validator {
        self.events
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no schema for {kind}"))
    }
}

/// One sample of every type with every optional field, then minimal ones with none.
fn sample_texts() -> Vec<&'static str> {
    vec![
        r#"{"type":"upgrade.started","id":"k-1","upgrade_id":"u-1","plan_id":"plan-eks-1.30","cluster_name":"prod-eks","phase":"Initialization","metadata":{"from":"1.29","to":"1.30","nodes":[1,2]}}"#,
        r#"{"type":"upgrade.phase_changed","id":"k-2","upgrade_id":"u-1","phase":"Planning"}"#,
        r#"{"type":"upgrade.completed","id":"k-3","upgrade_id":"u-1","message":"all green"}"#,
        r#"{"type":"upgrade.failed","id":"k-4","upgrade_id":"u-1","error":"validation failed:\n  smoke test 3"}"#,
        r#"{"type":"task.added","id":"k-5","upgrade_id":"u-1","task_id":"t-2","name":"Provision green","task_type":"upgrade_step","parent_id":"t-1"}"#,
        r#"{"type":"task.started","id":"k-6","upgrade_id":"u-1","task_id":"t-1","message":"go"}"#,
        r#"{"type":"task.paused","id":"k-7","upgrade_id":"u-1","task_id":"t-1","message":"waiting"}"#,
        r#"{"type":"task.resumed","id":"k-8","upgrade_id":"u-1","task_id":"t-1","message":"capacity back"}"#,
        r#"{"type":"task.cancelled","id":"k-9","upgrade_id":"u-1","task_id":"t-1","message":"superseded"}"#,
        r#"{"type":"task.progress","id":"k-10","upgrade_id":"u-1","task_id":"t-1","percentage":50.5,"message":"half","details":{"ready":3}}"#,
        r#"{"type":"task.completed","id":"k-11","upgrade_id":"u-1","task_id":"t-1","message":"ok","metrics":{"seconds":12.5}}"#,
        r#"{"type":"task.failed","id":"k-12","upgrade_id":"u-1","task_id":"t-1","error":"timeout"}"#,
        r#"{"type":"session.created","id":"k-13","session_id":"s-1","upgrade_id":"u-1","cluster_name":"prod-eks"}"#,
        r#"{"type":"collection.created","id":"k-14","session_id":"s-1","collection_id":"c-1","name":"Green logs","task_id":"t-2"}"#,
        r#"{"type":"artifact.added","id":"k-15","session_id":"s-1","collection_id":"c-1","artifact_id":"a-1","file_name":"kubectl apply.log","artifact_type":"log_file","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","size_bytes":18446744073709551615,"tags":["eks","green zone"],"task_id":"t-2","description":"output of\nkubectl","expires_at":"2027-01-01T00:00:00+02:00"}"#,
        r#"{"type":"artifact.uploaded","id":"k-16","artifact_id":"a-1","s3_key":"prefix/artifacts/s-1/c-1/kubectl apply.log","etag":"\"9b2cf535f27731c974343645a3985328\""}"#,
        r#"{"type":"artifact.upload_failed","id":"k-17","artifact_id":"a-1","error":"503 SlowDown"}"#,
        r#"{"type":"artifact.archived","id":"k-18","artifact_id":"a-1"}"#,
        r#"{"type":"artifact.deleted","id":"k-19","artifact_id":"a-1","reason":"requested"}"#,
        r#"{"type":"journal.repaired","cut_from_offset":6,"bytes_cut":120,"segment":"j/00000000000000000000.log","reason":"checksum mismatch","quarantine":"j/quarantine/x"}"#,
        // Minimal forms.
        r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"x"}"#,
        r#"{"type":"upgrade.completed","upgrade_id":"u-1"}"#,
        r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"Plan","task_type":"upgrade_plan"}"#,
        r#"{"type":"task.started","upgrade_id":"u-1","task_id":"t-1"}"#,
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":0}"#,
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":100}"#,
        r#"{"type":"task.completed","upgrade_id":"u-1","task_id":"t-1"}"#,
        r#"{"type":"collection.created","session_id":"s-1","collection_id":"c-1","name":"n"}"#,
        r#"{"type":"artifact.added","session_id":"s","collection_id":"c","artifact_id":"a","file_name":".env","artifact_type":"diagnostic","sha256":"0000000000000000000000000000000000000000000000000000000000000000","size_bytes":0,"tags":[]}"#,
        r#"{"type":"artifact.deleted","artifact_id":"a-1","reason":"expired"}"#,
        r#"{"type":"journal.repaired","cut_from_offset":0,"bytes_cut":1,"segment":"s","reason":"r","quarantine":null}"#,
        r#"{"type":"subscriber.skipped","id":"skipped-eventbridge-7","consumer":"eventbridge","skipped_offset":7,"event_type":"upgrade.started","reason":"its EventBridge entry is 307400 bytes, over the 261120 byte request limit"}"#,
        r#"{"type":"subscriber.skipped","consumer":"c","skipped_offset":0,"event_type":"","reason":""}"#,
    ]
}

/// Rust-serialized samples: parsed, validated (producer types), serialized by `to_payload`.
fn samples() -> Vec<(Event, Value)> {
    sample_texts()
        .into_iter()
        .map(|text| {
            let event = Event::parse(text.as_bytes())
                .unwrap_or_else(|e| panic!("sample does not parse: {e}\n{text}"));
            if !event.is_system() {
                event
                    .validate()
                    .unwrap_or_else(|e| panic!("sample is invalid: {e}\n{text}"));
            }
            let value: Value = serde_json::from_slice(&event.to_payload()).unwrap();
            (event, value)
        })
        .collect()
}

fn envelope_line(offset: u64, ts_us: i64, payload: &[u8]) -> Value {
    let record = Record {
        offset,
        ts_us,
        schema_version: 1,
        payload: payload.to_vec(),
        hash: [0; 32],
    };
    serde_json::from_str(&logbook::envelope::to_json_line(&record)).unwrap()
}

#[test]
fn every_rust_sample_satisfies_exactly_its_own_schema() {
    let schemas = Schemas::new();
    let samples = samples();
    let mut seen: Vec<&str> = samples.iter().map(|(e, _)| e.kind()).collect();
    seen.sort_unstable();
    seen.dedup();
    let mut all: Vec<&str> = EVENT_TYPES
        .iter()
        .chain(SYSTEM_EVENT_TYPES.iter())
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(seen, all, "a sample for every type");
    for (i, (event, value)) in samples.iter().enumerate() {
        for (kind, validator) in &schemas.events {
            let errs = errors(validator, value);
            if kind == event.kind() {
                assert!(errs.is_empty(), "{kind} refuses {value}: {errs:?}");
            } else {
                assert!(!errs.is_empty(), "{kind} accepts a {}", event.kind());
            }
        }
        let line = envelope_line(i as u64, 1_795_393_535_593_587, &event.to_payload());
        let errs = errors(&schemas.envelope, &line);
        assert!(errs.is_empty(), "envelope refuses {line}: {errs:?}");
    }
}

/// Applies `change` to a sample of `kind` (the first one, which has every field).
fn mutated(kind: &str, change: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let (_, value) = samples()
        .into_iter()
        .find(|(e, _)| e.kind() == kind)
        .unwrap();
    let Value::Object(mut map) = value else {
        unreachable!()
    };
    change(&mut map);
    Value::Object(map)
}

fn rust_refuses(value: &Value) -> Option<String> {
    match Event::parse(value.to_string().as_bytes()) {
        Err(e) => Some(e.to_string()),
        Ok(event) => event.validate().err().map(|e| e.to_string()),
    }
}

#[test]
fn wrong_samples_are_refused_by_the_schema_and_by_rust() {
    let schemas = Schemas::new();
    let set = |key: &'static str, v: Value| {
        move |m: &mut Map<String, Value>| {
            m.insert(key.into(), v);
        }
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "task.progress",
            mutated("task.progress", set("percentage", json!(150))),
            "percentage",
        ),
        (
            "task.progress",
            mutated("task.progress", set("percentage", json!(-0.5))),
            "percentage",
        ),
        (
            "task.progress",
            mutated("task.progress", set("percentage", json!("50"))),
            "percentage",
        ),
        (
            "task.progress",
            mutated("task.progress", |m| {
                m.remove("task_id");
            }),
            "task_id",
        ),
        (
            "task.progress",
            mutated("task.progress", set("surprise", json!(1))),
            "surprise",
        ),
        (
            "task.progress",
            mutated("task.progress", set("offset", json!(1))),
            "offset",
        ),
        (
            "task.progress",
            mutated("task.progress", set("details", json!([1]))),
            "details",
        ),
        (
            "task.started",
            mutated("task.started", set("percentage", json!(5))),
            "percentage",
        ),
        (
            "task.added",
            mutated("task.added", set("task_type", json!("Validation"))),
            "task_type",
        ),
        (
            "task.added",
            mutated("task.added", set("parent_id", json!(""))),
            "parent_id",
        ),
        (
            "task.added",
            mutated("task.added", set("task_id", json!("../t"))),
            "task_id",
        ),
        (
            "task.added",
            mutated("task.added", set("name", json!("a\u{7}b"))),
            "name",
        ),
        (
            "upgrade.started",
            mutated("upgrade.started", set("upgrade_id", json!("u/1"))),
            "upgrade_id",
        ),
        (
            "upgrade.started",
            mutated("upgrade.started", set("metadata", json!("x"))),
            "metadata",
        ),
        (
            "upgrade.started",
            mutated("upgrade.started", set("id", json!(" k"))),
            "id",
        ),
        (
            "upgrade.failed",
            mutated("upgrade.failed", |m| {
                m.remove("error");
            }),
            "error",
        ),
        (
            "upgrade.failed",
            mutated(
                "upgrade.failed",
                set("error", json!("x".repeat(validate::TEXT_MAX + 1))),
            ),
            "error",
        ),
        (
            "session.created",
            mutated("session.created", set("session_id", json!(".."))),
            "session_id",
        ),
        (
            "collection.created",
            mutated("collection.created", set("collection_id", json!("."))),
            "collection_id",
        ),
        (
            "artifact.added",
            mutated(
                "artifact.added",
                set(
                    "sha256",
                    json!("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"),
                ),
            ),
            "sha256",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("sha256", json!("abc"))),
            "sha256",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("size_bytes", json!(-1))),
            "size_bytes",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("size_bytes", json!(1.5))),
            "size_bytes",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("file_name", json!("a\\b"))),
            "file_name",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("file_name", json!("x".repeat(256)))),
            "file_name",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("tags", json!([""]))),
            "tags",
        ),
        (
            "artifact.added",
            mutated(
                "artifact.added",
                set(
                    "tags",
                    json!((0..65).map(|i| format!("t{i}")).collect::<Vec<_>>()),
                ),
            ),
            "tags",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("tags", json!("eks"))),
            "tags",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("expires_at", json!("next tuesday"))),
            "expires_at",
        ),
        (
            "artifact.added",
            mutated("artifact.added", set("artifact_type", json!("video"))),
            "artifact_type",
        ),
        (
            "artifact.added",
            mutated("artifact.added", |m| {
                m.remove("tags");
            }),
            "tags",
        ),
        (
            "artifact.uploaded",
            mutated("artifact.uploaded", set("etag", json!(""))),
            "etag",
        ),
        (
            "artifact.deleted",
            mutated("artifact.deleted", set("reason", json!("bored"))),
            "reason",
        ),
    ];
    for (kind, value, field) in cases {
        let schema_errs = errors(schemas.of(kind), &value);
        assert!(
            !schema_errs.is_empty(),
            "schema of {kind} accepts bad {field}: {value}"
        );
        let why = rust_refuses(&value)
            .unwrap_or_else(|| panic!("Rust accepts bad {field} in {kind}: {value}"));
        assert!(
            why.contains(field),
            "{kind}: the refusal {why:?} does not name {field}"
        );
    }
}

/// Verdicts of a field's schema and of the Rust rule on the same strings.
fn compare(kind: &str, pointer: &str, rule: impl Fn(&str) -> bool, corpus: &[String]) {
    let mut doc = schema::event_schemas()
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, d)| d)
        .unwrap();
    let mut field = doc.pointer_mut(pointer).unwrap().take();
    // An optional field also allows null; strings are all that is compared here.
    field["type"] = json!("string");
    let validator = validator(&field);
    for text in corpus {
        let by_schema = validator.is_valid(&json!(text));
        assert_eq!(
            by_schema,
            rule(text),
            "{kind} {pointer}: schema says {by_schema} for {text:?}"
        );
    }
}

#[test]
fn schema_patterns_and_rust_rules_agree() {
    let mut corpus: Vec<String> = [
        "",
        "a",
        "u-1",
        ".",
        "..",
        "...",
        "a.b",
        "a..b",
        ".hidden",
        "hidden.",
        "a/b",
        "/",
        "a\\b",
        " a",
        "a ",
        " ",
        "a b",
        "a\tb",
        "a\nb",
        "\n",
        "a\u{0}",
        "a\u{1f}b",
        "a\u{7f}",
        "a\u{85}",
        "a\u{9f}b",
        "\u{a0}a",
        "a\u{a0}",
        "a\u{a0}b",
        "\u{2028}a",
        "a\u{2028}..b",
        "a\u{2028}b",
        "\u{3000}x",
        "\u{feff}x",
        "x\u{feff}",
        "x\u{feff}y",
        "\u{200b}x",
        "ünïcödé",
        "日本語",
        "emoji-🚀",
        "a\u{2029}",
        "%2e%2e",
        "C:",
        "con",
        "-",
        "_",
        "\"quoted\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [127, 128, 129, 255, 256, 257, 1024, 1025] {
        corpus.push("x".repeat(n));
    }
    corpus.push("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into());
    corpus.push("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08".into());
    corpus.push("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0".into());
    corpus.push("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n".into());
    let ok = |r: Result<(), logbook::event::EventError>| r.is_ok();
    compare(
        "task.added",
        "/properties/task_id",
        |s| ok(validate::check_id("f", s)),
        &corpus,
    );
    compare(
        "task.added",
        "/properties/parent_id",
        |s| ok(validate::check_id("f", s)),
        &corpus,
    );
    compare(
        "upgrade.started",
        "/properties/id",
        |s| ok(validate::check_id("f", s)),
        &corpus,
    );
    compare(
        "artifact.added",
        "/properties/file_name",
        |s| ok(validate::check_file_name("f", s)),
        &corpus,
    );
    compare(
        "upgrade.started",
        "/properties/cluster_name",
        |s| ok(validate::check_name("f", s)),
        &corpus,
    );
    compare(
        "collection.created",
        "/properties/name",
        |s| ok(validate::check_name("f", s)),
        &corpus,
    );
    compare(
        "artifact.added",
        "/properties/sha256",
        |s| ok(validate::check_sha256("f", s)),
        &corpus,
    );
    compare(
        "artifact.added",
        "/properties/tags/items",
        |s| ok(validate::check_tags("tags", &[s.to_owned()])),
        &corpus,
    );
    compare(
        "upgrade.failed",
        "/properties/error",
        |s| ok(validate::check_text("f", s)),
        &corpus,
    );
}

#[test]
fn envelope_schema_pins_the_recorder_fields() {
    let schemas = Schemas::new();
    let payload = br#"{"type":"artifact.archived","artifact_id":"a-1"}"#;
    let good = envelope_line(7, 1_795_393_535_593_587, payload);
    assert_eq!(good["ts"], "2026-11-23T00:25:35.593587Z");
    assert!(errors(&schemas.envelope, &good).is_empty());
    let bad = |key: &str, v: Value| {
        let mut line = good.clone();
        line[key] = v;
        line
    };
    for line in [
        bad("offset", json!(-1)),
        bad("offset", json!("7")),
        bad("ts", json!("2026-11-23T00:25:35Z")),
        bad("ts", json!("2026-11-23T00:25:35.593587+00:00")),
        bad("ts", json!("2026-11-23 00:25:35.593587Z")),
        bad("schema_version", json!(0)),
        bad("artifact_id", json!("a/1")),
        bad("surprise", json!(true)),
    ] {
        assert!(!schemas.envelope.is_valid(&line), "accepted {line}");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("ts");
    assert!(!schemas.envelope.is_valid(&missing));
    // Without the envelope it is an event, not an envelope line.
    let event: Value = serde_json::from_slice(payload).unwrap();
    assert!(!schemas.envelope.is_valid(&event));
    assert!(schemas.of("artifact.archived").is_valid(&event));
}

#[test]
fn the_v1_fixture_lines_satisfy_the_envelope_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1.ndjson");
    let text = std::fs::read_to_string(&path).unwrap();
    let schemas = Schemas::new();
    let mut lines = 0;
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        let errs = errors(&schemas.envelope, &value);
        assert!(errs.is_empty(), "{line}: {errs:?}");
        lines += 1;
    }
    assert!(lines > 0);
}
