//! `oneway-protocol`: every parser of untrusted bytes that a DataKit push contains, sans IO.
//!
//! The gateway hands this crate a request's body and headers' values and gets back a verdict;
//! there is no tokio, no socket, no clock here, and nothing that can block.
//!
//! - [`decode`]: `Content-Encoding` (identity, gzip, deflate, zstd) into a reusable buffer,
//!   with a hard cap on the decoded size.
//! - [`Validator`]: validates a decoded batch (protobuf `PBPoints`, line protocol, JSON)
//!   against the Guance point model and the category's rules. A batch is all-or-nothing: a
//!   [`Verdict`] with the point count, or a [`Rejection`] naming the first bad point. A batch is
//!   accepted only if Guance's own decoder reads it as exactly the points counted:
//!   [`Validator::read`] returns that reading ([`reading`]), which the equivalence test
//!   compares with Guance's decoder.
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
mod inflate;
mod json;
mod json_string;
mod lp;
mod pb;
mod point;
pub mod proxy_header;
pub mod reading;
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
    /// `application/line-protocol`, and every other or missing type (as Guance reads them).
    LineProtocol,
    /// `application/json`.
    Json,
}

/// A `Content-Type` this crate cannot validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "Content-Type application/pbjson is not supported (Guance's decoder cannot read it): send \
     application/protobuf; proto=com.guance.Point, application/line-protocol or application/json"
)]
pub struct UnsupportedContentType;

/// DataKit's protobuf `Content-Type`, the only spelling Guance reads as protobuf.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/protobuf; proto=com.guance.Point";
/// The `Content-Type` of line protocol.
pub const LINE_PROTOCOL_CONTENT_TYPE: &str = "application/line-protocol";
/// The `Content-Type` of JSON points.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Protobuf-JSON points: Guance maps the type, then cannot decode it.
const PBJSON_CONTENT_TYPE: &[u8] = b"application/pbjson; proto=com.guance.Point";

impl BodyKind {
    /// Maps a `Content-Type` header value to a body kind exactly as Guance's decoder does
    /// (cliutils `point.HTTPContentType`): a switch on the exact string, so case, spacing and
    /// parameters count, and everything else, a missing header included, is line protocol.
    /// (`application/x-protobuf` or `application/json; charset=utf-8` are line protocol to
    /// Guance, so they are validated as line protocol here: a body is only ever checked by the
    /// parser Guance will use.) `application/pbjson; proto=com.guance.Point` is refused: Guance
    /// maps it and then cannot decode it.
    pub fn from_content_type(value: Option<&[u8]>) -> Result<BodyKind, UnsupportedContentType> {
        match value {
            Some(v) if v == PROTOBUF_CONTENT_TYPE.as_bytes() => Ok(BodyKind::Protobuf),
            Some(v) if v == JSON_CONTENT_TYPE.as_bytes() => Ok(BodyKind::Json),
            Some(PBJSON_CONTENT_TYPE) => Err(UnsupportedContentType),
            _ => Ok(BodyKind::LineProtocol),
        }
    }

    /// The `Content-Type` to forward: the one spelling Guance maps to this parser.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyKind::Protobuf => PROTOBUF_CONTENT_TYPE,
            BodyKind::LineProtocol => LINE_PROTOCOL_CONTENT_TYPE,
            BodyKind::Json => JSON_CONTENT_TYPE,
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

    /// Validates a decoded batch of `kind` for `category`. `precision` (the request's
    /// `?precision=`) applies to every timestamp, as Guance applies it to every format.
    pub fn validate(
        &mut self,
        kind: BodyKind,
        category: Category,
        precision: Precision,
        body: &[u8],
    ) -> Result<Verdict, Rejection> {
        self.validate_into(kind, category, precision, body, &mut ())
    }

    /// Validates a batch and returns, with the verdict, every point as Guance reads it.
    pub fn read(
        &mut self,
        kind: BodyKind,
        category: Category,
        precision: Precision,
        body: &[u8],
    ) -> Result<(Verdict, Vec<reading::Point>), Rejection> {
        let mut points = reading::Points::default();
        let verdict = self.validate_into(kind, category, precision, body, &mut points)?;
        Ok((verdict, points.0))
    }

    /// Validates a batch, handing each accepted point's reading to `sink`.
    pub fn validate_into<S: reading::Sink>(
        &mut self,
        kind: BodyKind,
        category: Category,
        precision: Precision,
        body: &[u8],
        sink: &mut S,
    ) -> Result<Verdict, Rejection> {
        self.checker.set_category(category);
        debug_assert_eq!(self.checker.category(), category);
        debug_assert_eq!(*self.checker.limits(), self.config.limits);
        match kind {
            BodyKind::Protobuf => pb::validate(&mut self.checker, body, precision, sink),
            BodyKind::LineProtocol => lp::validate(&mut self.checker, body, precision, sink),
            BodyKind::Json => json::validate(&mut self.checker, body, precision, sink),
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
    fn content_type_maps_to_body_kind_as_guance_does() {
        let kind = |v: &str| BodyKind::from_content_type(Some(v.as_bytes()));
        assert_eq!(kind(PROTOBUF_CONTENT_TYPE), Ok(BodyKind::Protobuf));
        assert_eq!(kind(JSON_CONTENT_TYPE), Ok(BodyKind::Json));
        assert_eq!(kind(LINE_PROTOCOL_CONTENT_TYPE), Ok(BodyKind::LineProtocol));
        // Every other spelling is line protocol to Guance, so it is line protocol here.
        for other in [
            "application/x-protobuf",
            "application/protobuf",
            "application/protobuf;proto=com.guance.Point",
            "Application/Protobuf; proto=com.guance.Point",
            "application/protobuf; proto=com.guance.Point ",
            "application/json; charset=utf-8",
            "Application/JSON",
            "text/plain",
            "",
        ] {
            assert_eq!(kind(other), Ok(BodyKind::LineProtocol), "{other:?}");
        }
        assert_eq!(
            kind("application/pbjson; proto=com.guance.Point"),
            Err(UnsupportedContentType)
        );
        assert_eq!(
            BodyKind::from_content_type(None),
            Ok(BodyKind::LineProtocol)
        );
        for k in [BodyKind::Protobuf, BodyKind::LineProtocol, BodyKind::Json] {
            assert_eq!(kind(k.content_type()), Ok(k));
        }
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
        let v = v
            .validate(BodyKind::LineProtocol, Category::Metric, n, body)
            .unwrap();
        assert_eq!(v.counted.metric_string_field, 1);
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
