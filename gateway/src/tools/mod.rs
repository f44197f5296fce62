//! The `oneway` subcommands that are not the server: each module has its `Args` (what
//! `main.rs` parses) and its `main`, apart from the request path, which none of them is part
//! of. `quickstart` and `push` speak to a gateway through [`client`]; `agent` runs next to a
//! DataKit; `certs` makes a dev/test PKI; `spool` inspects, exports and replays spool files;
//! `validate` runs one body through the checks a push gets; `check_config` checks a file.
//!
//! A tool fails with [`Error`], any error with its cause (the standard library's boxed
//! error: `main.rs` prints it with its chain of sources).

pub mod agent;
pub mod audit;
pub mod certs;
pub mod check_config;
pub mod client;
pub mod push;
pub mod quickstart;
pub mod spool;
pub mod validate;

/// Why a tool failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A tool's result.
pub type Result<T> = std::result::Result<T, Error>;

/// The exit status for a usage or config problem (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// A multi-threaded runtime for a tool (`workers` threads, or one per core).
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Writes `line` and its newline to standard error in one `write`, so that a process sharing
/// the stream (the split's edge logs to the same pipe) cannot land in the middle of it
/// (`eprintln!` writes a line in pieces; a pipe keeps one write of up to 4 KiB whole).
pub fn report_line(line: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Resolves on SIGTERM or SIGINT (never, if no handler can be installed).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed; serve until then.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
