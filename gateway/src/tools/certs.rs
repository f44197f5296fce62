//! A development and test PKI, made with rcgen so that nobody needs openssl to try oneway:
//! a CA, a server certificate for the given names and IPs, client certificates carrying the
//! agents' identities (SAN DNS and URI, `clientAuth`), and a CRL revoking the chosen clients.
//!
//! Production deployments bring their own PKI; this is for quickstarts and tests. Keys are
//! ECDSA P-256 and written with mode 0600.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// `oneway certs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long, default_value = "certs/out")]
    out: std::path::PathBuf,
    /// A DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    server_names: Vec<String>,
    /// A client certificate (repeatable): `NAME` (SAN DNS name NAME) or
    /// `NAME=dns:<name>,uri:<uri>,…` for explicit identities.
    #[arg(long = "client", default_values_t = ["agent-1".to_string()])]
    clients: Vec<String>,
    /// Put this client's certificate on the CRL (repeatable).
    #[arg(long = "revoke")]
    revoked: Vec<String>,
    /// Validity of the certificates, in days.
    #[arg(long, default_value_t = 30)]
    valid_days: i64,
}

/// Writes the PKI `args` describe; exit 64 for a bad `--client` or `--revoke`.
pub fn main(args: Args) -> super::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let mut specs = Vec::new();
    for c in &args.clients {
        let (name, identities) = c.split_once('=').unwrap_or((c.as_str(), ""));
        let mut spec = ClientSpec {
            name: name.to_string(),
            dns: vec![],
            uris: vec![],
            revoked: args.revoked.iter().any(|r| r == name),
            expired: false,
            ..ClientSpec::default()
        };
        if identities.is_empty() {
            spec.dns.push(name.to_string());
        }
        for id in identities.split(',').filter(|s| !s.is_empty()) {
            if let Some(d) = id.strip_prefix("dns:") {
                spec.dns.push(d.to_string());
            } else if let Some(u) = id.strip_prefix("uri:") {
                spec.uris.push(u.to_string());
            } else {
                eprintln!("oneway: --client {c}: identities are dns:<name> or uri:<uri>");
                return Ok(ExitCode::from(super::EXIT_USAGE));
            }
        }
        specs.push(spec);
    }
    for r in &args.revoked {
        if !specs.iter().any(|s| &s.name == r) {
            eprintln!("oneway: --revoke {r}: no such --client");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    }
    let names: Vec<String> = specs
        .iter()
        .map(|s| format!("{}.pem/.key", s.name))
        .collect();
    let spec = PkiSpec {
        server_names: args.server_names,
        clients: specs,
        valid_days: args.valid_days,
    };
    generate(&spec)?.write(&args.out)?;
    println!(
        "wrote a dev PKI to {}: ca.pem, server.pem/.key, ca.crl, {}",
        args.out.display(),
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// What to make.
#[derive(Debug, Clone)]
pub struct PkiSpec {
    /// Server certificate names: DNS names or IP addresses.
    pub server_names: Vec<String>,
    /// Client certificates.
    pub clients: Vec<ClientSpec>,
    /// Validity of every certificate, from one hour ago.
    pub valid_days: i64,
}

/// Which extended key usages a client certificate carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientEku {
    /// `clientAuth` (what agents need).
    #[default]
    ClientAuth,
    /// `serverAuth` only (refused for clients; tests).
    ServerAuthOnly,
    /// No EKU extension at all (accepted: the EKU is checked only when present).
    None,
}

/// One client certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    /// File stem and common name.
    pub name: String,
    /// SAN DNS names.
    pub dns: Vec<String>,
    /// SAN URIs.
    pub uris: Vec<String>,
    /// Whether the CRL revokes it.
    pub revoked: bool,
    /// Whether it expired yesterday (for tests).
    pub expired: bool,
    /// Whether it becomes valid only tomorrow (for tests).
    pub not_yet_valid: bool,
    /// Its extended key usages.
    pub eku: ClientEku,
}

/// A generated PKI, as PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The CA key (to revoke or issue later: [`revoke`], [`reissue_server`]).
    pub ca_key_pem: String,
    /// The server certificate.
    pub server_pem: String,
    /// The server key.
    pub server_key_pem: String,
    /// Client certificates and keys: (name, certificate, key).
    pub clients: Vec<(String, String, String)>,
    /// The CRL.
    pub crl_pem: String,
}

fn err(e: rcgen::Error) -> super::Error {
    super::Error::from(format!("certificate generation failed: {e}"))
}

/// Generates the PKI.
pub fn generate(spec: &PkiSpec) -> super::Result<Pki> {
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(spec.valid_days);

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "oneway dev CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().map_err(err)?;
    let mut server = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "oneway gateway");
    for name in &spec.server_names {
        server.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().map_err(err)?),
        });
    }
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = not_before;
    server.not_after = not_after;
    let server_cert = server.signed_by(&server_key, &issuer).map_err(err)?;

    let mut clients = Vec::new();
    let mut revoked = Vec::new();
    for (i, c) in spec.clients.iter().enumerate() {
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        p.distinguished_name
            .push(DnType::CommonName, c.name.clone());
        for d in &c.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.clone().try_into().map_err(err)?));
        }
        for u in &c.uris {
            p.subject_alt_names
                .push(SanType::URI(u.clone().try_into().map_err(err)?));
        }
        p.extended_key_usages = match c.eku {
            ClientEku::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
            ClientEku::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            ClientEku::None => vec![],
        };
        if c.expired {
            p.not_before = now - Duration::days(10);
            p.not_after = now - Duration::days(1);
        } else if c.not_yet_valid {
            p.not_before = now + Duration::days(1);
            p.not_after = now + Duration::days(10);
        } else {
            p.not_before = not_before;
            p.not_after = not_after;
        }
        let serial = SerialNumber::from(1000 + i as u64);
        p.serial_number = Some(serial.clone());
        let cert = p.signed_by(&key, &issuer).map_err(err)?;
        if c.revoked {
            revoked.push(RevokedCertParams {
                serial_number: serial,
                revocation_time: now - Duration::minutes(5),
                reason_code: None,
                invalidity_date: None,
            });
        }
        clients.push((c.name.clone(), cert.pem(), key.serialize_pem()));
    }
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(10),
        next_update: now + Duration::days(spec.valid_days.min(30)),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .map_err(err)?;

    Ok(Pki {
        ca_pem: ca_cert.pem(),
        ca_key_pem,
        server_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        clients,
        crl_pem: crl.pem().map_err(err)?,
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> super::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(if secret { 0o600 } else { 0o644 });
    let mut f = options
        .open(path)
        .map_err(|e| super::Error::from(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

impl Pki {
    /// Writes `ca.pem`, `ca.key`, `server.pem`, `server.key`, `<client>.pem`, `<client>.key`, `ca.crl`
    /// into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> super::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_file(&dir.join("ca.pem"), &self.ca_pem, false)?;
        write_file(&dir.join("ca.key"), &self.ca_key_pem, true)?;
        write_file(&dir.join("server.pem"), &self.server_pem, false)?;
        write_file(&dir.join("server.key"), &self.server_key_pem, true)?;
        write_file(&dir.join("ca.crl"), &self.crl_pem, false)?;
        for (name, cert, key) in &self.clients {
            write_file(&dir.join(format!("{name}.pem")), cert, false)?;
            write_file(&dir.join(format!("{name}.key")), key, true)?;
        }
        Ok(())
    }
}

/// Writes `contents` to `path` atomically (a temp file renamed over it), as a rotation does.
fn replace_file(path: &Path, contents: &str, secret: bool) -> super::Result<()> {
    let tmp = path.with_extension("tmp-rotate");
    write_file(&tmp, contents, secret)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| super::Error::from(format!("cannot replace {}: {e}", path.display())))
}

fn issuer_in(dir: &Path) -> super::Result<Issuer<'static, KeyPair>> {
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem"))?;
    let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key"))?).map_err(err)?;
    Issuer::from_ca_cert_pem(&ca_pem, key).map_err(err)
}

/// Replaces `dir/ca.crl` with a CRL (number `crl_number`, which must grow) revoking the
/// client certificates `dir/<name>.pem` for each of `names`, signed by `dir/ca.pem`/`ca.key`.
pub fn revoke(dir: &Path, names: &[&str], crl_number: u64) -> super::Result<()> {
    let now = OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    for name in names {
        let pem = std::fs::read(dir.join(format!("{name}.pem")))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
            .map(|d: rustls_pki_types::CertificateDer<'_>| d.to_vec())
            .map_err(|e| super::Error::from(format!("{name}.pem: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| super::Error::from(format!("{name}.pem: {e}")))?;
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now - Duration::minutes(1),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(2),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer_in(dir)?)
    .map_err(err)?;
    replace_file(&dir.join("ca.crl"), &crl.pem().map_err(err)?, false)
}

/// Issues a new server certificate and key for `names`, signed by `dir/ca.pem`/`ca.key`, and
/// returns them as PEM (certificate, key) without writing anything.
pub fn reissue_server(dir: &Path, names: &[&str]) -> super::Result<(String, String)> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate().map_err(err)?;
    let mut server = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "oneway gateway");
    for name in names {
        server.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.to_string().try_into().map_err(err)?),
        });
    }
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - Duration::hours(1);
    server.not_after = now + Duration::days(30);
    let cert = server.signed_by(&key, &issuer_in(dir)?).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PeerIdentity;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn generate_makes_clients_with_their_identities_and_a_crl() {
        let pki = generate(&PkiSpec {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            clients: vec![
                ClientSpec {
                    name: "agent-1".into(),
                    dns: vec!["agent-1.example".into()],
                    uris: vec![],
                    revoked: false,
                    expired: false,
                    ..ClientSpec::default()
                },
                ClientSpec {
                    name: "agent-2".into(),
                    dns: vec![],
                    uris: vec!["spiffe://dev/agent-2".into()],
                    revoked: true,
                    expired: false,
                    ..ClientSpec::default()
                },
            ],
            valid_days: 30,
        })
        .unwrap();
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(pki.clients[0].1.as_bytes()).unwrap();
        let id = PeerIdentity::from_der(&der).unwrap();
        assert_eq!(id.dns, vec!["agent-1.example".to_string()]);
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(pki.clients[1].1.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::from_der(&der).unwrap().uris,
            vec!["spiffe://dev/agent-2".to_string()]
        );
        assert!(pki.crl_pem.contains("BEGIN X509 CRL"));
        let dir = tempfile::tempdir().unwrap();
        pki.write(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("server.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
