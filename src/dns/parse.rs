//! Wire bytes → `DnsMessage`. Pure: no I/O, no allocation beyond the owned result, and with
//! `Spare` not even that once the strings of earlier messages are recycled.
//!
//! The header is read by hand; names go through our own
//! iterative walker (`name::read_name`, see there why not `domain`'s), and since every record
//! starts with a name the record walk is ours too.
//!
//! Policy: only a cut header or an unparseable question fails the message. Everything after
//! the question section is best effort: the first bad record stops the walk with
//! `RecordsTruncated` (answers before it are kept), bad RDATA of a known type becomes
//! `RData::Other` with `BadRdata`, and a message that ends cleanly before its counts say
//! gets `CountMismatch`.

use super::name::{skip_name, NameError, Reader, TEXT_BUF};
use super::{rtype, Anomaly, DnsMessage, Question, RData, Record};
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1035 §4.1.1.
const HEADER_LEN: usize = 12;
/// TYPE, CLASS, TTL, RDLENGTH after a record's name (RFC 1035 §4.1.3).
const RR_FIXED_LEN: usize = 10;
/// Shortest possible question: root name + QTYPE + QCLASS.
const MIN_QUESTION_LEN: usize = 5;
/// Shortest possible record: root name + fixed part. Bounds the capacity we reserve from a
/// count the sender controls.
const MIN_RR_LEN: usize = 1 + RR_FIXED_LEN;

/// Why a message could not be decoded at all. Recoverable problems are `Anomaly` bits on a
/// decoded message instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 12-byte header.
    TooShort,
    /// A question did not parse (bad name, cut short).
    BadQuestion,
    /// A compression pointer loops or points forward.
    PointerLoop,
    /// A name longer than 255 bytes on the wire.
    NameTooLong,
}

impl ParseError {
    /// Stable snake_case reason for counters and logs.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::TooShort => "dns_too_short",
            ParseError::BadQuestion => "dns_bad_question",
            ParseError::PointerLoop => "dns_pointer_loop",
            ParseError::NameTooLong => "dns_name_too_long",
        }
    }
}

impl From<NameError> for ParseError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Short | NameError::BadLabelType => ParseError::BadQuestion,
            NameError::BadPointer => ParseError::PointerLoop,
            NameError::TooLong => ParseError::NameTooLong,
        }
    }
}

/// Decodes one DNS message (without the TCP length prefix).
pub fn parse_message(buf: &[u8]) -> Result<DnsMessage, ParseError> {
    parse_with(buf, &mut Spare::default(), &mut [0u8; TEXT_BUF])
}

/// Strings and vectors of messages the caller has finished with, handed back through
/// `recycle` so that parsing the next message reuses their memory: a replay parses millions
/// of messages, and a malloc/free pair per name was ~5% of its time.
#[derive(Default)]
pub struct Spare {
    /// Leave out the text only the DNS log reads: answer owner names, TXT strings and
    /// NS/PTR/DNAME/MX target names come back empty (still checked, so anomalies and counts
    /// are unchanged).
    /// CNAME targets, addresses and questions are always decoded: the detectors use them.
    pub lean: bool,
    strings: Vec<String>,
    /// A recycled message's vectors, their elements stale: the next parse writes over them.
    questions: Vec<Question>,
    answers: Vec<Record>,
    /// Where names are rendered before being copied into their strings (`TEXT_BUF` long
    /// once used): zeroed once, not per name.
    text: Vec<u8>,
}

/// Enough for the names of a few messages; more would only hold memory.
const SPARE_STRINGS: usize = 64;
/// A string grown by a pathological name is dropped rather than kept.
const SPARE_STRING_CAP: usize = 512;

impl Spare {
    pub fn new(lean: bool) -> Spare {
        Spare { lean, ..Spare::default() }
    }

    /// Keeps `m`'s memory for the next parse. A vector the spare does not hold yet is kept
    /// whole, its elements and their strings in place: the next parse writes over them (see
    /// `parse_with`), where taking each record apart cost more than parsing it. Any other
    /// is taken apart for its strings (with a DNS log, messages come back in bunches).
    #[inline(always)]
    pub fn recycle(&mut self, m: DnsMessage) {
        let DnsMessage { questions, answers, .. } = m;
        if self.questions.capacity() == 0 && questions.capacity() <= 16 {
            self.questions = questions;
        } else if questions.capacity() != 0 {
            self.take_questions_apart(questions);
        }
        if self.answers.capacity() == 0 && answers.capacity() <= 64 {
            self.answers = answers;
        } else if answers.capacity() != 0 {
            // (A query's answers never had memory: nothing to take apart.)
            self.take_answers_apart(answers);
        }
    }

    #[inline(never)]
    fn take_questions_apart(&mut self, mut questions: Vec<Question>) {
        while let Some(q) = questions.pop() {
            self.keep(q.name);
        }
    }

    #[inline(never)]
    fn take_answers_apart(&mut self, mut answers: Vec<Record>) {
        while let Some(r) = answers.pop() {
            self.keep(r.name);
            self.keep_data(r.data);
        }
    }

    /// Keeps the strings of a record's data. Inlined: where it replaces the data of a stale
    /// record, the call and moving the data into it cost more than the match.
    #[inline(always)]
    fn keep_data(&mut self, d: RData) {
        match d {
            RData::Name(s) | RData::Mx { exchange: s, .. } => self.keep(s),
            RData::Txt(v) => v.into_iter().for_each(|s| self.keep(s)),
            RData::A(_) | RData::Aaaa(_) | RData::Other => {}
        }
    }

    /// Cuts `qs` to its first `n`, keeping the strings of the stale questions after them.
    fn trim_questions(&mut self, qs: &mut Vec<Question>, n: usize) {
        while qs.len() > n {
            if let Some(q) = qs.pop() {
                self.keep(q.name);
            }
        }
    }

    /// `trim_questions` for records.
    fn trim_answers(&mut self, rs: &mut Vec<Record>, n: usize) {
        while rs.len() > n {
            if let Some(r) = rs.pop() {
                self.keep(r.name);
                self.keep_data(r.data);
            }
        }
    }

    fn keep(&mut self, mut s: String) {
        if self.strings.len() < SPARE_STRINGS && (1..=SPARE_STRING_CAP).contains(&s.capacity()) {
            s.clear();
            self.strings.push(s);
        }
    }

    fn string(&mut self) -> String {
        self.strings.pop().unwrap_or_default()
    }

    /// A recycled string given back unused (the name did not parse).
    fn unused(&mut self, s: String) {
        self.keep(s);
    }
}

/// `parse_message`, taking names and vectors from `spare` before allocating.
pub fn parse_message_reusing(buf: &[u8], spare: &mut Spare) -> Result<DnsMessage, ParseError> {
    let mut text = std::mem::take(&mut spare.text);
    if text.len() < TEXT_BUF {
        text = vec![0; TEXT_BUF];
    }
    let m = parse_with(buf, spare, &mut text);
    spare.text = text;
    m
}

/// The parse itself, rendering names in `text` (`TEXT_BUF` long).
fn parse_with(buf: &[u8], spare: &mut Spare, text: &mut [u8]) -> Result<DnsMessage, ParseError> {
    let h = Header::read(buf).ok_or(ParseError::TooShort)?;
    let mut m = DnsMessage {
        id: h.id,
        response: h.flags[0] & 0x80 != 0,
        opcode: (h.flags[0] >> 3) & 0x0F,
        rcode: u16::from(h.flags[1] & 0x0F),
        authoritative: h.flags[0] & 0x04 != 0,
        truncated: h.flags[0] & 0x02 != 0,
        recursion_desired: h.flags[0] & 0x01 != 0,
        recursion_available: h.flags[1] & 0x80 != 0,
        authority_count: h.ns,
        additional_count: h.ar,
        ..DnsMessage::default()
    };
    let mut w = Walk { buf, pos: HEADER_LEN, anomalies: 0, spare, names: Reader::new(buf, text) };

    // The spare's vectors may still hold the elements of a message recycled earlier: each
    // is overwritten in place, and what is left past the new count is cut off at the end.
    let qd = usize::from(h.qd);
    let mut qs = std::mem::take(&mut w.spare.questions);
    reserve_to(&mut qs, qd.min(w.remaining() / MIN_QUESTION_LEN));
    let read = w.questions(&mut qs, qd);
    let n = match read {
        Ok(n) => n,
        Err(e) => {
            w.spare.questions = qs;
            return Err(e);
        }
    };
    w.spare.trim_questions(&mut qs, n);
    m.questions = qs;
    if n < qd {
        // The message ended inside the question section (`CountMismatch`).
        m.anomalies = w.anomalies;
        return Ok(m);
    }

    let an = usize::from(h.an);
    let mut complete = true;
    if an != 0 {
        let mut rs = std::mem::take(&mut w.spare.answers);
        reserve_to(&mut rs, an.min(w.remaining() / MIN_RR_LEN));
        let mut n = 0;
        while n < an {
            match w.answer(&mut rs, n) {
                Some(rdlen) => m.answer_rdata_bytes = m.answer_rdata_bytes.saturating_add(u32::from(rdlen)),
                None => {
                    complete = false;
                    break;
                }
            }
            n += 1;
        }
        w.spare.trim_answers(&mut rs, n);
        m.answers = rs;
    }
    if complete {
        complete = w.skip_records(m.authority_count, None);
    }
    if complete {
        let mut opt_ttl = None;
        complete = w.skip_records(m.additional_count, Some(&mut opt_ttl));
        if let Some(ttl) = opt_ttl {
            // RFC 6891 §6.1.3: the OPT TTL's top octet is the upper 8 bits of a 12-bit RCODE.
            m.rcode |= ((ttl >> 24) as u16) << 4;
        }
    }
    if complete && !w.at_end() {
        w.flag(Anomaly::TrailingBytes);
    }
    m.anomalies = w.anomalies;
    Ok(m)
}

/// Makes room in `v` for `n` elements in all, counting those already there.
fn reserve_to<T>(v: &mut Vec<T>, n: usize) {
    if let Some(more) = n.checked_sub(v.len()) {
        v.reserve(more);
    }
}

/// Fuzz body shared by `fuzz/fuzz_targets/dns_parse.rs` and the smoke test: parses `data`
/// and, when that succeeds, checks the bounds the types document. Panics on a violation.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Ok(m) = parse_message(data) else { return };
    let name_ok = |n: &str| !n.is_empty() && n.len() <= super::name::MAX_NAME_TEXT && n.is_ascii();
    assert!(m.questions.len() <= data.len() / MIN_QUESTION_LEN);
    assert!(m.answers.len() <= data.len() / MIN_RR_LEN);
    for q in &m.questions {
        assert!(name_ok(&q.name), "{:?}", q.name);
    }
    let mut rdata = 0u32;
    for r in &m.answers {
        assert!(name_ok(&r.name), "{:?}", r.name);
        rdata += u32::from(r.rdlen);
        match &r.data {
            RData::Name(n) | RData::Mx { exchange: n, .. } => assert!(name_ok(n), "{n:?}"),
            RData::Txt(t) => assert!(t.iter().all(|s| s.len() <= 4 * 255 && s.is_ascii())),
            RData::A(_) => assert_eq!(r.rdlen, 4),
            RData::Aaaa(_) => assert_eq!(r.rdlen, 16),
            RData::Other => {}
        }
    }
    assert_eq!(m.answer_rdata_bytes, rdata);
    assert!(m.rcode < 1 << 12);
    // Lean parsing is the same walk: only the text it skips may differ.
    let lean = parse_message_reusing(data, &mut Spare::new(true));
    assert_eq!(lean, Ok(without_log_text(m)));
}

/// `m` as a lean parse returns it: no owner names, TXT strings or non-CNAME target names.
#[doc(hidden)]
pub fn without_log_text(mut m: DnsMessage) -> DnsMessage {
    for r in &mut m.answers {
        r.name.clear();
        match &mut r.data {
            RData::Name(n) if r.rtype != rtype::CNAME => n.clear(),
            RData::Mx { exchange, .. } => exchange.clear(),
            RData::Txt(t) => t.clear(),
            _ => {}
        }
    }
    m
}

/// The 12-octet header (RFC 1035 §4.1.1), read by hand: the fields as plain values, where
/// `domain`'s view of it was a call and a copy per field.
struct Header {
    id: u16,
    flags: [u8; 2],
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
}

impl Header {
    fn read(buf: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let [i0, i1, f0, f1, q0, q1, a0, a1, n0, n1, r0, r1] = *h;
        let be = u16::from_be_bytes;
        Some(Header {
            id: be([i0, i1]),
            flags: [f0, f1],
            qd: be([q0, q1]),
            an: be([a0, a1]),
            ns: be([n0, n1]),
            ar: be([r0, r1]),
        })
    }
}

/// A cursor over the message with the anomalies seen so far.
struct Walk<'a, 's> {
    buf: &'a [u8],
    pos: usize,
    anomalies: u16,
    spare: &'s mut Spare,
    names: Reader<'a, 's>,
}

impl Walk<'_, '_> {
    fn flag(&mut self, a: Anomaly) {
        self.anomalies |= a as u16;
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.buf.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Flags a name error met in a record; the caller then stops or falls back.
    fn name_error(&mut self, e: NameError) {
        match e {
            NameError::BadPointer => self.flag(Anomaly::BadPointer),
            NameError::TooLong => self.flag(Anomaly::NameTooLong),
            NameError::Short | NameError::BadLabelType => {}
        }
    }

    /// Flags why a section walk stopped: a clean end before the counts is a count mismatch,
    /// anything else a truncated record.
    fn stop(&mut self, at: usize) {
        if at >= self.buf.len() {
            self.flag(Anomaly::CountMismatch);
        } else {
            self.flag(Anomaly::RecordsTruncated);
        }
    }

    /// TYPE, CLASS, TTL, RDLENGTH at `pos`, and the RDATA range, checked to fit.
    fn fixed(&self, pos: usize) -> Option<(u16, u16, u32, u16, usize, usize)> {
        let f = self.buf.get(pos..pos + RR_FIXED_LEN)?;
        let rtype = u16::from_be_bytes([f[0], f[1]]);
        let class = u16::from_be_bytes([f[2], f[3]]);
        let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        let rdlen = u16::from_be_bytes([f[8], f[9]]);
        let start = pos + RR_FIXED_LEN;
        let end = start + usize::from(rdlen);
        if end > self.buf.len() {
            return None;
        }
        Some((rtype, class, ttl, rdlen, start, end))
    }

    /// Questions into `qs[0..n]` (each slot overwritten, or appended past the end of `qs`).
    /// Gives how many were read: fewer than `n` if the message ended first (flagged).
    fn questions(&mut self, qs: &mut Vec<Question>, n: usize) -> Result<usize, ParseError> {
        for i in 0..n {
            if self.at_end() {
                self.flag(Anomaly::CountMismatch);
                return Ok(i);
            }
            if i >= qs.len() {
                qs.push(Question { name: self.spare.string(), qtype: 0, qclass: 0 });
            }
            let q = qs.get_mut(i).ok_or(ParseError::BadQuestion)?;
            q.name.clear();
            self.pos = self.names.read(self.pos, &mut q.name)?;
            q.qtype = self.u16().ok_or(ParseError::BadQuestion)?;
            q.qclass = self.u16().ok_or(ParseError::BadQuestion)?;
        }
        Ok(n)
    }

    /// Answer record `i` into `rs[i]` (overwritten, or appended if `rs` is shorter) and its
    /// RDATA length, or `None` (with the reason flagged) if the walk must stop. What a
    /// failed record left in its slot is cut off by the caller.
    fn answer(&mut self, rs: &mut Vec<Record>, i: usize) -> Option<u16> {
        let start = self.pos;
        if self.at_end() {
            self.stop(start);
            return None;
        }
        let render = !self.spare.lean;
        if i >= rs.len() {
            let name = if render { self.spare.string() } else { String::new() };
            rs.push(Record { name, rtype: 0, class: 0, ttl: 0, rdlen: 0, data: RData::Other });
        }
        let r = rs.get_mut(i)?;
        r.name.clear();
        let read = if render { self.names.read(start, &mut r.name) } else { self.names.check(start) };
        let after_name = match read {
            Ok(end) => end,
            Err(e) => {
                self.name_error(e);
                self.flag(Anomaly::RecordsTruncated);
                return None;
            }
        };
        let Some((rtype, class, ttl, rdlen, rd_start, rd_end)) = self.fixed(after_name) else {
            self.flag(Anomaly::RecordsTruncated);
            return None;
        };
        self.pos = rd_end;
        let data = match self.rdata(rtype, rd_start, rd_end) {
            Some(d) => d,
            None => {
                self.flag(Anomaly::BadRdata);
                RData::Other
            }
        };
        let old = std::mem::replace(&mut r.data, data);
        self.spare.keep_data(old);
        (r.rtype, r.class, r.ttl, r.rdlen) = (rtype, class, ttl, rdlen);
        Some(rdlen)
    }

    /// RDATA of the answer types we keep; `None` if it does not parse as its type says.
    fn rdata(&mut self, t: u16, start: usize, end: usize) -> Option<RData> {
        let rd = self.buf.get(start..end)?;
        Some(match t {
            rtype::A => RData::A(Ipv4Addr::from(<[u8; 4]>::try_from(rd).ok()?)),
            rtype::AAAA => RData::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(rd).ok()?)),
            rtype::CNAME => RData::Name(self.rdata_name(start, end, true)?),
            rtype::NS | rtype::PTR | rtype::DNAME => {
                RData::Name(self.rdata_name(start, end, !self.spare.lean)?)
            }
            rtype::MX => {
                let pref = rd.get(..2)?;
                let preference = u16::from_be_bytes([pref[0], pref[1]]);
                RData::Mx { preference, exchange: self.rdata_name(start + 2, end, !self.spare.lean)? }
            }
            rtype::TXT => {
                let mut strings = Vec::new();
                let mut rest = rd;
                while let Some((&len, after)) = rest.split_first() {
                    let s = after.get(..usize::from(len))?;
                    if !self.spare.lean {
                        let mut text = self.spare.string();
                        super::name::push_escaped(&mut text, s);
                        strings.push(text);
                    }
                    rest = after.get(s.len()..)?;
                }
                RData::Txt(strings)
            }
            _ => RData::Other,
        })
    }

    /// A name that must fill `start..end` exactly (pointers may still reach back anywhere
    /// before it in the message).
    /// Unless `render`, the name is only checked and comes back empty.
    fn rdata_name(&mut self, start: usize, end: usize, render: bool) -> Option<String> {
        match self.name(start, render)? {
            (name, p) if p == end => Some(name),
            (name, _) => {
                self.spare.unused(name);
                None
            }
        }
    }

    /// The name at `start` and where it ends: rendered into a recycled string, or (unless
    /// `render`) only checked by the same walk and returned empty. A bad name is flagged and
    /// gives `None`; the one place that decides between the two for records.
    #[inline(always)]
    fn name(&mut self, start: usize, render: bool) -> Option<(String, usize)> {
        let mut name = if render { self.spare.string() } else { String::new() };
        let read = if render { self.names.read(start, &mut name) } else { self.names.check(start) };
        match read {
            Ok(end) => Some((name, end)),
            Err(e) => {
                self.spare.unused(name);
                self.name_error(e);
                None
            }
        }
    }

    /// Steps over `n` records whose contents nobody keeps, except the first OPT record's TTL
    /// when `opt` asks for it. Returns false if the walk had to stop.
    fn skip_records(&mut self, n: u16, mut opt: Option<&mut Option<u32>>) -> bool {
        for _ in 0..n {
            let start = self.pos;
            if self.at_end() {
                self.stop(start);
                return false;
            }
            let after_name = match skip_name(self.buf, start) {
                Ok(p) => p,
                Err(e) => {
                    self.name_error(e);
                    self.flag(Anomaly::RecordsTruncated);
                    return false;
                }
            };
            let Some((rtype, _, ttl, _, _, rd_end)) = self.fixed(after_name) else {
                self.flag(Anomaly::RecordsTruncated);
                return false;
            };
            if rtype == rtype::OPT {
                if let Some(slot) = opt.as_deref_mut() {
                    slot.get_or_insert(ttl);
                }
            }
            self.pos = rd_end;
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test-only message builder: names are dotted text (no escapes) or raw labels.
    pub(crate) struct B(pub Vec<u8>);

    impl B {
        pub fn new(id: u16, flags: u16, counts: [u16; 4]) -> B {
            let mut v = Vec::new();
            v.extend(id.to_be_bytes());
            v.extend(flags.to_be_bytes());
            for c in counts {
                v.extend(c.to_be_bytes());
            }
            B(v)
        }
        pub fn name(&mut self, n: &str) -> &mut B {
            for l in n.split('.').filter(|l| !l.is_empty()) {
                self.0.push(l.len() as u8);
                self.0.extend(l.as_bytes());
            }
            self.0.push(0);
            self
        }
        pub fn labels(&mut self, labels: &[&[u8]]) -> &mut B {
            for l in labels {
                self.0.push(l.len() as u8);
                self.0.extend(*l);
            }
            self
        }
        pub fn ptr(&mut self, off: u16) -> &mut B {
            self.0.extend((0xC000 | off).to_be_bytes());
            self
        }
        pub fn u16(&mut self, v: u16) -> &mut B {
            self.0.extend(v.to_be_bytes());
            self
        }
        pub fn bytes(&mut self, b: &[u8]) -> &mut B {
            self.0.extend(b);
            self
        }
        pub fn q(&mut self, name: &str, qtype: u16) -> &mut B {
            self.name(name).u16(qtype).u16(1)
        }
        /// Fixed part and RDATA after a name already written.
        pub fn rr_tail(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> &mut B {
            self.u16(rtype).u16(1);
            self.0.extend(ttl.to_be_bytes());
            self.u16(rdata.len() as u16).bytes(rdata)
        }
        pub fn rr(&mut self, name: &str, rtype: u16, ttl: u32, rdata: &[u8]) -> &mut B {
            self.name(name).rr_tail(rtype, ttl, rdata)
        }
        pub fn done(&mut self) -> Vec<u8> {
            std::mem::take(&mut self.0)
        }
    }

    /// Wire form of a name, for RDATA.
    pub(crate) fn wire(n: &str) -> Vec<u8> {
        B(Vec::new()).name(n).done()
    }

    /// Compact text of a decoded message, so each test states its whole expectation.
    fn summary(m: &DnsMessage) -> String {
        let mut s = format!(
            "id={} {} op={} rcode={}{}{}{}{}",
            m.id,
            if m.response { "R" } else { "Q" },
            m.opcode,
            m.rcode,
            if m.authoritative { " aa" } else { "" },
            if m.truncated { " tc" } else { "" },
            if m.recursion_desired { " rd" } else { "" },
            if m.recursion_available { " ra" } else { "" },
        );
        for q in &m.questions {
            s += &format!(" | q {} {}", q.name, crate::dns::rtype_name(q.qtype));
        }
        for r in &m.answers {
            s += &format!(" | {} {} {} ", r.name, crate::dns::rtype_name(r.rtype), r.ttl);
            s += &match &r.data {
                RData::A(a) => a.to_string(),
                RData::Aaaa(a) => a.to_string(),
                RData::Name(n) => n.clone(),
                RData::Mx { preference, exchange } => format!("{preference} {exchange}"),
                RData::Txt(t) => format!("{t:?}"),
                RData::Other => format!("other/{}", r.rdlen),
            };
        }
        s += &format!(
            " | ns={} ar={} rdbytes={} anom={:#x}",
            m.authority_count, m.additional_count, m.answer_rdata_bytes, m.anomalies
        );
        s
    }

    fn check(buf: &[u8], expect: &str) {
        match parse_message(buf) {
            Ok(m) => assert_eq!(summary(&m), expect),
            Err(e) => assert_eq!(format!("error {}", e.reason()), expect),
        }
    }

    const QR_RD_RA: u16 = 0x8180;

    #[test]
    fn a_aaaa_cname_chain() {
        let mut b = B::new(0x1234, QR_RD_RA, [1, 4, 0, 0]);
        b.q("www.Example.com", 1);
        // CNAME owner compressed to the question name at 12.
        b.ptr(12).rr_tail(rtype::CNAME, 300, &wire("edge.cdn.net"));
        b.rr("edge.cdn.net", rtype::CNAME, 60, &wire("e1.cdn.net"));
        b.rr("e1.cdn.net", rtype::A, 20, &[192, 0, 2, 7]);
        b.rr("e1.cdn.net", rtype::AAAA, 20, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        check(
            &b.done(),
            "id=4660 R op=0 rcode=0 rd ra | q www.Example.com A \
             | www.Example.com CNAME 300 edge.cdn.net | edge.cdn.net CNAME 60 e1.cdn.net \
             | e1.cdn.net A 20 192.0.2.7 | e1.cdn.net AAAA 20 2001:db8::1 \
             | ns=0 ar=0 rdbytes=46 anom=0x0",
        );
    }

    #[test]
    fn compressed_rdata_name_and_mx() {
        let mut b = B::new(1, QR_RD_RA, [1, 2, 0, 0]);
        b.q("example.org", rtype::MX);
        let mut rd = vec![0, 10];
        rd.extend([4, b'm', b'a', b'i', b'l', 0xC0, 12]);
        b.ptr(12).rr_tail(rtype::MX, 3600, &rd);
        b.ptr(12).rr_tail(rtype::MX, 3600, &[0, 20, 0xC0, 12]);
        check(
            &b.done(),
            "id=1 R op=0 rcode=0 rd ra | q example.org MX | example.org MX 3600 10 mail.example.org \
             | example.org MX 3600 20 example.org | ns=0 ar=0 rdbytes=13 anom=0x0",
        );
    }

    #[test]
    fn txt_multi_string() {
        let mut b = B::new(2, QR_RD_RA, [1, 1, 0, 0]);
        b.q("t.example", rtype::TXT);
        b.ptr(12).rr_tail(rtype::TXT, 5, b"\x05hello\x00\x06a b\\\xff\x01");
        check(
            &b.done(),
            "id=2 R op=0 rcode=0 rd ra | q t.example TXT \
             | t.example TXT 5 [\"hello\", \"\", \"a\\\\032b\\\\092\\\\255\\\\001\"] \
             | ns=0 ar=0 rdbytes=14 anom=0x0",
        );
    }

    #[test]
    fn https_query_and_answer() {
        let mut b = B::new(3, 0x0100, [1, 0, 0, 0]);
        b.q("cloudflare.com", rtype::HTTPS);
        check(&b.done(), "id=3 Q op=0 rcode=0 rd | q cloudflare.com HTTPS | ns=0 ar=0 rdbytes=0 anom=0x0");
        // priority 1, target ".", alpn=h3,h2, ipv4hint.
        let rd = b"\x00\x01\x00\x00\x01\x00\x06\x02h3\x02h2\x00\x04\x00\x04\x68\x10\x84\xe5";
        let mut b = B::new(3, QR_RD_RA, [1, 2, 0, 0]);
        b.q("cloudflare.com", rtype::HTTPS);
        b.ptr(12).rr_tail(rtype::HTTPS, 300, rd);
        b.ptr(12).rr_tail(rtype::A, 300, &[104, 16, 132, 229]);
        check(
            &b.done(),
            "id=3 R op=0 rcode=0 rd ra | q cloudflare.com HTTPS | cloudflare.com HTTPS 300 other/21 \
             | cloudflare.com A 300 104.16.132.229 | ns=0 ar=0 rdbytes=25 anom=0x0",
        );
    }

    #[test]
    fn dnssec_null_and_private_types_keep_the_message() {
        let mut b = B::new(4, QR_RD_RA, [1, 5, 0, 1]);
        b.q("example.net", rtype::A);
        b.ptr(12).rr_tail(rtype::A, 60, &[198, 51, 100, 1]);
        // RRSIG: type covered A, alg 13, labels 2, ttl, expiry, inception, tag, signer, sig.
        let mut rrsig = vec![0, 1, 13, 2, 0, 0, 0, 60, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0x34];
        rrsig.extend(wire("example.net"));
        rrsig.extend([0xAB; 64]);
        b.ptr(12).rr_tail(46, 60, &rrsig);
        b.ptr(12).rr_tail(48, 60, &[1, 1, 3, 13, 0xCD, 0xCD, 0xCD, 0xCD]);
        b.ptr(12).rr_tail(rtype::NULL, 0, b"\x00\xff binary \x80");
        b.ptr(12).rr_tail(65534, 0, &[1, 2, 3]);
        // EDNS OPT with the DO bit in the additional section.
        b.name("").rr_tail(rtype::OPT, 0x0000_8000, &[]);
        check(
            &b.done(),
            "id=4 R op=0 rcode=0 rd ra | q example.net A | example.net A 60 198.51.100.1 \
             | example.net RRSIG 60 other/95 | example.net DNSKEY 60 other/8 \
             | example.net NULL 0 other/11 | example.net TYPE65534 0 other/3 \
             | ns=0 ar=1 rdbytes=121 anom=0x0",
        );
    }

    #[test]
    fn iodine_base128_name() {
        // iodine's downstream query: a base128 label with high-bit octets under pirate.sea.
        let label: &[u8] = b"0iab\xe9\xc3\xbf\x80z";
        let mut b = B::new(5, 0x0100, [1, 0, 0, 0]);
        b.labels(&[label]).name("pirate.sea").u16(rtype::NULL).u16(1);
        check(
            &b.done(),
            "id=5 Q op=0 rcode=0 rd | q 0iab\\233\\195\\191\\128z.pirate.sea NULL \
             | ns=0 ar=0 rdbytes=0 anom=0x0",
        );
    }

    #[test]
    fn opt_extends_rcode_badcookie() {
        // BADCOOKIE = 23 = 0x17: header rcode 7, OPT extended rcode 1.
        let mut b = B::new(6, 0x8187, [1, 0, 0, 1]);
        b.q("example.com", rtype::A);
        b.name("").rr_tail(rtype::OPT, 0x0100_0000, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        let m = parse_message(&b.done()).unwrap();
        assert_eq!(m.rcode, 23);
        assert_eq!(crate::dns::rcode_name(m.rcode), "BADCOOKIE");
        assert_eq!(m.anomalies, 0);
    }

    #[test]
    fn compression_loops_and_forward_pointers() {
        // Question name is a pointer to itself: the message fails.
        let mut b = B::new(7, 0x0100, [1, 0, 0, 0]);
        b.ptr(12).u16(1).u16(1);
        check(&b.done(), "error dns_pointer_loop");
        // Two-pointer cycle: answer 2's owner points back into answer 1's NULL RDATA, which
        // points forward to answer 2's owner.
        let mut b = B::new(7, QR_RD_RA, [1, 2, 0, 0]);
        b.q("a.example", rtype::A);
        let rd_at = b.0.len() as u16 + 12;
        let owner2 = rd_at + 2;
        b.ptr(12).rr_tail(rtype::NULL, 1, &(0xC000 | owner2).to_be_bytes());
        b.ptr(rd_at).rr_tail(rtype::A, 1, &[10, 0, 0, 1]);
        check(
            &b.done(),
            "id=7 R op=0 rcode=0 rd ra | q a.example A | a.example NULL 1 other/2 \
             | ns=0 ar=0 rdbytes=2 anom=0x11",
        );
        // Forward pointer in the question.
        let mut b = B::new(7, 0x0100, [1, 0, 0, 0]);
        b.ptr(18).u16(1).u16(1).name("a");
        check(&b.done(), "error dns_pointer_loop");
        // Forward pointer in the second answer: the first answer is kept.
        let mut b = B::new(8, QR_RD_RA, [1, 2, 0, 0]);
        b.q("a.example", rtype::A);
        b.ptr(12).rr_tail(rtype::A, 1, &[10, 0, 0, 1]);
        let at = b.0.len() as u16;
        b.ptr(at + 2).rr_tail(rtype::A, 1, &[10, 0, 0, 2]);
        check(
            &b.done(),
            "id=8 R op=0 rcode=0 rd ra | q a.example A | a.example A 1 10.0.0.1 \
             | ns=0 ar=0 rdbytes=4 anom=0x11",
        );
        // Looping pointer inside a CNAME's RDATA: the record stays, its data is Other.
        let mut b = B::new(9, QR_RD_RA, [1, 1, 0, 0]);
        b.q("a.example", rtype::CNAME);
        let rd_at = b.0.len() as u16 + 12;
        b.ptr(12).rr_tail(rtype::CNAME, 1, &(0xC000 | rd_at).to_be_bytes());
        check(
            &b.done(),
            "id=9 R op=0 rcode=0 rd ra | q a.example CNAME | a.example CNAME 1 other/2 \
             | ns=0 ar=0 rdbytes=2 anom=0x14",
        );
    }

    #[test]
    fn name_longer_than_255() {
        let long: Vec<&[u8]> = vec![&[b'x'; 63]; 4];
        let mut b = B::new(10, 0x0100, [1, 0, 0, 0]);
        b.labels(&long).name("").u16(1).u16(1);
        check(&b.done(), "error dns_name_too_long");
    }

    #[test]
    fn cut_header_and_question() {
        check(&[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0], "error dns_too_short");
        check(&[], "error dns_too_short");
        let mut b = B::new(11, 0x0100, [1, 0, 0, 0]);
        b.q("example.com", 1);
        let buf = b.done();
        check(&buf[..buf.len() - 1], "error dns_bad_question");
        check(&buf[..20], "error dns_bad_question");
        // Reserved label type in the question.
        let mut b = B::new(11, 0x0100, [1, 0, 0, 0]);
        b.bytes(&[0x41, 0]).u16(1).u16(1);
        check(&b.done(), "error dns_bad_question");
    }

    #[test]
    fn counts_promise_more_than_present() {
        let mut b = B::new(12, QR_RD_RA, [1, 3, 2, 1]);
        b.q("example.com", 1);
        b.ptr(12).rr_tail(rtype::A, 9, &[192, 0, 2, 1]);
        let buf = b.done();
        check(
            &buf,
            "id=12 R op=0 rcode=0 rd ra | q example.com A | example.com A 9 192.0.2.1 \
             | ns=2 ar=1 rdbytes=4 anom=0x8",
        );
        // Cut inside the record: truncated, nothing kept from it.
        check(
            &buf[..buf.len() - 2],
            "id=12 R op=0 rcode=0 rd ra | q example.com A | ns=2 ar=1 rdbytes=0 anom=0x1",
        );
        // Header only, qdcount 1: kept with CountMismatch.
        check(&buf[..12], "id=12 R op=0 rcode=0 rd ra | ns=2 ar=1 rdbytes=0 anom=0x8");
    }

    #[test]
    fn bad_rdata_and_trailing_bytes() {
        let mut b = B::new(13, QR_RD_RA, [1, 3, 0, 0]);
        b.q("example.com", 1);
        b.ptr(12).rr_tail(rtype::A, 1, &[1, 2, 3]);
        b.ptr(12).rr_tail(rtype::TXT, 1, b"\x05abc");
        b.ptr(12).rr_tail(rtype::CNAME, 1, b"\x01a\x00\x00");
        b.bytes(b"junk");
        check(
            &b.done(),
            "id=13 R op=0 rcode=0 rd ra | q example.com A | example.com A 1 other/3 \
             | example.com TXT 1 other/4 | example.com CNAME 1 other/4 \
             | ns=0 ar=0 rdbytes=11 anom=0x6",
        );
    }

    /// Cost per message on a typical A response (question, CNAME, two A, OPT). Not a test:
    /// `cargo test --release --lib parse_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn parse_speed() {
        let mut b = B::new(0x4242, QR_RD_RA, [1, 3, 0, 1]);
        b.q("www.example.com", rtype::A);
        b.ptr(12).rr_tail(rtype::CNAME, 300, &[4, b'e', b'd', b'g', b'e', 0xC0, 16]);
        b.ptr(45).rr_tail(rtype::A, 60, &[93, 184, 216, 34]);
        b.ptr(45).rr_tail(rtype::A, 60, &[93, 184, 216, 35]);
        b.name("").rr_tail(rtype::OPT, 0, &[]);
        let buf = b.done();
        let m = parse_message(&buf).unwrap();
        assert_eq!(m.answers.len(), 3);
        assert_eq!(m.anomalies, 0);
        // On-CPU time of this thread (ns), so a loaded machine does not inflate the figure.
        let cpu = || -> u64 {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
            s.split(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let n = 2_000_000u32;
        let c0 = cpu();
        let t0 = std::time::Instant::now();
        let mut total = 0usize;
        for _ in 0..n {
            let m = parse_message(std::hint::black_box(&buf)).unwrap();
            total += m.answers.len();
        }
        let ns = t0.elapsed().as_nanos() as f64 / f64::from(n);
        let cpu_ns = (cpu() - c0) as f64 / f64::from(n);
        println!(
            "parse_message: {cpu_ns:.1} ns/message on CPU, {ns:.1} wall ({} bytes, 3 answers)",
            buf.len()
        );
        let mut q = B::new(0x4242, 0x0100, [1, 0, 0, 0]);
        let query = q.q("www.example.com", rtype::A).done();
        let c0 = cpu();
        for _ in 0..n {
            total += parse_message(std::hint::black_box(&query)).unwrap().questions.len();
        }
        let cpu_ns = (cpu() - c0) as f64 / f64::from(n);
        assert_eq!(total, 4 * n as usize);
        println!("parse_message: {cpu_ns:.1} ns/message on CPU ({} byte A query)", query.len());
    }

    /// Small deterministic PRNG (xorshift64*) for the smoke loops; no dependency needed.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        /// A few random edits of `seed`: bit flips, interesting bytes, pointers, cuts,
        /// duplicated slices.
        pub fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
            let mut v = seed.to_vec();
            for _ in 0..1 + self.below(4) {
                let at = self.below(v.len());
                match self.below(7) {
                    0 if !v.is_empty() => v[at] ^= 1 << self.below(8),
                    1 if !v.is_empty() => v[at] = [0, 0xC0, 0xFF, 0x3F, 0x40, 1][self.below(6)],
                    2 => {
                        let ptr = [0xC0 | self.below(4) as u8, self.next() as u8];
                        v.splice(at..at, ptr);
                    }
                    3 => v.truncate(at),
                    4 if !v.is_empty() => {
                        let end = (at + self.below(32)).min(v.len());
                        let dup = v[at..end].to_vec();
                        let to = self.below(v.len());
                        v.splice(to..to, dup);
                    }
                    5 if v.len() > 12 => {
                        // Counts: a random header count set to something large or small.
                        let c = 4 + 2 * self.below(4);
                        v[c..c + 2].copy_from_slice(&(self.next() as u16 >> self.below(16)).to_be_bytes());
                    }
                    _ => {
                        let b = self.next() as u8;
                        v.insert(at, b);
                    }
                }
            }
            v
        }
    }

    /// Messages to mutate: built ones, plus DNS payloads from the shared captures if present.
    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = B::new(1, QR_RD_RA, [1, 2, 0, 1]);
        b.q("www.example.com", rtype::A);
        b.ptr(12).rr_tail(rtype::CNAME, 300, &[4, b'e', b'd', b'g', b'e', 0xC0, 16]);
        b.ptr(45).rr_tail(rtype::MX, 60, &[0, 1, 0xC0, 12]);
        b.name("").rr_tail(rtype::OPT, 0x0100_0000, &[]);
        out.push(b.done());
        let mut b = B::new(2, QR_RD_RA, [1, 1, 1, 0]);
        b.labels(&[b"\x80\xff\x01abc"]).name("pirate.sea").u16(rtype::NULL).u16(1);
        b.ptr(12).rr_tail(rtype::TXT, 1, b"\x03abc\x02\x00\xff");
        b.ptr(12).rr_tail(rtype::NS, 1, &[0xC0, 12]);
        out.push(b.done());
        for f in [
            "elastic_dns-tunnel-iodine.pcap",
            "suri_dns-a-aaaa-mx.pcap",
            "suri_dns-corrupt-additionals.pcap",
            "suri_dns-forward-pointer.pcap",
            "tcpdump_dnssec.pcap",
            "tcpdump_edns-opts.pcap",
            "zeek_dns_svcb-port-malformed.pcap",
            "zeek_dns-txt-multiple.pcap",
            "zeek_dns_max-compression-depth.pcap",
            "ndpi_dns_exfiltration.pcap",
        ] {
            if let Some(file) = capture(f) {
                // Every 7th message keeps the seed set small and varied.
                out.extend(udp53_payloads(&file).into_iter().step_by(7));
            }
        }
        out
    }

    /// The fuzz target's body on a few hundred thousand random and mutated inputs, so that
    /// `cargo test` checks no-panic without nightly (see fuzz/).
    #[test]
    fn fuzz_smoke_parse() {
        let seeds = seeds();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for i in 0..400_000 {
            let input = if i % 4 == 0 {
                let mut v = vec![0u8; rng.below(80)];
                v.iter_mut().for_each(|b| *b = rng.next() as u8);
                v
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                rng.mutate(seed)
            };
            fuzz_parse(&input);
            parsed += usize::from(parse_message(&input).is_ok());
        }
        // Mutants of real messages mostly still decode; the loop is not testing only errors.
        assert!(parsed > 100_000, "{parsed}");
    }

    /// A spare holding a recycled message's vectors whole: the next parse writes over their
    /// questions and records and cuts off the rest, coming out as a fresh parse does, with
    /// fewer, more or no records, and after a message that failed.
    #[test]
    fn stale_slots_are_written_over_and_cut() {
        let mut b = B::new(1, QR_RD_RA, [1, 3, 0, 0]);
        b.q("www.example.com", rtype::A);
        b.ptr(12).rr_tail(rtype::CNAME, 300, &[4, b'e', b'd', b'g', b'e', 0xC0, 16]);
        b.ptr(12).rr_tail(rtype::TXT, 60, b"\x03abc");
        b.ptr(12).rr_tail(rtype::A, 60, &[192, 0, 2, 1]);
        let big = b.done();
        let mut b = B::new(2, QR_RD_RA, [1, 1, 0, 0]);
        b.q("a.example", rtype::AAAA);
        b.ptr(12).rr_tail(rtype::AAAA, 5, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let small = b.done();
        let query = B::new(3, 0x0100, [1, 0, 0, 0]).q("b.example", rtype::A).done();
        // Cut inside the question's name.
        let bad = &big[..20];
        for lean in [false, true] {
            let mut spare = Spare::new(lean);
            for input in [&big[..], &small, &query, bad, &big, &query, &small, &big, &big] {
                let want = parse_message(input).map(|m| if lean { without_log_text(m) } else { m });
                let got = parse_message_reusing(input, &mut spare);
                assert_eq!(got, want, "{input:02x?}");
                if let Ok(m) = got {
                    spare.recycle(m);
                }
            }
        }
    }

    /// One long-lived `Spare` (lean and not), fed random and mutated messages and given
    /// them back in a shuffled order, as the worker does with a DNS log (it holds queries
    /// until their responses), parses each exactly as a fresh `parse_message` does.
    #[test]
    fn reused_spare_matches_fresh_parse() {
        let seeds = seeds();
        let mut rng = Rng(0xA076_1D64_78BD_642F);
        let mut spares = [Spare::new(false), Spare::new(true)];
        let mut held: [Vec<DnsMessage>; 2] = [Vec::new(), Vec::new()];
        for i in 0..100_000 {
            let input = if i % 5 == 0 {
                (0..rng.below(80)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                rng.mutate(seed)
            };
            let want = parse_message(&input);
            for (k, spare) in spares.iter_mut().enumerate() {
                let got = parse_message_reusing(&input, spare);
                let lean = spare.lean;
                assert_eq!(
                    got,
                    want.clone().map(|m| if lean { without_log_text(m) } else { m }),
                    "{input:02x?}"
                );
                if let Ok(m) = got {
                    held[k].push(m);
                }
                while held[k].len() > rng.below(6) {
                    let m = held[k].swap_remove(rng.below(held[k].len()));
                    spare.recycle(m);
                }
            }
        }
    }

    /// Survey, not a test: how every UDP/53 payload of every shared capture decodes.
    /// `cargo test --lib parse_survey -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn parse_survey() {
        let root = format!("{}/../../shared/captures/public", env!("CARGO_MANIFEST_DIR"));
        let Ok(dir) = std::fs::read_dir(&root) else {
            return;
        };
        let mut names: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let n = n.to_string_lossy().into_owned();
            let Some(file) = capture(&n) else { continue };
            let payloads = udp53_payloads(&file);
            if payloads.is_empty() {
                continue;
            }
            let mut errs = std::collections::BTreeMap::new();
            let mut anom = 0;
            for p in &payloads {
                match parse_message(p) {
                    Ok(m) => anom += usize::from(m.anomalies != 0),
                    Err(e) => *errs.entry(e.reason()).or_insert(0) += 1,
                }
            }
            println!("{n}: {} msgs, {anom} with anomalies, errors {errs:?}", payloads.len());
        }
    }

    /// A capture from `shared/captures/public`, found beside the repo (`../shared`, or
    /// `../../shared` from a worktree), or None (with a note) when the captures are absent.
    pub(crate) fn capture(name: &str) -> Option<Vec<u8>> {
        let root = env!("CARGO_MANIFEST_DIR");
        for up in ["..", "../.."] {
            if let Ok(b) = std::fs::read(format!("{root}/{up}/shared/captures/public/{name}")) {
                return Some(b);
            }
        }
        println!("skipping: {name} not found (shared captures absent)");
        None
    }

    /// UDP payloads to or from port 53 in a classic Ethernet pcap.
    pub(crate) fn udp53_payloads(file: &[u8]) -> Vec<Vec<u8>> {
        let Ok(cap) = pcap_parser::PcapCapture::from_file(file) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for blk in &cap.blocks {
            let Ok(p) = etherparse::SlicedPacket::from_ethernet(blk.data) else {
                continue;
            };
            if let Some(etherparse::TransportSlice::Udp(u)) = &p.transport {
                if u.source_port() == 53 || u.destination_port() == 53 {
                    out.push(u.payload().to_vec());
                }
            }
        }
        out
    }

    #[test]
    fn iodine_capture_every_message_parses() {
        // elastic/examples dns-tunnel-iodine.pcap: 434 DNS messages per tshark, NULL records
        // and base128 labels.
        let Some(file) = capture("elastic_dns-tunnel-iodine.pcap") else {
            return;
        };
        let payloads = udp53_payloads(&file);
        assert_eq!(payloads.len(), 434);
        let mut high_bit_names = 0;
        let mut null_answers = 0;
        for p in &payloads {
            let m = parse_message(p).unwrap_or_else(|e| panic!("{e:?} on {p:02x?}"));
            assert_eq!(m.questions.len(), 1);
            let q = &m.questions[0];
            assert!(q.name.ends_with("pirate.sea"), "{}", q.name);
            if q.name.contains("\\2") || q.name.contains("\\1") {
                high_bit_names += 1;
            }
            null_answers += m.answers.iter().filter(|r| r.rtype == rtype::NULL).count();
        }
        assert!(high_bit_names > 50, "base128 names: {high_bit_names}");
        assert!(null_answers > 50, "NULL answers: {null_answers}");
    }
}
