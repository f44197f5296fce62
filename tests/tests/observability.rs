//! The Grafana and Guance dashboards and the Prometheus alerts query only metrics that exist:
//! every metric name in `deploy/grafana/oneway.json`, `deploy/guance/oneway.json` (written
//! `oneway:<field>`, as Guance's PromQL names what a DataKit `prom` input scraped) and
//! `deploy/prometheus/oneway-rules.yaml` appears in a `/metrics` scrape of a gateway that served
//! a few pushes; and both dashboards are well formed.

use std::collections::BTreeSet;
use std::time::Duration;

use oneway_tests::{FakeUpstream, TOKEN_1, TestGateway, gzip};

const DASHBOARD: &str = include_str!("../../deploy/grafana/oneway.json");
const GUANCE: &str = include_str!("../../deploy/guance/oneway.json");
const RULES: &str = include_str!("../../deploy/prometheus/oneway-rules.yaml");

/// Metric names in a query or a file (`oneway_…`, without the summary's suffixes).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = names_after(text, "oneway_", "oneway_");
    names.extend(names_after(text, "process_", "process_"));
    names
}

/// Metric names in Guance PromQL (`oneway:<field>`), as the gateway exports them.
fn guance_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = names_after(text, "oneway:", "oneway_");
    names.extend(names_after(text, "process:", "process_"));
    names
}

/// Every `prefix<name>` in `text`, as `as_prefix<name>`.
fn names_after(text: &str, prefix: &str, as_prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find(prefix) {
        let start = i + at + prefix.len();
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
                .count();
        names.insert(format!("{as_prefix}{}", &text[start..end]));
        i = end;
    }
    names
}

/// Sample names in an exposition-format scrape.
fn scraped(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

async fn scrape_after_traffic() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&format!(
            "[spool]\ndirectory = \"{}\"\n",
            dir.path().display()
        ))
        .start()
        .await;
    let write = format!("/v1/write/metric?token={TOKEN_1}");
    let lp = [("content-type", "application/line-protocol")];
    let gz = [
        ("content-type", "application/line-protocol"),
        ("content-encoding", "gzip"),
    ];
    let ok = gw
        .post("agent-1", &write, &gz, gzip(b"cpu,host=a v=1i 1\n"))
        .await
        .expect("push");
    assert_eq!(ok.status, 200, "{}", ok.body);
    // A malformed value, a corrupt gzip body, an unknown token.
    let invalid = gw
        .post("agent-1", &write, &lp, b"cpu,host=a v=tru 1\n".to_vec())
        .await
        .expect("push");
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    let corrupt = gw
        .post("agent-1", &write, &gz, b"\x1f\x8b\x08\x00garbage".to_vec())
        .await
        .expect("push");
    assert_eq!(corrupt.status, 400, "{}", corrupt.body);
    let unknown = gw
        .post(
            "agent-1",
            "/v1/write/metric?token=tkn_unknown0000000000000000000000000",
            &lp,
            b"cpu v=1i 1\n".to_vec(),
        )
        .await
        .expect("push");
    assert_eq!(unknown.status, 401);
    up.wait_delivered(1, Duration::from_secs(10)).await;
    // The spool's gauges are refreshed every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, text) = gw.admin("/metrics").await.expect("scrape");
    text
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_query_exists() {
    let scrape = scraped(&scrape_after_traffic().await);
    let exists = |name: &str| {
        scrape.contains(name)
            || ["_sum", "_count", "_bucket"]
                .iter()
                .any(|s| scrape.contains(&format!("{name}{s}")))
    };
    for (what, names) in [
        ("Grafana dashboard", metric_names(DASHBOARD)),
        ("Guance dashboard", guance_metric_names(GUANCE)),
        ("alert rules", metric_names(RULES)),
    ] {
        assert!(names.len() >= 10, "{what}: {names:?}");
        let missing: Vec<_> = names.iter().filter(|n| !exists(n)).collect();
        assert!(
            missing.is_empty(),
            "{what} queries metrics the gateway does not export: {missing:?}"
        );
    }
}

#[test]
fn the_dashboard_is_a_well_formed_grafana_dashboard() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    for key in ["uid", "title"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let variables: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let kind = p["type"].as_str().expect("type");
        assert!(
            ["row", "timeseries", "stat", "gauge", "table"].contains(&kind),
            "{kind}"
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(x + w <= 24 && g["h"].as_u64().is_some() && g["y"].as_u64().is_some());
        if kind == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(t["refId"].as_str().is_some());
            // The gateway's own metrics, or the process metrics of its instances.
            assert!(
                expr.contains("oneway_") || expr.contains("process_"),
                "{expr}"
            );
            for var in ["$instance", "$datasource"] {
                if expr.contains(var) {
                    assert!(variables.contains(&var[1..]), "{var} is not defined");
                }
            }
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}

/// The Guance dashboard follows Guance's published dashboard schema (GuanceCloud's
/// guance-front-tools `dashboard-schema.json`, `chart-schema.json`, `query-item-schema.json`,
/// the time settings): `main.type` "template", charts with `extend`, `name`, `pos` (integers on a
/// 24-column grid), a known `type`, a group that exists, and PromQL queries on the `dataflux`
/// data source with one-letter codes; variables are defined before use; and it shows the same
/// panels as the Grafana dashboard.
#[test]
fn the_guance_dashboard_is_well_formed_and_matches_the_grafana_one() {
    let d: serde_json::Value = serde_json::from_str(GUANCE).expect("valid JSON");
    assert!(d["title"].as_str().is_some_and(|s| !s.is_empty()));
    let main = &d["main"];
    assert_eq!(main["type"], "template");
    let groups: BTreeSet<&str> = main["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().expect("group name"))
        .collect();
    let variables: BTreeSet<&str> = main["vars"]
        .as_array()
        .expect("vars")
        .iter()
        .map(|v| {
            assert_eq!(v["datasource"], "dataflux");
            assert_eq!(v["type"], "PROMQL_QUERY");
            assert!(
                v["definition"]["value"]
                    .as_str()
                    .is_some_and(|q| q.contains("oneway:"))
            );
            v["code"].as_str().expect("variable code")
        })
        .collect();
    let charts = main["charts"].as_array().expect("charts");
    for c in charts {
        let name = c["name"].as_str().expect("chart name");
        for key in ["extend", "name", "pos", "type", "queries"] {
            assert!(!c[key].is_null(), "{name}: {key} is required");
        }
        let kind = c["type"].as_str().expect("type");
        assert!(["sequence", "singlestat"].contains(&kind), "{name}: {kind}");
        assert!(groups.contains(c["group"]["name"].as_str().expect("group")));
        let pos = &c["pos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| pos[k].as_u64().expect("integer pos"));
        assert!(x + w <= 24 && w > 0 && h > 0 && y < 1000, "{name}: {pos}");
        let settings = &c["extend"]["settings"];
        for key in ["timeInterval", "fixedTime"] {
            assert!(
                settings[key].is_string(),
                "{name}: settings.{key} is required"
            );
        }
        assert_eq!(settings["currentChartType"], kind);
        if kind == "sequence" {
            assert_eq!(settings["isTimeInterval"], true);
            assert_eq!(settings["xAxisShowType"], "time");
            assert_eq!(settings["mainMeasurementQueryCode"], "A");
        }
        let queries = c["queries"].as_array().expect("queries");
        assert!(!queries.is_empty(), "{name}");
        for (i, q) in queries.iter().enumerate() {
            assert_eq!(q["datasource"], "dataflux");
            assert_eq!(q["qtype"], "promql");
            assert_eq!(q["type"], kind);
            let code = q["query"]["code"].as_str().expect("code");
            assert_eq!(code.len(), 1);
            assert_eq!(code.as_bytes()[0], b'A' + i as u8);
            let promql = q["query"]["q"].as_str().expect("q");
            assert!(
                (promql.contains("oneway:") || promql.contains("process:"))
                    && !promql.contains("oneway_")
                    && !promql.contains("process_"),
                "{promql}"
            );
            assert!(!promql.contains('$'), "Grafana variable left in {promql}");
            let mut rest = promql;
            while let Some(at) = rest.find("#{") {
                let end = rest[at..].find('}').expect("closed variable");
                let var = &rest[at + 2..at + end];
                assert!(variables.contains(var), "#{{{var}}} is not defined");
                rest = &rest[at + end..];
            }
        }
    }
    // The same panels, in the same order, as the Grafana dashboard.
    let grafana: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let panels: Vec<&str> = grafana["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| p["title"].as_str().expect("title"))
        .collect();
    let names: Vec<&str> = charts
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, panels);
    assert_eq!(guance_metric_names(GUANCE), metric_names(DASHBOARD));
}

/// The process metrics every exporter has, with values that are the process's own, and the
/// build information.
#[tokio::test]
async fn process_metrics_and_build_info_are_in_a_scrape() {
    let text = scrape_after_traffic().await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in the scrape"))
    };
    assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(value("process_cpu_seconds_total") > 0.0);
    let rss = value("process_resident_memory_bytes");
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let vm_rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    // The same process (the gateway runs in this test): within what a scrape can move it.
    assert!(
        (rss - vm_rss_kib * 1024.0).abs() < 64.0 * 1024.0 * 1024.0,
        "{rss} against VmRSS {vm_rss_kib} KiB"
    );
    assert!(value("process_virtual_memory_bytes") >= rss);
    let fds = value("process_open_fds");
    let open_now = std::fs::read_dir("/proc/self/fd").expect("fds").count() as f64;
    assert!(
        fds > 3.0 && (fds - open_now).abs() < 64.0,
        "{fds} against {open_now}"
    );
    assert!(value("process_max_fds") >= fds);
    let started = value("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        started <= now && now - started < 3600.0,
        "started {started}, now {now}"
    );
    assert!(value("process_threads") >= 1.0);
    let info = text
        .lines()
        .find(|l| l.starts_with("oneway_build_info{"))
        .expect("oneway_build_info");
    assert!(
        info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(
        info.contains("commit=\"") && info.contains("sandbox=\"required\""),
        "{info}"
    );
    assert!(info.ends_with(" 1"), "{info}");
}
