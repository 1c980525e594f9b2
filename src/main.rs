//! The `logbook` command line: a thin layer over the library, one module per subcommand.
//! Exit codes: 0 ok, 1 failure found (damage, I/O, lock held), 2 bad usage or input.

mod cli;

/// mimalloc instead of the system allocator: it returns freed memory to the OS soon after, so
/// that `serve` shrinks back when clients leave (see Cargo.toml and tests/server_memory.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOGBOOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
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
