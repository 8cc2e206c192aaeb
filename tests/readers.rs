//! Offline reading does not go through libpcap (pcap-parser's streaming reader is faster, see
//! README), so this checks that the choice changes nothing: for every capture libpcap can
//! read, both readers yield the same packets (time, bytes, wire length), and the pipeline fed
//! from either raises the same alerts and the same DNS log.

mod common;

use common::*;
use portent::capture::{read_file, RawPacket};
use portent::config::Config;
use portent::decode::{decode_ip_sliced, fast, strip_link, Decoded, LinkType, Network};
use portent::output::Sink;
use portent::pipeline::{Engine, Outputs, Progress};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One packet as a reader handed it over.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pkt {
    ts: u64,
    linktype: u32,
    data: Vec<u8>,
    orig_len: u32,
}

/// The packets libpcap reads, with nanosecond times, and whether it stopped on an error
/// (a cut or corrupt file) rather than at the end. `None` when libpcap cannot open the file.
fn via_libpcap(p: &Path) -> Option<(Vec<Pkt>, bool)> {
    let mut cap = pcap::Capture::from_file_with_precision(p, pcap::Precision::Nano).ok()?;
    let linktype = cap.get_datalink().0 as u32;
    let mut out = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(pk) => {
                let ts = pk.header.ts.tv_sec as u64 * 1_000_000_000 + pk.header.ts.tv_usec as u64;
                out.push(Pkt { ts, linktype, data: pk.data.to_vec(), orig_len: pk.header.len });
            }
            Err(pcap::Error::NoMorePackets) => return Some((out, false)),
            Err(_) => return Some((out, true)),
        }
    }
}

fn via_portent(p: &Path) -> (Vec<Pkt>, bool) {
    let mut out = Vec::new();
    let r = read_file(
        p,
        |pk| {
            out.push(Pkt {
                ts: pk.ts,
                linktype: pk.linktype.0,
                data: pk.data.to_vec(),
                orig_len: pk.orig_len,
            })
        },
        |_| {},
    );
    (out, r.is_err())
}

/// Alerts and DNS log of the pipeline fed `packets`, as text lines.
fn pipeline(packets: &[Pkt], dir: &Path, tag: &str) -> (Vec<String>, Vec<String>) {
    let alerts = dir.join(format!("{tag}.alerts"));
    let dns = dir.join(format!("{tag}.dns"));
    let cfg = Config { threads: 2, dns_log: true, ..Config::default() };
    let outs = Outputs {
        alerts: Sink::create(&alerts).unwrap(),
        dns_log: Some(Sink::create(&dns).unwrap()),
        kafka: None,
    };
    let mut e = Engine::start(&cfg, outs, Arc::new(Progress::default())).unwrap();
    for p in packets {
        e.packet(&RawPacket {
            ts: p.ts,
            linktype: LinkType(p.linktype),
            data: &p.data,
            orig_len: p.orig_len,
        });
    }
    e.finish(vec![]).unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
    (read(&alerts), read(&dns))
}

/// The shared captures: `PORTENT_SHARED_CAPTURES` names them where the checkout is not beside
/// them (a git worktree elsewhere).
fn shared_dir() -> Option<PathBuf> {
    match std::env::var_os("PORTENT_SHARED_CAPTURES") {
        Some(d) => Some(PathBuf::from(d)),
        None => shared_captures(),
    }
}

fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(project_capture(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    if let Some(dir) = shared_dir() {
        for (file, _) in shared_labels(&dir) {
            v.push(dir.join(file));
        }
    }
    v.sort();
    v
}

#[test]
fn pcap_parser_and_libpcap_read_the_same_packets_and_raise_the_same_alerts() {
    let dir = tmpdir("readers");
    let (mut compared, mut packets, mut alerts) = (0, 0, 0);
    let mut libpcap_refused = Vec::new();
    for path in captures() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some((lib, lib_err)) = via_libpcap(&path) else {
            libpcap_refused.push(name);
            continue;
        };
        let (ours, our_err) = via_portent(&path);
        // Where libpcap stops on a cut or corrupt record, we must have stopped there too,
        // having delivered the same complete packets before it.
        if lib_err {
            assert!(our_err, "{name}: libpcap reports an error, portent read to the end");
        }
        let n = lib.len().min(ours.len());
        assert_eq!(
            lib.len(),
            ours.len(),
            "{name}: libpcap read {} packets, portent {}",
            lib.len(),
            ours.len()
        );
        for (i, (a, b)) in lib.iter().zip(&ours).enumerate().take(n) {
            assert_eq!(
                (a.ts, a.orig_len, a.data.len()),
                (b.ts, b.orig_len, b.data.len()),
                "{name}: packet {i}"
            );
            assert!(a.data == b.data, "{name}: packet {i}: bytes differ");
            // Both name the same link type, allowing for libpcap's DLT numbers (12/14 for raw IP).
            let same_link = a.linktype == b.linktype
                || (b.linktype == LinkType::RAW.0 && [12, 14].contains(&a.linktype))
                || (a.linktype == LinkType::RAW.0 && [12, 14].contains(&b.linktype));
            assert!(same_link, "{name}: link type {} vs {}", a.linktype, b.linktype);
        }
        let (la, ld) = pipeline(&lib, &dir, "libpcap");
        let (pa, pd) = pipeline(&ours, &dir, "portent");
        assert_eq!(la, pa, "{name}: alerts differ");
        assert_eq!(ld, pd, "{name}: DNS logs differ");
        compared += 1;
        packets += ours.len();
        alerts += pa.len();
    }
    eprintln!(
        "compared {compared} captures ({packets} packets, {alerts} alerts); libpcap could not open: {libpcap_refused:?}"
    );
    assert!(compared >= 5, "the project's own captures at least");
    assert!(alerts > 0, "some capture must alert, or the alert comparison checked nothing");
}

/// The hand-written IP/UDP/TCP fast path against etherparse on every packet of every capture:
/// wherever the fast path answers, etherparse must give the same packet.
#[test]
fn the_decode_fast_path_agrees_with_etherparse_on_every_captured_packet() {
    let (mut packets, mut fast_answers) = (0u64, 0u64);
    for path in captures() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut i = 0u64;
        let _ = read_file(
            &path,
            |pk| {
                i += 1;
                let Ok(Network::Ip(ip)) = strip_link(pk.linktype, pk.data) else { return };
                if let Some(p) = fast::packet(ip) {
                    fast_answers += 1;
                    assert_eq!(decode_ip_sliced(ip), Ok(Decoded::Packet(p)), "{name}: packet {i}");
                }
            },
            |_| {},
        );
        packets += i;
    }
    eprintln!("{packets} packets, {fast_answers} answered by the fast path and checked");
    assert!(fast_answers > packets / 2, "{fast_answers} of {packets}");
}
