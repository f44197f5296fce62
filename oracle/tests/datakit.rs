//! Nothing real DataKit sends is refused: every write of every `datakit-client` scenario,
//! protobuf and line protocol, is accepted by oneway's pipeline and read by Guance as oneway
//! counted it — except a body Guance itself cannot decode (DataKit can send two: a gzip cut
//! short near its 1 MiB cap, and line protocol with an empty array, which its encoder writes as
//! `k=`), which oneway refuses too.

use std::path::Path;

use oneway_oracle::datakit::{Recorded, Recorder, SCENARIOS, run};
use oneway_oracle::{Case, GuancePoint, compare, oneway};

const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";

/// Runs every scenario in both encodings at once; returns each scenario's name and writes.
fn capture(dir: &Path) -> Option<Vec<(String, Vec<Recorded>)>> {
    oneway_oracle::locate("datakit-client")?;
    let mut runs = Vec::new();
    for enc in ["v2", "v1"] {
        for (name, args) in SCENARIOS {
            let label = format!("{name}{} -enc {enc}", args.join(" "));
            let d = dir.join(label.replace([' ', '=', ';', ','], "_"));
            std::fs::create_dir_all(&d).expect("scratch dir");
            let status = d.join("status");
            std::fs::write(&status, "200\n").expect("status file");
            let recorder = Recorder::start(Some(status.clone())).expect("recorder starts");
            let url = format!("http://{}?token={TOKEN}", recorder.addr);
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.extend(["-enc".into(), enc.into()]);
            if *name == "failcache" {
                args.extend(["-status-file".into(), status.display().to_string()]);
            }
            if *name == "dialtest" {
                args.extend([
                    "-dial-url".into(),
                    format!("http://{}/v1/write/logging?token={TOKEN}", recorder.addr),
                ]);
            }
            let name = name.to_string();
            runs.push(std::thread::spawn(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let started = std::time::Instant::now();
                let out = run(&name, &refs, &url, &d).expect("located above");
                eprintln!(
                    "datakit-client {label}: {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                assert!(
                    out.status.success(),
                    "datakit-client {label}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (label, recorder.requests())
            }));
        }
    }
    Some(
        runs.into_iter()
            .map(|r| r.join().expect("scenario thread"))
            .collect(),
    )
}

fn case(r: &Recorded) -> Case {
    let query = r.target.split_once('?').map_or("", |(_, q)| q);
    Case {
        content_type: r.header("content-type").map(|v| v.as_bytes().to_vec()),
        content_encoding: r.header("content-encoding").map(|v| v.as_bytes().to_vec()),
        precision: query
            .split('&')
            .find_map(|p| p.strip_prefix("precision="))
            .map(str::to_string),
        body: r.body.clone(),
    }
}

#[test]
fn every_write_datakit_sends_is_accepted_and_read_by_guance_as_counted() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let Some(runs) = capture(dir.path()) else {
        return;
    };
    let Some(mut gp) = GuancePoint::start() else {
        return;
    };
    let mut writes = 0;
    let mut problems = Vec::new();
    for (label, requests) in &runs {
        let mut scenario_writes = 0;
        for r in requests
            .iter()
            .filter(|r| r.target.starts_with("/v1/write/"))
        {
            scenario_writes += 1;
            let c = case(r);
            // How Guance reads the body exactly as DataKit sent it.
            let guance_as_sent = gp.read_as_sent(&[&c]).remove(0);
            match oneway(&c) {
                Ok(f) => {
                    let out = &gp.read_all(&[(&f, c.body.as_slice())])[0];
                    if let Err(e) = compare(&f.points, out) {
                        problems.push(format!("{label} {}: {e}", r.target));
                    }
                    let x_points = r.header("x-points").and_then(|v| v.parse::<usize>().ok());
                    if x_points != Some(f.points.len()) {
                        problems.push(format!(
                            "{label} {}: X-Points {x_points:?}, oneway counted {}",
                            r.target,
                            f.points.len()
                        ));
                    }
                }
                Err(refusal) if guance_as_sent["ok"] == true => problems.push(format!(
                    "{label} {}: oneway refuses what Guance reads: {}",
                    r.target, refusal.message
                )),
                Err(_) => {}
            }
        }
        // `apis` makes no write; `gzoverflow` in line protocol neither (base64 makes every
        // point larger than DataKit's 1 MiB body, so its encoder skips them).
        let none_expected = label.starts_with("apis") || label == "gzoverflow -enc v1";
        assert!(
            scenario_writes > 0 || none_expected,
            "{label}: no write at all"
        );
        writes += scenario_writes;
    }
    assert!(writes > 60, "only {writes} writes captured");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
