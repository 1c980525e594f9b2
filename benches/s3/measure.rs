//! The measured operations: raw PutObject / GetObject through the SDK client, the shipper and
//! restore over the same objects, the CPU each side used, and the local costs (hashing,
//! verification, write+fsync, the progress commit) that explain a gap between them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt;
use logbook::journal::record;
use logbook::journal::segment::{
    decode_footer_from_file_bytes, decode_segment, decompress_block, verify_segment,
};
use logbook::recorder::Recorder;
use logbook::s3::layout::{self, meta};
use logbook::s3::{Objects, RestoreOptions, S3Location, Shipper, UploadConfig, restore, segments};

/// One measurement: wall time, and CPU seconds of this process and of moto_server.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub bytes: u64,
    pub wall: Duration,
    pub self_cpu: f64,
    pub moto_cpu: f64,
    /// CPU seconds of every other process on the machine (background load).
    pub bg_cpu: f64,
}

impl Sample {
    pub fn mib_s(&self) -> f64 {
        self.bytes as f64 / 1_048_576.0 / self.wall.as_secs_f64()
    }
}

/// utime + stime ticks (USER_HZ = 100) of a /proc stat file.
fn ticks(path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    let Some(after) = stat.rfind(')').and_then(|c| stat.get(c + 1..)) else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

/// Busy ticks of the whole machine (all CPUs: user nice system irq softirq steal), from
/// /proc/stat.
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| v.get(i).copied().unwrap_or(0))
        .sum()
}

/// The pids of this process's children (moto_server: tests/support/moto.rs keeps its `Child`
/// private).
pub fn child_pids() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|c| stat.get(c + 1..))
            .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_owned));
        if ppid.as_deref() == Some(me.as_str()) {
            out.push(pid);
        }
    }
    out
}

/// A point to measure from.
pub struct Mark {
    at: Instant,
    self_ticks: u64,
    moto_ticks: u64,
    machine_ticks: u64,
}

pub fn mark(moto: &[u32]) -> Mark {
    Mark {
        at: Instant::now(),
        self_ticks: ticks("/proc/self/stat"),
        moto_ticks: moto.iter().map(|p| ticks(&format!("/proc/{p}/stat"))).sum(),
        machine_ticks: machine_ticks(),
    }
}

impl Mark {
    pub fn sample(&self, moto: &[u32], bytes: u64) -> Sample {
        self.until(&mark(moto), bytes)
    }

    /// The sample from this mark to a later one.
    pub fn until(&self, now: &Mark, bytes: u64) -> Sample {
        let own = now.self_ticks - self.self_ticks;
        let moto = now.moto_ticks - self.moto_ticks;
        let machine = now.machine_ticks.saturating_sub(self.machine_ticks);
        Sample {
            bytes,
            wall: now.at - self.at,
            self_cpu: own as f64 / 100.0,
            moto_cpu: moto as f64 / 100.0,
            bg_cpu: machine.saturating_sub(own + moto) as f64 / 100.0,
        }
    }
}

/// A sealed segment file as the shipper would send it.
pub struct Object {
    pub name: String,
    pub bytes: Vec<u8>,
    /// The shipper's metadata for it (same keys and value lengths).
    pub metadata: HashMap<String, String>,
}

pub fn load_objects(paths: &[PathBuf]) -> Vec<Object> {
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let footer = decode_footer_from_file_bytes(&bytes).unwrap();
            let metadata = HashMap::from([
                (meta::FIRST.to_string(), footer.first_offset.to_string()),
                (meta::LAST.to_string(), footer.last_offset.to_string()),
                (meta::COUNT.to_string(), footer.count.to_string()),
                (
                    meta::BLAKE3.to_string(),
                    blake3::hash(&bytes).to_hex().to_string(),
                ),
                (
                    meta::CHAIN_START.to_string(),
                    layout::hex(&footer.prev_hash),
                ),
                (meta::CHAIN_END.to_string(), layout::hex(&footer.last_hash)),
                (meta::WRITER.to_string(), "0".repeat(32)),
            ]);
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            Object {
                name,
                bytes,
                metadata,
            }
        })
        .collect()
}

/// What a raw PUT round sends per object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// A plain PutObject of the bytes.
    Plain,
    /// As the shipper's segment PUT: `If-None-Match: *` and its metadata.
    Conditional,
    /// `Conditional`, then a small `head.json` PutObject, as the shipper does per segment.
    ConditionalHead,
}

/// PutObject of every object under `{prefix}/journal/`, sequentially (concurrency 1).
pub async fn raw_put(
    client: &Client,
    bucket: &str,
    prefix: &str,
    objects: &[Object],
    kind: Put,
    moto: &[u32],
) -> Sample {
    let bodies: Vec<ByteStream> = objects
        .iter()
        .map(|o| ByteStream::from(o.bytes.clone()))
        .collect();
    let head = vec![b' '; 300];
    let bytes = objects.iter().map(|o| o.bytes.len() as u64).sum();
    let start = mark(moto);
    for (object, body) in objects.iter().zip(bodies) {
        let mut put = client
            .put_object()
            .bucket(bucket)
            .key(format!("{prefix}/journal/{}", object.name))
            .content_type("application/octet-stream")
            .body(body);
        if kind != Put::Plain {
            put = put
                .if_none_match("*")
                .set_metadata(Some(object.metadata.clone()));
        }
        put.send().await.unwrap();
        if kind == Put::ConditionalHead {
            client
                .put_object()
                .bucket(bucket)
                .key(format!("{prefix}/head.json"))
                .content_type("application/json")
                .body(ByteStream::from(head.clone()))
                .send()
                .await
                .unwrap();
        }
    }
    start.sample(moto, bytes)
}

/// `Shipper::ship_segment` over every pending segment, then the one `head.json` write of the
/// round (only that is timed; opening the shipper takes the lease first).
pub async fn ship(
    data: &Path,
    recorder: Arc<Recorder>,
    client: &Client,
    location: S3Location,
    moto: &[u32],
) -> Sample {
    let mut shipper = Shipper::open(
        data,
        recorder,
        client.clone(),
        location,
        UploadConfig::default(),
    )
    .await
    .unwrap()
    .upload_artifacts(false);
    let pending = shipper.pending();
    let start = mark(moto);
    let mut bytes = 0;
    for (segment, _) in &pending {
        bytes += shipper.ship_segment(segment).await.unwrap();
    }
    shipper.write_head().await.unwrap();
    start.sample(moto, bytes)
}

/// ListObjectsV2 of the segment objects, then GetObject of each into memory, `concurrency` at
/// once (as restore does: buffered, in order). With `verify`, each body is then hashed and
/// verified in memory (BLAKE3 + `verify_segment`, on the blocking pool as restore does): the
/// floor of any restore that checks every record, without the disk writes.
pub async fn raw_get(
    client: &Client,
    location: &S3Location,
    concurrency: usize,
    verify: bool,
    moto: &[u32],
) -> Sample {
    let start = mark(moto);
    let objects = Objects::new(client.clone(), location.clone());
    let listed = segments::list(&objects, None).await.unwrap();
    let bytes: usize = futures_util::stream::iter(listed)
        .map(|l| async move {
            let object = client
                .get_object()
                .bucket(&location.bucket)
                .key(l.key.as_str())
                .send()
                .await
                .unwrap();
            let body = object.body.collect().await.unwrap().into_bytes();
            if verify {
                tokio::task::spawn_blocking(move || {
                    std::hint::black_box(blake3::hash(&body));
                    verify_segment(&body, |r| {
                        std::hint::black_box(r);
                    })
                    .unwrap();
                    body.len()
                })
                .await
                .unwrap()
            } else {
                body.len()
            }
        })
        .buffered(concurrency)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    start.sample(moto, bytes as u64)
}

/// One restore: the whole call, and its part up to the last segment written.
pub struct Restored {
    pub total: Sample,
    /// From the start to the last segment downloaded, verified, written and fsynced.
    pub applied: Sample,
    pub events: u64,
}

pub async fn restore_once(
    client: &Client,
    location: &S3Location,
    target: &Path,
    concurrency: usize,
    moto: &[u32],
) -> Restored {
    let options = RestoreOptions {
        concurrency,
        ..RestoreOptions::default()
    };
    let start = mark(moto);
    let mut last = None;
    let (report, follower) = restore(client, location, target, &options, &mut |_| {}, &mut |_| {
        last = Some(mark(moto));
    })
    .await
    .unwrap();
    let total = start.sample(moto, report.bytes);
    drop(follower);
    Restored {
        total,
        applied: start.until(&last.unwrap(), report.bytes),
        events: report.next_offset,
    }
}

/// Local costs per pass over `objects`, single-threaded: what the shipper does before its PUT
/// (read the file, decode the footer, BLAKE3), what restore does after its GET (BLAKE3 and
/// `verify_segment`: every block's CRC, every record, the chain), and restore's write + fsync +
/// rename; plus one shipper checkpoint (`Checkpoints::put`), as the shipper does per segment.
pub struct Local {
    pub read_hash: Duration,
    pub blake3: Duration,
    pub decompress: Duration,
    /// `chain_hash` (BLAKE3 of prev hash + header + payload) of every record alone, over
    /// records decoded beforehand (not timed).
    pub chain_hash: Duration,
    pub verify: Duration,
    pub write_fsync: Duration,
    /// One shipper checkpoint (`Checkpoints::put`, state.sqlite), as after each segment.
    pub commit: Duration,
}

pub fn local_costs(paths: &[PathBuf], objects: &[Object], scratch: &Path) -> Local {
    let start = Instant::now();
    for path in paths {
        let bytes = std::fs::read(path).unwrap();
        decode_footer_from_file_bytes(&bytes).unwrap();
        std::hint::black_box(blake3::hash(&bytes));
    }
    let read_hash = start.elapsed();
    let start = Instant::now();
    for object in objects {
        std::hint::black_box(blake3::hash(&object.bytes));
    }
    let blake3 = start.elapsed();
    let start = Instant::now();
    for object in objects {
        let footer = decode_footer_from_file_bytes(&object.bytes).unwrap();
        for entry in &footer.blocks {
            let at = usize::try_from(entry.file_pos).unwrap();
            let block = &object.bytes[at..at + entry.compressed_len as usize];
            std::hint::black_box(decompress_block(block, entry).unwrap());
        }
    }
    let decompress = start.elapsed();
    let mut chain_hash = Duration::ZERO;
    for object in objects {
        let (footer, records) = decode_segment(&object.bytes).unwrap();
        let start = Instant::now();
        let mut prev = footer.prev_hash;
        for r in &records {
            prev = record::chain_hash(&prev, r.offset, r.ts_us, r.schema_version, &r.payload);
        }
        chain_hash += start.elapsed();
        assert_eq!(prev, footer.last_hash);
    }
    let start = Instant::now();
    for object in objects {
        std::hint::black_box(blake3::hash(&object.bytes));
        verify_segment(&object.bytes, |r| {
            std::hint::black_box(r);
        })
        .unwrap();
    }
    let verify = start.elapsed();
    std::fs::create_dir_all(scratch).unwrap();
    let start = Instant::now();
    for object in objects {
        use std::io::Write;
        let tmp = scratch.join(format!("{}.tmp", object.name));
        let mut file = std::fs::File::create(&tmp).unwrap();
        file.write_all(&object.bytes).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&tmp, scratch.join(&object.name)).unwrap();
    }
    let write_fsync = start.elapsed();
    let mut checkpoints = logbook::projection::Checkpoints::open(scratch).unwrap();
    let n = 20;
    let start = Instant::now();
    for i in 0..n {
        let anchor = logbook::journal::Anchor {
            next_offset: i + 1,
            chain: [7; 32],
        };
        checkpoints
            .put("ship:s3://logbook-bench/ship", &anchor)
            .unwrap();
    }
    let commit = start.elapsed() / n as u32;
    drop(checkpoints);
    std::fs::remove_dir_all(scratch).unwrap();
    Local {
        read_hash,
        blake3,
        decompress,
        chain_hash,
        verify,
        write_fsync,
        commit,
    }
}
