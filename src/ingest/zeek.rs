//! Zeek dns.log and conn.log, in the ASCII (TSV) form with its `#` header and in the JSON
//! form (`LogAscii::use_json`, or corelight json-streaming-logs with `_path` and ISO times).
//!
//! A dns.log line is a whole transaction: the query (when Zeek saw it: `qtype` set) becomes a
//! query message at `ts`, and the response (when `rcode` is set or there are answers) a
//! response message the other way at `ts + rtt`. A conn.log line whose `history` starts with
//! `S` (the originator's SYN) is a SYN at `ts`, the connection's first packet.

use super::wire::{self, Answer, Data, Message, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_TXT};
use super::{parse_epoch, parse_ip, parse_iso, secs_f64, Event, Kind, Line, LineError};
use crate::pipeline::Flow;
use crate::Nanos;
use serde_json::Value;

/// Answers rendered per response: Zeek logs them all, but a DNS message holds what fits in
/// 64 KiB anyway and the cache keeps few per name.
const MAX_ANSWERS: usize = 512;

/// One dns.log record, whatever the form it came in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsRecord {
    pub ts: Nanos,
    pub flow: Option<Flow>,
    pub trans_id: Option<u16>,
    pub rtt: Option<Nanos>,
    pub query: Option<String>,
    pub qclass: Option<u16>,
    pub qtype: Option<u16>,
    pub rcode: Option<u16>,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub answers: Vec<String>,
    /// Seconds.
    pub ttls: Vec<u32>,
}

/// One conn.log record.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub ts: Nanos,
    pub flow: Flow,
    pub tcp: bool,
    pub history: Option<String>,
}

/// Columns a dns.log must have to be read as one.
const DNS_REQUIRED: [&str; 6] = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "query"];
/// Columns a conn.log must have.
const CONN_REQUIRED: [&str; 7] =
    ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "history"];

fn path_name(kind: Kind) -> &'static str {
    match kind {
        Kind::ZeekConn => "conn",
        _ => "dns",
    }
}

/// Which kind a set of columns describes, if any.
fn kind_of_fields(has: impl Fn(&str) -> bool) -> Option<Kind> {
    if DNS_REQUIRED.iter().all(|f| has(f)) {
        Some(Kind::ZeekDns)
    } else if CONN_REQUIRED.iter().all(|f| has(f)) {
        Some(Kind::ZeekConn)
    } else {
        None
    }
}

/// Field slots looked up once per `#fields` line.
#[derive(Clone, Debug, Default)]
struct Cols {
    ts: Option<usize>,
    orig_h: Option<usize>,
    orig_p: Option<usize>,
    resp_h: Option<usize>,
    resp_p: Option<usize>,
    proto: Option<usize>,
    trans_id: Option<usize>,
    rtt: Option<usize>,
    query: Option<usize>,
    qclass: Option<usize>,
    qtype: Option<usize>,
    rcode: Option<usize>,
    aa: Option<usize>,
    tc: Option<usize>,
    rd: Option<usize>,
    ra: Option<usize>,
    answers: Option<usize>,
    ttls: Option<usize>,
    history: Option<usize>,
}

impl Cols {
    fn new(fields: &[String]) -> Cols {
        let at = |n: &str| fields.iter().position(|f| f == n);
        Cols {
            ts: at("ts"),
            orig_h: at("id.orig_h"),
            orig_p: at("id.orig_p"),
            resp_h: at("id.resp_h"),
            resp_p: at("id.resp_p"),
            proto: at("proto"),
            trans_id: at("trans_id"),
            rtt: at("rtt"),
            query: at("query"),
            qclass: at("qclass"),
            qtype: at("qtype"),
            rcode: at("rcode"),
            aa: at("AA"),
            tc: at("TC"),
            rd: at("RD"),
            ra: at("RA"),
            answers: at("answers"),
            ttls: at("TTLs"),
            history: at("history"),
        }
    }
}

/// The TSV reader's state: the header seen so far. A file can carry several header blocks
/// (logs concatenated, or rotated in place); each `#fields` line resets the columns.
#[derive(Clone, Debug)]
pub struct TsvState {
    kind: Kind,
    sep: String,
    set_sep: String,
    empty: String,
    unset: String,
    path: Option<String>,
    fields: Vec<String>,
    cols: Cols,
    /// The current `#fields` has what `kind` needs.
    usable: bool,
}

impl TsvState {
    fn new(kind: Kind) -> TsvState {
        TsvState {
            kind,
            sep: "\t".into(),
            set_sep: ",".into(),
            empty: "(empty)".into(),
            unset: "-".into(),
            path: None,
            fields: Vec::new(),
            cols: Cols::default(),
            usable: false,
        }
    }

    /// Builds the state from the header lines at the top of a file, and checks that they
    /// describe the log asked for.
    pub fn from_headers(lines: &[&[u8]], kind: Kind) -> Result<TsvState, String> {
        let mut st = TsvState::new(kind);
        for l in lines {
            let text =
                std::str::from_utf8(l).map_err(|_| "a '#' header line that is not text".to_string())?;
            st.header(text);
        }
        st.check()?;
        Ok(st)
    }

    pub fn path_label(&self) -> &str {
        self.path.as_deref().unwrap_or(path_name(self.kind))
    }

    fn check(&self) -> Result<(), String> {
        let want = path_name(self.kind);
        if let Some(p) = &self.path {
            if p != want {
                return Err(format!("a Zeek {p} log (#path {p}), not a {want} log"));
            }
        }
        if self.fields.is_empty() {
            return Err("a '#' header without a #fields line: not a Zeek log".into());
        }
        match kind_of_fields(|f| self.fields.iter().any(|x| x == f)) {
            Some(k) if k == self.kind => Ok(()),
            Some(k) => Err(format!("its #fields are those of a Zeek {} log, not a {want} log", path_name(k))),
            None => Err(format!(
                "its #fields lack what a Zeek {want} log has ({})",
                required(self.kind).join(", ")
            )),
        }
    }

    fn header(&mut self, line: &str) {
        if let Some(v) = line.strip_prefix("#separator ") {
            let raw = wire::unescape(v.trim());
            self.sep = String::from_utf8_lossy(&raw).into_owned();
            if self.sep.is_empty() {
                self.sep = "\t".into();
            }
            return;
        }
        let mut parts = line.split(self.sep.as_str());
        let name = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let first = rest.first().map(|s| s.to_string()).unwrap_or_default();
        match name {
            "#set_separator" => self.set_sep = first,
            "#empty_field" => self.empty = first,
            "#unset_field" => self.unset = first,
            "#path" => self.path = Some(first),
            "#fields" => {
                self.fields = rest.iter().map(|s| s.to_string()).collect();
                self.cols = Cols::new(&self.fields);
                self.usable = self.check().is_ok();
            }
            _ => {}
        }
    }

    /// Handles one line: a header updates the state, a data line becomes events.
    pub fn line(&mut self, raw: &[u8], out: &mut Vec<Event>) -> Result<Line, LineError> {
        let line = std::str::from_utf8(raw).map_err(|_| "not UTF-8 text")?;
        if line.starts_with('#') {
            self.header(line);
            return Ok(Line::Header);
        }
        if line.trim().is_empty() {
            return Ok(Line::Header);
        }
        if !self.usable {
            return Err("data line under a #fields header of another kind");
        }
        let parts: Vec<&str> = line.split(self.sep.as_str()).collect();
        if parts.len() != self.fields.len() {
            return Err("wrong number of fields for #fields");
        }
        let get = |c: Option<usize>| -> Option<&str> {
            let v = *parts.get(c?)?;
            (v != self.unset).then_some(v)
        };
        let ts = parse_epoch(get(self.cols.ts).ok_or("ts unset")?).ok_or("bad ts")?;
        let flow = tsv_flow(&get, &self.cols)?;
        match self.kind {
            Kind::ZeekConn => {
                let rec = ConnRecord {
                    ts,
                    flow,
                    tcp: get(self.cols.proto) == Some("tcp"),
                    history: get(self.cols.history).map(str::to_string),
                };
                conn_events(&rec, out);
            }
            _ => {
                let set = |c: Option<usize>| -> Vec<&str> {
                    match get(c) {
                        None => Vec::new(),
                        Some(v) if v == self.empty => Vec::new(),
                        Some(v) => v.split(self.set_sep.as_str()).collect(),
                    }
                };
                let num = |c: Option<usize>| -> Result<Option<u16>, LineError> {
                    get(c).map(|v| v.parse::<u16>().map_err(|_| "bad number")).transpose()
                };
                let flag = |c: Option<usize>| get(c) == Some("T");
                let rec = DnsRecord {
                    ts,
                    flow: Some(flow),
                    trans_id: num(self.cols.trans_id)?,
                    rtt: get(self.cols.rtt).map(|v| parse_epoch(v).ok_or("bad rtt")).transpose()?,
                    query: get(self.cols.query).filter(|q| *q != self.empty).map(str::to_string),
                    qclass: num(self.cols.qclass)?,
                    qtype: num(self.cols.qtype)?,
                    rcode: num(self.cols.rcode)?,
                    aa: flag(self.cols.aa),
                    tc: flag(self.cols.tc),
                    rd: flag(self.cols.rd),
                    ra: flag(self.cols.ra),
                    answers: set(self.cols.answers).into_iter().map(str::to_string).collect(),
                    ttls: set(self.cols.ttls).into_iter().map(ttl_secs).collect(),
                };
                dns_events(&rec, out)?;
            }
        }
        Ok(Line::Record)
    }
}

fn required(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::ZeekConn => &CONN_REQUIRED,
        _ => &DNS_REQUIRED,
    }
}

fn tsv_flow<'a>(get: &impl Fn(Option<usize>) -> Option<&'a str>, c: &Cols) -> Result<Flow, LineError> {
    let ip = |i| get(i).and_then(parse_ip).ok_or("bad or unset address");
    let port = |i| get(i).and_then(|p: &str| p.parse::<u16>().ok()).ok_or("bad or unset port");
    Ok(Flow { src: ip(c.orig_h)?, sport: port(c.orig_p)?, dst: ip(c.resp_h)?, dport: port(c.resp_p)? })
}

/// A TTL as Zeek writes it ("60.000000", an interval) → whole seconds, clamped.
fn ttl_secs(v: &str) -> u32 {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map_or(0, |f| f.min(f64::from(u32::MAX)) as u32)
}

/// The JSON reader: one object a line.
#[derive(Clone, Debug)]
pub struct JsonState {
    kind: Kind,
}

impl JsonState {
    pub fn empty(kind: Kind) -> JsonState {
        JsonState { kind }
    }

    /// Decides from the first object whether the file is the log asked for.
    pub fn sniff(v: &Value, kind: Kind) -> Result<JsonState, String> {
        let want = path_name(kind);
        if !v.is_object() {
            return Err("the first line is JSON but not an object".into());
        }
        if let Some(p) = v.get("_path").and_then(Value::as_str) {
            if p != want {
                return Err(format!("a Zeek {p} log (_path {p}), not a {want} log"));
            }
            return Ok(JsonState { kind });
        }
        // Without _path, decide by fields; dns records may lack rcode/answers, not these.
        let has = |f: &str| json_get(v, f).is_some();
        let k = if has("query") || has("qtype") || has("trans_id") {
            Some(Kind::ZeekDns)
        } else if has("history") || has("conn_state") {
            Some(Kind::ZeekConn)
        } else {
            None
        };
        match k {
            Some(k) if k == kind => Ok(JsonState { kind }),
            Some(k) => Err(format!("its fields are those of a Zeek {} log, not a {want} log", path_name(k))),
            None if has("ts") && has("id.orig_h") => {
                Err(format!("a Zeek JSON log of another kind, not a {want} log (no {want} fields)"))
            }
            None => Err(format!("JSON without Zeek's ts/id.orig_h fields, not a Zeek {want} log")),
        }
    }

    pub fn path_label(&self) -> &'static str {
        path_name(self.kind)
    }

    pub fn line(&mut self, raw: &[u8], out: &mut Vec<Event>) -> Result<Line, LineError> {
        let t = raw.trim_ascii();
        if t.is_empty() || t.starts_with(b"#") {
            return Ok(Line::Header);
        }
        let v: Value = serde_json::from_slice(t).map_err(|_| "not valid JSON")?;
        if !v.is_object() {
            return Err("JSON but not an object");
        }
        if let Some(p) = v.get("_path").and_then(Value::as_str) {
            if p != path_name(self.kind) {
                return Ok(Line::Skipped);
            }
        }
        let ts = json_ts(json_get(&v, "ts").ok_or("ts missing")?).ok_or("bad ts")?;
        let flow = json_flow(&v)?;
        match self.kind {
            Kind::ZeekConn => {
                let rec = ConnRecord {
                    ts,
                    flow,
                    tcp: json_get(&v, "proto").and_then(Value::as_str) == Some("tcp"),
                    history: json_get(&v, "history").and_then(Value::as_str).map(str::to_string),
                };
                conn_events(&rec, out);
            }
            _ => {
                let num = |f: &str| -> Result<Option<u16>, LineError> {
                    match json_get(&v, f) {
                        None | Some(Value::Null) => Ok(None),
                        Some(x) => {
                            x.as_u64().and_then(|n| u16::try_from(n).ok()).map(Some).ok_or("bad number")
                        }
                    }
                };
                let flag = |f: &str| json_get(&v, f).and_then(Value::as_bool).unwrap_or(false);
                let strings = |f: &str| -> Vec<String> {
                    match json_get(&v, f) {
                        Some(Value::Array(a)) => {
                            a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()
                        }
                        _ => Vec::new(),
                    }
                };
                let ttls = match json_get(&v, "TTLs") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_f64().filter(|f| *f >= 0.0).map_or(0, |f| f.min(f64::from(u32::MAX)) as u32)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let rtt = match json_get(&v, "rtt") {
                    None | Some(Value::Null) => None,
                    Some(x) => Some(x.as_f64().and_then(secs_f64).ok_or("bad rtt")?),
                };
                let rec = DnsRecord {
                    ts,
                    flow: Some(flow),
                    trans_id: num("trans_id")?,
                    rtt,
                    query: json_get(&v, "query").and_then(Value::as_str).map(str::to_string),
                    qclass: num("qclass")?,
                    qtype: num("qtype")?,
                    rcode: num("rcode")?,
                    aa: flag("AA"),
                    tc: flag("TC"),
                    rd: flag("RD"),
                    ra: flag("RA"),
                    answers: strings("answers"),
                    ttls,
                };
                dns_events(&rec, out)?;
            }
        }
        Ok(Line::Record)
    }
}

/// A field by its dotted Zeek name, flat (`"id.orig_h"`) or nested (`"id": {"orig_h"}`).
fn json_get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(name) {
        return Some(x);
    }
    let (a, b) = name.split_once('.')?;
    v.get(a)?.get(b)
}

/// `ts` as an epoch number, an epoch string, or an ISO 8601 string.
pub fn json_ts(v: &Value) -> Option<Nanos> {
    match v {
        // Through the number's own text, so that 1517336042.279652 stays exact.
        Value::Number(n) => parse_epoch(&n.to_string()),
        Value::String(s) => parse_iso(s).or_else(|| parse_epoch(s)),
        _ => None,
    }
}

fn json_flow(v: &Value) -> Result<Flow, LineError> {
    let ip = |f| json_get(v, f).and_then(Value::as_str).and_then(parse_ip).ok_or("bad or missing address");
    let port = |f| {
        json_get(v, f)
            .and_then(|p| p.as_u64().or_else(|| p.as_str().and_then(|s| s.parse().ok())))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("bad or missing port")
    };
    Ok(Flow {
        src: ip("id.orig_h")?,
        sport: port("id.orig_p")?,
        dst: ip("id.resp_h")?,
        dport: port("id.resp_p")?,
    })
}

/// A conn record is a SYN when the originator's SYN was seen first (`history` "S...";
/// lowercase `s` is the responder's, and `^` marks a flipped direction).
pub fn conn_events(r: &ConnRecord, out: &mut Vec<Event>) {
    if r.tcp && r.history.as_deref().is_some_and(|h| h.starts_with('S')) {
        out.push(Event::Syn { ts: r.ts, flow: r.flow });
    }
}

/// DNSSEC and other answers Zeek writes as a summary ("RRSIG 5 cmu.edu", "SSHFP: ab12..."):
/// their RDATA cannot be rebuilt and no detector reads it.
fn summary_answer(a: &str) -> bool {
    let word = a.split([' ', ':']).next().unwrap_or_default();
    a.contains(' ')
        && matches!(
            word,
            "RRSIG" | "NSEC" | "NSEC3" | "NSEC3PARAM" | "DNSKEY" | "DS" | "SSHFP" | "CAA" | "TLSA"
        )
}

/// "TXT 18 302f017537c68f5169 TXT 3 abc" → the strings. The count is the string's length in
/// octets; when escapes make the text longer, the next " TXT " marks the end instead.
fn zeek_txt(a: &str) -> Option<Vec<String>> {
    let mut rest = a.strip_prefix("TXT ")?;
    let mut out = Vec::new();
    loop {
        let (n, tail) = rest.split_once(' ').map_or((rest, ""), |(n, t)| (n, t));
        let Ok(n) = n.parse::<usize>() else {
            out.push(rest.to_string());
            return Some(out);
        };
        let exact =
            tail.get(..n).filter(|_| tail.get(n..).is_some_and(|r| r.is_empty() || r.starts_with(" TXT ")));
        let (s, next) = match exact {
            Some(s) => (s, tail.get(n..).unwrap_or_default()),
            None => match tail.find(" TXT ") {
                Some(i) => (tail.get(..i).unwrap_or_default(), tail.get(i..).unwrap_or_default()),
                None => (tail, ""),
            },
        };
        out.push(s.to_string());
        match next.strip_prefix(" TXT ") {
            Some(r) => rest = r,
            None => return Some(out),
        }
    }
}

/// The question type of a response whose query Zeek did not see, guessed from its answers.
fn guess_qtype(answers: &[String]) -> u16 {
    for a in answers {
        match parse_ip(a) {
            Some(std::net::IpAddr::V4(_)) => return TYPE_A,
            Some(std::net::IpAddr::V6(_)) => return TYPE_AAAA,
            None if a.starts_with("TXT ") => return TYPE_TXT,
            None => {}
        }
    }
    TYPE_A
}

/// Zeek's answer strings → records. Owner names are not logged: the first answer is owned by
/// the query name and each CNAME moves the owner to its target, as a resolver's chain does.
pub fn zeek_answers(r: &DnsRecord, qtype: u16) -> Vec<Answer> {
    let mut owner = r.query.clone().unwrap_or_else(|| ".".into());
    let mut out = Vec::new();
    for (i, a) in r.answers.iter().take(MAX_ANSWERS).enumerate() {
        let ttl = r.ttls.get(i).copied().unwrap_or(0);
        let (rtype, data) = match parse_ip(a) {
            Some(std::net::IpAddr::V4(ip)) => (TYPE_A, Data::A(ip)),
            Some(std::net::IpAddr::V6(ip)) => (TYPE_AAAA, Data::Aaaa(ip)),
            None => {
                if let Some(parts) = zeek_txt(a) {
                    (TYPE_TXT, Data::Txt(parts))
                } else if summary_answer(a) {
                    continue;
                } else if qtype == TYPE_TXT {
                    // Older Zeek wrote TXT answers bare; a name here would be a CNAME, but
                    // the text is what the tunnel detector measures.
                    if looks_like_name(a) {
                        (TYPE_CNAME, Data::Name(a.clone()))
                    } else {
                        (TYPE_TXT, Data::Txt(vec![a.clone()]))
                    }
                } else if looks_like_name(a) {
                    if wire::holds_name(qtype) {
                        (qtype, Data::Name(a.clone()))
                    } else {
                        (TYPE_CNAME, Data::Name(a.clone()))
                    }
                } else {
                    (qtype, Data::Raw(wire::unescape(a)))
                }
            }
        };
        let next_owner = match (&data, rtype) {
            (Data::Name(t), TYPE_CNAME) => Some(t.clone()),
            _ => None,
        };
        out.push(Answer { name: owner.clone(), rtype, ttl, data });
        if let Some(t) = next_owner {
            owner = t;
        }
    }
    out
}

fn looks_like_name(a: &str) -> bool {
    !a.is_empty() && !a.contains(' ') && a.len() <= 1024
}

/// A dns.log record → its query and response messages.
pub fn dns_events(r: &DnsRecord, out: &mut Vec<Event>) -> Result<(), LineError> {
    let Some(flow) = r.flow else {
        return Err("bad or missing address");
    };
    if super::not_unicast_dns(&flow) {
        return Ok(());
    }
    let has_response = r.rcode.is_some() || !r.answers.is_empty();
    let qtype = r.qtype.unwrap_or_else(|| guess_qtype(&r.answers));
    let base = Message {
        id: r.trans_id.unwrap_or(0),
        rd: r.rd,
        qname: r.query.clone(),
        qtype,
        qclass: r.qclass.unwrap_or(1),
        ..Message::default()
    };
    // Zeek fills qtype from the query; a record with only a response leaves it unset.
    if r.qtype.is_some() || !has_response {
        let w = wire::encode(&base).map_err(|e| e.reason())?;
        out.push(Event::Dns { ts: r.ts, flow, wire: w });
    }
    if has_response {
        let m = Message {
            response: true,
            rcode: r.rcode.unwrap_or(0),
            aa: r.aa,
            tc: r.tc,
            ra: r.ra,
            answers: zeek_answers(r, qtype),
            ..base
        };
        let w = wire::encode(&m).map_err(|e| e.reason())?;
        let ts = r.ts.saturating_add(r.rtt.unwrap_or(0));
        let back = Flow { src: flow.dst, sport: flow.dport, dst: flow.src, dport: flow.sport };
        out.push(Event::Dns { ts, flow: back, wire: w });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{parse_message, RData};

    /// The top of zeek-real/rita-dnscat2.dns.log (activecm/rita test_data, GPL-3.0).
    const RITA_HEAD: &str = "#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tdns
#open\t2019-02-28-12-07-01
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval\tstring\tcount\tstring\tcount\tstring\tcount\tstring\tbool\tbool\tbool\tbool\tcount\tvector[string]\tvector[interval]\tbool";
    const RITA_LINE: &str = "1517336042.279652\tCVvreZ2AGtqjnP3nnl\t192.168.88.2\t55638\t165.227.88.15\t53\tudp\t42937\t0.069982\t6dde0175375169c68f.dnsc.r-1x.com\t1\tC_INTERNET\t16\tTXT\t0\tNOERROR\tF\tF\tT\tT\t0\tTXT 18 302f017537c68f5169\t60.000000\tT";

    fn tsv(kind: Kind, head: &str) -> Result<TsvState, String> {
        let lines: Vec<&[u8]> = head.lines().map(str::as_bytes).collect();
        TsvState::from_headers(&lines, kind)
    }

    fn msgs(out: &[Event]) -> Vec<(Nanos, Flow, crate::dns::DnsMessage)> {
        out.iter()
            .map(|e| match e {
                Event::Dns { ts, flow, wire } => (*ts, *flow, parse_message(wire).unwrap()),
                Event::Syn { .. } => panic!("a SYN from dns.log"),
            })
            .collect()
    }

    #[test]
    fn rita_dnscat2_line_becomes_query_and_txt_response() {
        let mut st = tsv(Kind::ZeekDns, RITA_HEAD).unwrap();
        let mut out = Vec::new();
        assert_eq!(st.line(RITA_LINE.as_bytes(), &mut out), Ok(Line::Record));
        let m = msgs(&out);
        assert_eq!(m.len(), 2);
        let (qts, qf, q) = &m[0];
        assert_eq!(*qts, 1_517_336_042_279_652_000);
        assert_eq!(qf.src.to_string(), "192.168.88.2");
        assert_eq!((qf.sport, qf.dport), (55638, 53));
        assert!(!q.response && q.recursion_desired);
        assert_eq!(q.id, 42937);
        assert_eq!(q.questions[0].name, "6dde0175375169c68f.dnsc.r-1x.com");
        assert_eq!(q.questions[0].qtype, 16);
        let (rts, rf, r) = &m[1];
        assert_eq!(*rts, 1_517_336_042_279_652_000 + 69_982_000);
        assert_eq!(rf.src.to_string(), "165.227.88.15");
        assert_eq!(rf.dport, 55638);
        assert!(r.response && r.recursion_available);
        assert_eq!(r.answers[0].data, RData::Txt(vec!["302f017537c68f5169".into()]));
        assert_eq!(r.answers[0].ttl, 60);
        assert_eq!(r.answers[0].name, "6dde0175375169c68f.dnsc.r-1x.com");
    }

    #[test]
    fn a_conn_log_given_as_dns_is_refused_by_path_and_by_fields() {
        let conn = "#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\thistory";
        let e = tsv(Kind::ZeekDns, conn).unwrap_err();
        assert!(e.contains("conn log"), "{e}");
        let no_path =
            "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\thistory";
        let e = tsv(Kind::ZeekDns, no_path).unwrap_err();
        assert!(e.contains("conn log"), "{e}");
        assert!(tsv(Kind::ZeekConn, no_path).is_ok());
        assert!(tsv(Kind::ZeekDns, "#just a comment").is_err());
    }

    #[test]
    fn cname_chain_dnssec_summaries_and_unset_values() {
        let mut st = tsv(Kind::ZeekDns, RITA_HEAD).unwrap();
        // From zeek-btest/dns-two-responses.dns.log: qtype unset → response only.
        let line = "1.5\tC\t10.0.0.1\t5000\t10.0.0.53\t53\tudp\t1\t-\twww.cmu.edu\t-\t-\t-\t-\t0\tNOERROR\tT\tF\tF\tF\t0\twww-cmu.andrew.cmu.edu,RRSIG 5 cmu.edu,www-cmu-2.andrew.cmu.edu,128.2.10.163\t86400.000000,86400.000000,5.000000,21600.000000\tF";
        let mut out = Vec::new();
        assert_eq!(st.line(line.as_bytes(), &mut out), Ok(Line::Record));
        let m = msgs(&out);
        assert_eq!(m.len(), 1, "no query message when Zeek saw no query");
        let r = &m[0].2;
        assert_eq!(m[0].0, 1_500_000_000);
        assert_eq!(r.questions[0].qtype, 1);
        let names: Vec<(&str, u16)> = r.answers.iter().map(|a| (a.name.as_str(), a.rtype)).collect();
        assert_eq!(
            names,
            [("www.cmu.edu", 5), ("www-cmu.andrew.cmu.edu", 5), ("www-cmu-2.andrew.cmu.edu", 1)]
        );
        assert_eq!(r.answers[2].data, RData::A([128, 2, 10, 163].into()));
        assert_eq!(r.answers[2].ttl, 21600, "TTLs keep their index even when an answer is skipped");
        assert_eq!(st.line(b"1.5\tC\t10.0.0.1", &mut out), Err("wrong number of fields for #fields"));
        let bad_ts = line.replacen("1.5", "yesterday", 1);
        assert_eq!(st.line(bad_ts.as_bytes(), &mut out), Err("bad ts"));
    }

    #[test]
    fn txt_strings_with_counts_and_escapes() {
        assert_eq!(zeek_txt("TXT 3 a b TXT 2 cd"), Some(vec!["a b".into(), "cd".into()]));
        assert_eq!(zeek_txt("TXT 2 \\x01\\x02"), Some(vec!["\\x01\\x02".into()]));
        assert_eq!(zeek_txt("TXT 0 "), Some(vec!["".into()]));
        assert_eq!(zeek_txt("CNAME"), None);
    }

    #[test]
    fn json_forms_epoch_and_iso() {
        // zeek-real/beats-homenet.dns.json.log line 1 (elastic/beats), trimmed.
        let l = r#"{"ts":1547188415.857497,"uid":"C","id.orig_h":"192.168.86.167","id.orig_p":38339,"id.resp_h":"192.168.86.1","id.resp_p":53,"proto":"udp","trans_id":15209,"rtt":0.076967,"query":"dd6.us-west1.gcp.cloud.es.io","qclass":1,"qtype":1,"rcode":0,"AA":false,"TC":false,"RD":true,"RA":true,"Z":0,"answers":["proxy.gcp.cloud.es.io","35.199.178.4"],"TTLs":[119.0,59.0],"rejected":false}"#;
        let v: Value = serde_json::from_str(l).unwrap();
        let mut st = JsonState::sniff(&v, Kind::ZeekDns).unwrap();
        assert!(JsonState::sniff(&v, Kind::ZeekConn).is_err());
        let mut out = Vec::new();
        assert_eq!(st.line(l.as_bytes(), &mut out), Ok(Line::Record));
        let m = msgs(&out);
        assert_eq!(m[0].0, 1_547_188_415_857_497_000);
        assert_eq!(m[1].2.answers[1].data, RData::A([35, 199, 178, 4].into()));
        assert_eq!(m[1].2.answers[1].name, "proxy.gcp.cloud.es.io");
        // json-streaming-logs: ISO ts and _path.
        let iso = r#"{"_path":"dns","ts":"2018-03-24T17:15:20.865716Z","id.orig_h":"10.47.1.100","id.orig_p":41772,"id.resp_h":"10.0.0.100","id.resp_p":53,"query":"a.b","qtype":1}"#;
        out.clear();
        assert_eq!(st.line(iso.as_bytes(), &mut out), Ok(Line::Record));
        assert_eq!(out[0].ts(), 1_521_911_720_865_716_000);
        let other = r#"{"_path":"conn","ts":1.0}"#;
        assert_eq!(st.line(other.as_bytes(), &mut out), Ok(Line::Skipped));
        assert_eq!(st.line(b"{\"ts\":", &mut out), Err("not valid JSON"));
    }

    #[test]
    fn conn_syn_only_for_originator_syn_over_tcp() {
        let head = "#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\thistory";
        let mut st = tsv(Kind::ZeekConn, head).unwrap();
        let mut out = Vec::new();
        for l in [
            "10.25\tC\t10.0.0.1\t40000\t198.51.100.7\t10198\ttcp\tShADadFf",
            "11\tC\t10.0.0.1\t40001\t198.51.100.7\t80\ttcp\tsH",
            "12\tC\t10.0.0.1\t40002\t198.51.100.7\t80\ttcp\t^hS",
            "13\tC\t10.0.0.1\t40003\t198.51.100.7\t80\tudp\tS",
            "14\tC\t10.0.0.1\t40004\t198.51.100.7\t80\ttcp\t-",
        ] {
            assert_eq!(st.line(l.as_bytes(), &mut out), Ok(Line::Record));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0],
            Event::Syn {
                ts: 10_250_000_000,
                flow: Flow {
                    src: "10.0.0.1".parse().unwrap(),
                    sport: 40000,
                    dst: "198.51.100.7".parse().unwrap(),
                    dport: 10198
                }
            }
        );
    }
}
