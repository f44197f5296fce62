//! HTTP/1.1 on an authenticated TLS connection: [`server`] drives hyper's connection under
//! oneway's deadlines; [`service`] routes and dispatches each request.

pub(crate) mod server;
pub(crate) mod service;
