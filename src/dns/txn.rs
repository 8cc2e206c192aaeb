//! DNS transactions: a query paired with its response, as Zeek's dns.log pairs them.
//!
//! A response whose query was never seen, and a query with no response within the timeout
//! (or by the end of the input) each come out on their own. Pending queries are bounded; a
//! query pushed out by the cap comes out as unanswered, counted.

use super::DnsMessage;
use crate::Nanos;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Who talked to whom: the client is the side that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnKey {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    pub transport: Transport,
    pub id: u16,
}

/// One side of a transaction: the message and the packet that carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub ts: Nanos,
    /// Index of the packet in the input, for ordering the output.
    pub seq: u64,
    pub msg: DnsMessage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub key: TxnKey,
    pub query: Option<Seen>,
    pub response: Option<Seen>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnStats {
    pub answered: u64,
    pub unanswered: u64,
    pub unsolicited: u64,
    /// Unanswered queries pushed out early by the pending cap.
    pub evicted: u64,
}

pub struct Transactions {
    timeout: Nanos,
    cap: usize,
    pending: HashMap<TxnKey, Seen, crate::FastRandom>,
    /// Insertion order, for expiry and eviction; stale keys (already answered) are skipped.
    order: VecDeque<(TxnKey, u64)>,
    stats: TxnStats,
}

impl Transactions {
    pub fn new(timeout: Nanos, cap: usize) -> Self {
        Transactions {
            timeout,
            cap: cap.max(1),
            pending: HashMap::default(),
            order: VecDeque::new(),
            stats: TxnStats::default(),
        }
    }

    /// Takes one message; returns the transactions it completes or displaces.
    pub fn on_message(&mut self, key: TxnKey, seen: Seen, out: &mut Vec<Transaction>) {
        if seen.msg.response {
            match self.pending.remove(&key) {
                Some(q) => {
                    self.stats.answered += 1;
                    out.push(Transaction { key, query: Some(q), response: Some(seen) });
                }
                None => {
                    self.stats.unsolicited += 1;
                    out.push(Transaction { key, query: None, response: Some(seen) });
                }
            }
            return;
        }
        // A second query with the same key: the first one's answer is not coming.
        if let Some(old) = self.pending.remove(&key) {
            self.stats.unanswered += 1;
            out.push(Transaction { key, query: Some(old), response: None });
        }
        if self.pending.len() >= self.cap {
            self.evict_one(out);
        }
        self.order.push_back((key, seen.seq));
        self.pending.insert(key, seen);
    }

    fn evict_one(&mut self, out: &mut Vec<Transaction>) {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.pending.get(&key).is_some_and(|s| s.seq == seq) {
                if let Some(q) = self.pending.remove(&key) {
                    self.stats.evicted += 1;
                    self.stats.unanswered += 1;
                    out.push(Transaction { key, query: Some(q), response: None });
                }
                return;
            }
        }
    }

    /// Emits queries older than the timeout before `now`, oldest first.
    pub fn expire(&mut self, now: Nanos, out: &mut Vec<Transaction>) {
        while let Some((key, seq)) = self.order.front().copied() {
            match self.pending.get(&key) {
                Some(s) if s.seq == seq => {
                    if now.saturating_sub(s.ts) <= self.timeout {
                        return;
                    }
                    if let Some(q) = self.pending.remove(&key) {
                        self.stats.unanswered += 1;
                        out.push(Transaction { key, query: Some(q), response: None });
                    }
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// End of input: every pending query comes out unanswered.
    pub fn flush(&mut self, out: &mut Vec<Transaction>) {
        self.expire(Nanos::MAX, out);
        self.order.clear();
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> TxnStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> TxnKey {
        TxnKey {
            client: "10.0.0.1".parse().unwrap(),
            client_port: 5000,
            server: "8.8.8.8".parse().unwrap(),
            server_port: 53,
            transport: Transport::Udp,
            id,
        }
    }

    fn seen(ts: Nanos, seq: u64, response: bool) -> Seen {
        Seen { ts, seq, msg: DnsMessage { response, ..Default::default() } }
    }

    #[test]
    fn pairs_queries_with_responses() {
        let mut t = Transactions::new(10, 100);
        let mut out = vec![];
        t.on_message(key(1), seen(1, 0, false), &mut out);
        assert!(out.is_empty());
        t.on_message(key(2), seen(2, 1, true), &mut out);
        t.on_message(key(1), seen(3, 2, true), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].query.is_none() && out[0].response.is_some(), "unsolicited response");
        assert_eq!(out[1].query.as_ref().unwrap().seq, 0);
        assert_eq!(out[1].response.as_ref().unwrap().seq, 2);
        assert_eq!(t.stats(), TxnStats { answered: 1, unanswered: 0, unsolicited: 1, evicted: 0 });
    }

    #[test]
    fn unanswered_queries_time_out_or_flush() {
        let mut t = Transactions::new(10, 100);
        let mut out = vec![];
        t.on_message(key(1), seen(1, 0, false), &mut out);
        t.on_message(key(2), seen(5, 1, false), &mut out);
        t.expire(11, &mut out);
        assert!(out.is_empty(), "exactly at the timeout is still pending");
        t.expire(12, &mut out);
        assert_eq!(out.len(), 1);
        t.flush(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|x| x.response.is_none()));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn cap_evicts_oldest_pending() {
        let mut t = Transactions::new(1000, 2);
        let mut out = vec![];
        for i in 0..5u16 {
            t.on_message(key(i), seen(u64::from(i), u64::from(i), false), &mut out);
        }
        assert_eq!(t.pending(), 2);
        assert_eq!(out.iter().map(|x| x.key.id).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(t.stats().evicted, 3);
    }
}
