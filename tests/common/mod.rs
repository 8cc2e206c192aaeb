//! Helpers shared by the integration tests: the binary, the shared captures, and packets
//! and pcap files built in the test.
#![allow(dead_code)]

use etherparse::PacketBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portent"))
}

/// `../shared/captures/public` beside the project, when this machine has it.
pub fn shared_captures() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public");
    if p.join("SOURCES.tsv").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: ../shared/captures/public is absent; comparisons against the shared captures are skipped"
        );
        None
    }
}

/// (file, label) rows of SOURCES.tsv.
pub fn shared_labels(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("SOURCES.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let file = header.iter().position(|h| *h == "file").unwrap();
    let label = header.iter().position(|h| *h == "label").unwrap();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[file].to_string(), c[label].to_string())
        })
        .collect()
}

pub fn project_capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures").join(name)
}

/// A scratch directory, removed when it goes out of scope unless the test is failing: a
/// failed test keeps what it wrote, and says where. Left behind, every `cargo test` added
/// about 200 directories and 30 MB to the temp dir.
pub struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the failed test's files in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tmpdir(tag: &str) -> TmpDir {
    // A counter too: tests running in parallel may pass the same tag.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("portent-test-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run portent")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses every line of an NDJSON file.
pub fn ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// A little-endian microsecond pcap with the given link type; times in nanoseconds.
pub fn pcap_bytes(linktype: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let us: Vec<(u64, &[u8])> = frames.iter().map(|(ns, f)| (ns / 1_000, f.as_slice())).collect();
    portent::capture::write::pcap_bytes(linktype, &us)
}

pub fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) {
    std::fs::write(path, pcap_bytes(1, frames)).unwrap();
}

pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b =
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64).udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

pub fn syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 64240)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn name_wire(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// A standard query with recursion desired.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    name_wire(name, &mut v);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v
}

/// A NOERROR response carrying one A record per address, each naming the question by a
/// compression pointer.
pub fn dns_response_a(id: u16, name: &str, addrs: &[[u8; 4]], ttl: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x81, 0x80, 0, 1]);
    v.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    name_wire(name, &mut v);
    v.extend_from_slice(&[0, 1, 0, 1]);
    for a in addrs {
        v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&[0, 4]);
        v.extend_from_slice(a);
    }
    v
}

pub const SEC: u64 = 1_000_000_000;

/// Reads a little-endian microsecond Ethernet pcap back into (ts_ns, frame) pairs.
pub fn read_pcap(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], &0xa1b2c3d4u32.to_le_bytes(), "a little-endian µs pcap");
    assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1, "Ethernet");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let sec = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as u64;
        let us = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as u64;
        let cap = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16;
        out.push((sec * SEC + us * 1000, b[off..off + cap].to_vec()));
        off += cap;
    }
    out
}

/// Splits every untagged IPv4 frame whose IP packet is longer than `mtu` into RFC 791
/// fragments of at most `mtu` bytes, last fragment first (the harder order), as a router
/// with a small MTU would, only backwards.
pub fn fragment_ipv4(frames: &[(u64, Vec<u8>)], mtu: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for (ts, f) in frames {
        let is_v4 = f.len() > 34 && f[12..14] == [0x08, 0x00] && f[14] >> 4 == 4;
        if !is_v4 {
            out.push((*ts, f.clone()));
            continue;
        }
        let ihl = ((f[14] & 15) as usize) * 4;
        let total = u16::from_be_bytes([f[16], f[17]]) as usize;
        if total <= mtu || f.len() < 14 + total {
            out.push((*ts, f.clone()));
            continue;
        }
        let header = &f[14..14 + ihl];
        let payload = &f[14 + ihl..14 + total];
        let step = (mtu - ihl) / 8 * 8;
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < payload.len() {
            let end = (at + step).min(payload.len());
            let more = end < payload.len();
            let mut ip = header.to_vec();
            let len = (ihl + end - at) as u16;
            ip[2..4].copy_from_slice(&len.to_be_bytes());
            let flags_off = ((at / 8) as u16) | if more { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&flags_off.to_be_bytes());
            ip[10] = 0;
            ip[11] = 0;
            let mut sum = 0u32;
            for w in ip.chunks(2) {
                sum += u16::from_be_bytes([w[0], w[1]]) as u32;
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            ip.extend_from_slice(&payload[at..end]);
            let mut frame = f[..14].to_vec();
            frame.extend_from_slice(&ip);
            pieces.push(frame);
            at = end;
        }
        for p in pieces.into_iter().rev() {
            out.push((*ts, p));
        }
    }
    out
}
