//! Detections. Each detector reads owned records (DNS messages, SYNs) and the answer cache,
//! and returns `Alert`s; none does I/O or reads the wall clock.

pub mod calc;
pub mod formula;
pub mod lists;
pub mod reputation;
pub mod tunnel;

use crate::output::doc::{Doc, Field};
use crate::Nanos;
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
    pub doc: Doc,
}

/// The fields every alert shares: time, kind, rule, severity and the ATT&CK mapping, with
/// the parent technique in `technique.id` and the sub-technique beneath it, as Elastic's
/// own rules write them.
pub fn alert_base(
    ts: Nanos,
    rule: &'static str,
    severity: u8,
    technique: (&'static str, &'static str),
    subtechnique: (&'static str, &'static str),
) -> Doc {
    // Room for the largest alert (dns_tunneling, ~60 fields) and the three `emit` adds.
    let mut m = Doc::with_capacity(72);
    m.insert("@timestamp", Field::Time(ts));
    m.insert("event.kind", "alert");
    m.insert("event.category", vec!["network"]);
    m.insert("event.module", "portent");
    m.insert("event.severity", severity);
    m.insert("rule.id", rule_id(rule));
    m.insert("rule.name", rule);
    m.insert("threat.framework", "MITRE ATT&CK");
    m.insert("threat.tactic.id", "TA0011");
    m.insert("threat.tactic.name", "Command and Control");
    m.insert("threat.technique.id", technique.0);
    m.insert("threat.technique.name", technique.1);
    m.insert("threat.technique.subtechnique.id", subtechnique.0);
    m.insert("threat.technique.subtechnique.name", subtechnique.1);
    m
}

/// `portent.{rule}`, a literal for the rules there are.
fn rule_id(rule: &'static str) -> Field {
    macro_rules! ids {
        ($($rule:literal),*) => {
            match rule {
                $($rule => Field::from(concat!("portent.", $rule)),)*
                _ => Field::from(format!("portent.{rule}")),
            }
        };
    }
    ids!("dns_calculation", "dns_calculation_no_dns", "dns_tunneling", "dns_query_burst", "dns_reputation")
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

/// The values of the `IDENTITY` fields, in its order. A sorted record is walked once
/// (eleven binary searches with a string compare at each step cost more than the hash);
/// an unsorted one is searched field by field.
fn identity_fields(doc: &Doc) -> [Option<&Field>; IDENTITY.len()] {
    let mut found = [None; IDENTITY.len()];
    match doc.sorted_fields() {
        Some(fields) => {
            for (k, v) in fields {
                if let Some(slot) = identity_index(k).and_then(|i| found.get_mut(i)) {
                    *slot = Some(v);
                }
            }
        }
        None => {
            for (slot, k) in found.iter_mut().zip(IDENTITY) {
                *slot = doc.get(k);
            }
        }
    }
    found
}

/// Where `k` is in `IDENTITY` (a `match` tests the length before any bytes).
fn identity_index(k: &str) -> Option<usize> {
    Some(match k {
        "@timestamp" => 0,
        "source.ip" => 1,
        "destination.ip" => 2,
        "destination.port" => 3,
        "dns.resolved_ip" => 4,
        "portent.formula" => 5,
        "dns.question.registered_domain" => 6,
        "portent.reputation.listed_domain" => 7,
        "portent.window.start" => 8,
        _ => return None,
    })
}

/// `event.id`: the first 128 bits of SHA-256 over the sensor's name, the rule and the
/// alert's key fields, in hex. The same alert from the same sensor always gets the same id,
/// on any build or machine, so a consumer can drop the copies a retry or a restart sends
/// twice; a cryptographic digest because the key holds names the attacker chose.
pub fn event_id(sensor: &str, rule: &str, doc: &Doc) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(sensor.as_bytes());
    part(rule.as_bytes());
    // A value enters as its JSON text (a string with its quotes and escapes), written into
    // one reused buffer.
    let mut text = String::with_capacity(128);
    for (k, v) in IDENTITY.iter().zip(identity_fields(doc)) {
        match v {
            Some(v) => {
                part(k.as_bytes());
                text.clear();
                v.write_json(&mut text);
                part(text.as_bytes());
            }
            None => part(b""),
        }
    }
    let d = h.finalize();
    const HEX: [u8; 16] = *b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in d.iter().take(16) {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
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

    fn doc(pairs: &[(&'static str, Field)]) -> Doc {
        let mut d = Doc::new();
        for (k, v) in pairs {
            d.insert(*k, v.clone());
        }
        d
    }

    #[test]
    fn rule_ids_are_the_rule_after_portent() {
        for rule in [
            "dns_calculation",
            "dns_calculation_no_dns",
            "dns_tunneling",
            "dns_query_burst",
            "dns_reputation",
            "other",
        ] {
            assert_eq!(rule_id(rule), Field::from(format!("portent.{rule}")));
        }
    }

    #[test]
    fn identity_index_is_the_place_in_identity() {
        for (i, k) in IDENTITY.iter().enumerate() {
            assert_eq!(identity_index(k), Some(i), "{k}");
        }
        for k in ["", "@timestam", "source.port", "dns.question.name", "portent.window.end"] {
            assert_eq!(identity_index(k), None, "{k}");
        }
    }

    /// The one-pass lookup of a sorted record finds what `get` finds, for records with and
    /// without each key, and with keys inserted twice (the last value counts).
    #[test]
    fn identity_fields_match_get() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let others = ["event.reason", "source.port", "dns.question.name", "zzz", "@a", "portent.window"];
        for _ in 0..2_000 {
            let mut d = Doc::new();
            for _ in 0..next() % 24 {
                let r = next();
                let k = if r % 3 == 0 {
                    others[(r >> 8) as usize % others.len()]
                } else {
                    IDENTITY[(r >> 8) as usize % IDENTITY.len()]
                };
                d.insert(k, r >> 20);
            }
            let unsorted = identity_fields(&d).map(|v| v.cloned());
            d.sort();
            let sorted = identity_fields(&d).map(|v| v.cloned());
            let by_get = IDENTITY.map(|k| d.get(k).cloned());
            assert_eq!(sorted, by_get);
            assert_eq!(unsorted, by_get);
        }
    }

    #[test]
    fn event_id_is_stable_and_tells_alerts_apart() {
        let a = doc(&[
            ("@timestamp", Field::Time(1_700_000_000_000_000_000)),
            ("source.ip", "10.0.0.5".into()),
            ("destination.ip", "198.51.100.7".into()),
            ("destination.port", 10198u16.into()),
            ("portent.formula", "apt12".into()),
            ("event.reason", "anything".into()),
        ]);
        let id = event_id("sensor-1", "dns_calculation", &a);
        // Pinned: a change here breaks every consumer's de-duplication across an upgrade.
        assert_eq!(id, "c6380fa42133790d5fe295e3303e1dcb");
        assert_eq!(id, event_id("sensor-1", "dns_calculation", &a));
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        // Fields outside the key do not change it.
        let mut b = a.clone();
        b.insert("event.reason", "something else");
        assert_eq!(event_id("sensor-1", "dns_calculation", &b), id);
        // The sensor, the rule and every key field do.
        assert_ne!(event_id("sensor-2", "dns_calculation", &a), id);
        assert_ne!(event_id("sensor-1", "dns_calculation_no_dns", &a), id);
        for k in ["@timestamp", "source.ip", "destination.ip", "destination.port", "portent.formula"] {
            let mut c = a.clone();
            c.insert(k, "other");
            assert_ne!(event_id("sensor-1", "dns_calculation", &c), id, "{k}");
        }
        // A field moved between parts does not collide (each part is length-prefixed).
        assert_ne!(event_id("sensor-1d", "ns_calculation", &a), id);
    }
}
