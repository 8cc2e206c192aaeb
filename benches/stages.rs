//! Micro-benchmarks of the per-packet stages: decode, DNS parse, answer cache, DNS
//! Calculation check, and writing an alert line. `cargo bench --bench stages` (add
//! `-- --quick` for a short run).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use etherparse::PacketBuilder;
use portent::cache::{AnswerCache, CacheConfig};
use portent::decode::{decode, Decoded, LinkType};
use portent::detect::calc::{CalcConfig, CalcDetector};
use portent::detect::Syn;
use portent::dns::parse_message;
use std::net::{IpAddr, Ipv4Addr};

const TS: u64 = 1_700_000_000 * 1_000_000_000;

fn name(out: &mut Vec<u8>, n: &str) {
    for l in n.split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

/// A typical response: one question, `addrs.len()` A records behind compression pointers,
/// an EDNS OPT record.
fn a_response(id: u16, qname: &str, addrs: &[[u8; 4]]) -> Vec<u8> {
    let mut m = Vec::new();
    for v in [id, 0x8180, 1, addrs.len() as u16, 0, 1] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    name(&mut m, qname);
    m.extend_from_slice(&[0, 1, 0, 1]);
    for a in addrs {
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
        m.extend_from_slice(a);
    }
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    m
}

fn stages(c: &mut Criterion) {
    let dns = a_response(0x1234, "www.example.com", &[[93, 184, 216, 34], [93, 184, 216, 35]]);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([8, 8, 8, 8], [10, 1, 2, 3], 64)
        .udp(53, 40000)
        .write(&mut frame, &dns)
        .expect("frame");
    assert!(matches!(decode(LinkType::ETHERNET, &frame), Ok(Decoded::Packet(_))));
    c.bench_function("decode eth/ipv4/udp/dns", |b| {
        b.iter(|| decode(LinkType::ETHERNET, black_box(&frame)).is_ok())
    });

    assert_eq!(parse_message(&dns).expect("parse").answers.len(), 2);
    c.bench_function("dns::parse_message A response (2 answers)", |b| {
        b.iter(|| parse_message(black_box(&dns)).map(|m| m.answers.len()))
    });

    // Insert then look up, over 1024 clients so the map is not a single hot entry.
    let msg = parse_message(&dns).expect("parse");
    let cache = AnswerCache::new(CacheConfig::default());
    let resolver = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
    let mut i = 0u32;
    c.bench_function("AnswerCache insert (2 A) + lookup", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let client = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 | (i & 1023)));
            let ts = TS + u64::from(i);
            cache.insert(client, resolver, ts, black_box(&msg));
            let mut n = 0usize;
            cache.lookup(client, ts, |a| n += a.ttl as usize);
            n
        })
    });

    // DNS Calculation check against a client holding 8 cached answers (one response each).
    let client = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
    let cache = AnswerCache::new(CacheConfig::default());
    let answers: Vec<[u8; 4]> = (0..8u8).map(|k| [93, 184, 20 + k, 7]).collect();
    for (k, a) in answers.iter().enumerate() {
        let m = parse_message(&a_response(k as u16, "cdn.example.net", &[*a])).expect("parse");
        assert_eq!(cache.insert(client, resolver, TS + k as u64, &m), 1);
    }
    let mut det = CalcDetector::new(CalcConfig::default());
    let mut out = Vec::new();
    let dst = IpAddr::V4(Ipv4Addr::from(answers[7]));
    // 93*184 + 27 = 17139 is the APT12 port of answers[7]; 17000 matches no formula.
    let miss = Syn { ts: TS + 1_000_000, src: client, sport: 50000, dst, dport: 17000 };
    c.bench_function("CalcDetector::on_syn, 8 answers, no match", |b| {
        b.iter(|| {
            det.on_syn(black_box(&miss), &cache, &mut out);
            out.clear();
        })
    });
    let hit = Syn { dport: 93 * 184 + 27, ..miss };
    det.on_syn(&hit, &cache, &mut out);
    assert_eq!(out.len(), 1, "the formula port must alert once");
    out.clear();
    c.bench_function("CalcDetector::on_syn, 8 answers, repeat match (deduplicated)", |b| {
        b.iter(|| {
            det.on_syn(black_box(&hit), &cache, &mut out);
            out.clear();
        })
    });
    c.bench_function("CalcDetector::on_syn, port 443 (filtered by range)", |b| {
        let s = Syn { dport: 443, ..miss };
        b.iter(|| {
            det.on_syn(black_box(&s), &cache, &mut out);
            out.clear();
        })
    });
}

/// The tunneling update per query, and the reassembler's fast path on a packet that is not
/// a fragment (what every UDP/TCP packet pays for reassembly being there).
fn tunnel_and_defrag(c: &mut Criterion) {
    use portent::decode::defrag::{Defrag, DefragConfig, Defragmenter};
    use portent::detect::tunnel::{TunnelConfig, TunnelDetector};
    use portent::detect::DnsEvent;

    let mut det = TunnelDetector::new(TunnelConfig::default()).expect("tunnel config");
    let names: Vec<Vec<u8>> = (0..256u32)
        .map(|i| {
            let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            let label = format!("{:08x}{:08x}", i.wrapping_mul(0x9e37_79b9), i);
            name(&mut q, &format!("{label}.t.example.com"));
            q.extend_from_slice(&[0, 16, 0, 1]);
            q
        })
        .collect();
    let msgs: Vec<_> = names.iter().map(|q| parse_message(q).expect("query")).collect();
    let client = IpAddr::V4(Ipv4Addr::new(10, 7, 7, 7));
    let server = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53));
    let mut out = Vec::new();
    let mut i = 0usize;
    c.bench_function("TunnelDetector::on_dns, hex TXT query", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let msg = &msgs[i % msgs.len()];
            let ev = DnsEvent { ts: TS + i as u64 * 1_000, client, server, msg, wire_len: 40 };
            det.on_dns(black_box(&ev), &mut out);
            out.clear();
        })
    });

    let mut ip = Vec::new();
    PacketBuilder::ipv4([10, 1, 2, 3], [93, 184, 216, 34], 64)
        .tcp(40000, 443, 1, 1024)
        .write(&mut ip, &[0u8; 512])
        .expect("packet");
    let mut d = Defragmenter::new(DefragConfig::default());
    c.bench_function("Defragmenter::process, not a fragment (fast path)", |b| {
        b.iter(|| matches!(d.process(TS, black_box(&ip)), Defrag::NotFragment))
    });
}

/// One alert of each detector turned into its output line (fields added, sorted, event.id,
/// JSON), next to the same fields through a serde_json::Map and Display, the way lines were
/// written before output::doc (that row leaves out event.id).
fn alert_lines(c: &mut Criterion) {
    use portent::detect::tunnel::{TunnelConfig, TunnelDetector};
    use portent::detect::{Alert, DnsEvent};
    use portent::output::alert::alert_line;

    let client = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
    let resolver = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
    let cache = AnswerCache::new(CacheConfig::default());
    let m = parse_message(&a_response(1, "c2.example.net", &[[198, 51, 100, 7]])).expect("parse");
    cache.insert(client, resolver, TS, &m);
    let mut out = Vec::new();
    let syn = Syn {
        ts: TS + 1_000_000,
        src: client,
        sport: 50000,
        dst: IpAddr::from([198, 51, 100, 7]),
        dport: 10198,
    };
    CalcDetector::new(CalcConfig::default()).on_syn(&syn, &cache, &mut out);
    let calc = out.pop().expect("a dns_calculation alert");

    let mut det = TunnelDetector::new(TunnelConfig::default()).expect("tunnel config");
    let server = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53));
    let mut tunnel: Option<Alert> = None;
    for i in 0..10_000u32 {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        name(&mut q, &format!("{:08x}{:08x}{:08x}.t.example.com", i.wrapping_mul(0x9e37_79b9), i, !i));
        q.extend_from_slice(&[0, 16, 0, 1]);
        let msg = parse_message(&q).expect("query");
        let ev =
            DnsEvent { ts: TS + u64::from(i) * 100_000_000, client, server, msg: &msg, wire_len: q.len() };
        det.on_dns(&ev, &mut out);
        if let Some(a) = out.drain(..).find(|a| a.rule == "dns_tunneling") {
            tunnel = Some(a);
            break;
        }
    }
    let tunnel = tunnel.expect("a dns_tunneling alert");

    let mut buf = String::new();
    for (what, a) in [("dns_calculation", &calc), ("dns_tunneling", &tunnel)] {
        let fields = a.doc.len();
        c.bench_function(&format!("output::alert_line, {what} ({fields} fields)"), |b| {
            b.iter(|| alert_line(&mut black_box(a).clone(), "sensor-1", None, &mut buf).text.len())
        });
        c.bench_function(&format!("serde_json::Map + Display, {what}, no event.id"), |b| {
            b.iter(|| serde_json::Value::Object(black_box(a).doc.to_map()).to_string().len())
        });
    }
}

criterion_group!(benches, stages, tunnel_and_defrag, alert_lines);
criterion_main!(benches);
