//! Unit tests of the event types: wire form, refusals, accessors, validation.

use serde_json::{Map, Value, json};

use super::*;

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn transition(task: &str) -> TaskTransition {
    TaskTransition {
        id: None,
        upgrade_id: "u-1".into(),
        task_id: task.into(),
        message: None,
    }
}

/// One event of every type (producer types in [`EVENT_TYPES`] order, then system types).
fn samples() -> Vec<Event> {
    let sha = "ab".repeat(32);
    vec![
        UpgradeStarted {
            id: Some("k-1".into()),
            upgrade_id: "u-1".into(),
            plan_id: "plan-1".into(),
            cluster_name: "prod".into(),
            phase: "Initialization".into(),
            metadata: Some(obj(json!({"from": "1.29", "to": "1.30"}))),
        }
        .into(),
        UpgradePhaseChanged {
            id: None,
            upgrade_id: "u-1".into(),
            phase: "Planning".into(),
        }
        .into(),
        UpgradeCompleted {
            id: None,
            upgrade_id: "u-1".into(),
            message: Some("done".into()),
        }
        .into(),
        UpgradeFailed {
            id: None,
            upgrade_id: "u-1".into(),
            error: "boom".into(),
        }
        .into(),
        TaskAdded {
            id: None,
            upgrade_id: "u-1".into(),
            task_id: "t-2".into(),
            name: "child".into(),
            task_type: TaskType::UpgradeStep,
            parent_id: Some("t-1".into()),
        }
        .into(),
        Event::TaskStarted(transition("t-1")),
        Event::TaskPaused(TaskTransition {
            message: Some("waiting".into()),
            ..transition("t-1")
        }),
        Event::TaskResumed(transition("t-1")),
        Event::TaskCancelled(transition("t-1")),
        TaskProgress {
            id: None,
            upgrade_id: "u-1".into(),
            task_id: "t-1".into(),
            percentage: 50.0,
            message: Some("half".into()),
            details: Some(obj(json!({"nodes": 3}))),
        }
        .into(),
        TaskCompleted {
            id: None,
            upgrade_id: "u-1".into(),
            task_id: "t-1".into(),
            message: None,
            metrics: Some(obj(json!({"seconds": 12.5}))),
        }
        .into(),
        TaskFailed {
            id: None,
            upgrade_id: "u-1".into(),
            task_id: "t-1".into(),
            error: "timeout".into(),
        }
        .into(),
        SessionCreated {
            id: None,
            session_id: "s-1".into(),
            upgrade_id: "u-1".into(),
            cluster_name: "prod".into(),
        }
        .into(),
        CollectionCreated {
            id: None,
            session_id: "s-1".into(),
            collection_id: "c-1".into(),
            name: "logs".into(),
            task_id: Some("t-1".into()),
        }
        .into(),
        ArtifactAdded {
            id: None,
            session_id: "s-1".into(),
            collection_id: "c-1".into(),
            artifact_id: "a-1".into(),
            file_name: "kubectl.log".into(),
            artifact_type: ArtifactType::LogFile,
            sha256: sha,
            size_bytes: 1234,
            tags: vec!["eks".into(), "green".into()],
            task_id: Some("t-1".into()),
            description: Some("kubectl output".into()),
            expires_at: Some("2027-01-01T00:00:00Z".into()),
        }
        .into(),
        ArtifactUploaded {
            id: None,
            artifact_id: "a-1".into(),
            s3_key: "prefix/artifacts/s-1/c-1/kubectl.log".into(),
            etag: "\"9b2cf535f27731c974343645a3985328\"".into(),
        }
        .into(),
        ArtifactUploadFailed {
            id: None,
            artifact_id: "a-1".into(),
            error: "503 Slow Down".into(),
        }
        .into(),
        ArtifactArchived {
            id: None,
            artifact_id: "a-1".into(),
        }
        .into(),
        ArtifactDeleted {
            id: None,
            artifact_id: "a-1".into(),
            reason: DeleteReason::Expired,
        }
        .into(),
        JournalRepaired {
            id: None,
            cut_from_offset: 6,
            bytes_cut: 120,
            segment: "journal/00000000000000000000.log".into(),
            reason: "checksum mismatch".into(),
            quarantine: None,
        }
        .into(),
        Event::SubscriberSkipped(SubscriberSkipped {
            id: Some("skipped-eventbridge-7".into()),
            consumer: "eventbridge".into(),
            skipped_offset: 7,
            event_type: "upgrade.started".into(),
            reason: "too large".into(),
        }),
    ]
}

#[test]
fn every_type_has_a_sample_whose_kind_is_its_serialized_type() {
    let samples = samples();
    let kinds: Vec<&str> = samples.iter().map(Event::kind).collect();
    let expected: Vec<&str> = EVENT_TYPES
        .iter()
        .chain(SYSTEM_EVENT_TYPES.iter())
        .copied()
        .collect();
    assert_eq!(kinds, expected);
    for event in &samples {
        let value: Value = serde_json::from_slice(&event.to_payload()).expect("JSON");
        assert_eq!(value["type"], event.kind());
        assert_eq!(
            SYSTEM_EVENT_TYPES.contains(&event.kind()),
            event.is_system()
        );
    }
}

#[test]
fn payload_is_compact_type_first_and_round_trips() {
    for event in samples() {
        let payload = event.to_payload();
        let text = String::from_utf8(payload.clone()).expect("UTF-8");
        assert!(
            text.starts_with(&format!("{{\"type\":\"{}\"", event.kind())),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains(": "), "{text}");
        assert!(!text.contains("null"), "absent fields are omitted: {text}");
        assert_eq!(Event::parse(&payload), Ok(event.clone()));
        // The envelope can be spliced in front of it.
        assert_eq!(
            crate::envelope::check_payload(&payload),
            Ok(payload.clone())
        );
    }
}

#[test]
fn design_example_parses_and_serializes_identically() {
    let text = r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":50.0,"message":"half"}"#;
    let event = Event::parse(text.as_bytes()).expect("parses");
    assert_eq!(event.to_payload(), text.as_bytes());
    assert_eq!(event.validate(), Ok(()));
    // An integer percentage is a number too.
    let event = Event::parse(
        br#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":50}"#,
    )
    .expect("parses");
    assert!(
        matches!(event, Event::TaskProgress(TaskProgress { percentage, .. }) if percentage == 50.0)
    );
}

fn parse_error(text: &str) -> String {
    match Event::parse(text.as_bytes()) {
        Err(EventError::Parse { reason, .. }) => reason,
        other => panic!("{text}: expected a parse error, got {other:?}"),
    }
}

#[test]
fn shape_refusals_name_the_field() {
    let unknown =
        parse_error(r#"{"type":"task.started","upgrade_id":"u","task_id":"t","percentage":1}"#);
    assert!(unknown.contains("unknown field `percentage`"), "{unknown}");
    let missing = parse_error(r#"{"type":"task.progress","upgrade_id":"u","percentage":1}"#);
    assert!(missing.contains("missing field `task_id`"), "{missing}");
    let duplicate =
        parse_error(r#"{"type":"upgrade.failed","upgrade_id":"u","error":"a","error":"b"}"#);
    assert!(duplicate.contains("duplicate field `error`"), "{duplicate}");
    let two_types = parse_error(
        r#"{"type":"upgrade.failed","type":"upgrade.failed","upgrade_id":"u","error":"a"}"#,
    );
    assert!(two_types.contains("duplicate field `type`"), "{two_types}");
    let kind = parse_error(r#"{"type":"task.exploded","task_id":"t"}"#);
    assert!(kind.contains("unknown variant `task.exploded`"), "{kind}");
    let untyped = parse_error(r#"{"task_id":"t"}"#);
    assert!(untyped.contains("missing field `type`"), "{untyped}");
    let enum_value = parse_error(
        r#"{"type":"task.added","upgrade_id":"u","task_id":"t","name":"n","task_type":"Validation"}"#,
    );
    assert!(
        enum_value.contains("unknown variant `Validation`"),
        "{enum_value}"
    );
    let reason = parse_error(r#"{"type":"artifact.deleted","artifact_id":"a","reason":"bored"}"#);
    assert!(reason.contains("unknown variant `bored`"), "{reason}");
    // The envelope's keys are not event fields.
    let reserved = parse_error(r#"{"offset":3,"type":"artifact.archived","artifact_id":"a"}"#);
    assert!(reserved.contains("unknown field `offset`"), "{reserved}");
    for bad in [
        "",
        "[]",
        "null",
        r#"{"type":"artifact.archived","artifact_id":"a"} {}"#,
        r#"{"type":"task.progress","upgrade_id":"u","task_id":"t","percentage":NaN}"#,
        r#"{"type":"task.progress","upgrade_id":"u","task_id":"t","percentage":"50"}"#,
        r#"{"type":"artifact.added","session_id":"s","collection_id":"c","artifact_id":"a","file_name":"f","artifact_type":"report","sha256":"x","size_bytes":-1,"tags":[]}"#,
        r#"{"type":"upgrade.started","upgrade_id":"u","plan_id":"p","cluster_name":"c","phase":"x","metadata":[1]}"#,
    ] {
        parse_error(bad);
    }
}

#[test]
fn every_type_refuses_unknown_and_missing_fields() {
    for event in samples() {
        let value = obj(serde_json::from_slice(&event.to_payload()).expect("JSON"));
        let mut extra = value.clone();
        extra.insert("surprise".into(), json!(1));
        let why = parse_error(&Value::Object(extra).to_string());
        assert!(
            why.contains("unknown field `surprise`"),
            "{}: {why}",
            event.kind()
        );
        // Drop each field in turn: required ones are missed, optional ones are not.
        for key in value.keys().filter(|k| *k != "type") {
            let mut fewer = value.clone();
            fewer.remove(key);
            let parsed = Event::parse(Value::Object(fewer).to_string().as_bytes());
            let optional = matches!(
                key.as_str(),
                "id" | "metadata"
                    | "message"
                    | "details"
                    | "metrics"
                    | "parent_id"
                    | "task_id"
                    | "description"
                    | "expires_at"
                    | "quarantine"
            ) && !(key == "task_id" && event.kind().starts_with("task."));
            match parsed {
                Ok(_) => assert!(optional, "{}: {key} is required", event.kind()),
                Err(EventError::Parse { reason: why, .. }) => {
                    assert!(!optional, "{}: {key} is optional", event.kind());
                    assert!(why.contains(&format!("missing field `{key}`")), "{why}");
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
}

#[test]
fn optional_null_reads_as_absent() {
    let event =
        Event::parse(br#"{"type":"upgrade.completed","upgrade_id":"u","message":null,"id":null}"#)
            .expect("parses");
    assert_eq!(
        event.to_payload(),
        br#"{"type":"upgrade.completed","upgrade_id":"u"}"#
    );
}

#[test]
fn every_event_may_carry_an_idempotency_key() {
    for event in samples() {
        let mut value = obj(serde_json::from_slice(&event.to_payload()).expect("JSON"));
        value.insert("id".into(), json!("key-7"));
        let parsed = Event::parse(Value::Object(value).to_string().as_bytes()).expect("parses");
        assert_eq!(parsed.id(), Some("key-7"), "{}", parsed.kind());
        // Declared first, so it follows the type.
        let text = String::from_utf8(parsed.to_payload()).expect("UTF-8");
        assert!(
            text.starts_with(&format!(
                "{{\"type\":\"{}\",\"id\":\"key-7\"",
                parsed.kind()
            )),
            "{text}"
        );
    }
}

#[test]
fn accessors() {
    let samples = samples();
    let by_kind = |kind: &str| {
        samples
            .iter()
            .find(|e| e.kind() == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let e = by_kind("task.progress");
    assert_eq!(
        (e.upgrade_id(), e.task_id(), e.session_id(), e.artifact_id()),
        (Some("u-1"), Some("t-1"), None, None)
    );
    let e = by_kind("artifact.added");
    assert_eq!(
        (
            e.upgrade_id(),
            e.task_id(),
            e.session_id(),
            e.collection_id(),
            e.artifact_id()
        ),
        (None, Some("t-1"), Some("s-1"), Some("c-1"), Some("a-1"))
    );
    let e = by_kind("session.created");
    assert_eq!((e.upgrade_id(), e.session_id()), (Some("u-1"), Some("s-1")));
    let e = by_kind("artifact.deleted");
    assert_eq!((e.artifact_id(), e.upgrade_id()), (Some("a-1"), None));
    assert_eq!(by_kind("upgrade.started").id(), Some("k-1"));
    assert_eq!(by_kind("upgrade.failed").id(), None);
    for event in &samples {
        if event.kind().starts_with("task.") || event.kind().starts_with("upgrade.") {
            assert!(event.upgrade_id().is_some(), "{}", event.kind());
        }
        if event.kind().starts_with("task.") {
            assert!(event.task_id().is_some(), "{}", event.kind());
        }
        if event.kind().starts_with("artifact.") {
            assert!(event.artifact_id().is_some(), "{}", event.kind());
            assert!(event.artifact_status().is_some(), "{}", event.kind());
        } else {
            assert_eq!(event.artifact_status(), None, "{}", event.kind());
        }
    }
    let statuses: Vec<Option<ProgressStatus>> = [
        "task.added",
        "task.started",
        "task.paused",
        "task.cancelled",
        "task.progress",
        "upgrade.failed",
    ]
    .iter()
    .map(|k| by_kind(k).progress_status())
    .collect();
    use ProgressStatus as S;
    assert_eq!(
        statuses,
        [
            Some(S::NotStarted),
            Some(S::InProgress),
            Some(S::Paused),
            Some(S::Cancelled),
            None,
            Some(S::Failed)
        ]
    );
    assert!(S::Cancelled.is_terminal() && !S::Paused.is_terminal());
}

#[test]
fn samples_are_valid() {
    for event in samples() {
        if event.is_system() {
            assert_eq!(
                event.validate(),
                Err(EventError::Reserved { kind: event.kind() })
            );
            assert_eq!(event.validate_system(), Ok(()), "{}", event.kind());
        } else {
            assert_eq!(event.validate(), Ok(()), "{}", event.kind());
            assert_eq!(
                event.validate_system(),
                Err(EventError::NotSystem { kind: event.kind() })
            );
        }
    }
}

fn field_error(event: &Event) -> (String, FieldProblem) {
    match event.validate() {
        Err(EventError::Field { field, problem }) => (field, problem),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn validation_refusals_name_the_field() {
    let mut progress = TaskProgress {
        id: None,
        upgrade_id: "u-1".into(),
        task_id: "t-1".into(),
        percentage: f64::NAN,
        message: None,
        details: None,
    };
    assert!(matches!(
        field_error(&progress.clone().into()),
        (f, FieldProblem::NotFinite(_)) if f == "percentage"
    ));
    progress.percentage = 150.0;
    let event: Event = progress.clone().into();
    assert_eq!(
        event.validate().err().map(|e| e.to_string()).as_deref(),
        Some("percentage: must be within 0..=100, found 150")
    );
    progress.percentage = 100.0;
    progress.task_id = "../../etc/passwd".into();
    assert_eq!(
        field_error(&progress.clone().into()),
        ("task_id".into(), FieldProblem::PathSeparator('/'))
    );
    progress.task_id = "t-1".into();
    progress.id = Some(String::new());
    assert_eq!(
        field_error(&progress.into()),
        ("id".into(), FieldProblem::Empty)
    );

    let Some(Event::ArtifactAdded(added)) =
        samples().into_iter().find(|e| e.kind() == "artifact.added")
    else {
        panic!("no artifact.added sample")
    };
    let refused = |change: &dyn Fn(&mut ArtifactAdded)| {
        let mut a = added.clone();
        change(&mut a);
        field_error(&a.into())
    };
    assert_eq!(
        refused(&|a| a.file_name = "..".into()),
        ("file_name".into(), FieldProblem::DotDot)
    );
    assert_eq!(
        refused(&|a| a.file_name = ".".into()),
        ("file_name".into(), FieldProblem::Dot)
    );
    assert_eq!(
        refused(&|a| a.file_name = "x".repeat(256)),
        (
            "file_name".into(),
            FieldProblem::TooLong { len: 256, max: 255 }
        )
    );
    assert_eq!(
        refused(&|a| a.sha256 = "AB".repeat(32)),
        ("sha256".into(), FieldProblem::NotSha256)
    );
    assert_eq!(
        refused(&|a| a.tags.push(" ".repeat(129))),
        (
            "tags[2]".into(),
            FieldProblem::TooLong { len: 129, max: 128 }
        )
    );
    assert!(matches!(
        refused(&|a| a.expires_at = Some("next week".into())),
        (f, FieldProblem::NotTimestamp(_)) if f == "expires_at"
    ));
    assert_eq!(
        refused(&|a| a.session_id = "s\\1".into()),
        ("session_id".into(), FieldProblem::PathSeparator('\\'))
    );
    assert_eq!(
        refused(&|a| a.collection_id = "c\u{0}".into()),
        ("collection_id".into(), FieldProblem::ControlCharacter)
    );
    assert_eq!(
        refused(&|a| a.description = Some("x".repeat(validate::TEXT_MAX + 1))),
        (
            "description".into(),
            FieldProblem::TooLong {
                len: validate::TEXT_MAX + 1,
                max: validate::TEXT_MAX
            }
        )
    );

    let started: Event = UpgradeStarted {
        id: None,
        upgrade_id: "u-1".into(),
        plan_id: "p".into(),
        cluster_name: "prod\n".into(),
        phase: "x".into(),
        metadata: None,
    }
    .into();
    assert_eq!(
        field_error(&started),
        ("cluster_name".into(), FieldProblem::ControlCharacter)
    );
    let phase: Event = UpgradePhaseChanged {
        id: None,
        upgrade_id: "u-1".into(),
        phase: String::new(),
    }
    .into();
    assert_eq!(field_error(&phase), ("phase".into(), FieldProblem::Empty));
    let task: Event = TaskAdded {
        id: None,
        upgrade_id: "u-1".into(),
        task_id: "t".into(),
        name: "n".into(),
        task_type: TaskType::Cleanup,
        parent_id: Some(" t".into()),
    }
    .into();
    assert_eq!(
        field_error(&task),
        ("parent_id".into(), FieldProblem::SurroundingWhitespace)
    );
}

#[test]
fn reads_the_repair_note_the_journal_writes() {
    // Exactly what `Journal::open` appends after a repair (see src/journal/mod.rs).
    for quarantine in [json!("journal/quarantine/x.bin"), Value::Null] {
        let note = json!({
            "type": "journal.repaired",
            "cut_from_offset": 6,
            "bytes_cut": 120,
            "segment": "journal/00000000000000000000.log",
            "reason": "checksum mismatch",
            "quarantine": quarantine,
        });
        let event = Event::parse(note.to_string().as_bytes()).expect("parses");
        assert_eq!(event.kind(), "journal.repaired");
        assert!(event.is_system());
        assert_eq!(
            event.validate(),
            Err(EventError::Reserved {
                kind: "journal.repaired"
            })
        );
    }
}

#[test]
fn schemas_cover_every_type_with_a_const_tag() {
    let schemas = schema::event_schemas();
    let kinds: Vec<&str> = schemas.iter().map(|(k, _)| k.as_str()).collect();
    let expected: Vec<&str> = EVENT_TYPES
        .iter()
        .chain(SYSTEM_EVENT_TYPES.iter())
        .copied()
        .collect();
    assert_eq!(kinds, expected);
    for (kind, doc) in &schemas {
        assert_eq!(doc["$schema"], schema::DIALECT);
        assert_eq!(doc["properties"]["type"]["const"], kind.as_str());
        assert_eq!(doc["additionalProperties"], false, "{kind}");
        assert_eq!(doc["required"][0], "type", "{kind}");
        assert!(doc["properties"]["id"].is_object(), "{kind}");
    }
    let envelope = schema::envelope_schema();
    assert_eq!(
        envelope["required"],
        json!(["offset", "ts", "schema_version"])
    );
    assert_eq!(envelope["properties"]["schema_version"]["minimum"], 1);
    assert_eq!(envelope["properties"]["offset"]["minimum"], 0);
    assert_eq!(envelope["properties"]["ts"]["format"], "date-time");
    assert_eq!(envelope["oneOf"].as_array().map(Vec::len), Some(21));
}

#[test]
fn parse_errors_name_the_field() {
    let field = |text: &str| match Event::parse(text.as_bytes()) {
        Err(EventError::Parse { field, reason }) => (field, reason),
        other => panic!("{text}: {other:?}"),
    };
    let cases = [
        (
            r#"{"type":"task.progress","upgrade_id":"u","task_id":"t","percentage":"50"}"#,
            Some("percentage"),
        ),
        (
            r#"{"type":"task.added","upgrade_id":"u","task_id":"t","name":"n","task_type":"Validation"}"#,
            Some("task_type"),
        ),
        (
            r#"{"type":"upgrade.started","upgrade_id":"u","plan_id":"p","cluster_name":"c","phase":"x","metadata":[1]}"#,
            Some("metadata"),
        ),
        (
            r#"{"type":"artifact.added","session_id":"s","collection_id":"c","artifact_id":"a","file_name":"f","artifact_type":"report","sha256":"x","size_bytes":-1,"tags":[]}"#,
            Some("size_bytes"),
        ),
        (
            r#"{"type":"task.started","upgrade_id":"u","task_id":"t","extra":1}"#,
            Some("extra"),
        ),
        (
            r#"{"type":"task.started","upgrade_id":"u"}"#,
            Some("task_id"),
        ),
        (r#"{"type":"task.exploded","task_id":"t"}"#, Some("type")),
        (r#"{"task_id":"t"}"#, Some("type")),
        (
            r#"{"type":"artifact.archived","artifact_id":7}"#,
            Some("artifact_id"),
        ),
        ("[1]", None),
        ("{", None),
    ];
    for (text, expected) in cases {
        let (found, reason) = field(text);
        assert_eq!(found.as_deref(), expected, "{text}: {reason}");
        if let Some(name) = expected {
            assert!(reason.contains(name), "{reason}");
        }
    }
    let (_, reason) = field(cases[0].0);
    assert_eq!(
        reason,
        "percentage: invalid type: string \"50\", expected f64"
    );
}

#[test]
fn locating_a_bad_field_is_bounded() {
    let mut object =
        obj(json!({"type": "task.progress", "upgrade_id": "u", "task_id": "t", "percentage": "x"}));
    for i in 0..10_000 {
        object.insert(format!("junk{i}"), json!(i));
    }
    let started = std::time::Instant::now();
    let err = Event::parse(Value::Object(object).to_string().as_bytes());
    assert!(
        matches!(err, Err(EventError::Parse { field: None, .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}
