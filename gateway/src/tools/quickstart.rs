//! `oneway quickstart`: the whole product path on one machine with no setup.
//!
//! It makes a dev PKI and a config in a directory, starts a local upstream that records what
//! it receives, starts the gateway, pushes a DataKit-shaped batch (gzip'd protobuf `PBPoints`
//! with DataKit's headers) through mutual TLS, shows what arrived upstream, prints the curl
//! command that does the same by hand, and exits 0; with `--serve` it keeps serving.
//!
//! Cancel safety: runs to its end (or until Ctrl-C with `--serve`, which drains the gateway).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::app::Gateway;
use crate::config::Config;
use crate::tools::certs::{ClientSpec, PkiSpec, generate};

/// `oneway quickstart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the dev PKI and config (created if missing).
    #[arg(long, default_value = "oneway-quickstart")]
    dir: std::path::PathBuf,
    /// Keep serving after the push (until Ctrl-C).
    #[arg(long)]
    serve: bool,
}

/// Runs [`run`]; exit 0 if the push went through.
pub fn main(args: Args) -> super::Result<std::process::ExitCode> {
    std::fs::create_dir_all(&args.dir)?;
    let ok = super::runtime(None)?.block_on(run(&args.dir, args.serve))?;
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// The agent token the quickstart config binds to `agent-1`.
pub const AGENT_TOKEN: &str = "tkn_quickstartagent00000000000000000";
/// The workspace token the gateway forwards in its place.
pub const WORKSPACE_TOKEN: &str = "tkn_quickstartworkspace0000000000000";

type Log = Arc<Mutex<Vec<(String, http::HeaderMap, Bytes)>>>;

/// A local upstream recording every request; answers 200 `{}`.
async fn recording_upstream() -> super::Result<(SocketAddr, Log)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log: Log = Arc::default();
    let shared = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if let Ok(mut l) = log.lock() {
                            l.push((parts.uri.to_string(), parts.headers, body));
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, log))
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_len(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A DataKit-shaped `PBPoints` batch: `points` cpu points with two tags and three fields.
pub fn datakit_batch(points: u64) -> Vec<u8> {
    let mut batch = Vec::new();
    for i in 0..points {
        let mut point = Vec::new();
        field_len(&mut point, 1, b"cpu");
        let host = format!("host-{}", i % 4);
        for (key, value) in [("host", host.as_str()), ("region", "eu-west-1")] {
            let mut f = Vec::new();
            field_len(&mut f, 1, key.as_bytes());
            field_len(&mut f, 11, value.as_bytes());
            varint(&mut f, 8 << 3);
            varint(&mut f, 1); // is_tag
            field_len(&mut point, 2, &f);
        }
        for (key, value) in [("usage_user", i % 100), ("usage_system", (i * 7) % 100)] {
            let mut f = Vec::new();
            field_len(&mut f, 1, key.as_bytes());
            varint(&mut f, 2 << 3);
            varint(&mut f, value);
            field_len(&mut point, 2, &f);
        }
        let mut f = Vec::new();
        field_len(&mut f, 1, b"usage_idle");
        varint(&mut f, 4 << 3 | 1);
        f.extend_from_slice(&(50.5f64 + i as f64).to_le_bytes());
        field_len(&mut point, 2, &f);
        varint(&mut point, 3 << 3);
        varint(&mut point, 1_700_000_000_000_000_000 + i);
        field_len(&mut batch, 1, &point);
    }
    batch
}

fn write_config(dir: &Path, upstream: SocketAddr) -> super::Result<()> {
    let config = format!(
        r#"# Written by `oneway quickstart`: a gateway on loopback in front of a local recording
# upstream. See docs/configuration.md for every key.
[listener]
address = "127.0.0.1:0"
server_cert = "server.pem"
server_key = "server.key"
client_ca = "ca.pem"
crls = ["ca.crl"]

[admin]
address = "127.0.0.1:0"

[audit]
output = "audit.jsonl"   # security events as JSON lines (the quickstart prints to stdout)

[upstream]
addresses = ["{upstream}"]

[[tokens]]
name = "agent-1"
token = "{AGENT_TOKEN}"
identities = ["dns:agent-1"]
upstream_token = "{WORKSPACE_TOKEN}"
"#
    );
    std::fs::write(dir.join("oneway.toml"), config)?;
    Ok(())
}

/// Runs the quickstart in `dir`. Returns whether the push arrived intact.
pub async fn run(dir: &Path, serve: bool) -> super::Result<bool> {
    let mut out = std::io::stdout().lock();
    generate(&PkiSpec {
        server_names: vec!["localhost".into(), "127.0.0.1".into()],
        clients: vec![ClientSpec {
            name: "agent-1".into(),
            dns: vec!["agent-1".into()],
            uris: vec![],
            revoked: false,
            expired: false,
            ..ClientSpec::default()
        }],
        valid_days: 30,
    })?
    .write(dir)?;
    let (upstream, log) = recording_upstream().await?;
    write_config(dir, upstream)?;
    let config = Config::load(&dir.join("oneway.toml"))?;
    let gateway = Gateway::bind(config)?;
    let (public, admin) = (gateway.public_addr(), gateway.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(async {
        let _ = stopped.await;
    }));
    writeln!(out, "oneway quickstart in {}", dir.display())?;
    writeln!(
        out,
        "  dev PKI:   ca.pem, server.pem/.key, agent-1.pem/.key, ca.crl"
    )?;
    writeln!(
        out,
        "  upstream:  http://{upstream} (local, records what it receives)"
    )?;
    writeln!(
        out,
        "  gateway:   https://{public} (mTLS), admin http://{admin}/metrics\n"
    )?;

    let raw = datakit_batch(100);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    gz.write_all(&raw)?;
    let body = Bytes::from(gz.finish()?);
    let request = Request::post(format!("/v1/write/metric?token={AGENT_TOKEN}"))
        .header("host", "localhost")
        .header(
            "content-type",
            "application/protobuf; proto=com.guance.Point",
        )
        .header("content-encoding", "gzip")
        .header("user-agent", "datakit-linux-amd64/1.84.1/quickstart")
        .header("referer", "DataKit")
        .header("x-points", "100")
        .body(Full::new(body.clone()))?;
    let connector = crate::tools::client::connector(
        &dir.join("ca.pem"),
        Some((&dir.join("agent-1.pem"), &dir.join("agent-1.key"))),
    )?;
    writeln!(
        out,
        "push: POST /v1/write/metric, 100 points, gzip'd protobuf ({} bytes), client certificate agent-1",
        body.len()
    )?;
    let response = crate::tools::client::send(&connector, public, "localhost", request).await?;
    writeln!(
        out,
        "  gateway answered {} {}",
        response.status(),
        String::from_utf8_lossy(response.body())
    )?;
    let received = log.lock().map(|l| l.clone()).unwrap_or_default();
    let ok = match received.first() {
        Some((uri, headers, got)) => {
            let identical = *got == body;
            writeln!(out, "  upstream received: POST {uri}")?;
            for name in [
                "content-type",
                "content-encoding",
                "x-points",
                "user-agent",
                "referer",
            ] {
                if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                    writeln!(out, "    {name}: {v}")?;
                }
            }
            writeln!(
                out,
                "    body: {} bytes, {}",
                got.len(),
                if identical {
                    "byte-identical to what the agent sent"
                } else {
                    "DIFFERENT from what the agent sent"
                }
            )?;
            response.status().is_success() && identical && uri.contains(WORKSPACE_TOKEN)
        }
        None => {
            writeln!(out, "  the upstream received nothing")?;
            false
        }
    };
    writeln!(out, "\nthe same by hand (line protocol):")?;
    writeln!(
        out,
        "  curl --cacert {d}/ca.pem --cert {d}/agent-1.pem --key {d}/agent-1.key \\\n    -H 'Content-Type: application/line-protocol' --data-binary 'cpu,host=a usage_user=1i' \\\n    'https://localhost:{port}/v1/write/metric?token={AGENT_TOKEN}'",
        d = dir.display(),
        port = public.port()
    )?;
    if serve {
        writeln!(
            out,
            "\nserving until Ctrl-C (config: {})",
            dir.join("oneway.toml").display()
        )?;
        drop(out);
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop.send(());
    let _ = task.await;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datakit_batch_validates_as_protobuf() {
        let body = datakit_batch(10);
        let verdict = oneway_protocol::Validator::default()
            .validate(
                oneway_protocol::BodyKind::Protobuf,
                oneway_protocol::Category::Metric,
                oneway_protocol::Precision::Nanoseconds,
                &body,
            )
            .unwrap();
        assert_eq!(verdict.points, 10);
    }
}
