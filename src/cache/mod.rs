//! The DNS-answer cache: which addresses each client was given, and when.
//!
//! Sharded (dashmap) and keyed by the client that asked: the destination of a response. The
//! pipeline routes each client to one worker, so a client's answers and its SYNs meet on one
//! thread and shards rarely contend. Entries leave by packet time after `window`; memory is
//! bounded by a cap per client and a global cap on clients, with evictions counted.

use crate::dns::{DnsMessage, RData};
use crate::Nanos;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer stays usable (TimeWindow), in packet time.
    pub window: Nanos,
    /// Most answers kept per client; the oldest goes first.
    pub max_per_client: usize,
    /// Most clients kept; past it, expired clients are swept, then the least recently
    /// answered tenth is evicted.
    pub max_clients: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { window: 300 * crate::NANOS_PER_SEC, max_per_client: 64, max_clients: 262_144 }
    }
}

/// One address that one client was given.
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

#[derive(Debug, Default)]
struct ClientEntry {
    answers: VecDeque<CachedAnswer>,
    /// `fingerprint(addr, qname)` of each answer, in step with `answers`: the duplicate
    /// check scans these 8-byte keys instead of up to 64 80-byte answers, and compares an
    /// answer in full only when its fingerprint matches. Colliding names (even chosen ones)
    /// only fall back to that full compare, so the result never depends on the hash.
    keys: VecDeque<u64>,
    last_seen: Nanos,
}

/// Cheap, unkeyed hash of a name's bytes (FNV-1a): computed once per response.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn fingerprint(addr: IpAddr, name_hash: u64) -> u64 {
    let a = match addr {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17) ^ 0x5555
        }
    };
    name_hash ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Whether `key` is among `keys`, eight at a time without an early exit inside a chunk, so
/// that the compiler compares them with SIMD: at the 64-answer cap this runs for every
/// address of every response, and the scalar scan was a third of `insert`.
fn has_key(keys: &VecDeque<u64>, key: u64) -> bool {
    let (a, b) = keys.as_slices();
    [a, b].iter().any(|s| s.chunks(8).any(|c| c.iter().fold(false, |hit, k| hit | (*k == key))))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub clients: u64,
    pub answers: u64,
    /// Answers pushed out by the per-client cap.
    pub evicted_answers: u64,
    /// Clients pushed out by the global cap (not by age).
    pub evicted_clients: u64,
    /// Clients that left because their answers aged out of the window.
    pub expired_clients: u64,
}

pub struct AnswerCache {
    cfg: CacheConfig,
    map: DashMap<IpAddr, ClientEntry, crate::FastRandom>,
    evicted_answers: AtomicU64,
    evicted_clients: AtomicU64,
    expired_clients: AtomicU64,
    evicting: AtomicBool,
}

impl AnswerCache {
    pub fn new(cfg: CacheConfig) -> AnswerCache {
        AnswerCache {
            cfg,
            map: DashMap::with_hasher(crate::FastRandom::default()),
            evicted_answers: AtomicU64::new(0),
            evicted_clients: AtomicU64::new(0),
            expired_clients: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
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
        let qname: Arc<str> = msg.questions.first().map(|q| q.name.as_str()).unwrap_or("").into();
        let chain: Arc<[String]> = msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::Name(n) if r.rtype == crate::dns::rtype::CNAME => Some(n.clone()),
                _ => None,
            })
            .collect();
        if !self.map.contains_key(&client) && self.map.len() >= self.cfg.max_clients {
            self.make_room(ts);
        }
        let mut entry = self.map.entry(client).or_default();
        entry.last_seen = entry.last_seen.max(ts);
        let entry = &mut *entry;
        let nh = name_hash(&qname);
        let mut n = 0;
        for (addr, ttl) in addrs {
            n += 1;
            let key = fingerprint(addr, nh);
            // A repeated answer refreshes the entry instead of taking a second slot.
            let answers = &entry.answers;
            let dup = if has_key(&entry.keys, key) {
                entry.keys.iter().enumerate().position(|(i, k)| {
                    *k == key && answers.get(i).is_some_and(|a| a.addr == addr && *a.qname == *qname)
                })
            } else {
                None
            };
            if let Some(pos) = dup {
                entry.answers.remove(pos);
                entry.keys.remove(pos);
            } else if entry.answers.len() >= self.cfg.max_per_client {
                entry.answers.pop_front();
                entry.keys.pop_front();
                self.evicted_answers.fetch_add(1, Ordering::Relaxed);
            }
            entry.keys.push_back(key);
            entry.answers.push_back(CachedAnswer {
                ts,
                addr,
                qname: qname.clone(),
                cname_chain: chain.clone(),
                resolver,
                ttl,
            });
        }
        n
    }

    /// Calls `f` for each answer `client` received within the window before `now`, oldest
    /// first.
    pub fn lookup(&self, client: IpAddr, now: Nanos, mut f: impl FnMut(&CachedAnswer)) {
        if let Some(entry) = self.map.get(&client) {
            for a in entry.answers.iter() {
                if a.ts <= now && now - a.ts <= self.cfg.window {
                    f(a);
                }
            }
        }
    }

    /// Drops every answer older than the window before `now`, and clients left with none.
    pub fn expire(&self, now: Nanos) {
        self.expire_where(now, |_| true)
    }

    /// `expire`, for the clients that `mine` picks only: a worker sweeps its own clients by
    /// its own clock, so it never takes an answer that a worker behind it could still use.
    pub fn expire_where(&self, now: Nanos, mine: impl Fn(IpAddr) -> bool) {
        let window = self.cfg.window;
        let mut gone = 0;
        self.map.retain(|k, e| {
            if !mine(*k) {
                return true;
            }
            while e.answers.front().is_some_and(|a| now.saturating_sub(a.ts) > window) {
                e.answers.pop_front();
                e.keys.pop_front();
            }
            let keep = !e.answers.is_empty();
            gone += u64::from(!keep);
            keep
        });
        self.expired_clients.fetch_add(gone, Ordering::Relaxed);
    }

    /// Frees at least a tenth of the global cap: expired clients first, then the least
    /// recently answered ones. Amortised O(1) per insert.
    fn make_room(&self, now: Nanos) {
        if self.evicting.swap(true, Ordering::Acquire) {
            return; // another worker is already at it
        }
        self.expire(now);
        let target = self.cfg.max_clients - self.cfg.max_clients / 10;
        if self.map.len() > target {
            let mut seen: Vec<Nanos> = self.map.iter().map(|e| e.last_seen).collect();
            let k = seen.len() - target;
            let (_, cut, _) = seen.select_nth_unstable(k.saturating_sub(1));
            let cut = *cut;
            let mut evicted = 0u64;
            let mut budget = k;
            self.map.retain(|_, e| {
                if budget > 0 && e.last_seen <= cut {
                    budget -= 1;
                    evicted += 1;
                    false
                } else {
                    true
                }
            });
            self.evicted_clients.fetch_add(evicted, Ordering::Relaxed);
        }
        self.evicting.store(false, Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            clients: self.map.len() as u64,
            answers: self.map.iter().map(|e| e.answers.len() as u64).sum(),
            evicted_answers: self.evicted_answers.load(Ordering::Relaxed),
            evicted_clients: self.evicted_clients.load(Ordering::Relaxed),
            expired_clients: self.expired_clients.load(Ordering::Relaxed),
        }
    }

    /// Every client with its answers, sorted, for tests and the end-of-run dump.
    pub fn snapshot(&self) -> Vec<(IpAddr, Vec<CachedAnswer>)> {
        let mut v: Vec<_> =
            self.map.iter().map(|e| (*e.key(), e.answers.iter().cloned().collect())).collect();
        v.sort_by_key(|a| a.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{Question, Record};
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
}
