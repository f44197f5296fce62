//! An mTLS HTTP/1.1 client: what the quickstart (and later the push and agent tools) use to
//! talk to a gateway. It connects only to the address it is given.
//!
//! Cancel safety: [`send`] owns its connection; dropping it closes the connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::tls::{TlsError, load_certs};

/// `--ca`, `--cert`, `--key`: how a tool's client proves who it is and checks the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// The CA of the gateway's certificate (PEM).
    #[arg(long)]
    pub ca: std::path::PathBuf,
    /// The client certificate (PEM chain).
    #[arg(long)]
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: std::path::PathBuf,
}

/// A TLS connector trusting `ca` and presenting `cert`/`key` (or no certificate).
pub fn connector(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let mut config = client_config(ca, identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The client TLS configuration behind [`connector`] (without ALPN, which connectors set).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    client_config_with(ca, identity, crate::tls::provider())
}

/// [`client_config`] with another provider's cryptography (the TLS benchmark).
pub fn client_config_with(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Rustls(e.to_string()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                path: key.to_path_buf(),
                message: format!("no usable private key: {e}"),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// Sends one request over a new connection to `addr`, verifying the server as `server_name`.
pub async fn send(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    server_name: &str,
    request: Request<Full<Bytes>>,
) -> super::Result<Response<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_string())?;
    let tls = connector.connect(name, stream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
