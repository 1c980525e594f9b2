//! A TCP proxy on 127.0.0.1 in front of a server (moto_server) that injects faults while the
//! server behind it keeps its state:
//! - [`Proxy::cut`]: closes every open connection and refuses new ones (an S3 outage, a server
//!   dropped mid-upload);
//! - [`Fault::Error500`]: answers every request with `500 InternalError` (S3 having a bad
//!   minute), reading the request first;
//! - [`Fault::Stall`]: accepts connections, reads what they send and never answers (a stalled
//!   S3, a black-holed network path).
//!
//! - [`Proxy::throttle`]: forwards what clients send at a limited rate (a slow uplink: uploads
//!   take long enough to be caught in flight).
//!
//! Setting a fault closes the open connections, so the client's next request (on a new
//! connection) meets it. Threads only; stopped on drop (the listener is woken by a last
//! connection).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward them.
    None = 0,
    /// Close them at once.
    Refuse = 1,
    /// Answer each request with a 500.
    Error500 = 2,
    /// Read and never answer.
    Stall = 3,
}

impl Fault {
    fn from_u8(n: u8) -> Fault {
        match n {
            1 => Fault::Refuse,
            2 => Fault::Error500,
            3 => Fault::Stall,
            _ => Fault::None,
        }
    }
}

/// A running proxy.
pub struct Proxy {
    port: u16,
    fault: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// Connections that met a fault (500s answered, stalls held).
    pub faulted: Arc<AtomicU64>,
    /// Bytes per second forwarded from clients on new connections (0: no limit).
    rate: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards a free 127.0.0.1 port to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(AtomicU8::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let faulted = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_string();
        let accept = {
            let (fault, stop, open, faulted, rate) = (
                fault.clone(),
                stop.clone(),
                open.clone(),
                faulted.clone(),
                rate.clone(),
            );
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    match Fault::from_u8(fault.load(Ordering::SeqCst)) {
                        Fault::None => {}
                        Fault::Refuse => {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        Fault::Error500 => {
                            faulted.fetch_add(1, Ordering::SeqCst);
                            std::thread::spawn(move || answer_500(client));
                            continue;
                        }
                        Fault::Stall => {
                            faulted.fetch_add(1, Ordering::SeqCst);
                            open.lock().unwrap().push(client.try_clone().unwrap());
                            std::thread::spawn(move || swallow(client));
                            continue;
                        }
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    {
                        let mut open = open.lock().unwrap();
                        open.push(client.try_clone().unwrap());
                        open.push(server.try_clone().unwrap());
                    }
                    let limit = rate.load(Ordering::SeqCst);
                    pipe(
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        limit,
                    );
                    pipe(server, client, 0);
                }
            })
        };
        Proxy {
            port,
            fault,
            stop,
            open,
            faulted,
            rate,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.set(Fault::Refuse);
    }

    /// Forwards connections again.
    pub fn restore(&self) {
        self.set(Fault::None);
    }

    /// Forwards at most `bytes_per_s` from clients on new connections (0: no limit), after
    /// closing the open ones.
    pub fn throttle(&self, bytes_per_s: u64) {
        self.rate.store(bytes_per_s, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Meets new connections with `fault`, after closing the open ones.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Reads one request (its head, then `Content-Length` bytes of body, briefly), answers 500 and
/// closes.
fn answer_500(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(500)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = seen.len() - head_end;
    while body < length {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body += n,
        }
    }
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
               <Message>injected by the test proxy</Message></Error>";
    let response = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
        xml.len()
    );
    let _ = client.write_all(response.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads and discards until the connection is closed (by the client or by [`Proxy::set`]).
fn swallow(mut client: TcpStream) {
    let mut buf = [0u8; 64 << 10];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Copies `from` to `to` (at most `rate` bytes per second unless 0) until either closes.
fn pipe(mut from: TcpStream, mut to: TcpStream, rate: u64) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 << 10];
        let chunk = if rate == 0 { buf.len() } else { 16 << 10 };
        loop {
            match from.read(&mut buf[..chunk]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if rate > 0 {
                        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
