//! Section 1: WebSocket fan-out. The real server (`server::serve`, the same wiring as
//! `logbook serve`) on 127.0.0.1:0, fed through one `Recorder` (default `JournalConfig`:
//! durability `sync`), with N tokio-tungstenite clients tailing `/v1/stream?from=latest` in the
//! same process (their own runtime, threads `lb-client`; the server's are `lb-server`).
//!
//! Phases, in one run: unpaced appends with 0 clients; clients connect; paced appends
//! (`batch` events per `record_all` on a fixed period) during which every client stamps every
//! frame; then `rounds` times: unpaced appends with the clients attached (they lag and keep
//! reading), the clients close, unpaced appends with 0 clients (alternating, so both sides of
//! the ratio see the same machine). Last, the same paced and unpaced runs against the
//! shared-frame prototype of [`crate::shared`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::StreamExt;
use logbook::event::Event;
use logbook::journal::JournalConfig;
use logbook::recorder::{Recorder, parse_event};
use logbook::server::{self, AppState};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::{cpu, shared};

/// What to run.
pub struct Settings {
    pub clients: usize,
    /// Paced append rate, events/s.
    pub rate: usize,
    /// Events per `record_all` call (paced and unpaced).
    pub batch: usize,
    /// Paced seconds excluded from the delay statistics.
    pub warmup: Duration,
    /// Paced seconds measured.
    pub paced: Duration,
    /// Length of each unpaced throughput run.
    pub unpaced: Duration,
    /// Appender threads in the unpaced runs.
    pub producers: usize,
    /// Worker threads of the server's runtime and of the clients' runtime.
    pub server_workers: usize,
    pub client_workers: usize,
    /// Unpaced rounds with clients, each followed by one without (plus one before the first).
    pub rounds: usize,
}

/// One unpaced run.
pub struct Throughput {
    pub events: u64,
    pub wall: Duration,
    pub cpu: cpu::Use,
    /// Frames the clients received meanwhile (0 without clients).
    pub frames: u64,
}

impl Throughput {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

/// NDJSON of one upgrade with 10 started tasks, then a pool of progress events over them.
fn events(pool: usize) -> anyhow::Result<(Vec<Event>, Vec<Event>)> {
    let mut setup = vec![
        r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"plan-eks-1.30","cluster_name":"prod-eu-west-1","phase":"provision_green"}"#
            .to_string(),
    ];
    for t in 0..10 {
        setup.push(format!(
            r#"{{"type":"task.added","upgrade_id":"u-1","task_id":"t-{t}","name":"Drain and replace node group {t}","task_type":"upgrade_step"}}"#
        ));
        setup.push(format!(
            r#"{{"type":"task.started","upgrade_id":"u-1","task_id":"t-{t}"}}"#
        ));
    }
    let progress = (0..pool).map(|i| {
        format!(
            r#"{{"type":"task.progress","upgrade_id":"u-1","task_id":"t-{}","percentage":{},"message":"{} of 40 nodes drained"}}"#,
            i % 10,
            (i / 10 % 100) as f64,
            i / 10 % 40
        )
    });
    let parse = |line: &str| parse_event(line.as_bytes()).context("bench event");
    Ok((
        setup
            .iter()
            .map(|l| parse(l))
            .collect::<anyhow::Result<_>>()?,
        progress.map(|l| parse(&l)).collect::<anyhow::Result<_>>()?,
    ))
}

/// Appends `batch`-sized chunks of `pool` from `producers` threads for `length`.
fn unpaced(
    recorder: &Arc<Recorder>,
    pool: &Arc<Vec<Event>>,
    batch: usize,
    producers: usize,
    length: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let deadline = start + length;
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let recorder = recorder.clone();
            let pool = pool.clone();
            std::thread::Builder::new()
                .name("bench-appender".into())
                .spawn(move || -> anyhow::Result<u64> {
                    let mut n = 0u64;
                    for chunk in pool.chunks(batch).cycle().skip(p) {
                        if Instant::now() >= deadline {
                            break;
                        }
                        for r in recorder.record_all(chunk)? {
                            r?;
                            n += 1;
                        }
                    }
                    Ok(n)
                })
        })
        .collect::<Result<_, _>>()?;
    let mut events = 0;
    for t in threads {
        events += t
            .join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    Ok((events, start.elapsed()))
}

/// The offset of a frame: each starts `{"offset":N,` (the envelope's first key).
fn offset_of(text: &str) -> anyhow::Result<u64> {
    let rest = text
        .strip_prefix(r#"{"offset":"#)
        .context("frame does not start with the offset")?;
    let end = rest.find(',').context("no comma after the offset")?;
    Ok(rest.get(..end).unwrap_or_default().parse()?)
}

/// One client's receipt log: nanoseconds since `t0` per offset of the window (0 = not yet).
struct Log {
    lo: u64,
    recv_ns: Vec<AtomicU64>,
    /// The handshake completed (so the subscription exists).
    connected: AtomicBool,
    /// One past the last offset received.
    seen: AtomicU64,
    frames: AtomicU64,
}

async fn client(
    url: String,
    log: Arc<Log>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    log.connected.store(true, Ordering::Release);
    let mut expected = None;
    let mut closing = false;
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed(), if !closing => {
                closing = true;
                ws.close(None).await?;
                continue;
            }
            message = ws.next() => message,
        };
        let message = match message {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(_)) if closing => break,
            Some(Err(e)) => return Err(e.into()),
        };
        match message {
            Message::Text(text) => {
                let now = t0.elapsed().as_nanos() as u64;
                let offset = offset_of(text.as_str())?;
                ensure!(
                    expected.is_none_or(|e| e == offset),
                    "gap: {offset} after {expected:?}"
                );
                expected = Some(offset + 1);
                if let Some(slot) = offset
                    .checked_sub(log.lo)
                    .and_then(|i| log.recv_ns.get(i as usize))
                {
                    slot.store(now.max(1), Ordering::Relaxed);
                }
                log.frames.fetch_add(1, Ordering::Relaxed);
                log.seen.store(offset + 1, Ordering::Release);
            }
            Message::Close(_) => closing = true,
            _ => {}
        }
    }
    Ok(())
}

/// N connected clients stamping the offsets `lo..lo + window`.
struct Clients {
    logs: Vec<Arc<Log>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: watch::Sender<bool>,
}

impl Clients {
    fn connect(
        rt: &tokio::runtime::Runtime,
        url: &str,
        n: usize,
        lo: u64,
        window: usize,
        t0: Instant,
    ) -> anyhow::Result<Clients> {
        let (stop, stopped) = watch::channel(false);
        let logs: Vec<Arc<Log>> = (0..n)
            .map(|_| {
                Arc::new(Log {
                    lo,
                    recv_ns: (0..window).map(|_| AtomicU64::new(0)).collect(),
                    connected: AtomicBool::new(false),
                    seen: AtomicU64::new(0),
                    frames: AtomicU64::new(0),
                })
            })
            .collect();
        let tasks = logs
            .iter()
            .map(|log| rt.spawn(client(url.to_string(), log.clone(), t0, stopped.clone())))
            .collect();
        let clients = Clients { logs, tasks, stop };
        wait_until(Duration::from_secs(30), || {
            clients
                .logs
                .iter()
                .all(|l| l.connected.load(Ordering::Acquire))
                || clients.tasks.iter().any(|t| t.is_finished())
        })
        .context("clients did not connect")?;
        ensure!(
            clients.tasks.iter().all(|t| !t.is_finished()),
            "a client ended while connecting"
        );
        Ok(clients)
    }

    fn frames(&self) -> u64 {
        self.logs
            .iter()
            .map(|l| l.frames.load(Ordering::Relaxed))
            .sum()
    }

    /// Every client sends a close frame and reads until the server's reply (bounded).
    fn close(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        rt.block_on(async {
            for task in self.tasks {
                tokio::time::timeout(Duration::from_secs(30), task)
                    .await
                    .context("a client did not close within 30 s")???;
            }
            anyhow::Ok(())
        })
    }
}

/// Paced appends while `clients` stamp every frame; the delays after the warm-up.
pub struct Delays {
    /// Receipt − ack, one per (client, measured event), sorted; negative = received first.
    pub from_ack: Vec<i64>,
    /// Receipt − the moment `record_all` was called for the event's batch, sorted.
    pub from_submit: Vec<i64>,
    /// (client, event) pairs not received within the wait.
    pub missing: u64,
    /// `record_all` call times (submit → ack) of the measured batches, sorted.
    pub ack_waits: Vec<i64>,
    pub events: u64,
    pub wall: Duration,
    /// Worst lateness of a batch against its schedule.
    pub late: Duration,
    /// From the first batch until every client had every frame.
    pub cpu: cpu::Use,
    /// Frames delivered over the same interval.
    pub frames: u64,
}

/// Per paced batch: the first offset, when `record_all` was called and when it returned.
struct Batch {
    first: u64,
    submit_ns: u64,
    ack_ns: u64,
}

/// The paced schedule: (period, warm-up batches, batches).
fn schedule(s: &Settings) -> (Duration, usize, usize) {
    let period = Duration::from_secs_f64(s.batch as f64 / s.rate as f64);
    let warm = (s.warmup.as_secs_f64() / period.as_secs_f64()).round() as usize;
    (
        period,
        warm,
        warm + (s.paced.as_secs_f64() / period.as_secs_f64()) as usize,
    )
}

fn paced(
    recorder: &Recorder,
    pool: &[Event],
    s: &Settings,
    clients: &Clients,
    t0: Instant,
) -> anyhow::Result<Delays> {
    let (period, warm, batches) = schedule(s);
    let lo = clients.logs.first().context("no clients")?.lo;
    ensure!(
        recorder.journal().next_offset() == lo,
        "something appended since the clients connected"
    );
    let cpu_before = cpu::Snapshot::take();
    let frames_before = clients.frames();
    let mut done = Vec::with_capacity(batches);
    let mut late = Duration::ZERO;
    let start = Instant::now();
    for (i, chunk) in pool.chunks(s.batch).cycle().take(batches).enumerate() {
        let due = start + period * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            late = late.max(now - due);
        }
        let submit_ns = t0.elapsed().as_nanos() as u64;
        let results = recorder.record_all(chunk)?;
        let ack_ns = t0.elapsed().as_nanos() as u64;
        let offsets: Vec<u64> = results
            .into_iter()
            .map(|r| r.map(|r| r.offset()))
            .collect::<Result<_, _>>()?;
        let first = offsets.first().copied().context("empty batch")?;
        ensure!(
            offsets.iter().copied().eq(first..first + s.batch as u64),
            "batch offsets not contiguous"
        );
        done.push(Batch {
            first,
            submit_ns,
            ack_ns,
        });
    }
    let wall = start.elapsed();
    let end = lo + (batches * s.batch) as u64;
    if wait_until(Duration::from_secs(60), || {
        clients
            .logs
            .iter()
            .all(|l| l.seen.load(Ordering::Acquire) >= end)
    })
    .is_err()
    {
        eprintln!("  WARNING: some clients had not received every paced event after 60 s");
    }
    let cpu = cpu::Snapshot::take().since(&cpu_before);
    let frames = clients.frames() - frames_before;

    let measured = &done[warm.min(done.len())..];
    let mut from_ack = Vec::with_capacity(clients.logs.len() * measured.len() * s.batch);
    let mut from_submit = Vec::with_capacity(from_ack.capacity());
    let mut missing = 0u64;
    for log in &clients.logs {
        for b in measured {
            for offset in b.first..b.first + s.batch as u64 {
                let recv = log.recv_ns[(offset - lo) as usize].load(Ordering::Relaxed);
                if recv == 0 {
                    missing += 1;
                    continue;
                }
                from_ack.push(recv as i64 - b.ack_ns as i64);
                from_submit.push(recv as i64 - b.submit_ns as i64);
            }
        }
    }
    from_ack.sort_unstable();
    from_submit.sort_unstable();
    let mut ack_waits: Vec<i64> = measured
        .iter()
        .map(|b| (b.ack_ns - b.submit_ns) as i64)
        .collect();
    ack_waits.sort_unstable();
    Ok(Delays {
        from_ack,
        from_submit,
        missing,
        ack_waits,
        events: (batches * s.batch) as u64,
        wall,
        late,
        cpu,
        frames,
    })
}

fn measure(
    recorder: &Arc<Recorder>,
    pool: &Arc<Vec<Event>>,
    s: &Settings,
    clients: Option<&Clients>,
) -> anyhow::Result<Throughput> {
    let frames = clients.map_or(0, Clients::frames);
    let before = cpu::Snapshot::take();
    let (events, wall) = unpaced(recorder, pool, s.batch, s.producers, s.unpaced)?;
    Ok(Throughput {
        events,
        wall,
        cpu: cpu::Snapshot::take().since(&before),
        frames: clients.map_or(0, Clients::frames) - frames,
    })
}

/// Everything section 1 measured.
pub struct Report {
    /// Unpaced runs with 0 clients, alternating with `with_clients` (one more of them).
    pub zero: Vec<Throughput>,
    pub with_clients: Vec<Throughput>,
    pub delays: Delays,
    /// The same paced run and an unpaced run against the shared-frame prototype, or why it
    /// could not be measured (the prototype is an experiment; its failure does not end the run).
    pub proto: Result<(Delays, Throughput), String>,
    /// (records, µs per record: read; read + upcast; read + upcast + to_json_line).
    pub costs: (u64, [f64; 3]),
    pub payload_bytes: usize,
}

pub fn run(s: &Settings) -> anyhow::Result<Report> {
    let tmp = tempfile::tempdir()?;
    let config = JournalConfig::default();
    let max_record_bytes = config.record_bytes_max;
    let recorder = Arc::new(Recorder::open(tmp.path(), config)?);
    let (setup, pool) = events(10_000)?;
    for r in recorder.record_all(&setup)? {
        r?;
    }
    let pool = Arc::new(pool);
    let payload_bytes = pool.iter().map(|e| e.to_payload().len()).sum::<usize>() / pool.len();
    let state = Arc::new(AppState::new(
        recorder.clone(),
        None,
        max_record_bytes,
        tmp.path().to_path_buf(),
    ));
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.server_workers)
        .thread_name("lb-server")
        .enable_all()
        .build()?;
    let listener = server_rt.block_on(server::bind("127.0.0.1:0".parse()?, None))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = server_rt.spawn(server::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.client_workers)
        .thread_name("lb-client")
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let url = format!("ws://{addr}/v1/stream?from=latest");
    let (period, _, batches) = schedule(s);
    let window = batches * s.batch;
    let attach = |url: &str| {
        Clients::connect(
            &client_rt,
            url,
            s.clients,
            recorder.journal().next_offset(),
            window,
            t0,
        )
    };

    let mut zero = Vec::new();
    let mut with_clients = Vec::new();
    eprintln!("  round 1/{}: unpaced appends, 0 clients...", s.rounds);
    zero.push(measure(&recorder, &pool, s, None)?);
    eprintln!(
        "  {} clients connect (from=latest); paced: {} events/s as {} per record_all every {:.1} ms, {:.1} s warm-up + {:.1} s measured...",
        s.clients,
        s.rate,
        s.batch,
        period.as_secs_f64() * 1e3,
        s.warmup.as_secs_f64(),
        s.paced.as_secs_f64()
    );
    let first = attach(&url)?;
    let delays = paced(&recorder, &pool, s, &first, t0)?;
    let mut first = Some(first);
    for round in 1..=s.rounds {
        let clients = match first.take() {
            Some(clients) => clients,
            None => attach(&url)?,
        };
        eprintln!(
            "  round {round}/{}: unpaced appends, {} clients attached; then 0 clients...",
            s.rounds, s.clients
        );
        with_clients.push(measure(&recorder, &pool, s, Some(&clients))?);
        clients.close(&client_rt)?;
        zero.push(measure(&recorder, &pool, s, None)?);
    }
    eprintln!("  per-record costs of a connection, alone...");
    let costs = shared::per_record_costs(recorder.journal(), 200_000)?;

    eprintln!("  the shared-frame prototype: paced run and unpaced appends with clients...");
    let proto = (|| -> anyhow::Result<(Delays, Throughput)> {
        let proto_addr = server_rt.block_on(shared::start(recorder.journal()))?;
        let clients = attach(&format!("ws://{proto_addr}/v1/stream"))?;
        let proto_delays = paced(&recorder, &pool, s, &clients, t0)?;
        let proto_with_clients = measure(&recorder, &pool, s, Some(&clients))?;
        clients.close(&client_rt)?;
        Ok((proto_delays, proto_with_clients))
    })()
    .map_err(|e| format!("{e:#}"));

    drop(client_rt);
    let _ = stop.send(());
    server_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), served).await })???;
    drop(server_rt);
    drop(state);
    Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("recorder still shared"))?
        .close()?;
    Ok(Report {
        zero,
        with_clients,
        delays,
        proto,
        costs,
        payload_bytes,
    })
}

/// Polls `done` every millisecond until it holds (bounded by `limit`).
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        ensure!(Instant::now() < deadline, "not done after {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
