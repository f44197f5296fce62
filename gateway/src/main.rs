//! The `oneway` command: argument parsing and dispatch; each subcommand's arguments and work
//! are in the library (`oneway_gateway::run` for the server, `oneway_gateway::tools` for the
//! rest).
//!
//! - `run`: serve (SIGHUP or a changed file: reload; SIGTERM/SIGINT: stop accepting, finish
//!   in-flight requests, exit 0; a spool write or sync error: stop accepting, exit 74);
//! - `check-config`: validate a config file, listing every problem with its key path (exit 64);
//! - `validate`: run a body file through the decoding and validation a push gets;
//! - `quickstart`: the whole path with no setup (dev PKI, local upstream, a real mTLS push);
//! - `demo`: run a generated DataKit-shaped batch through the protocol layer only;
//! - `certs`: make a development/test PKI (no openssl needed);
//! - `spool`: inspect a spool, export or replay dead letters and quarantined segments;
//! - `agent`: next to an unmodified DataKit, add the client certificate (plain HTTP in, mTLS out);
//! - `push`: DataKit-shaped load with a client certificate, and a summary (exit 1 unless all 2xx).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oneway_gateway::{run, tools};

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
    Validate(tools::validate::Args),
    /// Try the whole path with no setup: dev PKI, local upstream, a real mTLS push.
    Quickstart(tools::quickstart::Args),
    /// Show the protocol layer at work on a generated DataKit-shaped batch (no network).
    Demo,
    /// Validate a config file and exit (64 if it is invalid).
    CheckConfig(tools::check_config::Args),
    /// Make a development/test PKI: CA, server certificate, client certificates, CRL.
    Certs(tools::certs::Args),
    /// Inspect a spool, or export or replay its dead letters and quarantined segments.
    Spool(tools::spool::Args),
    /// Next to an unmodified DataKit: take its plain-HTTP pushes on loopback and send them
    /// to the gateway over mTLS (docs/agent.md).
    Agent(tools::agent::Args),
    /// Push DataKit-shaped batches to a gateway with a client certificate, and summarise.
    Push(tools::push::Args),
    /// Verify the audit trail's chain: the first line edited, deleted, inserted, reordered or cut.
    Audit(tools::audit::Args),
    /// Run the gateway.
    Run(run::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Validate(args) => tools::validate::main(args),
        Command::Quickstart(args) => tools::quickstart::main(args),
        Command::Demo => tools::validate::demo(),
        Command::CheckConfig(args) => tools::check_config::main(args),
        Command::Certs(args) => tools::certs::main(args),
        Command::Spool(args) => tools::spool::main(args),
        Command::Agent(args) => tools::agent::main(args),
        Command::Push(args) => tools::push::main(args),
        Command::Audit(args) => tools::audit::main(args),
        Command::Run(args) => run::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            eprintln!("oneway: {message}");
            ExitCode::from(if run::is_bind_error(e.as_ref()) {
                run::EXIT_BIND
            } else {
                1
            })
        }
    }
}
