//! The request framing every HTTP/1.1 request on a connection is checked against, before
//! hyper acts on it.
//!
//! hyper resolves a head that gives its body length twice (`Content-Length` and
//! `Transfer-Encoding`) silently, by dropping `Content-Length`, and accepts any
//! `Transfer-Encoding` list that ends in `chunked` (`gzip, chunked`, `chunked, chunked`). A
//! proxy in front of another HTTP parser must refuse both: they are how requests are smuggled.
//! hyper reports neither, so [`Scanner`] reads the same bytes hyper reads, on the way in, and
//! follows the connection request by request (each head, then its body by `Content-Length` or
//! by chunks, so that a pipelined head is found where hyper will find it), with the line
//! endings hyper's parser accepts (a head may end its lines in LF alone; chunk lines need CRLF).
//!
//! For each head it queues one [`Framing`]; the request path takes one per request, in order,
//! and refuses any but [`Framing::Clean`]. Fail closed: once the scanner cannot follow the
//! bytes as hyper does (a head over the cap, a chunk line it cannot read), it stops, and every
//! later request on the connection is [`Framing::Unscanned`] and refused.
//!
//! Memory: one line at a time, at most the head cap (or 4 KiB for a chunk line).

use std::collections::VecDeque;

/// What one request head says about how its body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// At most one way of giving the body length: none, `Content-Length`, or one
    /// `Transfer-Encoding: chunked`.
    Clean,
    /// Both `Content-Length` and `Transfer-Encoding`.
    BothLengths,
    /// `Transfer-Encoding` other than exactly `chunked` (another coding, a list, two fields).
    TransferEncoding,
    /// A request the scanner did not follow (it lost the connection's framing before it).
    Unscanned,
}

impl Framing {
    /// A stable label for metrics, logs and the error code.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Clean => "clean",
            Framing::BothLengths => "content_length_and_transfer_encoding",
            Framing::TransferEncoding => "transfer_encoding_not_chunked",
            Framing::Unscanned => "unscanned",
        }
    }
}

/// The longest chunk-size line followed (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line: empty lines are skipped, as hyper's parser does.
    Start,
    /// Header lines, up to the empty line.
    Head,
    /// This many body bytes (`Content-Length`) to pass over.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// This many chunk bytes, then CRLF.
    ChunkData(u64),
    /// The CR after a chunk's data.
    ChunkCr,
    /// The LF after a chunk's data.
    ChunkLf,
    /// Trailer lines after the last chunk, up to the empty line.
    Trailer,
    /// The bytes can no longer be followed.
    Lost,
}

/// Follows one connection's request framing; see the module docs.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    head_bytes: usize,
    max_head: usize,
    content_length: Option<u64>,
    content_length_fields: usize,
    bad_content_length: bool,
    transfer_encodings: usize,
    only_chunked: bool,
}

impl Scanner {
    /// A scanner for a connection whose heads hyper caps at `max_head` bytes.
    pub fn new(max_head: usize) -> Scanner {
        Scanner {
            state: State::Start,
            line: Vec::new(),
            head_bytes: 0,
            max_head,
            content_length: None,
            content_length_fields: 0,
            bad_content_length: false,
            transfer_encodings: 0,
            only_chunked: false,
        }
    }

    /// Whether the scanner stopped following the connection.
    pub fn lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Follows `bytes` (the next ones read from the connection); queues a [`Framing`] in
    /// `heads` for each request head completed.
    pub fn feed(&mut self, mut bytes: &[u8], heads: &mut VecDeque<Framing>) {
        while !bytes.is_empty() {
            match self.state {
                State::Lost => return,
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        State::Start
                    } else {
                        State::Body(left - n)
                    };
                }
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        State::ChunkCr
                    } else {
                        State::ChunkData(left - n)
                    };
                }
                State::ChunkCr | State::ChunkLf => {
                    let (want, next) = if self.state == State::ChunkCr {
                        (b'\r', State::ChunkLf)
                    } else {
                        (b'\n', State::ChunkSize)
                    };
                    self.state = if bytes[0] == want { next } else { State::Lost };
                    bytes = &bytes[1..];
                }
                State::Start | State::Head | State::ChunkSize | State::Trailer => {
                    let cap = match self.state {
                        State::ChunkSize | State::Trailer => MAX_CHUNK_LINE,
                        _ => self.max_head.saturating_sub(self.head_bytes),
                    };
                    let (taken, complete) = match bytes.iter().position(|&b| b == b'\n') {
                        Some(at) => (at + 1, true),
                        None => (bytes.len(), false),
                    };
                    if self.line.len() + taken > cap {
                        self.state = State::Lost;
                        self.line = Vec::new();
                        return;
                    }
                    self.line.extend_from_slice(&bytes[..taken]);
                    bytes = &bytes[taken..];
                    if complete {
                        let line = std::mem::take(&mut self.line);
                        self.end_of_line(&line, heads);
                        self.line = line;
                        self.line.clear();
                    }
                }
            }
        }
    }

    /// One complete line (with its LF) in a line state.
    fn end_of_line(&mut self, line: &[u8], heads: &mut VecDeque<Framing>) {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        match self.state {
            // The request line (empty lines before it are skipped).
            State::Start if !content.is_empty() => {
                self.head_bytes = line.len();
                self.content_length = None;
                self.content_length_fields = 0;
                self.bad_content_length = false;
                self.transfer_encodings = 0;
                self.only_chunked = false;
                self.state = State::Head;
            }
            State::Head => {
                self.head_bytes += line.len();
                if content.is_empty() {
                    self.end_of_head(heads);
                } else {
                    self.header(content);
                }
            }
            State::ChunkSize => self.chunk_size(line),
            State::Trailer => {
                // hyper's trailers end in CRLF lines; the empty one ends the body.
                if !line.ends_with(b"\r\n") {
                    self.state = State::Lost;
                } else if content.is_empty() {
                    self.state = State::Start;
                }
            }
            _ => {}
        }
    }

    fn header(&mut self, field: &[u8]) {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return;
        };
        let (name, value) = (&field[..colon], trim(&field[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_length_fields += 1;
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (parsed, self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => self.bad_content_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings += 1;
            self.only_chunked =
                self.transfer_encodings == 1 && value.eq_ignore_ascii_case(b"chunked");
        }
    }

    fn end_of_head(&mut self, heads: &mut VecDeque<Framing>) {
        let framing = if self.transfer_encodings > 0 && self.content_length_fields > 0 {
            Framing::BothLengths
        } else if self.transfer_encodings > 0 && !self.only_chunked {
            Framing::TransferEncoding
        } else {
            Framing::Clean
        };
        heads.push_back(framing);
        self.state = if self.transfer_encodings > 0 {
            // hyper reads a body whose last coding is chunked as chunks (and refuses any
            // other); such a request is refused and its connection closed, so following it
            // exactly matters only for a clean one.
            State::ChunkSize
        } else if self.bad_content_length {
            // hyper refuses the head (400) and closes.
            State::Lost
        } else {
            match self.content_length {
                Some(0) | None => State::Start,
                Some(n) => State::Body(n),
            }
        };
    }

    /// A chunk-size line as hyper reads it: hex digits, optional spaces or tabs, an
    /// optional `;` extension without CR, then CRLF.
    fn chunk_size(&mut self, line: &[u8]) {
        let Some(content) = line.strip_suffix(b"\r\n") else {
            self.state = State::Lost;
            return;
        };
        let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = &content[digits..];
        let after_space = rest.iter().skip_while(|&&b| b == b' ' || b == b'\t');
        let well_formed = digits > 0
            && !content.contains(&b'\r')
            && after_space.clone().next().is_none_or(|&b| b == b';');
        let size = std::str::from_utf8(&content[..digits])
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        self.state = match (well_formed, size) {
            (true, Some(0)) => State::Trailer,
            (true, Some(n)) => State::ChunkData(n),
            _ => State::Lost,
        };
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The framings of `input` fed whole, and fed one byte at a time (split reads).
    fn scan(input: &[u8]) -> (Vec<Framing>, bool) {
        let mut whole = Scanner::new(16 << 10);
        let mut heads = VecDeque::new();
        whole.feed(input, &mut heads);
        let mut split = Scanner::new(16 << 10);
        let mut byte_heads = VecDeque::new();
        for b in input {
            split.feed(std::slice::from_ref(b), &mut byte_heads);
        }
        assert_eq!(heads, byte_heads, "split reads");
        assert_eq!(whole.lost(), split.lost());
        (heads.into_iter().collect(), whole.lost())
    }

    const CLEAN: &str =
        "POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd";

    #[test]
    fn pipelined_requests_are_each_seen() {
        let input = format!(
            "{CLEAN}POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        );
        let (heads, lost) = scan(input.as_bytes());
        assert_eq!(heads, [Framing::Clean, Framing::BothLengths]);
        assert!(!lost);
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_passed_over() {
        let body = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let input = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}{CLEAN}",
            body.len()
        );
        assert_eq!(scan(input.as_bytes()).0, [Framing::Clean, Framing::Clean]);
    }

    #[test]
    fn lf_only_heads_and_leading_empty_lines_are_read_as_hyper_reads_them() {
        let input =
            "\r\n\nPOST / HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\r\n\r\n";
        assert_eq!(scan(input.as_bytes()).0, [Framing::BothLengths]);
        let input = "POST / HTTP/1.1\nContent-Length: 2\n\nokGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan(input.as_bytes()).0, [Framing::Clean, Framing::Clean]);
    }

    #[test]
    fn every_transfer_encoding_but_exactly_chunked_is_refused() {
        for (te, want) in [
            ("chunked", Framing::Clean),
            ("Chunked", Framing::Clean),
            (" chunked ", Framing::Clean),
            ("gzip, chunked", Framing::TransferEncoding),
            ("chunked, chunked", Framing::TransferEncoding),
            ("identity", Framing::TransferEncoding),
            (
                "chunked\r\nTransfer-Encoding: chunked",
                Framing::TransferEncoding,
            ),
            ("xchunked", Framing::TransferEncoding),
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
            assert_eq!(scan(input.as_bytes()).0, [want], "{te:?}");
        }
        // Both lengths in any spelling and order.
        for head in [
            "content-length: 4\r\nTRANSFER-ENCODING: chunked",
            "Transfer-Encoding: chunked\r\nContent-Length: 4",
            "Content-Length: 4\r\nTransfer-Encoding:gzip",
        ] {
            let input = format!("POST / HTTP/1.1\r\n{head}\r\n\r\n0\r\n\r\n");
            assert_eq!(scan(input.as_bytes()).0, [Framing::BothLengths], "{head}");
        }
    }

    #[test]
    fn chunked_bodies_are_followed_to_the_next_head() {
        let input = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3 \r\nefg\r\n0\r\nTrailer: x\r\n\r\n{CLEAN}"
        );
        let (heads, lost) = scan(input.as_bytes());
        assert_eq!(heads, [Framing::Clean, Framing::Clean]);
        assert!(!lost);
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: no panic, and the same heads as read whole.
        #[test]
        fn any_bytes_cut_anywhere_read_alike(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cuts in proptest::collection::vec(0usize..512, 0..8),
        ) {
            let mut whole = Scanner::new(256);
            let mut heads = VecDeque::new();
            whole.feed(&input, &mut heads);
            let mut pieces = Scanner::new(256);
            let mut piece_heads = VecDeque::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut from = 0;
            for cut in cuts.into_iter().chain([input.len()]) {
                pieces.feed(&input[from..cut], &mut piece_heads);
                from = cut;
            }
            proptest::prop_assert_eq!(heads, piece_heads);
            proptest::prop_assert_eq!(whole.lost(), pieces.lost());
        }
    }

    #[test]
    fn what_it_cannot_follow_stops_it() {
        for body in [
            "zz\r\n",
            "4\nabcd\r\n0\r\n\r\n",
            "4\r\nabcdX\r\n",
            "11111111111111111\r\n",
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}{CLEAN}");
            let (heads, lost) = scan(input.as_bytes());
            assert_eq!(heads, [Framing::Clean], "{body:?}");
            assert!(lost, "{body:?}");
        }
        // Two different lengths: hyper refuses the head.
        let input =
            format!("POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd{CLEAN}");
        assert!(scan(input.as_bytes()).1);
        // A head over the cap.
        let mut s = Scanner::new(64);
        let mut heads = VecDeque::new();
        s.feed(
            format!("POST / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100)).as_bytes(),
            &mut heads,
        );
        assert!(s.lost() && heads.is_empty());
    }
}
