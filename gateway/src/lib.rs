//! `oneway-gateway`: the mTLS front door in front of the Guance cluster.
//!
//! Built on `oneway-protocol` (every byte a push carries is decoded and validated there).
//! Modules: [`config`] (TOML into validated types), [`auth`] (tokens bound to client
//! certificate identities), [`certs`] (a dev/test PKI).

pub mod auth;
pub mod certs;
pub mod config;
