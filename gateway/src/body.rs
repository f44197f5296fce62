//! A request's body: read within its caps, its deadline and its minimum rate, under the global
//! in-flight and memory budgets and the identity's share of them ([`Held`], released when
//! dropped).
//!
//! Cancel safety: everything reserved is owned by the [`Held`] the read returns (or drops on
//! the way out), so a request dropped mid-body releases its slot and memory at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use oneway_protocol::Encoding;

use crate::edge::Counted;
use crate::response::{RequestError, overloaded};
use crate::state::State;
use crate::telemetry;

/// Bytes in KiB permits, rounded up.
pub(crate) fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// What a request holds of the global budgets and of its identity's share; released when
/// dropped. An identity never holds more than `overload.max_in_flight_per_identity` slots and
/// `overload.max_memory_per_identity_bytes` of the memory budget, so one agent, however many
/// slow bodies it opens, leaves the rest to the others.
pub(crate) struct Held {
    state: Arc<State>,
    identity: Arc<str>,
    in_flight: Option<(tokio::sync::OwnedSemaphorePermit, Counted<Arc<str>>)>,
    memory: Vec<(tokio::sync::OwnedSemaphorePermit, Counted<Arc<str>>)>,
    /// Bytes asked for so far, and the KiB permits that cover them.
    bytes: usize,
    kib: usize,
}

impl Held {
    pub(crate) fn new(state: &Arc<State>, identity: &Arc<str>) -> Held {
        Held {
            state: Arc::clone(state),
            identity: Arc::clone(identity),
            in_flight: None,
            memory: Vec::new(),
            bytes: 0,
            kib: 0,
        }
    }

    /// Takes an in-flight slot of the identity's share and of the global cap, or refuses.
    pub(crate) fn take_slot(&mut self) -> Result<(), RequestError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let cap = self.state.live().config.overload.max_in_flight_per_identity;
        let global = Arc::clone(&self.state.in_flight)
            .try_acquire_owned()
            .map_err(|_| overloaded("in_flight"))?;
        let mine = self
            .state
            .identity_in_flight
            .try_acquire(Arc::clone(&self.identity), cap)
            .ok_or_else(|| overloaded("identity_in_flight"))?;
        self.in_flight = Some((global, mine));
        Ok(())
    }

    /// Reserves `bytes` more of the memory budget, within the identity's share, or refuses.
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<(), RequestError> {
        self.grow_to(self.bytes.saturating_add(bytes))
    }

    /// Makes what is reserved cover `total` bytes, within the identity's share, or refuses.
    pub(crate) fn grow_to(&mut self, total: usize) -> Result<(), RequestError> {
        let want = kib(total);
        if want <= self.kib {
            self.bytes = self.bytes.max(total);
            return Ok(());
        }
        let more = want - self.kib;
        let share = kib(self
            .state
            .live()
            .config
            .overload
            .max_memory_per_identity_bytes);
        let permits = u32::try_from(more).map_err(|_| overloaded("memory"))?;
        let global = Arc::clone(&self.state.memory)
            .try_acquire_many_owned(permits)
            .map_err(|_| overloaded("memory"))?;
        let mine = self
            .state
            .identity_memory
            .try_acquire_n(Arc::clone(&self.identity), more, share)
            .ok_or_else(|| overloaded("identity_memory"))?;
        self.memory.push((global, mine));
        self.kib = want;
        self.bytes = total;
        self.report();
        Ok(())
    }

    fn report(&self) {
        let total = kib(self.state.live().config.overload.memory_budget_bytes);
        let used = total.saturating_sub(self.state.memory.available_permits());
        telemetry::series!(gauge: Gauge, telemetry::MEMORY_USED).set((used * 1024) as f64);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.memory.clear();
        self.in_flight = None;
        self.report();
    }
}

/// The body's first reservation, and the least it grows by: a body holds of the memory
/// budget what has arrived (rounded up to this), not what it declared.
const BODY_STEP: usize = 64 << 10;

/// Reads the body up to `limit` bytes within the body deadline, under the global budgets and
/// `identity`'s share of them: memory is reserved as the body arrives (in [`BODY_STEP`]s; the
/// buffer spans the declared length, but only the pages the body fills are memory), so a body
/// that declares megabytes and drips holds only what it sent; the in-flight slot is taken when the first
/// body byte arrives (as VictoriaMetrics does), so idle or slow connections hold no slot.
pub(crate) async fn read_body(
    state: &Arc<State>,
    req: Request<Incoming>,
    limit: usize,
    identity: &Arc<str>,
) -> Result<(http::request::Parts, Bytes, Held), RequestError> {
    let (parts, mut body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(RequestError::BodyTooLarge { limit });
    }
    let expected = declared.map_or(limit, |len| len as usize);
    let mut held = Held::new(state, identity);
    let first_step = expected.min(BODY_STEP);
    held.grow_to(first_step)?;
    let started = Instant::now();
    let live = state.live();
    let min_rate = live.config.listener.body_min_rate_bytes_per_second;
    let grace = live.config.listener.body_min_rate_grace;
    let read = async {
        // Address space for the declared length; its pages become memory only as the body
        // fills them, and that is what is reserved.
        let mut data = bytes::BytesMut::with_capacity(expected.min(limit));
        loop {
            // After the grace period the body must keep up an average of `min_rate`: the next
            // bytes are due by the time the bytes so far would have taken at that rate.
            let frame = if min_rate == 0 {
                body.frame().await
            } else {
                let due =
                    started + grace + Duration::from_secs_f64(data.len() as f64 / min_rate as f64);
                tokio::time::timeout_at(due.into(), body.frame())
                    .await
                    .map_err(|_| RequestError::BodyTooSlow)?
            };
            held.take_slot()?;
            match frame {
                None => return Ok(data.freeze()),
                Some(Err(_)) => return Err(RequestError::BodyRead),
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        let needed = data.len() + chunk.len();
                        if needed > limit {
                            return Err(RequestError::BodyTooLarge { limit });
                        }
                        if needed > held.bytes {
                            held.grow_to(
                                needed.next_multiple_of(BODY_STEP).min(expected.max(needed)),
                            )?;
                        }
                        data.extend_from_slice(&chunk);
                    }
                }
            }
        }
    };
    let body = tokio::time::timeout(live.config.listener.body_timeout, read)
        .await
        .map_err(|_| RequestError::BodyTimeout)??;
    Ok((parts, body, held))
}

/// What a compressed body is expected to decode to. gzip says it in its last four bytes
/// (ISIZE, the last member's length mod 2³²: exact for DataKit's one-member bodies); the
/// claim only sizes the reservation, since the decoder stops at this estimate and a body that
/// lied is decoded again within `max_decoded_bytes`. Otherwise 32× the compressed size
/// (DataKit's batches compress 5–20×). At least 64 KiB, at most `max_decoded`.
pub(crate) fn decode_estimate(encoding: Encoding, body: &[u8], max_decoded: usize) -> usize {
    const FLOOR: usize = 64 << 10;
    let guess = match encoding {
        Encoding::Identity => return 0,
        Encoding::Gzip if body.len() >= 18 => body[body.len() - 4..]
            .try_into()
            .map(|b| u32::from_le_bytes(b) as usize)
            .unwrap_or(usize::MAX),
        _ => body.len().saturating_mul(32),
    };
    max_decoded.min(guess.max(FLOOR))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decode_reservation_follows_gzips_own_length_within_bounds() {
        let gzip = |n: usize| {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&vec![b'a'; n]).expect("gzip");
            e.finish().expect("gzip")
        };
        let max = 64 << 20;
        assert_eq!(
            decode_estimate(Encoding::Gzip, &gzip(3 << 20), max),
            3 << 20
        );
        assert_eq!(decode_estimate(Encoding::Gzip, &gzip(10), max), 64 << 10);
        assert_eq!(decode_estimate(Encoding::Gzip, &gzip(100 << 20), max), max);
        assert_eq!(decode_estimate(Encoding::Gzip, b"short", max), 64 << 10);
        assert_eq!(decode_estimate(Encoding::Zstd, &[0; 4096], max), 128 << 10);
        assert_eq!(decode_estimate(Encoding::Identity, &[0; 4096], max), 0);
    }
}
