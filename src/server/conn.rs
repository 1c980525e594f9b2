//! One accepted TCP connection: HTTP/1.1 through hyper, with the header and idle timeouts, and
//! the 503 answer for a connection beyond the cap.
//!
//! `axum::serve` has no timeouts, and hyper's own `header_read_timeout` also runs while a
//! keep-alive connection waits for its next request, so it cannot tell a slow head from an
//! idle connection. Here each connection tracks its [`Phase`] instead:
//!
//! - **Head** from the moment it opens, or from the first byte of a later request ([`Io`] sees
//!   the bytes arrive): it must deliver a complete head within the header timeout. Bytes that
//!   keep trickling in do not extend it (a Slowloris client is closed on time).
//! - **Busy** from the moment hyper hands the parsed request to the router until the response
//!   body is finished ([`TrackedBody`] dropped): no deadline here (ingest bounds its own body
//!   reads; WebSocket streams their writes).
//! - **Idle** after a response: the next request must begin within the idle timeout.
//!
//! A watchdog task per connection sleeps until the current phase's deadline and then drops the
//! connection (closing the socket). On server shutdown a connection is told to finish its
//! request and close (hyper's graceful shutdown).
//!
//! Invariants: a connection holds its slot (a permit of the server's connection semaphore)
//! inside its socket wrapper [`Io`], so the slot is released exactly when the socket is
//! closed, also after an upgrade hands the socket to a WebSocket stream (streams count toward
//! the cap). hyper's read buffer per connection is bounded by [`READ_BUFFER_BYTES_MAX`] (a
//! request head larger than that is refused by hyper with 431).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::limits::{Limits, REFUSE_WAIT};

/// hyper's read buffer per connection at most (request heads larger than this get 431).
pub const READ_BUFFER_BYTES_MAX: usize = 64 << 10;
/// Bytes of a refused connection's request read (and dropped) before it is closed, at most.
const REFUSE_DRAIN_BYTES_MAX: usize = 64 << 10;

/// Where a connection is in its request cycle (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head since this instant.
    Head(Instant),
    /// A request is being handled or its response written.
    Busy,
    /// Waiting for the next request since this instant.
    Idle(Instant),
}

/// The phase, shared by the socket wrapper, the service and the watchdog.
type Activity = Arc<watch::Sender<Phase>>;

/// The socket as hyper sees it: marks the start of a request head when bytes arrive on an idle
/// connection, and holds the connection's slot until it is dropped.
#[derive(Debug)]
struct Io {
    tcp: TcpStream,
    activity: Activity,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.send_if_modified(|phase| match phase {
                Phase::Idle(_) => {
                    *phase = Phase::Head(Instant::now());
                    true
                }
                Phase::Head(_) | Phase::Busy => false,
            });
        }
        polled
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The router as hyper's service: marks the connection busy while a request is handled.
#[derive(Debug, Clone)]
struct Tracked {
    router: TowerToHyperService<Router>,
    activity: Activity,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> ResponseFuture {
        self.activity.send_replace(Phase::Busy);
        let activity = self.activity.clone();
        let responding = self.router.call(request);
        Box::pin(async move {
            let response = responding.await?;
            Ok(response.map(|body| TrackedBody { body, activity }))
        })
    }
}

/// A response body that marks the connection idle once hyper is done with it.
#[derive(Debug)]
struct TrackedBody {
    body: Body,
    activity: Activity,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.activity.send_replace(Phase::Idle(Instant::now()));
    }
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Header,
    Idle,
}

/// Completes when the connection's current phase outlives its deadline.
async fn watchdog(mut phase: watch::Receiver<Phase>, limits: Limits) -> Expired {
    loop {
        let deadline = match *phase.borrow_and_update() {
            Phase::Head(since) => Some((since + limits.header_timeout, Expired::Header)),
            Phase::Idle(since) => Some((since + limits.idle_timeout, Expired::Idle)),
            Phase::Busy => None,
        };
        let changed = match deadline {
            Some((at, expired)) => tokio::select! {
                changed = phase.changed() => changed,
                () = tokio::time::sleep_until(at) => {
                    // A head that arrived in time but was parsed in the same wake-up (a busy
                    // runtime) moved the phase on: look again rather than close.
                    if phase.has_changed().unwrap_or(false) {
                        continue;
                    }
                    return expired;
                }
            },
            None => phase.changed().await,
        };
        if changed.is_err() {
            // Nobody can change the phase any more: the connection is ending by itself.
            std::future::pending::<()>().await;
        }
    }
}

/// Serves one connection until the client closes it, a timeout closes it, an upgrade takes
/// the socket over, or (after `shutdown` turns true) its current request is done.
pub(super) async fn serve(
    tcp: TcpStream,
    slot: OwnedSemaphorePermit,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let (phase_tx, phase_rx) = watch::channel(Phase::Head(Instant::now()));
    let activity = Arc::new(phase_tx);
    let io = TokioIo::new(Io {
        tcp,
        activity: activity.clone(),
        _slot: slot,
    });
    let service = Tracked {
        router: TowerToHyperService::new(router),
        activity,
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .max_buf_size(READ_BUFFER_BYTES_MAX)
        .serve_connection(io, service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let watchdog = watchdog(phase_rx, limits);
    let mut watchdog = std::pin::pin!(watchdog);
    let mut closing = false;
    loop {
        if !closing && *shutdown.borrow_and_update() {
            connection.as_mut().graceful_shutdown();
            closing = true;
        }
        tokio::select! {
            // The connection first: what the client sent in time is parsed before a deadline
            // that passed meanwhile is looked at.
            biased;
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            expired = &mut watchdog => {
                tracing::debug!(?expired, "closing a connection: timeout");
                return;
            }
            changed = shutdown.changed(), if !closing => {
                if changed.is_err() {
                    // The server is gone: finish like on shutdown.
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Answers a connection beyond the cap with `503 {"error": ..}` and closes it; the permit
/// bounds how many are answered at once.
pub(super) async fn refuse(
    mut tcp: TcpStream,
    connections_max: usize,
    _permit: OwnedSemaphorePermit,
) {
    let body = serde_json::json!({
        "error": format!(
            "too many connections: this server serves at most {connections_max} at once \
             (serve --max-connections); retry later"
        )
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answered = tokio::time::timeout(REFUSE_WAIT, async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client sent (up to a bound) until it closes: closing a socket with
        // unread data resets the connection, and the client could lose the answer.
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSE_DRAIN_BYTES_MAX {
            match tcp.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
    if let Ok(Err(error)) = answered {
        tracing::debug!(%error, "refusing a connection failed");
    }
}

/// How long the accept loop pauses after an error such as "too many open files".
pub(super) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Whether an `accept` error concerns one connection only (retry at once) rather than the
/// process (such as running out of file descriptors: pause first).
pub(super) fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(150),
            ..Limits::default()
        }
    }

    /// Waits (bounded) for the watchdog; `None` if it did not fire within `wait`.
    async fn fires(phase: watch::Receiver<Phase>, wait: Duration) -> Option<Expired> {
        tokio::time::timeout(wait, watchdog(phase, limits()))
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_head_must_complete_within_the_header_timeout() {
        let (_tx, rx) = watch::channel(Phase::Head(Instant::now()));
        assert_eq!(
            fires(rx, Duration::from_secs(10)).await,
            Some(Expired::Header)
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (_tx, rx) = watch::channel(Phase::Idle(Instant::now()));
        assert_eq!(
            fires(rx, Duration::from_secs(10)).await,
            Some(Expired::Idle)
        );
    }

    #[tokio::test]
    async fn a_busy_connection_has_no_deadline() {
        let (_tx, rx) = watch::channel(Phase::Busy);
        assert_eq!(fires(rx, Duration::from_millis(400)).await, None);
    }

    #[tokio::test]
    async fn a_head_that_completes_in_time_moves_the_deadline() {
        let (tx, rx) = watch::channel(Phase::Head(Instant::now()));
        let dog = tokio::spawn(watchdog(rx, limits()));
        tx.send_replace(Phase::Busy);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!dog.is_finished(), "busy connections are not timed out");
        // Idle from now on: the idle timeout (not the header timeout) applies.
        tx.send_replace(Phase::Idle(Instant::now()));
        let expired = tokio::time::timeout(Duration::from_secs(10), dog)
            .await
            .expect("fires")
            .expect("watchdog task");
        assert_eq!(expired, Expired::Idle);
    }

    #[tokio::test]
    async fn the_current_phase_decides_not_a_stale_one() {
        // The head arrived (the phase moved on) before the watchdog first looked, although
        // the deadline of the head had passed by then.
        let long_ago = Instant::now() - Duration::from_secs(60);
        let (tx, rx) = watch::channel(Phase::Head(long_ago));
        tx.send_replace(Phase::Busy);
        assert_eq!(fires(rx, Duration::from_millis(300)).await, None);
    }

    #[test]
    fn connection_errors_are_told_apart_from_process_errors() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!is_connection_error(&io::Error::other(
            "too many open files"
        )));
    }
}
