//! A small DNS wire encoder: an NSM log record rendered back into the message the sensor
//! would have seen, so that it goes through the same parser, cache and detectors.
//!
//! Names arrive as log text. Zeek and Suricata write bytes outside printable ASCII as `\xHH`
//! (and we also accept the `\DDD` and `\.` of presentation format, and `\\`), so labels are
//! decoded back into their raw octets here.

use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1035 §3.1: a name is at most 255 octets on the wire.
const MAX_NAME_WIRE: usize = 255;
/// RFC 1035 §2.3.4: labels are 63 octets or less.
const MAX_LABEL: usize = 63;
/// RFC 1035 §3.3: a character-string is one length octet and up to 255 octets.
const MAX_CHARSTRING: usize = 255;
/// A UDP message over 64 KiB cannot exist; a record that would render bigger is refused.
const MAX_MESSAGE: usize = 65_535;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_DNAME: u16 = 39;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A label over 63 octets, or an empty label inside a name.
    BadLabel,
    /// A name over 255 octets on the wire.
    NameTooLong,
    /// A TXT string or the whole message over its size limit.
    TooBig,
}

impl WireError {
    pub fn reason(self) -> &'static str {
        match self {
            WireError::BadLabel => "name has an empty or over-long label",
            WireError::NameTooLong => "name longer than 255 octets",
            WireError::TooBig => "record too big for a DNS message",
        }
    }
}

/// One DNS message as the logs describe it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    /// 4-bit header RCODE (extended codes are cut to their low bits).
    pub rcode: u16,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    /// Question name as log text (escapes still in it); `None` when the log has none.
    pub qname: Option<String>,
    pub qtype: u16,
    pub qclass: u16,
    pub answers: Vec<Answer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Owner name as log text.
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME, NS, PTR, DNAME, and the target of MX (preference 0) and SRV (0 0 0).
    Name(String),
    /// TXT character-strings as log text.
    Txt(Vec<String>),
    /// Anything else: the log text as opaque RDATA bytes.
    Raw(Vec<u8>),
}

/// Decodes log-text escapes into raw octets: `\xHH`, `\DDD`, `\\`, `\.` and any other
/// `\c` as `c`. A malformed escape is kept literally.
pub fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        if let Some(v) = b.get(i + 1..i + 4).and_then(hex_escape) {
            out.push(v);
            i += 4;
        } else if let Some(v) = b.get(i + 1..i + 4).and_then(dec_escape) {
            out.push(v);
            i += 4;
        } else if let Some(&n) = b.get(i + 1) {
            out.push(n);
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn hex_escape(s: &[u8]) -> Option<u8> {
    match s {
        [b'x', h, l] => Some(hex(*h)? << 4 | hex(*l)?),
        _ => None,
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn dec_escape(s: &[u8]) -> Option<u8> {
    let mut v: u16 = 0;
    for &c in s {
        v = v * 10 + u16::from((c as char).to_digit(10)? as u8);
    }
    u8::try_from(v).ok()
}

/// Splits a log-text name into raw labels. A `\.` or `\046` inside a label is a dot in the
/// label, not a separator; the split happens on unescaped dots only.
fn labels(text: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for ch in text.chars() {
        if esc {
            cur.push('\\');
            cur.push(ch);
            esc = false;
        } else if ch == '\\' {
            esc = true;
        } else if ch == '.' {
            out.push(unescape(&std::mem::take(&mut cur)));
        } else {
            cur.push(ch);
        }
    }
    if esc {
        cur.push('\\');
    }
    out.push(unescape(&cur));
    // "" and "." are the root; a trailing dot ends the name.
    if out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    if out.len() == 1 && out.first().is_some_and(|l| l.is_empty()) {
        out.clear();
    }
    out
}

/// Appends `text` as an uncompressed wire name.
pub fn push_name(out: &mut Vec<u8>, text: &str) -> Result<(), WireError> {
    let start = out.len();
    for l in labels(text) {
        if l.is_empty() || l.len() > MAX_LABEL {
            out.truncate(start);
            return Err(WireError::BadLabel);
        }
        out.push(l.len() as u8);
        out.extend_from_slice(&l);
    }
    out.push(0);
    if out.len() - start > MAX_NAME_WIRE {
        out.truncate(start);
        return Err(WireError::NameTooLong);
    }
    Ok(())
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Renders the message. Answers with data that cannot be encoded make the whole message
/// fail: a partial answer set would feed the cache a different truth than the log's.
pub fn encode(m: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    push_u16(&mut out, m.id);
    let mut flags: u16 = m.rcode & 0x000f;
    for (on, bit) in [(m.response, 0x8000), (m.aa, 0x0400), (m.tc, 0x0200), (m.rd, 0x0100), (m.ra, 0x0080)] {
        if on {
            flags |= bit;
        }
    }
    push_u16(&mut out, flags);
    push_u16(&mut out, u16::from(m.qname.is_some()));
    let ancount = u16::try_from(m.answers.len()).map_err(|_| WireError::TooBig)?;
    push_u16(&mut out, if m.response { ancount } else { 0 });
    push_u16(&mut out, 0);
    push_u16(&mut out, 0);
    if let Some(q) = &m.qname {
        push_name(&mut out, q)?;
        push_u16(&mut out, m.qtype);
        push_u16(&mut out, m.qclass);
    }
    if m.response {
        for a in &m.answers {
            push_answer(&mut out, a)?;
            if out.len() > MAX_MESSAGE {
                return Err(WireError::TooBig);
            }
        }
    }
    Ok(out)
}

fn push_answer(out: &mut Vec<u8>, a: &Answer) -> Result<(), WireError> {
    push_name(out, &a.name)?;
    push_u16(out, a.rtype);
    push_u16(out, 1);
    out.extend_from_slice(&a.ttl.to_be_bytes());
    let len_at = out.len();
    push_u16(out, 0);
    match &a.data {
        Data::A(ip) => out.extend_from_slice(&ip.octets()),
        Data::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
        Data::Name(n) => {
            match a.rtype {
                TYPE_MX => push_u16(out, 0),
                TYPE_SRV => out.extend_from_slice(&[0; 6]),
                _ => {}
            }
            push_name(out, n)?;
        }
        Data::Txt(parts) => {
            for p in parts {
                let raw = unescape(p);
                // A long string from a log that joined several: split it at the limit.
                for chunk in raw.chunks(MAX_CHARSTRING) {
                    out.push(chunk.len() as u8);
                    out.extend_from_slice(chunk);
                }
                if raw.is_empty() {
                    out.push(0);
                }
            }
        }
        Data::Raw(b) => out.extend_from_slice(b),
    }
    let rdlen = u16::try_from(out.len() - len_at - 2).map_err(|_| WireError::TooBig)?;
    if let Some(slot) = out.get_mut(len_at..len_at + 2) {
        slot.copy_from_slice(&rdlen.to_be_bytes());
    }
    Ok(())
}

/// RR type mnemonic → number (the types logs name; others as `TYPEnnn`).
pub fn rtype_from_name(s: &str) -> Option<u16> {
    Some(match s {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "NULL" => 10,
        "WKS" => 11,
        "PTR" => 12,
        "HINFO" => 13,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "NAPTR" => 35,
        "DNAME" => 39,
        "OPT" => 41,
        "DS" => 43,
        "SSHFP" => 44,
        "RRSIG" => 46,
        "NSEC" => 47,
        "DNSKEY" => 48,
        "NSEC3" => 50,
        "TLSA" => 52,
        "SVCB" => 64,
        "HTTPS" => 65,
        "SPF" => 99,
        "AXFR" => 252,
        "ANY" | "*" => 255,
        "CAA" => 257,
        _ => return s.strip_prefix("TYPE").and_then(|n| n.parse().ok()),
    })
}

/// RCODE mnemonic → number (RFC 6895 registry, as Zeek and Suricata spell them).
pub fn rcode_from_name(s: &str) -> Option<u16> {
    Some(match s {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "YXRRSET" => 7,
        "NXRRSET" => 8,
        "NOTAUTH" => 9,
        "NOTZONE" => 10,
        "BADVERS" | "BADSIG" => 16,
        _ => return s.parse().ok(),
    })
}

/// Does this type's RDATA hold a domain name (so a log's name value renders as one)?
pub fn holds_name(rtype: u16) -> bool {
    matches!(rtype, TYPE_NS | TYPE_CNAME | TYPE_PTR | TYPE_MX | TYPE_SRV | TYPE_DNAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{parse_message, RData};

    fn check(m: &Message) -> crate::dns::DnsMessage {
        parse_message(&encode(m).unwrap()).unwrap()
    }

    #[test]
    fn response_round_trips_through_the_project_parser() {
        let m = Message {
            id: 0xbeef,
            response: true,
            rd: true,
            ra: true,
            rcode: 3,
            qname: Some("www.example.com".into()),
            qtype: TYPE_A,
            qclass: 1,
            answers: vec![
                Answer {
                    name: "www.example.com".into(),
                    rtype: TYPE_CNAME,
                    ttl: 60,
                    data: Data::Name("edge.example.net".into()),
                },
                Answer {
                    name: "edge.example.net".into(),
                    rtype: TYPE_A,
                    ttl: 30,
                    data: Data::A([198, 51, 100, 7].into()),
                },
                Answer {
                    name: "t.example".into(),
                    rtype: TYPE_TXT,
                    ttl: 0,
                    data: Data::Txt(vec!["k=v".into(), "".into()]),
                },
                Answer {
                    name: "m.example".into(),
                    rtype: TYPE_MX,
                    ttl: 5,
                    data: Data::Name("mx.example".into()),
                },
            ],
            ..Default::default()
        };
        let p = check(&m);
        assert_eq!(p.id, 0xbeef);
        assert!(p.response && p.recursion_desired && p.recursion_available && !p.authoritative);
        assert_eq!(p.rcode, 3);
        assert_eq!(p.questions[0].name, "www.example.com");
        assert_eq!(p.answers.len(), 4);
        assert_eq!(p.answers[0].data, RData::Name("edge.example.net".into()));
        assert_eq!(p.answers[1].data, RData::A([198, 51, 100, 7].into()));
        assert_eq!(p.answers[1].ttl, 30);
        assert_eq!(p.answers[2].data, RData::Txt(vec!["k=v".into(), "".into()]));
        assert_eq!(p.answers[3].data, RData::Mx { preference: 0, exchange: "mx.example".into() });
    }

    #[test]
    fn a_query_has_no_answers_even_if_given() {
        let m = Message { qname: Some("a.b".into()), qtype: 16, qclass: 1, ..Default::default() };
        let w = encode(&m).unwrap();
        assert_eq!(&w[..12], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&w[12..], &[1, b'a', 1, b'b', 0, 0, 16, 0, 1]);
    }

    #[test]
    fn zeek_hex_escapes_become_raw_label_octets() {
        let mut w = Vec::new();
        push_name(&mut w, "a\\xff\\x2e.b").unwrap();
        assert_eq!(w, [3, b'a', 0xff, b'.', 1, b'b', 0]);
        let mut w = Vec::new();
        push_name(&mut w, "x\\.y\\255.").unwrap();
        assert_eq!(w, [4, b'x', b'.', b'y', 0xff, 0]);
        // The project's own text for the label comes back the same way.
        let p = parse_message(
            &encode(&Message { qname: Some("a\\xff.b".into()), qtype: 1, qclass: 1, ..Default::default() })
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p.questions[0].name, "a\\255.b");
    }

    #[test]
    fn bad_names_are_refused_not_cut() {
        let mut w = Vec::new();
        assert_eq!(push_name(&mut w, &"a".repeat(64)), Err(WireError::BadLabel));
        assert_eq!(push_name(&mut w, "a..b"), Err(WireError::BadLabel));
        let long = ["abcdefghij"; 30].join(".");
        assert_eq!(push_name(&mut w, &long), Err(WireError::NameTooLong));
        assert!(w.is_empty());
        push_name(&mut w, ".").unwrap();
        assert_eq!(w, [0]);
    }

    #[test]
    fn mnemonics() {
        assert_eq!(rtype_from_name("AAAA"), Some(28));
        assert_eq!(rtype_from_name("TYPE65534"), Some(65534));
        assert_eq!(rtype_from_name("bogus"), None);
        assert_eq!(rcode_from_name("NXDOMAIN"), Some(3));
        assert_eq!(unescape("\\x4"), b"x4");
    }
}
