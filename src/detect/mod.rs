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

/// The fields that tell one alert from another of the same rule: each detector raises at
/// most one alert per key (client, destination and port, resolved address, formula,
/// registered or listed domain) per window, so the key with the window's start and the
/// alert's time names one alert.
const IDENTITY: [&str; 9] = [
    "@timestamp",
    "source.ip",
    "destination.ip",
    "destination.port",
    "dns.resolved_ip",
    "portent.formula",
    "dns.question.registered_domain",
    "portent.reputation.listed_domain",
    "portent.window.start",
];

/// `event.id`: the first 128 bits of SHA-256 over the sensor's name, the rule and the
/// alert's key fields, in hex. The same alert from the same sensor always gets the same id,
/// on any build or machine, so a consumer can drop the copies a retry or a restart sends
/// twice; a cryptographic digest because the key holds names the attacker chose.
pub fn event_id(sensor: &str, rule: &str, doc: &Map<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(sensor.as_bytes());
    part(rule.as_bytes());
    for k in IDENTITY {
        match doc.get(k) {
            Some(v) => {
                part(k.as_bytes());
                part(v.to_string().as_bytes());
            }
            None => part(b""),
        }
    }
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn event_id_is_stable_and_tells_alerts_apart() {
        let a = doc(&[
            ("@timestamp", json!("2023-11-14T22:13:20.000000Z")),
            ("source.ip", json!("10.0.0.5")),
            ("destination.ip", json!("198.51.100.7")),
            ("destination.port", json!(10198)),
            ("portent.formula", json!("apt12")),
            ("event.reason", json!("anything")),
        ]);
        let id = event_id("sensor-1", "dns_calculation", &a);
        // Pinned: a change here breaks every consumer's de-duplication across an upgrade.
        assert_eq!(id, "c6380fa42133790d5fe295e3303e1dcb");
        assert_eq!(id, event_id("sensor-1", "dns_calculation", &a));
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        // Fields outside the key do not change it.
        let mut b = a.clone();
        b.insert("event.reason".into(), json!("something else"));
        assert_eq!(event_id("sensor-1", "dns_calculation", &b), id);
        // The sensor, the rule and every key field do.
        assert_ne!(event_id("sensor-2", "dns_calculation", &a), id);
        assert_ne!(event_id("sensor-1", "dns_calculation_no_dns", &a), id);
        for k in ["@timestamp", "source.ip", "destination.ip", "destination.port", "portent.formula"] {
            let mut c = a.clone();
            c.insert(k.into(), json!("other"));
            assert_ne!(event_id("sensor-1", "dns_calculation", &c), id, "{k}");
        }
        // A field moved between parts does not collide (each part is length-prefixed).
        assert_ne!(event_id("sensor-1d", "ns_calculation", &a), id);
    }
}
