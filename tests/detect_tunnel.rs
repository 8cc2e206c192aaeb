//! DNS tunneling end to end: the project's captures made with iodine and dns2tcp through a
//! real resolver (with an ordinary client alongside), and the shared captures by label.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn alerts(path: &Path, tag: &str) -> Vec<Value> {
    let d = tmpdir(tag);
    let out = d.join("alerts.ndjson");
    let o = run(&["replay", "-q", "--alerts", out.to_str().unwrap(), path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    ndjson(&out)
}

/// (client, registered domain) of every tunneling alert.
fn flagged(v: &[Value]) -> BTreeSet<(String, String)> {
    v.iter()
        .filter(|a| a["rule.name"] == "dns_tunneling")
        .map(|a| {
            (
                a["source.ip"].as_str().unwrap().to_string(),
                a["dns.question.registered_domain"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Rows of a capture's expected.tsv: (client, registered domain, expect).
fn expected(file: &str) -> Vec<(String, String, String)> {
    std::fs::read_to_string(project_capture(file))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string(), c[4].to_string())
        })
        .collect()
}

fn check_project_capture(pcap: &str, tsv: &str) {
    let got = flagged(&alerts(&project_capture(pcap), pcap));
    let want: BTreeSet<(String, String)> =
        expected(tsv).into_iter().filter(|r| r.2 == "tunnel").map(|r| (r.0, r.1)).collect();
    assert_eq!(got, want, "{pcap}: every tunnel flagged, nothing of the ordinary client");
}

#[test]
fn iodine_through_a_real_resolver_is_flagged_and_the_ordinary_client_is_not() {
    check_project_capture("iodine.pcap", "iodine.expected.tsv");
}

#[test]
fn dns2tcp_through_a_real_resolver_is_flagged_and_the_ordinary_client_is_not() {
    check_project_capture("dns2tcp.pcap", "dns2tcp.expected.tsv");
}

#[test]
fn ordinary_lookups_raise_nothing() {
    let got = alerts(&project_capture("benign-lookups.pcap"), "benign-lookups");
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn the_alert_says_why_with_the_numbers() {
    let got = alerts(&project_capture("iodine.pcap"), "iodine-why");
    let a = got.iter().find(|a| a["rule.name"] == "dns_tunneling").expect("an alert");
    assert_eq!(a["threat.technique.id"], "T1071");
    assert_eq!(a["threat.technique.subtechnique.id"], "T1071.004");
    assert!(a["dns.question.name"].as_str().unwrap().ends_with("portent-tunnel.test"));
    assert!(a["event.reason"].as_str().unwrap().len() > 20);
    assert!(a["portent.tunnel.score"].as_f64().unwrap() >= a["portent.tunnel.threshold"].as_f64().unwrap());
    let crossed = a["portent.tunnel.crossed"].as_array().unwrap();
    assert!(!crossed.is_empty());
    for k in [
        "queries",
        "distinct_subdomains",
        "max_label_len",
        "entropy",
        "bytes_up",
        "bytes_down",
        "nxdomain_share",
    ] {
        assert!(a[format!("portent.tunnel.{k}")].is_number(), "portent.tunnel.{k} in {a}");
    }
    assert!(a["portent.window.start"].is_string() && a["portent.window.end"].is_string());
}

/// The registered domain each shared tunnel capture must be flagged under.
const SHARED_TUNNELS: &[(&str, &str)] = &[
    ("elastic_dns-tunnel-iodine.pcap", "pirate.sea"),
    ("ndpi_dns_exfiltration.pcap", "dnscat"),
    ("ndpi_bad-dns-traffic.pcap", "skullseclabs.org"),
    ("ndpi_dns-exf.pcap", "test.txt"),
    ("suri_dns2tcp_bug-1158.pcap", "tunnel.com"),
];

#[test]
fn shared_captures_alert_exactly_by_label() {
    let Some(dir) = shared_captures() else { return };
    for (file, label) in shared_labels(&dir) {
        let got = alerts(&dir.join(&file), &format!("shared-{file}"));
        if label.starts_with("tunnel:") {
            let domain = SHARED_TUNNELS
                .iter()
                .find(|t| t.0 == file)
                .unwrap_or_else(|| panic!("{file} is labelled {label}: add its domain to SHARED_TUNNELS"))
                .1;
            let domains: BTreeSet<String> = flagged(&got).into_iter().map(|f| f.1).collect();
            assert!(domains.contains(domain), "{file} ({label}): flagged {domains:?}, expected {domain}");
        } else if label == "benign" {
            assert!(got.is_empty(), "{file} is benign: {got:?}");
        }
    }
}
