//! IP reassembly end to end: a capture whose DNS is cut into fragments gives the same DNS
//! messages and the same alerts as the original.

mod common;

use common::*;

fn replay(path: &std::path::Path, tag: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let d = tmpdir(tag);
    let (a, s) = (d.join("alerts"), d.join("summary.json"));
    let o = run(&[
        "replay",
        "-q",
        "--alerts",
        a.to_str().unwrap(),
        "--summary-json",
        s.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (ndjson(&a), serde_json::from_str(&std::fs::read_to_string(s).unwrap()).unwrap())
}

fn key(a: &serde_json::Value) -> String {
    format!(
        "{} {} {} {}",
        a["rule.name"],
        a["source.ip"],
        a.get("dns.question.registered_domain").unwrap_or(&a["destination.ip"]),
        a["destination.port"]
    )
}

#[test]
fn tunnels_and_calculations_survive_fragmentation() {
    for (cap, mtu) in [("iodine.pcap", 576), ("dns2tcp.pcap", 296), ("dns-calc.pcap", 68)] {
        let d = tmpdir(&format!("frag-{cap}"));
        let frames = read_pcap(&project_capture(cap));
        let cut = fragment_ipv4(&frames, mtu);
        assert!(cut.len() > frames.len(), "{cap}: something was fragmented at MTU {mtu}");
        let p = d.join(format!("frag-{cap}"));
        write_pcap(&p, &cut);
        let (a0, s0) = replay(&project_capture(cap), &format!("orig-{cap}"));
        let (a1, s1) = replay(&p, &format!("cut-{cap}"));
        assert_eq!(s1["dns"]["messages"], s0["dns"]["messages"], "{cap}: DNS messages");
        assert!(s1["defrag"]["reassembled"].as_u64().unwrap() > 0, "{cap}: {}", s1["defrag"]);
        let k0: Vec<String> = a0.iter().map(key).collect();
        let k1: Vec<String> = a1.iter().map(key).collect();
        assert!(!k0.is_empty(), "{cap} alerts");
        assert_eq!(k1, k0, "{cap}: the same alerts with and without fragments");
    }
}
