//! DNS messages decoded on port 53 (UDP and TCP), per shared capture, against tshark's
//! dissector: equal, or the difference is explained below, file by file.

mod common;

use common::*;
use std::process::Command;

/// Files where portent decodes fewer messages than tshark, with both counts and why.
/// The test checks both numbers, so an explanation cannot silently go stale.
const EXPLAINED: &[(&str, u64, u64, &str)] = &[
    ("ndpi_KakaoTalk_chat.pcap", 37, 36, "frame 57 is an ICMP port-unreachable quoting a DNS packet: a quote, not a message on the wire"),
    ("zeek_dns-edns-ecs-bad.pcap", 4, 3, "one frame is cut short by the snap length (IP total length > captured bytes): counted as ip_truncated and skipped"),
    ("ndpi_badpackets.pcap", 91, 0, "every frame is cut by the snap length (tshark: 'BoundErrorUnreassembled'): counted as ip_truncated and skipped"),
    ("zeek_dns-invalid-names.pcap", 3, 0, "names with a zero-length label inside and a compression loop: rejected (dns_bad_question, dns_pointer_loop)"),
    ("suri_dns-forward-pointer.pcap", 2, 1, "a compression pointer that points forward: rejected without following it (dns_pointer_loop)"),
    ("tcpdump_dns_fwdptr.pcap", 1, 0, "a forward compression pointer: rejected (dns_pointer_loop)"),
    ("tcpdump_dns-badlabel.pcap", 1, 0, "a name longer than 255 bytes on the wire: rejected (dns_name_too_long)"),
    ("ndpi_malformed_dns.pcap", 6, 2, "four messages with names over 255 bytes: rejected (dns_name_too_long)"),
    ("ndpi_fuzz-2006-06-26-2594.pcap", 298, 238, "a fuzzed capture: 43 messages with broken questions or pointer loops are rejected, the rest are in broken IP headers and fragments that never complete"),
];

fn tshark_messages(path: &std::path::Path) -> Option<u64> {
    let o = Command::new("tshark")
        .args([
            "-r",
            path.to_str()?,
            "-Y",
            "dns && (udp.port==53 || tcp.port==53)",
            "-T",
            "fields",
            "-e",
            "dns.id",
        ])
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    // One dns.id per message; a TCP segment holding several messages lists them comma-separated.
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').count() as u64)
            .sum(),
    )
}

fn portent_messages(path: &std::path::Path, tag: &str) -> u64 {
    let d = tmpdir(tag);
    let summary = d.join("summary.json");
    let o = run(&[
        "replay",
        "-q",
        "--alerts",
        d.join("a").to_str().unwrap(),
        "--summary-json",
        summary.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}: {}", path.display(), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    v["dns"]["messages"].as_u64().unwrap()
}

#[test]
fn dns_message_counts_match_tshark_or_are_explained() {
    let Some(dir) = shared_captures() else { return };
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!(
            "SKIP: tshark is not installed (apt-get install tshark); the reference counts cannot be taken"
        );
        return;
    }
    let files: Vec<String> = shared_labels(&dir).into_iter().map(|(f, _)| f).collect();
    let results: Vec<(String, u64, u64)> = std::thread::scope(|s| {
        let chunks: Vec<_> = files.chunks(files.len().div_ceil(4)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let dir = &dir;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| {
                            let p = dir.join(f);
                            let t = tshark_messages(&p).unwrap_or_else(|| panic!("tshark failed on {f}"));
                            (f.clone(), t, portent_messages(&p, f))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut bad = Vec::new();
    for (f, t, p) in &results {
        let explained = EXPLAINED.iter().find(|e| e.0 == f);
        if let Some((_, et, ep, why)) = explained {
            if (t, p) != (et, ep) {
                bad.push(format!(
                    "{f}: tshark {t}, portent {p}; the explanation expects {et} and {ep} ({why})"
                ));
            }
        } else if t != p {
            bad.push(format!("{f}: tshark {t}, portent {p}, unexplained"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let agree = results.iter().filter(|(_, t, p)| t == p).count();
    eprintln!(
        "{agree} of {} shared captures agree with tshark exactly; {} differ as explained",
        results.len(),
        EXPLAINED.len()
    );
}
