//! SIMD-within-a-register helpers: eight bytes per step in safe code.
//!
//! Each function finds the *first* byte of a class in a word. The classic bit tricks below may
//! flag bytes above a real match (borrows and carries only travel upwards), never below it, so
//! the lowest flagged byte is always exact.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `b[i..i + 8]` as a little-endian word, if there are eight.
#[inline(always)]
pub(crate) fn load(b: &[u8], i: usize) -> Option<u64> {
    let chunk = b.get(i..i.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    Some(u64::from_le_bytes(w))
}

/// High bit set in each byte equal to zero (exact for the lowest).
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// High bit set in each byte below `n` (`n` ≤ 128; exact for the lowest).
#[inline(always)]
fn bytes_below(v: u64, n: u8) -> u64 {
    v.wrapping_sub(LO * u64::from(n)) & !v & HI
}

/// Candidate stop bytes of line protocol names, keys and tag values: anything ≤ space (which
/// covers space, tab, CR, LF, NUL, but also other control bytes: the caller confirms), `,`,
/// `\`, `=` when `with_equals`, and `[` `]` when `with_brackets`.
#[inline(always)]
pub(crate) fn stop_candidates(v: u64, with_equals: bool, with_brackets: bool) -> u64 {
    let mut m = bytes_below(v, 0x21)
        | zero_bytes(v ^ (LO * u64::from(b',')))
        | zero_bytes(v ^ (LO * u64::from(b'\\')));
    if with_equals {
        m |= zero_bytes(v ^ (LO * u64::from(b'=')));
    }
    if with_brackets {
        m |= zero_bytes(v ^ (LO * u64::from(b'['))) | zero_bytes(v ^ (LO * u64::from(b']')));
    }
    m
}

/// Bit `k` set where `b[i + k]` is a candidate stop byte (see [`stop_candidates`]), for the
/// sixteen bytes at `i`, using the CPU's 16-byte vectors through `wide`'s safe API.
#[inline(always)]
pub(crate) fn stop_candidates16(
    b: &[u8],
    i: usize,
    with_equals: bool,
    with_brackets: bool,
) -> Option<u32> {
    use wide::u8x16;
    let chunk = b.get(i..i.checked_add(16)?)?;
    let mut w = [0u8; 16];
    w.copy_from_slice(chunk);
    let v = u8x16::new(w);
    let control_or_space = v.min(u8x16::splat(0x20)).simd_eq(v);
    let mut m = control_or_space | v.simd_eq(u8x16::splat(b',')) | v.simd_eq(u8x16::splat(b'\\'));
    if with_equals {
        m |= v.simd_eq(u8x16::splat(b'='));
    }
    if with_brackets {
        m |= v.simd_eq(u8x16::splat(b'[')) | v.simd_eq(u8x16::splat(b']'));
    }
    Some(m.to_bitmask())
}

/// Index of the first byte at or after `i` that is not an ASCII digit (or `b.len()`).
#[inline(always)]
pub(crate) fn digits_end(b: &[u8], mut i: usize) -> usize {
    while let Some(v) = load(b, i) {
        let x = v ^ (LO * 0x30);
        // High bit set where x ≥ 10, i.e. the byte is not '0'..='9'.
        let not_digit = (x.wrapping_add(LO * 0x76) | x) & HI;
        if not_digit != 0 {
            return i + (not_digit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// A short input (4 to 16 bytes, the usual keys and tag values) as two words that together
/// hold every byte (overlapping loads): what the checks below test without a loop or a call.
#[inline(always)]
fn words(b: &[u8]) -> Option<(u64, u64)> {
    let n = b.len();
    if (8..=16).contains(&n) {
        Some((load(b, 0)?, load(b, n - 8)?))
    } else if (4..8).contains(&n) {
        let (a, z) = (b.first_chunk::<4>()?, b.last_chunk::<4>()?);
        let w = u64::from(u32::from_le_bytes(*a)) | u64::from(u32::from_le_bytes(*z)) << 32;
        Some((w, w))
    } else {
        None
    }
}

/// Whether every byte is ASCII.
#[inline(always)]
pub(crate) fn is_ascii(b: &[u8]) -> bool {
    match words(b) {
        Some((a, z)) => (a | z) & HI == 0,
        None => b.is_ascii(),
    }
}

/// Whether `b` holds `x`.
#[inline(always)]
pub(crate) fn contains(b: &[u8], x: u8) -> bool {
    ascii_and_contains(b, x).1
}

/// Whether every byte of `b` is ASCII, and whether `b` holds `x`, from one pair of loads.
#[inline(always)]
pub(crate) fn ascii_and_contains(b: &[u8], x: u8) -> (bool, bool) {
    let hit = |v: u64| zero_bytes(v ^ (LO * u64::from(x)));
    if let Some((a, z)) = words(b) {
        return ((a | z) & HI == 0, hit(a) | hit(z) != 0);
    }
    let found = match *b {
        // Up to 3 bytes: compared one by one (a call to memchr costs more).
        [] => false,
        [c] => c == x,
        [c, d] => c == x || d == x,
        [c, d, e] => c == x || d == x || e == x,
        _ => memchr::memchr(x, b).is_some(),
    };
    (b.is_ascii(), found)
}

/// Index of the lowest flagged byte of a non-zero mask.
#[inline(always)]
pub(crate) fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_ascii_matches_std_for_every_length_and_position() {
        for n in 0..40 {
            let mut v = vec![b'a'; n];
            assert!(is_ascii(&v));
            for i in 0..n {
                v[i] = 0x80 | (i as u8);
                assert!(!is_ascii(&v), "len {n} at {i}");
                v[i] = b'a';
            }
        }
    }

    #[test]
    fn contains_matches_a_bytewise_scan_for_every_length_and_position() {
        for n in 0..40 {
            let mut v = vec![b'a'; n];
            assert!(!contains(&v, b'\n'));
            for i in 0..n {
                for (c, found) in [(b'\n', true), (b'\x0b', false), (0x8a, false)] {
                    v[i] = c;
                    assert_eq!(contains(&v, b'\n'), found, "len {n}, {c} at {i}");
                    assert_eq!(
                        ascii_and_contains(&v, b'\n'),
                        (c < 0x80, found),
                        "len {n}, {c} at {i}"
                    );
                }
                v[i] = b'a';
            }
        }
    }

    #[test]
    fn digits_end_matches_bytewise_scan() {
        let inputs: &[&[u8]] = &[
            b"",
            b"1",
            b"12345678",
            b"123456789",
            b"1234567890123456789 ",
            b"12a45678901",
            b"0000000/",
            b"99999999:",
            b"12\xff4567890",
            b"1234\x8a67",
        ];
        for input in inputs {
            for start in 0..=input.len() {
                let mut want = start;
                while want < input.len() && input[want].is_ascii_digit() {
                    want += 1;
                }
                assert_eq!(digits_end(input, start), want, "{input:?} from {start}");
            }
        }
    }

    #[test]
    fn stop_candidates16_agrees_with_the_word_version() {
        for stop in 0u8..=255 {
            for pos in 0..16 {
                let mut w = *b"abcdefghijklmnop";
                w[pos] = stop;
                for (with_eq, with_br) in [(false, false), (true, false), (true, true)] {
                    let m = stop_candidates16(&w, 0, with_eq, with_br).unwrap();
                    let expected = stop <= 0x20
                        || stop == b','
                        || stop == b'\\'
                        || (with_eq && stop == b'=')
                        || (with_br && (stop == b'[' || stop == b']'));
                    assert_eq!(
                        m,
                        if expected { 1 << pos } else { 0 },
                        "byte {stop:#x} at {pos}"
                    );
                }
            }
        }
        assert_eq!(stop_candidates16(b"short", 0, true, false), None);
    }

    #[test]
    fn stop_candidates_lowest_is_exact_for_every_byte() {
        for stop in 0u8..=255 {
            for pos in 0..8 {
                let mut w = *b"abcdefgh";
                w[pos] = stop;
                // Bytes after the stop may be anything, including other stops.
                for after in (pos + 1)..8 {
                    w[after] = [b'\\', 0, b' ', 0xff][after % 4];
                }
                let v = u64::from_le_bytes(w);
                for (with_eq, with_br) in [(false, false), (true, false), (true, true)] {
                    let expected = stop <= 0x20
                        || stop == b','
                        || stop == b'\\'
                        || (with_eq && stop == b'=')
                        || (with_br && (stop == b'[' || stop == b']'));
                    let m = stop_candidates(v, with_eq, with_br);
                    if expected {
                        assert_eq!(first(m), pos, "byte {stop:#x} at {pos}");
                    } else if m != 0 {
                        assert!(first(m) > pos, "byte {stop:#x} at {pos}");
                    }
                }
            }
        }
    }
}
