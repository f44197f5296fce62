//! Connection-level defences (reference/hardening.md §1, §5): the PROXY header read under a
//! deadline and a byte cap, per-source-address and per-identity connection caps, and the
//! phase tracking behind the keep-alive, request-head and connection-age deadlines.
//!
//! hyper's own header timer runs from the moment a connection waits for a request head,
//! idle or not, so it cannot tell "idle between requests" (60 s is fine) from "a head
//! arriving one byte a second" (10 s is plenty). [`Tracked`] watches the bytes: a connection
//! is *idle* until the first byte of a request arrives, then *reading a head* until the
//! service is called, then *busy* until the response is handed back.
//!
//! Cancel safety: [`read_proxy_header`] reads byte runs that never pass the header's end, so
//! dropping it at its deadline loses only an incomplete header, and the connection with it.

use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use oneway_protocol::proxy_header::{self, PREFIX, Progress, ProxyError, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::framing::{Framing, Scanner};

/// Counts what each key holds (open connections, in-flight requests, KiB of memory), refusing
/// past a cap. Entries go when their count does.
#[derive(Debug)]
pub struct Counter<K: Eq + Hash + Clone> {
    counts: Arc<DashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            counts: Arc::new(DashMap::new()),
        }
    }
}

/// What one holder counted; dropping it gives the places back.
#[derive(Debug)]
pub struct Counted<K: Eq + Hash + Clone> {
    counts: Arc<DashMap<K, usize>>,
    key: K,
    n: usize,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    /// Counts one for `key` unless it already holds `cap`.
    pub fn try_acquire(&self, key: K, cap: usize) -> Option<Counted<K>> {
        self.try_acquire_n(key, 1, cap)
    }

    /// Counts `n` for `key` unless that would take it past `cap`.
    pub fn try_acquire_n(&self, key: K, n: usize, cap: usize) -> Option<Counted<K>> {
        let mut entry = self.counts.entry(key.clone()).or_insert(0);
        if entry.saturating_add(n) > cap {
            let unused = *entry == 0;
            drop(entry);
            if unused {
                self.counts.remove_if(&key, |_, held| *held == 0);
            }
            return None;
        }
        *entry += n;
        drop(entry);
        Some(Counted {
            counts: Arc::clone(&self.counts),
            key,
            n,
        })
    }

    /// What `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.counts.get(key).map_or(0, |n| *n)
    }

    /// Keys with open connections (bounded by the open connections).
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

impl<K: Eq + Hash + Clone> Counted<K> {
    /// The key counted.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Eq + Hash + Clone> Drop for Counted<K> {
    fn drop(&mut self) {
        let give_back = self.n;
        self.counts.remove_if_mut(&self.key, |_, n| {
            *n -= give_back;
            *n == 0
        });
    }
}

/// Why the PROXY header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// Not within the deadline.
    Timeout,
    /// The peer closed or the read failed.
    Closed,
    /// Bad bytes.
    Invalid(ProxyError),
}

impl ProxyFailure {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyFailure::Timeout => "timeout",
            ProxyFailure::Closed => "closed",
            ProxyFailure::Invalid(e) => e.kind(),
        }
    }
}

/// Reads exactly one PROXY header from `stream` within `deadline`, never a byte past it
/// (what follows is the TLS handshake) and never more than [`proxy_header::MAX_V2`].
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    deadline: Duration,
) -> Result<ProxyHeader, ProxyFailure> {
    let read = async {
        let mut buf = Vec::with_capacity(64);
        let mut need = PREFIX;
        loop {
            let have = buf.len();
            buf.resize(need, 0);
            stream
                .read_exact(&mut buf[have..need])
                .await
                .map_err(|_| ProxyFailure::Closed)?;
            match proxy_header::parse(&buf).map_err(ProxyFailure::Invalid)? {
                Progress::Done(header) => return Ok(header),
                Progress::Need(n) => need = n,
            }
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| ProxyFailure::Timeout)?
}

/// The client address a connection is accounted to: the PROXY header's source when there is
/// one, else the TCP peer.
pub fn client_address(peer: SocketAddr, header: Option<&ProxyHeader>) -> SocketAddr {
    header.and_then(|h| h.source).unwrap_or(peer)
}

/// The key a connection is counted under for the per-IP cap: an IPv4 address as it is
/// (IPv4-mapped IPv6 is IPv4), an IPv6 address cut to its first `ipv6_prefix_len` bits, because
/// one host routinely owns a whole /64 and picks a new address from it per connection.
pub fn ip_key(addr: SocketAddr, ipv6_prefix_len: u8) -> IpAddr {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Where a connection is in its request cycle, and since when.
#[derive(Debug)]
pub struct Phase {
    /// The framing of each request head read and not yet served, in order.
    framings: std::sync::Mutex<std::collections::VecDeque<Framing>>,
    state: AtomicU8,
    since_ms: AtomicU64,
    epoch: Instant,
    changed: tokio::sync::Notify,
}

/// What a connection's phase says about its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Idle longer than the keep-alive timeout.
    Idle,
    /// A request head slower than the head deadline.
    Head,
}

impl Phase {
    /// A connection that just became idle (before its first request).
    pub fn new() -> Arc<Phase> {
        Arc::new(Phase {
            framings: std::sync::Mutex::new(std::collections::VecDeque::new()),
            state: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn set(&self, state: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
        self.changed.notify_one();
    }

    /// Completes after the phase changed (a stored notification counts).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The service was called: the head is in. Returns how that head framed its body (see
    /// [`crate::framing`]); [`Framing::Unscanned`] when the scanner did not see it.
    pub fn busy(&self) -> Framing {
        self.set(BUSY);
        self.framings
            .lock()
            .ok()
            .and_then(|mut f| f.pop_front())
            .unwrap_or(Framing::Unscanned)
    }

    /// The response was handed back: waiting for the next request.
    pub fn idle(&self) {
        self.set(IDLE);
    }

    /// Since when the connection has been idle (no byte of a next request read), if it is.
    pub fn idle_since(&self) -> Option<Instant> {
        (self.state.load(Ordering::Acquire) == IDLE)
            .then(|| self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed)))
    }

    /// A read brought bytes; returns whether they start a new request head.
    fn first_byte(&self) -> bool {
        // The phase's start is written before the phase, so a reader never pairs the head
        // deadline with the idle start.
        if self.state.load(Ordering::Acquire) == IDLE {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.state.store(HEAD, Ordering::Release);
            self.changed.notify_one();
            true
        } else {
            false
        }
    }

    /// When the current phase's deadline passes (`None` while busy: the body and upstream
    /// have their own deadlines), and which one it is.
    pub fn deadline(&self, keepalive: Duration, head: Duration) -> Option<(Instant, Expiry)> {
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match self.state.load(Ordering::Acquire) {
            IDLE => Some((since + keepalive, Expiry::Idle)),
            HEAD => Some((since + head, Expiry::Head)),
            _ => None,
        }
    }
}

/// An I/O stream that reports the first byte of each request to its [`Phase`], and follows
/// every request's framing with a [`Scanner`] (what hyper does not report; see
/// [`crate::framing`]).
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    phase: Arc<Phase>,
    scanner: Scanner,
    /// Set once the write side is shut: the lingering close's deadlines.
    linger: Option<Linger>,
    /// Bytes read once already (the scanner saw them) and handed back, read again first: what
    /// a finished hyper connection had read but not served, for the next one on the stream.
    rewound: Option<bytes::Bytes>,
}

/// A lingering close's deadlines (nginx's `lingering_close`): after the last response and the
/// end of the write side, what the peer still sends is read and thrown away until it stops
/// (nothing for [`LINGER_QUIET`]), closes, or [`LINGER_MAX`] passes. Closing a socket with
/// unread bytes makes the kernel answer with a reset, and the reset can reach the client
/// before it has read the response: a client refused in the middle of its body (a budget
/// ran out) would see a broken connection instead of the 503 telling it to retry.
#[derive(Debug)]
struct Linger {
    until: Pin<Box<tokio::time::Sleep>>,
    quiet: Pin<Box<tokio::time::Sleep>>,
}

/// The longest a closing connection lingers.
pub const LINGER_MAX: Duration = Duration::from_secs(2);
/// A closing connection stops lingering once the peer sent nothing for this long.
pub const LINGER_QUIET: Duration = Duration::from_millis(250);

impl<S> Tracked<S> {
    /// Wraps `inner`; heads are followed up to `max_head` bytes (hyper refuses longer ones).
    pub fn new(inner: S, phase: Arc<Phase>, max_head: usize) -> Tracked<S> {
        Tracked {
            inner,
            phase,
            scanner: Scanner::new(max_head),
            linger: None,
            rewound: None,
        }
    }

    /// Hands `bytes` back: the next reads return them before anything new (they count for the
    /// phase again, not for the scanner, which already followed them).
    pub fn rewind(&mut self, bytes: bytes::Bytes) {
        if !bytes.is_empty() {
            self.rewound = Some(bytes);
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably (reading from it directly would bypass the scanner).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(rewound) = self.rewound.as_mut() {
            let n = rewound.len().min(buf.remaining());
            buf.put_slice(&rewound.split_to(n));
            if rewound.is_empty() {
                self.rewound = None;
            }
            if n > 0 {
                self.phase.first_byte();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.first_byte();
            let this = &mut *self;
            if let Ok(mut framings) = this.phase.framings.lock() {
                this.scanner.feed(&buf.filled()[before..], &mut framings);
            }
        }
        poll
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    /// Shuts the write side (TLS `close_notify`, then TCP FIN), then lingers ([`Linger`]).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            let now = tokio::time::Instant::now();
            this.linger = Some(Linger {
                until: Box::pin(tokio::time::sleep_until(now + LINGER_MAX)),
                quiet: Box::pin(tokio::time::sleep_until(now + LINGER_QUIET)),
            });
        }
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scrap = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scrap);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    let now = tokio::time::Instant::now();
                    linger.quiet.as_mut().reset(now + LINGER_QUIET);
                    if linger.until.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The peer closed, or the connection broke: nothing more to wait for.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    // Polled after every reset, so that both deadlines wake this task.
                    let over = linger.until.as_mut().poll(cx).is_ready()
                        || linger.quiet.as_mut().poll(cx).is_ready();
                    return if over {
                        Poll::Ready(Ok(()))
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_caps_per_key_and_forgets_empty_keys() {
        let c: Counter<IpAddr> = Counter::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let g1 = c.try_acquire(a, 2).expect("first");
        let g2 = c.try_acquire(a, 2).expect("second");
        assert!(c.try_acquire(a, 2).is_none(), "third refused");
        let g3 = c.try_acquire(b, 2).expect("another key");
        assert_eq!(c.tracked(), 2);
        drop(g1);
        let g4 = c.try_acquire(a, 2).expect("room again");
        drop((g2, g3, g4));
        assert_eq!(c.tracked(), 0, "no state left behind");
    }

    #[tokio::test]
    async fn rewound_bytes_are_read_first_and_scanned_once() {
        use tokio::io::AsyncWriteExt;
        let (client, server) = tokio::io::duplex(4096);
        let phase = Phase::new();
        let mut tracked = Tracked::new(server, Arc::clone(&phase), 16 << 10);
        let mut client = client;
        let head = b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        client.write_all(head).await.expect("write");
        let mut buf = vec![0u8; head.len()];
        tracked.read_exact(&mut buf).await.expect("read");
        assert_eq!(
            phase.framings.lock().expect("lock").len(),
            1,
            "scanned once"
        );
        phase.busy();
        phase.idle();
        // hyper hands back what it read but did not serve: read again first, counted as the
        // start of a request head, not scanned again.
        tracked.rewind(bytes::Bytes::from_static(b"POST /b"));
        client.write_all(b" HTTP/1.1").await.expect("write");
        let mut again = vec![0u8; 16];
        tracked.read_exact(&mut again).await.expect("read");
        assert_eq!(&again, b"POST /b HTTP/1.1");
        assert_eq!(
            phase
                .deadline(Duration::from_secs(60), Duration::from_secs(10))
                .map(|d| d.1),
            Some(Expiry::Head)
        );
        assert_eq!(
            phase.framings.lock().expect("lock").len(),
            0,
            "the rewound bytes were not scanned twice; the new ones are a head in progress"
        );
    }

    #[test]
    fn phase_deadlines_follow_the_request_cycle() {
        let p = Phase::new();
        let keep = Duration::from_secs(60);
        let head = Duration::from_secs(10);
        let (at, kind) = p.deadline(keep, head).expect("idle");
        assert_eq!(kind, Expiry::Idle);
        assert!(at > Instant::now() + Duration::from_secs(50));
        p.first_byte();
        assert_eq!(p.deadline(keep, head).expect("head").1, Expiry::Head);
        p.first_byte(); // more bytes of the same head do not move it
        p.busy();
        assert!(p.deadline(keep, head).is_none());
        p.idle();
        assert_eq!(p.deadline(keep, head).expect("idle").1, Expiry::Idle);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4000".parse().expect("addr");
        assert_eq!(
            ip_key(mapped, 64),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );
        let v4: SocketAddr = "192.0.2.1:4000".parse().expect("addr");
        assert_eq!(ip_key(v4, 8), "192.0.2.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn a_counter_holds_weights_up_to_its_cap_and_forgets_empty_keys() {
        let c: Counter<&str> = Counter::default();
        let a = c.try_acquire_n("a", 3, 4).expect("3 of 4");
        assert!(c.try_acquire_n("a", 2, 4).is_none(), "5 > 4");
        let b = c.try_acquire_n("a", 1, 4).expect("4 of 4");
        assert_eq!(c.held(&"a"), 4);
        assert!(c.try_acquire_n("z", 5, 4).is_none());
        assert_eq!(c.tracked(), 1, "a refused key leaves nothing behind");
        drop(a);
        assert_eq!(c.held(&"a"), 1);
        drop(b);
        assert_eq!(c.tracked(), 0);
    }

    #[test]
    fn ipv6_addresses_count_by_their_prefix() {
        let key = |a: &str, len| ip_key(a.parse().expect("addr"), len).to_string();
        assert_eq!(key("[2001:db8:1:2:aaaa::1]:1", 64), "2001:db8:1:2::");
        assert_eq!(
            key("[2001:db8:1:2:aaaa::1]:1", 64),
            key("[2001:db8:1:2::ffff]:9", 64)
        );
        assert_ne!(
            key("[2001:db8:1:2::1]:1", 64),
            key("[2001:db8:1:3::1]:1", 64)
        );
        assert_eq!(
            key("[2001:db8:1:2::1]:1", 48),
            key("[2001:db8:1:3::1]:1", 48)
        );
        assert_eq!(key("[2001:db8::1]:1", 128), "2001:db8::1");
        assert_ne!(key("[2001:db8::1]:1", 128), key("[2001:db8::2]:1", 128));
        assert_eq!(key("[2001:db8::1]:1", 1), "::");
        assert_eq!(key("[ffff::1]:1", 1), "8000::");
    }
}
