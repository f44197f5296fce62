//! The PROXY protocol header (v1 text, v2 binary) a cloud load balancer puts before the TLS
//! handshake (reference/hardening.md §5). The parsing itself is the `ppp` crate's; this
//! module frames it: it never looks past the one header, caps its size, never guesses
//! whether a header is there, and reduces the result to what the gateway uses (the client's
//! address, `LOCAL`, and the cloud's VPC endpoint id).
//!
//! The caller reads the connection in steps: [`parse`] says how many bytes it needs in total
//! ([`Progress::Need`]) until the header is complete, so the caller never reads into the TLS
//! bytes that follow.

use std::net::{IpAddr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header (the specification's bound, CRLF included).
pub const MAX_V1: usize = 107;
/// The longest v2 header accepted: 16 bytes, then addresses and TLVs. Cloud load balancers
/// send well under 256 bytes; the format allows 64 KiB, which we refuse.
pub const MAX_V2: usize = 16 + 1024;
/// Bytes to read first: enough to tell v1 (`PROXY `) from v2 (the signature) from neither.
pub const PREFIX: usize = 8;

/// AWS's TLV type (subtype 0x01: the VPC endpoint id).
pub const TLV_AWS: u8 = 0xEA;
/// Alibaba Cloud's TLV type carrying the VPC id.
pub const TLV_ALIBABA: u8 = 0xE1;
/// The longest endpoint id kept.
const MAX_ENDPOINT_ID: usize = 64;

/// A complete header, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The header's length in bytes.
    pub len: usize,
    /// 1 or 2.
    pub version: u8,
    /// The client's address; `None` for `LOCAL` (v2) and `UNKNOWN` (v1): the load balancer's
    /// own connection, such as a health check.
    pub source: Option<SocketAddr>,
    /// The VPC endpoint or VPC id from a cloud TLV (printable ASCII, at most 64 bytes).
    pub endpoint_id: Option<String>,
}

/// How far the bytes so far get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// At least this many bytes (in total, from the start) are needed.
    Need(usize),
    /// A complete header.
    Done(ProxyHeader),
}

/// Why the bytes are not one acceptable PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY header")]
    Missing,
    /// Longer than the cap.
    #[error("PROXY header too long")]
    TooLong,
    /// A PROXY header that does not parse.
    #[error("malformed PROXY header")]
    Malformed,
    /// A v2 version nibble other than 2, or a transport other than TCP.
    #[error("unsupported PROXY header")]
    Unsupported,
}

impl ProxyError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Missing => "missing",
            ProxyError::TooLong => "too_long",
            ProxyError::Malformed => "malformed",
            ProxyError::Unsupported => "unsupported",
        }
    }
}

/// Looks at the bytes read so far (from the connection's first byte).
pub fn parse(buf: &[u8]) -> Result<Progress, ProxyError> {
    let v1_prefix = b"PROXY ";
    if buf.len() < PREFIX {
        let v2 = buf == &V2_SIGNATURE[..buf.len()];
        let n = buf.len().min(v1_prefix.len());
        let v1 = buf[..n] == v1_prefix[..n];
        return if v1 || v2 {
            Ok(Progress::Need(PREFIX))
        } else {
            Err(ProxyError::Missing)
        };
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < 16 {
            return Ok(Progress::Need(16));
        }
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > MAX_V2 {
            return Err(ProxyError::TooLong);
        }
        if buf.len() < total {
            return Ok(Progress::Need(total));
        }
        return v2(&buf[..total]);
    }
    if !buf.starts_with(v1_prefix) {
        return Err(ProxyError::Missing);
    }
    let window = &buf[..buf.len().min(MAX_V1)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => v1(&buf[..end + 2]),
        None if buf.len() >= MAX_V1 => Err(ProxyError::TooLong),
        None => Ok(Progress::Need(buf.len() + 1)),
    }
}

fn v1(header: &[u8]) -> Result<Progress, ProxyError> {
    // A v1 header is printable ASCII and spaces, then CRLF. Checked before `ppp` sees it:
    // ppp 2.3 slices its input at a stray CR and panics when that is not a char boundary
    // (found by our fuzz target; seed `v1_non_ascii_cr.txt`).
    let body = &header[..header.len() - 2];
    if !body.iter().all(|&b| b.is_ascii_graphic() || b == b' ') {
        return Err(ProxyError::Malformed);
    }
    let text = std::str::from_utf8(header).map_err(|_| ProxyError::Malformed)?;
    let parsed = ppp::v1::Header::try_from(text).map_err(|_| ProxyError::Malformed)?;
    let source = match parsed.addresses {
        ppp::v1::Addresses::Unknown => None,
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
    };
    Ok(Progress::Done(ProxyHeader {
        len: header.len(),
        version: 1,
        source,
        endpoint_id: None,
    }))
}

fn v2(header: &[u8]) -> Result<Progress, ProxyError> {
    if header[12] >> 4 != 2 {
        return Err(ProxyError::Unsupported);
    }
    let parsed = ppp::v2::Header::try_from(header).map_err(|_| ProxyError::Malformed)?;
    let source = match parsed.command {
        ppp::v2::Command::Local => None,
        ppp::v2::Command::Proxy => {
            if parsed.protocol != ppp::v2::Protocol::Stream {
                return Err(ProxyError::Unsupported);
            }
            match parsed.addresses {
                ppp::v2::Addresses::IPv4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v2::Addresses::IPv6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => {
                    return Err(ProxyError::Unsupported);
                }
            }
        }
    };
    let mut endpoint_id = None;
    for tlv in parsed.tlvs() {
        let tlv = tlv.map_err(|_| ProxyError::Malformed)?;
        let id = match tlv.kind {
            TLV_AWS if tlv.value.first() == Some(&0x01) => &tlv.value[1..],
            TLV_ALIBABA => &tlv.value[..],
            _ => continue,
        };
        if !id.is_empty() && id.len() <= MAX_ENDPOINT_ID && id.iter().all(|b| b.is_ascii_graphic())
        {
            endpoint_id = Some(String::from_utf8_lossy(id).into_owned());
        }
    }
    Ok(Progress::Done(ProxyHeader {
        len: header.len(),
        version: 2,
        source,
        endpoint_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        let len = (addresses.len() + tlvs.len()) as u16;
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn ipv4_block() -> Vec<u8> {
        let mut a = vec![203, 0, 113, 7, 10, 0, 0, 1];
        a.extend_from_slice(&51234u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        a
    }

    #[test]
    fn v1_tcp4_gives_the_client_address() {
        let h = b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443\r\n\x16\x03\x01";
        let Ok(Progress::Done(p)) = parse(h) else {
            panic!("{:?}", parse(h));
        };
        assert_eq!(p.len, h.len() - 3, "the TLS bytes are not part of it");
        assert_eq!(p.source, Some("198.51.100.22:35646".parse().expect("addr")));
        assert_eq!(p.version, 1);
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
        let Ok(Progress::Done(p)) = parse(h) else {
            panic!()
        };
        assert_eq!(p.source, Some("[2001:db8::1]:4000".parse().expect("addr")));
        let Ok(Progress::Done(p)) = parse(b"PROXY UNKNOWN\r\n") else {
            panic!()
        };
        assert_eq!(p.source, None);
    }

    #[test]
    fn v1_arriving_in_pieces_asks_for_more_then_completes() {
        let h = b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443\r\n";
        for cut in 0..h.len() {
            match parse(&h[..cut]) {
                Ok(Progress::Need(n)) => {
                    assert!(n > cut && n <= h.len().max(PREFIX), "cut {cut}: {n}")
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn v2_proxy_ipv4_with_aws_endpoint_tlv() {
        let mut tlv = vec![TLV_AWS, 0, 23, 0x01];
        tlv.extend_from_slice(b"vpce-0123456789abcdef0");
        let h = v2_header(1, 0x11, &ipv4_block(), &tlv);
        let Ok(Progress::Done(p)) = parse(&h) else {
            panic!("{:?}", parse(&h));
        };
        assert_eq!(p.source, Some("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(p.endpoint_id.as_deref(), Some("vpce-0123456789abcdef0"));
        assert_eq!(p.len, h.len());
    }

    #[test]
    fn v2_local_is_a_health_check_without_address() {
        let h = v2_header(0, 0x00, &[], &[]);
        let Ok(Progress::Done(p)) = parse(&h) else {
            panic!("{:?}", parse(&h));
        };
        assert_eq!(p.source, None);
    }

    #[test]
    fn v2_in_pieces_needs_exactly_its_length() {
        let h = v2_header(1, 0x11, &ipv4_block(), &[0x04, 0, 1, 42]);
        assert_eq!(parse(&h[..5]), Ok(Progress::Need(PREFIX)));
        assert_eq!(parse(&h[..PREFIX]), Ok(Progress::Need(16)));
        assert_eq!(parse(&h[..16]), Ok(Progress::Need(h.len())));
        assert!(matches!(parse(&h), Ok(Progress::Done(_))));
    }

    #[test]
    fn not_a_header_oversized_or_udp_is_refused() {
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(ProxyError::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&big), Err(ProxyError::TooLong));
        let udp = v2_header(1, 0x12, &ipv4_block(), &[]);
        assert_eq!(parse(&udp), Err(ProxyError::Unsupported));
        let mut v3 = v2_header(1, 0x11, &ipv4_block(), &[]);
        v3[12] = 0x31;
        assert_eq!(parse(&v3), Err(ProxyError::Unsupported));
        assert_eq!(
            parse(b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n"),
            Err(ProxyError::Malformed)
        );
        // Found by fuzzing: non-ASCII and a stray CR (ppp 2.3 panics on it).
        assert_eq!(
            parse(b"PROXY PROXY \xc5\xaf\r\xc5\xaf\r%P%\r\nI"),
            Err(ProxyError::Malformed)
        );
    }
}
