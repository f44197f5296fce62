//! `oneway-gateway`: the mTLS front door in front of the Guance cluster.
//!
//! Built on `oneway-protocol` (every byte a push carries is decoded and validated there).
//!
//! - [`config`]: TOML into validated types, every problem reported with its key path;
//! - [`tls`]: rustls with required client certificates, CRLs, no resumption;
//! - [`auth`]: tokens bound to client-certificate identities; [`audit`]: security events;
//! - [`app`]: bind, serve, shutdown; the request path's stages below it (listener, http,
//!   request, body, ingest, forward, passthrough, admin), each in a file named for it;
//! - [`edge`]: PROXY header, per-address and per-identity caps, connection phase deadlines;
//! - [`framing`]: every request's body framing, followed as hyper reads it (smuggling);
//! - [`upstream`]: the only outbound connections, to configured literal addresses;
//! - [`spool`]: the durable spool (group-committed, replayed in order, crash-safe);
//! - [`response`]: one mapping from errors to statuses and Guance-style JSON bodies;
//! - [`telemetry`]: metric names;
//! - [`reload`]: SIGHUP and file-watch reloads of certificates, CRLs, tokens and limits;
//! - [`sandbox`]: Landlock and seccomp, entered once bound, and the self-test;
//! - [`split`]: `--split`, the edge in an empty network namespace and its forwarder;
//! - [`tools`]: the subcommands that are not the server (quickstart, push, agent, certs,
//!   spool, validate, check-config), each with its arguments.

pub(crate) mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub(crate) mod body;
pub mod config;
pub(crate) mod conn;
pub mod edge;
pub(crate) mod forward;
pub mod framing;
pub mod headers;
pub(crate) mod http;
pub(crate) mod ingest;
pub mod limit;
pub(crate) mod listener;
pub(crate) mod passthrough;
pub mod query;
pub mod reload;
pub(crate) mod request;
pub mod response;
pub mod run;
pub mod sandbox;
pub mod split;
pub mod spool;
pub(crate) mod state;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod upstream;
