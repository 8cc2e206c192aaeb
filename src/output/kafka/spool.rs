//! The on-disk spool: records that could not go to the broker yet, in order, in segment
//! files, bounded in bytes.
//!
//! One `Spool` holds one kind of record (alerts or DNS records) so that the drop policy can
//! throw away DNS records before alerts without rewriting files. A segment is a file
//! `PREFIX-ID.spool` of lines `KEY<TAB>PAYLOAD<LF>`: the payload is one JSON text, which never
//! holds a raw tab or newline (JSON escapes them), and the key is an IP address. Segments are
//! read back in ID order; the newest one is open for appending. Records put back at exit
//! (`prepend`) get an ID below the oldest, so they go out first on the next start.
//!
//! A crash can leave the last line cut short: `open` cuts every segment back to its last
//! whole line and counts what it threw away.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The first ID of an empty spool: far from 0, so that many exits can each put records
/// back in front.
const FRESH_ID: u64 = 1 << 40;

/// One record for the broker: the message key (the client's address) and the NDJSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub kind: Kind,
    pub key: Box<str>,
    pub payload: Box<str>,
}

/// Which topic a record goes to; also the spool it waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Alert,
    Dns,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Alert => "alerts",
            Kind::Dns => "dns",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Kind::Alert => 0,
            Kind::Dns => 1,
        }
    }
}

impl Rec {
    pub fn new(kind: Kind, key: &str, payload: &str) -> Rec {
        Rec { kind, key: key.into(), payload: payload.into() }
    }

    /// Bytes this record takes in a segment.
    pub fn spool_len(&self) -> u64 {
        (self.key.len() + self.payload.len() + 2) as u64
    }
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
}

/// What `open` found from an earlier run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    /// Bytes cut from the end of segments (a record cut short by a crash).
    pub torn_bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    prefix: &'static str,
    /// A segment is closed once it holds this many bytes.
    segment_bytes: u64,
    /// Oldest first.
    segs: VecDeque<Segment>,
    /// The newest segment, open for appending: (its ID, the file).
    writer: Option<(u64, BufWriter<File>)>,
    bytes: u64,
    records: u64,
}

impl Spool {
    /// Opens (creating the directory if needed) the segments of `kind` under `dir`.
    pub fn open(dir: &Path, kind: Kind, segment_bytes: u64) -> io::Result<(Spool, Recovered)> {
        fs::create_dir_all(dir).map_err(|e| with_path(dir, e))?;
        let prefix = kind.name();
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| with_path(dir, e))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| parse_name(prefix, n)) else {
                continue;
            };
            found.push(id);
        }
        found.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            prefix,
            segment_bytes: segment_bytes.max(1),
            segs: VecDeque::new(),
            writer: None,
            bytes: 0,
            records: 0,
        };
        let mut rec = Recovered::default();
        for id in found {
            let path = spool.path(id);
            let (bytes, records, torn) = repair(&path)?;
            rec.torn_bytes += torn;
            if records == 0 {
                fs::remove_file(&path).map_err(|e| with_path(&path, e))?;
                continue;
            }
            spool.segs.push_back(Segment { id, bytes, records });
            spool.bytes += bytes;
            spool.records += records;
            rec.segments += 1;
            rec.records += records;
            rec.bytes += bytes;
        }
        Ok((spool, rec))
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{}-{id:020}.spool", self.prefix))
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// Appends one record at the back. A record with a newline in it cannot be framed; it
    /// is refused (records here are serde_json output, which never has one).
    pub fn append(&mut self, r: &Rec) -> io::Result<()> {
        if r.payload.contains('\n') || r.key.contains(['\n', '\t']) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a record with a raw newline or tab"));
        }
        let full = self.segs.back().map_or(true, |s| s.bytes >= self.segment_bytes);
        if self.writer.is_none() || full {
            self.close_writer()?;
            let id = match self.segs.back() {
                Some(s) => s.id.checked_add(1).ok_or_else(ids_exhausted)?,
                None => FRESH_ID,
            };
            let path = self.path(id);
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| with_path(&path, e))?;
            self.writer = Some((id, BufWriter::with_capacity(64 << 10, f)));
            self.segs.push_back(Segment { id, bytes: 0, records: 0 });
        }
        let (Some((_, w)), Some(seg)) = (self.writer.as_mut(), self.segs.back_mut()) else {
            return Err(io::Error::other("spool writer lost"));
        };
        w.write_all(r.key.as_bytes())?;
        w.write_all(b"\t")?;
        w.write_all(r.payload.as_bytes())?;
        w.write_all(b"\n")?;
        let n = r.spool_len();
        seg.bytes += n;
        seg.records += 1;
        self.bytes += n;
        self.records += 1;
        Ok(())
    }

    /// Hands what was appended to the OS (not to the disk: that is `sync`).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some((_, w)) => w.flush(),
            None => Ok(()),
        }
    }

    fn close_writer(&mut self) -> io::Result<()> {
        if let Some((_, mut w)) = self.writer.take() {
            w.flush()?;
        }
        Ok(())
    }

    /// Removes the oldest segment and returns its records, in order.
    pub fn take_front(&mut self, kind: Kind) -> io::Result<Option<Vec<Rec>>> {
        let Some(seg) = self.segs.pop_front() else {
            return Ok(None);
        };
        if self.writer.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.close_writer()?;
        }
        let path = self.path(seg.id);
        let mut text = Vec::with_capacity(seg.bytes as usize);
        File::open(&path).and_then(|mut f| f.read_to_end(&mut text)).map_err(|e| with_path(&path, e))?;
        let recs = parse_segment(&text, kind);
        fs::remove_file(&path).map_err(|e| with_path(&path, e))?;
        self.bytes -= seg.bytes.min(self.bytes);
        self.records -= seg.records.min(self.records);
        Ok(Some(recs))
    }

    /// Deletes the oldest segment unread (the spool is full): (records, bytes) thrown away.
    pub fn drop_front(&mut self) -> Option<(u64, u64)> {
        let seg = self.segs.pop_front()?;
        if self.writer.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            // Its buffered lines go with it.
            self.writer = None;
        }
        let _ = fs::remove_file(self.path(seg.id));
        self.bytes -= seg.bytes.min(self.bytes);
        self.records -= seg.records.min(self.records);
        Some((seg.records, seg.bytes))
    }

    /// Writes `recs` as a new oldest segment, synced to disk: what could not be delivered
    /// before exit goes out first on the next start.
    pub fn prepend(&mut self, recs: &[Rec]) -> io::Result<()> {
        let recs: Vec<&Rec> =
            recs.iter().filter(|r| !r.payload.contains('\n') && !r.key.contains(['\n', '\t'])).collect();
        if recs.is_empty() {
            return Ok(());
        }
        let id = match self.segs.front() {
            Some(s) => s.id.checked_sub(1).ok_or_else(ids_exhausted)?,
            None => FRESH_ID,
        };
        let path = self.path(id);
        let mut text = Vec::new();
        for r in &recs {
            text.extend_from_slice(r.key.as_bytes());
            text.push(b'\t');
            text.extend_from_slice(r.payload.as_bytes());
            text.push(b'\n');
        }
        let mut f =
            OpenOptions::new().create_new(true).write(true).open(&path).map_err(|e| with_path(&path, e))?;
        f.write_all(&text).and_then(|_| f.sync_all()).map_err(|e| with_path(&path, e))?;
        let seg = Segment { id, bytes: text.len() as u64, records: recs.len() as u64 };
        self.segs.push_front(seg);
        self.bytes += seg.bytes;
        self.records += seg.records;
        Ok(())
    }

    /// Flushes and syncs the open segment (at exit).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some((_, w)) = self.writer.as_mut() {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        Ok(())
    }
}

fn ids_exhausted() -> io::Error {
    io::Error::other("spool segment numbers exhausted; move the spool directory away")
}

fn with_path(p: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

/// `alerts-00000000001099511627776.spool` → its ID.
fn parse_name(prefix: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?.strip_suffix(".spool")?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Cuts a segment back to its last whole line: (bytes kept, records, bytes cut).
fn repair(path: &Path) -> io::Result<(u64, u64, u64)> {
    let mut text = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut text)).map_err(|e| with_path(path, e))?;
    let keep = text.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let torn = (text.len() - keep) as u64;
    if torn > 0 {
        let f = OpenOptions::new().write(true).open(path).map_err(|e| with_path(path, e))?;
        f.set_len(keep as u64).map_err(|e| with_path(path, e))?;
    }
    let records = text.get(..keep).unwrap_or(&[]).iter().filter(|b| **b == b'\n').count() as u64;
    Ok((keep as u64, records, torn))
}

/// The records of one segment; a line without a tab or not UTF-8 (damage) is skipped.
fn parse_segment(text: &[u8], kind: Kind) -> Vec<Rec> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Some((key, payload)) = line.split_once('\t') {
            out.push(Rec::new(kind, key, payload));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("portent-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn rec(i: usize) -> Rec {
        Rec::new(Kind::Dns, &format!("10.0.0.{}", i % 250), &format!("{{\"n\":{i}}}"))
    }

    fn drain(s: &mut Spool, kind: Kind) -> Vec<Rec> {
        let mut out = Vec::new();
        while let Some(v) = s.take_front(kind).unwrap() {
            out.extend(v);
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_segments() {
        let d = tmp("order");
        let (mut s, rec0) = Spool::open(&d, Kind::Dns, 100).unwrap();
        assert_eq!(rec0, Recovered::default());
        let all: Vec<Rec> = (0..50).map(rec).collect();
        for r in &all {
            s.append(r).unwrap();
        }
        assert!(s.segments() > 5, "{} segments", s.segments());
        assert_eq!(s.records(), 50);
        assert_eq!(s.bytes(), all.iter().map(Rec::spool_len).sum::<u64>());
        assert_eq!(drain(&mut s, Kind::Dns), all);
        assert!(s.is_empty());
        assert_eq!((s.bytes(), s.segments()), (0, 0));
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0, "every segment file is gone");
        // Appending after draining starts again.
        s.append(&rec(7)).unwrap();
        assert_eq!(drain(&mut s, Kind::Dns), vec![rec(7)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn reopening_finds_what_an_earlier_run_left_in_order() {
        let d = tmp("reopen");
        let all: Vec<Rec> = (0..30).map(rec).collect();
        {
            let (mut s, _) = Spool::open(&d, Kind::Dns, 120).unwrap();
            for r in &all[10..] {
                s.append(r).unwrap();
            }
            // What was in flight at exit goes back in front.
            s.prepend(&all[..10]).unwrap();
            s.sync().unwrap();
        }
        let (mut s, found) = Spool::open(&d, Kind::Dns, 120).unwrap();
        assert_eq!(found.records, 30);
        assert_eq!(found.bytes, all.iter().map(Rec::spool_len).sum::<u64>());
        assert_eq!(found.torn_bytes, 0);
        // New records go after the old ones.
        s.append(&rec(99)).unwrap();
        let mut want = all.clone();
        want.push(rec(99));
        assert_eq!(drain(&mut s, Kind::Dns), want);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_record_cut_by_a_crash_is_cut_away_and_counted() {
        let d = tmp("torn");
        {
            let (mut s, _) = Spool::open(&d, Kind::Alert, 1 << 20).unwrap();
            s.append(&rec(1)).unwrap();
            s.append(&rec(2)).unwrap();
            s.sync().unwrap();
        }
        let seg = fs::read_dir(&d).unwrap().next().unwrap().unwrap().path();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"10.0.0.3\t{\"n\":").unwrap();
        drop(f);
        let (mut s, found) = Spool::open(&d, Kind::Alert, 1 << 20).unwrap();
        assert_eq!((found.records, found.torn_bytes), (2, 14));
        let got = drain(&mut s, Kind::Alert);
        assert_eq!(got.iter().map(|r| &*r.payload).collect::<Vec<_>>(), ["{\"n\":1}", "{\"n\":2}"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn drop_front_throws_away_the_oldest_segment_and_says_how_much() {
        let d = tmp("drop");
        let (mut s, _) = Spool::open(&d, Kind::Dns, 40).unwrap();
        for i in 0..6 {
            s.append(&rec(i)).unwrap();
        }
        let before = s.records();
        let (n, bytes) = s.drop_front().unwrap();
        assert!(n >= 1);
        assert_eq!(s.records(), before - n);
        let rest = drain(&mut s, Kind::Dns);
        assert_eq!(rest, (n as usize..6).map(rec).collect::<Vec<_>>());
        assert!(bytes > 0);
        assert_eq!(s.drop_front(), None);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn kinds_keep_to_their_own_files() {
        let d = tmp("kinds");
        let (mut a, _) = Spool::open(&d, Kind::Alert, 1 << 20).unwrap();
        let (mut n, _) = Spool::open(&d, Kind::Dns, 1 << 20).unwrap();
        a.append(&Rec::new(Kind::Alert, "10.0.0.1", "{\"a\":1}")).unwrap();
        n.append(&rec(5)).unwrap();
        a.sync().unwrap();
        n.sync().unwrap();
        let (mut a2, fa) = Spool::open(&d, Kind::Alert, 1 << 20).unwrap();
        assert_eq!(fa.records, 1);
        assert_eq!(drain(&mut a2, Kind::Alert), vec![Rec::new(Kind::Alert, "10.0.0.1", "{\"a\":1}")]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_record_that_cannot_be_framed_is_refused() {
        let d = tmp("frame");
        let (mut s, _) = Spool::open(&d, Kind::Dns, 1 << 20).unwrap();
        assert!(s.append(&Rec::new(Kind::Dns, "10.0.0.1", "{\"a\":\n1}")).is_err());
        assert!(s.is_empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn names_parse_only_when_they_are_ours() {
        assert_eq!(parse_name("dns", "dns-00000000000000000042.spool"), Some(42));
        assert_eq!(parse_name("dns", "alerts-00000000000000000042.spool"), None);
        assert_eq!(parse_name("dns", "dns-.spool"), None);
        assert_eq!(parse_name("dns", "dns-12x.spool"), None);
        assert_eq!(parse_name("dns", "dns-1.tmp"), None);
    }
}
