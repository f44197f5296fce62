//! The server's TLS material as `oneway run` loads it: a dev PKI's certificate, key, client CA
//! and CRL give a server config without resumption or 0-RTT; a mismatched key, a missing file
//! or a broken CRL is refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oneway_gateway::config::ListenerConfig;
use oneway_gateway::tls::{TlsError, expiry_seconds, load_certs, server_config};
use oneway_gateway::tools::certs::{ClientSpec, PkiSpec, generate};

fn listener(dir: &Path) -> ListenerConfig {
    ListenerConfig {
        address: "127.0.0.1:0".parse().expect("an address"),
        backlog: 16,
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_ca: dir.join("ca.pem"),
        crls: vec![dir.join("ca.crl")],
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        max_connections: 10,
        shutdown_grace: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        max_connection_age: Duration::from_secs(60),
        body_min_rate_bytes_per_second: 0,
        body_min_rate_grace: Duration::from_secs(1),
        max_connections_per_ip: 10,
        ipv6_prefix_len: 64,
        max_connections_per_identity: 10,
        max_header_bytes: 16 << 10,
        max_headers: 64,
        proxy_protocol: None,
    }
}

fn pki(dir: &Path) {
    generate(&PkiSpec {
        server_names: vec!["localhost".into()],
        clients: vec![ClientSpec {
            name: "a".into(),
            dns: vec!["a".into()],
            uris: vec![],
            revoked: false,
            expired: false,
            ..ClientSpec::default()
        }],
        valid_days: 10,
    })
    .expect("a PKI")
    .write(dir)
    .expect("written");
}

#[test]
fn server_config_loads_and_disables_resumption() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let c = server_config(&listener(dir.path())).unwrap();
    assert_eq!(c.send_tls13_tickets, 0);
    assert_eq!(c.max_early_data_size, 0, "no 0-RTT");
    assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let days = expiry_seconds(&dir.path().join("server.pem")).unwrap() / 86_400.0;
    assert!((9.0..=10.1).contains(&days), "{days}");
}

#[test]
fn the_listener_configuration_is_fips_exactly_in_a_fips_build() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let c = server_config(&listener(dir.path())).unwrap();
    // rustls says a configuration is FIPS only when its provider is a validated module and
    // every setting (EMS for TLS 1.2 among them) keeps it so.
    assert_eq!(c.fips(), cfg!(feature = "fips"));
    assert_eq!(
        oneway_gateway::tls::CRYPTO,
        if cfg!(feature = "fips") {
            "aws-lc-fips"
        } else {
            "ring"
        }
    );
}

#[test]
fn mismatched_key_and_missing_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    std::fs::copy(dir.path().join("a.key"), dir.path().join("server.key")).unwrap();
    assert!(matches!(
        server_config(&listener(dir.path())),
        Err(TlsError::Rustls(_))
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        server_config(&listener(empty.path())),
        Err(TlsError::File { .. })
    ));
    pki(dir.path());
    std::fs::write(
        dir.path().join("ca.crl"),
        "-----BEGIN X509 CRL-----\nnope\n-----END X509 CRL-----\n",
    )
    .unwrap();
    assert!(server_config(&listener(dir.path())).is_err());
}

/// Presents a fixed certificate chain and signs with a fixed key, whether or not they match.
#[derive(Debug)]
struct Presenting(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Presenting {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Moves what `from` has to send into `to`, and has `to` process it.
fn deliver(
    from: &mut rustls::Connection,
    to: &mut rustls::Connection,
) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("written to memory");
    }
    let mut read = &wire[..];
    while !read.is_empty() {
        to.read_tls(&mut read).expect("read from memory");
        to.process_new_packets()?;
    }
    Ok(())
}

/// One full handshake in memory between `server_config` and a client presenting `cert` and
/// signing with `key` (files in `dir`): the server's verdict.
fn handshake_as(
    server_config: &Arc<rustls::ServerConfig>,
    dir: &Path,
    cert: &str,
    key: &str,
) -> Result<(), rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    let provider = oneway_gateway::tls::provider();
    let certs = load_certs(&dir.join(cert)).expect("a chain");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join(key)).expect("a key");
    let signer = provider
        .key_provider
        .load_private_key(key)
        .expect("a signing key");
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&dir.join("ca.pem")).expect("the CA") {
        roots.add(ca).expect("a root");
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Presenting(Arc::new(
            rustls::sign::CertifiedKey::new(certs, signer),
        ))));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut client = rustls::Connection::Client(
        rustls::ClientConnection::new(Arc::new(client_config), name).expect("a client"),
    );
    let mut server = rustls::Connection::Server(
        rustls::ServerConnection::new(Arc::clone(server_config)).expect("a server"),
    );
    for _ in 0..16 {
        deliver(&mut client, &mut server)?;
        deliver(&mut server, &mut client)?;
        if !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not end");
}

#[test]
fn a_remembered_chain_still_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    // One configuration, so one verifier: after the first handshake a's chain is remembered.
    let config = server_config(&listener(dir.path())).unwrap();
    assert!(handshake_as(&config, dir.path(), "a.pem", "a.key").is_ok());
    assert!(handshake_as(&config, dir.path(), "a.pem", "a.key").is_ok());
    // a's chain with another key's signature (the server's key): refused at CertificateVerify,
    // remembered chain or not.
    let refused = handshake_as(&config, dir.path(), "a.pem", "server.key");
    assert!(refused.is_err(), "{refused:?}");
    assert!(handshake_as(&config, dir.path(), "a.pem", "a.key").is_ok());
}
