//! A DNS transaction as one NDJSON record.

use crate::dns::txn::Transaction;
use crate::dns::{rcode_name, rtype_name, DnsMessage, RData};
use crate::output::doc::{Doc, Field};
use std::borrow::Cow;

/// The record for one transaction. Its time is the query's, or the response's when the
/// query was not seen, as in Zeek's dns.log.
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
    use serde_json::{json, Value};

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
