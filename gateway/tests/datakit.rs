//! Real DataKit, end to end, with the real binaries: every scenario of DataKit's own upload
//! client (`../shared/oracles/datakit-client`), protobuf and line protocol, goes through
//! `oneway agent` (plain HTTP in, mTLS out) and `oneway run` to a recording upstream, without
//! and with a spool. Every request DataKit sends gets a 2xx, except those refused by a
//! documented policy (an API the token may not use) or that Guance itself cannot decode; every
//! accepted write arrives upstream byte for byte with the mapped token and the validated
//! `X-Points`. DataKit in `http_proxy` mode works too, and an `https://` DataWay URL sent
//! through the agent makes both DataKit's log and the agent's say what to change.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the test failing"
)]

#[expect(dead_code, reason = "each test binary uses a different part of it")]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Log, Running, free_addr, launch, launch_agent, prepare};
use oneway_gateway::tools::agent::CONNECT_HINT;
use oneway_gateway::tools::quickstart::{AGENT_TOKEN, WORKSPACE_TOKEN};
use oneway_oracle::datakit::{Exchange, Recorded, Recorder, SCENARIOS, Tee, run};
use oneway_oracle::{Case, GuancePoint};

/// Whether the quickstart token's default policy refuses this non-write path: every known
/// API but leader election (docs/configuration.md, `allow_apis`).
fn refused_by_policy(path: &str) -> bool {
    use oneway_gateway::config::{DEFAULT_ALLOWED_APIS, KNOWN_APIS};
    let api = KNOWN_APIS
        .iter()
        .find(|api| path == **api || path.starts_with(&format!("{api}/")));
    api.is_some_and(|api| !DEFAULT_ALLOWED_APIS.contains(api))
}

/// A gateway and an agent in front of a recording upstream.
struct Site {
    _gateway: Running,
    agent: SocketAddr,
    agent_log: Log,
    _agent: Running,
    upstream: Recorder,
    status: std::path::PathBuf,
}

fn site(dir: &Path, spool: bool) -> Site {
    std::fs::create_dir_all(dir).unwrap();
    let status = dir.join("upstream-status");
    std::fs::write(&status, "200\n").unwrap();
    let upstream = Recorder::start(Some(status.clone())).unwrap();
    let extra = if spool {
        "[spool]\ndirectory = \"spool\"\n"
    } else {
        ""
    };
    prepare(dir, &upstream.addr.to_string(), extra);
    let (gateway, public) = launch(dir);
    let listen = free_addr();
    let (agent, _, agent_log) = launch_agent(dir, listen, public, &[]);
    Site {
        _gateway: Running::new(gateway),
        agent: listen,
        agent_log,
        _agent: agent,
        upstream,
        status,
    }
}

/// One `datakit-client` run through its own tee in front of the agent.
struct Run {
    label: String,
    tee: Tee,
    dir: std::path::PathBuf,
}

fn start_run(
    site: &Site,
    dir: &Path,
    name: &str,
    args: &[&str],
    url: impl Fn(SocketAddr) -> String,
    proxy: bool,
) -> std::thread::JoinHandle<Run> {
    let tee = Tee::start(site.agent).unwrap();
    let label = format!("{name} {}", args.join(" "));
    let run_dir = dir.join(label.replace([' ', '=', ';', ',', '/', ':'], "_"));
    std::fs::create_dir_all(&run_dir).unwrap();
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if name == "failcache" {
        args.extend(["-status-file".into(), site.status.display().to_string()]);
    }
    if name == "dialtest" {
        args.extend([
            "-dial-url".into(),
            format!("http://{}/v1/write/logging?token={AGENT_TOKEN}", tee.addr),
        ]);
    }
    if proxy {
        args.extend(["-proxy".into(), format!("http://{}", tee.addr)]);
    }
    let url = url(tee.addr);
    let name = name.to_string();
    std::thread::spawn(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&name, &refs, &url, &run_dir).expect("checked before");
        assert!(
            out.status.success(),
            "datakit-client {label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Run {
            label,
            tee,
            dir: run_dir,
        }
    })
}

fn is_write(r: &Recorded) -> bool {
    let path = r.target.split('?').next().unwrap_or("");
    // Absolute-form (proxy) targets carry the scheme and host.
    let path = path.find("/v1/").map_or(path, |i| &path[i..]);
    path.starts_with("/v1/write/") && path != "/v1/write/rum/replay"
}

fn path(r: &Recorded) -> &str {
    let path = r.target.split('?').next().unwrap_or("");
    path.find("/v1/").map_or(path, |i| &path[i..])
}

/// Checks every exchange of `runs`; returns the problems found.
fn check(
    runs: &[Run],
    upstream: &Recorder,
    gp: &mut GuancePoint,
    failcache_503s_allowed: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let arrived = upstream.requests();
    for run in runs {
        let exchanges: Vec<Exchange> = run.tee.exchanges();
        if exchanges.is_empty() && !run.label.starts_with("gzoverflow -enc v1") {
            problems.push(format!("{}: DataKit sent nothing", run.label));
        }
        for e in &exchanges {
            let r = &e.request;
            let ok = (200..300).contains(&e.status);
            if !is_write(r) {
                let refused_by_policy = e.status == 403 && refused_by_policy(path(r));
                if !ok && !refused_by_policy {
                    problems.push(format!("{} {}: {}", run.label, path(r), e.status));
                }
                continue;
            }
            if !ok {
                // The upstream answers 503 on purpose; DataKit keeps the batch and re-posts it
                // (the re-post that gets a 2xx is checked like any other write).
                let failing_upstream =
                    failcache_503s_allowed && run.label.starts_with("failcache") && e.status == 503;
                // A body Guance itself cannot decode may be refused (truncated gzip, `k=`).
                let case = Case {
                    content_type: r.header("content-type").map(|v| v.as_bytes().to_vec()),
                    content_encoding: r.header("content-encoding").map(|v| v.as_bytes().to_vec()),
                    precision: None,
                    body: r.body.clone(),
                };
                let guance = gp.read_as_sent(&[&case]).remove(0);
                let unreadable = e.status == 400 && guance["ok"] != true;
                if !failing_upstream && !unreadable {
                    problems.push(format!(
                        "{} {}: {} {} (Guance reads it: {})",
                        run.label,
                        path(r),
                        e.status,
                        e.reason,
                        guance["ok"]
                    ));
                }
                continue;
            }
            let pkg = r.header("x-pkg-id");
            let Some(up) = arrived.iter().find(|a| a.header("x-pkg-id") == pkg) else {
                problems.push(format!("{} {}: {pkg:?} never arrived", run.label, path(r)));
                continue;
            };
            if up.body != r.body {
                problems.push(format!("{} {pkg:?}: body changed", run.label));
            }
            if !up.target.contains(&format!("token={WORKSPACE_TOKEN}"))
                || up.target.contains(AGENT_TOKEN)
            {
                problems.push(format!(
                    "{} {pkg:?}: token not mapped: {}",
                    run.label, up.target
                ));
            }
            // The quickstart token keeps the default routing policy: DataKit's sinker key
            // never reaches the upstream.
            if let Some(tags) = up.header("x-global-tags") {
                problems.push(format!(
                    "{} {pkg:?}: X-Global-Tags {tags:?} forwarded under global_tags = \"drop\"",
                    run.label
                ));
            }
            if up.header("x-points") != r.header("x-points") {
                problems.push(format!(
                    "{} {pkg:?}: X-Points {:?} forwarded as {:?}",
                    run.label,
                    r.header("x-points"),
                    up.header("x-points")
                ));
            }
        }
    }
    problems
}

/// Waits until every accepted write has arrived upstream (a spool replays them later).
fn wait_arrivals(runs: &[Run], upstream: &Recorder) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived = upstream.requests();
        let missing = runs.iter().flat_map(|r| r.tee.exchanges()).any(|e| {
            (200..300).contains(&e.status)
                && is_write(&e.request)
                && !arrived
                    .iter()
                    .any(|a| a.header("x-pkg-id") == e.request.header("x-pkg-id"))
        });
        if !missing || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn every_scenario(spool: bool) {
    if oneway_oracle::locate("datakit-client").is_none() {
        return;
    }
    let Some(mut gp) = GuancePoint::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // The fail-cache scenario turns the upstream off and on: each run gets a site of its own.
    let main = site(&root.path().join("main"), spool);
    let failing = [
        site(&root.path().join("failcache-v2"), spool),
        site(&root.path().join("failcache-v1"), spool),
    ];
    let direct = |tee: SocketAddr| format!("http://{tee}?token={AGENT_TOKEN}");
    let mut handles = Vec::new();
    let mut fail_handles = Vec::new();
    for (enc, failing) in ["v2", "v1"].into_iter().zip(&failing) {
        for (name, args) in SCENARIOS {
            let mut args = args.to_vec();
            args.extend(["-enc", enc]);
            if *name == "failcache" {
                fail_handles.push(start_run(failing, root.path(), name, &args, direct, false));
            } else {
                handles.push(start_run(&main, root.path(), name, &args, direct, false));
            }
        }
    }
    // DataKit's http_proxy mode: the DataWay URL names the gateway, the agent is the proxy.
    handles.push(start_run(
        &main,
        root.path(),
        "basic",
        &["-enc", "v2", "-hostname", "proxied"],
        |_| format!("http://localhost:443?token={AGENT_TOKEN}"),
        true,
    ));
    let main_runs: Vec<Run> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let fail_runs: Vec<Run> = fail_handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    wait_arrivals(&main_runs, &main.upstream);
    let mut problems = check(&main_runs, &main.upstream, &mut gp, false);
    for (run, site) in fail_runs.iter().zip(&failing) {
        let run = std::slice::from_ref(run);
        wait_arrivals(run, &site.upstream);
        problems.extend(check(run, &site.upstream, &mut gp, !spool));
    }
    let writes: usize = main_runs
        .iter()
        .chain(&fail_runs)
        .flat_map(|r| r.tee.exchanges())
        .filter(|e| is_write(&e.request))
        .count();
    assert!(writes > 60, "only {writes} writes went through");
    assert!(
        main_runs
            .iter()
            .any(|r| r.label.contains("proxied") && !r.tee.exchanges().is_empty()),
        "the proxy-mode run sent nothing"
    );
    assert!(
        main_runs
            .iter()
            .filter(|r| r.label.starts_with("sinker"))
            .flat_map(|r| r.tee.exchanges())
            .any(|e| e.request.header("x-global-tags").is_some()),
        "the sinker runs sent no X-Global-Tags: the routing check proved nothing"
    );
    if !spool {
        // Without a spool the 503s reach DataKit, which keeps the batches and re-posts them.
        for site in &failing {
            let resent = site
                .upstream
                .requests()
                .iter()
                .any(|r| r.header("x-fail-cache-retry") == Some("1"));
            assert!(resent, "DataKit's fail-cache never re-posted");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_datakit_scenario_passes_through_the_agent_and_the_gateway() {
    every_scenario(false);
}

#[test]
fn every_datakit_scenario_passes_through_the_agent_and_a_spooling_gateway() {
    every_scenario(true);
}

#[test]
fn an_https_dataway_url_through_the_agent_says_what_to_change() {
    if oneway_oracle::locate("datakit-client").is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let s = site(&root.path().join("site"), false);
    // DataKit configured with https:// and the agent as http_proxy asks for a CONNECT tunnel.
    let run = start_run(
        &s,
        root.path(),
        "basic",
        &["-enc", "v2"],
        |_| format!("https://localhost:443?token={AGENT_TOKEN}"),
        true,
    )
    .join()
    .unwrap();
    let exchanges = run.tee.exchanges();
    assert!(
        exchanges
            .iter()
            .all(|e| e.request.method == "CONNECT" && e.status == 405),
        "{exchanges:?}"
    );
    assert!(!exchanges.is_empty(), "DataKit asked for no tunnel");
    let datakit_log = std::fs::read_to_string(run.dir.join("datakit.log")).unwrap();
    assert!(
        datakit_log.contains(CONNECT_HINT),
        "DataKit's log does not say what to change"
    );
    let agent_log = s.agent_log.lock().unwrap().join("\n");
    assert!(
        agent_log.contains("its DataWay URL is https://"),
        "the agent's log does not say what to change: {agent_log}"
    );
    assert!(s.upstream.requests().is_empty(), "nothing went through");
}
