//! The `oneway` command.
//!
//! - `certs`: make a development/test PKI (no openssl needed);
//! - `check-config`: validate a config file, listing every problem with its key path (exit 64);
//! - `validate`: run a body file through the decoding and validation a push gets;
//! - `quickstart`: the whole path with no setup (dev PKI, local upstream, a real mTLS push);
//! - `demo`: run a generated DataKit-shaped batch through the protocol layer only;
//! - `spool`: inspect a spool, export or replay dead letters and quarantined segments;
//! - `agent`: next to an unmodified DataKit, add the client certificate (plain HTTP in, mTLS out);
//! - `push`: DataKit-shaped load with a client certificate, and a summary (exit 1 unless all 2xx).
//!
//! - `run`: serve (SIGHUP or a changed file: reload; SIGTERM/SIGINT: stop accepting, finish
//!   in-flight requests, exit 0; a spool
//!   write or sync error: stop accepting, exit 74).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oneway_protocol::{BodyKind, Category, Decoder, Encoding, Precision, Validator};

#[derive(Debug, Parser)]
#[command(
    name = "oneway",
    version,
    about = "The one-way DataKit ingress gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode and validate a body file as the gateway would.
    Validate {
        /// The write category (`metric`, `logging`, `object`, …).
        #[arg(long, default_value = "metric")]
        category: String,
        /// The `Content-Type` the body would be sent with.
        #[arg(long, default_value = "application/line-protocol")]
        content_type: String,
        /// The `Content-Encoding` the body would be sent with.
        #[arg(long)]
        content_encoding: Option<String>,
        /// Timestamp precision for line protocol (`n`, `u`, `ms`, `s`, `m`, `h`).
        #[arg(long, default_value = "n")]
        precision: String,
        /// Largest decoded size accepted, in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_decoded_bytes: usize,
        /// The body file.
        file: PathBuf,
    },
    /// Try the whole path with no setup: dev PKI, local upstream, a real mTLS push.
    Quickstart {
        /// Directory for the dev PKI and config (created if missing).
        #[arg(long, default_value = "oneway-quickstart")]
        dir: PathBuf,
        /// Keep serving after the push (until Ctrl-C).
        #[arg(long)]
        serve: bool,
    },
    /// Show the protocol layer at work on a generated DataKit-shaped batch (no network).
    Demo,
    /// Validate a config file and exit (64 if it is invalid).
    CheckConfig {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Make a development/test PKI: CA, server certificate, client certificates, CRL.
    Certs {
        /// Directory to write into (created if missing).
        #[arg(long, default_value = "certs/out")]
        out: PathBuf,
        /// A DNS name or IP address for the server certificate (repeatable).
        #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        server_names: Vec<String>,
        /// A client certificate (repeatable): `NAME` (SAN DNS name NAME) or
        /// `NAME=dns:<name>,uri:<uri>,…` for explicit identities.
        #[arg(long = "client", default_values_t = ["agent-1".to_string()])]
        clients: Vec<String>,
        /// Put this client's certificate on the CRL (repeatable).
        #[arg(long = "revoke")]
        revoked: Vec<String>,
        /// Validity of the certificates, in days.
        #[arg(long, default_value_t = 30)]
        valid_days: i64,
    },
    /// Inspect a spool, or export or replay its dead letters and quarantined segments.
    Spool {
        #[command(subcommand)]
        action: SpoolAction,
    },
    /// Next to an unmodified DataKit: take its plain-HTTP pushes on loopback and send them
    /// to the gateway over mTLS (docs/agent.md).
    Agent {
        /// Where DataKit connects (its DataWay URL, or its `http_proxy`).
        #[arg(long, default_value = "127.0.0.1:9529")]
        listen: std::net::SocketAddr,
        /// Accept a --listen address that is not loopback.
        #[arg(long)]
        allow_non_loopback: bool,
        /// A gateway address, IP:port (repeatable; used in turn). The only destinations.
        #[arg(long = "gateway", required = true)]
        gateways: Vec<std::net::SocketAddr>,
        /// The name in the gateway's certificate.
        #[arg(long)]
        server_name: String,
        /// The CA of the gateway's certificate (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// This agent's client certificate (PEM chain).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// TCP connect deadline per gateway address, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        connect_timeout_ms: u64,
        /// Whole-request deadline, in milliseconds.
        #[arg(long, default_value_t = 30000)]
        request_timeout_ms: u64,
        /// Largest request body relayed, in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_body_bytes: usize,
        /// The kernel sandbox once bound: TCP connect only to the gateway ports, no files, no
        /// other sockets, no execve. required (the default), best-effort or off.
        #[arg(long, default_value = "required", value_parser = ["required", "best-effort", "off"])]
        sandbox: String,
        /// After entering the sandbox, try a TCP connect to ADDR; with --sandbox required, the
        /// agent does not start unless the kernel refuses it (repeatable; a check for operators).
        #[arg(long, value_name = "ADDR")]
        probe_connect: Vec<std::net::SocketAddr>,
    },
    /// Push DataKit-shaped batches to a gateway with a client certificate, and summarise.
    Push {
        /// The gateway's address (IP:port).
        #[arg(long)]
        gateway: std::net::SocketAddr,
        /// The name in the gateway's certificate.
        #[arg(long, default_value = "localhost")]
        server_name: String,
        /// The gateway's CA (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// Client certificate (PEM chain).
        #[arg(long)]
        cert: PathBuf,
        /// Its key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The agent token.
        #[arg(long)]
        token: String,
        /// The category: metric, logging, object, …
        #[arg(long, default_value = "metric")]
        category: String,
        /// Body format: pb (protobuf, DataKit's default) or lp (line protocol).
        #[arg(long, default_value = "pb", value_parser = ["pb", "lp"])]
        format: String,
        /// Body encoding: gzip, zstd or identity.
        #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "identity"])]
        encoding: String,
        /// Points per generated batch.
        #[arg(long, default_value_t = 1000)]
        points: u64,
        /// Send this line-protocol file as every request's body instead of generated points.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Target requests per second (all connections together); default: as fast as possible.
        #[arg(long)]
        rate: Option<f64>,
        /// How long to push (`30s`, `500ms`, `2m`).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// How many requests to send.
        #[arg(long)]
        count: Option<u64>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Plain HTTP without TLS (for benchmarking a peer that does not speak mTLS).
        #[arg(long)]
        plain: bool,
        /// Send to this path and query instead of /v1/write/<category>?token=<token>.
        #[arg(long)]
        path: Option<String>,
        /// A new connection and TLS handshake for every request.
        #[arg(long)]
        reconnect: bool,
        /// Instead of pushing: open this many connections (one request each), hold them idle
        /// for --duration, and say how many stayed open.
        #[arg(long)]
        idle: Option<usize>,
        /// Instead of pushing: write the first body push would send to this file, print what it
        /// is (size, decoded size, points, headers) as JSON, and exit without connecting.
        #[arg(long, conflicts_with = "idle")]
        save_body: Option<PathBuf>,
    },
    /// Run the gateway.
    Run {
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
    },
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: the unit is ms, s, m or h")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// `EX_IOERR`: the spool could not write or sync; nothing unsynced was acknowledged.
const EXIT_IO_ERROR: u8 = 74;
/// `EX_OSERR`: the sandbox the config requires could not be entered.
const EXIT_SANDBOX: u8 = 71;
/// `EX_UNAVAILABLE`: a listener address could not be bound (another process holds it).
const EXIT_BIND: u8 = 69;

#[derive(Debug, Subcommand)]
enum SpoolAction {
    /// Summarise a spool directory, or list the records of one segment file (tokens redacted).
    Inspect {
        /// A spool directory, or a segment file (`*.seg`, also in `dead/` or `quarantine/`).
        path: PathBuf,
    },
    /// Write each valid record of a segment file as `<seq>.body` and `<seq>.json`.
    Export {
        /// The segment file.
        file: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Send each valid record of a segment file to the config's upstream, in order
    /// (exit 0 only if every record was accepted).
    Replay {
        /// The segment file (a dead-letter or quarantined segment).
        file: PathBuf,
        /// The gateway's config (its `[upstream]` is used).
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oneway: {e:#}");
            let bind = e.downcast_ref::<oneway_gateway::app::BindError>().is_some()
                || matches!(
                    e.downcast_ref::<oneway_gateway::app::StartError>(),
                    Some(oneway_gateway::app::StartError::Bind(_))
                );
            if bind {
                ExitCode::from(EXIT_BIND)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate {
            category,
            content_type,
            content_encoding,
            precision,
            max_decoded_bytes,
            file,
        } => {
            let Some(category) = Category::from_path_segment(&category) else {
                eprintln!("oneway: unknown category {category:?}");
                return Ok(ExitCode::from(64));
            };
            let Some(precision) = Precision::parse(&precision) else {
                eprintln!("oneway: unknown precision {precision:?}");
                return Ok(ExitCode::from(64));
            };
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let ok = check(
                &body,
                category,
                Some(content_type.as_bytes()),
                content_encoding.as_deref().map(str::as_bytes),
                precision,
                max_decoded_bytes,
            );
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(65)
            })
        }
        Command::Demo => quickstart(),
        Command::Quickstart { dir, serve } => {
            std::fs::create_dir_all(&dir)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let ok = runtime.block_on(oneway_gateway::quickstart::run(&dir, serve))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::CheckConfig { config } => match oneway_gateway::config::Config::load(&config) {
            Ok(c) if let Err(e) = oneway_gateway::tls::server_config(&c.listener) => {
                eprintln!(
                    "oneway: {}: the values are valid but the TLS material is not: {e}",
                    config.display()
                );
                Ok(ExitCode::from(64))
            }
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("oneway: warning: {}: {}", w.path, w.message);
                }
                println!(
                    "{}: valid ({} token(s), listener {}, upstream {:?})",
                    config.display(),
                    c.tokens.len(),
                    c.listener.address,
                    c.upstream.addresses
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("oneway: {e}");
                Ok(ExitCode::from(64))
            }
        },
        Command::Certs {
            out,
            server_names,
            clients,
            revoked,
            valid_days,
        } => {
            use oneway_gateway::certs::{ClientSpec, PkiSpec, generate};
            let mut specs = Vec::new();
            for c in &clients {
                let (name, identities) = c.split_once('=').unwrap_or((c.as_str(), ""));
                let mut spec = ClientSpec {
                    name: name.to_string(),
                    dns: vec![],
                    uris: vec![],
                    revoked: revoked.iter().any(|r| r == name),
                    expired: false,
                    ..ClientSpec::default()
                };
                if identities.is_empty() {
                    spec.dns.push(name.to_string());
                }
                for id in identities.split(',').filter(|s| !s.is_empty()) {
                    if let Some(d) = id.strip_prefix("dns:") {
                        spec.dns.push(d.to_string());
                    } else if let Some(u) = id.strip_prefix("uri:") {
                        spec.uris.push(u.to_string());
                    } else {
                        eprintln!("oneway: --client {c}: identities are dns:<name> or uri:<uri>");
                        return Ok(ExitCode::from(64));
                    }
                }
                specs.push(spec);
            }
            for r in &revoked {
                if !specs.iter().any(|s| &s.name == r) {
                    eprintln!("oneway: --revoke {r}: no such --client");
                    return Ok(ExitCode::from(64));
                }
            }
            let names: Vec<String> = specs
                .iter()
                .map(|s| format!("{}.pem/.key", s.name))
                .collect();
            let spec = PkiSpec {
                server_names,
                clients: specs,
                valid_days,
            };
            generate(&spec)?.write(&out)?;
            println!(
                "wrote a dev PKI to {}: ca.pem, server.pem/.key, ca.crl, {}",
                out.display(),
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            probe_connect,
            split,
            split_edge,
        } => serve(
            &config,
            &probe_connect,
            match (split, split_edge) {
                (true, _) => Role::Forwarder,
                (_, true) => Role::Edge,
                _ => Role::Single,
            },
        ),
        Command::Spool { action } => spool(action),
        Command::Push {
            gateway,
            server_name,
            ca,
            cert,
            key,
            token,
            category,
            format,
            encoding,
            points,
            file,
            connections,
            rate,
            duration,
            count,
            json,
            plain,
            path,
            reconnect,
            idle,
            save_body,
        } => {
            use oneway_gateway::push::{Compression, Format, PushConfig, run};
            let config = PushConfig {
                gateway,
                server_name,
                ca,
                identity: (cert, key),
                token,
                category,
                format: if format == "lp" {
                    Format::LineProtocol
                } else {
                    Format::Protobuf
                },
                compression: match encoding.as_str() {
                    "zstd" => Compression::Zstd,
                    "identity" => Compression::Identity,
                    _ => Compression::Gzip,
                },
                points_per_batch: points,
                file,
                connections,
                rate,
                duration,
                count,
                progress: !json,
                plain,
                path,
                reconnect,
            };
            if let Some(path) = save_body {
                let saved = oneway_gateway::push::save_body(&config, &path)?;
                println!("{}", serde_json::to_string(&saved)?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(n) = idle {
                let hold = config
                    .duration
                    .unwrap_or(std::time::Duration::from_secs(10));
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let open = runtime.block_on(async {
                    let idle = oneway_gateway::push::open_idle(&config, n).await?;
                    // Scripts wait for this line before measuring the server.
                    eprintln!(
                        "{} connections open; holding them for {hold:?}",
                        idle.alive()
                    );
                    tokio::time::sleep(hold).await;
                    anyhow::Ok(idle.alive())
                })?;
                println!("{open} of {n} connections open after {hold:?} idle");
                return Ok(if open == n {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            if config.duration.is_none() && config.count.is_none() {
                eprintln!("oneway push: give --duration or --count");
                return Ok(ExitCode::from(64));
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let summary = runtime.block_on(run(config))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{summary}");
            }
            let ok = summary.errors == 0 && summary.statuses.keys().all(|s| (200..300).contains(s));
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Agent {
            listen,
            allow_non_loopback,
            gateways,
            server_name,
            ca,
            cert,
            key,
            connect_timeout_ms,
            request_timeout_ms,
            max_body_bytes,
            sandbox,
            probe_connect,
        } => agent(
            oneway_gateway::agent::AgentConfig {
                listen,
                allow_non_loopback,
                gateways,
                server_name,
                ca,
                cert,
                key,
                connect_timeout: std::time::Duration::from_millis(connect_timeout_ms),
                request_timeout: std::time::Duration::from_millis(request_timeout_ms),
                max_body_bytes,
            },
            oneway_gateway::sandbox::SandboxMode::parse(&sandbox).unwrap_or_default(),
            &probe_connect,
        ),
    }
}

/// `oneway agent`: binds and loads its certificates, enters the sandbox (the agent faces the
/// Guance side's answers from inside the customer's network: compromised, it must still reach
/// nothing but the gateway), then serves.
fn agent(
    config: oneway_gateway::agent::AgentConfig,
    mode: oneway_gateway::sandbox::SandboxMode,
    probes: &[std::net::SocketAddr],
) -> anyhow::Result<ExitCode> {
    use oneway_gateway::sandbox;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let plan = sandbox::Plan {
        connect_ports: config.gateways.iter().map(|a| a.port()).collect(),
        ..sandbox::Plan::default()
    };
    let agent = match oneway_gateway::agent::Agent::bind(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oneway agent: {e}");
            return Ok(ExitCode::from(64));
        }
    };
    let listen = agent.local_addr()?;
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let report = sandbox::enter(mode, &plan).and_then(|mut report| {
        sandbox::self_test(&mut report, listen.port(), probes)?;
        Ok(report)
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, kind = e.kind(), "sandbox: not starting");
            eprintln!(
                "oneway agent: {e} (for the agent: --sandbox best-effort runs with what this kernel has)"
            );
            return Ok(ExitCode::from(EXIT_SANDBOX));
        }
    };
    // One line for operators and scripts: what the kernel enforces.
    eprintln!("oneway agent: sandbox {}", serde_json::to_string(&report)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tracing::info!(listen = %listen, sandbox = report.state, "agent listening");
        agent.serve(shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

fn spool(action: SpoolAction) -> anyhow::Result<ExitCode> {
    use oneway_gateway::spool::tool;
    match action {
        SpoolAction::Inspect { path } => {
            print!(
                "{}",
                tool::inspect(&path).with_context(|| path.display().to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
        SpoolAction::Export { file, out } => {
            let n = tool::export(&file, &out).with_context(|| file.display().to_string())?;
            println!("exported {n} records to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        SpoolAction::Replay { file, config } => {
            let config = match oneway_gateway::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("oneway: {e}");
                    return Ok(ExitCode::from(64));
                }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(async {
                let upstream = oneway_gateway::upstream::Upstream::new(&config.upstream)?;
                anyhow::Ok(tool::replay(&file, &upstream).await?)
            })?;
            println!(
                "replayed {}: {} delivered, {} refused by the upstream, {} failed",
                file.display(),
                report.delivered,
                report.refused,
                report.failed
            );
            Ok(if report.refused + report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
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

fn serve(
    path: &std::path::Path,
    probes: &[std::net::SocketAddr],
    role: Role,
) -> anyhow::Result<ExitCode> {
    use oneway_gateway::app::Gateway;
    use oneway_gateway::sandbox;
    if role == Role::Edge {
        // The forwarder's death stops the edge (a drain, not a kill).
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
        if std::os::unix::process::parent_id() == 1 {
            eprintln!("oneway: the forwarder is gone");
            return Ok(ExitCode::from(1));
        }
    }
    let config = match oneway_gateway::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oneway: {e}");
            return Ok(ExitCode::from(64));
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for w in &config.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    let fail_closed = |e: sandbox::SandboxError| {
        tracing::error!(error = %e, kind = e.kind(), "sandbox: not starting");
        eprintln!("oneway: {e}");
        Ok(ExitCode::from(EXIT_SANDBOX))
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
        let inputs = oneway_gateway::split::edge_inputs()?;
        let netns = match oneway_gateway::sandbox::enter_empty_netns(probes) {
            Ok(n) => n,
            Err(e) => return fail_closed(e),
        };
        tracing::info!(entered = netns.entered, interfaces = ?netns.interfaces, "split: the edge is in an empty network namespace");
        // The edge connects nowhere: its only way out is the forwarder's channel.
        plan.connect_ports.clear();
        let upstream = oneway_gateway::upstream::Upstream::forwarder(
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
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
        Ok(match gateway.serve(shutdown_signal()).await {
            oneway_gateway::app::Exit::Clean => ExitCode::SUCCESS,
            oneway_gateway::app::Exit::GraceExpired => ExitCode::from(1),
            oneway_gateway::app::Exit::SpoolFailed(why) => {
                eprintln!("oneway: the spool failed ({why}); the next start recovers from it");
                ExitCode::from(EXIT_IO_ERROR)
            }
            oneway_gateway::app::Exit::ListenerFailed(why) => {
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
    config: &oneway_gateway::config::Config,
    probes: &[std::net::SocketAddr],
    workers: usize,
    fail_closed: &dyn Fn(oneway_gateway::sandbox::SandboxError) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    use oneway_gateway::sandbox;
    let listeners = oneway_gateway::app::Gateway::bind_listeners(config)?;
    let admin_port = listeners.1.local_addr()?.port();
    let args: Vec<String> = probes
        .iter()
        .map(|p| format!("--probe-connect={p}"))
        .collect();
    let upstream = oneway_gateway::upstream::Upstream::new(&config.upstream)?;
    let (mut edge, channel) = oneway_gateway::split::spawn_edge(path, &args, listeners)?;
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
            eprintln!("oneway forwarder: sandbox {}", serde_json::to_string(&r)?);
        }
        Err(e) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = edge.wait();
            return fail_closed(e);
        }
    }
    let max_body = config.body.max_body_bytes.max(config.body.max_upload_bytes);
    let streams = u32::try_from(config.overload.max_in_flight_requests).unwrap_or(u32::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let status = runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        tokio::spawn(async move {
            if let Err(e) =
                oneway_gateway::split::forward(channel, upstream, max_body, streams).await
            {
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

async fn shutdown_signal() {
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

/// Decodes and validates; prints the verdict. Returns whether the batch is accepted.
fn check(
    body: &[u8],
    category: Category,
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
    precision: Precision,
    limit: usize,
) -> bool {
    let kind = match BodyKind::from_content_type(content_type) {
        Ok(kind) => kind,
        Err(e) => {
            println!("rejected (415): {e}");
            return false;
        }
    };
    let encoding = match Encoding::from_header(content_encoding) {
        Ok(e) => e,
        Err(e) => {
            println!("rejected ({}): {e}", status(&e));
            return false;
        }
    };
    let mut out = Vec::new();
    let decoded = match Decoder::new().decode(encoding, body, &mut out, limit) {
        Ok(d) => d,
        Err(e) => {
            println!("rejected ({}): {e}", status(&e));
            return false;
        }
    };
    match Validator::default().validate(kind, category, precision, decoded) {
        Ok(v) => {
            println!(
                "accepted: {} points, {} bytes {} → {} bytes {}",
                v.points,
                body.len(),
                encoding,
                decoded.len(),
                kind.as_str()
            );
            for (rule, n) in v.counted.iter() {
                println!("  counted: {n} points broke {} ({rule})", rule.as_str());
            }
            true
        }
        Err(r) => {
            println!("rejected (400): {r}");
            false
        }
    }
}

fn status(e: &oneway_protocol::DecodeError) -> u16 {
    match e.class() {
        oneway_protocol::DecodeErrorClass::TooLarge => 413,
        oneway_protocol::DecodeErrorClass::Corrupt => 400,
        oneway_protocol::DecodeErrorClass::Unsupported => 415,
    }
}

fn quickstart() -> anyhow::Result<ExitCode> {
    let lp = String::from_utf8(oneway_gateway::push::line_protocol(1000, 0))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    gz.write_all(lp.as_bytes())?;
    let body = gz.finish()?;
    println!("oneway demo: the protocol layer on a DataKit-shaped batch (no network)\n");
    println!(
        "POST /v1/write/metric  Content-Type: application/line-protocol  Content-Encoding: gzip"
    );
    let ok = check(
        &body,
        Category::Metric,
        Some(b"application/line-protocol"),
        Some(b"gzip"),
        Precision::Nanoseconds,
        64 << 20,
    );
    println!("\nthe same batch with a string field, which metric points may not have:");
    let bad = lp.replacen("usage_idle=0.5", "usage_idle=\"idle\"", 1);
    let rejected = !check(
        bad.as_bytes(),
        Category::Metric,
        Some(b"application/line-protocol"),
        None,
        Precision::Nanoseconds,
        64 << 20,
    );
    Ok(if ok && rejected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
