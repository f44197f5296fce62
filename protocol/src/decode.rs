//! `Content-Encoding` decoding with a hard cap on the decoded size.
//!
//! One code path for every decoder (the only place in the workspace that decodes a body):
//! [`Decoder::decode`] decodes a whole compressed body into a caller-supplied, reusable buffer,
//! growing it in bounded steps. More output than the caller's limit is
//! [`DecodeError::TooLarge`], never a truncation. A size the input declares (gzip's ISIZE) is
//! only a hint for the first allocation, capped by the limit and by deflate's largest
//! expansion of the input (1032:1).
//!
//! - `identity`: no copy; the body itself is returned (after the size check).
//! - `gzip` (and `x-gzip`): RFC 1952, header parsed here, CRC32 and ISIZE of every member
//!   checked; multi-member streams are accepted, anything after the last member that is not
//!   another member is [`DecodeError::TrailingGarbage`]. A header's optional extra field, file
//!   name and comment are bytes nobody decodes, so they are [`DecodeError::Undecoded`]; its
//!   header CRC is checked, as Go's reader checks it.
//! - `deflate`: the zlib format of RFC 1950 (what RFC 9110 means by it), Adler-32 checked; a
//!   preset dictionary is [`DecodeError::Undecoded`].
//! - `zstd`: RFC 8878 frames, several frames accepted; a skippable frame (bytes the decoder
//!   jumps over) is [`DecodeError::Undecoded`]. The window is capped at 8 MiB (RFC 9659): each
//!   frame header is read here first and a frame declaring a larger window is
//!   [`DecodeError::WindowTooLarge`] before the decompressor sees it (which is also configured
//!   with the same cap, so it can never allocate a larger window).
//!
//! gzip and deflate streams are inflated by this crate's own strict decoder
//! (`inflate.rs`: safe Rust, it accepts exactly what zlib and Go's `compress/flate` accept,
//! compared with zlib-rs on every input by the `decode` fuzz target); zstd by the zstd
//! library.
//!
//! No byte of a body is forwarded unless it was decoded or checked here: DataKit sends none of
//! the refused forms.
//!
//! Errors fall into three classes ([`DecodeError::class`]) for the gateway's 413/400/415.
//! Cancel safety: not applicable (synchronous). A `Decoder` holds the decompressor states so
//! they are allocated once per worker, not per request.
#![expect(
    clippy::disallowed_types,
    reason = "the one module allowed to use raw decompressors: every other path comes through it"
)]

use core::fmt;

use crate::inflate::{Fault, Inflater, SLACK};
use zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

/// The largest zstd window accepted: 8 MiB (RFC 9659).
pub const ZSTD_MAX_WINDOW: u64 = 1 << 23;

/// Smallest step by which the output buffer grows.
const MIN_STEP: usize = 64 << 10;

/// A supported `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// No encoding.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// zlib-wrapped deflate (RFC 1950).
    Deflate,
    /// zstd (RFC 8878).
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value; `None` (no header) is identity.
    ///
    /// Case-insensitive, surrounding whitespace ignored. A list of codings (`gzip, zstd`) is
    /// [`DecodeError::Stacked`]; an unknown coding is [`DecodeError::Unsupported`].
    pub fn from_header(value: Option<&[u8]>) -> Result<Encoding, DecodeError> {
        let Some(value) = value else {
            return Ok(Encoding::Identity);
        };
        let value = value.trim_ascii();
        if value.contains(&b',') {
            return Err(DecodeError::Stacked);
        }
        let eq = |name: &[u8]| value.eq_ignore_ascii_case(name);
        if value.is_empty() || eq(b"identity") {
            Ok(Encoding::Identity)
        } else if eq(b"gzip") || eq(b"x-gzip") {
            Ok(Encoding::Gzip)
        } else if eq(b"zstd") {
            Ok(Encoding::Zstd)
        } else if eq(b"deflate") {
            Ok(Encoding::Deflate)
        } else {
            Err(DecodeError::Unsupported)
        }
    }

    /// The canonical token.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure a [`DecodeError`] is, for choosing a response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorClass {
    /// Over a size limit (413).
    TooLarge,
    /// Malformed compressed data (400).
    Corrupt,
    /// An encoding we do not decode (415).
    Unsupported,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The `Content-Encoding` is not one of identity, gzip, deflate, zstd.
    #[error("unsupported Content-Encoding (supported: identity, gzip, deflate, zstd)")]
    Unsupported,
    /// More than one coding was applied.
    #[error("stacked Content-Encoding is not supported: apply a single coding")]
    Stacked,
    /// The decoded body is larger than the limit.
    #[error("decoded body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The caller's limit.
        limit: usize,
    },
    /// A zstd frame declares a window larger than 8 MiB.
    #[error("zstd frame at byte {offset} declares a {window}-byte window; the limit is 8 MiB")]
    WindowTooLarge {
        /// Offset of the frame in the compressed body.
        offset: usize,
        /// The declared window size.
        window: u64,
    },
    /// The compressed data is malformed.
    #[error("{encoding} data is corrupt near compressed byte {offset}: {reason}")]
    Corrupt {
        /// The encoding.
        encoding: Encoding,
        /// Approximate offset in the compressed body.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The compressed data ends before its stream does.
    #[error("{encoding} data is truncated")]
    Truncated {
        /// The encoding.
        encoding: Encoding,
    },
    /// Bytes that no decoder reads (a gzip extra field, name or comment, a zstd skippable
    /// frame): refused, so that nothing unchecked is forwarded.
    #[error("{encoding} data at byte {offset} carries {what}, bytes that are never decoded")]
    Undecoded {
        /// The encoding.
        encoding: Encoding,
        /// Offset of the bytes in the compressed body.
        offset: usize,
        /// What they are.
        what: &'static str,
    },
    /// Bytes after the end of the compressed stream.
    #[error("{encoding} data has trailing bytes after the end of the stream at byte {offset}")]
    TrailingGarbage {
        /// The encoding.
        encoding: Encoding,
        /// Offset of the first trailing byte.
        offset: usize,
    },
}

impl DecodeError {
    /// The class of the error.
    pub fn class(&self) -> DecodeErrorClass {
        match self {
            DecodeError::Unsupported | DecodeError::Stacked => DecodeErrorClass::Unsupported,
            DecodeError::TooLarge { .. } | DecodeError::WindowTooLarge { .. } => {
                DecodeErrorClass::TooLarge
            }
            DecodeError::Corrupt { .. }
            | DecodeError::Truncated { .. }
            | DecodeError::Undecoded { .. }
            | DecodeError::TrailingGarbage { .. } => DecodeErrorClass::Corrupt,
        }
    }

    /// A stable `snake_case` label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Unsupported => "unsupported_encoding",
            DecodeError::Stacked => "stacked_encoding",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::WindowTooLarge { .. } => "zstd_window_too_large",
            DecodeError::Corrupt { .. } => "corrupt",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::Undecoded { .. } => "undecoded_bytes",
            DecodeError::TrailingGarbage { .. } => "trailing_garbage",
        }
    }
}

/// Reusable decompressor state. Create one per worker and reuse it for every body.
pub struct Decoder {
    inflate: Option<Box<Inflater>>,
    zstd: Option<DCtx<'static>>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("inflate", &self.inflate.is_some())
            .field("zstd", &self.zstd.is_some())
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder; decompressor states are created on first use.
    pub fn new() -> Decoder {
        Decoder {
            inflate: None,
            zstd: None,
        }
    }

    /// Decodes `input` with `encoding` and returns the decoded bytes: `input` itself for
    /// identity, the front of `out` otherwise. At most `limit` decoded bytes.
    ///
    /// `out` is scratch space, reused from call to call: after the call it may be longer than
    /// the decoded bytes (gzip and deflate keep it zero-filled ahead of the output, so that a
    /// reused buffer is not cleared again). Use the returned slice.
    pub fn decode<'a>(
        &mut self,
        encoding: Encoding,
        input: &'a [u8],
        out: &'a mut Vec<u8>,
        limit: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let end = match encoding {
            Encoding::Identity => {
                if input.len() > limit {
                    return Err(DecodeError::TooLarge { limit });
                }
                return Ok(input);
            }
            Encoding::Gzip => self.gzip(input, out, limit)?,
            Encoding::Deflate => self.zlib(input, out, limit)?,
            Encoding::Zstd => {
                out.clear();
                self.zstd(input, out, limit)?;
                out.len()
            }
        };
        Ok(&out[..end])
    }

    /// The inflater, and `out` made ready for up to `hint` bytes (never past `limit`).
    fn inflater(&mut self, out: &mut Vec<u8>, hint: usize, limit: usize) -> &mut Inflater {
        // A reused buffer keeps its zeroed room; a buffer from a larger limit is cut down, so
        // that the output's room never lets more than the limit through.
        out.truncate(limit.saturating_add(SLACK));
        let want = hint.min(limit).saturating_add(SLACK);
        if out.len() < want {
            out.resize(want, 0);
        }
        self.inflate.get_or_insert_with(Box::default)
    }

    fn gzip(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, DecodeError> {
        // The last member's ISIZE: the size of a single-member body (DataKit's), trusted only
        // as far as deflate can expand the input (1032:1), so that a lie costs no more than a
        // real bomb of the same size.
        let hint = match input.len().checked_sub(4).and_then(|at| input.get(at..)) {
            Some(s) => (u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
                .min(input.len().saturating_mul(1032)),
            None => 0,
        };
        let inflater = self.inflater(out, hint, limit);
        let mut pos = 0;
        let mut end = 0;
        loop {
            pos = gzip_header(input, pos)?;
            let member_start = end;
            let (used, member_end) = inflater
                .inflate(&input[pos..], out, end, limit)
                .map_err(|f| fault(Encoding::Gzip, pos, f, limit))?;
            pos += used;
            end = member_end;
            let Some(trailer) = input.get(pos..pos + 8) else {
                return Err(DecodeError::Truncated {
                    encoding: Encoding::Gzip,
                });
            };
            let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
            let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
            let member = &out[member_start..end];
            if crc32fast::hash(member) != crc {
                return Err(corrupt(Encoding::Gzip, pos, "CRC32 mismatch"));
            }
            if member.len() as u32 != size {
                return Err(corrupt(Encoding::Gzip, pos + 4, "ISIZE mismatch"));
            }
            pos += 8;
            if pos == input.len() {
                return Ok(end);
            }
            if !input[pos..].starts_with(&[0x1f, 0x8b]) {
                return Err(DecodeError::TrailingGarbage {
                    encoding: Encoding::Gzip,
                    offset: pos,
                });
            }
        }
    }

    /// The zlib format (RFC 1950): a two-byte header, the deflate stream, Adler-32.
    fn zlib(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, DecodeError> {
        const E: Encoding = Encoding::Deflate;
        let Some(&[cmf, flg]) = input.get(..2) else {
            return Err(DecodeError::Truncated { encoding: E });
        };
        if (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
            return Err(corrupt(E, 0, "incorrect header check"));
        }
        if cmf & 0x0f != 8 {
            return Err(corrupt(E, 0, "compression method is not deflate"));
        }
        if cmf >> 4 > 7 {
            return Err(corrupt(E, 0, "invalid window size"));
        }
        if flg & 0x20 != 0 {
            return Err(DecodeError::Undecoded {
                encoding: E,
                offset: 1,
                what: "a preset dictionary",
            });
        }
        let inflater = self.inflater(out, input.len().saturating_mul(4), limit);
        let (used, end) = inflater
            .inflate(&input[2..], out, 0, limit)
            .map_err(|f| fault(E, 2, f, limit))?;
        let pos = 2 + used;
        let Some(sum) = input.get(pos..pos + 4) else {
            return Err(DecodeError::Truncated { encoding: E });
        };
        if adler32(&out[..end]) != u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) {
            return Err(corrupt(E, pos, "Adler-32 mismatch"));
        }
        if pos + 4 != input.len() {
            return Err(DecodeError::TrailingGarbage {
                encoding: E,
                offset: pos + 4,
            });
        }
        Ok(end)
    }

    fn zstd(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DecodeError> {
        let dctx = match &mut self.zstd {
            Some(d) => d,
            None => {
                let mut d = DCtx::try_create().ok_or(DecodeError::Corrupt {
                    encoding: Encoding::Zstd,
                    offset: 0,
                    reason: "cannot create a zstd context",
                })?;
                d.set_parameter(DParameter::WindowLogMax(23))
                    .map_err(|_| corrupt(Encoding::Zstd, 0, "cannot cap the zstd window"))?;
                self.zstd.insert(d)
            }
        };
        let _ = dctx.reset(ResetDirective::SessionOnly);
        if input.is_empty() {
            return Err(DecodeError::Truncated {
                encoding: Encoding::Zstd,
            });
        }
        let mut pos = 0;
        while pos < input.len() {
            zstd_frame_check(input, pos)?;
            // Decode one frame.
            loop {
                grow(out, limit)?;
                let mut inb = InBuffer::around(&input[pos..]);
                let len = out.len();
                let mut outb = OutBuffer::around_pos(out, len);
                let hint = dctx
                    .decompress_stream(&mut outb, &mut inb)
                    .map_err(|code| {
                        corrupt(Encoding::Zstd, pos, zstd_safe::get_error_name(code))
                    })?;
                let (used, produced) = (inb.pos(), outb.pos() - len);
                pos += used;
                if out.len() > limit {
                    return Err(DecodeError::TooLarge { limit });
                }
                if hint == 0 {
                    break;
                }
                if used == 0 && produced == 0 && out.len() < out.capacity() {
                    return Err(DecodeError::Truncated {
                        encoding: Encoding::Zstd,
                    });
                }
                if pos == input.len() && produced == 0 && out.len() < out.capacity() {
                    return Err(DecodeError::Truncated {
                        encoding: Encoding::Zstd,
                    });
                }
            }
        }
        Ok(())
    }
}

fn corrupt(encoding: Encoding, offset: usize, reason: &'static str) -> DecodeError {
    DecodeError::Corrupt {
        encoding,
        offset,
        reason,
    }
}

/// Makes room in `out` for more output: doubles (at least [`MIN_STEP`]), never beyond
/// `limit + 1` bytes, so that one byte over the limit is detectable.
#[inline]
fn grow(out: &mut Vec<u8>, limit: usize) -> Result<(), DecodeError> {
    if out.len() < out.capacity() {
        return Ok(());
    }
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    let target = out
        .capacity()
        .saturating_mul(2)
        .max(MIN_STEP)
        .min(limit.saturating_add(1));
    out.reserve_exact(target - out.len());
    Ok(())
}

/// The decode error for an inflater's fault in a stream starting at `base`.
fn fault(encoding: Encoding, base: usize, f: Fault, limit: usize) -> DecodeError {
    match f {
        Fault::Corrupt(at, reason) => corrupt(encoding, base + at, reason),
        Fault::Truncated => DecodeError::Truncated { encoding },
        Fault::TooLarge => DecodeError::TooLarge { limit },
    }
}

/// Adler-32 (RFC 1950), in blocks short enough that the sums cannot overflow.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for block in data.chunks(5552) {
        for &x in block {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    b << 16 | a
}

/// Parses a gzip member header at `pos`; returns the offset of the deflate data.
fn gzip_header(input: &[u8], pos: usize) -> Result<usize, DecodeError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let truncated = DecodeError::Truncated {
        encoding: Encoding::Gzip,
    };
    let h = input.get(pos..pos + 10).ok_or(truncated)?;
    if h[0] != 0x1f || h[1] != 0x8b {
        return Err(corrupt(Encoding::Gzip, pos, "not a gzip header"));
    }
    if h[2] != 8 {
        return Err(corrupt(
            Encoding::Gzip,
            pos + 2,
            "compression method is not deflate",
        ));
    }
    let flags = h[3];
    if flags & 0xe0 != 0 {
        return Err(corrupt(
            Encoding::Gzip,
            pos + 3,
            "reserved header flags set",
        ));
    }
    for (flag, what) in [
        (FEXTRA, "a header extra field"),
        (FNAME, "a file name"),
        (FCOMMENT, "a comment"),
    ] {
        if flags & flag != 0 {
            return Err(DecodeError::Undecoded {
                encoding: Encoding::Gzip,
                offset: pos + 10,
                what,
            });
        }
    }
    let mut i = pos + 10;
    if flags & FHCRC != 0 {
        // The low 16 bits of the CRC-32 of the header before it (Go's reader checks it).
        let crc = input.get(i..i + 2).ok_or(truncated)?;
        let want = (crc32fast::hash(&input[pos..i]) & 0xffff) as u16;
        if u16::from_le_bytes([crc[0], crc[1]]) != want {
            return Err(corrupt(Encoding::Gzip, i, "header CRC mismatch"));
        }
        i += 2;
    }
    Ok(i)
}

/// Checks the zstd frame header at `pos`: the magic number (a skippable frame is refused), and
/// a window of at most 8 MiB.
fn zstd_frame_check(input: &[u8], pos: usize) -> Result<(), DecodeError> {
    let truncated = DecodeError::Truncated {
        encoding: Encoding::Zstd,
    };
    let magic = input.get(pos..pos + 4).ok_or(if pos == 0 {
        truncated
    } else {
        DecodeError::TrailingGarbage {
            encoding: Encoding::Zstd,
            offset: pos,
        }
    })?;
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic & 0xffff_fff0 == 0x184d_2a50 {
        return Err(DecodeError::Undecoded {
            encoding: Encoding::Zstd,
            offset: pos,
            what: "a skippable frame",
        });
    }
    if magic != 0xfd2f_b528 {
        return Err(if pos == 0 {
            corrupt(Encoding::Zstd, pos, "not a zstd frame")
        } else {
            DecodeError::TrailingGarbage {
                encoding: Encoding::Zstd,
                offset: pos,
            }
        });
    }
    let descriptor = *input.get(pos + 4).ok_or(truncated)?;
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    let dict_id_bytes = [0usize, 1, 2, 4][usize::from(descriptor & 3)];
    let window = if single_segment {
        // The window is the content size.
        let fcs_bytes = [1usize, 2, 4, 8][usize::from(fcs_flag)];
        let at = pos + 5 + dict_id_bytes;
        let fcs = input.get(at..at + fcs_bytes).ok_or(truncated)?;
        let mut v = [0u8; 8];
        v[..fcs_bytes].copy_from_slice(fcs);
        let size = u64::from_le_bytes(v);
        if fcs_bytes == 2 { size + 256 } else { size }
    } else {
        let wd = *input.get(pos + 5).ok_or(truncated)?;
        let log = 10 + u64::from(wd >> 3);
        let base = 1u64 << log;
        base + (base / 8) * u64::from(wd & 7)
    };
    if window > ZSTD_MAX_WINDOW {
        return Err(DecodeError::WindowTooLarge {
            offset: pos,
            window,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zst(data: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(data, 3).unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"cpu,host=a usage=1i 1\n"[i % 22]).collect()
    }

    fn decode(enc: Encoding, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        Decoder::new()
            .decode(enc, input, &mut out, limit)
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn from_header_parses_every_token() {
        assert_eq!(Encoding::from_header(None), Ok(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some(b" GZIP ")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some(b"x-gzip")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some(b"zstd")), Ok(Encoding::Zstd));
        assert_eq!(
            Encoding::from_header(Some(b"deflate")),
            Ok(Encoding::Deflate)
        );
        assert_eq!(
            Encoding::from_header(Some(b"identity")),
            Ok(Encoding::Identity)
        );
        assert_eq!(
            Encoding::from_header(Some(b"br")),
            Err(DecodeError::Unsupported)
        );
        assert_eq!(
            Encoding::from_header(Some(b"gzip, zstd")),
            Err(DecodeError::Stacked)
        );
        assert_eq!(
            Encoding::from_header(Some(b"gzip,gzip")),
            Err(DecodeError::Stacked)
        );
        assert_eq!(DecodeError::Stacked.class(), DecodeErrorClass::Unsupported);
    }

    #[test]
    fn round_trips_every_encoding() {
        let data = sample(300_000);
        assert_eq!(decode(Encoding::Identity, &data, data.len()).unwrap(), data);
        assert_eq!(
            decode(Encoding::Gzip, &gz(&data), data.len()).unwrap(),
            data
        );
        assert_eq!(
            decode(Encoding::Deflate, &zlib(&data), data.len()).unwrap(),
            data
        );
        assert_eq!(
            decode(Encoding::Zstd, &zst(&data), data.len()).unwrap(),
            data
        );
        assert_eq!(decode(Encoding::Gzip, &gz(b""), 0).unwrap(), b"");
    }

    #[test]
    fn over_limit_is_an_error_for_every_encoding() {
        let data = sample(100_000);
        let limit = data.len() - 1;
        let too_large = Err(DecodeError::TooLarge { limit });
        assert_eq!(decode(Encoding::Identity, &data, limit), too_large);
        assert_eq!(decode(Encoding::Gzip, &gz(&data), limit), too_large);
        assert_eq!(decode(Encoding::Deflate, &zlib(&data), limit), too_large);
        assert_eq!(decode(Encoding::Zstd, &zst(&data), limit), too_large);
    }

    #[test]
    fn gzip_bomb_stops_at_limit_with_bounded_buffer() {
        let bomb = gz(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10);
        let mut out = Vec::new();
        let r = Decoder::new().decode(Encoding::Gzip, &bomb, &mut out, 1 << 20);
        assert_eq!(r, Err(DecodeError::TooLarge { limit: 1 << 20 }));
        assert!(
            out.capacity() <= (1 << 20) + SLACK,
            "capacity {}",
            out.capacity()
        );
    }

    #[test]
    fn a_stream_only_a_lenient_inflater_accepts_is_refused() {
        // Found by fuzzing libdeflate against this decoder (docs/performance.md): libdeflate
        // decodes it, zlib and Go's compress/flate (Guance) refuse it, and so must oneway.
        let hex = "1f8b08000000000000ff4b2e28d5c9c82f2eb14d54282d4e4c4f8d2f2d4e2db235cc5430343740075cc9a38a47158f2a1e553caa785cf1a8e251c583493100d69053acca080000";
        let body: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert!(matches!(
            decode(Encoding::Gzip, &body, 1 << 20),
            Err(DecodeError::Corrupt { .. })
        ));
    }

    #[test]
    fn gzip_multi_member_accepted_trailing_garbage_rejected() {
        let mut two = gz(b"first ");
        two.extend(gz(b"second"));
        assert_eq!(decode(Encoding::Gzip, &two, 100).unwrap(), b"first second");
        let mut garbage = gz(b"data");
        garbage.extend_from_slice(b"junk");
        assert!(matches!(
            decode(Encoding::Gzip, &garbage, 100),
            Err(DecodeError::TrailingGarbage { .. })
        ));
        let mut zeros = gz(b"data");
        zeros.push(0);
        assert_eq!(
            decode(Encoding::Gzip, &zeros, 100).unwrap_err().class(),
            DecodeErrorClass::Corrupt
        );
    }

    #[test]
    fn gzip_corruption_detected() {
        let good = gz(&sample(10_000));
        let mut crc = good.clone();
        let n = crc.len();
        crc[n - 8] ^= 1;
        assert_eq!(
            decode(Encoding::Gzip, &crc, 1 << 20),
            Err(corrupt(Encoding::Gzip, n - 8, "CRC32 mismatch"))
        );
        let mut size = good.clone();
        size[n - 1] ^= 1;
        assert!(matches!(
            decode(Encoding::Gzip, &size, 1 << 20),
            Err(DecodeError::Corrupt { .. })
        ));
        for cut in [0, 5, 12, n / 2, n - 4] {
            let r = decode(Encoding::Gzip, &good[..cut], 1 << 20);
            assert_eq!(
                r.unwrap_err().class(),
                DecodeErrorClass::Corrupt,
                "cut at {cut}"
            );
        }
        let mut method = good.clone();
        method[2] = 7;
        assert!(matches!(
            decode(Encoding::Gzip, &method, 1 << 20),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(decode(Encoding::Gzip, b"not gzip at all", 1 << 20).is_err());
    }

    #[test]
    fn gzip_undecoded_header_fields_refused_and_header_crc_checked() {
        let build = |b: flate2::GzBuilder| {
            let mut e = b.write(Vec::new(), flate2::Compression::fast());
            e.write_all(b"payload").unwrap();
            e.finish().unwrap()
        };
        for (body, what) in [
            (
                build(flate2::GzBuilder::new().extra(vec![1, 2, 3])),
                "a header extra field",
            ),
            (
                build(flate2::GzBuilder::new().filename("batch.lp")),
                "a file name",
            ),
            (
                build(flate2::GzBuilder::new().comment("from a test")),
                "a comment",
            ),
        ] {
            assert_eq!(
                decode(Encoding::Gzip, &body, 100),
                Err(DecodeError::Undecoded {
                    encoding: Encoding::Gzip,
                    offset: 10,
                    what
                })
            );
        }
        // FHCRC: the low 16 bits of the header's CRC-32, as Go's reader checks it.
        let plain = gz(b"payload");
        let mut with_crc = plain[..10].to_vec();
        with_crc[3] |= 2;
        let crc = (crc32fast::hash(&with_crc) & 0xffff) as u16;
        with_crc.extend_from_slice(&crc.to_le_bytes());
        with_crc.extend_from_slice(&plain[10..]);
        assert_eq!(decode(Encoding::Gzip, &with_crc, 100).unwrap(), b"payload");
        with_crc[10] ^= 1;
        assert!(matches!(
            decode(Encoding::Gzip, &with_crc, 100),
            Err(DecodeError::Corrupt {
                reason: "header CRC mismatch",
                ..
            })
        ));
    }

    #[test]
    fn deflate_trailing_garbage_and_raw_deflate_rejected() {
        let mut z = zlib(b"abc");
        z.push(b'x');
        assert!(matches!(
            decode(Encoding::Deflate, &z, 100),
            Err(DecodeError::TrailingGarbage { .. })
        ));
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(b"abc").unwrap();
        let raw = raw.finish().unwrap();
        assert!(decode(Encoding::Deflate, &raw, 100).is_err());
    }

    #[test]
    fn deflate_header_adler32_and_dictionary_checked() {
        // Adler-32 of "Wikipedia" (RFC 1950's example elsewhere): 0x11E60398.
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        // Sums past one block of 5552 bytes stay reduced.
        let long = vec![0xffu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&long), (b << 16 | a) as u32);

        let data = sample(10_000);
        let good = zlib(&data);
        assert_eq!(decode(Encoding::Deflate, &good, 1 << 20), Ok(data));
        let corrupt_reason = |input: &[u8]| match decode(Encoding::Deflate, input, 1 << 20) {
            Err(DecodeError::Corrupt { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        let mut bad_sum = good.clone();
        let n = bad_sum.len();
        bad_sum[n - 1] ^= 1;
        assert_eq!(corrupt_reason(&bad_sum), "Adler-32 mismatch");
        let mut bad_check = good.clone();
        bad_check[1] ^= 1;
        assert_eq!(corrupt_reason(&bad_check), "incorrect header check");
        // A preset dictionary (FDICT) with a valid header check: bytes nobody can decode.
        let fdict = [0x78, 0xbb, 0, 0, 0, 1, 0x03, 0x00];
        assert_eq!((0x78u16 << 8 | 0xbb) % 31, 0);
        assert!(matches!(
            decode(Encoding::Deflate, &fdict, 100),
            Err(DecodeError::Undecoded { .. })
        ));
        assert_eq!(
            decode(Encoding::Deflate, &good[..1], 100),
            Err(DecodeError::Truncated {
                encoding: Encoding::Deflate
            })
        );
    }

    #[test]
    fn a_lying_isize_costs_no_more_than_a_real_bomb_of_its_size() {
        // A 4 GiB ISIZE on a tiny member: the first allocation is capped at 1032 bytes per
        // input byte (deflate's largest expansion), not at the limit.
        let mut lie = gz(b"abc");
        let n = lie.len();
        lie[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut out = Vec::new();
        let r = Decoder::new().decode(Encoding::Gzip, &lie, &mut out, 64 << 20);
        assert!(
            matches!(
                r,
                Err(DecodeError::Corrupt {
                    reason: "ISIZE mismatch",
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(
            out.capacity() <= (n * 1032).max(64 << 10) + SLACK,
            "capacity {} for a {n}-byte body",
            out.capacity()
        );
    }

    #[test]
    fn a_reused_buffer_from_a_larger_limit_lets_nothing_past_the_new_one() {
        let data = sample(200_000);
        let body = gz(&data);
        let mut d = Decoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.decode(Encoding::Gzip, &body, &mut out, 1 << 20)
                .map(<[u8]>::len),
            Ok(data.len())
        );
        assert!(out.len() >= data.len());
        assert_eq!(
            d.decode(Encoding::Gzip, &body, &mut out, 100_000),
            Err(DecodeError::TooLarge { limit: 100_000 })
        );
        assert!(out.len() <= 100_000 + SLACK);
        // And decoding again into it gives the same bytes.
        assert_eq!(
            d.decode(Encoding::Gzip, &body, &mut out, 1 << 20),
            Ok(&data[..])
        );
    }

    #[test]
    fn zstd_window_over_8mib_rejected_before_decoding() {
        // A frame header declaring a 2 GiB window (window descriptor exponent 21, log 31).
        let mut frame = 0xfd2f_b528u32.to_le_bytes().to_vec();
        frame.push(0x00); // no FCS, not single segment, no dict
        frame.push(21 << 3);
        frame.extend_from_slice(&[0; 16]);
        assert_eq!(
            decode(Encoding::Zstd, &frame, 1 << 30),
            Err(DecodeError::WindowTooLarge {
                offset: 0,
                window: 1 << 31
            })
        );
        // A real stream compressed with a 16 MiB window (long distance matching).
        let data = sample(20 << 20);
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(24))
            .unwrap();
        let big_window = c.compress(&data).unwrap();
        let r = decode(Encoding::Zstd, &big_window, 64 << 20);
        assert_eq!(r.unwrap_err().class(), DecodeErrorClass::TooLarge);
        // Single-segment frame declaring 9 MiB of content.
        let mut frame = 0xfd2f_b528u32.to_le_bytes().to_vec();
        frame.push(0xa0); // FCS flag 2 (4 bytes), single segment
        frame.extend_from_slice(&(9u32 << 20).to_le_bytes());
        assert!(matches!(
            decode(Encoding::Zstd, &frame, 1 << 30),
            Err(DecodeError::WindowTooLarge { .. })
        ));
    }

    #[test]
    fn zstd_multi_frame_accepted_skippable_and_garbage_refused() {
        let mut two = zst(b"one ");
        two.extend(zst(b"two"));
        assert_eq!(decode(Encoding::Zstd, &two, 100).unwrap(), b"one two");
        let mut skippable = 0x184d_2a53u32.to_le_bytes().to_vec();
        skippable.extend_from_slice(&3u32.to_le_bytes());
        skippable.extend_from_slice(b"xyz");
        let mut hidden = zst(b"one ");
        hidden.extend(skippable);
        assert!(matches!(
            decode(Encoding::Zstd, &hidden, 100),
            Err(DecodeError::Undecoded {
                what: "a skippable frame",
                ..
            })
        ));
        let mut garbage = zst(b"data");
        garbage.extend_from_slice(b"junk");
        assert!(matches!(
            decode(Encoding::Zstd, &garbage, 100),
            Err(DecodeError::TrailingGarbage { .. })
        ));
        let good = zst(&sample(50_000));
        let r = decode(Encoding::Zstd, &good[..good.len() / 2], 1 << 20);
        assert_eq!(r.unwrap_err().class(), DecodeErrorClass::Corrupt);
        assert_eq!(
            decode(Encoding::Zstd, b"", 10).unwrap_err().class(),
            DecodeErrorClass::Corrupt
        );
    }

    #[test]
    fn decoder_reuse_after_errors_is_clean() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let data = sample(10_000);
        assert!(
            d.decode(
                Encoding::Zstd,
                b"\x28\xb5\x2f\xfd\x00garbage",
                &mut out,
                1 << 20
            )
            .is_err()
        );
        assert!(
            d.decode(Encoding::Gzip, &gz(&data)[..100], &mut out, 1 << 20)
                .is_err()
        );
        assert_eq!(
            d.decode(Encoding::Zstd, &zst(&data), &mut out, 1 << 20)
                .unwrap(),
            &data[..]
        );
        assert_eq!(
            d.decode(Encoding::Gzip, &gz(&data), &mut out, 1 << 20)
                .unwrap(),
            &data[..]
        );
    }
}
