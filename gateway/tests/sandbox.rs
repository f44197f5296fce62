//! Rows 23 and 24 of the test matrix, with the real binary: once `oneway run` is bound it
//! enters the Landlock + seccomp sandbox (the default), and from inside the gateway process a
//! TCP connect to a port that is not an upstream's fails with `EACCES`, a TCP Fast Open send,
//! a new network namespace, UDP, netlink, packet, raw and Unix sockets and `execve` with
//! `EPERM`, a name lookup fails, while pushes still reach the upstream and reloads still read
//! the certificate directory. The `--split` forwarder and `oneway agent` are probed alike.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the test failing"
)]

#[expect(dead_code, reason = "each test binary uses a different part of it")]
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    ONEWAY, Running, agent_command, audit, bystander, curl_push, free_addr, launch_agent,
    launch_logged, launch_with, logged_json, prepare, probe, start_event, threaded_upstream,
    tls_closed_within, tls_connect, tls_push,
};
use serde_json::Value;

/// Puts `sandbox = …` at the top of the prepared config (a top-level key).
fn set_sandbox(dir: &std::path::Path, mode: &str) {
    let path = dir.join("oneway.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("sandbox = \"{mode}\"\n{config}")).unwrap();
}

fn metrics(admin: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn outcome<'a>(start: &'a Value, name: &str) -> &'a Value {
    probe(&start["sandbox"]["probes"], name)
}

/// The paths to a connection that `connect` never sees are refused by the kernel in a
/// sandbox report: a TCP Fast Open send to the bystander `target` and to the process's own
/// `own_port` (`EPERM` from seccomp, before any SYN), and a new network namespace.
fn assert_connect_less_paths_refused(report: &Value, target: std::net::SocketAddr, own_port: u16) {
    let probes = &report["probes"];
    for name in [
        format!("tcp_fast_open {target}"),
        format!("tcp_fast_open 127.0.0.1:{own_port}"),
        "unshare CLONE_NEWNET".to_string(),
    ] {
        let p = probe(probes, &name);
        assert_eq!(p["outcome"], "EPERM", "{p}");
        assert_eq!(p["contained"], true, "{p}");
    }
}

/// SIGTERM, then the exit status.
fn stop(mut child: Running) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap()
}

#[test]
fn row23_24_the_sandboxed_gateway_refuses_escapes_and_still_serves_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    prepare(dir.path(), &up.addr, "");
    let (bystander, target) = bystander();
    let (child, public, admin) = launch_with(dir.path(), &[format!("--probe-connect={target}")]);

    let start = start_event(dir.path());
    let sandbox = &start["sandbox"];
    assert_eq!(sandbox["mode"], "required", "{start}");
    assert_eq!(sandbox["state"], "enforced", "{start}");
    assert_eq!(sandbox["landlock"], "full");
    assert_eq!(sandbox["seccomp"], true);
    assert_eq!(sandbox["no_new_privs"], true);
    let upstream_port: u16 = up.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(sandbox["connect_ports"], serde_json::json!([upstream_port]));
    assert_eq!(
        outcome(&start, &format!("connect {target}"))["outcome"],
        "EACCES"
    );
    for probe in [
        "udp_socket",
        "netlink_socket",
        "packet_socket",
        "raw_socket",
        "unix_socket",
        "execve",
    ] {
        assert_eq!(outcome(&start, probe)["outcome"], "EPERM", "{probe}");
    }
    let dns = outcome(&start, "dns_lookup localhost");
    assert_eq!(dns["contained"], true, "{dns}");
    assert_eq!(outcome(&start, "read_dir /")["outcome"], "EACCES");
    assert_connect_less_paths_refused(&start["sandbox"], target, admin.port());
    assert!(
        bystander.accept().is_err(),
        "the refused connect reached the bystander"
    );

    let m = metrics(admin);
    for layer in ["landlock", "seccomp", "no_new_privs", "self_test"] {
        let line = format!("oneway_sandbox_enforced{{layer=\"{layer}\"}} 1");
        assert!(m.contains(&line), "{line} missing");
    }
    // The process metrics are read inside the sandbox too (through files opened before it).
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            m.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing in the sandbox"
        );
    }
    assert!(
        m.contains("oneway_build_info{"),
        "oneway_build_info missing"
    );

    // Pushes flow to the upstream from inside the sandbox.
    assert_eq!(curl_push(dir.path(), public, "cpu,host=a v=1i 1"), "200");
    assert_eq!(
        up.accepted.lock().unwrap().as_slice(),
        [b"cpu,host=a v=1i 1".to_vec()]
    );

    // A reload still reads the certificate directory: revoke agent-1 and the file watch
    // picks up the new CRL; agent-1 can no longer connect.
    oneway_gateway::tools::certs::revoke(dir.path(), &["agent-1"], 2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !audit(dir.path())
        .iter()
        .any(|e| e["event"] == "reload" && e["outcome"] == "ok")
    {
        assert!(
            Instant::now() < deadline,
            "no reload: {:?}",
            audit(dir.path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(curl_push(dir.path(), public, "cpu,host=b v=2i 2"), "200");
    assert_eq!(up.accepted.lock().unwrap().len(), 1);
    stop(child);
}

#[test]
fn required_sandbox_refuses_to_start_when_a_probe_is_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    prepare(dir.path(), &up.addr, "");
    // The upstream's own port is allowed by Landlock: a connect there succeeds, so the
    // self-test reports an escape and the required sandbox fails closed.
    let out = Command::new(ONEWAY)
        .args(["run", "--config"])
        .arg(dir.path().join("oneway.toml"))
        .arg(format!("--probe-connect={}", up.addr))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("connect {} was not refused", up.addr)),
        "{stderr}"
    );
}

/// A reset is a host answering: a probe to an allowed port with nothing listening gets
/// `ECONNREFUSED`, which is not containment, so the required sandbox does not start.
#[test]
fn a_probe_answered_by_a_reset_is_not_contained() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_addr();
    prepare(dir.path(), &dead.to_string(), "");
    let out = Command::new(ONEWAY)
        .args(["run", "--config"])
        .arg(dir.path().join("oneway.toml"))
        .arg(format!("--probe-connect={dead}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("connect {dead} was not refused (ECONNREFUSED)")),
        "{stderr}"
    );

    // Best effort runs, and says so: the probe is reported as not contained.
    set_sandbox(dir.path(), "best-effort");
    let (child, _, admin) = launch_with(dir.path(), &[format!("--probe-connect={dead}")]);
    let start = start_event(dir.path());
    let p = outcome(&start, &format!("connect {dead}"));
    assert_eq!(p["outcome"], "ECONNREFUSED", "{p}");
    assert_eq!(p["contained"], false, "{p}");
    assert!(metrics(admin).contains("oneway_sandbox_enforced{layer=\"self_test\"} 0"));
    stop(child);
}

#[test]
fn sandbox_off_is_reported_as_off() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    prepare(dir.path(), &up.addr, "");
    set_sandbox(dir.path(), "off");
    let (child, public, admin) = launch_with(dir.path(), &[]);
    let start = start_event(dir.path());
    assert_eq!(start["sandbox"]["state"], "off", "{start}");
    assert!(
        metrics(admin).contains("oneway_sandbox_enforced{layer=\"landlock\"} 0"),
        "the metric must say the sandbox is off"
    );
    assert_eq!(curl_push(dir.path(), public, "cpu,host=a v=1i 1"), "200");
    stop(child);
}

#[test]
fn an_unknown_sandbox_mode_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), "127.0.0.1:9", "");
    set_sandbox(dir.path(), "on");
    let out = Command::new(ONEWAY)
        .args(["check-config", "--config"])
        .arg(dir.path().join("oneway.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sandbox"), "{stderr}");
}

/// The split's processes: the forwarder (`child`) and its edge.
fn edge_of(forwarder: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{forwarder}/task/{forwarder}/children")).unwrap();
    let edges: Vec<u32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(edges.len(), 1, "one edge: {edges:?}");
    edges[0]
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn split_edge_has_no_network_pushes_flow_through_the_forwarder_and_sigterm_drains_both() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    prepare(dir.path(), &up.addr, "");
    let (bystander, target) = bystander();
    let (mut child, public, admin, log) = launch_logged(
        &[],
        dir.path(),
        &["--split".to_string(), format!("--probe-connect={target}")],
    );
    let edge = edge_of(child.id());

    let start = start_event(dir.path());
    let sandbox = &start["sandbox"];
    assert_eq!(sandbox["state"], "enforced", "{start}");
    // The edge connects nowhere at all: no TCP port is allowed, and its namespace is empty.
    assert_eq!(sandbox["connect_ports"], serde_json::json!([]));
    assert_eq!(sandbox["netns"]["interfaces"], serde_json::json!(["lo"]));
    let routed = &sandbox["netns"]["probes"][0];
    assert_eq!(routed["probe"], format!("connect {target}"));
    assert_eq!(routed["outcome"], "ENETUNREACH", "{routed}");
    assert_eq!(
        outcome(&start, &format!("connect {target}"))["outcome"],
        "EACCES"
    );
    assert_eq!(outcome(&start, "udp_socket")["outcome"], "EPERM");
    assert_connect_less_paths_refused(sandbox, target, admin.port());
    // The forwarder, the process with a route out, runs the same probes in its own sandbox:
    // TCP only to the upstream's port.
    let forwarder = logged_json(&log, "oneway forwarder: sandbox ");
    assert_eq!(forwarder["state"], "enforced", "{forwarder}");
    let upstream_port: u16 = up.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        forwarder["connect_ports"],
        serde_json::json!([upstream_port])
    );
    assert_eq!(
        probe(&forwarder["probes"], &format!("connect {target}"))["outcome"],
        "EACCES"
    );
    assert_connect_less_paths_refused(&forwarder, target, admin.port());
    assert!(bystander.accept().is_err());

    // Pushes reach the upstream through the forwarder, byte for byte; the admin port is the
    // edge's.
    for i in 0..3 {
        let body = format!("cpu,host=a v={i}i {i}");
        assert_eq!(curl_push(dir.path(), public, &body), "200");
    }
    let got = up.accepted.lock().unwrap().clone();
    assert_eq!(
        got,
        (0..3)
            .map(|i| format!("cpu,host=a v={i}i {i}").into_bytes())
            .collect::<Vec<_>>()
    );
    assert!(metrics(admin).contains("oneway_sandbox_enforced{layer=\"landlock\"} 1"));

    // SIGTERM to the forwarder drains the edge; both exit 0.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    assert!(!running(edge), "the edge outlived its forwarder");
}

#[test]
fn split_edge_stops_when_its_forwarder_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    prepare(dir.path(), &up.addr, "");
    let (mut child, public, _) = launch_with(dir.path(), &["--split".to_string()]);
    let edge = edge_of(child.id());
    assert_eq!(curl_push(dir.path(), public, "cpu,host=a v=1i 1"), "200");
    child.kill().unwrap();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    while running(edge) {
        assert!(
            Instant::now() < deadline,
            "the edge outlived a killed forwarder"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn split_edge_spools_while_the_upstream_is_down_and_replays_through_the_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    // An upstream address with nothing listening yet.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    prepare(dir.path(), &addr, "[spool]\ndirectory = \"spool\"\n");
    let (mut child, public, _) = launch_with(dir.path(), &["--split".to_string()]);
    // The forwarder cannot connect: it says so, and the edge spools (202, fsynced).
    assert_eq!(curl_push(dir.path(), public, "cpu,host=a v=1i 1"), "202");
    assert_eq!(curl_push(dir.path(), public, "cpu,host=a v=2i 2"), "202");
    let up = common::threaded_upstream_on(&addr, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(30);
    while up.accepted.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the spool was not replayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        up.accepted.lock().unwrap().as_slice(),
        [b"cpu,host=a v=1i 1".to_vec(), b"cpu,host=a v=2i 2".to_vec()]
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

/// DataKit's push to the agent: plain HTTP, `?token=`, no certificate. Returns the status.
fn datakit_push(agent: std::net::SocketAddr, line: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args([
            "-H",
            "Content-Type: application/line-protocol",
            "--data-binary",
            line,
        ])
        .arg(format!(
            "http://{agent}/v1/write/metric?token={}",
            oneway_gateway::tools::quickstart::AGENT_TOKEN
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent runs in the customer's network and parses what comes back from the Guance side:
/// in its own sandbox, a connect anywhere but the gateway's port is refused by the kernel
/// (`EACCES`), other sockets and `execve` with `EPERM`, files with `EACCES`, while DataKit's
/// pushes still flow through it; and with `--sandbox required` it does not start if an attempt
/// is not refused.
#[test]
fn the_sandboxed_agent_reaches_only_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    prepare(dir.path(), &up.addr, "");
    let (_gateway, public, _) = launch_with(dir.path(), &[]);
    let (bystander, target) = bystander();
    let listen = free_addr();
    let (agent, report, _) = launch_agent(
        dir.path(),
        listen,
        public,
        &[format!("--probe-connect={target}")],
    );
    assert_eq!(report["mode"], "required", "{report}");
    assert_eq!(report["state"], "enforced", "{report}");
    assert_eq!(report["connect_ports"], serde_json::json!([public.port()]));
    let outcome = |name: &str| probe(&report["probes"], name)["outcome"].clone();
    assert_eq!(outcome(&format!("connect {target}")), "EACCES");
    for name in ["udp_socket", "raw_socket", "unix_socket", "execve"] {
        assert_eq!(outcome(name), "EPERM", "{name}");
    }
    assert_eq!(outcome("read_dir /"), "EACCES");
    assert_connect_less_paths_refused(&report, target, listen.port());
    assert!(
        bystander.accept().is_err(),
        "the refused connect reached the bystander"
    );

    assert_eq!(datakit_push(listen, "cpu,host=a v=1i 1"), "200");
    assert_eq!(
        up.accepted.lock().unwrap().as_slice(),
        [b"cpu,host=a v=1i 1".to_vec()]
    );
    stop(agent);

    // The gateway's own port is allowed: a probe there connects, so the required sandbox
    // reports an escape and the agent does not start.
    let out = agent_command(dir.path(), free_addr(), public)
        .arg(format!("--probe-connect={public}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("connect {public} was not refused")),
        "{stderr}"
    );
}

/// Waits for the next `reload` audit event after the first `seen` ones; returns it.
fn next_reload(dir: &std::path::Path, seen: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reloads: Vec<Value> = audit(dir)
            .into_iter()
            .filter(|e| e["event"] == "reload")
            .collect();
        if reloads.len() > seen {
            return reloads[seen].clone();
        }
        assert!(Instant::now() < deadline, "no reload after {seen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 15's reload case, with the real binary in its required sandbox and an upstream given
/// by name: reloads never resolve it (inside the sandbox they could not), so the file watch
/// still applies a removed token while refusing the upstream change in the same file, and a
/// CRL that revokes the agent closes its open keep-alive connection and refuses its next
/// handshake.
#[test]
fn reloads_in_the_sandbox_with_a_named_upstream_revoke_and_refuse_restart_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    let port = up.addr.rsplit(':').next().unwrap().to_string();
    let second = "tkn_secondagenttoken0000000000000000";
    prepare(
        dir.path(),
        &format!("localhost:{port}"),
        &format!(
            "[reload]\nwatch_interval_ms = 200\n\n[[tokens]]\nname = \"second\"\ntoken = \"{second}\"\nidentities = [\"dns:agent-1\"]\n"
        ),
    );
    let path = dir.path().join("oneway.toml");
    let config = std::fs::read_to_string(&path).unwrap().replacen(
        "response_timeout_ms = 10000",
        "response_timeout_ms = 10000\nallowed_cidrs = [\"127.0.0.0/8\", \"::1/128\"]",
        1,
    );
    std::fs::write(&path, &config).unwrap();
    let (child, public, admin) = launch_with(dir.path(), &[]);
    let start = start_event(dir.path());
    assert_eq!(start["sandbox"]["state"], "enforced", "{start}");
    let first = oneway_gateway::tools::quickstart::AGENT_TOKEN;

    let mut open = tls_connect(dir.path(), public).unwrap();
    assert_eq!(tls_push(&mut open, second, "cpu v=1i 1").unwrap(), 200);
    assert_eq!(tls_push(&mut open, first, "cpu v=2i 2").unwrap(), 200);

    // One edit: the second token removed, and the upstream moved (a restart-only change).
    let at = config.rfind("[[tokens]]").unwrap();
    let edited = config[..at].replacen(
        &format!("localhost:{port}"),
        &format!("localhost:{}", free_addr().port()),
        1,
    );
    std::fs::write(&path, edited).unwrap();
    let reload = next_reload(dir.path(), 0);
    assert_eq!(reload["outcome"], "restart_needed", "{reload}");
    assert_eq!(
        reload["restart_needed"],
        serde_json::json!(["upstream.addresses"])
    );
    assert_eq!(tls_push(&mut open, second, "cpu v=3i 3").unwrap(), 401);
    let mut early = open;
    let mut open = tls_connect(dir.path(), public).unwrap();
    assert_eq!(tls_push(&mut open, first, "cpu v=4i 4").unwrap(), 200);
    assert_eq!(
        up.accepted.lock().unwrap().len(),
        3,
        "pushes still reach the running upstream"
    );
    let m = metrics(admin);
    assert!(
        m.contains("oneway_reload_restart_needed_total{key=\"upstream.addresses\"} 1"),
        "{m}"
    );

    // A CRL revoking agent-1: its open keep-alive connection is closed at the reload, and
    // a new handshake fails.
    oneway_gateway::tools::certs::revoke(dir.path(), &["agent-1"], 2).unwrap();
    // (The file still names another upstream: still reported, the CRL applied.)
    let reload = next_reload(dir.path(), 1);
    assert_eq!(reload["outcome"], "restart_needed", "{reload}");
    assert!(
        reload["applied"]
            .as_array()
            .unwrap()
            .contains(&"client_ca_and_crls".into()),
        "{reload}"
    );
    assert!(
        tls_closed_within(&mut open, Duration::from_secs(5)),
        "the revoked agent's open connection stayed open"
    );
    assert!(tls_closed_within(&mut early, Duration::from_secs(5)));
    let refused =
        tls_connect(dir.path(), public).and_then(|mut tls| tls_push(&mut tls, first, "cpu v=5i 5"));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(up.accepted.lock().unwrap().len(), 3);
    // One or two: the connection that got the 401 may have been kept alive.
    let m = metrics(admin);
    assert!(
        m.lines().any(|l| [1, 2]
            .map(|n| format!("oneway_listener_connections_closed_total{{reason=\"revoked\"}} {n}"))
            .contains(&l.to_string())),
        "{m}"
    );
    stop(child);
}
