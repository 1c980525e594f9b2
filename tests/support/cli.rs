//! Running the real `logbook` binary in a test, and looking into its journal files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `logbook --data DATA ARGS..` with `stdin`, to completion.
pub fn logbook(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("LOGBOOK_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logbook starts");
    // A child that exits early (e.g. refused before reading) closes its stdin: not an error.
    let _ = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("logbook ends")
}

/// Bytes as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Byte position of the frame of the `index`-th record of an unsealed segment (frames: u32
/// len, u32 crc, body of `len` bytes).
pub fn frame_pos(bytes: &[u8], index: usize) -> usize {
    let mut pos = 0;
    for _ in 0..index {
        let len: [u8; 4] = bytes[pos..pos + 4].try_into().expect("a frame length");
        pos += 8 + u32::from_le_bytes(len) as usize;
    }
    pos
}

/// The number of whole frames in an unsealed segment's bytes.
pub fn frame_count(bytes: &[u8]) -> usize {
    let (mut pos, mut n) = (0, 0);
    while pos + 8 <= bytes.len() {
        let len: [u8; 4] = bytes[pos..pos + 4].try_into().expect("a frame length");
        pos += 8 + u32::from_le_bytes(len) as usize;
        if pos <= bytes.len() {
            n += 1;
        }
    }
    n
}

/// The active (unsealed, `.log`) segment of the journal in `data/journal`.
pub fn active_segment(data: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data.join("journal"))
        .expect("a journal")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("an unsealed segment")
}
