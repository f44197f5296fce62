//! JSON string escapes (RFC 8259 §7): the one decoder of a string's raw content, shared by the
//! JSON validator (which scans and checks the escapes first) and the point checker (which
//! reads JSON-spelled keys and values). It owns no state and imports no other module.

/// Appends the unescaped bytes of a JSON string's raw content (between the quotes).
/// The content must already have been checked by the scanner; `Err` if it was not valid.
pub(crate) fn unescape_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *raw.get(i + 1).ok_or(())?;
        i += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let (c, used) = unicode_escape(&raw[i - 2..])?;
                i += used - 2;
                c
            }
            _ => return Err(()),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

/// Decodes `\uXXXX` (or a surrogate pair `\uXXXX\uXXXX`) at the start of `b`; returns the
/// character and the bytes used.
pub(crate) fn unicode_escape(b: &[u8]) -> Result<(char, usize), ()> {
    let hi = hex4(b.get(2..).ok_or(())?).ok_or(())?;
    if (0xD800..0xDC00).contains(&hi) {
        if b.get(6..8) != Some(b"\\u") {
            return Err(());
        }
        let lo = hex4(&b[8..]).ok_or(())?;
        if !(0xDC00..0xE000).contains(&lo) {
            return Err(());
        }
        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return char::from_u32(c).map(|c| (c, 12)).ok_or(());
    }
    char::from_u32(hi).map(|c| (c, 6)).ok_or(())
}
