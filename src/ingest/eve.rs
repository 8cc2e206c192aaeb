//! Suricata eve.json: `dns` events in the v1 form (one event per query and per answer RR,
//! `type` query/answer with top-level `rrname`/`rrtype`/`rdata`/`ttl`), the v2 form (one
//! answer event per response with an `answers` array and/or `grouped`), and the Suricata 8
//! form (`request`/`response` with `queries`); `flow` and `netflow` events for SYNs.
//!
//! v1 answer events of one response are written back to back with the same flow and id;
//! they are gathered into one response message, whose question comes from the query event
//! seen on that flow and id (a bounded table), else from the first answer's owner.

use super::wire::{self, Answer, Data, Message, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_TXT};
use super::{parse_ip, parse_iso, Event, Line, LineError};
use crate::pipeline::Flow;
use crate::Nanos;
use serde_json::Value;
use std::collections::HashMap;

/// Queries remembered to name the question of v1 responses. A query's answers follow within
/// the resolver's timeout, so a few thousand outstanding cover a busy link; when full the
/// table is emptied (counted) and a later v1 response takes its owner name as question.
const MAX_PENDING_QUERIES: usize = 16_384;
/// RRs gathered into one v1 response, as for a Zeek record.
const MAX_GROUP_ANSWERS: usize = 512;

type QueryKey = (u64, u16);

/// v1 answer events gathered so far for one response.
#[derive(Debug)]
struct Group {
    key: (Option<u64>, Flow, u16, Nanos),
    ts: Nanos,
    flow: Flow,
    msg: Message,
}

#[derive(Debug, Default)]
pub struct EveState {
    queries: HashMap<QueryKey, (String, u16)>,
    group: Option<Group>,
    /// Times the query table was full and emptied.
    pub evicted: u64,
}

fn eve_flow(v: &Value) -> Result<Flow, LineError> {
    let ip =
        |f: &str| v.get(f).and_then(Value::as_str).and_then(parse_ip).ok_or("bad or missing src_ip/dest_ip");
    let port = |f: &str| {
        v.get(f).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).ok_or("bad or missing port")
    };
    Ok(Flow { src: ip("src_ip")?, sport: port("src_port")?, dst: ip("dest_ip")?, dport: port("dest_port")? })
}

fn str_field<'a>(v: &'a Value, f: &str) -> Option<&'a str> {
    v.get(f).and_then(Value::as_str)
}

/// Header bits from `flags` (hex text, e.g. "8180") or else the separate booleans.
fn set_flags(d: &Value, m: &mut Message) {
    if let Some(f) = str_field(d, "flags").and_then(|h| u16::from_str_radix(h, 16).ok()) {
        m.aa = f & 0x0400 != 0;
        m.tc = f & 0x0200 != 0;
        m.rd = f & 0x0100 != 0;
        m.ra = f & 0x0080 != 0;
        return;
    }
    let b = |k: &str| d.get(k).and_then(Value::as_bool).unwrap_or(false);
    m.aa = b("aa");
    m.tc = b("tc");
    m.rd = b("rd");
    m.ra = b("ra");
}

fn rtype_of(v: &Value) -> Result<u16, LineError> {
    match v.get("rrtype") {
        None | Some(Value::Null) => Ok(TYPE_A),
        Some(Value::String(s)) => wire::rtype_from_name(s).ok_or("unknown rrtype"),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or("unknown rrtype"),
        Some(_) => Err("unknown rrtype"),
    }
}

/// One answer object ({rrname, rrtype, ttl, rdata}) → a record.
fn answer(a: &Value) -> Result<Answer, LineError> {
    let rtype = rtype_of(a)?;
    let name = str_field(a, "rrname").unwrap_or(".").to_string();
    let ttl = a.get("ttl").and_then(Value::as_u64).map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX));
    let rdata = str_field(a, "rdata");
    Ok(Answer { name, rtype, ttl, data: rdata_of(rtype, rdata)? })
}

fn rdata_of(rtype: u16, rdata: Option<&str>) -> Result<Data, LineError> {
    let Some(r) = rdata else {
        // SOA, SRV, SSHFP... come as objects in newer Suricata; no detector reads them.
        return Ok(Data::Raw(Vec::new()));
    };
    Ok(match rtype {
        TYPE_A => Data::A(r.parse().map_err(|_| "bad A rdata")?),
        TYPE_AAAA => Data::Aaaa(r.parse().map_err(|_| "bad AAAA rdata")?),
        TYPE_TXT => Data::Txt(vec![r.to_string()]),
        t if wire::holds_name(t) => Data::Name(r.to_string()),
        _ => Data::Raw(wire::unescape(r)),
    })
}

/// The question of a v2/v3 event: top-level rrname/rrtype, or the first of `queries`.
fn question(d: &Value) -> Result<Option<(String, u16)>, LineError> {
    if let Some(n) = str_field(d, "rrname") {
        return Ok(Some((n.to_string(), rtype_of(d)?)));
    }
    if let Some(q) = d.get("queries").and_then(Value::as_array).and_then(|q| q.first()) {
        if let Some(n) = str_field(q, "rrname") {
            return Ok(Some((n.to_string(), rtype_of(q)?)));
        }
    }
    Ok(None)
}

fn rcode_of(d: &Value) -> Result<u16, LineError> {
    match d.get("rcode") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => wire::rcode_from_name(s).ok_or("unknown rcode"),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or("unknown rcode"),
        Some(_) => Err("unknown rcode"),
    }
}

fn id_of(d: &Value) -> Result<u16, LineError> {
    d.get("id").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()).ok_or("bad or missing dns.id")
}

impl EveState {
    pub fn line(&mut self, raw: &[u8], out: &mut Vec<Event>) -> Result<Line, LineError> {
        let t = raw.trim_ascii();
        if t.is_empty() {
            return Ok(Line::Header);
        }
        let v: Value = match serde_json::from_slice(t) {
            Ok(v) => v,
            Err(_) => {
                self.flush(out);
                return Err("not valid JSON");
            }
        };
        let et = match v.get("event_type").and_then(Value::as_str) {
            Some(e) => e,
            None => {
                self.flush(out);
                return Err("no event_type");
            }
        };
        let d = v.get("dns");
        let v1_answer = et == "dns"
            && d.is_some_and(|d| {
                str_field(d, "type") == Some("answer")
                    && d.get("version").is_none()
                    && d.get("answers").is_none()
            });
        if !v1_answer {
            self.flush(out);
        }
        match et {
            "dns" => self.dns(&v, d.ok_or("dns event without a dns object")?, v1_answer, out),
            "flow" | "netflow" => flow_event(&v, et, out),
            _ => Ok(Line::Skipped),
        }
    }

    /// End of file: the last v1 group.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.flush(out);
    }

    fn dns(
        &mut self,
        v: &Value,
        d: &Value,
        v1_answer: bool,
        out: &mut Vec<Event>,
    ) -> Result<Line, LineError> {
        let ts = str_field(v, "timestamp").and_then(parse_iso).ok_or("bad or missing timestamp")?;
        let flow = eve_flow(v)?;
        let flow_id = v.get("flow_id").and_then(Value::as_u64);
        let ty = str_field(d, "type").ok_or("dns event without a type")?;
        if super::not_unicast_dns(&flow) {
            return Ok(Line::Record);
        }
        match ty {
            "query" | "request" => {
                let id = id_of(d)?;
                let (qname, qtype) = question(d)?.ok_or("query without rrname")?;
                let mut m = Message {
                    id,
                    qname: Some(qname.clone()),
                    qtype,
                    qclass: 1,
                    rd: true,
                    ..Message::default()
                };
                if d.get("flags").is_some() || d.get("rd").is_some() {
                    set_flags(d, &mut m);
                }
                let w = wire::encode(&m).map_err(|e| e.reason())?;
                if let Some(fid) = flow_id {
                    if self.queries.len() >= MAX_PENDING_QUERIES {
                        self.queries.clear();
                        self.evicted += 1;
                    }
                    self.queries.insert((fid, id), (qname, qtype));
                }
                out.push(Event::Dns { ts, flow, wire: w });
                Ok(Line::Record)
            }
            "answer" | "response" if v1_answer => {
                let id = id_of(d)?;
                let key = (flow_id, flow, id, ts);
                if self.group.as_ref().is_some_and(|g| g.key != key) {
                    self.flush(out);
                }
                let rcode = rcode_of(d)?;
                let rr = if d.get("rdata").is_some() || d.get("rrtype").is_some() {
                    Some(answer(d)?)
                } else {
                    None
                };
                let g = self.group.get_or_insert_with(|| {
                    let mut msg = Message { id, response: true, rcode, qclass: 1, ..Message::default() };
                    set_flags(d, &mut msg);
                    Group { key, ts, flow, msg }
                });
                if g.msg.qname.is_none() {
                    let q = flow_id.and_then(|f| self.queries.remove(&(f, id)));
                    let (n, t) = match q {
                        Some(q) => q,
                        None => (
                            str_field(d, "rrname").unwrap_or(".").to_string(),
                            rr.as_ref().map_or(TYPE_A, |a| a.rtype),
                        ),
                    };
                    g.msg.qname = Some(n);
                    g.msg.qtype = t;
                }
                if let Some(a) = rr {
                    if g.msg.answers.len() < MAX_GROUP_ANSWERS {
                        g.msg.answers.push(a);
                    }
                }
                Ok(Line::Record)
            }
            "answer" | "response" => {
                let id = id_of(d)?;
                let (qname, qtype) = match question(d)? {
                    Some(q) => q,
                    None => {
                        flow_id.and_then(|f| self.queries.remove(&(f, id))).ok_or("answer without rrname")?
                    }
                };
                if let Some(f) = flow_id {
                    self.queries.remove(&(f, id));
                }
                let mut m = Message {
                    id,
                    response: true,
                    rcode: rcode_of(d)?,
                    qname: Some(qname.clone()),
                    qtype,
                    qclass: 1,
                    ..Message::default()
                };
                set_flags(d, &mut m);
                if let Some(list) = d.get("answers").and_then(Value::as_array) {
                    for a in list.iter().take(MAX_GROUP_ANSWERS) {
                        m.answers.push(answer(a)?);
                    }
                } else if let Some(g) = d.get("grouped").and_then(Value::as_object) {
                    // No owners or TTLs here: the question name owns them all.
                    for (t, vals) in g {
                        let rtype = wire::rtype_from_name(t).ok_or("unknown rrtype")?;
                        for r in vals.as_array().into_iter().flatten().take(MAX_GROUP_ANSWERS) {
                            let data = rdata_of(rtype, r.as_str())?;
                            m.answers.push(Answer { name: qname.clone(), rtype, ttl: 0, data });
                        }
                    }
                    // CNAMEs first, as a server orders a chain.
                    m.answers.sort_by_key(|a| a.rtype != TYPE_CNAME);
                }
                let w = wire::encode(&m).map_err(|e| e.reason())?;
                out.push(Event::Dns { ts, flow, wire: w });
                Ok(Line::Record)
            }
            _ => Err("dns event of an unknown type"),
        }
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        if let Some(g) = self.group.take() {
            // Encoding errors here have no line to blame; the group is dropped.
            if let Ok(w) = wire::encode(&g.msg) {
                out.push(Event::Dns { ts: g.ts, flow: g.flow, wire: w });
            }
        }
    }
}

/// A TCP flow whose originator sent a SYN: the flow's start is the SYN's time.
fn flow_event(v: &Value, et: &str, out: &mut Vec<Event>) -> Result<Line, LineError> {
    if !str_field(v, "proto").is_some_and(|p| p.eq_ignore_ascii_case("tcp")) {
        return Ok(Line::Record);
    }
    let flow = eve_flow(v)?;
    let tcp = v.get("tcp");
    let syn = tcp.is_some_and(|t| {
        t.get("syn").and_then(Value::as_bool) == Some(true)
            || str_field(t, "tcp_flags")
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|f| f & 0x02 != 0)
    });
    if !syn {
        return Ok(Line::Record);
    }
    let start = v.get(et).and_then(|f| str_field(f, "start")).or_else(|| str_field(v, "timestamp"));
    let ts = start.and_then(parse_iso).ok_or("bad or missing flow start")?;
    out.push(Event::Syn { ts, flow });
    Ok(Line::Record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{parse_message, RData};

    fn run(lines: &[&str]) -> (Vec<Result<Line, LineError>>, Vec<Event>) {
        let mut st = EveState::default();
        let mut out = Vec::new();
        let r = lines.iter().map(|l| st.line(l.as_bytes(), &mut out)).collect();
        st.finish(&mut out);
        (r, out)
    }

    fn wire_of(e: &Event) -> crate::dns::DnsMessage {
        match e {
            Event::Dns { wire, .. } => parse_message(wire).unwrap(),
            Event::Syn { .. } => panic!("SYN"),
        }
    }

    // suricata/beats-suricata-4.1.4.eve-dns.json lines 1 and 4 (elastic/beats), a v2 pair.
    const Q: &str = r#"{"timestamp":"2019-08-22T23:48:27.924120+0000","flow_id":885455453886936,"in_iface":"enp0s3","event_type":"dns","src_ip":"10.0.2.15","src_port":46686,"dest_ip":"10.0.2.3","dest_port":53,"proto":"UDP","dns":{"type":"query","id":51803,"rrname":"google.com","rrtype":"A","tx_id":0}}"#;
    const A2: &str = r#"{"timestamp":"2019-08-22T23:48:27.957906+0000","flow_id":885455453886936,"in_iface":"enp0s3","event_type":"dns","src_ip":"10.0.2.3","src_port":53,"dest_ip":"10.0.2.15","dest_port":46686,"proto":"UDP","dns":{"version":2,"type":"answer","id":51803,"flags":"8180","qr":true,"rd":true,"ra":true,"rcode":"NOERROR","rrname":"google.com","rrtype":"A","answers":[{"rrname":"google.com","rrtype":"A","ttl":299,"rdata":"172.217.11.46"}],"grouped":{"A":["172.217.11.46"]}}}"#;

    #[test]
    fn v2_query_and_answer() {
        let (r, out) = run(&[Q, A2]);
        assert_eq!(r, [Ok(Line::Record), Ok(Line::Record)]);
        assert_eq!(out.len(), 2);
        let q = wire_of(&out[0]);
        assert!(!q.response);
        assert_eq!((q.id, q.questions[0].name.as_str(), q.questions[0].qtype), (51803, "google.com", 1));
        let a = wire_of(&out[1]);
        assert!(a.response && a.recursion_desired && a.recursion_available);
        assert_eq!(a.answers[0].data, RData::A([172, 217, 11, 46].into()));
        assert_eq!(a.answers[0].ttl, 299);
        assert_eq!(out[1].ts(), 1_566_517_707_957_906_000);
    }

    #[test]
    fn v1_answers_are_gathered_into_one_response_with_the_query_question() {
        // suricata/beats-suricata-4.1.4.eve-dns.json lines 11-13 (v1 per-RR answers), with a
        // query on the same flow.
        let q = r#"{"timestamp":"2019-08-23T01:22:31.800000+0000","flow_id":814378410010223,"event_type":"dns","src_ip":"10.0.2.15","src_port":44773,"dest_ip":"10.0.2.3","dest_port":53,"proto":"UDP","dns":{"type":"query","id":28329,"rrname":"www.yahoo.com","rrtype":"A","tx_id":0}}"#;
        let a = |owner: &str, t: &str, ttl: u32, rdata: &str| {
            format!(
                r#"{{"timestamp":"2019-08-23T01:22:31.846575+0000","flow_id":814378410010223,"event_type":"dns","src_ip":"10.0.2.3","src_port":53,"dest_ip":"10.0.2.15","dest_port":44773,"proto":"UDP","dns":{{"type":"answer","id":28329,"flags":"8180","qr":true,"rd":true,"ra":true,"rcode":"NOERROR","rrname":"{owner}","rrtype":"{t}","ttl":{ttl},"rdata":"{rdata}"}}}}"#
            )
        };
        let l1 = a("www.yahoo.com", "CNAME", 1315, "atsv2-fp-shed.wg1.b.yahoo.com");
        let l2 = a("atsv2-fp-shed.wg1.b.yahoo.com", "A", 15, "98.138.219.232");
        let l3 = a("atsv2-fp-shed.wg1.b.yahoo.com", "A", 15, "98.138.219.231");
        let stats = r#"{"timestamp":"2019-08-23T01:22:32.000000+0000","event_type":"stats","stats":{}}"#;
        let (r, out) = run(&[q, &l1, &l2, &l3, stats]);
        assert_eq!(r[..4], [Ok(Line::Record); 4]);
        assert_eq!(r[4], Ok(Line::Skipped));
        assert_eq!(out.len(), 2);
        let m = wire_of(&out[1]);
        assert_eq!(m.questions[0].name, "www.yahoo.com");
        assert_eq!(m.questions[0].qtype, 1);
        assert_eq!(m.answers.len(), 3);
        assert_eq!(m.answers[0].data, RData::Name("atsv2-fp-shed.wg1.b.yahoo.com".into()));
        assert_eq!(m.answers[2].data, RData::A([98, 138, 219, 231].into()));
    }

    #[test]
    fn grouped_only_answers_and_flow_syns() {
        let g = r#"{"timestamp":"2024-01-01T00:00:01Z","flow_id":1,"event_type":"dns","src_ip":"10.0.0.53","src_port":53,"dest_ip":"10.0.0.1","dest_port":4000,"dns":{"version":2,"type":"answer","id":9,"rcode":"NXDOMAIN","rrname":"x.example","rrtype":"A","grouped":{"A":["192.0.2.1"],"CNAME":["y.example"]}}}"#;
        let f = r#"{"timestamp":"2024-01-01T00:00:09Z","flow_id":2,"event_type":"flow","src_ip":"10.0.0.1","src_port":40000,"dest_ip":"192.0.2.1","dest_port":443,"proto":"TCP","flow":{"start":"2024-01-01T00:00:02.500000+0000","end":"2024-01-01T00:00:09Z"},"tcp":{"tcp_flags":"1b","syn":true}}"#;
        let no_syn = r#"{"timestamp":"2024-01-01T00:00:09Z","event_type":"flow","src_ip":"10.0.0.1","src_port":40001,"dest_ip":"192.0.2.1","dest_port":443,"proto":"TCP","flow":{"start":"2024-01-01T00:00:03Z"},"tcp":{"tcp_flags":"18"}}"#;
        let (r, out) = run(&[g, f, no_syn, "not json", r#"{"dns":{}}"#]);
        assert_eq!(
            r,
            [
                Ok(Line::Record),
                Ok(Line::Record),
                Ok(Line::Record),
                Err("not valid JSON"),
                Err("no event_type")
            ]
        );
        let m = wire_of(&out[0]);
        assert_eq!(m.rcode, 3);
        assert_eq!(m.answers[0].rtype, 5);
        assert_eq!(m.answers[1].data, RData::A([192, 0, 2, 1].into()));
        assert_eq!(
            out[1],
            Event::Syn {
                ts: 1_704_067_202_500_000_000,
                flow: Flow {
                    src: "10.0.0.1".parse().unwrap(),
                    sport: 40000,
                    dst: "192.0.2.1".parse().unwrap(),
                    dport: 443
                }
            }
        );
        assert_eq!(out.len(), 2);
    }
}
