//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message carries a 2-byte length prefix; a
//! message may span segments and a segment may hold several messages. This module turns the
//! segments of one direction of a connection into whole messages, with bounded state.
//!
//! Sequence handling, per direction:
//! - SYN sets the initial sequence number; a stream first seen without one starts at its first
//!   data segment, but only once a segment plausibly starts a message (see `plausible_start`).
//! - A segment wholly before the expected seq (retransmission) is ignored; one that overlaps it
//!   is trimmed.
//! - A segment beyond the expected seq is held (at most `MAX_HELD` segments, `MAX_HELD_BYTES`)
//!   until the hole fills. When the hold is full, the hole is given up: a `gap` is counted,
//!   the partial message is dropped, and the stream restarts at the earliest held segment
//!   that plausibly starts a message (later segments are skipped until one does). Resuming
//!   only at a segment start is safe because DNS clients and servers write whole messages,
//!   so a message start usually coincides with a segment start.
//! - FIN or RST frees the stream (a partial or held message then counts as a gap).
//!
//! Memory: at most `max_streams` streams, each holding at most one partial message
//! (`max_message + 2` octets) plus `MAX_HELD_BYTES` of held segments.

use super::Anomaly;
use crate::Nanos;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Out-of-order segments kept per stream while waiting for a hole to fill; a hole that
/// needs more than this is treated as a loss.
pub const MAX_HELD: usize = 4;
/// Octets of held segments per stream (a few full-size segments).
pub const MAX_HELD_BYTES: usize = 16 * 1024;
/// A held segment must start within this distance of the expected seq; farther means a
/// different connection on the same 4-tuple or garbage, not reordering.
const MAX_HOLD_DISTANCE: u32 = 1 << 20;
/// The length prefix is a u16 (RFC 1035 §4.2.2).
pub const MAX_MESSAGE: usize = 65535;
/// RFC 1035 §4.1.1: no DNS message is shorter than its header.
const MIN_MESSAGE: usize = 12;
/// A completed buffer larger than this is given back to the allocator instead of kept.
const KEEP_CAPACITY: usize = 4096;

/// One direction of one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Counters for what the reassembler had to give up on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDnsStats {
    pub messages: u64,
    /// Segments lost or out of order beyond repair: the stream resynchronises or is dropped.
    pub gaps: u64,
    /// Streams evicted because the table was full.
    pub evicted: u64,
    /// Streams that timed out with a partial message buffered.
    pub timed_out_partial: u64,
    /// Messages announced larger than the buffer cap.
    pub oversize: u64,
    /// Length prefixes shorter than a DNS header: the stream resynchronises.
    pub bad_length: u64,
    /// Segments skipped while waiting for one that plausibly starts a message.
    pub skipped_segments: u64,
}

struct Stream {
    /// Sequence number of the next payload octet we expect.
    next_seq: u32,
    /// False until a segment that plausibly starts a message is seen (new mid-connection
    /// stream, or after a gap).
    synced: bool,
    /// The current partial message, length prefix included.
    buf: Vec<u8>,
    /// Out-of-order segments: (seq, payload).
    held: Vec<(u32, Vec<u8>)>,
    held_bytes: usize,
    last_ts: Nanos,
    /// Position in the LRU order (`TcpDnsStreams::lru`).
    tick: u64,
}

impl Stream {
    fn new(next_seq: u32, synced: bool, ts: Nanos, tick: u64) -> Stream {
        Stream { next_seq, synced, buf: Vec::new(), held: Vec::new(), held_bytes: 0, last_ts: ts, tick }
    }

    fn has_partial(&self) -> bool {
        !self.buf.is_empty() || !self.held.is_empty()
    }
}

/// Reassembles DNS messages from the segments of many TCP streams.
pub struct TcpDnsStreams {
    max_streams: usize,
    max_message: usize,
    streams: HashMap<StreamKey, Stream, crate::FastRandom>,
    /// Touch order: tick → key; the first entry is the least recently used stream.
    lru: BTreeMap<u64, StreamKey>,
    next_tick: u64,
    stats: TcpDnsStats,
}

impl TcpDnsStreams {
    pub fn new(max_streams: usize) -> Self {
        Self::with_max_message(max_streams, MAX_MESSAGE)
    }

    /// Like `new`, with messages announced longer than `max_message` octets (at most 65535)
    /// counted as `oversize` and skipped.
    pub fn with_max_message(max_streams: usize, max_message: usize) -> Self {
        TcpDnsStreams {
            max_streams: max_streams.max(1),
            max_message: max_message.clamp(MIN_MESSAGE, MAX_MESSAGE),
            streams: HashMap::default(),
            lru: BTreeMap::new(),
            next_tick: 0,
            stats: TcpDnsStats::default(),
        }
    }

    /// Feeds one segment; calls `on_msg` with each DNS message it completes (prefix removed).
    pub fn on_segment(
        &mut self,
        key: StreamKey,
        ts: Nanos,
        seq: u32,
        flags: TcpFlags,
        payload: &[u8],
        on_msg: &mut dyn FnMut(&[u8]),
    ) {
        if flags.rst {
            self.remove(&key, false);
            return;
        }
        // SYN occupies one sequence number; data on a SYN (TCP Fast Open) follows it.
        let data_seq = if flags.syn { seq.wrapping_add(1) } else { seq };
        let tick = self.next_tick;
        self.next_tick += 1;
        let max_message = self.max_message;

        let restart = match self.streams.get(&key) {
            Some(s) => flags.syn && s.next_seq != data_seq,
            None => true,
        };
        if restart {
            if !flags.syn && payload.is_empty() {
                // A bare ACK or FIN of a stream we do not track: nothing to keep.
                return;
            }
            self.remove(&key, false);
            if self.streams.len() >= self.max_streams {
                self.evict_lru();
            }
            self.streams.insert(key, Stream::new(data_seq, flags.syn, ts, tick));
            self.lru.insert(tick, key);
        }
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        if !restart {
            self.lru.remove(&s.tick);
            s.tick = tick;
            s.last_ts = ts;
            self.lru.insert(tick, key);
        }

        accept(s, &mut self.stats, max_message, data_seq, payload, on_msg);

        if flags.fin {
            self.remove(&key, true);
        }
    }

    /// Forgets streams idle since before `now - idle`. Walks the LRU order from the oldest and
    /// stops at the first recent stream, so with packet time going forward this is exact and
    /// costs only the expired streams.
    pub fn expire(&mut self, now: Nanos, idle: Nanos) {
        let cutoff = now.saturating_sub(idle);
        while let Some((&tick, &key)) = self.lru.first_key_value() {
            match self.streams.get(&key) {
                Some(s) if s.last_ts >= cutoff => break,
                Some(s) => {
                    if s.has_partial() {
                        self.stats.timed_out_partial += 1;
                    }
                    self.streams.remove(&key);
                    self.lru.remove(&tick);
                }
                None => {
                    self.lru.remove(&tick);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> TcpDnsStats {
        self.stats
    }

    /// Drops a stream; `lost` counts a partial or held message it still had as a gap.
    fn remove(&mut self, key: &StreamKey, lost: bool) {
        if let Some(s) = self.streams.remove(key) {
            self.lru.remove(&s.tick);
            if lost && s.has_partial() {
                self.stats.gaps += 1;
            }
        }
    }

    fn evict_lru(&mut self) {
        if let Some((_, key)) = self.lru.pop_first() {
            self.streams.remove(&key);
            self.stats.evicted += 1;
        }
    }
}

/// Fuzz body shared by `fuzz/fuzz_targets/dns_tcp.rs` and the smoke test: reads `data` as a
/// run of segments, each `[ctrl][seq delta: i16][len][payload]`, over four 4-tuples in a
/// two-stream table, and checks the table's bounds. Panics on a violation; returns the
/// number of messages delivered.
///
/// `ctrl`: bits 0-1 pick the stream, 2 SYN, 3 FIN, 4 RST, 5 expire before the segment, 6-7
/// how far packet time moves.
#[doc(hidden)]
pub fn fuzz_tcp(data: &[u8]) -> u64 {
    let mut t = TcpDnsStreams::with_max_message(2, 512);
    let mut next = [0u32; 4];
    let mut now: Nanos = 0;
    let mut rest = data;
    let mut delivered = 0u64;
    while let Some((head, tail)) = rest.split_first_chunk::<4>() {
        let [ctrl, d0, d1, len] = *head;
        let take = usize::from(len).min(tail.len());
        let (payload, after) = tail.split_at(take);
        rest = after;
        let i = usize::from(ctrl & 3);
        let key = StreamKey {
            src: IpAddr::from([10, 0, 0, ctrl & 3]),
            sport: 1000 + u16::from(ctrl & 3),
            dst: IpAddr::from([10, 0, 0, 53]),
            dport: 53,
        };
        let flags = TcpFlags { syn: ctrl & 4 != 0, fin: ctrl & 8 != 0, rst: ctrl & 16 != 0 };
        now += u64::from(ctrl >> 6) * 1_000;
        if ctrl & 32 != 0 {
            t.expire(now, 1_500);
        }
        let seq = next[i].wrapping_add(i16::from_be_bytes([d0, d1]) as u32);
        next[i] = seq.wrapping_add(payload.len() as u32);
        t.on_segment(key, now, seq, flags, payload, &mut |m| {
            assert!((MIN_MESSAGE..=512).contains(&m.len()), "message of {} octets", m.len());
            delivered += 1;
        });
        assert!(t.len() <= 2);
        for s in t.streams.values() {
            assert!(s.buf.len() < 512 + 2 && s.held.len() <= MAX_HELD);
            assert!(s.held_bytes <= MAX_HELD_BYTES);
        }
    }
    assert_eq!(t.stats().messages, delivered);
    delivered
}

/// Signed distance from `b` to `a` in sequence space (RFC 1982 style).
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Places one segment's payload in the stream: in order, old, or held.
fn accept(
    s: &mut Stream,
    stats: &mut TcpDnsStats,
    max_message: usize,
    seq: u32,
    payload: &[u8],
    on_msg: &mut dyn FnMut(&[u8]),
) {
    if payload.is_empty() {
        return;
    }
    let off = seq_diff(seq, s.next_seq);
    if off <= 0 {
        let skip = usize::try_from(-off).unwrap_or(usize::MAX);
        let Some(fresh) = payload.get(skip..).filter(|p| !p.is_empty()) else {
            return; // retransmission of data already seen
        };
        in_order(s, stats, max_message, fresh, on_msg);
        drain_held(s, stats, max_message, on_msg);
        return;
    }
    let fits = s.held.len() < MAX_HELD
        && s.held_bytes + payload.len() <= MAX_HELD_BYTES
        && off < i64::from(MAX_HOLD_DISTANCE);
    if fits {
        s.held_bytes += payload.len();
        s.held.push((seq, payload.to_vec()));
        return;
    }
    // The hole will not fill in time: give it up. Everything held, and this segment, is fed
    // in sequence order; each hole met on the way counts as a gap and restarts the framing
    // at the segment after it. Nothing stays held.
    let mut pending = std::mem::take(&mut s.held);
    s.held_bytes = 0;
    pending.push((seq, payload.to_vec()));
    let base = s.next_seq;
    pending.sort_by_key(|(q, _)| seq_diff(*q, base));
    for (q, data) in pending {
        let off = seq_diff(q, s.next_seq);
        if off > 0 {
            stats.gaps += 1;
            desync(s);
            s.next_seq = q;
            in_order(s, stats, max_message, &data, on_msg);
        } else {
            let skip = usize::try_from(-off).unwrap_or(usize::MAX);
            if let Some(fresh) = data.get(skip..).filter(|p| !p.is_empty()) {
                in_order(s, stats, max_message, fresh, on_msg);
            }
        }
    }
}

/// Feeds held segments that the expected seq has reached, until none has.
fn drain_held(s: &mut Stream, stats: &mut TcpDnsStats, max_message: usize, on_msg: &mut dyn FnMut(&[u8])) {
    while let Some(i) = s.held.iter().position(|(seq, _)| seq_diff(*seq, s.next_seq) <= 0) {
        let (seq, data) = s.held.swap_remove(i);
        s.held_bytes -= data.len();
        let skip = usize::try_from(seq_diff(s.next_seq, seq)).unwrap_or(usize::MAX);
        if let Some(fresh) = data.get(skip..).filter(|p| !p.is_empty()) {
            in_order(s, stats, max_message, fresh, on_msg);
        }
    }
}

/// Could `seg` begin a DNS-over-TCP message? Used only to resynchronise, so it may be
/// strict: the length must cover a header and stay within the cap; the header must have a
/// defined opcode, exactly one question for a query (RFC 9619) or at most one for a response
/// (zone transfer continuations carry none), and counts that fit the length. When the whole
/// first message is in the segment it must also decode cleanly.
fn plausible_start(seg: &[u8], max_message: usize) -> bool {
    let Some(p) = seg.get(..2) else { return false };
    let len = usize::from(u16::from_be_bytes([p[0], p[1]]));
    if !(MIN_MESSAGE..=max_message).contains(&len) {
        return false;
    }
    let Some(h) = seg.get(2..2 + MIN_MESSAGE) else {
        return true;
    };
    let response = h[2] & 0x80 != 0;
    let opcode = (h[2] >> 3) & 0x0F;
    let count = |i: usize| usize::from(u16::from_be_bytes([h[i], h[i + 1]]));
    let (qd, records) = (count(4), count(6) + count(8) + count(10));
    // Smallest question: root name + type + class; smallest record: root + fixed part.
    let fits = qd * 5 + records * 11 <= len - MIN_MESSAGE;
    let questions_ok = if response { qd <= 1 } else { qd == 1 };
    if !(matches!(opcode, 0 | 1 | 2 | 4 | 5 | 6) && questions_ok && fits) {
        return false;
    }
    match seg.get(2..2 + len) {
        Some(msg) => super::parse_message(msg).is_ok_and(|m| {
            let broken = Anomaly::CountMismatch as u16
                | Anomaly::RecordsTruncated as u16
                | Anomaly::TrailingBytes as u16;
            m.anomalies & broken == 0
        }),
        None => true,
    }
}

/// Consumes payload that starts exactly at the expected seq.
fn in_order(
    s: &mut Stream,
    stats: &mut TcpDnsStats,
    max_message: usize,
    data: &[u8],
    on_msg: &mut dyn FnMut(&[u8]),
) {
    s.next_seq = s.next_seq.wrapping_add(data.len() as u32);
    if !s.synced {
        if !plausible_start(data, max_message) {
            stats.skipped_segments += 1;
            return;
        }
        s.synced = true;
    }
    let mut rest = data;
    // Finish a message begun in earlier segments.
    if !s.buf.is_empty() {
        if s.buf.len() < 2 {
            let Some((&b, after)) = rest.split_first() else {
                return;
            };
            s.buf.push(b);
            rest = after;
        }
        let Some(want) = frame_len(&s.buf, stats, max_message) else {
            desync(s);
            return;
        };
        let take = want.saturating_sub(s.buf.len()).min(rest.len());
        let (head, tail) = rest.split_at(take);
        s.buf.extend_from_slice(head);
        rest = tail;
        if s.buf.len() < want {
            return;
        }
        stats.messages += 1;
        on_msg(s.buf.get(2..).unwrap_or_default());
        s.buf.clear();
        if s.buf.capacity() > KEEP_CAPACITY {
            s.buf = Vec::new();
        }
    }
    // Whole messages straight from the segment, without copying.
    while !rest.is_empty() {
        if rest.len() < 2 {
            s.buf.extend_from_slice(rest);
            return;
        }
        let Some(want) = frame_len(rest, stats, max_message) else {
            desync(s);
            return;
        };
        match (rest.get(2..want), rest.get(want..)) {
            (Some(msg), Some(after)) => {
                stats.messages += 1;
                on_msg(msg);
                rest = after;
            }
            _ => {
                s.buf.reserve(want);
                s.buf.extend_from_slice(rest);
                return;
            }
        }
    }
}

/// Total frame length (prefix included) announced at the start of `b`, or None (counted) if
/// it cannot be a DNS message.
fn frame_len(b: &[u8], stats: &mut TcpDnsStats, max_message: usize) -> Option<usize> {
    let p = b.get(..2)?;
    let len = usize::from(u16::from_be_bytes([p[0], p[1]]));
    if len < MIN_MESSAGE {
        stats.bad_length += 1;
        return None;
    }
    if len > max_message {
        stats.oversize += 1;
        return None;
    }
    Some(len + 2)
}

/// The framing is lost: drop the partial message and wait for a plausible start.
fn desync(s: &mut Stream) {
    s.buf = Vec::new();
    s.synced = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::parse::tests::{capture, seeds, Rng, B};
    use std::net::Ipv4Addr;

    fn key(sport: u16) -> StreamKey {
        StreamKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            sport,
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53)),
            dport: 53,
        }
    }

    /// A DNS query for `name`, framed with its length prefix.
    fn framed(id: u16, name: &str) -> Vec<u8> {
        let mut b = B::new(id, 0x0100, [1, 0, 0, 0]);
        b.q(name, 1);
        let m = b.done();
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend(m);
        f
    }

    const NONE: TcpFlags = TcpFlags { syn: false, fin: false, rst: false };
    const SYN: TcpFlags = TcpFlags { syn: true, fin: false, rst: false };
    const FIN: TcpFlags = TcpFlags { syn: false, fin: true, rst: false };

    /// Feeds (seq, flags, payload) segments of one stream; returns the ids of the messages
    /// completed, in order, and the final stats.
    fn check(t: &mut TcpDnsStreams, k: StreamKey, segs: &[(u32, TcpFlags, &[u8])]) -> Vec<u16> {
        let mut ids = Vec::new();
        for (i, (seq, flags, p)) in segs.iter().enumerate() {
            t.on_segment(k, i as u64, *seq, *flags, p, &mut |m| {
                let msg = crate::dns::parse_message(m).expect("reassembled message parses");
                ids.push(msg.id);
            });
        }
        ids
    }

    #[test]
    fn message_split_across_three_segments() {
        let f = framed(1, "split.example.com");
        let mut t = TcpDnsStreams::new(8);
        let (a, rest) = f.split_at(5);
        let (b, c) = rest.split_at(10);
        let got = check(&mut t, key(1), &[(99, SYN, &[]), (100, NONE, a), (105, NONE, b), (115, NONE, c)]);
        assert_eq!(got, [1]);
        assert_eq!(t.stats().messages, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn three_messages_in_one_segment_and_split_prefix() {
        let mut seg = framed(1, "a.example");
        seg.extend(framed(2, "b.example"));
        seg.extend(framed(3, "c.example"));
        let f4 = framed(4, "d.example");
        seg.push(f4[0]); // the next message's prefix split across segments
        let mut t = TcpDnsStreams::new(8);
        let n = seg.len() as u32;
        let got = check(&mut t, key(1), &[(0, SYN, &[]), (1, NONE, &seg), (1 + n, NONE, &f4[1..])]);
        assert_eq!(got, [1, 2, 3, 4]);
    }

    #[test]
    fn one_octet_segments() {
        let mut data = framed(7, "tiny.example");
        data.extend(framed(8, "tiny2.example"));
        let segs: Vec<(u32, TcpFlags, &[u8])> =
            data.chunks(1).enumerate().map(|(i, c)| (1000 + i as u32, NONE, c)).collect();
        let mut t = TcpDnsStreams::new(8);
        let mut all = vec![(999, SYN, &[][..])];
        all.extend(segs);
        assert_eq!(check(&mut t, key(1), &all), [7, 8]);
    }

    #[test]
    fn retransmission_and_overlap() {
        let f1 = framed(1, "one.example");
        let f2 = framed(2, "two.example");
        let n1 = f1.len() as u32;
        // Overlap: a segment that resends the last 3 octets of f1 plus all of f2.
        let mut overlap = f1[f1.len() - 3..].to_vec();
        overlap.extend(&f2);
        let mut t = TcpDnsStreams::new(8);
        let got = check(
            &mut t,
            key(1),
            &[(0, SYN, &[]), (1, NONE, &f1), (1, NONE, &f1), (1 + n1 - 3, NONE, &overlap)],
        );
        assert_eq!(got, [1, 2]);
        assert_eq!(t.stats().gaps, 0);
    }

    #[test]
    fn out_of_order_is_held_and_filled() {
        let f1 = framed(1, "one.example");
        let f2 = framed(2, "two.example");
        let (a, b) = f1.split_at(7);
        let n1 = f1.len() as u32;
        let mut t = TcpDnsStreams::new(8);
        let got = check(&mut t, key(1), &[(0, SYN, &[]), (1 + n1, NONE, &f2), (8, NONE, b), (1, NONE, a)]);
        assert_eq!(got, [1, 2]);
        assert_eq!(t.stats().gaps, 0);
    }

    #[test]
    fn gap_resynchronises_at_next_message() {
        // Message 1's middle is lost; messages 2..=6 follow in their own segments. The hold
        // overflows at message 6: one gap, the partial message 1 is dropped and the stream
        // restarts at message 2.
        let f1 = framed(1, "lost.example");
        let (a, _lost) = f1.split_at(6);
        let mut segs: Vec<(u32, TcpFlags, Vec<u8>)> = vec![(0, SYN, vec![]), (1, NONE, a.to_vec())];
        let mut seq = 1 + f1.len() as u32;
        for id in 2..=7 {
            let f = framed(id, "next.example");
            let n = f.len() as u32;
            segs.push((seq, NONE, f));
            seq += n;
        }
        let segs: Vec<(u32, TcpFlags, &[u8])> = segs.iter().map(|(s, f, p)| (*s, *f, p.as_slice())).collect();
        let mut t = TcpDnsStreams::new(8);
        assert_eq!(check(&mut t, key(1), &segs), [2, 3, 4, 5, 6, 7]);
        assert_eq!(t.stats().gaps, 1);
    }

    #[test]
    fn mid_connection_stream_waits_for_a_message_start() {
        let f1 = framed(1, "one.example");
        let f2 = framed(2, "two.example");
        let n1 = f1.len() as u32;
        let mut t = TcpDnsStreams::new(8);
        // First seen: the tail of message 1 (no SYN): skipped, then message 2 decodes.
        let got = check(&mut t, key(1), &[(5000, NONE, &f1[4..]), (5000 + n1 - 4, NONE, &f2)]);
        assert_eq!(got, [2]);
        assert_eq!(t.stats().skipped_segments, 1);
    }

    #[test]
    fn syn_fin_rst_lifecycle() {
        let f1 = framed(1, "one.example");
        let mut t = TcpDnsStreams::new(8);
        let got = check(&mut t, key(1), &[(41, SYN, &[]), (42, NONE, &f1)]);
        assert_eq!(got, [1]);
        assert_eq!(t.len(), 1);
        // FIN frees the stream; a later bare ACK does not bring it back.
        check(&mut t, key(1), &[(42 + f1.len() as u32, FIN, &[])]);
        assert!(t.is_empty());
        check(&mut t, key(1), &[(43 + f1.len() as u32, NONE, &[])]);
        assert!(t.is_empty());
        // RST with a partial message buffered frees it too.
        check(&mut t, key(2), &[(0, SYN, &[]), (1, NONE, &f1[..5])]);
        assert_eq!(t.len(), 1);
        let rst = TcpFlags { rst: true, ..NONE };
        check(&mut t, key(2), &[(6, rst, &[])]);
        assert!(t.is_empty());
        // A new SYN on a live 4-tuple with another ISN restarts the stream.
        check(&mut t, key(3), &[(0, SYN, &[]), (1, NONE, &f1[..5])]);
        let got = check(&mut t, key(3), &[(900, SYN, &[]), (901, NONE, &f1)]);
        assert_eq!(got, [1]);
    }

    #[test]
    fn table_cap_evicts_least_recently_used_and_expiry() {
        let f1 = framed(1, "one.example");
        let mut t = TcpDnsStreams::new(2);
        t.on_segment(key(1), 10, 0, SYN, &[], &mut |_| {});
        t.on_segment(key(2), 20, 0, SYN, &[], &mut |_| {});
        t.on_segment(key(1), 30, 1, NONE, &f1[..3], &mut |_| {}); // key 1 is now the newest
        t.on_segment(key(3), 40, 0, SYN, &[], &mut |_| {});
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().evicted, 1);
        // Key 2 was evicted; key 1 still completes its message.
        let mut n = 0;
        t.on_segment(key(1), 50, 4, NONE, &f1[3..], &mut |_| n += 1);
        assert_eq!(n, 1);
        // Key 3 idle since 40, key 1 since 50: expire at 100 with idle 55 drops only key 3.
        t.on_segment(key(1), 50, 1 + f1.len() as u32, NONE, &f1[..4], &mut |_| {});
        t.expire(100, 55);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().timed_out_partial, 0);
        t.expire(200, 55);
        assert!(t.is_empty());
        assert_eq!(t.stats().timed_out_partial, 1);
    }

    #[test]
    fn bad_and_oversize_lengths_resync() {
        let f2 = framed(2, "two.example");
        let mut t = TcpDnsStreams::with_max_message(8, 512);
        let got = check(&mut t, key(1), &[(0, SYN, &[]), (1, NONE, &[0, 3, 1, 2, 3]), (6, NONE, &f2)]);
        assert_eq!(got, [2]);
        assert_eq!(t.stats().bad_length, 1);
        let got = check(&mut t, key(2), &[(0, SYN, &[]), (1, NONE, &[0x10, 0, 1, 2])]);
        assert!(got.is_empty());
        assert_eq!(t.stats().oversize, 1);
    }

    /// The fuzz target's body on random inputs and on real messages framed, cut into
    /// segments and shuffled a little (retransmits, holes, flags), so `cargo test` checks
    /// no-panic and the bounds without nightly (see fuzz/).
    #[test]
    fn fuzz_smoke_tcp() {
        let seeds = seeds();
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut delivered = 0;
        for i in 0..40_000 {
            let mut input = Vec::new();
            if i % 4 == 0 {
                input.resize(rng.below(400), 0);
                input.iter_mut().for_each(|b| *b = rng.next() as u8);
            } else {
                // A framed stream of a few seeds (some mutated), as segments.
                let mut stream = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    let seed = &seeds[rng.below(seeds.len())];
                    let m = if rng.below(4) == 0 { rng.mutate(seed) } else { seed.clone() };
                    let m = &m[..m.len().min(500)];
                    stream.extend((m.len() as u16).to_be_bytes());
                    stream.extend(m);
                }
                let mut at = 0;
                while at < stream.len() {
                    let len = (1 + rng.below(120)).min(stream.len() - at);
                    let ctrl = match rng.below(20) {
                        0 => rng.next() as u8,
                        1 => 4, // SYN
                        _ => (i % 3) as u8 | if rng.below(8) == 0 { 64 } else { 0 },
                    };
                    let delta: i16 = match rng.below(10) {
                        0 => -(rng.below(200) as i16),
                        1 => rng.below(200) as i16,
                        _ => 0,
                    };
                    input.push(ctrl);
                    input.extend(delta.to_be_bytes());
                    input.push(len as u8);
                    input.extend(&stream[at..at + len]);
                    at += len;
                }
            }
            delivered += fuzz_tcp(&input);
        }
        // Most structured inputs keep enough order for messages to come out.
        assert!(delivered > 20_000, "{delivered}");
    }

    /// DNS-over-TCP messages that parse, from the TCP/53 segments of a classic Ethernet pcap.
    fn tcp_messages(file: &[u8]) -> (usize, TcpDnsStats) {
        let cap = pcap_parser::PcapCapture::from_file(file).expect("pcap");
        let mut t = TcpDnsStreams::new(64);
        let mut ok = 0;
        for (i, blk) in cap.blocks.iter().enumerate() {
            let Ok(p) = etherparse::SlicedPacket::from_ethernet(blk.data) else {
                continue;
            };
            let (src, dst) = match &p.net {
                Some(etherparse::NetSlice::Ipv4(ip)) => {
                    (IpAddr::V4(ip.header().source_addr()), IpAddr::V4(ip.header().destination_addr()))
                }
                Some(etherparse::NetSlice::Ipv6(ip)) => {
                    (IpAddr::V6(ip.header().source_addr()), IpAddr::V6(ip.header().destination_addr()))
                }
                _ => continue,
            };
            let Some(etherparse::TransportSlice::Tcp(tcp)) = &p.transport else {
                continue;
            };
            if tcp.source_port() != 53 && tcp.destination_port() != 53 {
                continue;
            }
            let k = StreamKey { src, sport: tcp.source_port(), dst, dport: tcp.destination_port() };
            let flags = TcpFlags { syn: tcp.syn(), fin: tcp.fin(), rst: tcp.rst() };
            t.on_segment(k, i as u64, tcp.sequence_number(), flags, tcp.payload(), &mut |m| {
                if crate::dns::parse_message(m).is_ok() {
                    ok += 1;
                }
            });
        }
        (ok, t.stats())
    }

    #[test]
    fn real_captures_match_tshark_counts() {
        for (name, want) in [
            // tshark shows 21 DNS frames: one segment carries all 20 queries, then 20
            // responses, so 40 messages.
            ("suri_dns-tcp-multirequest-buffer.pcap", 40),
            ("tcpdump_dns_tcp.pcap", 2),
            ("zeek_dns-edns-tcp-keepalive.pcap", 4),
            ("zeek_dns_tkey.pcap", 2),
        ] {
            let Some(file) = capture(name) else { continue };
            let (got, stats) = tcp_messages(&file);
            assert_eq!(got, want, "{name}: {stats:?}");
            assert_eq!((stats.messages, stats.gaps, stats.skipped_segments), (want as u64, 0, 0));
        }
    }
}
