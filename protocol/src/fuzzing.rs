//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpora.
//!
//! Each takes arbitrary bytes and must return without panicking, hanging or allocating without
//! bound. The first byte picks the category (and for the decoder, the encoding), the rest is
//! the body, so one corpus explores every rule set.

use crate::{BodyKind, Category, Decoder, Encoding, Precision, Validator};

fn split(data: &[u8]) -> (Category, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (Category::ALL[usize::from(b) % Category::ALL.len()], rest),
        None => (Category::Metric, data),
    }
}

fn validate(kind: BodyKind, data: &[u8]) {
    let (category, body) = split(data);
    let mut v = Validator::default();
    match v.validate(kind, category, Precision::Nanoseconds, body) {
        Ok(verdict) => {
            // A point takes at least a few bytes in every format.
            assert!(verdict.points <= body.len() as u64);
        }
        Err(rejection) => {
            assert!(rejection.offset <= body.len());
            let _ = rejection.to_string();
        }
    }
}

/// Line protocol validation.
pub fn line_protocol(data: &[u8]) {
    validate(BodyKind::LineProtocol, data);
}

/// Protobuf validation; the walk's shortcuts for DataKit's fields read every input as its
/// general path does.
pub fn protobuf(data: &[u8]) {
    validate(BodyKind::Protobuf, data);
    let (category, body) = split(data);
    assert!(
        crate::pb::shortcuts_agree(category, body),
        "the protobuf walk's shortcuts and its general path disagree"
    );
}

/// JSON validation.
pub fn json(data: &[u8]) {
    validate(BodyKind::Json, data);
}

/// Decoding, with a 1 MiB cap: the output never exceeds the cap, and the inflater reads every
/// body as zlib-rs does.
pub fn decode(data: &[u8]) {
    const LIMIT: usize = 1 << 20;
    let (encoding, body) = match data.split_first() {
        Some((&b, rest)) => {
            let e = [
                Encoding::Identity,
                Encoding::Gzip,
                Encoding::Deflate,
                Encoding::Zstd,
            ];
            (e[usize::from(b) % 4], rest)
        }
        None => (Encoding::Identity, data),
    };
    let mut out = Vec::new();
    if let Ok(decoded) = Decoder::new().decode(encoding, body, &mut out, LIMIT) {
        assert!(decoded.len() <= LIMIT);
    }
    // Every body is also a raw deflate stream to the inflater and to zlib-rs: same verdict,
    // same output. So is what follows a zlib header (2 bytes) and a gzip header (10 bytes),
    // so that the corpus's real streams are mutated as raw deflate too.
    for skip in [0, 2, 10] {
        if let Some(stream) = body.get(skip..) {
            crate::inflate::assert_agrees_with_zlib_rs(stream, LIMIT);
        }
    }
}

/// Spool segment parsing: scanning, salvage and record decoding (matrix row 26).
pub fn spool_record(data: &[u8]) {
    use crate::spool_record::{check_frame, decode_frame, salvage, scan_segment};
    if let Ok(scan) = scan_segment(data) {
        assert!(scan.valid_len <= data.len());
        for &(_, at, len) in &scan.records {
            assert!(check_frame(&data[at..at + len]).is_ok());
        }
    }
    let (frames, _) = salvage(data);
    for f in &frames {
        assert!(check_frame(f).is_ok());
        let _ = decode_frame(f);
    }
    let _ = decode_frame(&bytes::Bytes::copy_from_slice(data));
}

/// PROXY protocol headers, fed as the gateway feeds them: growing prefixes, each step asking
/// for more bytes than it has, never past the cap.
pub fn proxy_header(data: &[u8]) {
    use crate::proxy_header::{MAX_V2, Progress, parse};
    let mut have = 0usize;
    loop {
        match parse(&data[..have]) {
            Ok(Progress::Need(n)) => {
                assert!(n > have && n <= MAX_V2, "need {n} with {have}");
                if n > data.len() {
                    return;
                }
                have = n;
            }
            Ok(Progress::Done(h)) => {
                assert!(h.len <= have && h.len <= MAX_V2);
                return;
            }
            Err(e) => {
                let _ = e.kind();
                return;
            }
        }
    }
}
