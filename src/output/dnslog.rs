//! A DNS transaction as one NDJSON record.

use crate::dns::txn::Transaction;
use crate::dns::{rcode_name, rtype_name, DnsMessage, RData};
use crate::output::doc::{self, Doc, Field};
use crate::output::num;
use std::borrow::Cow;
use std::net::IpAddr;

/// The record for one transaction. Its time is the query's, or the response's when the
/// query was not seen, as in Zeek's dns.log. The pipeline writes the same line with
/// `write_line`; this is the record as fields, for tests and tools that inspect it.
pub fn record(t: &Transaction) -> Doc {
    // The most a record holds, with the `observer.name` the pipeline adds.
    let mut m = Doc::with_capacity(20);
    let first = t.query.as_ref().or(t.response.as_ref());
    let ts = first.map(|s| s.ts).unwrap_or(0);
    m.insert("@timestamp", Field::Time(ts));
    m.insert("event.dataset", "portent.dns");
    m.insert("source.ip", t.key.client);
    m.insert("source.port", t.key.client_port);
    m.insert("destination.ip", t.key.server);
    m.insert("destination.port", t.key.server_port);
    m.insert("network.transport", t.key.transport.name());
    m.insert("network.protocol", "dns");
    m.insert("dns.id", t.key.id);
    m.insert("dns.type", if t.response.is_some() { "answer" } else { "query" });
    // The question as asked; a lone response repeats it.
    if let Some(q) = first.and_then(|s| s.msg.questions.first()) {
        m.insert("dns.question.name", q.name.clone());
        m.insert("dns.question.type", rtype_name(q.qtype));
        m.insert("dns.question.class", class_name(q.qclass));
    }
    if let Some(r) = &t.response {
        m.insert("dns.response_code", rcode_name(r.msg.rcode));
        m.insert("dns.header_flags", flags(&r.msg));
        m.insert("dns.answers", Field::List(r.msg.answers.iter().map(answer).collect()));
        let ips: Vec<Field> = r
            .msg
            .answers
            .iter()
            .filter_map(|a| match a.data {
                RData::A(ip) => Some(Field::from(ip)),
                RData::Aaaa(ip) => Some(Field::from(ip)),
                _ => None,
            })
            .collect();
        if !ips.is_empty() {
            m.insert("dns.resolved_ip", Field::List(ips));
        }
        if let Some(q) = &t.query {
            let rtt_us = r.ts.saturating_sub(q.ts) / 1_000;
            m.insert("portent.rtt_ms", rtt_us as f64 / 1000.0);
        }
    }
    m
}

/// The line `record(t)` writes once the pipeline has added `observer.name`, written
/// straight into `out` in key order: the same bytes without building, sorting and dropping
/// a `Doc` of ~20 fields and one per answer, which cost more than the writing (a test
/// compares the two over many transactions).
pub fn write_line(t: &Transaction, sensor: &str, out: &mut String) {
    let first = t.query.as_ref().or(t.response.as_ref());
    let response = t.response.as_ref().map(|r| &r.msg);
    out.push_str("{\"@timestamp\":");
    doc::write_time(first.map(|s| s.ts).unwrap_or(0), out);
    out.push_str(",\"destination.ip\":");
    doc::write_ip(&t.key.server, out);
    out.push_str(",\"destination.port\":");
    num::u64(u64::from(t.key.server_port), out);
    if let Some(r) = response {
        out.push_str(",\"dns.answers\":[");
        for (i, a) in r.answers.iter().enumerate() {
            out.push_str(if i == 0 { "{\"data\":" } else { ",{\"data\":" });
            write_data(&a.data, out);
            out.push_str(",\"name\":");
            doc::write_str(&a.name, out);
            out.push_str(",\"ttl\":");
            num::u64(u64::from(a.ttl), out);
            out.push_str(",\"type\":");
            doc::write_str(&rtype_name(a.rtype), out);
            out.push('}');
        }
        out.push_str("],\"dns.header_flags\":[");
        for (i, f) in flags(r).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            doc::write_str(f, out);
        }
        out.push(']');
    }
    out.push_str(",\"dns.id\":");
    num::u64(u64::from(t.key.id), out);
    if let Some(q) = first.and_then(|s| s.msg.questions.first()) {
        out.push_str(",\"dns.question.class\":");
        doc::write_str(&class_name(q.qclass), out);
        out.push_str(",\"dns.question.name\":");
        doc::write_str(&q.name, out);
        out.push_str(",\"dns.question.type\":");
        doc::write_str(&rtype_name(q.qtype), out);
    }
    if let Some(r) = response {
        let mut ips = r.answers.iter().filter_map(|a| match a.data {
            RData::A(ip) => Some(IpAddr::V4(ip)),
            RData::Aaaa(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        });
        if let Some(ip) = ips.next() {
            out.push_str(",\"dns.resolved_ip\":[");
            doc::write_ip(&ip, out);
            for ip in ips {
                out.push(',');
                doc::write_ip(&ip, out);
            }
            out.push(']');
        }
        out.push_str(",\"dns.response_code\":");
        doc::write_str(&rcode_name(r.rcode), out);
    }
    out.push_str(if response.is_some() { ",\"dns.type\":\"answer\"" } else { ",\"dns.type\":\"query\"" });
    out.push_str(",\"event.dataset\":\"portent.dns\",\"network.protocol\":\"dns\",\"network.transport\":");
    doc::write_str(t.key.transport.name(), out);
    out.push_str(",\"observer.name\":");
    doc::write_str(sensor, out);
    if let (Some(q), Some(r)) = (&t.query, &t.response) {
        out.push_str(",\"portent.rtt_ms\":");
        num::json_f64((r.ts.saturating_sub(q.ts) / 1_000) as f64 / 1000.0, out);
    }
    out.push_str(",\"source.ip\":");
    doc::write_ip(&t.key.client, out);
    out.push_str(",\"source.port\":");
    num::u64(u64::from(t.key.client_port), out);
    out.push('}');
}

/// An answer's `data`, as `answer` builds it.
fn write_data(d: &RData, out: &mut String) {
    match d {
        RData::A(ip) => doc::write_ip(&IpAddr::V4(*ip), out),
        RData::Aaaa(ip) => doc::write_ip(&IpAddr::V6(*ip), out),
        RData::Name(n) => doc::write_str(n, out),
        // Escaping works byte by byte, so the pieces escaped one by one make the same text
        // as the joined string escaped whole; the number and the spaces need none.
        RData::Mx { preference, exchange } => {
            out.push('"');
            num::u64(u64::from(*preference), out);
            out.push(' ');
            doc::write_escaped(exchange, out);
            out.push('"');
        }
        RData::Txt(parts) => {
            out.push('"');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                doc::write_escaped(p, out);
            }
            out.push('"');
        }
        RData::Other => out.push_str("null"),
    }
}

fn answer(a: &crate::dns::Record) -> Field {
    let data = match &a.data {
        RData::A(ip) => Field::from(*ip),
        RData::Aaaa(ip) => Field::from(*ip),
        RData::Name(n) => Field::from(n.clone()),
        RData::Mx { preference, exchange } => Field::from(format!("{preference} {exchange}")),
        RData::Txt(parts) => Field::from(parts.join(" ")),
        RData::Other => Field::Null,
    };
    // Inserted in key order, so the sort that `Field::from` does finds nothing to move.
    let mut d = Doc::with_capacity(4);
    d.insert("data", data);
    d.insert("name", a.name.clone());
    d.insert("ttl", a.ttl);
    d.insert("type", rtype_name(a.rtype));
    Field::from(d)
}

fn flags(m: &DnsMessage) -> Vec<&'static str> {
    let mut v = Vec::with_capacity(4);
    if m.authoritative {
        v.push("AA");
    }
    if m.truncated {
        v.push("TC");
    }
    if m.recursion_desired {
        v.push("RD");
    }
    if m.recursion_available {
        v.push("RA");
    }
    v
}

fn class_name(c: u16) -> Cow<'static, str> {
    match c {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        // mDNS sets the top bit (unicast-response / cache-flush).
        c => format!("CLASS{c}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::txn::{Seen, Transport, TxnKey};
    use crate::dns::{Question, Record};
    use crate::testutil::Rng;
    use serde_json::{json, Value};

    /// The line through `record` and a `Doc`, as the pipeline wrote it before `write_line`.
    fn via_doc(t: &Transaction, sensor: &str) -> String {
        let mut rec = record(t);
        rec.insert("observer.name", sensor.to_string());
        let mut out = String::new();
        rec.write_json(&mut out);
        out
    }

    fn random_name(rng: &mut Rng) -> String {
        // Now and then a byte the JSON escaper must handle, or a non-ASCII character.
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._\"\\\n\t\x01\x1f\x7f";
        let n = rng.below(30);
        let mut s = rng.text(ALPHABET, n);
        if rng.below(8) == 0 {
            s.push_str("é≥😀");
        }
        s
    }

    fn random_message(rng: &mut Rng, response: bool) -> DnsMessage {
        let types = [1u16, 28, 5, 15, 16, 2, 12, 10, 65, 255, 65280, 999];
        let mut m = DnsMessage {
            id: rng.next() as u16,
            response,
            rcode: [0u16, 3, 2, 5, 23, 4095][rng.below(6)],
            authoritative: rng.below(2) == 0,
            truncated: rng.below(4) == 0,
            recursion_desired: rng.below(2) == 0,
            recursion_available: rng.below(2) == 0,
            ..Default::default()
        };
        for _ in 0..[0, 1, 1, 1, 2][rng.below(5)] {
            let qclass = [1u16, 3, 4, 254, 255, 0x8001, 7][rng.below(7)];
            m.questions.push(Question {
                name: random_name(rng),
                qtype: types[rng.below(types.len())],
                qclass,
            });
        }
        if response {
            for _ in 0..rng.below(6) {
                let data = match rng.below(7) {
                    0 | 1 => RData::A(std::net::Ipv4Addr::from(rng.next() as u32)),
                    2 => RData::Aaaa(std::net::Ipv6Addr::from(u128::from(rng.next()) << (rng.below(4) * 32))),
                    3 => RData::Name(random_name(rng)),
                    4 => RData::Mx { preference: rng.next() as u16, exchange: random_name(rng) },
                    5 => RData::Txt((0..rng.below(4)).map(|_| random_name(rng)).collect()),
                    _ => RData::Other,
                };
                m.answers.push(Record {
                    name: random_name(rng),
                    rtype: types[rng.below(types.len())],
                    class: 1,
                    ttl: rng.next() as u32 >> rng.below(32),
                    rdlen: 0,
                    data,
                });
            }
        }
        m
    }

    /// `write_line` writes exactly what `record` wrote through a `Doc`, for transactions of
    /// every shape: query only, response only, both, without a question, with answers of
    /// every kind, names and sensors that need escaping.
    #[test]
    fn write_line_writes_what_the_record_writes() {
        let mut rng = Rng(0xd15_10c);
        let sensors = ["vm", "sensor \"quoted\" \\ back\nslash\u{1}", "séñsor ≥ 😀", ""];
        for i in 0..20_000 {
            let ts = rng.next() >> rng.below(64);
            let client: std::net::IpAddr = if rng.below(4) == 0 {
                std::net::Ipv6Addr::from(u128::from(rng.next())).into()
            } else {
                std::net::Ipv4Addr::from(rng.next() as u32).into()
            };
            let shape = rng.below(3);
            let query = (shape != 1).then(|| Seen { ts, seq: 0, msg: random_message(&mut rng, false) });
            let rtt = rng.next() >> rng.below(64);
            let response = (shape != 0).then(|| Seen {
                ts: if rng.below(8) == 0 { ts / 2 } else { ts.saturating_add(rtt) },
                seq: 1,
                msg: random_message(&mut rng, true),
            });
            let t = Transaction {
                key: TxnKey {
                    client,
                    client_port: rng.next() as u16,
                    server: std::net::Ipv4Addr::from(rng.next() as u32).into(),
                    server_port: 53,
                    transport: if rng.below(2) == 0 { Transport::Udp } else { Transport::Tcp },
                    id: rng.next() as u16,
                },
                query,
                response,
            };
            let sensor = sensors[i % sensors.len()];
            let mut line = String::from("left as is");
            write_line(&t, sensor, &mut line);
            assert_eq!(line.strip_prefix("left as is"), Some(via_doc(&t, sensor).as_str()), "{t:?}");
        }
    }

    #[test]
    fn answered_transaction_has_the_ecs_fields() {
        let q = DnsMessage {
            id: 7,
            recursion_desired: true,
            questions: vec![Question { name: "c2.example".into(), qtype: 1, qclass: 1 }],
            ..Default::default()
        };
        let mut r = q.clone();
        r.response = true;
        r.recursion_available = true;
        r.answers.push(Record {
            name: "c2.example".into(),
            rtype: 1,
            class: 1,
            ttl: 300,
            rdlen: 4,
            data: RData::A("198.51.100.7".parse().unwrap()),
        });
        let t = Transaction {
            key: TxnKey {
                client: "10.0.0.5".parse().unwrap(),
                client_port: 40000,
                server: "10.0.0.53".parse().unwrap(),
                server_port: 53,
                transport: Transport::Udp,
                id: 7,
            },
            query: Some(Seen { ts: 1_000_000_000, seq: 0, msg: q }),
            response: Some(Seen { ts: 1_002_500_000, seq: 1, msg: r }),
        };
        crate::output::doc::assert_writes_as_a_map(&record(&t));
        let v = Value::Object(record(&t).to_map());
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:01.000000Z");
        assert_eq!(v["source.ip"], "10.0.0.5");
        assert_eq!(v["destination.port"], 53);
        assert_eq!(v["network.transport"], "udp");
        assert_eq!(v["dns.type"], "answer");
        assert_eq!(v["dns.question.name"], "c2.example");
        assert_eq!(v["dns.question.type"], "A");
        assert_eq!(v["dns.response_code"], "NOERROR");
        assert_eq!(v["dns.header_flags"], json!(["RD", "RA"]));
        assert_eq!(
            v["dns.answers"][0],
            json!({"name": "c2.example", "type": "A", "ttl": 300, "data": "198.51.100.7"})
        );
        assert_eq!(v["dns.resolved_ip"], json!(["198.51.100.7"]));
        assert_eq!(v["portent.rtt_ms"], 2.5);
    }
}
