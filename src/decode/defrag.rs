//! IPv4 and IPv6 fragment reassembly, in front of the transport layer.
//!
//! Large DNS responses (DNSSEC, long TXT/NULL answers under a 4096-byte EDNS buffer) arrive as IP
//! fragments and only the first fragment carries the UDP header, so the DNS path must reassemble.
//! Fragments are keyed by (source, destination, protocol, identification): RFC 791 for IPv4,
//! RFC 8200 §4.5 for IPv6, where the protocol is the next header after the Fragment header.
//!
//! Only what the detectors need is reassembled: UDP and TCP whose first fragment shows a
//! configured port (default 53) on either side, plus fragments whose first fragment has not
//! come yet. When a first fragment shows other ports, the pending datagram is dropped and its key
//! remembered for a while ("not interesting"), so that later fragments are discarded after one
//! hash lookup (`skipped_not_dns`). A packet that is not a fragment costs a few header reads: no
//! hashing, no allocation.
//!
//! **Overlap policy: first seen wins.** Bytes already held are never replaced; a later fragment
//! only fills holes. Every fragment that overlaps held bytes is counted in `overlaps`, and those
//! whose overlapping bytes differ also in `overlap_conflicts` (the evasion signal: the end host
//! may have kept the other copy). The IP header of the output is the first fragment's. A
//! completed key is remembered as "done" for the timeout, so that a late or duplicated fragment
//! can neither start a second, altered datagram nor change the one already handed out; those
//! count as overlaps. Inconsistent ends (two last fragments that disagree, data past the end) drop
//! the datagram as `bad_offset`, as Linux does.
//!
//! **Bounds.** Time is packet time only. A pending datagram lives at most `timeout` after its
//! first fragment (Linux: 30 s); at most `max_frags_per_datagram` fragments (duplicates included);
//! at most `max_pending` datagrams (the oldest is evicted: a DNS response's fragments arrive
//! back to back, so fresh datagrams matter more than old ones under a flood); at most `max_bytes`
//! of held data overall (oldest evicted first). Every drop is counted in [`DefragStats`].

use std::collections::{HashMap, VecDeque};

use crate::{Nanos, NANOS_PER_SEC};

/// RFC 791: Total Length is 16 bits, header included.
const MAX_IPV4_TOTAL: usize = 65_535;
/// RFC 8200 §4.5: the reassembled Payload Length must fit 16 bits (no fragmented jumbograms).
const MAX_IPV6_PAYLOAD: usize = 65_535;
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const FRAG_HEADER: usize = 8;
/// Extension headers walked before giving up. Real traffic has one or two; each is at least 8
/// bytes so the packet length bounds the walk anyway, this only keeps a crafted chain short.
const MAX_EXT_HEADERS: usize = 8;
/// "Not interesting" and "done" keys remembered, per pending slot. Small entries (~64 bytes).
const RECENT_PER_PENDING: usize = 4;
/// Recycled per-datagram buffers kept for reuse, and the largest one worth keeping.
const POOL_MAX: usize = 32;
const POOL_BUF_MAX: usize = 16 * 1024;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_DEST_OPTS: u8 = 60;

mod v4 {
    use std::ops::Range;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    /// Evil bit and DF survive reassembly; MF and the offset do not.
    pub const KEEP_FLAGS: u16 = 0xC000;
    pub const FRAG_MASK: u16 = 0x3FFF;
    pub const MF: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1FFF;
}

mod v6 {
    use std::ops::Range;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    // Fragment header, relative to its start.
    pub const FH_NEXT: usize = 0;
    pub const FH_OFFSET: Range<usize> = 2..4;
    pub const FH_IDENT: Range<usize> = 4..8;
    pub const FH_MORE: u16 = 1;
}

/// Settings. `Default`: 30 s, 64 fragments, 1024 datagrams, 4 MiB, port 53.
#[derive(Debug, Clone)]
pub struct DefragConfig {
    /// How long a datagram may wait for its fragments, from its first fragment seen.
    pub timeout: Nanos,
    pub max_frags_per_datagram: usize,
    pub max_pending: usize,
    /// Held fragment data and headers, all datagrams together.
    pub max_bytes: usize,
    /// Reassemble UDP/TCP datagrams with one of these ports on either side.
    pub ports: Vec<u16>,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            // Linux net.ipv4.ipfrag_time / net.ipv6.ip6frag_time.
            timeout: 30 * NANOS_PER_SEC,
            max_frags_per_datagram: 64,
            max_pending: 1024,
            max_bytes: 4 << 20,
            ports: vec![53],
        }
    }
}

/// Counters. `dropped_*` count datagrams (or lone fragments that could not join one);
/// `skipped_not_dns` counts fragments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Every packet recognised as a fragment, malformed ones included.
    pub fragments: u64,
    /// Datagrams handed out as `Complete` (atomic IPv6 fragments included).
    pub reassembled: u64,
    /// IPv6 fragments with offset 0 and M=0 (RFC 6946), handed out at once.
    pub atomic: u64,
    /// First fragments (more to come) too short for the UDP/TCP header.
    pub tiny_first: u64,
    /// Fragments that overlap bytes already held, or arrive after their datagram completed.
    pub overlaps: u64,
    /// Overlaps whose bytes differ from the ones held.
    pub overlap_conflicts: u64,
    pub dropped_timeout: u64,
    pub dropped_cap_frags: u64,
    pub dropped_cap_pending: u64,
    pub dropped_cap_memory: u64,
    pub dropped_too_big: u64,
    pub dropped_bad_offset: u64,
    /// Fragments of datagrams that are not UDP/TCP on a configured port.
    pub skipped_not_dns: u64,
    /// Fragments whose IP header is inconsistent or cut by the capture.
    pub malformed: u64,
}

/// What the caller does with the packet it passed in.
#[derive(Debug, PartialEq, Eq)]
pub enum Defrag<'a> {
    /// Not a fragment: the caller goes on with the packet as it is.
    NotFragment,
    /// Held (or discarded and counted); nothing to do now.
    Consumed,
    /// A whole datagram: an IPv4 or IPv6 packet, header included, rewritten as unfragmented
    /// (IPv4: MF=0, offset 0, total length fixed, header checksum recomputed; IPv6: the Fragment
    /// header removed, the previous next-header and payload length fixed), valid until the next
    /// call.
    Complete(&'a [u8]),
}

/// RFC 791 / RFC 8200 reassembly key. IPv4 addresses sit in the first 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    v6: bool,
    proto: u8,
    id: u32,
    src: [u8; 16],
    dst: [u8; 16],
}

/// One fragment, checked: every slice is inside the packet.
struct Frag<'a> {
    key: FragKey,
    /// Byte offset of `data` in the fragmentable part.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// IPv4 header with options, or IPv6 header plus extension headers before the Fragment one.
    unfrag: &'a [u8],
    /// IPv6: index in `unfrag` of the next-header byte that names the Fragment header.
    nh_pos: usize,
}

enum Parsed<'a> {
    NotFragment,
    Malformed,
    Fragment(Frag<'a>),
}

fn be16(b: &[u8], r: std::ops::Range<usize>) -> Option<u16> {
    let s = b.get(r)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be32(b: &[u8], r: std::ops::Range<usize>) -> Option<u32> {
    let s: [u8; 4] = b.get(r)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

fn addr<const N: usize>(b: &[u8], r: std::ops::Range<usize>) -> Option<[u8; 16]> {
    let mut a = [0u8; 16];
    a.get_mut(..N)?.copy_from_slice(b.get(r)?);
    Some(a)
}

/// Fast path first: a non-fragment returns after reading the version and one or two fields.
fn classify(ip: &[u8]) -> Parsed<'_> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => classify_v4(ip),
        Some(6) => classify_v6(ip),
        _ => Parsed::NotFragment,
    }
}

fn classify_v4(ip: &[u8]) -> Parsed<'_> {
    let Some(flags) = be16(ip, v4::FLAGS_FRAG) else {
        return Parsed::NotFragment;
    };
    if flags & v4::FRAG_MASK == 0 {
        return Parsed::NotFragment;
    }
    parse_v4(ip, flags).map_or(Parsed::Malformed, Parsed::Fragment)
}

fn parse_v4(ip: &[u8], flags: u16) -> Option<Frag<'_>> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(be16(ip, v4::TOTAL_LEN)?);
    // The total length also trims Ethernet padding; a capture cut short cannot be reassembled.
    if ihl < IPV4_MIN_HEADER || total < ihl || total > ip.len() {
        return None;
    }
    Some(Frag {
        key: FragKey {
            v6: false,
            proto: *ip.get(v4::PROTO)?,
            id: u32::from(be16(ip, v4::IDENT)?),
            src: addr::<4>(ip, v4::SRC)?,
            dst: addr::<4>(ip, v4::DST)?,
        },
        offset: usize::from(flags & v4::OFFSET_MASK) * 8,
        more: flags & v4::MF != 0,
        data: ip.get(ihl..total)?,
        unfrag: ip.get(..ihl)?,
        nh_pos: 0,
    })
}

fn classify_v6(ip: &[u8]) -> Parsed<'_> {
    let Some(&first_nh) = ip.get(v6::NEXT_HEADER) else {
        return Parsed::NotFragment;
    };
    if !matches!(first_nh, NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS | NH_FRAGMENT) {
        return Parsed::NotFragment;
    }
    let Some(payload_len) = be16(ip, v6::PAYLOAD_LEN) else {
        return Parsed::NotFragment;
    };
    // Walk inside what the header claims, or what was captured if that is less: a truncated
    // chain that never reaches a Fragment header is the decoder's business, not ours.
    let claimed = IPV6_HEADER + usize::from(payload_len);
    let walk = ip.get(..ip.len().min(claimed)).unwrap_or_default();
    let (mut nh, mut nh_pos, mut pos) = (first_nh, v6::NEXT_HEADER, IPV6_HEADER);
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            NH_FRAGMENT => {
                // Zero payload length means a jumbogram, which RFC 2675 forbids to fragment.
                if payload_len == 0 || claimed > ip.len() {
                    return Parsed::Malformed;
                }
                return parse_v6_frag(ip.get(..claimed).unwrap_or_default(), pos, nh_pos)
                    .map_or(Parsed::Malformed, Parsed::Fragment);
            }
            NH_HOP_BY_HOP if pos != IPV6_HEADER => return Parsed::NotFragment,
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                let (Some(&next), Some(&len)) = (walk.get(pos), walk.get(pos + 1)) else {
                    return Parsed::NotFragment;
                };
                nh_pos = pos;
                nh = next;
                pos += (usize::from(len) + 1) * 8;
            }
            _ => return Parsed::NotFragment,
        }
    }
    Parsed::NotFragment
}

fn parse_v6_frag(ip: &[u8], fh: usize, nh_pos: usize) -> Option<Frag<'_>> {
    let h = ip.get(fh..fh.checked_add(FRAG_HEADER)?)?;
    let off = be16(h, v6::FH_OFFSET)?;
    Some(Frag {
        key: FragKey {
            v6: true,
            proto: *h.get(v6::FH_NEXT)?,
            id: be32(h, v6::FH_IDENT)?,
            src: addr::<16>(ip, v6::SRC)?,
            dst: addr::<16>(ip, v6::DST)?,
        },
        offset: usize::from(off >> 3) * 8,
        more: off & v6::FH_MORE != 0,
        data: ip.get(fh + FRAG_HEADER..)?,
        unfrag: ip.get(..fh)?,
        nh_pos,
    })
}

/// What the contiguous prefix of a datagram says about its transport.
#[derive(Debug, PartialEq, Eq)]
enum Transport {
    NeedMore,
    Other,
    Ports(u16, u16),
}

/// `proto` is the fragment's protocol; IPv6 may put destination options in the fragmentable
/// part, so those are walked (bounded) before the UDP/TCP ports.
fn transport(proto: u8, prefix: &[u8]) -> Transport {
    let (mut nh, mut pos) = (proto, 0usize);
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            PROTO_UDP | PROTO_TCP => {
                return match (be16(prefix, pos..pos + 2), be16(prefix, pos + 2..pos + 4)) {
                    (Some(s), Some(d)) => Transport::Ports(s, d),
                    _ => Transport::NeedMore,
                };
            }
            NH_DEST_OPTS => {
                let (Some(&next), Some(&len)) = (prefix.get(pos), prefix.get(pos + 1)) else {
                    return Transport::NeedMore;
                };
                nh = next;
                pos += (usize::from(len) + 1) * 8;
            }
            _ => return Transport::Other,
        }
    }
    Transport::Other
}

/// RFC 1071 one's-complement sum over the header, checksum field zeroed by the caller.
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        let w = match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One datagram being reassembled. Buffers are recycled through `Defragmenter::pool`.
#[derive(Default)]
struct Pending {
    created: Nanos,
    seq: u64,
    frags: usize,
    /// Unfragmentable part from the offset-0 fragment; empty until it comes.
    hdr: Vec<u8>,
    nh_pos: usize,
    /// Fragmentable part, zero-filled where `ranges` has holes.
    data: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and merged.
    ranges: Vec<(usize, usize)>,
    /// End of the datagram, once the last fragment (M=0) came.
    total: Option<usize>,
    /// The prefix showed UDP/TCP on a configured port.
    dns: bool,
}

impl Pending {
    fn held(&self) -> usize {
        self.data.len() + self.hdr.len()
    }

    fn reset(&mut self) {
        self.hdr.clear();
        self.data.clear();
        self.ranges.clear();
        self.total = None;
        self.dns = false;
        self.frags = 0;
        self.nh_pos = 0;
    }

    /// Bytes from offset 0 held without a hole.
    fn prefix(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => self.data.get(..end).unwrap_or_default(),
            _ => &[],
        }
    }

    fn complete(&self) -> bool {
        !self.hdr.is_empty()
            && self.total.is_some_and(|t| self.ranges.first() == Some(&(0, t)))
            && self.ranges.len() == 1
    }

    /// First seen wins: copy only into holes. Returns (overlapped, conflicting). `data` must be
    /// at least `off + bytes.len()` long (the caller grows it).
    fn insert(&mut self, off: usize, bytes: &[u8]) -> (bool, bool) {
        let end = off + bytes.len();
        let (mut overlapped, mut conflict) = (false, false);
        let mut cur = off;
        for &(a, b) in &self.ranges {
            if b <= cur {
                continue;
            }
            if a >= end {
                break;
            }
            if a > cur {
                copy_span(&mut self.data, bytes, off, cur, a);
            }
            let (lo, hi) = (a.max(cur), b.min(end));
            overlapped = true;
            if self.data.get(lo..hi) != bytes.get(lo - off..hi - off) {
                conflict = true;
            }
            cur = hi;
            if cur >= end {
                break;
            }
        }
        if cur < end {
            copy_span(&mut self.data, bytes, off, cur, end);
        }
        if !bytes.is_empty() {
            self.merge(off, end);
        }
        (overlapped, conflict)
    }

    fn merge(&mut self, s: usize, e: usize) {
        let at = self.ranges.partition_point(|&(a, _)| a < s);
        self.ranges.insert(at, (s, e));
        let mut w = 0;
        for r in 1..self.ranges.len() {
            let (Some(&(a, b)), Some(&(pa, pb))) = (self.ranges.get(r), self.ranges.get(w)) else {
                break;
            };
            if a <= pb {
                if let Some(last) = self.ranges.get_mut(w) {
                    *last = (pa, pb.max(b));
                }
            } else {
                w += 1;
                if let Some(slot) = self.ranges.get_mut(w) {
                    *slot = (a, b);
                }
            }
        }
        self.ranges.truncate(w + 1);
    }
}

/// Copies `bytes[lo-off .. hi-off]` to `data[lo..hi]`; a range outside either is ignored.
fn copy_span(data: &mut [u8], bytes: &[u8], off: usize, lo: usize, hi: usize) {
    if let (Some(dst), Some(src)) = (data.get_mut(lo..hi), bytes.get(lo - off..hi - off)) {
        dst.copy_from_slice(src);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NotDns,
    Done,
}

struct Recent {
    until: Nanos,
    why: Why,
    seq: u64,
}

/// Reassembles fragments for the DNS path. One per reader thread.
pub struct Defragmenter {
    cfg: DefragConfig,
    pending: HashMap<FragKey, Pending>,
    /// Creation order, for timeout and eviction; entries whose seq no longer matches are stale.
    order: VecDeque<(Nanos, u64, FragKey)>,
    recent: HashMap<FragKey, Recent>,
    recent_order: VecDeque<(Nanos, u64, FragKey)>,
    recent_cap: usize,
    pool: Vec<Pending>,
    out: Vec<u8>,
    held: usize,
    seq: u64,
    stats: DefragStats,
}

impl Defragmenter {
    pub fn new(cfg: DefragConfig) -> Self {
        let recent_cap = cfg.max_pending.saturating_mul(RECENT_PER_PENDING).max(16);
        Defragmenter {
            cfg,
            pending: HashMap::new(),
            order: VecDeque::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            recent_cap,
            pool: Vec::new(),
            out: Vec::new(),
            held: 0,
            seq: 0,
            stats: DefragStats::default(),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Fragment bytes held now (what `max_bytes` bounds).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    pub fn stats(&self) -> DefragStats {
        self.stats
    }

    /// `ip` is one IPv4 or IPv6 packet starting at its IP header (the link layer already
    /// stripped).
    pub fn process(&mut self, ts: Nanos, ip: &[u8]) -> Defrag<'_> {
        let f = match classify(ip) {
            Parsed::NotFragment => return Defrag::NotFragment,
            Parsed::Malformed => {
                self.stats.fragments += 1;
                self.stats.malformed += 1;
                return Defrag::Consumed;
            }
            Parsed::Fragment(f) => f,
        };
        self.stats.fragments += 1;
        self.expire(ts);
        if f.key.v6 && f.offset == 0 && !f.more {
            // RFC 6946: an atomic fragment is a whole datagram; never mix it with others.
            self.stats.atomic += 1;
            self.stats.reassembled += 1;
            self.out.clear();
            self.out.extend_from_slice(f.unfrag);
            self.out.extend_from_slice(f.data);
            self.fix_v6(f.nh_pos, f.key.proto, f.unfrag.len() + f.data.len());
            return Defrag::Complete(&self.out);
        }
        if self.accept(ts, &f) {
            Defrag::Complete(&self.out)
        } else {
            Defrag::Consumed
        }
    }

    /// Drops datagrams older than the timeout and forgets expired keys.
    pub fn expire(&mut self, now: Nanos) {
        while let Some(&(created, seq, key)) = self.order.front() {
            if self.pending.get(&key).map(|p| p.seq) != Some(seq) {
                self.order.pop_front();
                continue;
            }
            if now.saturating_sub(created) < self.cfg.timeout {
                break;
            }
            self.order.pop_front();
            self.drop_pending(&key);
            self.stats.dropped_timeout += 1;
        }
        while let Some(&(until, seq, key)) = self.recent_order.front() {
            if self.recent.get(&key).map(|r| r.seq) != Some(seq) {
                self.recent_order.pop_front();
                continue;
            }
            if now < until {
                break;
            }
            self.recent_order.pop_front();
            self.recent.remove(&key);
        }
    }

    /// The slow path. True when `self.out` holds a completed datagram.
    fn accept(&mut self, ts: Nanos, f: &Frag<'_>) -> bool {
        let key = f.key;
        let maybe_transport =
            key.proto == PROTO_UDP || key.proto == PROTO_TCP || (key.v6 && key.proto == NH_DEST_OPTS);
        if !maybe_transport {
            self.stats.skipped_not_dns += 1;
            return false;
        }
        if let Some(r) = self.recent.get(&key) {
            if ts < r.until {
                match r.why {
                    Why::NotDns => self.stats.skipped_not_dns += 1,
                    Why::Done => self.stats.overlaps += 1,
                }
                return false;
            }
        }
        // RFC 791 / RFC 8200: every fragment but the last carries a multiple of 8 bytes.
        if f.more && (f.data.is_empty() || f.data.len() % 8 != 0) {
            self.stats.dropped_bad_offset += 1;
            return false;
        }
        let end = f.offset + f.data.len();
        if end + f.unfrag.len() > max_len(&key) {
            self.drop_pending(&key);
            self.stats.dropped_too_big += 1;
            return false;
        }
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= self.cfg.max_pending.max(1) {
                if !self.evict_oldest(None) {
                    break;
                }
                self.stats.dropped_cap_pending += 1;
            }
            self.seq += 1;
            let mut p = self.pool.pop().unwrap_or_default();
            p.created = ts;
            p.seq = self.seq;
            self.order.push_back((ts, self.seq, key));
            self.pending.insert(key, p);
            self.compact_order();
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return false;
        };
        p.frags += 1;
        if p.frags > self.cfg.max_frags_per_datagram {
            self.drop_pending(&key);
            self.stats.dropped_cap_frags += 1;
            return false;
        }
        let held_end = p.ranges.last().map_or(0, |r| r.1);
        let bad_end = match (f.more, p.total) {
            (false, Some(t)) => t != end,
            (false, None) => held_end > end,
            (true, Some(t)) => end > t,
            (true, None) => false,
        };
        if bad_end {
            self.drop_pending(&key);
            self.stats.dropped_bad_offset += 1;
            return false;
        }
        let first = f.offset == 0 && p.hdr.is_empty();
        let growth = end.saturating_sub(p.data.len()) + if first { f.unfrag.len() } else { 0 };
        if self.held + growth > self.cfg.max_bytes {
            while self.held + growth > self.cfg.max_bytes && self.evict_oldest(Some(&key)) {
                self.stats.dropped_cap_memory += 1;
            }
            if self.held + growth > self.cfg.max_bytes {
                self.drop_pending(&key);
                self.stats.dropped_cap_memory += 1;
                return false;
            }
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return false;
        };
        self.held += growth;
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        if first {
            p.hdr.extend_from_slice(f.unfrag);
            p.nh_pos = f.nh_pos;
            if f.more && is_tiny(key.proto, f.data) {
                self.stats.tiny_first += 1;
            }
        }
        if !f.more {
            p.total = Some(end);
        }
        let (overlapped, conflict) = p.insert(f.offset, f.data);
        self.stats.overlaps += u64::from(overlapped);
        self.stats.overlap_conflicts += u64::from(conflict);

        if !p.dns {
            match transport(key.proto, p.prefix()) {
                Transport::NeedMore => {}
                Transport::Ports(s, d) if self.cfg.ports.contains(&s) || self.cfg.ports.contains(&d) => {
                    p.dns = true;
                }
                Transport::Ports(..) | Transport::Other => {
                    let n = p.frags as u64;
                    self.drop_pending(&key);
                    self.stats.skipped_not_dns += n;
                    self.remember(ts, key, Why::NotDns);
                    return false;
                }
            }
        }
        if !p.complete() {
            return false;
        }
        let total = p.total.unwrap_or(0);
        if p.hdr.len() + total > max_len(&key) {
            self.drop_pending(&key);
            self.stats.dropped_too_big += 1;
            return false;
        }
        self.out.clear();
        self.out.extend_from_slice(&p.hdr);
        self.out.extend_from_slice(p.data.get(..total).unwrap_or_default());
        let nh_pos = p.nh_pos;
        self.drop_pending(&key);
        if key.v6 {
            let len = self.out.len();
            self.fix_v6(nh_pos, key.proto, len);
        } else {
            self.fix_v4();
        }
        self.stats.reassembled += 1;
        self.remember(ts, key, Why::Done);
        true
    }

    /// `self.out` holds the first fragment's IPv4 header then the data.
    fn fix_v4(&mut self) {
        let len = self.out.len();
        let ihl = self.out.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
        let flags = be16(&self.out, v4::FLAGS_FRAG).unwrap_or(0) & v4::KEEP_FLAGS;
        put16(&mut self.out, v4::TOTAL_LEN.start, len as u16);
        put16(&mut self.out, v4::FLAGS_FRAG.start, flags);
        put16(&mut self.out, v4::CHECKSUM.start, 0);
        let sum = ipv4_checksum(self.out.get(..ihl).unwrap_or_default());
        put16(&mut self.out, v4::CHECKSUM.start, sum);
    }

    /// `self.out` holds the unfragmentable part (Fragment header gone) then the data.
    fn fix_v6(&mut self, nh_pos: usize, next: u8, len: usize) {
        if let Some(b) = self.out.get_mut(nh_pos) {
            *b = next;
        }
        put16(&mut self.out, v6::PAYLOAD_LEN.start, len.saturating_sub(IPV6_HEADER) as u16);
    }

    fn drop_pending(&mut self, key: &FragKey) {
        if let Some(mut p) = self.pending.remove(key) {
            self.held = self.held.saturating_sub(p.held());
            if self.pool.len() < POOL_MAX && p.data.capacity() <= POOL_BUF_MAX {
                p.reset();
                self.pool.push(p);
            }
        }
    }

    /// Evicts the oldest pending datagram other than `keep`. False when there is none.
    fn evict_oldest(&mut self, keep: Option<&FragKey>) -> bool {
        let mut skipped = None;
        let mut evicted = false;
        while let Some((created, seq, key)) = self.order.pop_front() {
            if self.pending.get(&key).map(|p| p.seq) != Some(seq) {
                continue;
            }
            if keep == Some(&key) {
                skipped = Some((created, seq, key));
                continue;
            }
            self.drop_pending(&key);
            evicted = true;
            break;
        }
        if let Some(k) = skipped {
            self.order.push_front(k);
        }
        evicted
    }

    /// Stale queue entries (completed or dropped datagrams) are popped lazily; this keeps the
    /// queue within a constant factor of the table.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order.retain(|(_, seq, key)| pending.get(key).map(|p| p.seq) == Some(*seq));
        }
    }

    fn remember(&mut self, ts: Nanos, key: FragKey, why: Why) {
        if !self.recent.contains_key(&key) {
            while self.recent.len() >= self.recent_cap {
                let Some((_, seq, k)) = self.recent_order.pop_front() else {
                    break;
                };
                if self.recent.get(&k).map(|r| r.seq) == Some(seq) {
                    self.recent.remove(&k);
                }
            }
        }
        self.seq += 1;
        let until = ts.saturating_add(self.cfg.timeout);
        self.recent.insert(key, Recent { until, why, seq: self.seq });
        self.recent_order.push_back((until, self.seq, key));
        if self.recent_order.len() > 2 * self.recent.len() + 64 {
            let recent = &self.recent;
            self.recent_order.retain(|(_, seq, key)| recent.get(key).map(|r| r.seq) == Some(*seq));
        }
    }
}

fn max_len(key: &FragKey) -> usize {
    if key.v6 {
        IPV6_HEADER + MAX_IPV6_PAYLOAD
    } else {
        MAX_IPV4_TOTAL
    }
}

/// RFC 1858 / RFC 7112: a first fragment that does not hold the headers the detectors read.
/// For UDP that is the UDP header plus the 12-byte DNS header (the UDP header alone is 8 bytes
/// and non-last fragments carry multiples of 8, so only this catches a cut first fragment).
fn is_tiny(proto: u8, data: &[u8]) -> bool {
    match proto {
        PROTO_UDP => data.len() < 8 + 12,
        PROTO_TCP => data.len() < 20,
        _ => false,
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, PacketBuilder, SlicedPacket, TransportSlice,
    };

    const SRC4: [u8; 4] = [192, 0, 2, 1];
    const DST4: [u8; 4] = [198, 51, 100, 7];
    const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53];
    const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07];
    const SEC: Nanos = NANOS_PER_SEC;
    const T0: Nanos = 1_700_000_000 * SEC;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                let j = self.below(i + 1);
                v.swap(i, j);
            }
        }
    }

    /// A DNS-looking payload: a response header, then bytes that vary with position.
    fn dns_payload(len: usize) -> Vec<u8> {
        let mut p = vec![0xd4, 0x3f, 0x81, 0x80, 0, 1, 0, 4, 0, 0, 0, 1];
        p.extend((0..len.saturating_sub(12)).map(|i| (i * 7 + i / 251) as u8));
        p.truncate(len);
        p
    }

    /// An unfragmented IPv4/UDP packet with DF clear, as a sender that fragments emits.
    fn udp_v4(sport: u16, dport: u16, payload: &[u8], id: u16) -> Vec<u8> {
        let mut h = Ipv4Header::new(0, 57, IpNumber::UDP, SRC4, DST4).unwrap();
        h.dont_fragment = false;
        h.identification = id;
        let b = PacketBuilder::ip(IpHeaders::Ipv4(h, Ipv4Extensions::default())).udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn tcp_v4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(0, 57, IpNumber::TCP, SRC4, DST4).unwrap();
        h.dont_fragment = false;
        h.identification = 0x77;
        let b = PacketBuilder::ip(IpHeaders::Ipv4(h, Ipv4Extensions::default()))
            .tcp(sport, dport, 1000, 65535)
            .psh()
            .ack(1);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn udp_v6(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv6(SRC6, DST6, 60).udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    /// One IPv4 fragment of `pkt` (20-byte header): `bytes` at byte offset `off`.
    fn v4_frag(pkt: &[u8], off: usize, bytes: &[u8], more: bool) -> Vec<u8> {
        let mut f = pkt[..20].to_vec();
        f.extend_from_slice(bytes);
        let len = f.len() as u16;
        f[2..4].copy_from_slice(&len.to_be_bytes());
        let flags =
            (u16::from_be_bytes([f[6], f[7]]) & 0xC000) | if more { 0x2000 } else { 0 } | (off / 8) as u16;
        f[6..8].copy_from_slice(&flags.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let sum = ipv4_checksum(&f[..20]);
        f[10..12].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// Cuts `pkt`'s IPv4 payload at `cuts` (multiples of 8, ascending, without 0).
    fn split_v4(pkt: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let body = &pkt[20..];
        let mut edges = vec![0];
        edges.extend_from_slice(cuts);
        edges.push(body.len());
        edges.windows(2).map(|w| v4_frag(pkt, w[0], &body[w[0]..w[1]], w[1] != body.len())).collect()
    }

    /// One IPv6 fragment: `unfrag` is the IPv6 header plus extension headers, whose last
    /// next-header byte sits at `nh_pos`; `next` is the Fragment header's next header.
    fn v6_frag(
        unfrag: &[u8],
        nh_pos: usize,
        next: u8,
        id: u32,
        off: usize,
        bytes: &[u8],
        more: bool,
    ) -> Vec<u8> {
        let mut f = unfrag.to_vec();
        f[nh_pos] = NH_FRAGMENT;
        f.push(next);
        f.push(0);
        f.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(bytes);
        let plen = (f.len() - 40) as u16;
        f[4..6].copy_from_slice(&plen.to_be_bytes());
        f
    }

    fn split_v6(pkt: &[u8], unfrag_len: usize, nh_pos: usize, id: u32, cuts: &[usize]) -> Vec<Vec<u8>> {
        let next = pkt[nh_pos];
        let body = &pkt[unfrag_len..];
        let mut edges = vec![0];
        edges.extend_from_slice(cuts);
        edges.push(body.len());
        edges
            .windows(2)
            .map(|w| {
                let more = w[1] != body.len();
                v6_frag(&pkt[..unfrag_len], nh_pos, next, id, w[0], &body[w[0]..w[1]], more)
            })
            .collect()
    }

    /// Feeds `frags` one per millisecond; returns every Complete output.
    fn run(d: &mut Defragmenter, frags: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            match d.process(T0 + i as u64 * 1_000_000, f) {
                Defrag::Complete(p) => out.push(p.to_vec()),
                Defrag::Consumed => {}
                Defrag::NotFragment => panic!("fragment {i} taken for a whole packet"),
            }
        }
        out
    }

    /// The output re-parses with etherparse as UDP carrying `payload`, and for IPv4 the header
    /// checksum is right.
    fn check_udp(out: &[u8], payload: &[u8], dport: u16) {
        let s = SlicedPacket::from_ip(out).expect("reassembled packet parses");
        match s.transport {
            Some(TransportSlice::Udp(u)) => {
                assert_eq!(u.payload(), payload);
                assert_eq!(u.destination_port(), dport);
            }
            other => panic!("expected UDP, got {other:?}"),
        }
        if out[0] >> 4 == 4 {
            let h = etherparse::Ipv4HeaderSlice::from_slice(out).unwrap().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            assert!(!h.more_fragments);
            assert_eq!(h.fragment_offset.value(), 0);
        }
    }

    fn defrag() -> Defragmenter {
        Defragmenter::new(DefragConfig::default())
    }

    const CUTS: [usize; 2] = [1480, 2960];

    #[test]
    fn in_order_v4() {
        let payload = dns_payload(3500);
        let pkt = udp_v4(53, 40000, &payload, 0xd0fe);
        let frags = split_v4(&pkt, &CUTS);
        let mut d = defrag();
        assert_eq!(d.process(T0, &frags[0]), Defrag::Consumed);
        assert_eq!(d.pending(), 1);
        assert_eq!(d.process(T0, &frags[1]), Defrag::Consumed);
        match d.process(T0, &frags[2]) {
            Defrag::Complete(out) => {
                assert_eq!(out, &pkt[..]);
                check_udp(out, &payload, 40000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.pending(), 0);
        assert_eq!(d.held_bytes(), 0);
        let s = d.stats();
        assert_eq!((s.fragments, s.reassembled, s.overlaps, s.tiny_first), (3, 1, 0, 0));
    }

    #[test]
    fn reversed_v4() {
        let payload = dns_payload(3500);
        let pkt = udp_v4(40000, 53, &payload, 1);
        let mut frags = split_v4(&pkt, &CUTS);
        frags.reverse();
        let mut d = defrag();
        assert_eq!(run(&mut d, &frags), vec![pkt.clone()]);
        assert_eq!(d.stats().reassembled, 1);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn shuffled_v4_and_v6() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..200 {
            let payload = dns_payload(1700 + rng.below(8000));
            let v6 = round % 2 == 1;
            let pkt = if v6 { udp_v6(53, 5000, &payload) } else { udp_v4(53, 5000, &payload, round as u16) };
            let hdr = if v6 { 40 } else { 20 };
            let body = pkt.len() - hdr;
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                at += 8 * (1 + rng.below(200));
                if at >= body {
                    break;
                }
                cuts.push(at);
            }
            let mut frags = if v6 { split_v6(&pkt, 40, 6, round, &cuts) } else { split_v4(&pkt, &cuts) };
            rng.shuffle(&mut frags);
            let mut d = defrag();
            let outs = run(&mut d, &frags);
            assert_eq!(outs.len(), 1, "round {round}, {} frags", frags.len());
            assert_eq!(outs[0], pkt, "round {round}");
            check_udp(&outs[0], &payload, 5000);
            assert_eq!(d.pending(), 0);
            assert_eq!(d.held_bytes(), 0);
        }
    }

    #[test]
    fn duplicates_complete_once() {
        let payload = dns_payload(3500);
        let pkt = udp_v4(53, 40000, &payload, 2);
        let frags: Vec<_> = split_v4(&pkt, &CUTS).into_iter().flat_map(|f| [f.clone(), f]).collect();
        let mut d = defrag();
        assert_eq!(run(&mut d, &frags), vec![pkt]);
        let s = d.stats();
        // Two duplicates before completion, one after (a "done" key).
        assert_eq!((s.reassembled, s.overlaps, s.overlap_conflicts), (1, 3, 0));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn overlap_first_seen_wins() {
        let payload = dns_payload(3500);
        let pkt = udp_v4(53, 40000, &payload, 3);
        let frags = split_v4(&pkt, &CUTS);
        let evil = v4_frag(&pkt, 1000, &[0xEE; 1000], true);

        // Genuine bytes first: the forged overlap changes nothing.
        let mut d = defrag();
        let seq = [frags[0].clone(), frags[1].clone(), evil.clone(), frags[2].clone()];
        assert_eq!(run(&mut d, &seq), vec![pkt.clone()]);
        let s = d.stats();
        assert_eq!((s.overlaps, s.overlap_conflicts), (1, 1));

        // Forged bytes first: they were first seen, so they stay (and were counted).
        let mut d = defrag();
        let seq = [evil.clone(), frags[0].clone(), frags[1].clone(), frags[2].clone()];
        let mut want = pkt.clone();
        want[20 + 1000..20 + 2000].fill(0xEE);
        let fixed = ipv4_checksum(&{
            let mut h = want[..20].to_vec();
            h[10..12].fill(0);
            h
        });
        want[10..12].copy_from_slice(&fixed.to_be_bytes());
        assert_eq!(run(&mut d, &seq), vec![want]);
        let s = d.stats();
        assert_eq!((s.overlaps, s.overlap_conflicts), (2, 2));

        // After completion, a forged fragment cannot produce a second, altered datagram.
        let mut d = defrag();
        let seq = [frags[0].clone(), frags[1].clone(), frags[2].clone(), evil];
        assert_eq!(run(&mut d, &seq), vec![pkt]);
        assert_eq!(d.stats().overlaps, 1);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn overlap_cannot_rewrite_the_udp_header() {
        // RFC 1858 style: a second fragment at offset 0 with other ports.
        let payload = dns_payload(2000);
        let pkt = udp_v4(53, 40000, &payload, 4);
        let frags = split_v4(&pkt, &[1480]);
        let mut forged = pkt[20..28].to_vec();
        forged[2..4].copy_from_slice(&4444u16.to_be_bytes());
        let evil = v4_frag(&pkt, 0, &forged, true);
        let mut d = defrag();
        let outs = run(&mut d, &[frags[0].clone(), evil, frags[1].clone()]);
        assert_eq!(outs, vec![pkt]);
        check_udp(&outs[0], &payload, 40000);
        assert_eq!(d.stats().overlap_conflicts, 1);
    }

    #[test]
    fn missing_middle_times_out() {
        let pkt = udp_v4(53, 40000, &dns_payload(3500), 5);
        let frags = split_v4(&pkt, &CUTS);
        let mut d = defrag();
        assert!(run(&mut d, &[frags[0].clone(), frags[2].clone()]).is_empty());
        assert_eq!(d.pending(), 1);
        assert!(d.held_bytes() > 3000);
        d.expire(T0 + 29 * SEC);
        assert_eq!(d.pending(), 1);
        d.expire(T0 + 30 * SEC);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.held_bytes(), 0);
        assert_eq!(d.stats().dropped_timeout, 1);
        assert_eq!(d.stats().reassembled, 0);
    }

    #[test]
    fn first_fragment_never_comes() {
        let pkt = udp_v4(53, 40000, &dns_payload(3500), 6);
        let frags = split_v4(&pkt, &CUTS);
        let mut d = defrag();
        assert!(run(&mut d, &frags[1..]).is_empty());
        assert_eq!(d.pending(), 1);
        // A later fragment of another datagram also runs the timer.
        let other = udp_v4(53, 40000, &dns_payload(3500), 7);
        let f = split_v4(&other, &CUTS);
        assert_eq!(d.process(T0 + 31 * SEC, &f[1]), Defrag::Consumed);
        assert_eq!(d.pending(), 1);
        assert_eq!(d.stats().dropped_timeout, 1);
    }

    #[test]
    fn flood_stays_within_caps() {
        let cfg = DefragConfig::default();
        let (max_pending, max_bytes) = (cfg.max_pending, cfg.max_bytes);
        let mut d = Defragmenter::new(cfg);
        let pkt = udp_v4(53, 40000, &dns_payload(3500), 0);
        let body = &pkt[20..];
        for i in 0..100_000u32 {
            // Unique keys: 16-bit id plus the source's last octet; middle fragments, so
            // nothing tells us they are not DNS.
            let mut f = v4_frag(&pkt, 1480, &body[1480..2960], true);
            f[4..6].copy_from_slice(&(i as u16).to_be_bytes());
            f[15] = (i >> 16) as u8;
            // In the second half one in ten sits far out (61.5 KB held, the buffer is
            // contiguous), to press on the memory cap instead.
            if i >= 50_000 && i % 10 == 0 {
                let far = (60_000u16 / 8) | 0x2000;
                f[6..8].copy_from_slice(&far.to_be_bytes());
            }
            assert_eq!(d.process(T0 + u64::from(i) * 1000, &f), Defrag::Consumed);
            assert!(d.pending() <= max_pending);
            assert!(d.held_bytes() <= max_bytes);
        }
        let s = d.stats();
        assert_eq!(s.fragments, 100_000);
        assert!(s.dropped_cap_pending > 0 && s.dropped_cap_memory > 0, "{s:?}");
        assert_eq!(s.dropped_cap_pending + s.dropped_cap_memory + d.pending() as u64, 100_000);
        assert!(d.order.len() <= 2 * d.pending() + 65);
        // Under the flood a real response still gets through: the oldest junk makes room.
        let real = udp_v4(53, 40000, &dns_payload(3000), 0xbeef);
        let outs = run(&mut d, &split_v4(&real, &CUTS));
        assert_eq!(outs, vec![real]);
    }

    #[test]
    fn recent_keys_are_bounded() {
        let cfg = DefragConfig { max_pending: 8, ..DefragConfig::default() };
        let mut d = Defragmenter::new(cfg);
        for i in 0..10_000u16 {
            let pkt = udp_v4(53, 40000, &dns_payload(100), i);
            assert_eq!(run(&mut d, &split_v4(&pkt, &[64])).len(), 1);
        }
        assert!(d.recent.len() <= 32);
        assert!(d.recent_order.len() <= 2 * 32 + 65);
        assert_eq!(d.stats().reassembled, 10_000);
    }

    #[test]
    fn tiny_first_fragment_still_reassembles() {
        // UDP: 8 bytes holds the UDP header but cuts the DNS header behind it.
        let payload = dns_payload(600);
        let pkt = udp_v4(53, 40000, &payload, 8);
        let frags = split_v4(&pkt, &[8, 256]);
        assert_eq!(frags[0].len(), 28);
        let mut d = defrag();
        let outs = run(&mut d, &frags);
        assert_eq!(outs, vec![pkt]);
        check_udp(&outs[0], &payload, 40000);
        assert_eq!(d.stats().tiny_first, 1);

        // TCP: 8 bytes cuts the TCP header itself; the ports are enough to keep it.
        let tcp = tcp_v4(40001, 53, &dns_payload(700));
        let frags = split_v4(&tcp, &[8, 400]);
        let mut d = defrag();
        let outs = run(&mut d, &frags);
        assert_eq!(outs, vec![tcp]);
        assert_eq!(d.stats().tiny_first, 1);
    }

    #[test]
    fn v6_with_destination_options_before_fragment() {
        let payload = dns_payload(3000);
        let plain = udp_v6(53, 33000, &payload);
        // IPv6 + Destination Options (PadN, 8 bytes) + UDP.
        let mut pkt = plain[..40].to_vec();
        pkt[6] = NH_DEST_OPTS;
        pkt.extend_from_slice(&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        pkt.extend_from_slice(&plain[40..]);
        let plen = (pkt.len() - 40) as u16;
        pkt[4..6].copy_from_slice(&plen.to_be_bytes());
        let mut frags = split_v6(&pkt, 48, 40, 0x2840_3c0b, &[1232, 2464]);
        assert_eq!(frags[0][40], NH_FRAGMENT);
        frags.swap(0, 2);
        let mut d = defrag();
        let outs = run(&mut d, &frags);
        assert_eq!(outs, vec![pkt]);
        check_udp(&outs[0], &payload, 33000);
        let s = SlicedPacket::from_ip(&outs[0]).unwrap();
        let Some(etherparse::NetSlice::Ipv6(v6)) = s.net else { panic!("not IPv6") };
        assert!(v6.extensions().first_header() == Some(IpNumber::IPV6_DESTINATION_OPTIONS));
    }

    #[test]
    fn v6_plain_and_atomic() {
        let payload = dns_payload(2000);
        let pkt = udp_v6(5353, 5353, &payload);
        let frags = split_v6(&pkt, 40, 6, 9, &[1232]);
        let mut d =
            Defragmenter::new(DefragConfig { ports: vec![53, 5353, 5355], ..DefragConfig::default() });
        assert_eq!(run(&mut d, &frags), vec![pkt.clone()]);
        // RFC 6946 atomic fragment: offset 0, M=0, handed out at once without state.
        let atomic = split_v6(&pkt, 40, 6, 10, &[]);
        assert_eq!(atomic.len(), 1);
        match d.process(T0, &atomic[0]) {
            Defrag::Complete(out) => assert_eq!(out, &pkt[..]),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.stats().atomic, 1);
        assert_eq!(d.stats().reassembled, 2);
        assert_eq!(d.pending(), 0);
        // Port 5353 is not in the default set.
        let mut d = defrag();
        assert!(run(&mut d, &frags).is_empty());
        assert_eq!(d.stats().skipped_not_dns, 2);
    }

    #[test]
    fn non_dns_first_fragment_skips_the_rest() {
        let pkt = udp_v4(4500, 4500, &dns_payload(3500), 11);
        let frags = split_v4(&pkt, &CUTS);
        let mut d = defrag();
        assert_eq!(d.process(T0, &frags[1]), Defrag::Consumed);
        assert_eq!(d.pending(), 1);
        assert_eq!(d.process(T0, &frags[0]), Defrag::Consumed);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.held_bytes(), 0);
        assert_eq!(d.stats().skipped_not_dns, 2);
        assert_eq!(d.process(T0, &frags[2]), Defrag::Consumed);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.stats().skipped_not_dns, 3);
        // The memory expires with the timeout; then the key may be used again.
        let later = udp_v4(53, 40000, &dns_payload(3500), 11);
        let outs = run(&mut d, &split_v4(&later, &CUTS));
        assert!(outs.is_empty(), "still remembered as not DNS");
        d.expire(T0 + 31 * SEC);
        let f = split_v4(&later, &CUTS);
        let mut out = None;
        for x in &f {
            if let Defrag::Complete(p) = d.process(T0 + 31 * SEC, x) {
                out = Some(p.to_vec());
            }
        }
        assert_eq!(out, Some(later));
        // Not UDP/TCP at all (ICMP here): skipped at once, never held.
        let mut icmp = split_v4(&pkt, &CUTS)[1].clone();
        icmp[9] = 1;
        assert_eq!(d.process(T0 + 32 * SEC, &icmp), Defrag::Consumed);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.stats().skipped_not_dns, 5 + 2);
    }

    #[test]
    fn offsets_past_the_limit() {
        let pkt = udp_v4(53, 40000, &dns_payload(3500), 12);
        let body = &pkt[20..];
        let mut d = defrag();
        // Largest IPv4 offset (8191 * 8) plus 100 bytes: past 65535.
        assert_eq!(d.process(T0, &v4_frag(&pkt, 65528, &body[..100], false)), Defrag::Consumed);
        assert_eq!(d.stats().dropped_too_big, 1);
        assert_eq!(d.pending(), 0);
        // Just fits: 20 + 65512 + 3 = 65535 is allowed (and held).
        assert_eq!(d.process(T0, &v4_frag(&pkt, 65512, &body[..3], false)), Defrag::Consumed);
        assert_eq!(d.stats().dropped_too_big, 1);
        assert_eq!(d.pending(), 1);
        // IPv6: offset 65528 + 16 bytes is a payload past 65535.
        let v6 = udp_v6(53, 40000, &dns_payload(100));
        let f = v6_frag(&v6[..40], 6, PROTO_UDP, 1, 65528, &v6[40..56], false);
        assert_eq!(d.process(T0, &f), Defrag::Consumed);
        assert_eq!(d.stats().dropped_too_big, 2);
        // Non-last fragment not a multiple of 8, and an empty one.
        assert_eq!(d.process(T0, &v4_frag(&pkt, 0, &body[..100], true)), Defrag::Consumed);
        assert_eq!(d.process(T0, &v4_frag(&pkt, 8, &[], true)), Defrag::Consumed);
        assert_eq!(d.stats().dropped_bad_offset, 2);
        // Two last fragments that disagree on the end.
        let mut d = defrag();
        let other = udp_v4(53, 40000, &dns_payload(3500), 13);
        let b = &other[20..];
        assert_eq!(d.process(T0, &v4_frag(&other, 2960, &b[2960..], false)), Defrag::Consumed);
        assert_eq!(d.process(T0, &v4_frag(&other, 1480, &b[1480..1600], false)), Defrag::Consumed);
        assert_eq!(d.stats().dropped_bad_offset, 1);
        assert_eq!(d.pending(), 0);
        // Data past a known end.
        assert_eq!(d.process(T0, &v4_frag(&other, 1480, &b[1480..1600], false)), Defrag::Consumed);
        assert_eq!(d.process(T0, &v4_frag(&other, 1600, &b[1600..1608], true)), Defrag::Consumed);
        assert_eq!(d.stats().dropped_bad_offset, 2);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn caps_on_fragments_per_datagram() {
        let pkt = udp_v4(53, 40000, &dns_payload(3500), 14);
        let frags = split_v4(&pkt, &CUTS);
        let mut d = Defragmenter::new(DefragConfig { max_frags_per_datagram: 4, ..DefragConfig::default() });
        let f0 = &frags[0];
        let seq = vec![f0.clone(); 5];
        assert!(run(&mut d, &seq).is_empty());
        assert_eq!(d.stats().dropped_cap_frags, 1);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn not_fragments_take_the_fast_path() {
        let mut d = defrag();
        let v4 = udp_v4(53, 40000, &dns_payload(100), 15);
        let v6 = udp_v6(53, 40000, &dns_payload(100));
        // IPv6 with hop-by-hop then UDP: walked, not a fragment.
        let mut hbh = v6[..40].to_vec();
        hbh[6] = NH_HOP_BY_HOP;
        hbh.extend_from_slice(&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        hbh.extend_from_slice(&v6[40..]);
        for p in [&v4[..], &v6[..], &hbh[..], &[], &[0x45], &[0x60, 0, 0], &[0x10; 40]] {
            assert_eq!(d.process(T0, p), Defrag::NotFragment);
        }
        assert_eq!(d.stats(), DefragStats::default());
    }

    #[test]
    fn truncated_headers_never_panic() {
        let v4 = udp_v4(53, 40000, &dns_payload(3500), 16);
        let v6 = udp_v6(53, 40000, &dns_payload(3500));
        let mut all = split_v4(&v4, &CUTS);
        all.extend(split_v6(&v6, 40, 6, 3, &[1232]));
        let mut d = defrag();
        for f in &all {
            for cut in 0..f.len().min(200) {
                let _ = d.process(T0, &f[..cut]);
            }
        }
        // Every cut past the fixed header is a fragment cut by the capture: malformed.
        assert!(d.stats().malformed > 0);
        assert_eq!(d.stats().reassembled, 0);
        // A bad IHL and a total length shorter than the header.
        let mut bad = all[1].clone();
        bad[0] = 0x44;
        assert_eq!(d.process(T0, &bad), Defrag::Consumed);
        let mut bad = all[1].clone();
        bad[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(d.process(T0, &bad), Defrag::Consumed);
        // Ethernet padding after the IPv4 total length is ignored.
        let small = udp_v4(53, 40000, &dns_payload(30), 17);
        let mut frags = split_v4(&small, &[16]);
        frags[1].extend_from_slice(&[0; 6]);
        let mut d = defrag();
        assert_eq!(run(&mut d, &frags), vec![small]);
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let mut d = Defragmenter::new(DefragConfig {
            max_pending: 64,
            max_bytes: 256 * 1024,
            ..DefragConfig::default()
        });
        let (max_pending, max_bytes) = (64, 256 * 1024);
        let mut ts = T0;
        let mut completes = 0;
        for round in 0..3000u32 {
            let payload = dns_payload(50 + rng.below(4000));
            let v6 = rng.below(2) == 1;
            let pkt = if v6 { udp_v6(53, 1024, &payload) } else { udp_v4(53, 1024, &payload, round as u16) };
            let hdr = if v6 { 40 } else { 20 };
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                at += 8 * (1 + rng.below(150));
                if at >= pkt.len() - hdr {
                    break;
                }
                cuts.push(at);
            }
            let mut frags = if v6 { split_v6(&pkt, 40, 6, round % 50, &cuts) } else { split_v4(&pkt, &cuts) };
            rng.shuffle(&mut frags);
            for f in frags.iter_mut() {
                match rng.below(8) {
                    0 => {
                        let i = rng.below(f.len());
                        f[i] = rng.next() as u8;
                    }
                    1 => f.truncate(rng.below(f.len() + 1)),
                    2 => {
                        // Offset field (both families' are within the first 48 bytes).
                        let i = if v6 { 42 } else { 6 };
                        let x = rng.next() as u16;
                        f[i..i + 2].copy_from_slice(&x.to_be_bytes());
                    }
                    _ => {}
                }
            }
            if rng.below(4) == 0 {
                let n = rng.below(100);
                let mut junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                if let Some(b) = junk.first_mut() {
                    *b = if v6 { 0x60 } else { 0x45 };
                }
                frags.push(junk);
            }
            for f in &frags {
                ts += rng.below(50_000_000) as u64;
                if let Defrag::Complete(p) = d.process(ts, f) {
                    completes += 1;
                    // The rewritten length field always matches what was handed out.
                    if p[0] >> 4 == 4 {
                        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
                    } else {
                        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])) + 40, p.len());
                    }
                }
                assert!(d.pending() <= max_pending);
                assert!(d.held_bytes() <= max_bytes);
            }
        }
        assert!(completes > 100, "{completes}");
    }

    /// Link type 1 frame → its IP packet: Ethernet II, with 802.1Q/802.1ad tags skipped.
    fn strip_ethernet(frame: &[u8]) -> Option<&[u8]> {
        let mut at = 12;
        for _ in 0..3 {
            let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
            match ethertype {
                0x8100 | 0x88a8 => at += 4,
                0x0800 | 0x86dd => return frame.get(at + 2..),
                _ => return None,
            }
        }
        None
    }

    /// Counts DNS messages on port 53 the way the tshark filter does: UDP datagrams
    /// (unfragmented or reassembled) with at least a DNS header, and TCP segments on port 53
    /// that carry a length-prefixed DNS header (one message per segment in these captures).
    /// Returns (udp, tcp, defragmenter).
    fn replay(path: &str) -> Option<(usize, usize, Defragmenter)> {
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipping: {path} not present");
            return None;
        };
        let (_, cap) = pcap_parser::parse_pcap(&bytes).expect("legacy pcap");
        assert_eq!(cap.header.network, pcap_parser::Linktype::ETHERNET);
        let per_tick = if cap.header.is_nanosecond_precision() { 1 } else { 1000 };
        let mut d = defrag();
        let (mut udp, mut tcp) = (0, 0);
        let mut count = |ip: &[u8]| match SlicedPacket::from_ip(ip).map(|s| s.transport) {
            Ok(Some(TransportSlice::Udp(u)))
                if (u.source_port() == 53 || u.destination_port() == 53) && u.payload().len() >= 12 =>
            {
                udp += 1
            }
            Ok(Some(TransportSlice::Tcp(t)))
                if (t.source_port() == 53 || t.destination_port() == 53) && t.payload().len() >= 14 =>
            {
                tcp += 1
            }
            _ => {}
        };
        for b in &cap.blocks {
            let ts = u64::from(b.ts_sec) * SEC + u64::from(b.ts_usec) * per_tick;
            let Some(ip) = strip_ethernet(b.data) else {
                continue;
            };
            match d.process(ts, ip) {
                Defrag::NotFragment => count(ip),
                Defrag::Complete(p) => count(p),
                Defrag::Consumed => {}
            }
        }
        Some((udp, tcp, d))
    }

    // tshark -r ndpi_dns_fragmented.pcap -Y "dns && (udp.port==53 || tcp.port==53)" | wc -l → 43
    // tshark -r ndpi_dns_fragmented.pcap -Y "dns && udp.port==53" | wc -l → 39
    // tshark -r ndpi_dns_fragmented.pcap -Y "dns && tcp.port==53" | wc -l → 4
    const NDPI_ALL: usize = 43;
    const NDPI_UDP: usize = 39;
    // tshark -r zeek_ipv6-fragmented-dns.pcap -Y "dns && (udp.port==53 || tcp.port==53)" | wc -l
    // → 5, all UDP (the btest trace is the same file).
    const ZEEK_ALL: usize = 5;

    #[test]
    fn capture_ndpi_dns_fragmented() {
        let Some((udp, tcp, d)) = replay("/work/shared/captures/public/ndpi_dns_fragmented.pcap") else {
            return;
        };
        assert_eq!(udp, NDPI_UDP);
        assert_eq!(udp + tcp, NDPI_ALL);
        let s = d.stats();
        // Frames 2-3, 5-6, 8-9, 11-12, 16-17, 38-39, 41-42: 3 IPv4 and 4 IPv6 responses
        // in two fragments each.
        assert_eq!((s.fragments, s.reassembled), (14, 7), "{s:?}");
        assert_eq!(d.pending(), 0);
        assert_eq!(s.overlaps + s.dropped_timeout + s.malformed + s.skipped_not_dns, 0);
    }

    #[test]
    fn capture_zeek_ipv6_fragmented_dns() {
        for path in [
            "/work/shared/captures/public/zeek_ipv6-fragmented-dns.pcap",
            "/work/shared/nsm/zeek-btest/ipv6-fragmented-dns.trace",
        ] {
            let Some((udp, tcp, mut d)) = replay(path) else {
                continue;
            };
            assert_eq!(udp + tcp, ZEEK_ALL, "{path}");
            let s = d.stats();
            // Frame 4 is the last fragment of ident 1, whose earlier fragments were never
            // captured; frames 6-8 are ident 2 in three fragments.
            assert_eq!((s.fragments, s.reassembled), (4, 1), "{path}: {s:?}");
            assert_eq!(d.pending(), 1);
            d.expire(u64::MAX);
            assert_eq!((d.pending(), d.stats().dropped_timeout), (0, 1));
        }
    }
}
