//! portent: a passive sensor for DNS Calculation (ATT&CK T1568.003) and DNS tunneling
//! (T1071.004).
//!
//! Data flows one way: `capture` (pcap/pcapng files, live interfaces) → `decode` (link, IP,
//! transport) → `dns` (messages, DNS-over-TCP framing) → `cache` (answers per client) →
//! `detect` (calc, tunnel) → `output` (NDJSON). `pipeline` wires the stages to threads;
//! `config` holds the resolved settings.
//!
//! **Architecture invariant:** `decode`, `dns`, `cache` and `detect` never do I/O and never
//! read the wall clock: packet time is the only clock below `pipeline`.

pub mod cache;
pub mod capture;
pub mod config;
pub mod decode;
pub mod detect;
pub mod dns;
pub mod ingest;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod stats;
pub mod time;

#[cfg(test)]
mod testutil;

/// Hasher for every per-packet map (answer cache, transactions, dedup, TCP streams, tunnel
/// groups). Their keys are chosen by whoever sends the packets, so a fixed fast hash would
/// invite collision floods; foldhash with a per-process random seed keeps that protection at
/// a fraction of SipHash's cost (SipHash was ~4% of a replay's instructions under callgrind).
pub type FastRandom = foldhash::fast::RandomState;

/// Packet time: nanoseconds since the Unix epoch, as the capture stamped it.
pub type Nanos = u64;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
