//! NSM logs in, the same detections out: Zeek dns.log/conn.log (TSV or JSON, plain or gzip)
//! and Suricata eve.json (dns v1/v2, flow, netflow) are turned into the DNS messages and
//! SYNs the sensor would have seen on the wire, merged in time order across files, and fed
//! to `pipeline::Engine`.
//!
//! Layout: `wire` renders a DNS message from log fields; `zeek` and `eve` turn one line into
//! zero or more `Event`s; this module opens and sniffs the files, reads bounded lines, keeps a
//! small reorder buffer per file (Zeek writes a record when its transaction or connection
//! ends, and a response lands at ts + rtt, so a file is only nearly sorted) and does the
//! k-way merge.
//!
//! Error policy: a file that is not a log of the kind asked for fails before anything runs
//! (`FILE: reason`); a line that does not parse is counted by reason, with its first line
//! numbers, and the rest of the file is still read.

pub mod eve;
pub mod wire;
pub mod zeek;

use crate::config::Config;
use crate::pipeline::{Engine, Flow, Outputs, Progress, RunReport};
pub use crate::time::parse_iso;
use crate::Nanos;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest line we read: a Zeek dns.log line with a long TXT answer set is a few KiB; a
/// megabyte is no log line, and reading on would hold unbounded memory.
pub const MAX_LINE: usize = 1 << 20;
/// Events held per file to put a nearly sorted file in order. Zeek's dns.log is written at
/// transaction end (a 10 s timeout at most) and conn.log at connection end; a few thousand
/// records cover that at usual rates. Events later than this window are fed late (counted).
pub const REORDER_EVENTS: usize = 8192;
/// Line numbers kept per error reason, for the summary.
pub const FIRST_LINES: usize = 5;

/// What the user said a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ZeekDns,
    ZeekConn,
    Eve,
}

impl Kind {
    pub fn flag(self) -> &'static str {
        match self {
            Kind::ZeekDns => "--zeek-dns",
            Kind::ZeekConn => "--zeek-conn",
            Kind::Eve => "--eve",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub kind: Kind,
}

/// What a line became: events for the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Dns { ts: Nanos, flow: Flow, wire: Vec<u8> },
    Syn { ts: Nanos, flow: Flow },
}

impl Event {
    pub fn ts(&self) -> Nanos {
        match self {
            Event::Dns { ts, .. } | Event::Syn { ts, .. } => *ts,
        }
    }
}

/// How one line was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A header or comment line (`#fields`, `#close`...), or an empty line.
    Header,
    /// A record of the kind asked for (it may yield no event: a UDP connection, mDNS).
    Record,
    /// A valid line of another kind the file may carry (eve `http`, `stats`...).
    Skipped,
}

/// A line that did not parse: the reason, fixed text so that it can be counted.
pub type LineError = &'static str;

#[derive(Clone, Debug, Default)]
pub struct ErrorTally {
    pub count: u64,
    pub first_lines: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub path: String,
    /// "zeek-tsv dns", "zeek-json conn", "eve"...; with "+gzip" when compressed.
    pub format: String,
    pub lines: u64,
    pub headers: u64,
    pub records: u64,
    pub skipped: u64,
    pub dns_messages: u64,
    pub syns: u64,
    /// Events that came later than the reorder window allowed (fed anyway).
    pub late: u64,
    pub errors: BTreeMap<&'static str, ErrorTally>,
}

impl FileReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    fn error(&mut self, reason: LineError, line: u64) {
        let e = self.errors.entry(reason).or_default();
        e.count += 1;
        if e.first_lines.len() < FIRST_LINES {
            e.first_lines.push(line);
        }
    }

    /// One line for the summary, then one per error reason.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "ingest: {}: {}: lines={} records={} headers={} skipped={} errors={} dns_messages={} syns={} late={}\n",
            self.path,
            self.format,
            self.lines,
            self.records,
            self.headers,
            self.skipped,
            self.error_count(),
            self.dns_messages,
            self.syns,
            self.late
        );
        for (reason, t) in &self.errors {
            let lines: Vec<String> = t.first_lines.iter().map(|l| l.to_string()).collect();
            s.push_str(&format!(
                "  {reason}: {} (lines {}{})\n",
                t.count,
                lines.join(", "),
                if t.count > t.first_lines.len() as u64 { ", ..." } else { "" }
            ));
        }
        s
    }
}

pub struct IngestReport {
    pub files: Vec<FileReport>,
    pub run: RunReport,
}

/// `event.module` for alerts from these inputs.
pub fn event_module(inputs: &[Input]) -> &'static str {
    let zeek = inputs.iter().any(|i| i.kind != Kind::Eve);
    let eve = inputs.iter().any(|i| i.kind == Kind::Eve);
    match (zeek, eve) {
        (true, true) => "nsm",
        (false, true) => "suricata",
        _ => "zeek",
    }
}

/// The parser state of one file, chosen by sniffing its first lines.
#[allow(clippy::large_enum_variant)] // one per file, never moved in a hot loop
enum Format {
    ZeekTsv(zeek::TsvState),
    ZeekJson(zeek::JsonState),
    Eve(eve::EveState),
}

/// A pending event in a file's reorder buffer, ordered by time then by arrival.
struct Pending {
    ts: Nanos,
    seq: u64,
    ev: Event,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (o.ts, o.seq).cmp(&(self.ts, self.seq))
    }
}

/// One opened, sniffed input file.
pub struct Source {
    reader: Box<dyn BufRead + Send>,
    format: Format,
    report: FileReport,
    /// A line read while sniffing, not yet processed.
    lookahead: Vec<Vec<u8>>,
    line_no: u64,
    buf: BinaryHeap<Pending>,
    seq: u64,
    eof: bool,
    line: Vec<u8>,
    scratch: Vec<Event>,
}

/// Opens a file, undoing gzip when its first two bytes say so (never by name).
fn open_reader(path: &Path) -> io::Result<(Box<dyn BufRead + Send>, bool)> {
    let f = File::open(path)?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    if gz {
        let d = flate2::read::MultiGzDecoder::new(r);
        Ok((Box::new(BufReader::with_capacity(1 << 16, d)), true))
    } else {
        Ok((Box::new(r), false))
    }
}

/// Reads one line into `buf` (without the newline or a trailing CR). `Ok(None)` at end of
/// file; `Ok(Some(false))` when the line was longer than `MAX_LINE` (the rest is skipped).
fn read_line(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut fits = true;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        any = true;
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (avail.get(..i).unwrap_or_default(), i + 1, true),
            None => (avail, avail.len(), false),
        };
        if fits && buf.len() + chunk.len() <= MAX_LINE {
            buf.extend_from_slice(chunk);
        } else {
            fits = false;
        }
        r.consume(used);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(fits))
}

/// Capture files someone might pass by mistake, by their magic numbers.
fn capture_magic(head: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    head.get(..4).is_some_and(|h| MAGICS.iter().any(|m| m == h))
}

/// Lines read while sniffing before giving up on finding the header's end.
const SNIFF_LINES: usize = 64;

impl Source {
    /// Opens and sniffs the file: a file that is not the kind of log asked for is an error
    /// here, with a reason fit for `portent: FILE: reason`.
    pub fn open(input: &Input) -> Result<Source, String> {
        let name = input.path.display().to_string();
        let fail = |why: String| format!("{name}: {why}");
        let (mut reader, gz) = open_reader(&input.path).map_err(|e| fail(e.to_string()))?;
        let head = reader.fill_buf().map_err(|e| fail(format!("cannot read: {e}")))?;
        if capture_magic(head) {
            return Err(fail("a packet capture, not a log (use `portent replay`)".into()));
        }
        let mut lookahead = Vec::new();
        let mut line = Vec::new();
        let mut first: Option<Vec<u8>> = None;
        // Header lines (or blank lines) until the first data line, kept to be replayed.
        while lookahead.len() < SNIFF_LINES {
            match read_line(reader.as_mut(), &mut line) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(fail(format!("cannot read: {e}"))),
            }
            lookahead.push(line.clone());
            let t = line.trim_ascii();
            if t.is_empty() || t.starts_with(b"#") {
                continue;
            }
            first = Some(t.to_vec());
            break;
        }
        let headers: Vec<&[u8]> =
            lookahead.iter().map(|l| l.trim_ascii()).filter(|l| l.starts_with(b"#")).collect();
        let (format, label) = if !headers.is_empty() && first.as_ref().map_or(true, |f| !f.starts_with(b"{"))
        {
            if input.kind == Kind::Eve {
                return Err(fail(
                    "a Zeek TSV log, not Suricata eve.json (give it with --zeek-dns or --zeek-conn)".into(),
                ));
            }
            let st = zeek::TsvState::from_headers(&headers, input.kind).map_err(fail)?;
            let label = format!("zeek-tsv {}", st.path_label());
            (Format::ZeekTsv(st), label)
        } else if let Some(f) = &first {
            if f.starts_with(b"{") {
                let v: serde_json::Value = serde_json::from_slice(f).map_err(|_| {
                    fail("the first line is not valid JSON, so not a Zeek JSON log or eve.json".into())
                })?;
                if v.get("event_type").is_some() {
                    if input.kind != Kind::Eve {
                        return Err(fail(format!(
                            "Suricata eve.json, not a Zeek {} log (give it with --eve)",
                            if input.kind == Kind::ZeekDns { "dns" } else { "conn" }
                        )));
                    }
                    (Format::Eve(eve::EveState::default()), "eve".to_string())
                } else if input.kind == Kind::Eve {
                    return Err(fail("JSON without event_type: not Suricata eve.json".into()));
                } else {
                    let st = zeek::JsonState::sniff(&v, input.kind).map_err(fail)?;
                    let label = format!("zeek-json {}", st.path_label());
                    (Format::ZeekJson(st), label)
                }
            } else if std::str::from_utf8(f).is_err() {
                return Err(fail("binary data, not a Zeek log or eve.json".into()));
            } else {
                return Err(fail(
                    "not a Zeek log or eve.json: the first line is neither a '#' header nor a JSON object"
                        .into(),
                ));
            }
        } else {
            // Empty file, or only blank lines: nothing to read, nothing wrong.
            let st = match input.kind {
                Kind::Eve => Format::Eve(eve::EveState::default()),
                k => Format::ZeekJson(zeek::JsonState::empty(k)),
            };
            (st, "empty".to_string())
        };
        let report = FileReport {
            path: name,
            format: if gz { format!("{label}+gzip") } else { label },
            ..FileReport::default()
        };
        lookahead.reverse();
        Ok(Source {
            reader,
            format,
            report,
            lookahead,
            line_no: 0,
            buf: BinaryHeap::new(),
            seq: 0,
            eof: false,
            line: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Reads lines until the reorder buffer is full or the file ends.
    fn fill(&mut self) {
        while !self.eof && self.buf.len() < REORDER_EVENTS {
            self.step();
        }
    }

    /// Reads and handles one line.
    fn step(&mut self) {
        let got = match self.lookahead.pop() {
            Some(l) => {
                self.line = l;
                Ok(Some(true))
            }
            None => read_line(self.reader.as_mut(), &mut self.line),
        };
        let fits = match got {
            Ok(Some(fits)) => fits,
            Ok(None) => {
                self.end();
                return;
            }
            Err(_) => {
                // A gzip stream cut short, a disk error: what was read stands.
                self.report.error("file unreadable from here on (cut short or corrupt)", self.line_no + 1);
                self.end();
                return;
            }
        };
        self.line_no += 1;
        self.report.lines += 1;
        if !fits {
            self.report.error("line longer than 1 MiB", self.line_no);
            return;
        }
        let line = std::mem::take(&mut self.line);
        let r = match &mut self.format {
            Format::ZeekTsv(st) => st.line(&line, &mut self.scratch),
            Format::ZeekJson(st) => st.line(&line, &mut self.scratch),
            Format::Eve(st) => st.line(&line, &mut self.scratch),
        };
        self.line = line;
        match r {
            Ok(Line::Header) => self.report.headers += 1,
            Ok(Line::Record) => self.report.records += 1,
            Ok(Line::Skipped) => self.report.skipped += 1,
            Err(why) => self.report.error(why, self.line_no),
        }
        self.take_scratch();
    }

    fn end(&mut self) {
        self.eof = true;
        if let Format::Eve(st) = &mut self.format {
            st.finish(&mut self.scratch);
        }
        self.take_scratch();
    }

    fn take_scratch(&mut self) {
        for ev in self.scratch.drain(..) {
            match ev {
                Event::Dns { .. } => self.report.dns_messages += 1,
                Event::Syn { .. } => self.report.syns += 1,
            }
            self.seq += 1;
            self.buf.push(Pending { ts: ev.ts(), seq: self.seq, ev });
        }
    }

    fn peek(&self) -> Option<(Nanos, u64)> {
        self.buf.peek().map(|p| (p.ts, p.seq))
    }

    pub fn report(&self) -> &FileReport {
        &self.report
    }
}

/// Opens every input; the first that is not the log asked for stops here.
pub fn open_all(inputs: &[Input]) -> Result<Vec<Source>, String> {
    inputs.iter().map(Source::open).collect()
}

/// Feeds every source through the engine in time order and reports.
pub fn run(
    sources: Vec<Source>,
    cfg: &Config,
    outputs: Outputs,
    progress: Arc<Progress>,
) -> Result<IngestReport, String> {
    let mut engine = Engine::start(cfg, outputs, progress)?;
    let files = feed(sources, |ev| {
        match ev {
            Event::Dns { ts, flow, wire } => engine.dns_message(ts, flow, &wire),
            Event::Syn { ts, flow } => engine.syn(ts, flow),
        }
        !engine.aborted()
    });
    let run = engine.finish(Vec::new())?;
    Ok(IngestReport { files, run })
}

/// The k-way merge: every step takes the earliest event among the files' buffers (ties go
/// to the file given first, then to the order read). `sink` returns false to stop.
pub fn feed(mut sources: Vec<Source>, mut sink: impl FnMut(Event) -> bool) -> Vec<FileReport> {
    let mut last: Nanos = 0;
    loop {
        let mut best: Option<(Nanos, usize, u64)> = None;
        for (i, s) in sources.iter_mut().enumerate() {
            s.fill();
            if let Some((ts, seq)) = s.peek() {
                if best.map_or(true, |b| (ts, i, seq) < b) {
                    best = Some((ts, i, seq));
                }
            }
        }
        let Some((_, i, _)) = best else {
            break;
        };
        let Some(p) = sources.get_mut(i).and_then(|s| s.buf.pop()) else {
            break;
        };
        if p.ts < last {
            if let Some(s) = sources.get_mut(i) {
                s.report.late += 1;
            }
        }
        last = last.max(p.ts);
        if !sink(p.ev) {
            break;
        }
    }
    sources.into_iter().map(|s| s.report).collect()
}

/// Seconds since the epoch as text ("1517336042.279652", "-3", "1e9") → Nanos. Exact for
/// decimal text; negative or absurd times are refused.
pub fn parse_epoch(s: &str) -> Option<Nanos> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let secs: u64 = int.parse().ok()?;
        let mut ns: u64 = 0;
        for i in 0..9 {
            ns = ns * 10 + frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        }
        return secs.checked_mul(crate::NANOS_PER_SEC)?.checked_add(ns);
    }
    // Exponent forms: through f64 (microsecond precision at today's epoch).
    let f: f64 = s.parse().ok()?;
    secs_f64(f)
}

/// Float seconds → Nanos; refuses negative, NaN and out-of-range values.
pub fn secs_f64(f: f64) -> Option<Nanos> {
    if !f.is_finite() || !(0.0..=1.0e10).contains(&f) {
        return None;
    }
    Some((f * 1e9).round() as Nanos)
}

/// The ports the replay path would not analyse as DNS (mDNS, LLMNR), unless port 53 is on
/// one side: feeding them would flag service-discovery names the packet path never sees.
pub fn not_unicast_dns(flow: &Flow) -> bool {
    use crate::pipeline::{DNS_PORT, LLMNR_PORT, MDNS_PORT};
    let ports = [flow.sport, flow.dport];
    !ports.contains(&DNS_PORT) && (ports.contains(&MDNS_PORT) || ports.contains(&LLMNR_PORT))
}

pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_text_is_exact() {
        assert_eq!(parse_epoch("1517336042.279652"), Some(1_517_336_042_279_652_000));
        assert_eq!(parse_epoch("1517336042"), Some(1_517_336_042_000_000_000));
        assert_eq!(parse_epoch("1.5e9"), Some(1_500_000_000_000_000_000));
        assert_eq!(parse_epoch("-1"), None);
        assert_eq!(parse_epoch("XXXXXXXXXX.XXXXXX"), None);
    }

    #[test]
    fn iso_times_with_every_zone_form() {
        let t = 1_521_911_720_865_716_000; // 2018-03-24T17:15:20.865716Z
        assert_eq!(parse_iso("2018-03-24T17:15:20.865716Z"), Some(t));
        assert_eq!(parse_iso("2018-03-24T17:15:20.865716+0000"), Some(t));
        assert_eq!(parse_iso("2018-03-24T19:15:20.865716+02:00"), Some(t));
        assert_eq!(parse_iso("2018-03-24T16:15:20.865716-0100"), Some(t));
        assert_eq!(parse_iso("2018-03-24T17:15:20.865716"), Some(t));
        assert_eq!(parse_iso("2000-02-29T00:00:00Z"), Some(951_782_400_000_000_000));
        assert_eq!(
            crate::time::rfc3339(parse_iso("2019-08-22T23:48:27.924120+0000").unwrap()),
            "2019-08-22T23:48:27.924120Z"
        );
        assert_eq!(parse_iso("2018-13-24T17:15:20Z"), None);
        assert_eq!(parse_iso("2018-03-24 17:15"), None);
        assert_eq!(parse_iso("2018-03-24T17:15:20.Z"), None);
    }

    #[test]
    fn long_lines_are_cut_and_flagged_not_held() {
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.extend_from_slice(b"\nshort\r\n");
        let mut r = io::Cursor::new(data);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf).unwrap(), Some(false));
        assert!(buf.len() <= MAX_LINE);
        assert_eq!(read_line(&mut r, &mut buf).unwrap(), Some(true));
        assert_eq!(buf, b"short");
        assert_eq!(read_line(&mut r, &mut buf).unwrap(), None);
    }

    #[test]
    fn mdns_is_not_fed_but_dns_on_5353_client_port_is() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let f = |sport, dport| Flow { src: ip, sport, dst: ip, dport };
        assert!(not_unicast_dns(&f(5353, 5353)));
        assert!(!not_unicast_dns(&f(5353, 53)));
        assert!(!not_unicast_dns(&f(40000, 53)));
        assert!(!not_unicast_dns(&f(40000, 5300)));
    }
}
