//! The spool log: segments of records on a [`Storage`], with recovery, group append,
//! "delivered up to", dead letters and quarantine. Synchronous and single-threaded: the
//! spool's writer thread owns it; nothing else mutates the directory.
//!
//! Invariants (reference/hardening.md §7):
//! - `append` returns only after the records are written **and** `sync_data`ed; a new segment
//!   is synced, and its directory too, before any record in it is acknowledged.
//! - A write that fails with ENOSPC is cut back to the last synced length and reported as
//!   [`SpoolError::DiskFull`] (back-pressure, not corruption); any other write error, any
//!   sync error and a failed cut-back are [`SpoolError::Fatal`]: the caller must stop.
//! - "Delivered up to" is persisted (temp, fsync, rename, fsync dir) before a segment it
//!   covers is unlinked. Losing an update only causes re-delivery (at-least-once).
//! - Recovery truncates only a torn tail of the newest segment; corruption followed by valid
//!   records, or any bad record in an older segment, moves that segment to `quarantine/`.

use std::collections::VecDeque;
use std::io;

use super::SpoolError;
use super::record::{self, FrameError, Payload, SEGMENT_HEADER, SegmentError};
use super::storage::{Storage, StorageFile};

/// The file holding "delivered up to".
pub const DELIVERED: &str = "delivered";
/// Dead letters: records the upstream refused with a 4xx.
pub const DEAD_DIR: &str = "dead";
/// Segments with a bad record, kept for the operator.
pub const QUARANTINE_DIR: &str = "quarantine";
const DELIVERED_MAGIC: &[u8; 4] = b"OWD1";

/// The name of the segment starting at `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The `first_seq` in a segment name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn encode_delivered(seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(DELIVERED_MAGIC);
    out[4..12].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&out[..12]);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// One "delivered up to" record, if it is valid.
fn decode_delivered_record(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 16 || &bytes[..4] != DELIVERED_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
    let seq = u64::from_le_bytes(bytes[4..12].try_into().ok()?);
    (crc32c::crc32c(&bytes[..12]) == crc).then_some(seq)
}

/// "Delivered up to" in a "delivered" file: a journal of 16-byte records, each appended and
/// synced as the mark moves, so the highest valid record of its valid prefix (a crash can tear
/// only the last one). `None` when even the first record is not valid.
pub fn decode_delivered(bytes: &[u8]) -> Option<u64> {
    bytes
        .chunks(16)
        .map_while(decode_delivered_record)
        .reduce(u64::max)
}

/// The journal is written whole again (one record) once it is this long.
const DELIVERED_JOURNAL_BYTES: u64 = 64 << 10;

/// The highest sequence number in a damaged segment (so new ones never repeat it).
fn salvaged_max(bytes: &[u8], first_seq: u64) -> u64 {
    record::salvage(bytes)
        .0
        .iter()
        .filter_map(|f| record::check_frame(f).ok().map(|(seq, _)| seq))
        .fold(first_seq, u64::max)
}

/// A segment still holding undelivered records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its first sequence number (and name).
    pub first_seq: u64,
    /// Its last record's sequence number, if it has any.
    pub last_seq: Option<u64>,
    /// Its synced length in bytes.
    pub len: u64,
}

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// Records waiting to be delivered.
    pub pending_records: u64,
    /// Bytes cut from a torn tail.
    pub truncated_bytes: u64,
    /// Segments moved to `quarantine/`, by name, with why.
    pub quarantined: Vec<(String, String)>,
    /// Fully delivered segments removed (a crash came between persisting and unlinking).
    pub removed_delivered: usize,
    /// The "delivered" file was unreadable, so everything on disk will be replayed.
    pub delivered_unreadable: bool,
}

/// The log.
#[derive(Debug)]
pub struct Log<S: Storage> {
    storage: S,
    segment_bytes: u64,
    /// Segments in order; the last one is the one appended to.
    segments: VecDeque<Segment>,
    active: Option<S::File>,
    next_seq: u64,
    delivered: u64,
    delivered_persisted: u64,
    /// The "delivered" journal, open for appending, and its length.
    journal: Option<(S::File, u64)>,
    dead: Option<(String, S::File, u64)>,
}

fn fatal(what: &str, e: &io::Error) -> SpoolError {
    SpoolError::Fatal(format!("{what}: {e}"))
}

fn is_enospc(e: &io::Error) -> bool {
    e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull
}

impl<S: Storage> Log<S> {
    /// Opens the log in `storage`, recovering from whatever a crash left.
    pub fn open(storage: S, segment_bytes: u64) -> Result<(Log<S>, Recovery), SpoolError> {
        let mut report = Recovery::default();
        for dir in [DEAD_DIR, QUARANTINE_DIR] {
            storage
                .create_dir(dir)
                .map_err(|e| fatal("create directory", &e))?;
        }
        let names = storage.list("").map_err(|e| fatal("list spool", &e))?;
        for name in names.iter().filter(|n| n.ends_with(".tmp")) {
            let _ = storage.remove(name);
        }
        let delivered = match storage.read(DELIVERED) {
            Ok(bytes) => {
                let delivered = decode_delivered(&bytes).unwrap_or_else(|| {
                    report.delivered_unreadable = true;
                    0
                });
                if bytes.len() != 16 || report.delivered_unreadable {
                    // Compacted to one record, so that appends start on a record boundary.
                    storage
                        .replace_durably(DELIVERED, &encode_delivered(delivered))
                        .map_err(|e| fatal("rewrite delivered", &e))?;
                }
                delivered
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Created now, while there is room, so that a later update can always be
                // written in place even with the disk full.
                storage
                    .replace_durably(DELIVERED, &encode_delivered(0))
                    .map_err(|e| fatal("create delivered", &e))?;
                0
            }
            Err(e) => return Err(fatal("read delivered", &e)),
        };
        let journal = storage
            .open_append(DELIVERED)
            .map_err(|e| fatal("open delivered", &e))?;
        let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        firsts.sort_unstable();
        report.segments = firsts.len();
        let mut segments = VecDeque::new();
        let mut max_seq = delivered;
        let mut quarantine = Vec::new();
        for (i, &first) in firsts.iter().enumerate() {
            let newest = i + 1 == firsts.len();
            let name = segment_name(first);
            let bytes = storage.read(&name).map_err(|e| fatal("read segment", &e))?;
            let scan = match record::scan_segment(&bytes) {
                Ok(s) if s.first_seq == first => s,
                Ok(_) => {
                    max_seq = max_seq.max(salvaged_max(&bytes, first));
                    quarantine.push((name, "header names another sequence".to_string()));
                    continue;
                }
                Err(SegmentError::Short) if newest => {
                    // Its creation was torn; no record in it was ever acknowledged.
                    storage
                        .remove(&name)
                        .map_err(|e| fatal("remove torn segment", &e))?;
                    continue;
                }
                Err(e) => {
                    max_seq = max_seq.max(salvaged_max(&bytes, first));
                    quarantine.push((name, e.to_string()));
                    continue;
                }
            };
            let mut len = bytes.len() as u64;
            if let Some(problem) = scan.problem {
                if newest && !scan.valid_after_problem {
                    let mut f = storage
                        .open_append(&name)
                        .map_err(|e| fatal("open segment", &e))?;
                    f.set_len(scan.valid_len as u64)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| fatal("truncate torn tail", &e))?;
                    report.truncated_bytes += len - scan.valid_len as u64;
                    len = scan.valid_len as u64;
                } else {
                    let at = scan.valid_len;
                    max_seq = max_seq.max(salvaged_max(&bytes, first));
                    quarantine.push((name, format!("{problem} at byte {at}")));
                    continue;
                }
            }
            let last_seq = scan.records.last().map(|r| r.0);
            if let Some(last) = last_seq {
                max_seq = max_seq.max(last);
            }
            segments.push_back(Segment {
                first_seq: first,
                last_seq,
                len,
            });
        }
        let mut log = Log {
            storage,
            segment_bytes,
            segments,
            active: None,
            next_seq: max_seq + 1,
            delivered,
            delivered_persisted: delivered,
            journal: Some((journal, 16)),
            dead: None,
        };
        for (name, why) in quarantine {
            log.quarantine_file(&name)?;
            report.quarantined.push((name, why));
        }
        // Segments fully covered by "delivered" (a crash came between persisting it and the
        // unlink), and empty segments that are not the newest, go.
        let newest = log.segments.back().map(|s| s.first_seq);
        let delivered = log.delivered;
        let before = log.segments.len();
        let storage = &log.storage;
        let mut failed = None;
        log.segments.retain(|s| {
            let done = match s.last_seq {
                Some(last) => last <= delivered,
                None => Some(s.first_seq) != newest,
            };
            if done && let Err(e) = storage.remove(&segment_name(s.first_seq)) {
                failed = Some(e);
            }
            !done
        });
        if let Some(e) = failed {
            return Err(fatal("remove delivered segment", &e));
        }
        report.removed_delivered = before - log.segments.len();
        if let Some(last) = log.segments.back()
            && last.len < segment_bytes
        {
            log.active = Some(
                log.storage
                    .open_append(&segment_name(last.first_seq))
                    .map_err(|e| fatal("open segment", &e))?,
            );
        }
        report.pending_records = log.pending_records();
        Ok((log, report))
    }

    /// Whether "delivered up to" moved since it was last persisted.
    pub fn delivered_pending(&self) -> bool {
        self.delivered_persisted != self.delivered
    }

    /// The next sequence number to be assigned.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// "Delivered up to" (in memory; persisted before any segment is unlinked).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Records appended and not yet delivered.
    pub fn pending_records(&self) -> u64 {
        let first_pending = self.delivered + 1;
        self.segments
            .iter()
            .filter_map(|s| s.last_seq.map(|l| (s.first_seq.max(first_pending), l)))
            .map(|(a, b)| (b + 1).saturating_sub(a))
            .sum()
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The segments, oldest first, with their synced lengths.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// Appends `payloads` as one group with one sync; returns the first sequence number.
    /// Nothing is acknowledged unless this returns `Ok`.
    pub fn append(&mut self, payloads: &[&Payload]) -> Result<u64, SpoolError> {
        if payloads.is_empty() {
            return Ok(self.next_seq);
        }
        let needs_segment = match (&self.active, self.segments.back()) {
            (Some(_), Some(s)) => s.len >= self.segment_bytes,
            _ => true,
        };
        if needs_segment {
            self.start_segment()?;
        }
        let first = self.next_seq;
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.frame_len()).sum());
        for (i, p) in payloads.iter().enumerate() {
            p.frame_into(first + i as u64, &mut buf);
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(SpoolError::Fatal("no active segment".into()));
        };
        let Some(file) = self.active.as_mut() else {
            return Err(SpoolError::Fatal("no active segment".into()));
        };
        if let Err(e) = file.append(&buf) {
            if is_enospc(&e) {
                file.set_len(seg.len)
                    .map_err(|e| fatal("cut back a partial write", &e))?;
                return Err(SpoolError::DiskFull);
            }
            return Err(fatal("write", &e));
        }
        file.sync_data().map_err(|e| fatal("fdatasync", &e))?;
        seg.len += buf.len() as u64;
        let last = first + payloads.len() as u64 - 1;
        seg.last_seq = Some(last);
        self.next_seq = last + 1;
        Ok(first)
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let first = self.next_seq;
        let name = segment_name(first);
        // The previous segment was synced by its last append; it is sealed from here on.
        let created = (|| {
            let mut f = self.storage.create(&name)?;
            f.append(&record::segment_header(first))?;
            f.sync_data()?;
            self.storage.sync_dir("")?;
            Ok::<_, io::Error>(f)
        })();
        match created {
            Ok(f) => {
                self.active = Some(f);
                self.segments.push_back(Segment {
                    first_seq: first,
                    last_seq: None,
                    len: SEGMENT_HEADER as u64,
                });
                Ok(())
            }
            Err(e) if is_enospc(&e) => {
                self.storage
                    .remove(&name)
                    .map_err(|e| fatal("remove a partial segment", &e))?;
                Err(SpoolError::DiskFull)
            }
            Err(e) => Err(fatal("create segment", &e)),
        }
    }

    /// Records that everything up to `seq` reached the upstream (or the dead letters), and
    /// unlinks the segments this completes, persisting "delivered up to" first.
    pub fn mark_delivered(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.delivered = self.delivered.max(seq);
        while self.segments.len() > 1 {
            let Some(front) = self.segments.front() else {
                break;
            };
            match front.last_seq {
                Some(last) if last > self.delivered => break,
                _ => {}
            }
            let name = segment_name(front.first_seq);
            if !self.persist_delivered()? {
                break; // kept until "delivered" can be written
            }
            match self.storage.remove(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(fatal("remove delivered segment", &e)),
            }
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Persists "delivered up to" if it moved; returns whether it is persisted. With the
    /// disk full (no room for the temp file) the existing file is overwritten in place: its
    /// CRC turns a torn overwrite into "replay everything", never into a loss.
    ///
    /// A move is one 16-byte record appended to the journal and one `fdatasync`; a long
    /// journal is written whole again (temp file, rename).
    pub fn persist_delivered(&mut self) -> Result<bool, SpoolError> {
        if self.delivered_persisted == self.delivered {
            return Ok(true);
        }
        let contents = encode_delivered(self.delivered);
        let appended = match self.journal.as_mut() {
            Some((file, len)) if *len + 16 <= DELIVERED_JOURNAL_BYTES => {
                match file.append(&contents).and_then(|()| file.sync_data()) {
                    Ok(()) => {
                        *len += 16;
                        Ok(())
                    }
                    Err(e) => {
                        // Cut a partial record back, so that later appends stay aligned; the
                        // next move writes the journal whole anyway.
                        let _ = file.set_len(*len);
                        *len = DELIVERED_JOURNAL_BYTES;
                        Err(e)
                    }
                }
            }
            _ => self.compact_delivered(&contents),
        };
        let written = match appended {
            Err(e) if is_enospc(&e) => {
                let _ = self.storage.remove(&format!("{DELIVERED}.tmp"));
                // In place at the start: the journal's highest record wins, so this one
                // (the newest) counts whatever follows it.
                match self.storage.overwrite(DELIVERED, &contents) {
                    Err(e) if is_enospc(&e) || e.kind() == io::ErrorKind::NotFound => {
                        return Ok(false);
                    }
                    other => other,
                }
            }
            other => other,
        };
        written.map_err(|e| fatal("persist delivered", &e))?;
        self.delivered_persisted = self.delivered;
        Ok(true)
    }

    /// Writes the journal whole as one record and reopens it for appending.
    fn compact_delivered(&mut self, contents: &[u8; 16]) -> io::Result<()> {
        self.journal = None;
        self.storage.replace_durably(DELIVERED, contents)?;
        self.journal = Some((self.storage.open_append(DELIVERED)?, 16));
        Ok(())
    }

    /// Appends a record frame (as read from a segment) to the dead letters, synced.
    pub fn dead_letter(&mut self, frame: &[u8], seq: u64) -> Result<(), SpoolError> {
        let rotate = self
            .dead
            .as_ref()
            .is_none_or(|(_, _, len)| *len >= self.segment_bytes);
        if rotate {
            let name = format!("{DEAD_DIR}/{}", segment_name(seq));
            let mut f = match self.storage.open_append(&name) {
                Ok(f) => f,
                Err(_) => {
                    let mut f = self
                        .storage
                        .create(&name)
                        .map_err(|e| fatal("create dead-letter file", &e))?;
                    f.append(&record::segment_header(seq))
                        .map_err(|e| fatal("write dead letter", &e))?;
                    self.storage
                        .sync_dir(DEAD_DIR)
                        .map_err(|e| fatal("sync dead-letter directory", &e))?;
                    f
                }
            };
            f.sync_data().map_err(|e| fatal("sync dead letter", &e))?;
            self.dead = Some((name, f, SEGMENT_HEADER as u64));
        }
        let Some((_, f, len)) = self.dead.as_mut() else {
            return Err(SpoolError::Fatal("no dead-letter file".into()));
        };
        f.append(frame)
            .and_then(|()| f.sync_data())
            .map_err(|e| fatal("write dead letter", &e))?;
        *len += frame.len() as u64;
        Ok(())
    }

    /// Moves the segment starting at `first_seq` to `quarantine/` (a bad record found while
    /// replaying it). Its undelivered records stay there for the operator.
    pub fn quarantine(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        let Some(i) = self.segments.iter().position(|s| s.first_seq == first_seq) else {
            return Ok(());
        };
        if i + 1 == self.segments.len() {
            self.active = None;
        }
        self.segments.remove(i);
        self.quarantine_file(&segment_name(first_seq))
    }

    fn quarantine_file(&mut self, name: &str) -> Result<(), SpoolError> {
        let to = format!("{QUARANTINE_DIR}/{name}");
        self.storage
            .rename(name, &to)
            .and_then(|()| self.storage.sync_dir(QUARANTINE_DIR))
            .and_then(|()| self.storage.sync_dir(""))
            .map_err(|e| fatal("quarantine segment", &e))
    }

    /// Every undelivered record on disk, in order, as `(seq, frame)` (tests and tools).
    pub fn read_pending(&self) -> Result<Vec<(u64, bytes::Bytes)>, SpoolError> {
        let mut out = Vec::new();
        for s in &self.segments {
            let bytes = self
                .storage
                .read(&segment_name(s.first_seq))
                .map_err(|e| fatal("read segment", &e))?;
            let bytes = bytes::Bytes::from(bytes);
            let scan = record::scan_segment(&bytes[..s.len as usize])
                .map_err(|e| SpoolError::Fatal(e.to_string()))?;
            if scan.problem.is_some() {
                return Err(SpoolError::Fatal(format!(
                    "segment {}: {:?}",
                    s.first_seq,
                    scan.problem.unwrap_or(FrameError::Truncated)
                )));
            }
            for (seq, at, len) in scan.records {
                if seq > self.delivered {
                    out.push((seq, bytes.slice(at..at + len)));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::super::storage::sim::SimStorage;
    use super::*;

    fn payload(tag: u64, size: usize) -> Payload {
        let body = Bytes::from(format!("m,tag={tag} v={}i {tag}\n", "x".repeat(size)));
        Payload::new(
            tag,
            "/v1/write/metric?token=t",
            [("x-points", &b"1"[..])],
            body,
        )
        .expect("fits")
    }

    fn body_of(frame: &Bytes) -> Bytes {
        record::decode_frame(frame).expect("valid").body
    }

    #[test]
    fn segment_names_round_trip_and_foreign_names_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("delivered"), None);
    }

    #[test]
    fn appends_survive_a_crash_and_reopen_in_order() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 200).expect("open");
        let ps: Vec<Payload> = (0..10).map(|i| payload(i, 20)).collect();
        for chunk in ps.chunks(3) {
            let refs: Vec<&Payload> = chunk.iter().collect();
            log.append(&refs).expect("append");
        }
        assert!(log.segments().count() > 1, "small segments rotate");
        disk.crash(&mut |n| n);
        let (log, report) = Log::open(disk, 200).expect("reopen");
        assert_eq!(report.pending_records, 10);
        let got: Vec<Bytes> = log
            .read_pending()
            .expect("read")
            .iter()
            .map(|(_, f)| body_of(f))
            .collect();
        let want: Vec<Bytes> = ps.iter().map(|p| p.body.clone()).collect();
        assert_eq!(got, want);
        assert_eq!(log.next_seq(), 11);
    }

    #[test]
    fn delivered_segments_are_unlinked_after_delivered_is_persisted() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 100).expect("open");
        for i in 0..6 {
            log.append(&[&payload(i, 40)]).expect("append");
        }
        let before = log.segments().count();
        log.mark_delivered(4).expect("deliver");
        assert!(log.segments().count() < before);
        // Crash right away: whatever was unlinked is covered by the persisted file.
        disk.crash(&mut |_| 0);
        let (log, _) = Log::open(disk, 100).expect("reopen");
        let seqs: Vec<u64> = log
            .read_pending()
            .expect("read")
            .iter()
            .map(|r| r.0)
            .collect();
        assert!(seqs.ends_with(&[5, 6]), "{seqs:?}");
        assert!(seqs.iter().all(|&s| s >= 1));
    }

    #[test]
    fn with_the_disk_full_delivered_is_written_in_place_and_segments_are_freed() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 100).expect("open");
        for i in 0..6 {
            log.append(&[&payload(i, 40)]).expect("append");
        }
        disk.set_space(Some(disk.used()));
        let before = log.segments().count();
        log.mark_delivered(5).expect("deliver");
        assert!(log.segments().count() < before, "space is freed");
        disk.set_space(None);
        disk.crash(&mut |_| 0);
        let (log, _) = Log::open(disk, 100).expect("reopen");
        assert_eq!(log.delivered(), 5);
    }

    #[test]
    fn a_stale_delivered_file_means_redelivery_not_loss() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        for i in 0..5 {
            log.append(&[&payload(i, 10)]).expect("append");
        }
        log.mark_delivered(2).expect("deliver");
        assert!(log.persist_delivered().expect("persist"));
        log.mark_delivered(4).expect("in memory only");
        disk.crash(&mut |n| n);
        let (log, _) = Log::open(disk, 1 << 20).expect("reopen");
        assert_eq!(log.delivered(), 2);
        let seqs: Vec<u64> = log
            .read_pending()
            .expect("read")
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(seqs, vec![3, 4, 5]);
    }

    #[test]
    fn the_delivered_journal_keeps_its_highest_synced_mark_across_compactions_and_torn_tails() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 30).expect("open");
        let moves = (DELIVERED_JOURNAL_BYTES / 16) * 2 + 7;
        for i in 1..=moves {
            log.append(&[&payload(i, 1)]).expect("append");
            log.mark_delivered(i).expect("deliver");
            assert!(log.persist_delivered().expect("persist"));
        }
        let len = disk.read(DELIVERED).expect("read").len() as u64;
        assert!(len <= DELIVERED_JOURNAL_BYTES, "compacted: {len} bytes");
        assert_eq!(
            decode_delivered(&disk.read(DELIVERED).expect("read")),
            Some(moves)
        );
        // A torn append (half a record, never synced) after the last synced mark.
        let mut f = disk.open_append(DELIVERED).expect("open");
        f.append(&encode_delivered(moves + 1)[..9]).expect("append");
        drop((f, log));
        disk.crash(&mut |n| n);
        let (mut log, report) = Log::open(disk.clone(), 1 << 30).expect("reopen");
        assert!(!report.delivered_unreadable);
        assert_eq!(log.delivered(), moves);
        // Reopening wrote the journal whole, so the next records are aligned again.
        assert_eq!(disk.read(DELIVERED).expect("read").len(), 16);
        log.append(&[&payload(0, 1)]).expect("append");
        log.mark_delivered(moves + 1).expect("deliver");
        assert!(log.persist_delivered().expect("persist"));
        drop(log);
        disk.crash(&mut |_| 0);
        let (log, _) = Log::open(disk, 1 << 30).expect("reopen");
        assert_eq!(log.delivered(), moves + 1);
    }

    #[test]
    fn a_journal_is_read_up_to_its_first_bad_record() {
        let mut j = Vec::new();
        for seq in [3u64, 9, 12] {
            j.extend_from_slice(&encode_delivered(seq));
        }
        assert_eq!(decode_delivered(&j), Some(12));
        assert_eq!(decode_delivered(&j[..40]), Some(9), "a torn last record");
        let mut bad = j.clone();
        bad[20] ^= 1;
        assert_eq!(
            decode_delivered(&bad),
            Some(3),
            "nothing after a bad record counts"
        );
        assert_eq!(decode_delivered(&j[..10]), None);
        assert_eq!(decode_delivered(b""), None);
    }

    #[test]
    fn an_unreadable_delivered_file_replays_everything() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        for i in 0..3 {
            log.append(&[&payload(i, 10)]).expect("append");
        }
        log.mark_delivered(2).expect("deliver");
        assert!(log.persist_delivered().expect("persist"));
        drop(log);
        disk.replace_durably(DELIVERED, b"garbage").expect("write");
        let (log, report) = Log::open(disk, 1 << 20).expect("reopen");
        assert!(report.delivered_unreadable);
        assert_eq!(log.read_pending().expect("read").len(), 3);
    }

    #[test]
    fn a_delivered_file_ahead_of_the_data_keeps_sequence_numbers_increasing() {
        let disk = SimStorage::default();
        disk.replace_durably(DELIVERED, &encode_delivered(100))
            .expect("write");
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        let seq = log.append(&[&payload(1, 1)]).expect("append");
        assert_eq!(seq, 101);
        assert_eq!(log.read_pending().expect("read").len(), 1);
    }

    #[test]
    fn corruption_in_the_middle_of_the_newest_segment_quarantines_it() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        for i in 0..3 {
            log.append(&[&payload(i, 30)]).expect("append");
        }
        drop(log);
        let name = segment_name(1);
        let mut bytes = disk.read(&name).expect("read");
        let mid = SEGMENT_HEADER + payload(0, 30).frame_len() + 20;
        bytes[mid] ^= 1;
        disk.remove(&name).expect("rm");
        let mut f = disk.create(&name).expect("create");
        f.append(&bytes).expect("write");
        f.sync_data().expect("sync");
        disk.sync_dir("").expect("sync dir");
        let (mut log, report) = Log::open(disk.clone(), 1 << 20).expect("reopen");
        assert_eq!(report.quarantined.len(), 1, "{report:?}");
        assert_eq!(disk.list(QUARANTINE_DIR).expect("list"), vec![name]);
        // New appends continue after the quarantined sequence numbers.
        assert_eq!(log.append(&[&payload(9, 1)]).expect("append"), 4);
    }

    #[test]
    fn a_torn_tail_at_every_offset_is_truncated_and_appends_continue() {
        let p = payload(7, 25);
        for cut in 1..p.frame_len() {
            let disk = SimStorage::default();
            let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
            log.append(&[&payload(1, 25)]).expect("append");
            drop(log);
            // A second record, partly written.
            let mut f = disk.open_append(&segment_name(1)).expect("open");
            let framed = record::frame(&p, 2);
            f.append(&framed[..cut]).expect("write");
            let (mut log, report) = Log::open(disk.clone(), 1 << 20).expect("reopen");
            assert_eq!(report.truncated_bytes, cut as u64, "cut {cut}");
            assert!(report.quarantined.is_empty());
            assert_eq!(log.append(&[&p]).expect("append"), 2);
            assert_eq!(log.read_pending().expect("read").len(), 2);
        }
    }

    #[test]
    fn enospc_cuts_back_the_write_and_the_log_stays_usable() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        log.append(&[&payload(1, 10)]).expect("append");
        disk.set_space(Some(disk.used() + 10));
        assert_eq!(log.append(&[&payload(2, 100)]), Err(SpoolError::DiskFull));
        disk.set_space(None);
        assert_eq!(log.append(&[&payload(3, 10)]).expect("append"), 2);
        let seqs: Vec<u64> = log
            .read_pending()
            .expect("read")
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(seqs, vec![1, 2]);
    }

    #[test]
    fn a_failed_sync_is_fatal_and_nothing_is_acknowledged() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        log.append(&[&payload(1, 10)]).expect("append");
        disk.fail_next_sync();
        assert!(matches!(
            log.append(&[&payload(2, 10)]),
            Err(SpoolError::Fatal(_))
        ));
    }

    #[test]
    fn dead_letters_are_kept_in_their_own_directory() {
        let disk = SimStorage::default();
        let (mut log, _) = Log::open(disk.clone(), 1 << 20).expect("open");
        let frame = record::frame(&payload(1, 5), 1);
        log.dead_letter(&frame, 1).expect("dead letter");
        log.dead_letter(&record::frame(&payload(2, 5), 2), 2)
            .expect("dead letter");
        let names = disk.list(DEAD_DIR).expect("list");
        assert_eq!(names.len(), 1);
        let bytes = disk
            .read(&format!("{DEAD_DIR}/{}", names[0]))
            .expect("read");
        let (records, skipped) = record::salvage(&bytes);
        assert_eq!((records.len(), skipped), (2, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<usize>),
        Deliver(usize),
        Persist,
        Eio(Vec<usize>),
        DiskFull(Vec<usize>, usize),
        Crash(Vec<usize>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let sizes = proptest::collection::vec(0usize..120, 1..5);
        prop_oneof![
            4 => sizes.clone().prop_map(Op::Append),
            2 => (0usize..6).prop_map(Op::Deliver),
            1 => Just(Op::Persist),
            1 => sizes.clone().prop_map(Op::Eio),
            1 => (sizes, 0usize..200).prop_map(|(s, room)| Op::DiskFull(s, room)),
            2 => proptest::collection::vec(0usize..1000, 64).prop_map(Op::Crash),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The contract, against a model: every acknowledged record that was not yet
        /// delivered survives any crash, byte for byte and in order; nothing corrupt is read.
        #[test]
        fn acknowledged_records_survive_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let disk = SimStorage::default();
            let segment_bytes = 300;
            let (mut log, _) = Log::open(disk.clone(), segment_bytes).expect("open");
            // seq → body of every acknowledged record; delivered records leave the model.
            let mut acked: BTreeMap<u64, Bytes> = BTreeMap::new();
            let mut appended: BTreeMap<u64, Bytes> = BTreeMap::new();
            let mut tag = 0u64;
            let mut make = |sizes: &[usize]| -> Vec<Payload> {
                sizes.iter().map(|&s| { tag += 1; payload(tag, s) }).collect()
            };
            for op in ops {
                match op {
                    Op::Append(sizes) => {
                        let ps = make(&sizes);
                        let refs: Vec<&Payload> = ps.iter().collect();
                        let first = log.append(&refs).expect("append");
                        for (i, p) in ps.iter().enumerate() {
                            acked.insert(first + i as u64, p.body.clone());
                            appended.insert(first + i as u64, p.body.clone());
                        }
                    }
                    Op::Deliver(n) => {
                        let upto: Vec<u64> = acked.keys().take(n).copied().collect();
                        if let Some(&last) = upto.last() {
                            log.mark_delivered(last).expect("deliver");
                            acked.retain(|&s, _| s > last);
                        }
                    }
                    Op::Persist => {
                        log.persist_delivered().expect("persist");
                    }
                    Op::Eio(sizes) => {
                        let ps = make(&sizes);
                        let refs: Vec<&Payload> = ps.iter().collect();
                        let next = log.next_seq();
                        disk.fail_next_sync();
                        let r = log.append(&refs);
                        prop_assert!(matches!(r, Err(SpoolError::Fatal(_))), "a failed sync was not fatal: {r:?}");
                        // Never acknowledged, but they may come back after the crash.
                        for (i, p) in ps.iter().enumerate() {
                            appended.insert(next + i as u64, p.body.clone());
                        }
                        // Fatal: the process stops here.
                        log = recover(&disk, &[1, 0, 3], segment_bytes, log, &acked, &appended)?;
                    }
                    Op::DiskFull(sizes, room) => {
                        let ps = make(&sizes);
                        let refs: Vec<&Payload> = ps.iter().collect();
                        disk.set_space(Some(disk.used() + room));
                        let next = log.next_seq();
                        match log.append(&refs) {
                            Ok(first) => for (i, p) in ps.iter().enumerate() {
                                acked.insert(first + i as u64, p.body.clone());
                                appended.insert(first + i as u64, p.body.clone());
                            },
                            Err(SpoolError::DiskFull) => prop_assert_eq!(log.next_seq(), next),
                            Err(e) => prop_assert!(false, "unexpected {e:?}"),
                        }
                        disk.set_space(None);
                    }
                    Op::Crash(choices) => {
                        log = recover(&disk, &choices, segment_bytes, log, &acked, &appended)?;
                    }
                }
            }
        }
    }

    /// Crashes the disk (`choices` drive what survives), recovers, and checks the model.
    fn recover(
        disk: &SimStorage,
        choices: &[usize],
        segment_bytes: u64,
        log: Log<SimStorage>,
        acked: &BTreeMap<u64, Bytes>,
        appended: &BTreeMap<u64, Bytes>,
    ) -> Result<Log<SimStorage>, TestCaseError> {
        drop(log);
        let mut it = choices.iter().copied().cycle();
        disk.crash(&mut |n| it.next().unwrap_or(0) % (n + 1));
        let (log, _) = Log::open(disk.clone(), segment_bytes).expect("recover");
        let pending = log.read_pending().expect("read");
        let got: BTreeMap<u64, Bytes> = pending.iter().map(|(s, f)| (*s, body_of(f))).collect();
        for (seq, body) in acked {
            prop_assert_eq!(got.get(seq), Some(body), "acknowledged seq {} lost", seq);
        }
        for (seq, body) in &got {
            prop_assert_eq!(
                appended.get(seq),
                Some(body),
                "seq {} is not what was appended",
                seq
            );
        }
        Ok(log)
    }
}
