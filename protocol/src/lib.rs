//! `oneway-protocol`: every parser of untrusted bytes that a DataKit push contains, sans IO.
//!
//! The gateway hands this crate a request's body and headers' values and gets back a verdict;
//! there is no tokio, no socket, no clock here, and nothing that can block.
//!
//! - [`decode`]: `Content-Encoding` (identity, gzip, deflate, zstd) into a reusable buffer,
//!   with a hard cap on the decoded size.
//! - [`Validator`]: validates a decoded batch (protobuf `PBPoints`, line protocol, JSON)
//!   against the Guance point model and the category's rules. A batch is all-or-nothing: a
//!   [`Verdict`] with the point count, or a [`Rejection`] naming the first bad point.
//! - [`proxy_header`]: the PROXY protocol header a load balancer sends before TLS.
//! - [`spool_record`]: the gateway's spool format (records read back from disk after a crash).
//! - [`fuzzing`]: entry points for the fuzz targets, so each target is one line and the
//!   committed corpora are replayed by ordinary tests.
//!
//! # Invariants
//!
//! - No panic and no unbounded allocation on any input. Validators allocate nothing per point:
//!   their scratch buffers grow to the largest point seen and are reused.
//! - Validation never copies the payload; the gateway forwards the original body.
//! - Errors carry byte offsets and line numbers as numbers, and quote at most
//!   [`verdict::EXCERPT_BYTES`] bytes of input.

pub mod decode;
pub mod fuzzing;
mod json;
mod lp;
mod pb;
mod point;
pub mod proxy_header;
pub mod spool_record;
mod swar;
pub mod verdict;

pub use decode::{DecodeError, DecodeErrorClass, Decoder, Encoding};
pub use verdict::{
    Action, Category, Limits, Position, Precision, Rejection, Rule, RuleActions, RuleCounts,
    ValidationConfig, Verdict,
};

use point::PointChecker;

/// The kind of body, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// `application/protobuf; proto=com.guance.Point` (`PBPoints`), DataKit's default.
    Protobuf,
    /// `application/line-protocol`, and any missing or unknown type (as DataWay does).
    LineProtocol,
    /// `application/json`.
    Json,
}

/// A `Content-Type` this crate cannot validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "Content-Type application/pbjson is not supported: send application/protobuf, \
     application/line-protocol or application/json"
)]
pub struct UnsupportedContentType;

impl BodyKind {
    /// Maps a `Content-Type` header value to a body kind. A missing or unknown type is line
    /// protocol (as Guance's DataWay treats it); `application/pbjson` is not supported yet.
    pub fn from_content_type(value: Option<&[u8]>) -> Result<BodyKind, UnsupportedContentType> {
        let Some(value) = value else {
            return Ok(BodyKind::LineProtocol);
        };
        let essence = match memchr::memchr(b';', value) {
            Some(i) => &value[..i],
            None => value,
        }
        .trim_ascii();
        let is = |t: &[u8]| essence.eq_ignore_ascii_case(t);
        if is(b"application/protobuf") || is(b"application/x-protobuf") {
            Ok(BodyKind::Protobuf)
        } else if is(b"application/json") {
            Ok(BodyKind::Json)
        } else if is(b"application/pbjson") {
            Err(UnsupportedContentType)
        } else {
            Ok(BodyKind::LineProtocol)
        }
    }

    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Protobuf => "protobuf",
            BodyKind::LineProtocol => "line_protocol",
            BodyKind::Json => "json",
        }
    }
}

/// Validates batches. Holds reusable scratch space: keep one per worker and reuse it.
#[derive(Debug)]
pub struct Validator {
    config: ValidationConfig,
    checker: PointChecker,
}

impl Validator {
    /// A validator with the given limits and rule actions.
    pub fn new(config: ValidationConfig) -> Validator {
        Validator {
            config,
            checker: PointChecker::new(config.limits, config.actions, Category::Metric),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ValidationConfig {
        &self.config
    }

    /// Replaces the configuration (for a reload); scratch space is kept where possible.
    pub fn set_config(&mut self, config: ValidationConfig) {
        self.config = config;
        self.checker.set_config(config.limits, config.actions);
    }

    /// Validates a decoded batch of `kind` for `category`. `precision` applies to line
    /// protocol timestamps only (protobuf and JSON are always nanoseconds).
    pub fn validate(
        &mut self,
        kind: BodyKind,
        category: Category,
        precision: Precision,
        body: &[u8],
    ) -> Result<Verdict, Rejection> {
        self.checker.set_category(category);
        debug_assert_eq!(self.checker.category(), category);
        debug_assert_eq!(*self.checker.limits(), self.config.limits);
        match kind {
            BodyKind::Protobuf => pb::validate(&mut self.checker, body),
            BodyKind::LineProtocol => lp::validate(&mut self.checker, body, precision),
            BodyKind::Json => json::validate(&mut self.checker, body),
        }
    }
}

impl Default for Validator {
    fn default() -> Self {
        Validator::new(ValidationConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_maps_to_body_kind() {
        let kind = |v: &str| BodyKind::from_content_type(Some(v.as_bytes()));
        assert_eq!(
            kind("application/protobuf; proto=com.guance.Point"),
            Ok(BodyKind::Protobuf)
        );
        assert_eq!(kind("Application/JSON; charset=utf-8"), Ok(BodyKind::Json));
        assert_eq!(
            kind("application/line-protocol"),
            Ok(BodyKind::LineProtocol)
        );
        assert_eq!(kind("text/plain"), Ok(BodyKind::LineProtocol));
        assert_eq!(
            kind("application/pbjson; proto=com.guance.Point"),
            Err(UnsupportedContentType)
        );
        assert_eq!(
            BodyKind::from_content_type(None),
            Ok(BodyKind::LineProtocol)
        );
    }

    #[test]
    fn validator_switches_category_between_batches() {
        let mut v = Validator::default();
        let n = Precision::Nanoseconds;
        let body = b"m f=\"s\"\n";
        assert!(
            v.validate(BodyKind::LineProtocol, Category::Logging, n, body)
                .is_ok()
        );
        let e = v
            .validate(BodyKind::LineProtocol, Category::Metric, n, body)
            .unwrap_err();
        assert_eq!(e.rule, Rule::MetricStringField);
    }

    #[test]
    fn set_config_changes_limits() {
        let mut v = Validator::default();
        let body = b"m,a=b,c=d f=1i\n";
        let n = Precision::Nanoseconds;
        assert!(
            v.validate(BodyKind::LineProtocol, Category::Metric, n, body)
                .is_ok()
        );
        let mut config = *v.config();
        config.limits.max_tags = 1;
        v.set_config(config);
        let e = v
            .validate(BodyKind::LineProtocol, Category::Metric, n, body)
            .unwrap_err();
        assert_eq!(e.rule, Rule::TooManyTags);
    }
}
