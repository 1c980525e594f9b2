//! A real moto_server (PyPI `moto[server]`, installed into ./.venv by scripts/test.sh) on a
//! random 127.0.0.1 port, stopped by pid when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto_server.
pub struct Moto {
    child: Option<Child>,
    port: u16,
}

/// `.venv/bin/moto_server` at the workspace root: the crate's own directory or the first parent
/// holding a `.venv` (the replay crate includes this file too).
fn binary() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir
        .ancestors()
        .find(|dir| dir.join(".venv").exists())
        .unwrap_or(&crate_dir)
        .to_path_buf();
    let path = root.join(".venv/bin/moto_server");
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh (it installs moto[server] from \
         tools/requirements-moto.txt into .venv)",
        path.display()
    );
    path
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut moto = Moto { child: None, port };
        moto.restart();
        moto
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops moto (its state is lost).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts moto (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/moto-api/data.json", self.endpoint());
        loop {
            if let Ok(response) = ureq::get(&url).call()
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "moto_server exited early: {status} (port {} taken?)",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server not ready after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
