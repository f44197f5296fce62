//! Agent authentication: a token (from `?token=` or `X-Token`) bound to the identities of the
//! client certificate presented in the TLS handshake.
//!
//! Tokens are kept only as SHA-256 digests; a presented token is hashed and looked up, and the
//! match is confirmed with a constant-time comparison. A token presented with a certificate
//! it is not bound to is refused (403) before the body is read; an unknown token is 401.
//! Nothing here logs or returns a token.

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;

pub use crate::config::sha256;
use crate::config::{Identity, TokenConfig, TokenSecret};
use crate::telemetry::AgentSeries;

/// The identities of a verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// SAN DNS names, lowercased.
    pub dns: Vec<String>,
    /// SAN URIs.
    pub uris: Vec<String>,
    /// SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    /// The cloud VPC endpoint (or VPC) id the load balancer's PROXY header named, if any.
    pub endpoint: Option<String>,
}

impl PeerIdentity {
    /// Extracts the identities of a DER certificate (already verified by the TLS layer).
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, AuthError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| AuthError::BadCertificate)?;
        let mut id = PeerIdentity {
            spki_sha256: sha256(cert.public_key().raw),
            ..PeerIdentity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        id.dns.push(d.to_ascii_lowercase())
                    }
                    x509_parser::extensions::GeneralName::URI(u) => id.uris.push((*u).to_string()),
                    _ => {}
                }
            }
        }
        Ok(id)
    }

    /// Whether the certificate carries `identity`.
    pub fn has(&self, identity: &Identity) -> bool {
        match identity {
            Identity::Dns(d) => self.dns.iter().any(|x| x == d),
            Identity::Uri(u) => self.uris.iter().any(|x| x == u),
            Identity::SpkiSha256(h) => bool::from(self.spki_sha256.ct_eq(h)),
        }
    }

    /// A short name for logs and the upstream identity header: the first DNS name, else the
    /// first URI, else the SPKI pin.
    pub fn name(&self) -> String {
        self.dns
            .first()
            .map(|d| format!("dns:{d}"))
            .or_else(|| self.uris.first().map(|u| format!("uri:{u}")))
            .unwrap_or_else(|| format!("spki-sha256:{}", hex::encode(self.spki_sha256)))
    }
}

/// Why a request was not authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `?token=` and no `X-Token`.
    #[error("no token: send ?token= or an X-Token header")]
    MissingToken,
    /// The token is not configured.
    #[error("the token is not valid")]
    UnknownToken,
    /// The token is configured but not for this client certificate.
    #[error("the token is not bound to this client certificate")]
    NotBound,
    /// The token may not call this API.
    #[error("this API is not allowed for the token")]
    ApiNotAllowed,
    /// The client certificate could not be read.
    #[error("the client certificate could not be read")]
    BadCertificate,
    /// The token is limited to VPC endpoints and the connection came through another one.
    #[error("the token is not allowed through this network endpoint")]
    EndpointNotAllowed,
    /// A reload revoked the client certificate of this (open) connection.
    #[error("the client certificate was revoked")]
    Revoked,
}

impl AuthError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::UnknownToken => "unknown_token",
            AuthError::NotBound => "not_bound",
            AuthError::ApiNotAllowed => "api_not_allowed",
            AuthError::BadCertificate => "bad_certificate",
            AuthError::EndpointNotAllowed => "endpoint_not_allowed",
            AuthError::Revoked => "certificate_revoked",
        }
    }
}

/// A configured token as the request path uses it: its policy, its identities as text (the
/// key of the per-identity caps and the name the upstream and the audit trail see, made once
/// here rather than per request) and its agent's metric series.
#[derive(Debug)]
pub struct Agent {
    /// The token's configuration.
    pub token: TokenConfig,
    /// `token.identities`, each as text, in the same order.
    identities: Vec<Arc<str>>,
    /// The series its accepted batches move.
    pub series: AgentSeries,
}

impl Agent {
    fn new(token: &TokenConfig) -> Agent {
        Agent {
            token: token.clone(),
            identities: token
                .identities
                .iter()
                .map(|i| Arc::from(i.to_string()))
                .collect(),
            series: AgentSeries::new(Arc::clone(&token.name)),
        }
    }

    /// The token's name (the `agent` of metrics and audit events).
    pub fn name(&self) -> &Arc<str> {
        &self.token.name
    }
}

/// A token that passed, and the identity of the certificate it matched.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The token.
    pub agent: Arc<Agent>,
    /// The first of the token's identities the certificate carries, as text: the name the
    /// upstream identity header, the per-identity cap and the audit trail use.
    pub identity: Arc<str>,
}

/// The configured tokens, indexed by digest.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_digest: HashMap<[u8; 32], Arc<Agent>>,
}

impl TokenTable {
    /// Builds the table.
    pub fn new(tokens: &[TokenConfig]) -> TokenTable {
        let by_digest = tokens
            .iter()
            .map(|t| {
                let TokenSecret::Sha256(h) = t.secret.clone();
                (h, Arc::new(Agent::new(t)))
            })
            .collect();
        TokenTable { by_digest }
    }

    /// The names of the tokens.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_digest.values().map(|a| a.name())
    }

    /// The token `presented` is, if it is one (for counting a refusal that comes after the
    /// token is known: not bound to the certificate, or from the wrong endpoint).
    pub fn agent_of(&self, presented: &str) -> Option<Arc<Agent>> {
        self.find(presented).ok().map(Arc::clone)
    }

    /// The token `presented` is: looked up by digest, confirmed in constant time.
    fn find(&self, presented: &str) -> Result<&Arc<Agent>, AuthError> {
        let digest = sha256(presented.as_bytes());
        let agent = self.by_digest.get(&digest).ok_or(AuthError::UnknownToken)?;
        let TokenSecret::Sha256(stored) = &agent.token.secret;
        if bool::from(stored.ct_eq(&digest)) {
            Ok(agent)
        } else {
            Err(AuthError::UnknownToken)
        }
    }

    /// Finds the token and checks that `peer` carries one of its identities.
    pub fn authorize(
        &self,
        presented: Option<&str>,
        peer: &PeerIdentity,
    ) -> Result<Authorized, AuthError> {
        let presented = presented
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let agent = self.find(presented)?;
        let token = &agent.token;
        let identity = token
            .identities
            .iter()
            .zip(&agent.identities)
            .find(|(i, _)| peer.has(i))
            .map(|(_, text)| Arc::clone(text))
            .ok_or(AuthError::NotBound)?;
        let endpoint_ok = token.endpoints.is_empty()
            || peer
                .endpoint
                .as_ref()
                .is_some_and(|e| token.endpoints.contains(e));
        if !endpoint_ok {
            return Err(AuthError::EndpointNotAllowed);
        }
        Ok(Authorized {
            agent: Arc::clone(agent),
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: &str, identities: Vec<Identity>) -> TokenConfig {
        TokenConfig {
            secret: TokenSecret::Sha256(sha256(secret.as_bytes())),
            identities,
            ..TokenConfig::for_tests()
        }
    }

    #[test]
    fn the_matched_identity_is_the_one_bound_to_the_token_not_the_first_san() {
        let t = token(
            "tkn_a0000000000000000000000000000000",
            vec![
                Identity::Uri("spiffe://x/a".into()),
                Identity::Dns("agent-a".into()),
            ],
        );
        let table = TokenTable::new(&[t]);
        let mut p = peer("first-san");
        p.dns.push("agent-a".into());
        let a = table
            .authorize(Some("tkn_a0000000000000000000000000000000"), &p)
            .unwrap();
        assert_eq!(a.identity.to_string(), "dns:agent-a");
        assert_eq!(p.name(), "dns:first-san");
    }

    #[test]
    fn a_token_limited_to_endpoints_needs_one_of_them() {
        let mut limited = token(
            "tkn_e0000000000000000000000000000000",
            vec![Identity::Dns("agent-a".into())],
        );
        limited.endpoints = ["vpce-1".to_string()].into_iter().collect();
        let table = TokenTable::new(&[limited]);
        let mut p = peer("agent-a");
        assert!(matches!(
            table.authorize(Some("tkn_e0000000000000000000000000000000"), &p),
            Err(AuthError::EndpointNotAllowed)
        ));
        p.endpoint = Some("vpce-2".into());
        assert!(matches!(
            table.authorize(Some("tkn_e0000000000000000000000000000000"), &p),
            Err(AuthError::EndpointNotAllowed)
        ));
        p.endpoint = Some("vpce-1".into());
        assert!(
            table
                .authorize(Some("tkn_e0000000000000000000000000000000"), &p)
                .is_ok()
        );
    }

    fn peer(dns: &str) -> PeerIdentity {
        PeerIdentity {
            dns: vec![dns.into()],
            uris: vec!["spiffe://x/agent".into()],
            spki_sha256: [7; 32],
            endpoint: None,
        }
    }

    #[test]
    fn authorize_checks_token_then_binding() {
        let table = TokenTable::new(&[
            token(
                "tkn_a0000000000000000000000000000000",
                vec![Identity::Dns("agent-a".into())],
            ),
            token(
                "tkn_b0000000000000000000000000000000",
                vec![Identity::Uri("spiffe://x/agent".into())],
            ),
            token(
                "tkn_c0000000000000000000000000000000",
                vec![Identity::SpkiSha256([7; 32])],
            ),
        ]);
        assert!(
            table
                .authorize(
                    Some("tkn_a0000000000000000000000000000000"),
                    &peer("agent-a")
                )
                .is_ok()
        );
        assert_eq!(
            table
                .authorize(
                    Some("tkn_a0000000000000000000000000000000"),
                    &peer("agent-b")
                )
                .unwrap_err(),
            AuthError::NotBound
        );
        assert!(
            table
                .authorize(
                    Some("tkn_b0000000000000000000000000000000"),
                    &peer("anything")
                )
                .is_ok()
        );
        assert!(
            table
                .authorize(
                    Some("tkn_c0000000000000000000000000000000"),
                    &peer("anything")
                )
                .is_ok()
        );
        assert_eq!(
            table
                .authorize(
                    Some("tkn_z0000000000000000000000000000000"),
                    &peer("agent-a")
                )
                .unwrap_err(),
            AuthError::UnknownToken
        );
        assert_eq!(
            table.authorize(None, &peer("agent-a")).unwrap_err(),
            AuthError::MissingToken
        );
        assert_eq!(
            table.authorize(Some(""), &peer("agent-a")).unwrap_err(),
            AuthError::MissingToken
        );
    }

    #[test]
    fn token_errors_never_contain_the_token() {
        let table = TokenTable::new(&[token(
            "tkn_secret00000000000000000000000000",
            vec![Identity::Dns("a".into())],
        )]);
        let e = table
            .authorize(Some("tkn_secret00000000000000000000000000"), &peer("b"))
            .unwrap_err();
        assert!(
            !e.to_string()
                .contains("tkn_secret00000000000000000000000000")
        );
        assert!(!format!("{:?}", table).contains("tkn_secret00000000000000000000000000"));
    }
}
