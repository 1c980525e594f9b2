//! The `logbook` command line: a thin layer over the library, one module per subcommand.
//! Exit codes: 0 ok, 1 failure found (damage, I/O, lock held), 2 bad usage or input.
//!
//! Logging can never take the process down: log lines go to stderr through [`QuietStderr`],
//! which drops what cannot be written (a full disk, a closed pipe) instead of failing, and the
//! subscriber is told not to report its own write errors (it would do so with `eprintln!`,
//! which panics when stderr cannot be written: the cause of a hang an outside test found, where
//! the journal's threads died logging a full disk).

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of the system allocator: it returns freed memory to the OS soon after, so
/// that `serve` shrinks back when clients leave (see Cargo.toml and tests/server_memory.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Standard error that never fails: what cannot be written is dropped (see the module docs).
struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(|| QuietStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOGBOOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::from(cli::exit_code(&error))
        }
    }
}

/// A closed stdout (`logbook events | head`) ends output quietly, as for other Unix tools.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
