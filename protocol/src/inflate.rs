//! A strict DEFLATE (RFC 1951) decoder: accepts exactly the streams Go's `compress/flate`
//! (Guance's decoder) and zlib accept, 1.3-1.8 times as fast as zlib-rs inflates a bare
//! stream and 1.7-2.5 times as fast as it decodes a gzip member (`docs/performance.md`).
//!
//! Strict where libdeflate is lenient (the reason it is not used, `docs/performance.md`):
//! - a Huffman code must be complete; the only incomplete code accepted is a single codeword
//!   of one bit (zlib and Go accept it for compatibility), and its unused codeword is an error
//!   when read. An empty literal/length code, or one without the end-of-block symbol, is an
//!   error; an empty distance code is accepted and any distance read with it is an error;
//! - at most 286 literal/length and 30 distance codes in a dynamic header; the symbols 286,
//!   287 and the distances 30, 31 of the fixed code are errors when read;
//! - a code-length repeat with nothing before it, or running past the declared codes, is an
//!   error; so is a stored block whose length check fails and the reserved block type;
//! - a distance reaching before the start of the member is an error.
//!
//! How it is fast (the design is libdeflate's; the code is this project's, all safe Rust):
//! a 64-bit bit buffer refilled with one unaligned load and no branch on the bit count; one
//! table lookup (11 bits for literal/length, 8 for distance, with subtables for longer
//! codewords) gives a symbol's codeword length, extra-bit count and base together; the output
//! is a zero-filled buffer larger than what is written, so matches are copied in blocks of 40,
//! 16 or 8 bytes and may write past their end (overwritten later, cut off at the end).
//!
//! Bounds: the output never grows past the caller's limit plus [`SLACK`] bytes; every symbol
//! consumes at least one bit and at most [`MAX_OVERRUN`] bytes past the input's end are ever
//! read as zeros, so every input ends in a bounded number of steps. Nothing allocates per
//! symbol or per block; the tables live in the [`Inflater`] and are reused.

/// Bytes of zeroed room past the decoded data: a match copy writes its first 40 bytes
/// whatever its length (at least 3), and up to 15 bytes past its end.
pub(crate) const SLACK: usize = 48;
/// Smallest step by which the output grows.
const MIN_STEP: usize = 64 << 10;
/// Zero bytes read past the end of the input before the stream is certainly truncated.
const MAX_OVERRUN: usize = 16;

/// Main-table bits of the literal/length and distance codes, and of the code-length code.
const LITLEN_BITS: u32 = 11;
const DIST_BITS: u32 = 8;
const PRECODE_BITS: u32 = 7;
/// Table sizes: a main table plus the largest possible subtables (one per codeword
/// prefix, each at most `2^(15 - bits)` entries), rounded up to a power of two so that a
/// masked index is always in bounds.
const LITLEN_SIZE: usize = 8192; // 2048 + 286 * 16 = 6624
const DIST_SIZE: usize = 4096; // 256 + 30 * 128 = 4096
const PRECODE_SIZE: usize = 128;

// A table entry (u32):
// bits 0..8   bits to consume: codeword (minus the main table's bits in a subtable) + extra
// bits 8..12  codeword bits (of the same), so `extra = (bits & mask(total)) >> codeword`;
//             in a subtable pointer, the subtable's index bits
// bits 12..16 flags below
// bits 16..32 value: literal byte, length or distance base, code-length symbol, or subtable
//             offset
const LITERAL: u32 = 1 << 15;
/// Not a literal, length or distance: end of block, subtable pointer or invalid.
const SPECIAL: u32 = 1 << 14;
const SUBTABLE: u32 = 1 << 13;
const END_OF_BLOCK: u32 = 1 << 12;
/// An entry no valid codeword reaches (an incomplete code's gap, a reserved symbol).
const INVALID: u32 = SPECIAL;

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic header gives the code-length code's lengths.
const PRECODE_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Malformed data near this input offset.
    Corrupt(usize, &'static str),
    /// The input ends before the stream does.
    Truncated,
    /// More output than the limit.
    TooLarge,
}

/// The three kinds of code, for what a symbol decodes to.
#[derive(Clone, Copy)]
enum Alphabet {
    LitLen,
    Dist,
    Precode,
}

/// Reusable decoder state: the decode tables (about 50 KiB, allocated once).
pub(crate) struct Inflater {
    /// The literal/length table, then the distance table: one allocation, so that the hot
    /// loop keeps one register for both.
    tables: Box<[u32; LITLEN_SIZE + DIST_SIZE]>,
    precode: [u32; PRECODE_SIZE],
    lens: [u8; 286 + 30],
}

impl core::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

/// The bit reader: `bits` valid bits in the low end of `buf`; bits above them are zero or
/// the input's next bits. `pos` counts the bytes taken into `bits`, `overrun` the zero bytes
/// taken past the input's end.
#[derive(Clone, Copy)]
struct Bits<'a> {
    input: &'a [u8],
    buf: u64,
    bits: u32,
    pos: usize,
    overrun: usize,
}

impl<'a> Bits<'a> {
    /// Tops the buffer up to at least 56 bits (at most 63).
    #[inline(always)]
    fn refill(&mut self) -> Result<(), Fault> {
        if let Some(word) = self.input.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.buf |= u64::from_le_bytes(w) << self.bits;
            self.pos += 7 - (self.bits as usize >> 3);
            self.bits |= 56;
            Ok(())
        } else {
            self.refill_slow()
        }
    }

    #[cold]
    #[inline(never)]
    fn refill_slow(&mut self) -> Result<(), Fault> {
        while self.bits <= 55 {
            match self.input.get(self.pos) {
                Some(&b) => {
                    self.buf |= u64::from(b) << self.bits;
                    self.pos += 1;
                }
                None => {
                    self.overrun += 1;
                    if self.overrun > MAX_OVERRUN {
                        return Err(Fault::Truncated);
                    }
                }
            }
            self.bits += 8;
        }
        Ok(())
    }

    /// Takes `n` (at most 32) bits; the buffer must hold them.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = (self.buf & ((1u64 << n) - 1)) as u32;
        self.buf >>= n;
        self.bits -= n;
        v
    }

    /// Drops the bits up to the next byte boundary and returns the offset of the first byte
    /// not consumed; [`Fault::Truncated`] if that is past the input's end.
    fn align(&mut self) -> Result<usize, Fault> {
        let drop = self.bits & 7;
        self.take(drop);
        let at = (self.pos + self.overrun)
            .checked_sub(self.bits as usize / 8)
            .ok_or(Fault::Truncated)?;
        if at > self.input.len() {
            return Err(Fault::Truncated);
        }
        Ok(at)
    }

    /// Restarts reading at byte `at` with an empty buffer.
    fn seek(&mut self, at: usize) {
        self.buf = 0;
        self.bits = 0;
        self.pos = at;
        self.overrun = 0;
    }

    /// The offset of the byte holding the next unread bit, for error messages.
    fn offset(&self) -> usize {
        (self.pos + self.overrun)
            .saturating_sub(self.bits as usize / 8 + 1)
            .min(self.input.len())
    }

    fn corrupt(&self, reason: &'static str) -> Fault {
        Fault::Corrupt(self.offset(), reason)
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    pub(crate) fn new() -> Inflater {
        Inflater {
            tables: Box::new([INVALID; LITLEN_SIZE + DIST_SIZE]),
            precode: [INVALID; PRECODE_SIZE],
            lens: [0; 286 + 30],
        }
    }

    /// Decodes one raw deflate stream from the start of `input`, appending to `out` from
    /// offset `start` (distances may not reach before it). Returns the input bytes the stream
    /// used and the end of the output; `out` may be longer than that (zero-filled room).
    /// More than `limit` bytes in `out` in total is [`Fault::TooLarge`].
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        start: usize,
        limit: usize,
    ) -> Result<(usize, usize), Fault> {
        let mut r = Bits {
            input,
            buf: 0,
            bits: 0,
            pos: 0,
            overrun: 0,
        };
        let mut op = start;
        loop {
            r.refill()?;
            let header = r.take(3);
            match header >> 1 {
                0 => op = stored(&mut r, out, op, limit)?,
                1 => {
                    self.fixed_tables();
                    op = self.block(&mut r, out, start, op, limit)?;
                }
                2 => {
                    self.dynamic_tables(&mut r)?;
                    op = self.block(&mut r, out, start, op, limit)?;
                }
                _ => return Err(r.corrupt("reserved block type")),
            }
            if header & 1 == 1 {
                break;
            }
        }
        if op > limit {
            return Err(Fault::TooLarge);
        }
        Ok((r.align()?, op))
    }

    fn fixed_tables(&mut self) {
        let mut lens = [0u8; 288];
        lens[..144].fill(8);
        lens[144..256].fill(9);
        lens[256..280].fill(7);
        lens[280..].fill(8);
        // Both codes are complete: building them cannot fail.
        let (litlen, dist) = self.tables.split_at_mut(LITLEN_SIZE);
        let _ = build(litlen, &lens, LITLEN_BITS, Alphabet::LitLen);
        let _ = build(dist, &[5; 32], DIST_BITS, Alphabet::Dist);
    }

    /// Reads a dynamic block's header and builds its tables.
    fn dynamic_tables(&mut self, r: &mut Bits<'_>) -> Result<(), Fault> {
        r.refill()?;
        let nlit = r.take(5) as usize + 257;
        let ndist = r.take(5) as usize + 1;
        let nprecode = r.take(4) as usize + 4;
        if nlit > 286 || ndist > 30 {
            return Err(r.corrupt("too many length or distance codes"));
        }
        let mut pre = [0u8; 19];
        for &sym in &PRECODE_ORDER[..nprecode] {
            if r.bits < 3 {
                r.refill()?;
            }
            pre[sym] = r.take(3) as u8;
        }
        if !build(&mut self.precode, &pre, PRECODE_BITS, Alphabet::Precode) {
            return Err(r.corrupt("invalid code-length code"));
        }
        let n = nlit + ndist;
        let mut i = 0;
        while i < n {
            if r.bits < 14 {
                r.refill()?;
            }
            let e = self.precode[r.buf as usize & (PRECODE_SIZE - 1)];
            if e & SPECIAL != 0 {
                return Err(r.corrupt("invalid code-length code"));
            }
            r.take(e & 0xff);
            let sym = (e >> 16) as u8;
            let (value, count) = match sym {
                0..=15 => (sym, 1),
                16 => {
                    let Some(&prev) = i.checked_sub(1).and_then(|p| self.lens.get(p)) else {
                        return Err(r.corrupt("code-length repeat with nothing before it"));
                    };
                    (prev, 3 + r.take(2) as usize)
                }
                17 => (0, 3 + r.take(3) as usize),
                _ => (0, 11 + r.take(7) as usize),
            };
            let Some(run) = self.lens.get_mut(i..i + count).filter(|_| i + count <= n) else {
                return Err(r.corrupt("code-length repeat past the declared codes"));
            };
            run.fill(value);
            i += count;
        }
        let (lit, dist) = self.lens[..n].split_at(nlit);
        if lit[256] == 0 {
            return Err(r.corrupt("no end-of-block code"));
        }
        let (litlen, dist_table) = self.tables.split_at_mut(LITLEN_SIZE);
        if !build(litlen, lit, LITLEN_BITS, Alphabet::LitLen) {
            return Err(r.corrupt("invalid literal/length code lengths"));
        }
        if !build(dist_table, dist, DIST_BITS, Alphabet::Dist) {
            return Err(r.corrupt("invalid distance code lengths"));
        }
        Ok(())
    }

    /// Decodes one Huffman block with the current tables; returns the new output end.
    ///
    /// The hot loop. The reader's state is kept in locals (registers): through a reference,
    /// every byte written to the output might alias it. Like libdeflate, `bits` is only
    /// meaningful in its low byte (entries are subtracted whole, their consumed-bit count
    /// being their low byte), and shifts take their count modulo 64.
    fn block(
        &self,
        reader: &mut Bits<'_>,
        out: &mut Vec<u8>,
        start: usize,
        mut op: usize,
        limit: usize,
    ) -> Result<usize, Fault> {
        const LITLEN_MASK: usize = (1 << LITLEN_BITS) - 1;
        const DIST_MASK: usize = (1 << DIST_BITS) - 1;
        let tables = &*self.tables;
        let input = reader.input;
        reader.refill()?;
        let (mut buf, mut bits, mut pos) = (reader.buf, reader.bits, reader.pos);
        // The output from the member's start, and `op` relative to it: one live value fewer in
        // the loop, and a distance is checked against `op` alone.
        let mut o: &mut [u8] = out.get_mut(start..).unwrap_or_default();
        op -= start;
        /// Consumes entry `e`'s bits; returns the buffer as it was.
        macro_rules! consume {
            ($e:expr) => {{
                let saved = buf;
                buf = buf.wrapping_shr($e);
                bits = bits.wrapping_sub($e);
                saved
            }};
        }
        /// An entry's extra bits, from the buffer as it was before `consume!`.
        macro_rules! extra {
            ($saved:expr, $e:expr) => {
                (($saved & !u64::MAX.wrapping_shl($e)) as u32).wrapping_shr($e >> 8) as usize
            };
        }
        /// Tops the buffer up to at least 56 bits; the bits already there stay as they are, so
        /// an entry looked up before stays valid.
        macro_rules! refill {
            () => {
                if let Some(word) = input.get(pos..pos + 8) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(word);
                    buf |= u64::from_le_bytes(w).wrapping_shl(bits);
                    pos += 7 - ((bits & 0xff) as usize >> 3);
                    bits |= 56;
                } else {
                    let mut slow = Bits {
                        input,
                        buf,
                        bits: bits & 0xff,
                        pos,
                        overrun: reader.overrun,
                    };
                    let refilled = slow.refill_slow();
                    (buf, bits, pos, reader.overrun) =
                        (slow.buf, slow.bits, slow.pos, slow.overrun);
                    if let Err(f) = refilled {
                        break Err(f);
                    }
                }
            };
        }
        macro_rules! put {
            ($e:expr) => {{
                let byte = ($e >> 16) as u8;
                if let Some(b) = o.get_mut(op) {
                    *b = byte;
                } else {
                    if let Err(f) = room(out, start + op, 1, limit) {
                        break Err(f);
                    }
                    o = out.get_mut(start..).unwrap_or_default();
                    o[op] = byte;
                }
                op += 1;
            }};
        }
        /// Writes the literal of entry `e` and looks up the next entry.
        macro_rules! literal {
            ($e:ident) => {{
                consume!($e);
                put!($e);
                $e = tables[buf as usize & LITLEN_MASK];
            }};
        }
        // The next literal/length entry is looked up as soon as its bits are in the buffer,
        // before the refill and the match copy, so that the table loads do not wait for
        // them. Bit budget: a refill leaves at least 56; a literal from the main table takes
        // at most 11, a length at most 20, a distance at most 21 (28 from a subtable, which
        // refills first), and a lookup needs 11.
        let mut e = tables[buf as usize & LITLEN_MASK];
        let stop = loop {
            if e & LITERAL != 0 {
                // Up to two literals (22 bits), then a refill (a third costs more in branch
                // mispredictions than it saves).
                literal!(e);
                if e & LITERAL != 0 {
                    literal!(e);
                }
                refill!();
                continue;
            }
            if e & SPECIAL != 0 {
                if e & SUBTABLE != 0 {
                    consume!(LITLEN_BITS);
                    let sub = (e >> 16) as usize + (buf as usize & ((1 << ((e >> 8) & 0xf)) - 1));
                    e = tables[sub & (LITLEN_SIZE - 1)];
                    if e & LITERAL != 0 {
                        literal!(e);
                        refill!();
                        continue;
                    }
                }
                if e & END_OF_BLOCK != 0 {
                    consume!(e);
                    break Ok(start + op);
                }
                if e & SPECIAL != 0 {
                    break Err(Fault::Corrupt(0, "invalid literal/length code"));
                }
            }
            let saved = consume!(e);
            let len = (e >> 16) as usize + extra!(saved, e);
            let mut d = tables[LITLEN_SIZE + (buf as usize & DIST_MASK)];
            if d & SPECIAL != 0 {
                if d & SUBTABLE != 0 {
                    consume!(DIST_BITS);
                    let sub = (d >> 16) as usize + (buf as usize & ((1 << ((d >> 8) & 0xf)) - 1));
                    d = tables[LITLEN_SIZE + (sub & (DIST_SIZE - 1))];
                }
                if d & SPECIAL != 0 {
                    break Err(Fault::Corrupt(0, "invalid distance code"));
                }
                refill!();
            }
            let saved = consume!(d);
            let distance = (d >> 16) as usize + extra!(saved, d);
            if distance > op {
                break Err(Fault::Corrupt(0, "distance too far back"));
            }
            e = tables[buf as usize & LITLEN_MASK];
            refill!();
            if op + len + SLACK > o.len() {
                if let Err(f) = room(out, start + op, len, limit) {
                    break Err(f);
                }
                o = out.get_mut(start..).unwrap_or_default();
            }
            copy_match(o, op, distance, len);
            op += len;
        };
        (reader.buf, reader.bits, reader.pos) = (buf, bits & 0xff, pos);
        match stop {
            Err(Fault::Corrupt(_, reason)) => Err(reader.corrupt(reason)),
            other => other,
        }
    }
}

/// Copies `len` bytes from `distance` back to `op`, LZ77-style (the source may overlap the
/// destination). `out` has [`SLACK`] bytes of room past `op + len`.
#[inline(always)]
fn copy_match(out: &mut [u8], op: usize, distance: usize, len: usize) {
    let end = op + len;
    if distance >= 40 {
        // The first 40 bytes in one copy (source and destination cannot overlap), then 16 at
        // a time.
        let (before, after) = out.split_at_mut(op);
        after[..40].copy_from_slice(&before[op - distance..op - distance + 40]);
        let mut d = op + 40;
        while d < end {
            out.copy_within(d - distance..d - distance + 16, d);
            d += 16;
        }
    } else if distance >= 16 {
        // 16 bytes at a time, each step reading bytes already written.
        let mut d = op;
        out.copy_within(d - distance..d - distance + 16, d);
        d += 16;
        while d < end {
            out.copy_within(d - distance..d - distance + 16, d);
            d += 16;
        }
    } else if distance >= 8 {
        // 8 bytes at a time, each step reading bytes already written; the first five steps
        // unconditionally (most matches are at most 40 bytes), so the loop rarely runs.
        let s = op - distance;
        out.copy_within(s..s + 8, op);
        out.copy_within(s + 8..s + 16, op + 8);
        out.copy_within(s + 16..s + 24, op + 16);
        out.copy_within(s + 24..s + 32, op + 24);
        out.copy_within(s + 32..s + 40, op + 32);
        let mut d = op + 40;
        while d < end {
            out.copy_within(d - distance..d - distance + 8, d);
            out.copy_within(d + 8 - distance..d + 16 - distance, d + 8);
            d += 16;
        }
    } else if distance == 1 {
        let b = out[op - 1];
        out[op..end].fill(b);
    } else {
        for i in op..end {
            out[i] = out[i - distance];
        }
    }
}

/// Makes room for `n` more bytes at `op` plus [`SLACK`]; [`Fault::TooLarge`] past `limit`.
#[cold]
#[inline(never)]
fn room(out: &mut Vec<u8>, op: usize, n: usize, limit: usize) -> Result<(), Fault> {
    if op + n > limit {
        return Err(Fault::TooLarge);
    }
    let want = (out.len().saturating_mul(2))
        .max(op + n + SLACK)
        .max(MIN_STEP)
        .min(limit.saturating_add(SLACK));
    if want > out.len() {
        out.resize(want, 0);
    }
    Ok(())
}

/// A stored block: byte-aligned length, its complement, and the bytes.
fn stored(r: &mut Bits<'_>, out: &mut Vec<u8>, op: usize, limit: usize) -> Result<usize, Fault> {
    let at = r.align()?;
    let Some(h) = r.input.get(at..at + 4) else {
        return Err(Fault::Truncated);
    };
    let len = usize::from(u16::from_le_bytes([h[0], h[1]]));
    if u16::from_le_bytes([h[0], h[1]]) != !u16::from_le_bytes([h[2], h[3]]) {
        return Err(Fault::Corrupt(at, "stored block length check failed"));
    }
    let Some(data) = r.input.get(at + 4..at + 4 + len) else {
        return Err(Fault::Truncated);
    };
    if op + len + 8 > out.len() {
        room(out, op, len, limit)?;
    }
    out[op..op + len].copy_from_slice(data);
    r.seek(at + 4 + len);
    Ok(op + len)
}

/// What symbol `sym` of an alphabet decodes to: its value, flags and extra bits.
fn payload(alphabet: Alphabet, sym: usize) -> (u32, u32) {
    match alphabet {
        Alphabet::Precode => ((sym as u32) << 16, 0),
        Alphabet::LitLen => match sym {
            0..=255 => (LITERAL | (sym as u32) << 16, 0),
            256 => (SPECIAL | END_OF_BLOCK, 0),
            257..=285 => (
                u32::from(LENGTH_BASE[sym - 257]) << 16,
                u32::from(LENGTH_EXTRA[sym - 257]),
            ),
            _ => (INVALID, 0),
        },
        Alphabet::Dist => match sym {
            0..=29 => (u32::from(DIST_BASE[sym]) << 16, u32::from(DIST_EXTRA[sym])),
            _ => (INVALID, 0),
        },
    }
}

/// Builds a decode table for the code with codeword lengths `lens` (canonical Huffman,
/// RFC 1951 3.2.2). `false` for an over-subscribed code, or an incomplete one other than a
/// single one-bit codeword or an empty code (whose gaps decode as [`INVALID`]).
fn build(table: &mut [u32], lens: &[u8], bits: u32, alphabet: Alphabet) -> bool {
    let mut count = [0u16; 16];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut left: i32 = 1;
    let mut max = 0;
    for (len, &c) in count.iter().enumerate().skip(1) {
        left = (left << 1) - i32::from(c);
        if left < 0 {
            return false;
        }
        if c != 0 {
            max = len;
        }
    }
    let main = 1usize << bits;
    if left > 0 {
        // Incomplete: only an empty code or one one-bit codeword (the other is an error).
        let single = max == 1 && count[1] == 1;
        if max != 0 && !single {
            return false;
        }
        table[..main].fill(INVALID);
        if max == 0 {
            return true;
        }
    }
    // Symbols sorted by codeword length, then by symbol: the canonical order.
    let mut offsets = [0u16; 17];
    for len in 1..16 {
        offsets[len + 1] = offsets[len] + count[len];
    }
    let mut sorted = [0u16; 288];
    for (sym, &l) in lens.iter().enumerate() {
        if l != 0 {
            let at = &mut offsets[usize::from(l)];
            sorted[usize::from(*at)] = sym as u16;
            *at += 1;
        }
    }
    let total = usize::from(offsets[16]);
    let mut remaining = count;
    let mut code: u32 = 0;
    let mut prev_len = 0;
    let mut sub_prefix = usize::MAX;
    let mut sub_start = 0;
    let mut sub_bits = 0;
    let mut next_free = main;
    // A complete code's main table is built by doubling: the entries of the codewords of
    // length `len` are written once into the first `2^len` slots, which are then copied
    // forward as the length grows (a copy per length rather than a store per slot). The one
    // incomplete code accepted (a single codeword) is written in every slot it owns instead.
    let complete = left == 0;
    let mut filled = 1usize;
    for &sym in &sorted[..total] {
        let sym = usize::from(sym);
        let len = u32::from(lens[sym]);
        code <<= len - prev_len;
        prev_len = len;
        let (value, extra) = payload(alphabet, sym);
        if len <= bits {
            let e = value | (len << 8) | (len + extra);
            if complete {
                while filled < 1 << len {
                    table.copy_within(..filled, filled);
                    filled <<= 1;
                }
                table[reverse(code, len)] = e;
            } else {
                let step = 1usize << len;
                let mut i = reverse(code, len);
                while i < main {
                    table[i] = e;
                    i += step;
                }
            }
        } else {
            while filled < main {
                table.copy_within(..filled, filled);
                filled <<= 1;
            }
            let prefix = reverse(code >> (len - bits), bits);
            if prefix != sub_prefix {
                // A new subtable: as many index bits as the codewords under this prefix need.
                sub_prefix = prefix;
                sub_bits = len - bits;
                let mut space: i32 = 1 << sub_bits;
                loop {
                    space -= i32::from(remaining[(bits + sub_bits) as usize]);
                    if space <= 0 || bits + sub_bits >= max as u32 {
                        break;
                    }
                    sub_bits += 1;
                    space <<= 1;
                }
                sub_start = next_free;
                next_free += 1 << sub_bits;
                table[prefix] =
                    SPECIAL | SUBTABLE | (sub_start as u32) << 16 | sub_bits << 8 | bits;
            }
            let sub_len = len - bits;
            let e = value | (sub_len << 8) | (sub_len + extra);
            let step = 1usize << sub_len;
            let mut i = reverse(code & ((1 << sub_len) - 1), sub_len);
            while i < 1 << sub_bits {
                table[sub_start + i] = e;
                i += step;
            }
        }
        remaining[len as usize] -= 1;
        code += 1;
    }
    while complete && filled < main {
        table.copy_within(..filled, filled);
        filled <<= 1;
    }
    true
}

/// The low `len` bits of `code`, reversed (deflate sends codewords most significant bit first).
#[inline]
fn reverse(code: u32, len: u32) -> usize {
    (code.reverse_bits() >> (32 - len)) as usize
}

/// The differential check behind the `decode` fuzz target and the tests: this inflater and
/// zlib-rs (the decoder it replaced, as strict as zlib) read `input` as a raw deflate stream
/// with the same verdict, the same output and the same end of stream. Panics otherwise.
#[expect(
    clippy::disallowed_types,
    reason = "the reference decoder the inflater is compared with, never used to decode a body"
)]
pub(crate) fn assert_agrees_with_zlib_rs(input: &[u8], limit: usize) {
    use flate2::{Decompress, FlushDecompress, Status};
    let reference = (|| {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(limit + 1);
        loop {
            let used = d.total_in() as usize;
            let before = out.len();
            let status = d
                .decompress_vec(&input[used..], &mut out, FlushDecompress::None)
                .map_err(|_| "corrupt")?;
            if out.len() > limit {
                return Err("too large");
            }
            match status {
                Status::StreamEnd => return Ok((d.total_in() as usize, out)),
                _ if d.total_in() as usize == used && out.len() == before => {
                    return Err(if out.len() == out.capacity() {
                        "too large"
                    } else {
                        "truncated"
                    });
                }
                _ => {}
            }
        }
    })();
    let mut out = Vec::new();
    let ours = Inflater::new()
        .inflate(input, &mut out, 0, limit)
        .map(|(used, end)| (used, out[..end].to_vec()));
    match (&ours, &reference) {
        (Ok(a), Ok(b)) => assert!(a == b, "both accept, but read differently"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "verdicts differ: ours {:?}, zlib-rs {:?}",
            ours.as_ref().map(|(u, o)| (u, o.len())),
            reference.as_ref().map(|(u, o)| (u, o.len()))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// Bits written as deflate reads them: values least significant bit first, Huffman
    /// codewords most significant bit first.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: u32,
    }

    impl BitWriter {
        fn value(&mut self, v: u32, n: u32) -> &mut Self {
            for i in 0..n {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let last = self.bytes.len() - 1;
                self.bytes[last] |= (((v >> i) & 1) as u8) << (self.bits % 8);
                self.bits += 1;
            }
            self
        }
        fn code(&mut self, code: u32, len: u32) -> &mut Self {
            self.value(reverse(code, len) as u32, len)
        }
        /// A fixed-code literal/length symbol.
        fn fixed(&mut self, sym: u32) -> &mut Self {
            match sym {
                0..=143 => self.code(0x30 + sym, 8),
                144..=255 => self.code(0x190 + sym - 144, 9),
                256..=279 => self.code(sym - 256, 7),
                _ => self.code(0xc0 + sym - 280, 8),
            }
        }
    }

    fn inflate(input: &[u8], limit: usize) -> Result<(usize, Vec<u8>), Fault> {
        assert_agrees_with_zlib_rs(input, limit);
        let mut out = Vec::new();
        Inflater::new()
            .inflate(input, &mut out, 0, limit)
            .map(|(used, end)| (used, out[..end].to_vec()))
    }

    fn reason(r: Result<(usize, Vec<u8>), Fault>) -> &'static str {
        match r {
            Err(Fault::Corrupt(_, reason)) => reason,
            other => panic!("not corrupt: {other:?}"),
        }
    }

    fn raw(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_fixed_block_decodes_literals_matches_and_its_end() {
        // 'a', then a length of 3 at distance 1, then 4 more at distance 4: "aaaa" + "aaaa".
        let mut w = BitWriter::default();
        w.value(1, 1).value(1, 2).fixed(u32::from(b'a'));
        w.fixed(257).code(0, 5); // length 3, distance code 0 (1)
        w.fixed(258).code(3, 5); // length 4, distance code 3 (4)
        w.fixed(256);
        let input = w.bytes.clone();
        assert_eq!(
            inflate(&input, 100),
            Ok((input.len(), b"aaaaaaaa".to_vec()))
        );
    }

    #[test]
    fn the_fixed_codes_reserved_symbols_are_refused() {
        for sym in [286, 287] {
            let mut w = BitWriter::default();
            w.value(1, 1).value(1, 2).fixed(sym).fixed(256);
            assert_eq!(
                reason(inflate(&w.bytes, 100)),
                "invalid literal/length code",
                "symbol {sym}"
            );
        }
        for dist in [30, 31] {
            let mut w = BitWriter::default();
            w.value(1, 1).value(1, 2).fixed(u32::from(b'a'));
            w.fixed(257).code(dist, 5).fixed(256);
            assert_eq!(
                reason(inflate(&w.bytes, 100)),
                "invalid distance code",
                "distance code {dist}"
            );
        }
    }

    #[test]
    fn a_distance_before_the_start_is_refused() {
        let mut w = BitWriter::default();
        w.value(1, 1).value(1, 2).fixed(u32::from(b'a'));
        w.fixed(257).code(1, 5).fixed(256); // distance 2 with one byte written
        assert_eq!(reason(inflate(&w.bytes, 100)), "distance too far back");
        // Nor before the member's start in a shared output.
        let mut w = BitWriter::default();
        w.value(1, 1).value(1, 2).fixed(257).code(0, 5).fixed(256);
        let mut out = b"earlier member".to_vec();
        let r = Inflater::new().inflate(&w.bytes, &mut out, 14, 100);
        assert!(
            matches!(r, Err(Fault::Corrupt(_, "distance too far back"))),
            "{r:?}"
        );
    }

    /// A dynamic block whose literal/length code is `lit_lens` (symbol, length) and whose
    /// distance code is one one-bit codeword, holding the literal/length codewords `data`.
    fn dynamic_block(lit_lens: &[(usize, u8)], data: &[(u32, u32)]) -> Vec<u8> {
        let mut lens = vec![0u8; 258];
        for &(sym, len) in lit_lens {
            lens[sym] = len;
        }
        lens[257] = 1;
        // The code-length code: 18 (a run of zeros) one bit, every length used two to
        // four bits (complete for up to three lengths besides 18).
        let used: Vec<u8> = {
            let mut u: Vec<u8> = lens.iter().copied().filter(|&l| l != 0).collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        assert!(used.len() <= 3);
        let mut pre = [0u8; 19];
        pre[18] = 1;
        let pre_lens: &[u8] = match used.len() {
            1 => &[1],
            2 => &[2, 2],
            _ => &[2, 3, 3],
        };
        // Canonical codewords for the code-length code.
        for (&l, &pl) in used.iter().zip(pre_lens) {
            pre[usize::from(l)] = pl;
        }
        let code_of = |sym: usize| -> (u32, u32) {
            let mut code = 0u32;
            for len in 1..=7u8 {
                for (s, &l) in pre.iter().enumerate() {
                    if l == len {
                        if s == sym {
                            return (code, u32::from(len));
                        }
                        code += 1;
                    }
                }
                code <<= 1;
            }
            unreachable!()
        };
        let mut w = BitWriter::default();
        w.value(1, 1)
            .value(2, 2)
            .value(0, 5)
            .value(0, 5)
            .value(19 - 4, 4);
        for sym in PRECODE_ORDER {
            w.value(u32::from(pre[sym]), 3);
        }
        let mut i = 0;
        while i < lens.len() {
            if lens[i] == 0 {
                let run = lens[i..].iter().take_while(|&&l| l == 0).count().min(138);
                if run >= 11 {
                    let (c, l) = code_of(18);
                    w.code(c, l).value(run as u32 - 11, 7);
                    i += run;
                    continue;
                }
                // Short runs: spell them with 18's minimum by borrowing from the run before;
                // the blocks built here never have one.
                panic!("a run of {run} zeros");
            }
            let (c, l) = code_of(usize::from(lens[i]));
            w.code(c, l);
            i += 1;
        }
        for &(code, len) in data {
            w.code(code, len);
        }
        w.bytes
    }

    #[test]
    fn an_incomplete_code_is_refused_even_where_the_stream_never_reaches_its_gap() {
        // 'a' one bit (0), end of block two bits (10): three quarters of the code space.
        // libdeflate completes such a code and decodes "a"; zlib and Go refuse it.
        let lenient = dynamic_block(&[(97, 1), (256, 2)], &[(0, 1), (2, 2)]);
        assert_eq!(
            reason(inflate(&lenient, 100)),
            "invalid literal/length code lengths"
        );
        // The same block with the code completed ('b' 10, end of block 11) decodes.
        let complete = dynamic_block(&[(97, 1), (98, 2), (256, 2)], &[(0, 1), (2, 2), (3, 2)]);
        assert_eq!(inflate(&complete, 100).map(|(_, o)| o), Ok(b"ab".to_vec()));
    }

    #[test]
    fn stored_blocks_check_their_length_and_the_reserved_type_is_refused() {
        let mut ok = BitWriter::default();
        ok.value(1, 1).value(0, 2);
        let mut input = ok.bytes.clone();
        input.extend_from_slice(&[3, 0, 0xfc, 0xff, b'a', b'b', b'c']);
        assert_eq!(inflate(&input, 100), Ok((input.len(), b"abc".to_vec())));
        input[2] ^= 1;
        assert_eq!(
            reason(inflate(&input, 100)),
            "stored block length check failed"
        );
        input[2] ^= 1;
        assert_eq!(
            inflate(&input[..input.len() - 1], 100),
            Err(Fault::Truncated)
        );
        let mut w = BitWriter::default();
        w.value(1, 1).value(3, 2).value(0, 16);
        assert_eq!(reason(inflate(&w.bytes, 100)), "reserved block type");
    }

    #[test]
    fn the_end_of_the_stream_is_where_its_last_bit_is() {
        let data = b"cpu,host=a usage=1i 1\n".repeat(50);
        let mut input = raw(&data, 6);
        let len = input.len();
        input.extend_from_slice(b"trailer");
        assert_eq!(inflate(&input, 1 << 20), Ok((len, data.clone())));
        for cut in 0..len {
            assert!(inflate(&input[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn output_past_the_limit_is_too_large_and_the_buffer_stays_bounded() {
        let data = vec![7u8; 1 << 20];
        let input = raw(&data, 9);
        let mut out = Vec::new();
        let r = Inflater::new().inflate(&input, &mut out, 0, 1000);
        assert_eq!(r, Err(Fault::TooLarge));
        assert!(out.len() <= 1000 + SLACK, "{}", out.len());
        assert_eq!(inflate(&input, data.len()).map(|(_, o)| o), Ok(data));
    }

    #[test]
    fn a_block_with_one_distance_round_trips_at_every_level() {
        // A block with one distance symbol has a one-codeword distance code (the one
        // incomplete code accepted).
        let data = b"abcabcabcabcabcabcabcabcabcabc".to_vec();
        for level in 1..=9 {
            let input = raw(&data, level);
            assert_eq!(inflate(&input, 1000).map(|(_, o)| o), Ok(data.clone()));
        }
    }

    fn datakit_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            proptest::collection::vec(
                prop_oneof![
                    Just(b"cpu,host=web-01 usage_user=12.5,usage_system=3i ".to_vec()),
                    Just(b"1700000000000000000\n".to_vec()),
                    Just(b"mem,host=db used=1024u,msg=\"a \\\"quoted\\\" value\" ".to_vec()),
                    proptest::collection::vec(b'0'..=b'9', 1..20),
                    proptest::collection::vec(any::<u8>(), 1..8),
                    Just(vec![0u8; 300]),
                ],
                0..120,
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// What zlib-rs's compressor writes, at every level, decodes to the original; every
        /// mutation of it (bytes changed, cut short) gets zlib-rs's verdict and output.
        #[test]
        fn reads_every_stream_as_zlib_rs_does(
            data in datakit_like(),
            level in 0u32..=9,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let input = raw(&data, level);
            prop_assert_eq!(inflate(&input, 1 << 20), Ok((input.len(), data.clone())));
            let mut mutant = input.clone();
            for (at, x) in &flips {
                let i = at.index(mutant.len());
                mutant[i] ^= x;
            }
            assert_agrees_with_zlib_rs(&mutant, 1 << 20);
            assert_agrees_with_zlib_rs(&mutant, data.len() / 2);
            assert_agrees_with_zlib_rs(&input[..cut.index(input.len() + 1)], 1 << 20);
        }
    }
}
