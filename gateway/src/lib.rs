//! `oneway-gateway`: the mTLS front door in front of the Guance cluster.
//!
//! Built on `oneway-protocol` (every byte a push carries is decoded and validated there).
//! A write travels these stages, each in a module named for it:
//!
//! ```text
//! app (bind, serve, shutdown)
//!   → listener (accept, PROXY, per-IP cap, TLS, identity → conn)
//!   → http::server (hyper, deadlines, drain) → http::service (route, dispatch)
//!   → request (token bound to the certificate, query) → limit (rate, step one)
//!   → body (caps, deadline, budgets) → ingest (decode + validate, settle)
//!   → forward (original bytes to the upstream or the spool) → response (error → status)
//! ```
//!
//! Non-write APIs take `passthrough` instead of ingest. Beside the path:
//! [`config`] (TOML into validated types), [`tls`], [`auth`], [`audit`], [`edge`] (PROXY,
//! caps, phases), [`framing`] (smuggling), [`upstream`], [`spool`], [`reload`], [`sandbox`],
//! [`split`] (`--split`), [`telemetry`] (metric names), [`run`] (`oneway run`'s process) and
//! [`tools`] (the subcommands that are not the server).

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
