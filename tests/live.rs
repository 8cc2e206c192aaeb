//! `portent live` end to end: errors an operator can fix, and a real capture on a veth pair
//! between two network namespaces made for the test (root and `ip netns` required; skipped
//! with a message otherwise). Nothing leaves the namespaces.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn assert_one_line_error(o: &std::process::Output, prefix: &str, cause: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("portent: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {err}");
    assert!(lines[0].starts_with(prefix), "starts with {prefix:?}: {err}");
    assert!(lines[0].contains(cause), "says {cause:?}: {err}");
    assert!(lines[0].contains("; "), "says what to do: {err}");
}

#[test]
fn a_missing_interface_is_a_one_line_usage_error() {
    let o = run(&["live", "-q", "-i", "portent-nosuch0"]);
    let err = stderr(&o);
    // Without root, libpcap may refuse before it looks the name up: either way, one line.
    if err.contains("permission denied") {
        assert_one_line_error(&o, "portent: portent-nosuch0: ", "permission denied");
    } else {
        assert_one_line_error(&o, "portent: portent-nosuch0: ", "no such interface");
    }
}

#[test]
fn a_bad_filter_is_a_one_line_usage_error() {
    let o = run(&["live", "-q", "-i", "lo", "--bpf", "udp port fiftythree or"]);
    assert_one_line_error(&o, "portent: lo: ", "bad filter expression");
}

#[test]
fn bad_numbers_are_usage_errors() {
    let o = run(&["live", "-q", "-i", "lo", "--snaplen", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["live", "-q", "-i", "lo", "-i", "lo"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces joined by a veth pair; deleting the namespaces removes the pair.
struct Netns {
    a: String,
    b: String,
    va: String,
    vb: String,
}

impl Netns {
    fn create() -> Option<Netns> {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: live capture test needs root (network namespaces)");
            return None;
        }
        let pid = std::process::id();
        let n = Netns {
            a: format!("portent-{pid}-a"),
            b: format!("portent-{pid}-b"),
            va: format!("pv{pid}a"),
            vb: format!("pv{pid}b"),
        };
        let ok = sh(&["ip", "netns", "add", &n.a])
            && sh(&["ip", "netns", "add", &n.b])
            && sh(&[
                "ip", "link", "add", &n.va, "netns", &n.a, "type", "veth", "peer", "name", &n.vb, "netns",
                &n.b,
            ])
            && sh(&["ip", "-n", &n.a, "link", "set", &n.va, "up"])
            && sh(&["ip", "-n", &n.b, "link", "set", &n.vb, "up"]);
        if !ok {
            eprintln!("SKIP: cannot create network namespaces and a veth pair here");
            return None;
        }
        Some(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.a]);
        sh(&["ip", "netns", "del", &self.b]);
    }
}

/// Kills the child if the test fails before it is reaped.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// (rule.name, source.ip, destination.ip, destination.port, portent.formula) per alert.
fn keys(alerts: &[Value]) -> Vec<(String, String, String, u64, String)> {
    let s = |a: &Value, k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut v: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                s(a, "rule.name"),
                s(a, "source.ip"),
                s(a, "destination.ip"),
                a.get("destination.port").and_then(Value::as_u64).unwrap_or(0),
                s(a, "portent.formula"),
            )
        })
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn live_capture_on_a_veth_matches_replay() {
    let Some(ns) = Netns::create() else { return };
    if !sh(&["tcpreplay", "-V"]) {
        eprintln!("SKIP: tcpreplay is not installed");
        return;
    }
    let d = tmpdir("live-veth");
    // Live packets carry their arrival time, and tcpreplay --pps squeezes the capture's
    // 400 s time-shifted control (SYN to 198.51.100.44 long after its answer, see
    // dns-calc.controls.tsv) into milliseconds, where it rightly alerts. So both runs use a
    // copy without that control; every other packet is replayed as captured.
    let pcap = d.join("dns-calc-no-late.pcap");
    let full = project_capture("dns-calc.pcap");
    if !sh(&["tcpdump", "-r", full.to_str().unwrap(), "-w", pcap.to_str().unwrap(), "not host 198.51.100.44"])
    {
        eprintln!("SKIP: tcpdump is needed to drop the time-shifted control from the capture");
        return;
    }
    let alerts = d.join("alerts.ndjson");
    let stats = d.join("stats.ndjson");
    let summary = d.join("summary.json");

    // What replay says about the same capture.
    let replay_alerts = d.join("replay.ndjson");
    let o = run(&["replay", "-q", "-a", replay_alerts.to_str().unwrap(), pcap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = keys(&ndjson(&replay_alerts));

    let child = Command::new("ip")
        .args(["netns", "exec", &ns.a])
        .arg(bin())
        .args(["live", "-i", &ns.va, "--stats-interval", "1"])
        .arg("--alerts")
        .arg(&alerts)
        .arg("--stats")
        .arg(&stats)
        .arg("--summary-json")
        .arg(&summary)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portent live");
    let mut child = Reap(Some(child));
    let pid = child.0.as_ref().unwrap().id() as i32;

    // The first stats record means the handle is open and the loop runs.
    wait_for("the first stats record", Duration::from_secs(10), || {
        std::fs::read_to_string(&stats).is_ok_and(|s| !s.is_empty())
    });

    let o = Command::new("ip")
        .args(["netns", "exec", &ns.b, "tcpreplay", "-q", "-i", &ns.vb, "--pps", "500"])
        .arg(&pcap)
        .output()
        .expect("run tcpreplay");
    assert!(o.status.success(), "tcpreplay failed: {}", stderr(&o));

    // Alerts are flushed every batch and batches close every 100 ms: the two alerts should
    // show up while portent still runs.
    wait_for("the live alerts", Duration::from_secs(5), || ndjson(&alerts).len() >= want.len());

    // SAFETY: signalling our own child (`ip netns exec` execs portent in place).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "portent did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {err}");

    let got = keys(&ndjson(&alerts));
    assert_eq!(got, want, "live alerts equal replay alerts");

    // And both are the capture's two expected DNS Calculation alerts.
    let expected = std::fs::read_to_string(project_capture("dns-calc.expected.tsv")).unwrap();
    let mut exp: Vec<(String, String, u64)> = expected
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string(), c[2].parse().unwrap())
        })
        .collect();
    exp.sort();
    let mut got3: Vec<(String, String, u64)> =
        got.iter().filter(|k| k.0 == "dns_calculation").map(|k| (k.1.clone(), k.2.clone(), k.3)).collect();
    got3.sort();
    assert_eq!(exp.len(), 2);
    assert_eq!(got3, exp, "the two expected dns_calculation alerts");

    // The last stats record covers the whole run: nothing dropped at this rate.
    let recs = ndjson(&stats);
    let last = recs.last().expect("stats records");
    assert_eq!(last["final"], Value::Bool(true), "{last}");
    let iface = &last["interfaces"][&ns.va];
    assert_eq!(iface["pcap_dropped"], 0, "{last}");
    assert_eq!(iface["queue_dropped_packets"], 0, "{last}");
    // Capture-to-alert latency is measured for every alert (hdrhistogram percentiles).
    let lat = &last["alert_latency"];
    assert_eq!(lat["count"], 2, "{last}");
    for k in ["p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(lat[k].as_u64().is_some_and(|v| v >= 1), "{k} in {lat}");
    }
    // Every DNS packet and SYN of the capture passed the filter and reached the engine.
    let captured = iface["captured"].as_u64().unwrap();
    let replay_summary = d.join("replay-summary.json");
    let o = run(&[
        "replay",
        "-q",
        "-a",
        "/dev/null",
        "--summary-json",
        replay_summary.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let rs: Value = serde_json::from_str(&std::fs::read_to_string(&replay_summary).unwrap()).unwrap();
    let ls: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(ls["dns"]["udp_packets"], rs["dns"]["udp_packets"], "live {ls}\nreplay {rs}");
    assert!(captured >= rs["dns"]["udp_packets"].as_u64().unwrap(), "{last}");
    assert!(Path::new(&alerts).is_file());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_capture_section_of_the_configuration_file_is_used() {
    let d = std::env::temp_dir().join(format!("portent-live-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("site.toml");
    std::fs::write(&cfg, "[capture]\nbpf = \"udp port fiftythree\"\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_portent"))
        .args(["live", "-i", "lo", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad filter expression") && err.contains("fiftythree"), "{err}");
}
