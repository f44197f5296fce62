//! The kernel sandbox `oneway run` enters once its listeners are bound, its spool is open and
//! its upstreams are resolved, and before the runtime starts any thread
//! (reference/hardening.md §6). Both layers bind the calling thread and every thread and
//! process it creates afterwards, and neither can be lifted.
//!
//! - **Landlock**: TCP `connect` only to the upstream ports, no `bind` at all; the filesystem
//!   only to read the config and certificate directories, and to write the spool directory
//!   and the audit file; no abstract Unix socket or signal outside the process.
//! - **seccomp**: `execve`/`execveat`, `ptrace`, `io_uring_*`, namespace, mount, module and
//!   BPF calls, and every socket but a TCP one (UDP, raw, packet, netlink, Unix) fail with
//!   `EPERM`; so does every x32 call. `no_new_privs` is set.
//!
//! After entering, [`self_test`] tries what a compromised process would (a UDP socket, a
//! netlink socket, `execve`, a DNS lookup, a TCP connect to a port that is not an upstream's,
//! reading `/`) and reports each attempt's outcome; with `sandbox = "required"` one that is
//! not refused stops the start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::sock_filter;

use crate::config::Config;
mod netns;

pub use self::netns::{Netns, enter_empty_netns};
pub use crate::config::SandboxMode;
use crate::telemetry;

/// The exit status when the sandbox the config requires could not be entered (`EX_OSERR`).
pub const EXIT_SANDBOX: u8 = 71;

/// Why the sandbox could not be entered as required.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Threads already run (they would stay outside the sandbox), or they cannot be counted.
    #[error("the sandbox must be entered before any thread starts: {0}")]
    Threads(String),
    /// Landlock refused or is missing.
    #[error(
        "Landlock: {0} (sandbox = \"required\" needs Linux 6.12 or later, Landlock ABI 6; set sandbox = \"best-effort\" to run with what this kernel has)"
    )]
    Landlock(String),
    /// A path the sandbox must allow cannot be opened.
    #[error("sandbox: cannot open {path} to allow it: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// seccomp refused.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// This architecture has no seccomp filter here.
    #[error("seccomp: no filter for the {0} architecture")]
    Architecture(&'static str),
    /// The split's network namespace could not be entered, or is not empty.
    #[error("split: {0}")]
    Netns(String),
    /// A self-test attempt was not refused.
    #[error("sandbox self-test: {probe} was not refused ({outcome})")]
    Escaped {
        /// The attempt.
        probe: String,
        /// What happened.
        outcome: String,
    },
}

impl SandboxError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SandboxError::Threads(_) => "threads",
            SandboxError::Landlock(_) => "landlock",
            SandboxError::Path { .. } => "path",
            SandboxError::Seccomp(_) => "seccomp",
            SandboxError::Architecture(_) => "architecture",
            SandboxError::Netns(_) => "netns",
            SandboxError::Escaped { .. } => "escaped",
        }
    }
}

/// What the sandbox allows, derived from the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// TCP ports `connect` may reach (the upstreams').
    pub connect_ports: BTreeSet<u16>,
    /// Directories whose files may be read (config, certificates, keys, CAs, CRLs).
    pub read: BTreeSet<PathBuf>,
    /// Directories that may be written (the spool).
    pub write: BTreeSet<PathBuf>,
    /// Files that may be written (the audit file).
    pub write_files: BTreeSet<PathBuf>,
    /// Refuse signals to processes outside the sandbox (the split's forwarder must stop its
    /// edge, so it keeps this off).
    pub scope_signals: bool,
}

impl Plan {
    /// The plan for `config`.
    ///
    /// A file's directory is made readable rather than the file, so that a file replaced by
    /// a rename stays readable; so is the directory holding any symbolic link on the path (a
    /// certificate directory swapped by a symlink, as Kubernetes does with Secrets), and the
    /// directory the path resolves into now.
    pub fn for_config(config: &Config) -> Plan {
        let mut plan = Plan {
            connect_ports: config.upstream.addresses.iter().map(|a| a.port()).collect(),
            scope_signals: true,
            ..Plan::default()
        };
        let l = &config.listener;
        let mut files: Vec<&Path> = vec![&l.server_cert, &l.server_key, &l.client_ca];
        files.extend(l.crls.iter().map(PathBuf::as_path));
        if let Some(source) = &config.source {
            files.push(source);
        }
        for file in files {
            plan.read.extend(readable_roots(file));
        }
        if let Some(spool) = &config.spool {
            plan.write.insert(spool.directory.clone());
        }
        if let crate::audit::AuditOutput::File(path) = &config.audit.output {
            plan.write_files.insert(path.clone());
        }
        plan
    }
}

/// The directories to allow reading so that `file` stays readable across renames and
/// symlink swaps.
fn readable_roots(file: &Path) -> Vec<PathBuf> {
    let absolute = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(file)
    };
    let mut roots = Vec::new();
    if let Some(parent) = absolute.parent() {
        roots.push(parent.to_path_buf());
    }
    let mut prefix = PathBuf::new();
    for component in absolute.components() {
        prefix.push(component);
        if prefix.symlink_metadata().is_ok_and(|m| m.is_symlink())
            && let Some(parent) = prefix.parent()
        {
            roots.push(parent.to_path_buf());
        }
    }
    if let Ok(real) = absolute.canonicalize()
        && let Some(parent) = real.parent()
    {
        roots.push(parent.to_path_buf());
    }
    roots
}

/// What was entered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The configured mode.
    pub mode: &'static str,
    /// `enforced` (every layer), `partial` or `off`.
    pub state: &'static str,
    /// The running kernel's Landlock ABI (0: none).
    pub landlock_abi: i32,
    /// Landlock: `full`, `partial` or `none`.
    pub landlock: &'static str,
    /// The seccomp filter is installed.
    pub seccomp: bool,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
    /// The TCP ports `connect` may reach.
    pub connect_ports: Vec<u16>,
    /// The self-test's attempts.
    pub probes: Vec<Probe>,
    /// The split edge's network namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
}

impl Report {
    /// The report of a process that entered no sandbox.
    pub fn off() -> Report {
        Report {
            mode: SandboxMode::Off.as_str(),
            state: "off",
            landlock_abi: 0,
            landlock: "none",
            seccomp: false,
            no_new_privs: false,
            connect_ports: Vec::new(),
            probes: Vec::new(),
            netns: None,
        }
    }

    /// Logs the report and exports it as `oneway_sandbox_enforced{layer}`.
    pub fn publish(&self) {
        for (layer, on) in [
            ("landlock", self.landlock == "full"),
            ("seccomp", self.seccomp),
            ("no_new_privs", self.no_new_privs),
            (
                "self_test",
                self.probes.iter().all(|p| p.contained) && !self.probes.is_empty(),
            ),
        ] {
            metrics::gauge!(telemetry::SANDBOX, "layer" => layer).set(if on { 1.0 } else { 0.0 });
        }
        for p in &self.probes {
            tracing::info!(probe = %p.probe, outcome = %p.outcome, contained = p.contained, "sandbox self-test");
        }
        let level_ok = self.state == "enforced";
        if level_ok {
            tracing::info!(mode = self.mode, landlock_abi = self.landlock_abi, ports = ?self.connect_ports, "sandbox enforced");
        } else {
            tracing::warn!(
                mode = self.mode,
                state = self.state,
                landlock = self.landlock,
                seccomp = self.seccomp,
                "sandbox not fully enforced"
            );
        }
    }
}

/// One self-test attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// What was tried (`udp_socket`, `connect 10.0.0.5:22`, …).
    pub probe: String,
    /// `EPERM`, `EACCES`, … or `succeeded`.
    pub outcome: String,
    /// Refused as the sandbox must refuse it.
    pub contained: bool,
}

/// Enters the sandbox `mode` asks for with `plan`. Must be called before any thread starts.
pub fn enter(mode: SandboxMode, plan: &Plan) -> Result<Report, SandboxError> {
    if mode == SandboxMode::Off {
        return Ok(Report::off());
    }
    match std::fs::read_dir("/proc/self/task").map(Iterator::count) {
        Ok(1) => {}
        Ok(n) => {
            return Err(SandboxError::Threads(format!(
                "{n} threads run (a bug in oneway)"
            )));
        }
        Err(e) => {
            return Err(SandboxError::Threads(format!(
                "cannot count them in /proc/self/task ({e}); is /proc mounted?"
            )));
        }
    }
    let required = mode == SandboxMode::Required;
    let (landlock_abi, landlock, landlock_nnp) = match landlock(plan, required) {
        Ok(r) => r,
        Err(e) if !required => {
            tracing::warn!(error = %e, "Landlock not entered");
            (0, "none", false)
        }
        Err(e) => return Err(e),
    };
    let seccomp = match seccomp() {
        Ok(()) => true,
        Err(e) if !required => {
            tracing::warn!(error = %e, "seccomp not entered");
            false
        }
        Err(e) => return Err(e),
    };
    let state = if landlock == "full" && seccomp {
        "enforced"
    } else {
        "partial"
    };
    Ok(Report {
        mode: mode.as_str(),
        state,
        landlock_abi,
        landlock,
        seccomp,
        // seccomp cannot be installed without it.
        no_new_privs: landlock_nnp || seccomp,
        connect_ports: plan.connect_ports.iter().copied().collect(),
        probes: Vec::new(),
        netns: None,
    })
}

/// The Landlock ABI this code targets: filesystem (with truncate and device ioctls), TCP,
/// and scoping of abstract Unix sockets and signals.
const TARGET_ABI: ABI = ABI::V6;

fn landlock(plan: &Plan, required: bool) -> Result<(i32, &'static str, bool), SandboxError> {
    let ll = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let level = if required {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let all_fs = AccessFs::from_all(TARGET_ABI);
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let write = read
        | AccessFs::WriteFile
        | AccessFs::MakeReg
        | AccessFs::MakeDir
        | AccessFs::RemoveFile
        | AccessFs::RemoveDir
        | AccessFs::Refer
        | AccessFs::Truncate;
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(all_fs)
        .map_err(ll)?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
        .map_err(ll)?
        .scope(if plan.scope_signals {
            Scope::AbstractUnixSocket | Scope::Signal
        } else {
            Scope::AbstractUnixSocket.into()
        })
        .map_err(ll)?
        .create()
        .map_err(ll)?;
    let open = |path: &Path| {
        PathFd::new(path).map_err(|e| SandboxError::Path {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    };
    for dir in &plan.read {
        ruleset = ruleset
            .add_rule(PathBeneath::new(open(dir)?, read))
            .map_err(ll)?;
    }
    for dir in &plan.write {
        ruleset = ruleset
            .add_rule(PathBeneath::new(open(dir)?, write))
            .map_err(ll)?;
    }
    for file in &plan.write_files {
        ruleset = ruleset
            .add_rule(PathBeneath::new(open(file)?, AccessFs::WriteFile))
            .map_err(ll)?;
    }
    for port in &plan.connect_ports {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(ll)?;
    }
    let status = ruleset.restrict_self().map_err(ll)?;
    let abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        _ => 0,
    };
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => "full",
        RulesetStatus::PartiallyEnforced => "partial",
        RulesetStatus::NotEnforced => "none",
    };
    if required && state != "full" {
        return Err(SandboxError::Landlock(format!(
            "only {state}ly enforced on this kernel (ABI {abi})"
        )));
    }
    Ok((abi, state, status.no_new_privs))
}

// ------------------------------------------------------------------ seccomp (cBPF) ----

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_JA: u16 = 0x05;
const BPF_AND_K: u16 = 0x54;
const BPF_RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
/// `clone3` gets `ENOSYS`: its flags are behind a pointer the filter cannot read, and glibc
/// then creates threads with `clone`, whose flags it can.
const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;

/// The namespace flags of `clone` (`CLONE_NEWNS`, `NEWCGROUP`, `NEWUTS`, `NEWIPC`, `NEWUSER`,
/// `NEWPID`, `NEWNET`; `CLONE_NEWTIME` shares its bit with the exit signal in `clone` and is
/// only valid in `clone3` and `unshare`, both refused whole).
const CLONE_NAMESPACES: u32 = 0x7e02_0000;
/// TCP options that open a connection without `connect` or change how one is made:
/// `TCP_REPAIR`, `TCP_FASTOPEN`, `TCP_FASTOPEN_CONNECT`, `TCP_FASTOPEN_KEY`,
/// `TCP_FASTOPEN_NO_COOKIE`.
const TCP_DENIED_OPTIONS: [u32; 5] = [19, 23, 30, 33, 34];
/// `struct seccomp_data`: `nr`, `arch`, then the arguments (low word first on little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const fn arg(i: u32) -> u32 {
    16 + 8 * i
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The calls refused outright.
fn denied_syscalls() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        // A file by handle, outside every path rule; another process's descriptor.
        libc::SYS_open_by_handle_at,
        libc::SYS_pidfd_getfd,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        // Every listener is open before the sandbox; a new one would auto-bind a port.
        libc::SYS_listen,
    ];
    calls.sort_unstable();
    calls
}

/// `RET_EPERM` when the call is `nr` and its argument `arg_index` has a bit of `mask` set;
/// leaves the accumulator holding the call number again.
fn flag_guard(nr: u32, arg_index: u32, mask: u32) -> [sock_filter; 5] {
    [
        jump(BPF_JEQ_K, nr, 0, 4),
        stmt(BPF_LD_W_ABS, arg(arg_index)),
        jump(BPF_JSET_K, mask, 0, 1),
        stmt(BPF_RET_K, RET_EPERM),
        stmt(BPF_LD_W_ABS, NR),
    ]
}

/// `RET_EPERM` for `setsockopt(fd, IPPROTO_TCP, opt, …)` with `opt` in [`TCP_DENIED_OPTIONS`].
fn tcp_option_guard(nr: u32) -> Vec<sock_filter> {
    let n = TCP_DENIED_OPTIONS.len() as u8;
    let mut g = vec![
        // Not setsockopt: over the whole guard (level, its test, optname, the n tests, the
        // jump, the refusal, the reload).
        jump(BPF_JEQ_K, nr, 0, n + 6),
        stmt(BPF_LD_W_ABS, arg(1)),
        // Another level: to the reload.
        jump(BPF_JEQ_K, libc::IPPROTO_TCP as u32, 0, n + 3),
        stmt(BPF_LD_W_ABS, arg(2)),
    ];
    for (i, opt) in TCP_DENIED_OPTIONS.iter().enumerate() {
        // A match jumps to the refusal: over the remaining tests and the jump.
        g.push(jump(BPF_JEQ_K, *opt, n - i as u8, 0));
    }
    g.push(stmt(BPF_JA, 1));
    g.push(stmt(BPF_RET_K, RET_EPERM));
    g.push(stmt(BPF_LD_W_ABS, NR));
    g
}

/// The filter: wrong architecture → kill; x32 → `EPERM`; [`denied_syscalls`] → `EPERM`;
/// `clone3` → `ENOSYS`; `clone` with a namespace flag → `EPERM`; `sendto`, `sendmsg`,
/// `sendmmsg` with `MSG_FASTOPEN` (a connection `connect` never saw) → `EPERM`; `setsockopt`
/// of [`TCP_DENIED_OPTIONS`] → `EPERM`; `socket` other than (`AF_INET` or `AF_INET6`,
/// `SOCK_STREAM`, protocol 0 or TCP) → `EPERM`; everything else allowed.
fn filter() -> Result<Vec<sock_filter>, SandboxError> {
    let nr = |n: i64| u32::try_from(n).map_err(|_| SandboxError::Seccomp("syscall number".into()));
    let mut p = vec![
        stmt(BPF_LD_W_ABS, ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, NR),
    ];
    if cfg!(target_arch = "x86_64") {
        // The x32 ABI's numbers carry bit 30; none of them is needed.
        p.push(jump(BPF_JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(BPF_RET_K, RET_EPERM));
    }
    for call in denied_syscalls() {
        p.push(jump(BPF_JEQ_K, nr(call)?, 0, 1));
        p.push(stmt(BPF_RET_K, RET_EPERM));
    }
    p.push(jump(BPF_JEQ_K, nr(libc::SYS_clone3)?, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ENOSYS));
    p.extend(flag_guard(nr(libc::SYS_clone)?, 0, CLONE_NAMESPACES));
    let fast_open = libc::MSG_FASTOPEN as u32;
    p.extend(flag_guard(nr(libc::SYS_sendto)?, 3, fast_open));
    p.extend(flag_guard(nr(libc::SYS_sendmsg)?, 2, fast_open));
    p.extend(flag_guard(nr(libc::SYS_sendmmsg)?, 3, fast_open));
    p.extend(tcp_option_guard(nr(libc::SYS_setsockopt)?));
    // socket(domain, type, protocol)
    let socket = [
        stmt(BPF_LD_W_ABS, arg(0)),
        jump(BPF_JEQ_K, libc::AF_INET as u32, 1, 0),
        jump(BPF_JEQ_K, libc::AF_INET6 as u32, 0, 7),
        stmt(BPF_LD_W_ABS, arg(1)),
        // The type without SOCK_NONBLOCK / SOCK_CLOEXEC.
        stmt(BPF_AND_K, 0xf),
        jump(BPF_JEQ_K, libc::SOCK_STREAM as u32, 0, 4),
        stmt(BPF_LD_W_ABS, arg(2)),
        jump(BPF_JEQ_K, 0, 1, 0),
        jump(BPF_JEQ_K, libc::IPPROTO_TCP as u32, 0, 1),
        stmt(BPF_RET_K, RET_ALLOW),
        stmt(BPF_RET_K, RET_EPERM),
    ];
    p.push(jump(
        BPF_JEQ_K,
        nr(libc::SYS_socket)?,
        0,
        u8::try_from(socket.len()).map_err(|_| SandboxError::Seccomp("jump".into()))?,
    ));
    p.extend(socket);
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    Ok(p)
}

fn seccomp() -> Result<(), SandboxError> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(SandboxError::Architecture(std::env::consts::ARCH));
    }
    let program = filter()?;
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))
}

// ------------------------------------------------------------------------ self-test ----

/// Tries, from inside the sandbox, what a compromised gateway would, and records each
/// outcome in `report`: a UDP socket (the start of any DNS query), netlink and packet
/// sockets, `execve`, a name lookup, reading `/`, a TCP connect to `own_port` on loopback
/// (a port of this process's own that is not an upstream's: refused in the kernel, nothing
/// leaves the host even if it were not), a TCP Fast Open send there (a connection `connect`
/// never sees), a new network namespace, and for each of `targets` a TCP connect and a TCP
/// Fast Open send. A target counts as contained only when the kernel refused the attempt
/// before a packet left (`EPERM`, `EACCES`, `ENETUNREACH`, `EAFNOSUPPORT`): a reset means
/// a host answered.
///
/// With `sandbox = "required"`, an attempt that was not refused is an error.
pub fn self_test(
    report: &mut Report,
    own_port: u16,
    targets: &[SocketAddr],
) -> Result<(), SandboxError> {
    if report.state == "off" {
        return Ok(());
    }
    let mut probes = Vec::new();
    let eperm = |r: std::io::Result<()>| expect(r, libc::EPERM);
    probes.push((
        "udp_socket".to_string(),
        eperm(std::net::UdpSocket::bind("127.0.0.1:0").map(drop)),
    ));
    for (name, domain) in [
        ("netlink_socket", libc::AF_NETLINK),
        ("packet_socket", libc::AF_PACKET),
        ("unix_socket", libc::AF_UNIX),
    ] {
        let r = socket2::Socket::new(socket2::Domain::from(domain), socket2::Type::DGRAM, None);
        probes.push((name.to_string(), eperm(r.map(drop))));
    }
    probes.push((
        "raw_socket".to_string(),
        eperm(socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, None).map(drop)),
    ));
    probes.push((
        "execve".to_string(),
        eperm(
            // Inheriting the standard streams: opening /dev/null would be refused first.
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg("exit 0")
                .status()
                .map(drop),
        ),
    ));
    let lookup = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80));
    probes.push((
        "dns_lookup localhost".to_string(),
        match lookup {
            Ok(_) => ("succeeded".to_string(), false),
            Err(e) => (
                e.raw_os_error()
                    .map_or_else(|| format!("failed ({e})"), |_| errno_name(&e)),
                true,
            ),
        },
    ));
    probes.push((
        "read_dir /".to_string(),
        expect(std::fs::read_dir("/").map(drop), libc::EACCES),
    ));
    let own = SocketAddr::from(([127, 0, 0, 1], own_port));
    if !report.connect_ports.contains(&own_port) {
        probes.push((format!("connect {own}"), expect(connect(own), libc::EACCES)));
    }
    // A connection that connect() never sees: TCP Fast Open carries it in the first send.
    probes.push((
        format!("tcp_fast_open {own}"),
        expect(fast_open(own), libc::EPERM),
    ));
    // A new network namespace (on a thread of its own, so that a sandbox that failed to
    // refuse it moves only that thread; the thread itself shows that threads still start).
    let unshared = std::thread::Builder::new()
        .name("sandbox-probe".into())
        .spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        })
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("probe thread panicked")))
        })
        .and_then(|r| r);
    probes.push((
        "unshare CLONE_NEWNET".to_string(),
        expect(unshared, libc::EPERM),
    ));
    for target in targets {
        probes.push((
            format!("connect {target}"),
            refused_by_kernel(connect(*target)),
        ));
        probes.push((
            format!("tcp_fast_open {target}"),
            refused_by_kernel(fast_open(*target)),
        ));
    }
    report.probes = probes
        .into_iter()
        .map(|(probe, (outcome, contained))| Probe {
            probe,
            outcome,
            contained,
        })
        .collect();
    if let Some(escaped) = report.probes.iter().find(|p| !p.contained) {
        if report.mode == SandboxMode::Required.as_str() {
            return Err(SandboxError::Escaped {
                probe: escaped.probe.clone(),
                outcome: escaped.outcome.clone(),
            });
        }
        report.state = "partial";
    }
    Ok(())
}

fn connect(target: SocketAddr) -> std::io::Result<()> {
    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(drop)
}

/// A TCP Fast Open send of one byte to `target` (non-blocking: an attempt that is not
/// refused returns at once, connected or in progress).
fn fast_open(target: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket
        .send_to_with_flags(b"x", &target.into(), libc::MSG_FASTOPEN)
        .map(drop)
}

/// The outcome of an attempt to reach a target, contained only if the kernel refused it
/// before anything left: `EPERM`, `EACCES` (the sandbox), `ENETUNREACH`, `EAFNOSUPPORT` (no
/// route or family). A reset (`ECONNREFUSED`), a timeout or an attempt in progress means a
/// packet went out.
fn refused_by_kernel(result: std::io::Result<()>) -> (String, bool) {
    match result {
        Ok(()) => ("succeeded".to_string(), false),
        Err(e) => {
            let contained = matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::ENETUNREACH | libc::EAFNOSUPPORT)
            );
            (errno_name(&e), contained)
        }
    }
}

/// The outcome's name and whether it is the refusal expected.
fn expect(result: std::io::Result<()>, errno: i32) -> (String, bool) {
    match result {
        Ok(()) => ("succeeded".to_string(), false),
        Err(e) => (errno_name(&e), e.raw_os_error() == Some(errno)),
    }
}

pub(crate) fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENETUNREACH) => "ENETUNREACH".into(),
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH".into(),
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EINPROGRESS) => "EINPROGRESS".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(n) => format!("errno {n}"),
        None if e.kind() == std::io::ErrorKind::TimedOut => "ETIMEDOUT".into(),
        None => format!("{:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_default_to_required() {
        assert_eq!(SandboxMode::default(), SandboxMode::Required);
        for m in [
            SandboxMode::Required,
            SandboxMode::BestEffort,
            SandboxMode::Off,
        ] {
            assert_eq!(SandboxMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(SandboxMode::parse("on"), None);
    }

    #[test]
    fn readable_roots_cover_the_directory_and_every_symlink_on_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v1 = dir.path().join("v1");
        std::fs::create_dir(&v1).expect("mkdir");
        std::fs::write(v1.join("server.pem"), "x").expect("write");
        let current = dir.path().join("tls").join("current");
        std::fs::create_dir(dir.path().join("tls")).expect("mkdir");
        std::os::unix::fs::symlink(&v1, &current).expect("symlink");
        let roots = readable_roots(&current.join("server.pem"));
        assert!(roots.contains(&current), "{roots:?}");
        assert!(roots.contains(&dir.path().join("tls")), "{roots:?}");
        let real_v1 = v1.canonicalize().expect("canonical");
        assert!(roots.contains(&real_v1), "{roots:?}");
    }

    /// A classic-BPF interpreter for the instructions the filter uses, over a
    /// `seccomp_data` of this architecture.
    fn run(program: &[sock_filter], nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&AUDIT_ARCH.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = &program[pc];
            pc += 1;
            match ins.code {
                BPF_LD_W_ABS => {
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
                }
                BPF_AND_K => acc &= ins.k,
                BPF_JA => pc += ins.k as usize,
                BPF_RET_K => return ins.k,
                code => {
                    let taken = match code {
                        BPF_JEQ_K => acc == ins.k,
                        BPF_JGE_K => acc >= ins.k,
                        BPF_JSET_K => acc & ins.k != 0,
                        _ => panic!("instruction {code:#x} not interpreted"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
        }
    }

    #[test]
    fn the_filter_refuses_every_connect_less_path_and_lets_the_rest_through() {
        let p = filter().expect("filter");
        let eval = |nr: i64, args: [u64; 6]| run(&p, nr, args);
        let fo = libc::MSG_FASTOPEN as u64;
        // TCP Fast Open: a connection carried by the first send, not by connect.
        assert_eq!(eval(libc::SYS_sendto, [3, 0, 1, fo, 0, 16]), RET_EPERM);
        assert_eq!(
            eval(libc::SYS_sendto, [3, 0, 1, fo | 0x40, 0, 16]),
            RET_EPERM
        );
        assert_eq!(eval(libc::SYS_sendmsg, [3, 0, fo, 0, 0, 0]), RET_EPERM);
        assert_eq!(eval(libc::SYS_sendmmsg, [3, 0, 2, fo, 0, 0]), RET_EPERM);
        assert_eq!(eval(libc::SYS_sendto, [3, 0, 1, 0x4000, 0, 0]), RET_ALLOW);
        assert_eq!(eval(libc::SYS_sendmsg, [3, 0, 0x4000, 0, 0, 0]), RET_ALLOW);
        let tcp = libc::IPPROTO_TCP as u64;
        for opt in TCP_DENIED_OPTIONS {
            assert_eq!(
                eval(libc::SYS_setsockopt, [3, tcp, u64::from(opt), 0, 4, 0]),
                RET_EPERM,
                "TCP option {opt}"
            );
        }
        let nodelay = libc::TCP_NODELAY as u64;
        assert_eq!(
            eval(libc::SYS_setsockopt, [3, tcp, nodelay, 0, 4, 0]),
            RET_ALLOW
        );
        let sol = libc::SOL_SOCKET as u64;
        assert_eq!(eval(libc::SYS_setsockopt, [3, sol, 23, 0, 4, 0]), RET_ALLOW);
        // Namespaces: every CLONE_NEW* flag of clone; clone3 falls back to clone.
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            let flags = flag as u64 | libc::SIGCHLD as u64;
            assert_eq!(
                eval(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]),
                RET_EPERM,
                "{flag:#x}"
            );
        }
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(eval(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(libc::SYS_clone3, [0, 88, 0, 0, 0, 0]), RET_ENOSYS);
        for call in [
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_listen,
            libc::SYS_io_uring_setup,
        ] {
            assert_eq!(eval(call, [0; 6]), RET_EPERM, "syscall {call}");
        }
        // Sockets: TCP only.
        let inet = libc::AF_INET as u64;
        let stream = libc::SOCK_STREAM as u64 | libc::SOCK_CLOEXEC as u64;
        assert_eq!(
            eval(libc::SYS_socket, [inet, stream, 0, 0, 0, 0]),
            RET_ALLOW
        );
        let dgram = libc::SOCK_DGRAM as u64;
        assert_eq!(eval(libc::SYS_socket, [inet, dgram, 0, 0, 0, 0]), RET_EPERM);
        // Ordinary calls pass.
        for call in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_connect,
            libc::SYS_accept4,
        ] {
            assert_eq!(eval(call, [0; 6]), RET_ALLOW, "syscall {call}");
        }
    }

    #[test]
    fn the_filter_has_bounded_jumps_and_ends_by_allowing() {
        let p = filter().expect("filter");
        assert!(p.len() < 200);
        // Every jump stays inside the program.
        for (i, ins) in p.iter().enumerate() {
            if ins.code == BPF_JA {
                assert!(i + 1 + (ins.k as usize) < p.len(), "jump at {i}");
            } else if ins.code & 0x07 == 0x05 {
                assert!(
                    i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(),
                    "jump at {i}"
                );
            }
        }
        let last = p.last().expect("non-empty");
        assert_eq!((last.code, last.k), (BPF_RET_K, RET_ALLOW));
        // execve is refused.
        let execve = u32::try_from(libc::SYS_execve).expect("nr");
        assert!(
            p.windows(2)
                .any(|w| w[0].code == BPF_JEQ_K && w[0].k == execve && w[1].k == RET_EPERM)
        );
    }
}
