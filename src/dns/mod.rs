//! DNS messages: parsing wire bytes into owned records, and DNS-over-TCP framing.
//!
//! `parse` turns one message into a `DnsMessage`; `tcp` turns TCP segments into messages.
//! Neither does I/O.

pub mod name;
pub mod parse;
pub mod tcp;
pub mod txn;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use parse::{parse_message, parse_message_reusing, ParseError, Spare};

/// One DNS message, owned, with everything the detectors and the DNS log need.
///
/// Names are in presentation format (as `dig` prints them, no trailing dot, root is "."),
/// with bytes outside printable ASCII and the characters `.` and `\` inside a label escaped
/// as `\DDD` (RFC 1035 §5.1), so that iodine's 8-bit labels survive into text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    /// Header RCODE (4 bits), extended with the OPT record's upper bits when present.
    pub rcode: u16,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    pub questions: Vec<Question>,
    /// The answer section only; authority and additional records are counted, not kept.
    pub answers: Vec<Record>,
    pub authority_count: u16,
    pub additional_count: u16,
    /// Total bytes of RDATA in the answer section (downstream volume for the tunnel detector).
    pub answer_rdata_bytes: u32,
    /// Recoverable oddities seen while parsing (bit set of `Anomaly`).
    pub anomalies: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdlen: u16,
    pub data: RData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME, NS, PTR, DNAME: a single domain name.
    Name(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// TXT character-strings, each escaped like a label (printable ASCII kept, `\DDD` else).
    Txt(Vec<String>),
    /// Any other type (NULL, HTTPS, SVCB, DNSSEC, private types...): kept as length only;
    /// the message around it still decodes.
    Other,
}

/// Recoverable oddities, as bits in `DnsMessage::anomalies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Anomaly {
    /// A record in the answer, authority or additional section did not parse; the sections
    /// before it are kept.
    RecordsTruncated = 1 << 0,
    /// Bytes left after the last record the header announced.
    TrailingBytes = 1 << 1,
    /// A record's RDATA did not parse as its type says (kept as `RData::Other`).
    BadRdata = 1 << 2,
    /// The header's counts promise more than the message holds.
    CountMismatch = 1 << 3,
    /// A compression pointer in a record (or its RDATA) pointed forward, at itself or in a
    /// cycle; set with `RecordsTruncated` or `BadRdata`.
    BadPointer = 1 << 4,
    /// A name in a record (or its RDATA) was longer than 255 octets on the wire.
    NameTooLong = 1 << 5,
}

impl DnsMessage {
    pub fn has(&self, a: Anomaly) -> bool {
        self.anomalies & (a as u16) != 0
    }
}

pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const NULL: u16 = 10;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const DNAME: u16 = 39;
    pub const OPT: u16 = 41;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    pub const ANY: u16 = 255;
}

/// Mnemonic for a record type, or `TYPEnnn` (RFC 3597) for one without a name.
pub fn rtype_name(t: u16) -> std::borrow::Cow<'static, str> {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return std::borrow::Cow::Owned(format!("TYPE{t}")),
    };
    std::borrow::Cow::Borrowed(s)
}

/// Mnemonic for a response code (RFC 6895 registry), or `RCODEnnn`.
pub fn rcode_name(r: u16) -> std::borrow::Cow<'static, str> {
    let s = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        _ => return std::borrow::Cow::Owned(format!("RCODE{r}")),
    };
    std::borrow::Cow::Borrowed(s)
}
