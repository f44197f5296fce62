//! The on-disk format of the gateway's spool segments and records (documented for operators
//! in `docs/spool.md`). It lives here, with the other parsers of bytes the gateway did not
//! write in this very moment, so that it is fuzzed like them.
//!
//! ```text
//! segment  = header record*
//! header   = "OWSPOOL1" first_seq:u64le                      (16 bytes)
//! record   = len:u32le crc:u32le seq:u64le payload[len]      (16 bytes + len)
//!            crc = CRC32C over len, seq and payload (everything but the crc field)
//! payload  = appended_unix_ms:u64le
//!            path_len:u16le path                   path and query, with the mapped token
//!            header_count:u16le (name_len:u16le name value_len:u16le value)*
//!            body                                  the original body bytes, to the end
//! ```
//!
//! Records in a segment have consecutive sequence numbers starting at the header's
//! `first_seq`. Parsing never panics and never allocates more than the frame's own length,
//! which is capped at [`MAX_PAYLOAD`] before anything is read.

use bytes::{Bytes, BytesMut};

/// Segment magic: format version 1.
pub const MAGIC: &[u8; 8] = b"OWSPOOL1";
/// Segment header length.
pub const SEGMENT_HEADER: usize = 16;
/// Record frame header length.
pub const FRAME_HEADER: usize = 16;
/// The largest payload a record may have (bodies are capped far below this by the config).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// One spooled request, everything needed to replay it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number (assigned at append).
    pub seq: u64,
    /// When it was appended, Unix milliseconds.
    pub appended_unix_ms: u64,
    /// Path and query as sent upstream (it holds the mapped token).
    pub path: String,
    /// Headers as sent upstream.
    pub headers: Vec<(String, Bytes)>,
    /// The original body bytes.
    pub body: Bytes,
}

/// A request to be appended: the encoded metadata and the body, framed by the log.
#[derive(Debug, Clone)]
pub struct Payload {
    /// `appended_unix_ms`, path and headers, encoded.
    pub meta: Vec<u8>,
    /// The original body.
    pub body: Bytes,
}

impl Payload {
    /// Encodes a request. Fails if the path, a header or the count does not fit the format
    /// (never for what the gateway forwards: paths and headers are far below 64 KiB).
    pub fn new<'a>(
        appended_unix_ms: u64,
        path: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: Bytes,
    ) -> Option<Payload> {
        let mut meta = Vec::with_capacity(64 + path.len());
        meta.extend_from_slice(&appended_unix_ms.to_le_bytes());
        put_u16_prefixed(&mut meta, path.as_bytes())?;
        let count_at = meta.len();
        meta.extend_from_slice(&[0, 0]);
        let mut count: u16 = 0;
        for (name, value) in headers {
            put_u16_prefixed(&mut meta, name.as_bytes())?;
            put_u16_prefixed(&mut meta, value)?;
            count = count.checked_add(1)?;
        }
        meta[count_at..count_at + 2].copy_from_slice(&count.to_le_bytes());
        if meta.len() + body.len() > MAX_PAYLOAD {
            return None;
        }
        Some(Payload { meta, body })
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.meta.len() + self.body.len()
    }

    /// Whether it is empty (never, for a real request: the metadata has fixed fields).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the framed record.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER + self.len()
    }

    /// Appends the framed record with sequence number `seq` to `out`.
    pub fn frame_into(&self, seq: u64, out: &mut Vec<u8>) {
        let len = u32::try_from(self.len()).unwrap_or(u32::MAX);
        let mut crc = crc32c::crc32c(&len.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &self.meta);
        crc = crc32c::crc32c_append(crc, &self.body);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&self.meta);
        out.extend_from_slice(&self.body);
    }
}

fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    let len = u16::try_from(bytes.len()).ok()?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Some(())
}

/// A segment header for `first_seq`.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// The `first_seq` of a segment header, if it is one.
pub fn parse_segment_header(bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..SEGMENT_HEADER)?;
    (&h[..8] == MAGIC).then(|| u64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8])))
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: the end of the data, or a torn write.
    #[error("record truncated")]
    Truncated,
    /// The length field is beyond [`MAX_PAYLOAD`].
    #[error("record length out of range")]
    BadLength,
    /// The checksum does not match.
    #[error("record checksum mismatch")]
    BadChecksum,
    /// The checksum matches but the payload is not a valid request encoding.
    #[error("record payload malformed")]
    BadPayload,
}

/// The frame at the start of `bytes`: its sequence number and total length, checksum
/// verified. Does not decode the payload.
pub fn check_frame(bytes: &[u8]) -> Result<(u64, usize), FrameError> {
    let h = bytes.get(..FRAME_HEADER).ok_or(FrameError::Truncated)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let seq = u64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8]));
    if len > MAX_PAYLOAD {
        return Err(FrameError::BadLength);
    }
    let payload = bytes
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(FrameError::Truncated)?;
    let mut actual = crc32c::crc32c(&h[..4]);
    actual = crc32c::crc32c_append(actual, &h[8..16]);
    actual = crc32c::crc32c_append(actual, payload);
    if actual != crc {
        return Err(FrameError::BadChecksum);
    }
    Ok((seq, FRAME_HEADER + len))
}

/// Decodes a checked frame (as returned by [`check_frame`]) into a [`Record`]; the body
/// shares `frame`'s buffer.
pub fn decode_frame(frame: &Bytes) -> Result<Record, FrameError> {
    let (seq, len) = check_frame(frame)?;
    let payload = frame.slice(FRAME_HEADER..len);
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], FrameError> {
        let s = payload.get(*at..*at + n).ok_or(FrameError::BadPayload)?;
        *at += n;
        Ok(s)
    };
    let u16_at = |at: &mut usize| -> Result<usize, FrameError> {
        let b = payload.get(*at..*at + 2).ok_or(FrameError::BadPayload)?;
        *at += 2;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let appended_unix_ms = u64::from_le_bytes(
        take(&mut at, 8)?
            .try_into()
            .map_err(|_| FrameError::BadPayload)?,
    );
    let n = u16_at(&mut at)?;
    let path = std::str::from_utf8(take(&mut at, n)?)
        .map_err(|_| FrameError::BadPayload)?
        .to_string();
    let count = u16_at(&mut at)?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = u16_at(&mut at)?;
        let name = std::str::from_utf8(take(&mut at, n)?)
            .map_err(|_| FrameError::BadPayload)?
            .to_string();
        let n = u16_at(&mut at)?;
        let start = at;
        take(&mut at, n)?;
        headers.push((name, payload.slice(start..at)));
    }
    Ok(Record {
        seq,
        appended_unix_ms,
        path,
        headers,
        body: payload.slice(at..),
    })
}

/// What a scan of a segment's bytes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `first_seq` from the header.
    pub first_seq: u64,
    /// `(seq, offset, length)` of each valid record, in order, up to the first problem.
    pub records: Vec<(u64, usize, usize)>,
    /// Where the valid prefix ends.
    pub valid_len: usize,
    /// The problem that ended the scan, if the data does not end exactly after a record.
    pub problem: Option<FrameError>,
    /// Whether a valid record follows the problem (corruption in the middle, not a torn tail).
    pub valid_after_problem: bool,
}

/// Why a segment cannot be scanned at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Shorter than a header: a segment whose creation was torn.
    #[error("segment shorter than its header")]
    Short,
    /// The header is not ours.
    #[error("segment header is not a spool header")]
    BadHeader,
}

/// Scans segment bytes: records must be valid, consecutive from `first_seq`.
pub fn scan_segment(bytes: &[u8]) -> Result<Scan, SegmentError> {
    if bytes.len() < SEGMENT_HEADER {
        return Err(SegmentError::Short);
    }
    let first_seq = parse_segment_header(bytes).ok_or(SegmentError::BadHeader)?;
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER;
    let mut expected = first_seq;
    let mut problem = None;
    while at < bytes.len() {
        match check_frame(&bytes[at..]) {
            Ok((seq, len)) if seq == expected => {
                records.push((seq, at, len));
                at += len;
                expected = expected.wrapping_add(1);
            }
            Ok(_) => {
                problem = Some(FrameError::BadPayload);
                break;
            }
            Err(e) => {
                problem = Some(e);
                break;
            }
        }
    }
    let valid_after_problem = problem.is_some() && resync(bytes, at, expected).is_some();
    Ok(Scan {
        first_seq,
        records,
        valid_len: at,
        problem,
        valid_after_problem,
    })
}

/// The offset of the next valid record at or after `from + 1` whose sequence number is
/// plausible (≥ `expected`, and not further ahead than the bytes left could hold).
/// Used to tell a torn tail (nothing valid follows) from corruption in the middle, and to
/// salvage records past a corrupt one.
pub fn resync(bytes: &[u8], from: usize, expected: u64) -> Option<usize> {
    let end = bytes.len();
    let mut at = from + 1;
    while at + FRAME_HEADER <= end {
        let h = &bytes[at..at + FRAME_HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let seq = u64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8]));
        let plausible = seq >= expected
            && seq - expected <= ((end - from) / FRAME_HEADER) as u64
            && at + FRAME_HEADER + len <= end;
        if plausible && check_frame(&bytes[at..]).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Every valid record in segment bytes, skipping over corrupt regions (for salvage).
pub fn salvage(bytes: &[u8]) -> (Vec<Bytes>, usize) {
    let mut out = Vec::new();
    let mut skipped_regions = 0;
    let buf = Bytes::copy_from_slice(bytes);
    let mut at = SEGMENT_HEADER.min(bytes.len());
    let mut expected = parse_segment_header(bytes).unwrap_or(0);
    while at < bytes.len() {
        match check_frame(&bytes[at..]) {
            Ok((seq, len)) => {
                out.push(buf.slice(at..at + len));
                at += len;
                expected = seq.wrapping_add(1);
            }
            Err(_) => {
                skipped_regions += 1;
                match resync(bytes, at, expected) {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
    }
    (out, skipped_regions)
}

/// Frames `payload` with `seq` into a fresh buffer (tests and tools).
pub fn frame(payload: &Payload, seq: u64) -> Bytes {
    let mut out = Vec::with_capacity(payload.frame_len());
    payload.frame_into(seq, &mut out);
    BytesMut::from(&out[..]).freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &[u8]) -> Payload {
        Payload::new(
            1_700_000_000_123,
            "/v1/write/metric?token=tkn_x0000000000000000000000000000000&precision=s",
            [
                (
                    "content-type",
                    &b"application/protobuf; proto=com.guance.Point"[..],
                ),
                ("x-points", &b"3"[..]),
            ],
            Bytes::copy_from_slice(body),
        )
        .expect("fits")
    }

    fn segment(payloads: &[Payload], first: u64) -> Vec<u8> {
        let mut out = segment_header(first).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            p.frame_into(first + i as u64, &mut out);
        }
        out
    }

    #[test]
    fn record_round_trips() {
        let p = sample(b"cpu,host=a usage=1 1\n");
        let f = frame(&p, 42);
        let r = decode_frame(&f).expect("valid");
        assert_eq!(r.seq, 42);
        assert_eq!(r.appended_unix_ms, 1_700_000_000_123);
        assert_eq!(
            r.path,
            "/v1/write/metric?token=tkn_x0000000000000000000000000000000&precision=s"
        );
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.headers[1].0, "x-points");
        assert_eq!(&r.headers[1].1[..], b"3");
        assert_eq!(&r.body[..], b"cpu,host=a usage=1 1\n");
    }

    #[test]
    fn empty_body_and_no_headers_round_trip() {
        let p = Payload::new(0, "/", std::iter::empty(), Bytes::new()).expect("fits");
        let r = decode_frame(&frame(&p, 0)).expect("valid");
        assert!(r.body.is_empty() && r.headers.is_empty());
    }

    #[test]
    fn payload_new_refuses_a_path_over_64_kib() {
        let long = "a".repeat(70_000);
        assert!(Payload::new(0, &long, std::iter::empty(), Bytes::new()).is_none());
    }

    #[test]
    fn every_truncation_of_a_tail_record_is_detected_as_torn() {
        let ps = [sample(b"first"), sample(b"second record body")];
        let full = segment(&ps, 7);
        let first_end = SEGMENT_HEADER + ps[0].frame_len();
        for cut in first_end..full.len() {
            let s = scan_segment(&full[..cut]).expect("header intact");
            assert_eq!(s.records.len(), 1, "cut at {cut}");
            assert_eq!(s.valid_len, first_end, "cut at {cut}");
            assert_eq!(
                s.problem.is_some(),
                cut > first_end,
                "cut at {cut}: {:?}",
                s.problem
            );
            assert!(!s.valid_after_problem, "cut at {cut}");
        }
        let s = scan_segment(&full).expect("valid");
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.problem, None);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_is_detected() {
        let ps = [sample(b"aaaa"), sample(b"bbbb"), sample(b"cccc")];
        let full = segment(&ps, 0);
        let second = SEGMENT_HEADER + ps[0].frame_len();
        for byte in second..second + ps[1].frame_len() {
            for bit in 0..8 {
                let mut bad = full.clone();
                bad[byte] ^= 1 << bit;
                let s = scan_segment(&bad).expect("header intact");
                assert_eq!(s.records.len(), 1, "byte {byte} bit {bit}");
                assert!(s.problem.is_some());
                assert!(
                    s.valid_after_problem,
                    "byte {byte} bit {bit}: the third record must be found"
                );
            }
        }
    }

    #[test]
    fn out_of_sequence_records_end_the_scan() {
        let mut bytes = segment_header(5).to_vec();
        sample(b"x").frame_into(5, &mut bytes);
        sample(b"y").frame_into(9, &mut bytes);
        let s = scan_segment(&bytes).expect("header");
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.problem, Some(FrameError::BadPayload));
    }

    #[test]
    fn a_length_beyond_the_cap_is_refused_without_reading() {
        let mut f = frame(&sample(b"x"), 1).to_vec();
        f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(check_frame(&f), Err(FrameError::BadLength));
    }

    #[test]
    fn short_or_foreign_segments_are_reported() {
        assert_eq!(scan_segment(b"OWSP"), Err(SegmentError::Short));
        assert_eq!(
            scan_segment(b"NOTASPOOLSEGMENT"),
            Err(SegmentError::BadHeader)
        );
    }

    #[test]
    fn salvage_skips_a_corrupt_record_and_keeps_the_rest() {
        let ps = [sample(b"one"), sample(b"two"), sample(b"three")];
        let mut full = segment(&ps, 10);
        let second = SEGMENT_HEADER + ps[0].frame_len();
        full[second + FRAME_HEADER + 3] ^= 0xff;
        let (records, skipped) = salvage(&full);
        let seqs: Vec<u64> = records
            .iter()
            .map(|f| decode_frame(f).expect("valid").seq)
            .collect();
        assert_eq!(seqs, vec![10, 12]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn the_python_written_seed_matches_this_format() {
        // fuzz/make_corpus.py writes segments from the documented format independently.
        let seed = include_bytes!("../../fuzz/corpus/spool_record/three_records.seg");
        let scan = scan_segment(seed).expect("valid header");
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.problem, None);
        let (at, len) = (scan.records[2].1, scan.records[2].2);
        let r = decode_frame(&Bytes::copy_from_slice(&seed[at..at + len])).expect("decodes");
        assert_eq!(r.seq, 3);
        assert_eq!(
            r.path,
            "/v1/write/metric?token=tkn_x0000000000000000000000000000000"
        );
        assert_eq!(&r.body[..], b"m f=2i 1\n");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = scan_segment(&bytes);
            let _ = salvage(&bytes);
            let b = Bytes::from(bytes);
            let _ = decode_frame(&b);
        }
    }
}
