//! The split edge's network namespace: new, empty network (and user) namespaces entered before
//! the sandbox, checked from inside to hold only a loopback, and probed with TCP connects that
//! routing alone must refuse (`oneway run --split`).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Probe, SandboxError};

/// The edge's network namespace, as checked from inside it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Netns {
    /// The namespaces entered: `user+net` (unprivileged) or `net` (with `CAP_SYS_ADMIN`).
    pub entered: &'static str,
    /// Its interfaces (only `lo`, down).
    pub interfaces: Vec<String>,
    /// TCP connects tried before the sandbox, so that only routing can refuse them.
    pub probes: Vec<Probe>,
}

/// Moves the calling process (single-threaded) into new, empty network (and user)
/// namespaces, checks that only a loopback interface exists there, and tries a TCP connect to
/// each of `targets`, which must fail. Fails closed.
pub fn enter_empty_netns(targets: &[SocketAddr]) -> Result<Netns, SandboxError> {
    use nix::sched::{CloneFlags, unshare};
    let entered = match unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET) {
        Ok(()) => "user+net",
        Err(user) => match unshare(CloneFlags::CLONE_NEWNET) {
            Ok(()) => "net",
            Err(net) => {
                return Err(SandboxError::Netns(format!(
                    "cannot create a network namespace: user+net: {user}; net: {net} \
                     (allow unprivileged user namespaces, or give CAP_SYS_ADMIN)"
                )));
            }
        },
    };
    let dev = std::fs::read_to_string("/proc/self/net/dev")
        .map_err(|e| SandboxError::Netns(format!("/proc/self/net/dev: {e}")))?;
    let interfaces: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect();
    if interfaces != ["lo"] {
        return Err(SandboxError::Netns(format!(
            "the new network namespace is not empty: {interfaces:?}"
        )));
    }
    let mut probes = Vec::new();
    for target in targets {
        let result = std::net::TcpStream::connect_timeout(target, Duration::from_secs(2));
        let (outcome, contained) = match result {
            Ok(_) => ("succeeded".to_string(), false),
            Err(e) => (super::errno_name(&e), true),
        };
        if !contained {
            return Err(SandboxError::Escaped {
                probe: format!("connect {target} from the edge's namespace"),
                outcome,
            });
        }
        probes.push(Probe {
            probe: format!("connect {target}"),
            outcome,
            contained,
        });
    }
    Ok(Netns {
        entered,
        interfaces,
        probes,
    })
}
