//! `portent replay` end to end: bad input, cut files, determinism across thread counts, the
//! answer cache's contents, and every shared capture.

mod common;

use common::*;
use portent::config::Config;
use portent::output::Sink;
use portent::pipeline::{self, Outputs, Progress};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn assert_one_line_error(o: &std::process::Output, path: &Path, reason: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("portent: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {err}");
    assert!(lines[0].starts_with(&format!("portent: {}: ", path.display())), "names the file: {err}");
    assert!(lines[0].contains(reason), "says {reason:?}: {err}");
}

#[test]
fn bad_inputs_give_a_one_line_error_naming_the_file() {
    let d = tmpdir("bad-inputs");
    let text = d.join("notes.pcap");
    std::fs::write(&text, "this is a text file that someone named .pcap by mistake\n").unwrap();
    assert_one_line_error(
        &run(&["replay", "-q", text.to_str().unwrap()]),
        &text,
        "not a pcap or pcapng file",
    );

    let lt = d.join("usb.pcap");
    std::fs::write(&lt, pcap_bytes(189, &[(SEC, vec![0; 32])])).unwrap();
    assert_one_line_error(&run(&["replay", "-q", lt.to_str().unwrap()]), &lt, "unsupported link type 189");

    let missing = d.join("missing.pcap");
    assert_one_line_error(&run(&["replay", "-q", missing.to_str().unwrap()]), &missing, "cannot open");

    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    assert_one_line_error(&run(&["replay", "-q", empty.to_str().unwrap()]), &empty, "empty file");
}

fn lookups(n: u8) -> Vec<(u64, Vec<u8>)> {
    let mut frames = Vec::new();
    for i in 0..n {
        let name = format!("host{i}.example.com");
        let t = u64::from(i) * SEC;
        frames.push((
            t,
            udp([10, 0, 0, 5], [10, 0, 0, 53], 40000 + u16::from(i), 53, &dns_query(u16::from(i), &name, 1)),
        ));
        frames.push((
            t + SEC / 100,
            udp(
                [10, 0, 0, 53],
                [10, 0, 0, 5],
                53,
                40000 + u16::from(i),
                &dns_response_a(u16::from(i), &name, &[[93, 184, 216, i]], 60),
            ),
        ));
    }
    frames
}

#[test]
fn a_cut_capture_still_writes_every_complete_packet_before_the_error() {
    let d = tmpdir("cut");
    let whole = pcap_bytes(1, &lookups(3));
    let cut = d.join("rotated.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 7]).unwrap();
    let log = d.join("dns.ndjson");
    let o = run(&["replay", "-q", "--dns-log", log.to_str().unwrap(), cut.to_str().unwrap()]);
    assert_one_line_error(&o, &cut, "truncated");
    let recs = ndjson(&log);
    // Five complete packets: two answered lookups and the third query, logged unanswered.
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert_eq!(recs[0]["dns.question.name"], "host0.example.com");
    assert_eq!(recs[1]["dns.type"], "answer");
    assert_eq!(recs[2]["dns.question.name"], "host2.example.com");
    assert_eq!(recs[2]["dns.type"], "query");
}

#[test]
fn a_bad_file_among_good_ones_loses_only_itself() {
    let d = tmpdir("mixed");
    let good = d.join("a.pcap");
    write_pcap(&good, &lookups(2));
    let bad = d.join("b.pcap");
    std::fs::write(&bad, b"garbage garbage garbage garbage").unwrap();
    let log = d.join("dns.ndjson");
    let o = run(&[
        "replay",
        "-q",
        "--dns-log",
        log.to_str().unwrap(),
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("b.pcap: not a pcap"), "{}", stderr(&o));
    assert_eq!(ndjson(&log).len(), 4, "both copies of the good file were read");
}

fn replay_lib(files: &[PathBuf], threads: usize, dns_log: bool) -> (pipeline::RunReport, String, String) {
    let d = tmpdir(&format!("lib-{threads}-{}", files.len()));
    let (ap, dp) = (d.join("alerts"), d.join("dns"));
    let cfg = Config { threads, dns_log, ..Config::default() };
    let outs = Outputs {
        alerts: Sink::create(&ap).unwrap(),
        dns_log: if dns_log { Some(Sink::create(&dp).unwrap()) } else { None },
        kafka: None,
    };
    let r = pipeline::replay(files, &cfg, outs, Arc::new(Progress::default())).unwrap();
    let a = std::fs::read_to_string(&ap).unwrap();
    let l = std::fs::read_to_string(&dp).unwrap_or_default();
    (r, a, l)
}

#[test]
fn the_answer_cache_holds_exactly_what_was_answered() {
    let d = tmpdir("cache");
    let p = d.join("answers.pcap");
    let mut frames = lookups(2);
    // A second client, answered by another resolver with two addresses.
    frames.push((5 * SEC, udp([10, 0, 0, 6], [9, 9, 9, 9], 5555, 53, &dns_query(77, "cdn.example.net", 1))));
    frames.push((
        5 * SEC + 1000,
        udp(
            [9, 9, 9, 9],
            [10, 0, 0, 6],
            53,
            5555,
            &dns_response_a(77, "cdn.example.net", &[[198, 51, 100, 7], [198, 51, 100, 8]], 3600),
        ),
    ));
    write_pcap(&p, &frames);
    let (r, _, _) = replay_lib(&[p], 2, false);
    let snap = r.answer_cache.snapshot();
    let got: Vec<(IpAddr, String, IpAddr, IpAddr, u32, u64)> = snap
        .iter()
        .flat_map(|(client, answers)| {
            answers.iter().map(move |a| (*client, a.qname.to_string(), a.addr, a.resolver, a.ttl, a.ts))
        })
        .collect();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        got,
        vec![
            (ip("10.0.0.5"), "host0.example.com".into(), ip("93.184.216.0"), ip("10.0.0.53"), 60, SEC / 100),
            (
                ip("10.0.0.5"),
                "host1.example.com".into(),
                ip("93.184.216.1"),
                ip("10.0.0.53"),
                60,
                SEC + SEC / 100
            ),
            (
                ip("10.0.0.6"),
                "cdn.example.net".into(),
                ip("198.51.100.7"),
                ip("9.9.9.9"),
                3600,
                5 * SEC + 1000
            ),
            (
                ip("10.0.0.6"),
                "cdn.example.net".into(),
                ip("198.51.100.8"),
                ip("9.9.9.9"),
                3600,
                5 * SEC + 1000
            ),
        ]
    );
    assert_eq!(r.workers.dns_messages, 6);
}

/// Many clients and resolvers, so that every worker gets a share.
fn busy_capture(path: &Path) {
    let mut frames = Vec::new();
    for i in 0..3000u32 {
        let c = [10, 1, (i / 250) as u8, (i % 250) as u8];
        let name = format!("n{}.site{}.example", i, i % 7);
        let t = u64::from(i) * SEC / 50;
        let id = i as u16;
        frames.push((t, udp(c, [10, 0, 0, 53], 30000, 53, &dns_query(id, &name, 1))));
        if i % 5 != 0 {
            frames.push((
                t + 1000,
                udp(
                    [10, 0, 0, 53],
                    c,
                    53,
                    30000,
                    &dns_response_a(id, &name, &[[198, 51, (i % 200) as u8, 7]], 30),
                ),
            ));
        }
        frames.push((t + 2000, syn(c, [198, 51, (i % 200) as u8, 7], 40000, 443)));
    }
    write_pcap(path, &frames);
}

#[test]
fn output_is_the_same_for_any_thread_count() {
    let d = tmpdir("threads");
    let p = d.join("busy.pcap");
    busy_capture(&p);
    let mut files = vec![p];
    if let Some(shared) = shared_captures() {
        for f in [
            "elastic_dns-tunnel-iodine.pcap",
            "suri_dns-tcp-multirequest-buffer.pcap",
            "zeek_dns-edns-ecs.pcap",
            "ndpi_bad-dns-traffic.pcap",
        ] {
            files.push(shared.join(f));
        }
    }
    let (r1, a1, l1) = replay_lib(&files, 1, true);
    assert!(r1.dns_lines > 2000, "the log has content: {}", r1.dns_lines);
    for t in [2, 3, 4] {
        let (rt, at, lt) = replay_lib(&files, t, true);
        assert_eq!(rt.workers.dns_messages, r1.workers.dns_messages);
        assert!(a1 == at, "alerts differ between 1 and {t} threads");
        assert!(l1 == lt, "DNS log differs between 1 and {t} threads");
        assert_eq!(rt.answer_cache.snapshot(), r1.answer_cache.snapshot(), "cache differs at {t} threads");
    }
}

#[test]
fn every_shared_capture_replays_without_error() {
    let Some(dir) = shared_captures() else { return };
    let out = tmpdir("shared-all");
    for (file, _) in shared_labels(&dir) {
        let path = dir.join(&file);
        let log = out.join(format!("{file}.dns"));
        let o = run(&["replay", "-q", "--dns-log", log.to_str().unwrap(), path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{file}");
        ndjson(&log); // every line is JSON
    }
}

#[test]
fn a_closed_pipe_on_standard_output_ends_quietly() {
    let d = tmpdir("pipe");
    let cap = project_capture("benign-lookups.pcap");
    let script = format!(
        "set -o pipefail; {} replay -q --alerts {} --dns-log - {} | head -1 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"",
        bin().display(),
        d.join("alerts").display(),
        cap.display()
    );
    let o = std::process::Command::new("bash").arg("-c").arg(&script).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = stderr(&o);
    assert!(out.contains("status=0"), "portent's own exit status: {out} {err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}

#[test]
fn standard_input_is_read_like_a_file() {
    let d = tmpdir("stdin");
    let cap = project_capture("dns-calc.pcap");
    let script = format!(
        "cat {} | {} replay -q --alerts {} -",
        cap.display(),
        bin().display(),
        d.join("stdin.ndjson").display()
    );
    let o = std::process::Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o =
        run(&["replay", "-q", "--alerts", d.join("file.ndjson").to_str().unwrap(), cap.to_str().unwrap()]);
    assert!(o.status.success());
    let (a, b) = (ndjson(&d.join("stdin.ndjson")), ndjson(&d.join("file.ndjson")));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
}

#[test]
fn diagnostics_follow_rust_log_and_stay_off_standard_output() {
    let cap = project_capture("dns-calc.pcap");
    let quiet =
        std::process::Command::new(bin()).args(["replay", "-q", cap.to_str().unwrap()]).output().unwrap();
    assert!(stderr(&quiet).is_empty(), "no diagnostics by default: {}", stderr(&quiet));
    let o = std::process::Command::new(bin())
        .env("RUST_LOG", "info")
        .args(["replay", "-q", cap.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(err.contains("INFO") && err.contains("reading") && err.contains("dns-calc.pcap"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 2);
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["event.kind"], "alert");
    }
}
