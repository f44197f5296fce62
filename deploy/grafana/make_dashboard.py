#!/usr/bin/env python3
"""Writes the dashboards over oneway's metrics (run after editing this):

- oneway.json, for Grafana: every query uses the `datasource` (Prometheus) and `instance`
  variables;
- ../guance/oneway.json, the same panels for Guance (its dashboard import format: `main.charts`
  with `sequence` and `singlestat` charts and PromQL queries), for the metrics a DataKit `prom`
  input scrapes from the gateway's admin port. DataKit splits a Prometheus name at its first
  underscore into measurement and field, and Guance's PromQL names a metric
  `measurement:field`, so `oneway_http_requests_total` is queried as `oneway:http_requests_total`;
  dashboard variables are written `#{instance}`.

The metrics each panel queries are checked against a real /metrics scrape by
tests/tests/observability.rs, which also checks both files' structure.
"""

import json
import pathlib
import re

SEL = '{instance=~"$instance"}'


def sel(extra=""):
    inner = f'instance=~"$instance"{"," + extra if extra else ""}'
    return "{" + inner + "}"


WRITE = sel('route="write"')
QUANTILES = sel('quantile=~"0.5|0.9|0.99"')
DECODED = sel('stage="decoded"')
AGENT = sel('agent!=""')
FAILING = sel('agent!="",status=~"4xx|5xx"')

ROWS = [
    ("Traffic", [
        ("Write requests/s by category", "timeseries", "reqps",
         [(f"sum by (category) (rate(oneway_http_requests_total{WRITE}[5m]))", "{{category}}")]),
        ("Points/s by category", "timeseries", "short",
         [(f"sum by (category) (rate(oneway_ingest_points_total{SEL}[5m]))", "{{category}}")]),
        ("Bytes/s, compressed and decoded", "timeseries", "Bps",
         [(f"sum by (stage) (rate(oneway_ingest_bytes_total{SEL}[5m]))", "{{stage}}")]),
        ("Answers by status", "timeseries", "reqps",
         [(f"sum by (status) (rate(oneway_http_requests_total{SEL}[5m]))", "{{status}}")]),
        ("Batches forwarded or spooled", "timeseries", "short",
         [(f"sum by (outcome) (rate(oneway_ingest_batches_total{SEL}[5m]))", "{{outcome}}")]),
    ]),
    ("Agents (the agent label is the token's configured name)", [
        ("Top agents by points/s", "timeseries", "short",
         [(f"topk(10, sum by (agent) (rate(oneway_ingest_points_total{SEL}[5m])))", "{{agent}}")]),
        ("Top agents by decoded bytes/s", "timeseries", "Bps",
         [(f"topk(10, sum by (agent) (rate(oneway_ingest_bytes_total{DECODED}[5m])))", "{{agent}}")]),
        ("Agents throttled", "timeseries", "short",
         [(f"sum by (agent) (rate(oneway_limit_throttled_total{AGENT}[5m])) > 0", "{{agent}}")]),
        ("Agents failing (4xx and 5xx answers)", "timeseries", "reqps",
         [(f"sum by (agent) (rate(oneway_http_requests_total{FAILING}[5m])) > 0", "{{agent}}")]),
        ("Minutes since each agent last pushed", "timeseries", "short",
         [(f"(time() - max by (agent) (oneway_agent_last_push_timestamp_seconds{SEL})) / 60 and on (agent) max by (agent) (oneway_agent_configured{SEL}) == 1", "{{agent}}")]),
    ]),
    ("Rejections and authentication", [
        ("Validation failures by rule", "timeseries", "short",
         [(f"sum by (rule) (rate(oneway_validation_failures_total{SEL}[5m]))", "{{rule}}")]),
        ("Decode failures by kind", "timeseries", "short",
         [(f"sum by (kind) (rate(oneway_decode_failures_total{SEL}[5m]))", "{{kind}}")]),
        ("Token failures by kind", "timeseries", "short",
         [(f"sum by (kind) (rate(oneway_auth_failures_total{SEL}[5m]))", "{{kind}}")]),
        ("TLS handshake failures by kind", "timeseries", "short",
         [(f"sum by (kind) (rate(oneway_tls_handshake_failures_total{SEL}[5m]))", "{{kind}}")]),
    ]),
    ("Limits and overload", [
        ("Rate-limited requests by limit", "timeseries", "short",
         [(f"sum by (kind) (rate(oneway_limit_throttled_total{SEL}[5m]))", "{{kind}}")]),
        ("Overload refusals", "timeseries", "short",
         [(f"sum by (reason) (rate(oneway_overload_refused_total{SEL}[5m]))", "{{reason}}"),
          (f"sum by (reason) (rate(oneway_listener_connections_refused_total{SEL}[5m]))", "connection {{reason}}")]),
        ("In flight and memory", "timeseries", "short",
         [(f"sum(oneway_http_in_flight_requests{SEL})", "requests in flight"),
          (f"sum(oneway_overload_memory_reserved_bytes{SEL})", "bytes reserved")]),
        ("Tokens tracked by the limiter", "timeseries", "short",
         [(f"sum(oneway_limit_tracked_tokens{SEL})", "tokens")]),
    ]),
    ("Upstream", [
        ("Upstream requests by outcome", "timeseries", "reqps",
         [(f"sum by (outcome) (rate(oneway_upstream_requests_total{SEL}[5m]))", "{{outcome}}")]),
        ("Upstream latency", "timeseries", "s",
         [(f"max by (quantile) (oneway_upstream_duration_seconds{QUANTILES})", "p{{quantile}}")]),
    ]),
    ("Spool", [
        ("Spool use", "gauge", "percentunit",
         [(f"max(oneway_spool_bytes{SEL} / oneway_spool_max_bytes{SEL})", "used")]),
        ("Spool depth", "timeseries", "short",
         [(f"sum(oneway_spool_records{SEL})", "records"),
          (f"sum(oneway_spool_bytes{SEL})", "bytes")]),
        ("Oldest undelivered record", "timeseries", "s",
         [(f"max(oneway_spool_oldest_record_age_seconds{SEL})", "age")]),
        ("Spool refusals, dead letters, quarantine", "timeseries", "short",
         [(f"sum by (reason) (rate(oneway_spool_refused_total{SEL}[5m]))", "refused {{reason}}"),
          (f"sum(increase(oneway_spool_dead_letters_total{SEL}[1h]))", "dead letters / h"),
          (f"sum(increase(oneway_spool_quarantined_segments_total{SEL}[1h]))", "quarantined / h")]),
    ]),
    ("Process", [
        ("CPU used (cores)", "timeseries", "short",
         [(f"rate(process_cpu_seconds_total{SEL}[5m])", "{{instance}}")]),
        ("Resident memory", "timeseries", "bytes",
         [(f"process_resident_memory_bytes{SEL}", "{{instance}}")]),
        ("Open file descriptors, of the limit", "timeseries", "percentunit",
         [(f"process_open_fds{SEL} / process_max_fds{SEL}", "{{instance}}")]),
        ("Build", "stat", "short",
         [(f"max by (version, commit, sandbox, crypto) (oneway_build_info{SEL})", "{{version}} {{commit}} sandbox={{sandbox}} crypto={{crypto}}")]),
    ]),
    ("Security posture", [
        ("Certificate expiry", "stat", "d",
         [(f"min by (cert) (oneway_tls_certificate_expiry_seconds{SEL}) / 86400", "{{cert}}")]),
        ("Sandbox layers in force", "stat", "short",
         [(f"min by (layer) (oneway_sandbox_enforced{SEL})", "{{layer}}")]),
        ("Reloads by outcome", "timeseries", "short",
         [(f"sum by (outcome) (increase(oneway_reload_total{SEL}[1h]))", "{{outcome}}")]),
        ("Spool failed (process exiting)", "stat", "short",
         [(f"max(oneway_spool_failed{SEL})", "failed")]),
        ("Audit lines by outcome", "timeseries", "short",
         [(f"sum by (outcome) (increase(oneway_audit_lines_total{SEL}[1h]))", "{{outcome}}")]),
    ]),
]


def panel(pid, title, kind, unit, targets, x, y):
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return p


def dashboard():
    panels, pid, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, kind, unit, targets) in enumerate(row_panels):
            panels.append(panel(pid, title, kind, unit, targets, (i % 3) * 8, y + (i // 3) * 8))
            pid += 1
        y += ((len(row_panels) + 2) // 3) * 8
    return {
        "uid": "oneway-gateway",
        "title": "oneway gateway",
        "description": "Traffic, rejections, limits, upstream, spool and security posture of oneway gateways.",
        "tags": ["oneway", "guance", "datakit"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "instance", "type": "query", "label": "Instance", "includeAll": True, "multi": True,
             "allValue": ".*", "refresh": 2,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(oneway_http_in_flight_requests, instance)", "refId": "instances"},
             "definition": "label_values(oneway_http_in_flight_requests, instance)"},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


# Grafana unit -> Guance `globalUnit` ([category, unit]; "custom" takes any label).
GUANCE_UNITS = {
    "reqps": ["custom", "req/s"],
    "short": [],
    "Bps": ["custom", "B/s"],
    "bytes": ["digital", "B"],
    "s": ["time", "s"],
    "d": ["time", "d"],
    "percentunit": ["custom", "ratio"],
}
GUANCE_TYPES = {"timeseries": "sequence", "stat": "singlestat", "gauge": "singlestat"}


def guance_promql(expr):
    """A Prometheus query as Guance runs it over DataKit-scraped metrics."""
    expr = re.sub(r"\b(oneway|process)_([a-z0-9_]+)", r"\1:\2", expr)
    return expr.replace("$instance", "#{instance}")


def guance_chart(title, kind, unit, targets, group, x, y):
    chart_type = GUANCE_TYPES[kind]
    settings = {
        "showTitle": True,
        "titleDesc": "",
        "timeInterval": "auto",
        "fixedTime": "",
        "precision": "2",
        "openThousandsSeparator": True,
        "unitType": "global",
        "globalUnit": GUANCE_UNITS[unit],
        "units": [],
        "alias": [],
        "colors": [],
        "levels": [],
        "currentChartType": chart_type,
    }
    if chart_type == "sequence":
        settings.update({
            "chartType": "line",
            "isTimeInterval": True,
            "xAxisShowType": "time",
            "legendPostion": "bottom",
            "legendValues": ["last", "max"],
            "connectNulls": True,
            "openStack": False,
            "showLine": False,
            "showLabel": False,
            "mainMeasurementQueryCode": "A",
        })
    else:
        settings.update({"showLine": False, "sequenceChartType": "line", "showLineAxis": False,
                         "mappings": []})
    return {
        "name": title,
        "type": chart_type,
        "group": {"name": group},
        "pos": {"x": x, "y": y, "w": 8, "h": 12},
        "extend": {"settings": settings, "fixedTime": ""},
        "queries": [
            {"name": legend.replace("{{", "").replace("}}", ""), "type": chart_type, "color": "",
             "disabled": False, "datasource": "dataflux", "qtype": "promql",
             "query": {"q": guance_promql(expr), "code": chr(ord("A") + i), "type": "promql",
                       "promqlCode": i, "funcList": []}}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def guance_dashboard():
    charts, y = [], 0
    for row_title, row_panels in ROWS:
        for i, (title, kind, unit, targets) in enumerate(row_panels):
            charts.append(guance_chart(title, kind, unit, targets, row_title,
                                       (i % 3) * 8, y + (i // 3) * 12))
        y += ((len(row_panels) + 2) // 3) * 12
    return {
        "title": "oneway gateway",
        "summary": "Traffic, rejections, limits, upstream, spool and security posture of oneway "
                   "gateways (metrics scraped by a DataKit prom input from the admin port).",
        "dashboardType": "CUSTOM",
        "dashboardExtend": {"groupUnfoldStatus": {row: True for row, _ in ROWS}},
        "dashboardMapping": [],
        "dashboardOwnerType": "node",
        "dashboardBindSet": [],
        "iconSet": {},
        "thumbnail": "",
        "tagInfo": [],
        "main": {
            "type": "template",
            "vars": [{
                "name": "Instance", "code": "instance", "seq": 0, "type": "PROMQL_QUERY",
                "datasource": "dataflux", "hide": 0, "isHiddenAsterisk": 0, "multiple": True,
                "includeStar": True, "valueSort": "asc",
                "definition": {"tag": "", "field": "", "metric": "", "object": "",
                               "value": "label_values(oneway:http_in_flight_requests, instance)",
                               "defaultVal": {"label": "*", "value": "*"}},
            }],
            "groups": [{"name": row} for row, _ in ROWS],
            "charts": charts,
        },
    }


if __name__ == "__main__":
    here = pathlib.Path(__file__).resolve().parent
    for out, board in [(here / "oneway.json", dashboard()),
                       (here.parent / "guance" / "oneway.json", guance_dashboard())]:
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {out}")
