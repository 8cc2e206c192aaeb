//! Counters. Each thread keeps its own plain counters (nothing shared on the hot path) and
//! hands a copy over at the end; `Summary` adds them up.

use crate::decode::DecodeError;
use std::collections::BTreeMap;

/// What the reader saw: every packet of the input, decoded or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub packets: u64,
    pub bytes: u64,
    /// UDP or TCP packets whose headers decoded.
    pub decoded: u64,
    pub not_ip: u64,
    pub other_ip: u64,
    pub fragments: u64,
    /// Skipped by reason (`DecodeError::reason`).
    pub malformed: BTreeMap<&'static str, u64>,
    pub dns_udp: u64,
    pub dns_tcp_segments: u64,
    pub syns: u64,
    /// Multicast DNS (5353) and LLMNR (5355): counted, kept out of the cache and detectors.
    pub mdns: u64,
    pub llmnr: u64,
    pub unsupported_linktype: u64,
    pub defrag: crate::decode::defrag::DefragStats,
}

impl ReaderStats {
    pub fn malformed(&mut self, e: DecodeError) {
        *self.malformed.entry(e.reason()).or_default() += 1;
    }
}

/// What one worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub dns_messages: u64,
    pub dns_queries: u64,
    pub dns_responses: u64,
    /// Messages that did not parse, by reason (`ParseError::reason`).
    pub dns_errors: BTreeMap<&'static str, u64>,
    /// Parsed messages with a recoverable oddity.
    pub dns_anomalies: u64,
    pub dns_tcp_messages: u64,
    pub syns: u64,
    pub cached_answers: u64,
    pub alerts: BTreeMap<&'static str, u64>,
}

impl WorkerStats {
    pub fn add(&mut self, o: &WorkerStats) {
        self.dns_messages += o.dns_messages;
        self.dns_queries += o.dns_queries;
        self.dns_responses += o.dns_responses;
        for (k, v) in &o.dns_errors {
            *self.dns_errors.entry(k).or_default() += v;
        }
        self.dns_anomalies += o.dns_anomalies;
        self.dns_tcp_messages += o.dns_tcp_messages;
        self.syns += o.syns;
        self.cached_answers += o.cached_answers;
        for (k, v) in &o.alerts {
            *self.alerts.entry(k).or_default() += v;
        }
    }
}
