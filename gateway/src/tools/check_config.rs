//! `oneway check-config`: a config file checked as `oneway run` would load it (values, then the
//! TLS material it names), every problem listed with its key path.

use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_USAGE;
use crate::config::Config;

/// `oneway check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long)]
    config: PathBuf,
}

/// Exit 0 if the file is valid (warnings printed), 64 if not.
pub fn main(args: Args) -> super::Result<ExitCode> {
    let path = &args.config;
    Ok(match Config::load(path) {
        Ok(c) if let Err(e) = crate::tls::server_config(&c.listener) => {
            eprintln!(
                "oneway: {}: the values are valid but the TLS material is not: {e}",
                path.display()
            );
            ExitCode::from(EXIT_USAGE)
        }
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("oneway: warning: {}: {}", w.path, w.message);
            }
            println!(
                "{}: valid ({} token(s), listener {}, upstream {:?})",
                path.display(),
                c.tokens.len(),
                c.listener.address,
                c.upstream.addresses
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oneway: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    })
}
