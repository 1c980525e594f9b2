//! From S3 and from the directory, the same output byte for byte: a journal recorded through
//! the library, every record sealed, shipped with `logbook::s3::Shipper` to a real moto_server
//! on 127.0.0.1; then every command (and ranges by offset and time) runs on both sources.
//! moto is installed into ../.venv by ./scripts/test.sh; without it this test fails (no skip).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../tests/support/moto.rs"]
mod moto;
mod support;

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use logbook::s3::{S3Location, Shipper, UploadConfig};
use moto::Moto;
use support::{bad, lines, ok, record_rich_run, replay_env};

const BUCKET: &str = "replay-test";

#[test]
fn s3_and_dir_sources_give_identical_output() {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sdk = rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load(),
    );
    let client = logbook::s3::client(&sdk);
    rt.block_on(client.create_bucket().bucket(BUCKET).send())
        .unwrap();

    let data = tempfile::tempdir().unwrap();
    let recorder = record_rich_run(data.path(), true);
    let location: S3Location = format!("s3://{BUCKET}/team/prod").parse().unwrap();
    let mut shipper = rt
        .block_on(Shipper::open(
            data.path(),
            recorder.clone(),
            client,
            location.clone(),
            UploadConfig::default(),
        ))
        .unwrap()
        .upload_artifacts(false);
    let report = rt.block_on(shipper.ship_once()).unwrap();
    let end = recorder.journal().next_offset();
    assert_eq!(report.next_offset, end);
    assert!(report.segments > 3, "{report:?}");
    drop(shipper);
    Arc::into_inner(recorder).unwrap().close().unwrap();

    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let dir = data.path().display().to_string();
    let url = location.to_string();
    let run = |source: &str, args: &[&str]| {
        let mut all = vec![args[0], source];
        all.extend(&args[1..]);
        replay_env(&all, &env)
    };
    let timeline = lines(&ok(run(&dir, &["timeline", "--json", "--progress"])));
    let (a, b) = (end / 3, 2 * end / 3);
    let (ta, tb) = (
        timeline[a as usize]["ts"].as_str().unwrap().to_string(),
        timeline[b as usize]["ts"].as_str().unwrap().to_string(),
    );
    let (a, b) = (a.to_string(), b.to_string());
    let last = (end - 1).to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["timeline"],
        vec!["timeline", "--json", "--progress"],
        vec!["timeline", "--from", &a, "--until", &b],
        vec!["timeline", "--from", &ta, "--until", &tb, "--progress"],
        vec!["timeline", "--from", &last],
        vec!["state", "--json"],
        vec!["state", "--at", &a],
        vec!["state", "--at", &ta, "--json"],
        vec!["state", "--at", &b, "--upgrade", "upg-1", "--json"],
        vec!["diff", "--from", &a, "--to", &b],
        vec!["diff", "--from", &ta, "--to", &tb, "--json"],
        vec!["tasks"],
        vec!["tasks", "--json", "--until", &b],
        vec!["export"],
        vec!["export", "--format", "csv", "--from", &a, "--until", &b],
        vec!["export", "--from", &ta, "--until", &tb, "--threads", "1"],
        vec!["verify"],
    ];
    for args in &commands {
        let from_dir = ok(run(&dir, args));
        let from_s3 = ok(run(&url, args));
        assert!(!from_dir.is_empty(), "{args:?}");
        assert!(
            from_dir == from_s3,
            "{args:?} differs:\n--- dir\n{from_dir}\n--- s3\n{from_s3}"
        );
    }
    // Bad input is bad input from S3 too.
    bad(
        run(&url, &["state", "--at", &end.to_string()]),
        "beyond the end",
    );
    bad(
        run(&url, &["tasks", "--upgrade", "nope"]),
        "unknown upgrade",
    );
    bad(
        run(&format!("s3://{BUCKET}/elsewhere"), &["timeline"]),
        "no journal segments",
    );
    bad(run("s3://B/x", &["timeline"]), "s3://B/x");

    // A tampered object: verify exits 1 naming it.
    let rt2 = &rt;
    let listed = rt2
        .block_on(logbook::s3::segments::list(
            &logbook::s3::Objects::new(logbook::s3::client(&sdk), location.clone()),
            None,
        ))
        .unwrap();
    let victim = &listed[1];
    let object = rt2
        .block_on(
            logbook::s3::client(&sdk)
                .get_object()
                .bucket(BUCKET)
                .key(victim.key.as_str())
                .send(),
        )
        .unwrap();
    let mut bytes = rt2
        .block_on(object.body.collect())
        .unwrap()
        .into_bytes()
        .to_vec();
    bytes[20] ^= 0x01;
    rt2.block_on(
        logbook::s3::client(&sdk)
            .put_object()
            .bucket(BUCKET)
            .key(victim.key.as_str())
            .body(bytes.into())
            .send(),
    )
    .unwrap();
    let damaged = run(&url, &["verify"]);
    assert_eq!(damaged.status.code(), Some(1), "{damaged:?}");
    assert!(String::from_utf8_lossy(&damaged.stdout).contains(victim.key.as_str()));
    assert_eq!(run(&url, &["export"]).status.code(), Some(1));
}
