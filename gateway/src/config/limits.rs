//! `[limits]`: the body caps (as sent, decoded, uploads) and the point-model limits every
//! decoded point is held to.

use oneway_protocol::Limits;
use serde::Deserialize;

use super::{Problems, nonzero};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_body_bytes: Option<u64>,
    max_decoded_bytes: Option<u64>,
    max_upload_bytes: Option<u64>,
    max_tags: Option<u32>,
    max_fields: Option<u32>,
    max_key_bytes: Option<u32>,
    max_tag_value_bytes: Option<u32>,
    max_field_value_bytes: Option<u32>,
    max_measurement_bytes: Option<u32>,
    max_line_bytes: Option<u32>,
}

/// Default cap on a compressed body: 16 MiB (DataKit sends at most 1 MiB before gzip).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// Default cap on a decoded body: 64 MiB (DataWay's own body limit).
pub const DEFAULT_MAX_DECODED_BYTES: usize = 64 << 20;
/// Default cap on a multipart upload (profiling, session replay): 32 MiB, as DataKit sends.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 32 << 20;

/// Body caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Compressed (as sent) body.
    pub max_body_bytes: usize,
    /// Decoded body.
    pub max_decoded_bytes: usize,
    /// Multipart uploads.
    pub max_upload_bytes: usize,
}

impl RawLimits {
    /// Checks `[limits]`.
    pub(super) fn check(&self, p: &mut Problems) -> (BodyLimits, Limits) {
        let lim = self;
        let size = |p: &mut Problems, key: &str, v: Option<u64>, d: usize| -> usize {
            let v = nonzero(p, &format!("limits.{key}"), v, d as u64);
            usize::try_from(v).unwrap_or(usize::MAX)
        };
        let body = BodyLimits {
            max_body_bytes: size(
                p,
                "max_body_bytes",
                lim.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
            ),
            max_decoded_bytes: size(
                p,
                "max_decoded_bytes",
                lim.max_decoded_bytes,
                DEFAULT_MAX_DECODED_BYTES,
            ),
            max_upload_bytes: size(
                p,
                "max_upload_bytes",
                lim.max_upload_bytes,
                DEFAULT_MAX_UPLOAD_BYTES,
            ),
        };
        let d = Limits::default();
        let limits = Limits {
            max_tags: nonzero(p, "limits.max_tags", lim.max_tags, d.max_tags),
            max_fields: nonzero(p, "limits.max_fields", lim.max_fields, d.max_fields),
            max_key_bytes: nonzero(
                p,
                "limits.max_key_bytes",
                lim.max_key_bytes,
                d.max_key_bytes,
            ),
            max_tag_value_bytes: nonzero(
                p,
                "limits.max_tag_value_bytes",
                lim.max_tag_value_bytes,
                d.max_tag_value_bytes,
            ),
            max_field_value_bytes: nonzero(
                p,
                "limits.max_field_value_bytes",
                lim.max_field_value_bytes,
                d.max_field_value_bytes,
            ),
            max_measurement_bytes: nonzero(
                p,
                "limits.max_measurement_bytes",
                lim.max_measurement_bytes,
                d.max_measurement_bytes,
            ),
            max_line_bytes: nonzero(
                p,
                "limits.max_line_bytes",
                lim.max_line_bytes,
                d.max_line_bytes,
            ),
        };
        (body, limits)
    }
}
