//! The dashboard (`GET /`) in a real browser: headless Chromium (Debian `chromium`, driven by
//! `chromium-driver`, both installed by scripts/test.sh) against a real `logbook serve` with a
//! token. Progress bars move as events are appended, a failed task shows as failed, the
//! artifact search filters, download links serve the file, and the page reconnects and resumes
//! after the server restarts. A screenshot is saved under target/tmp/dashboard.png.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;

use logbook::artifacts::{ArtifactStore, NewArtifact};
use logbook::event::{ArtifactType, TaskType};
use logbook::journal::JournalConfig;
use logbook::recorder::Recorder;
use logbook::tracker::ProgressTracker;
use serde_json::json;
use support::serve::{Server, start, start_on};
use support::webdriver::Browser;

const TOKEN: &str = "dash-s3cret";

/// An upgrade with a parent task and two subtasks, a session with three artifacts.
fn prepare(data: &std::path::Path) {
    let recorder = Arc::new(Recorder::open(data, JournalConfig::default()).unwrap());
    let t = ProgressTracker::new(recorder.clone(), "upg-dash");
    t.start_upgrade("plan-1.30", "prod-eks", "Provision green", None)
        .unwrap();
    t.add_task("green", "Provision green", TaskType::UpgradeStep, None)
        .unwrap();
    t.add_task(
        "green-cp",
        "Control plane",
        TaskType::UpgradeStep,
        Some("green"),
    )
    .unwrap();
    t.add_task(
        "green-ng",
        "Node groups",
        TaskType::UpgradeStep,
        Some("green"),
    )
    .unwrap();
    t.start_task("green").unwrap();
    t.start_task("green-cp").unwrap();
    t.start_task("green-ng").unwrap();
    let store = ArtifactStore::new(recorder.clone(), data.join("artifacts"));
    store
        .create_session("sess-dash", "upg-dash", "prod-eks")
        .unwrap();
    store
        .create_collection("sess-dash", "logs", "Logs", Some("green"))
        .unwrap();
    for (id, name, kind, tags) in [
        (
            "cp-log",
            "control-plane.log",
            ArtifactType::LogFile,
            vec!["green", "cp"],
        ),
        (
            "ng-log",
            "node-groups.log",
            ArtifactType::LogFile,
            vec!["green", "ng"],
        ),
        (
            "report",
            "report.json",
            ArtifactType::TestResult,
            vec!["tests"],
        ),
    ] {
        let source = data.join(name);
        std::fs::write(&source, format!("contents of {name}\n")).unwrap();
        store
            .add_artifact(&NewArtifact {
                session_id: "sess-dash".into(),
                collection_id: "logs".into(),
                artifact_id: id.into(),
                source,
                file_name: None,
                artifact_type: kind,
                tags: tags.into_iter().map(String::from).collect(),
                task_id: Some("green".into()),
                description: None,
                expires_at: None,
            })
            .unwrap();
    }
    drop((t, store));
    Arc::into_inner(recorder).unwrap().close().unwrap();
}

fn post(server: &Server, events: &[serde_json::Value]) {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (status, response) = server.post_body(body.as_bytes());
    assert_eq!(status, 200, "{response}");
}

/// A script: whether `task`'s progress bar is `width` wide (CSS normalizes `60.0%` to `60%`).
fn width_is(task: &str, width: &str) -> String {
    format!(
        "const i = document.querySelector('li[data-task=\"{task}\"] > .task .bar i'); \
         return !!i && i.style.width === '{width}';"
    )
}

#[test]
fn dashboard_moves_fails_filters_downloads_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    prepare(data.path());
    let server = start(data.path(), &["--token", TOKEN]);
    let browser = Browser::start();
    browser.goto(&format!("{}/#token={TOKEN}", server.url));

    // The snapshot: header and task tree.
    browser.wait_for(
        "the upgrade header",
        "return document.getElementById('u-id').textContent === 'upg-dash' \
         && document.querySelectorAll('li[data-task]').length === 3;",
    );
    browser.wait_for(
        "the stream to connect",
        "return document.getElementById('conn').textContent === 'live';",
    );
    assert_eq!(browser.eval(&width_is("green-cp", "0%"), json!([])), true);

    // Progress moves the bars (the subtask's, and its parent's roll-up).
    post(
        &server,
        &[
            json!({"type":"task.progress","upgrade_id":"upg-dash","task_id":"green-cp","percentage":60.0,"message":"creating"}),
        ],
    );
    browser.wait_for("green-cp at 60%", &width_is("green-cp", "60%"));
    browser.wait_for("the parent rolled up to 30%", &width_is("green", "30%"));
    browser.wait_for(
        "the event in the live feed",
        "return [...document.querySelectorAll('#feed div')].some(d => d.textContent.includes('task.progress'));",
    );

    // A failed task shows as failed, with its error.
    post(
        &server,
        &[
            json!({"type":"task.failed","upgrade_id":"upg-dash","task_id":"green-ng","error":"quota exceeded for m7i.xlarge"}),
        ],
    );
    browser.wait_for(
        "green-ng shown as failed",
        "const t = document.querySelector('li[data-task=\"green-ng\"] > .task'); \
         return !!t && t.classList.contains('failed') && t.textContent.includes('quota exceeded');",
    );
    browser.wait_for(
        "the failure highlighted in the feed",
        "return [...document.querySelectorAll('#feed div.bad')].some(d => d.textContent.includes('task.failed'));",
    );

    // Artifact search: all three, then by tag, then by type.
    let rows = "return [...document.querySelectorAll('#art-rows tr[data-artifact]')].map(r => r.dataset.artifact).sort().join(',');";
    browser.wait_for(
        "three artifacts",
        &format!("return (function(){{ {rows} }})() === 'cp-log,ng-log,report';"),
    );
    browser.eval(
        "const f = document.getElementById('f-tag'); f.value = 'cp'; f.dispatchEvent(new Event('input'));",
        json!([]),
    );
    browser.wait_for(
        "the tag filter",
        &format!("return (function(){{ {rows} }})() === 'cp-log';"),
    );
    browser.eval(
        "const f = document.getElementById('f-tag'); f.value = ''; f.dispatchEvent(new Event('input')); \
         const t = document.getElementById('f-type'); t.value = 'test_result'; t.dispatchEvent(new Event('change'));",
        json!([]),
    );
    browser.wait_for(
        "the type filter",
        &format!("return (function(){{ {rows} }})() === 'report';"),
    );

    // The download link serves the file (token in the link).
    let href = browser.eval(
        "return document.querySelector('#art-rows tr[data-artifact=\"report\"] a').href;",
        json!([]),
    );
    let mut response = ureq::get(href.as_str().unwrap()).call().unwrap();
    assert_eq!(
        response.body_mut().read_to_string().unwrap(),
        "contents of report.json\n"
    );

    let shot = browser.screenshot();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &shot).unwrap();
    println!("screenshot: {}", path.display());

    // The server restarts: the page reconnects, resumes after its last offset, and moves on.
    let addr = server.addr.clone();
    drop(server);
    browser.wait_for(
        "the page to notice",
        "return document.getElementById('conn').textContent !== 'live';",
    );
    let server = start_on(data.path(), &addr, &["--token", TOKEN]);
    post(
        &server,
        &[
            json!({"type":"task.progress","upgrade_id":"upg-dash","task_id":"green-cp","percentage":90.0}),
        ],
    );
    browser.wait_for(
        "green-cp at 90% after the restart",
        &width_is("green-cp", "90%"),
    );
    browser.wait_for(
        "live again",
        "return document.getElementById('conn').textContent === 'live';",
    );
    // Nothing twice in the feed: every offset at most once.
    let dupes = browser.eval(
        "const o = [...document.querySelectorAll('#feed div[data-offset]')].map(d => d.dataset.offset); \
         return o.length - new Set(o).size;",
        json!([]),
    );
    assert_eq!(dupes, 0);
}
