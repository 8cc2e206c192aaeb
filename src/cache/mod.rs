//! The DNS-answer cache: which addresses each client was given, and when.
//!
//! Keyed by the client that asked: the destination of a response. The pipeline routes each
//! client to one worker, so a client's answers and its SYNs meet on one thread, and the cache
//! keeps one sharded map (dashmap) per worker: no lock or entry is written by two cores.
//! Entries leave by packet time after `window`; memory is bounded by a cap per client and a
//! cap on clients for the sensor (each worker's map holding an equal share), with evictions
//! counted.
//!
//! Each client keeps its answers as small fixed-size slots, and who answered and the names
//! they were given for (the resolver, the question and the CNAME chain, one record per
//! response) back to back in one byte arena of its own. At the per-client cap every new
//! address pushes an old one out, so this is the steady state of a busy sensor: evicting a
//! slot frees nothing and touches no other memory, and a response costs no allocation of
//! its own. The arena is compacted now and then, when its dead records make up a third of
//! it (half, while the client is still filling up), and is sized to that: its memory is
//! touched once, not reallocated by doubling past what the client needs.

mod ring;

use crate::dns::{DnsMessage, RData};
use crate::Nanos;
use dashmap::DashMap;
use ring::{Cold, Hot, Key, Ring};
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer stays usable (TimeWindow), in packet time.
    pub window: Nanos,
    /// Most answers kept per client; the oldest goes first.
    pub max_per_client: usize,
    /// Most clients kept, for the sensor: each worker's part holds an equal share. Past its
    /// share a part sweeps its expired clients, then evicts its least recently answered
    /// tenth.
    pub max_clients: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { window: 300 * crate::NANOS_PER_SEC, max_per_client: 64, max_clients: 262_144 }
    }
}

/// One address that one client was given, with its names owned: what `snapshot` returns and
/// what `AnswerRef::to_answer` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedAnswer {
    /// Packet time of the response.
    pub ts: Nanos,
    pub addr: IpAddr,
    /// The name the client asked for (the first question).
    pub qname: Arc<str>,
    /// CNAME targets followed on the way to `addr`, in answer order.
    pub cname_chain: Arc<[String]>,
    /// Who answered: the response's source address.
    pub resolver: IpAddr,
    pub ttl: u32,
}

/// One cached answer as `lookup` shows it: the fixed fields copied out, the names read from
/// the client's arena only when asked for.
#[derive(Clone, Copy, Debug)]
pub struct AnswerRef<'a> {
    /// Packet time of the response.
    pub ts: Nanos,
    pub addr: IpAddr,
    /// Who answered: the response's source address.
    pub resolver: IpAddr,
    pub ttl: u32,
    /// The name the client asked for (the first question).
    pub qname: Name<'a>,
}

impl<'a> AnswerRef<'a> {
    /// CNAME targets followed on the way to `addr`, in answer order.
    pub fn cname_chain(&self) -> Chain<'a> {
        self.qname.rec.chain()
    }

    pub fn to_answer(&self) -> CachedAnswer {
        CachedAnswer {
            ts: self.ts,
            addr: self.addr,
            qname: self.qname.as_str().into(),
            cname_chain: self.cname_chain().map(str::to_string).collect(),
            resolver: self.resolver,
            ttl: self.ttl,
        }
    }
}

/// One cached answer as `scan` shows it: when, and the address if it is IPv4.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Packet time of the response.
    pub ts: Nanos,
    pub v4: Option<Ipv4Addr>,
    cold: &'a Cold,
    entry: &'a ClientEntry,
}

impl<'a> Candidate<'a> {
    /// The whole answer.
    pub fn answer(&self) -> AnswerRef<'a> {
        self.entry.view(self.ts, self.cold)
    }
}

/// A cached question name, read from the arena when it is used.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    rec: Record<'a>,
}

impl<'a> Name<'a> {
    pub fn as_str(&self) -> &'a str {
        as_str(self.rec.qname())
    }
}

impl std::ops::Deref for Name<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The arena only ever holds bytes copied from a `&str`, whole: this never fails.
fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// The CNAME chain of a cached answer, oldest first.
#[derive(Clone, Debug)]
pub struct Chain<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Chain<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.left = self.left.checked_sub(1)?;
        let (name, rest) = split_name(self.rest)?;
        self.rest = rest;
        Some(as_str(name))
    }
}

/// One response in a client's arena: who answered, then its names:
/// `[resolver: RESOLVER_LEN][qname len: u32][qname][chain len: u32]` then
/// `[name len: u32][name]` per CNAME target, lengths little-endian. The resolver is the same
/// for every address of a response, so it lives here and not in each slot. The encoding is
/// prefix-free, so equal bytes mean equal records.
#[derive(Clone, Copy, Debug)]
struct Record<'a> {
    bytes: &'a [u8],
}

fn read_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (n, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*n), rest))
}

/// A length-prefixed name and what follows it.
fn split_name(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, rest) = read_u32(b)?;
    let n = usize::try_from(n).ok()?;
    Some((rest.get(..n)?, rest.get(n..)?))
}

/// A resolver address in a record: the family (4 or 6), then 16 bytes, an IPv4 address in
/// the first four.
const RESOLVER_LEN: usize = 17;

fn push_resolver(arena: &mut Vec<u8>, ip: IpAddr) {
    let mut b = [0u8; RESOLVER_LEN];
    match ip {
        IpAddr::V4(a) => {
            b[0] = 4;
            b[1..5].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b[0] = 6;
            b[1..].copy_from_slice(&a.octets());
        }
    }
    arena.extend_from_slice(&b);
}

impl<'a> Record<'a> {
    fn at(arena: &'a [u8], at: usize) -> Record<'a> {
        Record { bytes: arena.get(at..).unwrap_or_default() }
    }

    fn resolver(self) -> IpAddr {
        match self.bytes.split_first_chunk::<RESOLVER_LEN>() {
            Some(([6, a @ ..], _)) => IpAddr::from(*a),
            Some(([_, a, b, c, d, ..], _)) => IpAddr::from([*a, *b, *c, *d]),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// The names, after the resolver.
    fn names(self) -> &'a [u8] {
        self.bytes.get(RESOLVER_LEN..).unwrap_or_default()
    }

    fn qname(self) -> &'a [u8] {
        split_name(self.names()).map(|(q, _)| q).unwrap_or_default()
    }

    fn chain(self) -> Chain<'a> {
        let after = split_name(self.names()).and_then(|(_, rest)| read_u32(rest));
        match after {
            Some((left, rest)) => Chain { rest, left },
            None => Chain { rest: &[], left: 0 },
        }
    }

    /// Bytes from the record's start to its end.
    fn len(self) -> usize {
        let Chain { mut rest, left } = self.chain();
        for _ in 0..left {
            match split_name(rest) {
                Some((_, r)) => rest = r,
                None => break,
            }
        }
        self.bytes.len() - rest.len()
    }
}

/// Lengths are written as u32: a name longer than that (it cannot come from a DNS message)
/// is cut, consistently with its length.
fn push_name(arena: &mut Vec<u8>, name: &str) {
    let n = u32::try_from(name.len()).unwrap_or(u32::MAX);
    arena.extend_from_slice(&n.to_le_bytes());
    arena.extend_from_slice(name.as_bytes().get(..n as usize).unwrap_or_default());
}

/// Below this the arena is never compacted: a quiet client keeps its few records as they
/// are.
const MIN_ARENA: usize = 512;

/// Room past the compaction point for the record that crosses it (most are well under
/// this), so that it does not make the arena double.
const HEADROOM: usize = 128;

#[derive(Debug, Default)]
struct ClientEntry {
    /// The answers, each with `fingerprint(addr, qname)` as its key: the duplicate check
    /// scans these 2-byte keys instead of up to 64 slots, and compares an answer in full
    /// only when its fingerprint matches. Colliding names (even chosen ones) only fall back
    /// to that full compare, so the result never depends on the hash.
    slots: Ring,
    /// The records of this client's responses. Slots refer to them in arena order (each
    /// insert refers to the newest), and the ones no slot refers to any more stay until the
    /// next compaction.
    arena: Vec<u8>,
    /// The arena is compacted when it reaches this length: twice what was live after the
    /// last compaction while the client fills up, half again as much once it is at its cap
    /// (see `compact`).
    compact_at: usize,
    /// Where the newest record starts: the one the newest slot refers to. Kept here so that
    /// checking a repeated question does not first wait for the slots' cold memory.
    newest: usize,
    last_seen: Nanos,
    /// Answers this client's cap pushed out. Counted here, under the shard lock, and added
    /// to `AnswerCache::evicted_answers` only when the client leaves: one shared counter
    /// bumped on every eviction put both workers' writes, and every read of the cache's
    /// configuration beside it, on one cache line that moved between the cores.
    evicted: u64,
}

impl ClientEntry {
    fn view<'a>(&'a self, ts: Nanos, cold: &'a Cold) -> AnswerRef<'a> {
        let rec = Record::at(&self.arena, cold.rec);
        AnswerRef { ts, addr: cold.addr, resolver: rec.resolver(), ttl: cold.ttl, qname: Name { rec } }
    }

    /// Appends a response's record and returns where it starts; a record equal to the
    /// newest one (the same question asked again of the same resolver) is not stored twice.
    fn add_record<'m>(
        &mut self,
        resolver: IpAddr,
        qname: &str,
        chain: impl Iterator<Item = &'m str>,
    ) -> usize {
        if self.arena.len() >= self.compact_at.max(MIN_ARENA) {
            self.compact();
        } else if self.arena.capacity() == 0 {
            // Most clients get more than one answer: skip the smallest steps of growth.
            self.arena.reserve_exact(MIN_ARENA / 4);
        } else if self.arena.len() + HEADROOM > self.arena.capacity() {
            self.grow();
        }
        let start = self.arena.len();
        push_resolver(&mut self.arena, resolver);
        push_name(&mut self.arena, qname);
        let at = self.arena.len();
        self.arena.extend_from_slice(&[0; 4]);
        let mut n = 0u32;
        for c in chain {
            push_name(&mut self.arena, c);
            n = n.saturating_add(1);
        }
        if let Some(len) = self.arena.get_mut(at..at + 4) {
            len.copy_from_slice(&n.to_le_bytes());
        }
        let len = self.arena.len() - start;
        let last = self.newest;
        let (old, new) = self.arena.split_at(start);
        if last.checked_add(len).is_some_and(|end| end <= start) && old.get(last..last + len) == Some(new) {
            self.arena.truncate(start);
        } else {
            self.newest = start;
        }
        self.newest
    }

    /// Moves the records that slots still refer to down to the start of the arena, in
    /// order, keeping its memory. Slots refer to records in arena order (each insert refers
    /// to the newest record, and nothing reorders slots), so a record only ever moves down
    /// over ones already moved or dead.
    fn compact(&mut self) {
        let mut write = 0;
        let mut prev: Option<(usize, usize)> = None;
        for s in self.slots.cold_mut() {
            match prev {
                Some((old, new)) if old == s.rec => s.rec = new,
                _ => {
                    debug_assert!(!matches!(prev, Some((old, _)) if old > s.rec), "slots out of arena order");
                    let len = Record::at(&self.arena, s.rec).len();
                    if s.rec > write && s.rec + len <= self.arena.len() {
                        self.arena.copy_within(s.rec..s.rec + len, write);
                    }
                    prev = Some((s.rec, write));
                    s.rec = write;
                    write += len;
                }
            }
        }
        let before = self.arena.len();
        self.arena.truncate(write);
        self.newest = prev.map_or(0, |(_, new)| new);
        // A compaction that freed little is one of a client still filling up: its arena
        // doubles as it did. One that freed an eighth or more is one of a client at its
        // cap, in the steady state: half again what is live is room enough, and that is the
        // arena's size from then on instead of the next power of two above twice it.
        let freed = before.saturating_sub(write);
        self.compact_at = if freed >= before / 8 { write + write / 2 } else { 2 * write };
        let want = self.compact_at.max(MIN_ARENA) + HEADROOM;
        if self.arena.capacity() < want {
            self.arena.reserve_exact(want - write);
        }
    }

    /// Doubles the arena, but only up to the room the next compaction needs: a client's
    /// arena is sized by `compact`, not by the doublings of `Vec` past it.
    fn grow(&mut self) {
        let len = self.arena.len();
        let room = self.compact_at.max(MIN_ARENA) + HEADROOM;
        let want = self.arena.capacity().saturating_mul(2).min(room).max(len + HEADROOM);
        self.arena.reserve_exact(want - len);
    }
}

fn fingerprint(addr: IpAddr, name_hash: u64) -> Key {
    let a = match addr {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17) ^ 0x5555
        }
    };
    // The top bits: the multiply mixes every bit of the address into them.
    ((name_hash ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> (64 - Key::BITS)) as Key
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub clients: u64,
    pub answers: u64,
    /// Answers pushed out by the per-client cap.
    pub evicted_answers: u64,
    /// Clients pushed out by the client cap (not by age).
    pub evicted_clients: u64,
    /// Clients that left because their answers aged out of the window.
    pub expired_clients: u64,
}

/// One worker's clients.
type Part = DashMap<IpAddr, ClientEntry, crate::FastRandom>;

pub struct AnswerCache {
    cfg: CacheConfig,
    /// One map per worker, each client in the part of the worker that owns it
    /// (`pipeline::route`). With one map for all, both workers took the same shard locks and
    /// wrote neighbouring entries, and those cache lines moved between the cores on nearly
    /// every insert and SYN check.
    parts: Box<[Part]>,
    /// Clients each part holds at most: `max_clients` shared out like every other cap.
    part_cap: usize,
    evicted_answers: AtomicU64,
    evicted_clients: AtomicU64,
    expired_clients: AtomicU64,
}

impl AnswerCache {
    pub fn new(cfg: CacheConfig) -> AnswerCache {
        AnswerCache::with_parts(cfg, 1)
    }

    /// A cache for `workers` workers: the clients `pipeline::route` gives a worker share a
    /// part that no other worker touches on its hot path.
    pub fn with_parts(cfg: CacheConfig, workers: usize) -> AnswerCache {
        let n = workers.max(1);
        AnswerCache {
            part_cap: cfg.max_clients.div_ceil(n).max(1),
            cfg,
            parts: (0..n).map(|_| DashMap::with_hasher(crate::FastRandom::default())).collect(),
            evicted_answers: AtomicU64::new(0),
            evicted_clients: AtomicU64::new(0),
            expired_clients: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// The part that holds `client`: always there (`route` is below the number of parts).
    fn part(&self, client: IpAddr) -> Option<&Part> {
        self.parts.get(crate::pipeline::route(client, self.parts.len()))
    }

    /// Records the A and AAAA answers of a response that `resolver` sent to `client`.
    /// Returns how many addresses were cached.
    pub fn insert(&self, client: IpAddr, resolver: IpAddr, ts: Nanos, msg: &DnsMessage) -> usize {
        let addrs = msg.answers.iter().filter_map(|r| match r.data {
            RData::A(a) => Some((IpAddr::V4(a), r.ttl)),
            RData::Aaaa(a) => Some((IpAddr::V6(a), r.ttl)),
            _ => None,
        });
        let mut addrs = addrs.peekable();
        if addrs.peek().is_none() || self.cfg.max_per_client == 0 {
            return 0;
        }
        let qname = msg.questions.first().map(|q| q.name.as_str()).unwrap_or("");
        let chain = msg.answers.iter().filter_map(|r| match &r.data {
            RData::Name(n) if r.rtype == crate::dns::rtype::CNAME => Some(n.as_str()),
            _ => None,
        });
        let Some(map) = self.part(client) else {
            return 0;
        };
        let mut entry = match map.get_mut(&client) {
            Some(e) => e,
            None => {
                if map.len() >= self.part_cap {
                    self.make_room(map, ts);
                }
                map.entry(client).or_default()
            }
        };
        entry.last_seen = entry.last_seen.max(ts);
        let entry = &mut *entry;
        let rec = entry.add_record(resolver, qname, chain);
        let nh = map.hasher().hash_one(qname);
        let mut n = 0;
        for (addr, ttl) in addrs {
            n += 1;
            let key = fingerprint(addr, nh);
            // A repeated answer refreshes the entry instead of taking a second slot.
            let arena = &entry.arena;
            let dup = entry.slots.find(key, |s| {
                s.addr == addr && (s.rec == rec || Record::at(arena, s.rec).qname() == qname.as_bytes())
            });
            if let Some(pos) = dup {
                entry.slots.remove(pos);
            } else if entry.slots.len() >= self.cfg.max_per_client {
                entry.slots.pop_front();
                entry.evicted += 1;
            }
            let hot = Hot {
                ts,
                v4: match addr {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                },
            };
            entry.slots.push_back(key, hot, Cold { rec, ttl, addr }, self.cfg.max_per_client);
        }
        n
    }

    /// Calls `f` for each answer `client` received within the window before `now`, oldest
    /// first.
    pub fn lookup(&self, client: IpAddr, now: Nanos, mut f: impl FnMut(&AnswerRef<'_>)) {
        self.scan(client, now, |c| f(&c.answer()))
    }

    /// `lookup` for a caller that needs only the time and the IPv4 address of most answers:
    /// the rest of each is read from memory only if `Candidate::answer` asks for it.
    pub fn scan(&self, client: IpAddr, now: Nanos, mut f: impl FnMut(&Candidate<'_>)) {
        if let Some(entry) = self.part(client).and_then(|m| m.get(&client)) {
            for (hot, cold) in entry.slots.iter() {
                if hot.ts <= now && now - hot.ts <= self.cfg.window {
                    f(&Candidate { ts: hot.ts, v4: hot.v4, cold, entry: &entry });
                }
            }
        }
    }

    /// Drops every answer older than the window before `now`, and clients left with none,
    /// in every part by one clock. Tests only: the pipeline sweeps each part by its own
    /// worker's clock (`expire_part`), since one clock for all took answers that a worker
    /// behind it could still match.
    #[cfg(test)]
    pub fn expire(&self, now: Nanos) {
        for part in self.parts.iter() {
            self.sweep(part, now);
        }
    }

    /// `expire` for worker `worker`'s own part only: a worker sweeps its own clients by its
    /// own clock, so it never takes an answer that a worker behind it could still use, and
    /// never walks (or locks) another worker's part.
    pub fn expire_part(&self, worker: usize, now: Nanos) {
        if let Some(part) = self.parts.get(worker) {
            self.sweep(part, now);
        }
    }

    /// Drops `part`'s answers older than the window before `now`, and its clients left with
    /// none.
    fn sweep(&self, part: &Part, now: Nanos) {
        let window = self.cfg.window;
        let (mut gone, mut evicted) = (0, 0);
        part.retain(|_, e| {
            while e.slots.front().is_some_and(|a| now.saturating_sub(a.ts) > window) {
                e.slots.pop_front();
            }
            let keep = !e.slots.is_empty();
            if !keep {
                gone += 1;
                evicted += e.evicted;
            }
            keep
        });
        if gone > 0 {
            self.expired_clients.fetch_add(gone, Ordering::Relaxed);
            self.evicted_answers.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Frees at least a tenth of `part`'s share of the cap: its expired clients first, then
    /// its least recently answered ones. Only the inserting worker's own part, by that
    /// worker's clock: sweeping every part by one worker's clock took answers that a worker
    /// behind it could still match, and which clients went depended on thread timing.
    /// Amortised O(1) per insert.
    fn make_room(&self, part: &Part, now: Nanos) {
        self.sweep(part, now);
        // At least one, so that a share under ten clients still makes room.
        let target = self.part_cap - (self.part_cap / 10).max(1);
        if part.len() > target {
            let mut seen: Vec<Nanos> = part.iter().map(|e| e.last_seen).collect();
            let k = seen.len() - target;
            let (_, cut, _) = seen.select_nth_unstable(k.saturating_sub(1));
            let cut = *cut;
            let (mut evicted, mut answers) = (0u64, 0u64);
            let mut budget = k;
            part.retain(|_, e| {
                if budget > 0 && e.last_seen <= cut {
                    budget -= 1;
                    evicted += 1;
                    answers += e.evicted;
                    false
                } else {
                    true
                }
            });
            self.evicted_clients.fetch_add(evicted, Ordering::Relaxed);
            self.evicted_answers.fetch_add(answers, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.is_empty())
    }

    fn entries(&self) -> impl Iterator<Item = dashmap::mapref::multiple::RefMulti<'_, IpAddr, ClientEntry>> {
        self.parts.iter().flat_map(|p| p.iter())
    }

    pub fn stats(&self) -> CacheStats {
        let (mut clients, mut answers, mut evicted) = (0, 0, 0);
        for e in self.entries() {
            clients += 1;
            answers += e.slots.len() as u64;
            evicted += e.evicted;
        }
        CacheStats {
            clients,
            answers,
            // Those of clients that left, and those of the clients still here.
            evicted_answers: self.evicted_answers.load(Ordering::Relaxed) + evicted,
            evicted_clients: self.evicted_clients.load(Ordering::Relaxed),
            expired_clients: self.expired_clients.load(Ordering::Relaxed),
        }
    }

    /// Every client with its answers, sorted, for tests and the end-of-run dump.
    pub fn snapshot(&self) -> Vec<(IpAddr, Vec<CachedAnswer>)> {
        let mut v: Vec<_> = self
            .entries()
            .map(|e| (*e.key(), e.slots.iter().map(|(h, c)| e.view(h.ts, c).to_answer()).collect()))
            .collect();
        v.sort_by_key(|a| a.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{Question, Record};
    use std::collections::VecDeque;
    use std::net::Ipv4Addr;

    fn response(name: &str, addrs: &[[u8; 4]]) -> DnsMessage {
        DnsMessage {
            response: true,
            questions: vec![Question { name: name.into(), qtype: 1, qclass: 1 }],
            answers: addrs
                .iter()
                .map(|a| Record {
                    name: name.into(),
                    rtype: 1,
                    class: 1,
                    ttl: 60,
                    rdlen: 4,
                    data: RData::A(Ipv4Addr::from(*a)),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const S: Nanos = crate::NANOS_PER_SEC;

    #[test]
    fn answers_live_for_the_window() {
        let c = AnswerCache::new(CacheConfig::default());
        assert_eq!(
            c.insert(ip("10.0.0.5"), ip("8.8.8.8"), 100 * S, &response("a.example", &[[1, 2, 3, 4]])),
            1
        );
        let mut seen = vec![];
        c.lookup(ip("10.0.0.5"), 150 * S, |a| seen.push((a.addr, a.qname.to_string(), a.resolver)));
        assert_eq!(seen, vec![(ip("1.2.3.4"), "a.example".to_string(), ip("8.8.8.8"))]);
        let mut n = 0;
        c.lookup(ip("10.0.0.5"), 401 * S, |_| n += 1);
        assert_eq!(n, 0, "past the 300 s window");
        c.lookup(ip("10.0.0.6"), 150 * S, |_| n += 1);
        assert_eq!(n, 0, "another client");
        c.expire(401 * S);
        assert!(c.is_empty());
        assert_eq!(c.stats().expired_clients, 1);
    }

    #[test]
    fn per_client_cap_evicts_oldest() {
        let cfg = CacheConfig { max_per_client: 2, ..Default::default() };
        let c = AnswerCache::new(cfg);
        c.insert(
            ip("10.0.0.5"),
            ip("8.8.8.8"),
            S,
            &response("x", &[[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]),
        );
        let snap = c.snapshot();
        let addrs: Vec<_> = snap[0].1.iter().map(|a| a.addr).collect();
        assert_eq!(addrs, vec![ip("2.2.2.2"), ip("3.3.3.3")]);
        assert_eq!(c.stats().evicted_answers, 1);
    }

    #[test]
    fn each_part_holds_its_share_of_the_client_cap() {
        // 12 over 4 parts: 3 clients each.
        let cfg = CacheConfig { max_clients: 12, ..Default::default() };
        let c = AnswerCache::with_parts(cfg, 4);
        let client = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 2, 0, i));
        let used: std::collections::HashSet<usize> =
            (0..40u8).map(|i| crate::pipeline::route(client(i), 4)).collect();
        assert_eq!(used.len(), 4, "the clients reach every part");
        for i in 0..40u8 {
            c.insert(client(i), ip("8.8.8.8"), (1 + u64::from(i)) * S, &response("x", &[[1, 1, 1, 1]]));
            for (p, part) in c.parts.iter().enumerate() {
                assert!(part.len() <= 3, "part {p} holds {} after client {i}", part.len());
            }
            let mut n = 0;
            c.lookup(client(i), (1 + u64::from(i)) * S, |_| n += 1);
            assert_eq!(n, 1, "a client finds its answer in its part");
        }
        let st = c.stats();
        assert_eq!(st.clients, c.len() as u64);
        assert_eq!(st.evicted_clients + st.clients, 40);
        // Each part kept its own most recently answered clients.
        for p in 0..4 {
            let mine: Vec<u8> = (0..40u8).filter(|&i| crate::pipeline::route(client(i), 4) == p).collect();
            let newest = mine.iter().rev().take(c.parts[p].len()).map(|&i| client(i));
            for k in newest {
                assert_eq!(
                    c.parts.iter().position(|part| part.contains_key(&k)),
                    Some(p),
                    "{k} kept, in its worker's part and no other"
                );
            }
        }
    }

    #[test]
    fn a_part_at_its_cap_never_sweeps_another_workers_clients() {
        // Two workers; worker A's clock is far ahead of worker B's. A fills its part to the
        // cap, so its next new client makes room: by A's clock, every answer B holds is
        // long expired, yet B (behind) may still match them against its SYNs.
        let cfg = CacheConfig { max_clients: 4, ..Default::default() };
        let window = cfg.window;
        let c = AnswerCache::with_parts(cfg, 2);
        let on = |w: usize, n: usize| {
            (0..=255u8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 3, 0, i)))
                .filter(|&k| crate::pipeline::route(k, 2) == w)
                .take(n)
                .collect::<Vec<_>>()
        };
        // B at its share of two, A one past it.
        let (a, b) = (on(0, 3), on(1, 2));
        for &k in &b {
            c.insert(k, ip("8.8.8.8"), S, &response("b", &[[2, 2, 2, 2]]));
        }
        let late = S + 10 * window;
        for &k in &a {
            c.insert(k, ip("8.8.8.8"), late, &response("a", &[[3, 3, 3, 3]]));
        }
        for &k in &b {
            let mut n = 0;
            c.lookup(k, 2 * S, |_| n += 1);
            assert_eq!(n, 1, "{k}: B's answer is still there for B's SYNs");
        }
        assert_eq!(c.parts[0].len(), 2, "A's part was full at two and made room for its third");
        assert_eq!(c.stats().expired_clients, 0);
        assert_eq!(c.stats().evicted_clients, 1, "A evicted its own oldest client");
        // A's own sweep leaves B's part alone too; B's, by B's clock, is what expires them.
        c.expire_part(0, late);
        assert_eq!(c.parts[1].len(), 2);
        c.expire_part(1, late);
        assert_eq!((c.parts[0].len(), c.parts[1].len()), (2, 0));
        assert_eq!(c.stats().expired_clients, 2);
    }

    #[test]
    fn evictions_stay_counted_after_their_client_leaves() {
        // Each client counts its own evictions; they must reach the total whether the client
        // is still here, aged out, or pushed out by the client cap.
        let cfg = CacheConfig { max_per_client: 2, max_clients: 10, ..Default::default() };
        let c = AnswerCache::new(cfg);
        let three = response("x", &[[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]);
        c.insert(ip("10.0.0.1"), ip("8.8.8.8"), S, &three);
        c.insert(ip("10.0.0.2"), ip("8.8.8.8"), 200 * S, &three);
        assert_eq!(c.stats().evicted_answers, 2);
        c.expire(S + c.config().window + 1);
        assert_eq!((c.len(), c.stats().expired_clients), (1, 1));
        assert_eq!(c.stats().evicted_answers, 2, "the aged-out client's eviction still counts");
        // Fill to the client cap: the oldest clients are pushed out, with their evictions.
        for i in 0..10u8 {
            c.insert(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)), ip("8.8.8.8"), (300 + u64::from(i)) * S, &three);
        }
        let st = c.stats();
        assert!(st.evicted_clients > 0, "the cap pushed clients out");
        assert_eq!(st.evicted_answers, 12, "one eviction for each of the 12 three-answer responses");
    }

    #[test]
    fn a_repeated_answer_refreshes_its_slot() {
        let c = AnswerCache::new(CacheConfig::default());
        let (client, dns) = (ip("10.0.0.5"), ip("8.8.8.8"));
        c.insert(client, dns, S, &response("a.example", &[[1, 1, 1, 1], [2, 2, 2, 2]]));
        c.insert(client, dns, 2 * S, &response("b.example", &[[1, 1, 1, 1]]));
        c.insert(client, dns, 3 * S, &response("a.example", &[[1, 1, 1, 1]]));
        let snap = c.snapshot();
        let got: Vec<_> = snap[0].1.iter().map(|a| (a.addr, a.qname.to_string(), a.ts)).collect();
        assert_eq!(
            got,
            vec![
                (ip("2.2.2.2"), "a.example".to_string(), S),
                (ip("1.1.1.1"), "b.example".to_string(), 2 * S),
                (ip("1.1.1.1"), "a.example".to_string(), 3 * S),
            ]
        );
        // The fingerprints moved with their answers: expiry and a later refresh still line up.
        c.expire(S + c.config().window + 1);
        c.insert(client, dns, 4 * S, &response("b.example", &[[1, 1, 1, 1]]));
        let snap = c.snapshot();
        let got: Vec<_> = snap[0].1.iter().map(|a| (a.qname.to_string(), a.ts)).collect();
        assert_eq!(got, vec![("a.example".to_string(), 3 * S), ("b.example".to_string(), 4 * S)]);
    }

    #[test]
    fn repeats_are_found_anywhere_in_a_wrapped_full_list() {
        // At the cap the deque wraps, so its keys sit in two slices, each scanned in chunks
        // of eight: every position must still be found as a repeat.
        let cfg = CacheConfig { max_per_client: 20, ..Default::default() };
        let c = AnswerCache::new(cfg);
        let (client, dns) = (ip("10.0.0.5"), ip("8.8.8.8"));
        for i in 0..30u8 {
            c.insert(client, dns, S, &response("w.example", &[[1, 1, 1, i]]));
        }
        for i in (10..30u8).rev() {
            c.insert(client, dns, 2 * S, &response("w.example", &[[1, 1, 1, i]]));
            let snap = c.snapshot();
            assert_eq!(snap[0].1.len(), 20, "a repeat of 1.1.1.{i} took a new slot");
            assert_eq!(snap[0].1.last().map(|a| a.addr), Some(IpAddr::V4(Ipv4Addr::new(1, 1, 1, i))));
        }
        assert_eq!(c.stats().evicted_answers, 10);
    }

    #[test]
    fn global_cap_holds_under_a_flood() {
        let cfg = CacheConfig { max_clients: 1000, ..Default::default() };
        let c = AnswerCache::new(cfg);
        for i in 0..20_000u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            c.insert(client, ip("8.8.8.8"), S + u64::from(i), &response("x", &[[1, 1, 1, 1]]));
            assert!(c.len() <= 1000);
        }
        let st = c.stats();
        assert_eq!(st.evicted_clients + st.clients, 20_000);
        // The newest client survives; the oldest is gone.
        assert!(c.snapshot().iter().any(|(k, _)| *k == IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 19_999))));
        assert!(!c.snapshot().iter().any(|(k, _)| *k == ip("10.0.0.0")));
    }

    /// A response with CNAME records (`rtype` 5) before mixed A and AAAA answers.
    fn full_response(name: &str, chain: &[&str], addrs: &[IpAddr], ttl: u32) -> DnsMessage {
        let cnames = chain.iter().map(|c| Record {
            name: name.into(),
            rtype: crate::dns::rtype::CNAME,
            class: 1,
            ttl,
            rdlen: 0,
            data: RData::Name((*c).into()),
        });
        let addrs = addrs.iter().map(|a| Record {
            name: name.into(),
            rtype: if a.is_ipv4() { 1 } else { 28 },
            class: 1,
            ttl,
            rdlen: 0,
            data: match a {
                IpAddr::V4(a) => RData::A(*a),
                IpAddr::V6(a) => RData::Aaaa(*a),
            },
        });
        DnsMessage {
            response: true,
            questions: vec![Question { name: name.into(), qtype: 1, qclass: 1 }],
            answers: cnames.chain(addrs).collect(),
            ..Default::default()
        }
    }

    fn lookup_all(c: &AnswerCache, client: IpAddr, now: Nanos) -> Vec<CachedAnswer> {
        let mut v = vec![];
        c.lookup(client, now, |a| v.push(a.to_answer()));
        v
    }

    #[test]
    fn long_names_and_chains_come_back_whole() {
        let c = AnswerCache::new(CacheConfig::default());
        let client = ip("10.0.0.5");
        // Longer than any inline buffer would be: escapes make a rendered name up to ~1000.
        let long = format!("{}.example", "\\255".repeat(240));
        let chain: Vec<String> = (0..40).map(|i| format!("{}{i}.cdn.example", "x".repeat(200))).collect();
        let chain_refs: Vec<&str> = chain.iter().map(String::as_str).collect();
        let addrs = [ip("1.2.3.4"), ip("2001:db8::1")];
        c.insert(client, ip("8.8.8.8"), S, &full_response(&long, &chain_refs, &addrs, 77));
        c.insert(client, ip("8.8.4.4"), 2 * S, &full_response("", &[], &[ip("5.6.7.8")], 5));
        let got = lookup_all(&c, client, 3 * S);
        assert_eq!(got.len(), 3);
        for (a, want) in got.iter().zip(addrs) {
            assert_eq!(a.addr, want);
            assert_eq!(&*a.qname, long.as_str());
            assert_eq!(&*a.cname_chain, chain.as_slice());
            assert_eq!((a.ttl, a.ts, a.resolver), (77, S, ip("8.8.8.8")));
        }
        assert_eq!(&*got[2].qname, "");
        assert!(got[2].cname_chain.is_empty());
        assert_eq!(c.snapshot()[0].1, got, "snapshot and lookup agree");
        // The view reads the same names without copying them.
        c.lookup(client, 3 * S, |a| {
            if a.addr == addrs[0] {
                assert_eq!(a.qname.to_string(), long);
                assert_eq!(a.qname.len(), long.len());
                assert!(a.cname_chain().eq(chain.iter().map(String::as_str)));
            }
        });
    }

    #[test]
    fn scan_shows_time_and_ipv4_and_the_rest_on_demand() {
        let cfg = CacheConfig { window: 10 * S, ..Default::default() };
        let c = AnswerCache::new(cfg);
        let client = ip("10.0.0.5");
        let addrs = [ip("192.0.2.1"), ip("2001:db8::2"), ip("192.0.2.3")];
        c.insert(client, ip("8.8.8.8"), S, &full_response("old.example", &[], &addrs[..1], 9));
        c.insert(client, ip("9.9.9.9"), 5 * S, &full_response("new.example", &["c.example"], &addrs[1..], 9));
        let mut seen = vec![];
        c.scan(client, 12 * S, |a| seen.push((a.ts, a.v4, a.answer().to_answer())));
        let got: Vec<_> = seen.iter().map(|(ts, v4, _)| (*ts, *v4)).collect();
        assert_eq!(
            got,
            vec![(5 * S, None), (5 * S, Some(Ipv4Addr::new(192, 0, 2, 3)))],
            "1 s answer expired"
        );
        let whole: Vec<_> = seen.into_iter().map(|(_, _, a)| a).collect();
        assert_eq!(whole, lookup_all(&c, client, 12 * S));
        assert_eq!((&*whole[0].qname, whole[0].resolver), ("new.example", ip("9.9.9.9")));
        let mut n = 0;
        c.scan(ip("10.0.0.6"), 12 * S, |_| n += 1);
        c.scan(client, 16 * S, |_| n += 1);
        assert_eq!(n, 0, "another client; past the window");
    }

    #[test]
    fn evicting_an_answer_keeps_the_name_it_shared() {
        let cfg = CacheConfig { max_per_client: 2, ..Default::default() };
        let c = AnswerCache::new(cfg);
        let client = ip("10.0.0.5");
        let three = [ip("1.1.1.1"), ip("2.2.2.2"), ip("3.3.3.3")];
        c.insert(client, ip("8.8.8.8"), S, &full_response("shared.example", &["edge.example"], &three, 60));
        let got = lookup_all(&c, client, S);
        let names: Vec<_> =
            got.iter().map(|a| (a.addr, a.qname.to_string(), a.cname_chain.to_vec())).collect();
        let chain = vec!["edge.example".to_string()];
        assert_eq!(
            names,
            vec![
                (ip("2.2.2.2"), "shared.example".into(), chain.clone()),
                (ip("3.3.3.3"), "shared.example".into(), chain.clone()),
            ]
        );
        // Push the others out one at a time: the survivor keeps the shared record.
        c.insert(client, ip("8.8.8.8"), 2 * S, &full_response("other.example", &[], &[ip("4.4.4.4")], 60));
        let got = lookup_all(&c, client, 2 * S);
        assert_eq!((got[0].addr, &*got[0].qname), (ip("3.3.3.3"), "shared.example"));
        assert_eq!(&*got[0].cname_chain, chain.as_slice());
        assert_eq!((got[1].addr, &*got[1].qname), (ip("4.4.4.4"), "other.example"));
        assert_eq!(c.stats().evicted_answers, 2);
    }

    #[test]
    fn a_repeated_question_is_stored_once_and_the_arena_stays_bounded() {
        let cfg = CacheConfig { max_per_client: 8, ..Default::default() };
        let c = AnswerCache::new(cfg);
        let client = ip("10.0.0.5");
        let arena_len =
            |c: &AnswerCache| c.part(client).and_then(|m| m.get(&client)).map_or(0, |e| e.arena.len());
        c.insert(client, ip("8.8.8.8"), S, &response("same.example", &[[1, 1, 1, 1]]));
        let one = arena_len(&c);
        for i in 0..100u8 {
            c.insert(client, ip("8.8.8.8"), S, &response("same.example", &[[1, 1, 1, i]]));
        }
        assert_eq!(arena_len(&c), one, "the same question again adds no record");
        // Alternating names defeat that; compaction keeps the arena near what is live.
        for i in 0..10_000u32 {
            let name = format!("{}.example", ["a", "b", "c"][i as usize % 3]);
            c.insert(client, ip("8.8.8.8"), S, &response(&name, &[[9, 9, 9, (i % 4) as u8]]));
            assert!(arena_len(&c) <= 2 * MIN_ARENA, "arena grew to {}", arena_len(&c));
        }
        let got = lookup_all(&c, client, S);
        assert_eq!(got.len(), 8);
        // The last twelve responses left 9.9.9.0..=3 under the last name that gave each.
        let want: Vec<(IpAddr, String)> = (9_988..10_000u32)
            .map(|i| {
                (
                    IpAddr::from([9, 9, 9, (i % 4) as u8]),
                    format!("{}.example", ["a", "b", "c"][i as usize % 3]),
                )
            })
            .collect();
        let got: Vec<(IpAddr, String)> = got.iter().map(|a| (a.addr, a.qname.to_string())).collect();
        assert_eq!(&got[4..], &want[8..], "the newest four answers");
    }

    #[test]
    fn an_arena_at_the_cap_is_sized_to_half_again_what_is_live() {
        let c = AnswerCache::new(CacheConfig::default());
        let client = ip("10.0.0.5");
        let name = |i: u32| format!("host-{i:06}.example");
        let mut grew = 0;
        let mut last_cap = 0;
        for i in 0..5_000u32 {
            c.insert(client, ip("8.8.8.8"), S, &response(&name(i), &[[10, 0, (i >> 8) as u8, i as u8]]));
            let e = c.part(client).and_then(|m| m.get(&client)).unwrap();
            if i >= 500 {
                // The 64 live records, one per answer, and the half again between compactions.
                let live = 64 * super::Record::at(&e.arena, e.newest).len();
                assert!(
                    e.arena.capacity() <= live + live / 2 + HEADROOM,
                    "{} for {live} live",
                    e.arena.capacity()
                );
                grew += usize::from(e.arena.capacity() != last_cap);
            }
            last_cap = e.arena.capacity();
        }
        assert_eq!(grew, 0, "the arena kept growing at the cap");
        let got = lookup_all(&c, client, S);
        assert_eq!(got.len(), 64);
        assert!(got.iter().zip(4_936..).all(|(a, i)| *a.qname == name(i)));
    }

    /// The cache as it was before the arena and the ring: one owned answer per slot in a
    /// `VecDeque`, a linear duplicate check. Behaviour must not have changed.
    #[derive(Default)]
    struct Model {
        clients: std::collections::BTreeMap<IpAddr, VecDeque<CachedAnswer>>,
        evicted: u64,
    }

    impl Model {
        fn insert(
            &mut self,
            cap: usize,
            client: IpAddr,
            resolver: IpAddr,
            ts: Nanos,
            msg: &DnsMessage,
        ) -> usize {
            let addrs: Vec<(IpAddr, u32)> = msg
                .answers
                .iter()
                .filter_map(|r| match r.data {
                    RData::A(a) => Some((IpAddr::V4(a), r.ttl)),
                    RData::Aaaa(a) => Some((IpAddr::V6(a), r.ttl)),
                    _ => None,
                })
                .collect();
            if addrs.is_empty() {
                return 0;
            }
            let qname: Arc<str> = msg.questions.first().map(|q| q.name.as_str()).unwrap_or("").into();
            let chain: Arc<[String]> = msg
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::Name(n) if r.rtype == crate::dns::rtype::CNAME => Some(n.clone()),
                    _ => None,
                })
                .collect();
            let answers = self.clients.entry(client).or_default();
            for &(addr, ttl) in &addrs {
                if let Some(pos) = answers.iter().position(|a| a.addr == addr && a.qname == qname) {
                    answers.remove(pos);
                } else if answers.len() >= cap {
                    answers.pop_front();
                    self.evicted += 1;
                }
                let (qname, cname_chain) = (qname.clone(), chain.clone());
                answers.push_back(CachedAnswer { ts, addr, qname, cname_chain, resolver, ttl });
            }
            addrs.len()
        }

        fn expire(&mut self, now: Nanos, window: Nanos) {
            for answers in self.clients.values_mut() {
                while answers.front().is_some_and(|a| now.saturating_sub(a.ts) > window) {
                    answers.pop_front();
                }
            }
            self.clients.retain(|_, a| !a.is_empty());
        }
    }

    #[test]
    fn behaves_like_the_plain_deque_it_replaced() {
        // xorshift: a fixed, dependency-free sequence.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // One part, and one per worker of three: the clients spread over the parts.
        for (cap, parts) in [(1usize, 1), (3, 1), (8, 1), (13, 1), (3, 3), (8, 3)] {
            let cfg = CacheConfig { max_per_client: cap, window: 50 * S, ..Default::default() };
            let c = AnswerCache::with_parts(cfg, parts);
            let mut m = Model::default();
            let mut ts = S;
            for step in 0..6_000 {
                ts += next(3) * S / 2;
                let client = IpAddr::from([10, 0, 0, next(3 * parts as u64) as u8]);
                if next(40) == 0 {
                    c.expire(ts);
                    m.expire(ts, 50 * S);
                    continue;
                }
                // Few names and addresses, so that repeats, shared records and evictions
                // of every kind happen; names long enough to force compactions.
                let name = format!("{}{}.example", "n".repeat(next(3) as usize * 30), next(4));
                let chain: Vec<String> = (0..next(3)).map(|k| format!("c{k}.{}.cdn", next(2))).collect();
                let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
                let addrs: Vec<IpAddr> = (0..next(4))
                    .map(|_| match next(5) {
                        0 => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, next(4) as u16]),
                        _ => IpAddr::from([192, 0, 2, next(12) as u8]),
                    })
                    .collect();
                let resolver = IpAddr::from([8, 8, 8, next(2) as u8]);
                let msg = full_response(&name, &chain, &addrs, next(1000) as u32);
                assert_eq!(c.insert(client, resolver, ts, &msg), m.insert(cap, client, resolver, ts, &msg));
                if step % 7 == 0 {
                    let want: Vec<_> =
                        m.clients.iter().map(|(k, v)| (*k, v.iter().cloned().collect())).collect();
                    assert_eq!(c.snapshot(), want, "cap {cap}, step {step}");
                    let now = ts + next(60) * S;
                    for (client, answers) in &m.clients {
                        let want: Vec<_> =
                            answers.iter().filter(|a| a.ts <= now && now - a.ts <= 50 * S).cloned().collect();
                        assert_eq!(lookup_all(&c, *client, now), want, "cap {cap}, step {step}");
                    }
                }
            }
            assert_eq!(c.stats().evicted_answers, m.evicted);
            assert_eq!(c.stats().answers, m.clients.values().map(|a| a.len() as u64).sum::<u64>());
        }
    }
}
