//! Detections. Each detector reads owned records (DNS messages, SYNs) and the answer cache,
//! and returns `Alert`s; none does I/O or reads the wall clock.

pub mod calc;
pub mod formula;
pub mod lists;
pub mod reputation;
pub mod tunnel;

use crate::Nanos;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// A TCP SYN (SYN set, ACK clear): a client opening a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syn {
    pub ts: Nanos,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// One alert: an ECS object ready to print as one NDJSON line.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Packet time that raised it; the output orders alerts by it.
    pub ts: Nanos,
    pub rule: &'static str,
    pub client: IpAddr,
    pub doc: Map<String, Value>,
}

/// The fields every alert shares: time, kind, rule, severity and the ATT&CK mapping, with
/// the parent technique in `technique.id` and the sub-technique beneath it, as Elastic's
/// own rules write them.
pub fn alert_base(
    ts: Nanos,
    rule: &'static str,
    severity: u8,
    technique: (&str, &str),
    subtechnique: (&str, &str),
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@timestamp".into(), Value::String(crate::time::rfc3339(ts)));
    m.insert("event.kind".into(), json!("alert"));
    m.insert("event.category".into(), json!(["network"]));
    m.insert("event.module".into(), json!("portent"));
    m.insert("event.severity".into(), json!(severity));
    m.insert("rule.id".into(), json!(format!("portent.{rule}")));
    m.insert("rule.name".into(), json!(rule));
    m.insert("threat.framework".into(), json!("MITRE ATT&CK"));
    m.insert("threat.tactic.id".into(), json!("TA0011"));
    m.insert("threat.tactic.name".into(), json!("Command and Control"));
    m.insert("threat.technique.id".into(), json!(technique.0));
    m.insert("threat.technique.name".into(), json!(technique.1));
    m.insert("threat.technique.subtechnique.id".into(), json!(subtechnique.0));
    m.insert("threat.technique.subtechnique.name".into(), json!(subtechnique.1));
    m
}

/// One decoded DNS message as the detectors see it.
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent<'a> {
    pub ts: Nanos,
    /// The side that asked: the source of a query, the destination of a response.
    pub client: IpAddr,
    /// The side that answered (resolver or authoritative server).
    pub server: IpAddr,
    pub msg: &'a crate::dns::DnsMessage,
    /// Size of the DNS message on the wire (without IP/UDP headers or TCP length prefix).
    pub wire_len: usize,
}
