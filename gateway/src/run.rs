//! `oneway run`: the gateway's process, in one of its roles (the whole gateway; or, with
//! `--split`, the forwarder that starts the edge in an empty network namespace, and the
//! edge). Load the config, bind, enter the sandbox before any thread starts, then serve:
//! SIGHUP or a changed file reloads; SIGTERM or SIGINT stops accepting, lets in-flight
//! requests finish and exits 0; a spool write or sync error exits 74.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::sandbox;

/// Why `oneway run` could not start.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `EX_IOERR`: the spool could not write or sync; nothing unsynced was acknowledged.
pub const EXIT_IO_ERROR: u8 = 74;
/// `EX_UNAVAILABLE`: a listener address could not be bound (another process holds it).
pub const EXIT_BIND: u8 = 69;

/// `oneway run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long)]
    config: PathBuf,
    /// After entering the sandbox, try a TCP connect to this address and record the
    /// outcome in the log and the audit trail (repeatable; for proving the isolation:
    /// with `sandbox = "required"` an attempt that succeeds stops the start).
    #[arg(long = "probe-connect", value_name = "ADDR")]
    probe_connect: Vec<std::net::SocketAddr>,
    /// Privilege split: the process that faces the internet runs in an empty network
    /// namespace and hands its requests to this one, which only relays them to the
    /// upstream (docs/security-model.md).
    #[arg(long)]
    split: bool,
    /// The edge of `--split` (started by it, not by hand).
    #[arg(long = "split-edge", hide = true, conflicts_with = "split")]
    split_edge: bool,
}

/// Runs the role `args` name.
pub fn main(args: Args) -> Result<ExitCode, Error> {
    let role = match (args.split, args.split_edge) {
        (true, _) => Role::Forwarder,
        (_, true) => Role::Edge,
        _ => Role::Single,
    };
    serve(&args.config, &args.probe_connect, role)
}

/// Whether `e` (from [`main`] or a tool) is a listener that could not be bound: exit
/// [`EXIT_BIND`].
pub fn is_bind_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<crate::app::BindError>().is_some()
        || matches!(
            e.downcast_ref::<crate::app::StartError>(),
            Some(crate::app::StartError::Bind(_))
        )
}

/// Which process `oneway run` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The whole gateway in one process.
    Single,
    /// `--split`: binds, starts the edge, relays its requests to the upstream.
    Forwarder,
    /// `--split-edge`: the gateway, in an empty network namespace.
    Edge,
}

/// `oneway run` as `role`: load the config, bind, enter the sandbox, serve until SIGTERM or
/// SIGINT (SIGHUP reloads).
fn serve(
    path: &std::path::Path,
    probes: &[std::net::SocketAddr],
    role: Role,
) -> Result<ExitCode, Error> {
    use crate::app::Gateway;
    if role == Role::Edge {
        // The forwarder's death stops the edge (a drain, not a kill).
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
        if std::os::unix::process::parent_id() == 1 {
            eprintln!("oneway: the forwarder is gone");
            return Ok(ExitCode::from(1));
        }
    }
    let config = match crate::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oneway: {e}");
            return Ok(ExitCode::from(64));
        }
    };
    crate::tools::init_logging();
    for w in &config.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    let fail_closed = |e: sandbox::SandboxError| {
        tracing::error!(error = %e, kind = e.kind(), "sandbox: not starting");
        eprintln!("oneway: {e}");
        Ok(ExitCode::from(sandbox::EXIT_SANDBOX))
    };
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    if role == Role::Forwarder {
        return forwarder(path, &config, probes, workers, &fail_closed);
    }
    // Bound, spool open, upstreams resolved, no thread started: now the sandbox, then the
    // runtime's threads, which inherit it.
    let mode = config.sandbox;
    let mut plan = sandbox::Plan::for_config(&config);
    let (gateway, netns) = if role == Role::Edge {
        let inputs = crate::split::edge_inputs()?;
        let netns = match crate::sandbox::enter_empty_netns(probes) {
            Ok(n) => n,
            Err(e) => return fail_closed(e),
        };
        tracing::info!(entered = netns.entered, interfaces = ?netns.interfaces, "split: the edge is in an empty network namespace");
        // The edge connects nowhere: its only way out is the forwarder's channel.
        plan.connect_ports.clear();
        let upstream = crate::upstream::Upstream::forwarder(
            inputs.forwarder,
            config.upstream.response_timeout,
            config.upstream.max_answer_bytes,
        );
        (
            Gateway::with_listeners(config, inputs.listeners, upstream)?,
            Some(netns),
        )
    } else {
        (Gateway::bind(config)?, None)
    };
    tracing::info!(public = %gateway.public_addr(), admin = %gateway.admin_addr(), "listening");
    let report = sandbox::enter(mode, &plan).and_then(|mut report| {
        sandbox::self_test(&mut report, gateway.admin_addr().port(), probes)?;
        Ok(report)
    });
    let mut report = match report {
        Ok(r) => r,
        Err(e) => return fail_closed(e),
    };
    report.netns = netns;
    report.publish();
    let gateway = gateway.with_sandbox(serde_json::to_value(&report)?);
    let runtime = crate::tools::runtime(Some(workers))?;
    runtime.block_on(async {
        let reloader = gateway.reloader();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = reloader.reload("sighup").await;
            }
        });
        Ok(match gateway.serve(crate::tools::shutdown_signal()).await {
            crate::app::Exit::Clean => ExitCode::SUCCESS,
            crate::app::Exit::GraceExpired => ExitCode::from(1),
            crate::app::Exit::SpoolFailed(why) => {
                eprintln!("oneway: the spool failed ({why}); the next start recovers from it");
                ExitCode::from(EXIT_IO_ERROR)
            }
            crate::app::Exit::ListenerFailed(why) => {
                eprintln!("oneway: {why}");
                ExitCode::from(1)
            }
        })
    })
}

/// `--split`: binds, starts the edge with the listeners, sandboxes itself (TCP connect only
/// to the upstream ports, no filesystem), relays the edge's requests to the upstream, passes
/// SIGTERM, SIGINT and SIGHUP on, and exits with the edge's status.
fn forwarder(
    path: &std::path::Path,
    config: &crate::config::Config,
    probes: &[std::net::SocketAddr],
    workers: usize,
    fail_closed: &dyn Fn(crate::sandbox::SandboxError) -> Result<ExitCode, Error>,
) -> Result<ExitCode, Error> {
    let listeners = crate::app::Gateway::bind_listeners(config)?;
    let admin_port = listeners.1.local_addr()?.port();
    let args: Vec<String> = probes
        .iter()
        .map(|p| format!("--probe-connect={p}"))
        .collect();
    let upstream = crate::upstream::Upstream::new(&config.upstream)?;
    let (mut edge, channel) = crate::split::spawn_edge(path, &args, listeners)?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(edge.id())?);
    let plan = sandbox::Plan {
        connect_ports: config.upstream.addresses.iter().map(|a| a.port()).collect(),
        ..sandbox::Plan::default()
    };
    // The same probes as the edge's: the forwarder is the process with a route out.
    let report = sandbox::enter(config.sandbox, &plan).and_then(|mut report| {
        sandbox::self_test(&mut report, admin_port, probes)?;
        Ok(report)
    });
    match report {
        Ok(r) => {
            r.publish();
            // One line for operators and scripts (the edge's report is in its start event).
            crate::tools::report_line(&format!(
                "oneway forwarder: sandbox {}",
                serde_json::to_string(&r)?
            ));
        }
        Err(e) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = edge.wait();
            return fail_closed(e);
        }
    }
    let max_body = config.body.max_body_bytes.max(config.body.max_upload_bytes);
    let streams = u32::try_from(config.overload.max_in_flight_requests).unwrap_or(u32::MAX);
    let runtime = crate::tools::runtime(Some(workers))?;
    let status = runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        tokio::spawn(async move {
            if let Err(e) = crate::split::forward(channel, upstream, max_body, streams).await {
                tracing::warn!(error = %e, "split: the edge's channel closed");
            }
        });
        let mut waiting = tokio::task::spawn_blocking(move || edge.wait());
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return waiting.await;
        };
        use nix::sys::signal::{Signal, kill};
        loop {
            tokio::select! {
                status = &mut waiting => return status,
                _ = term.recv() => { let _ = kill(pid, Signal::SIGTERM); }
                _ = int.recv() => { let _ = kill(pid, Signal::SIGTERM); }
                _ = hup.recv() => { let _ = kill(pid, Signal::SIGHUP); }
            }
        }
    });
    let code = match status {
        Ok(Ok(s)) => s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
        _ => 1,
    };
    tracing::info!(code, "split: the edge exited");
    Ok(ExitCode::from(code))
}
