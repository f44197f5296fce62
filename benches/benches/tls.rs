//! TLS with each rustls crypto provider the gateway could use, `ring` and `aws-lc-rs`, on the
//! listener's very configuration (`tls::server_config_with`: client certificate required and
//! checked against the CA and its CRL, TLS 1.3, no tickets) and a client like `oneway push`
//! (`client::client_config_with`), in memory so that only the cryptography and the state
//! machines are measured:
//!
//! - `tls/mtls_handshake`: a full handshake, client and server together (each signs once and
//!   verifies once with ECDSA P-256, plus the key exchange);
//! - `tls/record_1MiB`: 1 MiB of application data sealed by the client and opened by the
//!   server (AES-GCM), what a large batch costs in TLS.
//!
//! Issue 19 asks for the faster one: `tls::provider()` is what the numbers chose
//! (docs/performance.md). With `--features fips`, AWS-LC's FIPS module is measured too.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oneway_gateway::config::RawConfig;
use oneway_gateway::tools::certs::{ClientSpec, PkiSpec, generate};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;

struct Pair {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn pair(dir: &Path, provider: Arc<CryptoProvider>) -> Pair {
    let text = concat!(
        "[listener]\naddress = \"127.0.0.1:0\"\nserver_cert = \"server.pem\"\n",
        "server_key = \"server.key\"\nclient_ca = \"ca.pem\"\ncrls = [\"ca.crl\"]\n",
        "[upstream]\naddresses = [\"127.0.0.1:9\"]\n",
        "[[tokens]]\nname = \"bench\"\ntoken = \"tkn_bench000000000000000000000000000\"\n",
        "identities = [\"dns:bench\"]\n",
    );
    let config = RawConfig::parse(text, &dir.join("oneway.toml"))
        .and_then(|r| r.validate(dir))
        .expect("the bench's config is valid");
    let server = oneway_gateway::tls::server_config_with(&config.listener, Arc::clone(&provider))
        .expect("server config");
    let client = oneway_gateway::tools::client::client_config_with(
        &dir.join("ca.pem"),
        Some((&dir.join("bench.pem"), &dir.join("bench.key"))),
        provider,
    )
    .expect("client config");
    Pair {
        server,
        client: Arc::new(client),
    }
}

/// Moves what `from` has to send into `to` through `wire`, and has `to` process it; says
/// whether anything moved.
fn deliver<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
    wire: &mut Vec<u8>,
) -> bool {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).expect("written to memory");
    }
    if wire.is_empty() {
        return false;
    }
    to.read_tls(&mut wire.as_slice()).expect("read from memory");
    to.process_new_packets().expect("the handshake is accepted");
    true
}

/// One full handshake; returns the connected pair.
fn handshake(p: &Pair) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(Arc::clone(&p.client), name).expect("client");
    let mut s = ServerConnection::new(Arc::clone(&p.server)).expect("server");
    let mut wire = Vec::with_capacity(8 << 10);
    while c.is_handshaking() || s.is_handshaking() {
        let to_server = deliver(&mut c, &mut s, &mut wire);
        let to_client = deliver(&mut s, &mut c, &mut wire);
        assert!(to_server || to_client, "the handshake stalled");
    }
    (c, s)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = PkiSpec {
        server_names: vec!["localhost".into()],
        clients: vec![ClientSpec {
            name: "bench".into(),
            dns: vec!["bench".into()],
            ..ClientSpec::default()
        }],
        valid_days: 30,
    };
    generate(&spec)
        .expect("pki")
        .write(dir.path())
        .expect("write pki");
    #[cfg_attr(
        not(feature = "fips"),
        expect(unused_mut, reason = "one more with fips")
    )]
    let mut providers: Vec<(&str, Arc<CryptoProvider>)> = vec![
        ("ring", Arc::new(rustls::crypto::ring::default_provider())),
        (
            "aws_lc_rs",
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        ),
    ];
    // `--features fips`: AWS-LC's FIPS module, what `oneway` built with `fips` uses.
    #[cfg(feature = "fips")]
    providers.push((
        "aws_lc_rs_fips",
        Arc::new(rustls::crypto::default_fips_provider()),
    ));
    let pairs: Vec<(&str, Pair)> = providers
        .into_iter()
        .map(|(name, p)| (name, pair(dir.path(), p)))
        .collect();

    let mut group = c.benchmark_group("tls/mtls_handshake");
    group.throughput(Throughput::Elements(1));
    for (name, p) in &pairs {
        let (_, s) = handshake(p);
        let kx = s
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()));
        eprintln!(
            "tls/mtls_handshake/{name}: key exchange {}",
            kx.unwrap_or_default()
        );
        group.bench_function(*name, |b| b.iter(|| handshake(p)));
    }
    group.finish();

    let payload = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("tls/record_1MiB");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    for (name, p) in &pairs {
        let (mut client, mut server) = handshake(p);
        // The whole batch sealed at once, as a client writing it in one go would have it.
        client.set_buffer_limit(None);
        server.set_buffer_limit(None);
        let mut wire = Vec::with_capacity(payload.len() + (64 << 10));
        let mut plain = vec![0u8; 64 << 10];
        group.bench_function(*name, |b| {
            b.iter(|| {
                client.writer().write_all(&payload).expect("seal");
                wire.clear();
                while client.wants_write() {
                    client.write_tls(&mut wire).expect("client writes");
                }
                let mut rd = wire.as_slice();
                let mut got = 0;
                while !rd.is_empty() {
                    server.read_tls(&mut rd).expect("server reads");
                    server.process_new_packets().expect("open");
                    loop {
                        match server.reader().read(&mut plain) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("read: {e}"),
                        }
                    }
                }
                assert_eq!(got, payload.len());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
