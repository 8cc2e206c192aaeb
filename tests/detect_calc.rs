//! DNS Calculation end to end, on captures made with real tools in network namespaces
//! (`captures/make-captures.sh`) and on the shared benign captures.

mod common;

use common::*;
use serde_json::Value;

fn alerts_of(capture: &str, extra: &[&str]) -> Vec<Value> {
    let d = tmpdir(&format!("calc-{capture}-{}", extra.len()));
    let out = d.join("alerts.ndjson");
    let path = project_capture(capture);
    let mut args = vec!["replay", "-q", "--alerts", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    ndjson(&out)
}

fn calc_alerts(v: &[Value]) -> Vec<(String, String, u64, String, String)> {
    v.iter()
        .filter(|a| a["rule.name"].as_str().is_some_and(|r| r.starts_with("dns_calculation")))
        .map(|a| {
            (
                a["source.ip"].as_str().unwrap().to_string(),
                a["destination.ip"].as_str().unwrap().to_string(),
                a["destination.port"].as_u64().unwrap(),
                a["portent.formula"].as_str().unwrap().to_string(),
                a["dns.question.name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn expected(file: &str) -> Vec<(String, String, u64, String, String)> {
    let text = std::fs::read_to_string(project_capture(file)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let formula = match c[3] {
                "o1*o2+o3" => "apt12",
                "o1*(o2+o3)" => "apt12_variant",
                other => panic!("unknown formula {other}"),
            };
            (c[0].into(), c[1].into(), c[2].parse().unwrap(), formula.into(), c[4].into())
        })
        .collect()
}

#[test]
fn real_tool_capture_gives_exactly_the_expected_alerts() {
    let got = calc_alerts(&alerts_of("dns-calc.pcap", &[]));
    assert_eq!(got, expected("dns-calc.expected.tsv"), "every true case and no negative control");
}

#[test]
fn internal_destinations_alert_only_when_asked() {
    let got = calc_alerts(&alerts_of("dns-calc.pcap", &["--include-internal"]));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().any(|a| a.1 == "192.168.50.77" && a.2 == 32306 && a.4 == "intranet.c2-portent.test"),
        "{got:?}"
    );
}

#[test]
fn an_answer_seen_only_after_reassembly_still_counts() {
    let got = calc_alerts(&alerts_of("dns-fragmented.pcap", &[]));
    assert_eq!(got, expected("dns-fragmented.expected.tsv"));
}

#[test]
fn the_alert_record_has_every_documented_field() {
    let all = alerts_of("dns-calc.pcap", &[]);
    let a = all.iter().find(|a| a["rule.name"] == "dns_calculation").expect("an alert");
    let strings = [
        "@timestamp",
        "event.kind",
        "rule.id",
        "rule.name",
        "threat.framework",
        "threat.tactic.id",
        "threat.tactic.name",
        "threat.technique.id",
        "threat.technique.subtechnique.id",
        "source.ip",
        "destination.ip",
        "dns.question.name",
        "dns.resolved_ip",
        "portent.formula",
        "portent.resolver",
        "event.reason",
    ];
    for k in strings {
        assert!(a[k].is_string(), "{k} is a string in {a}");
    }
    for k in
        ["event.severity", "source.port", "destination.port", "portent.answer_age_ms", "portent.syn_count"]
    {
        assert!(a[k].is_number(), "{k} is a number in {a}");
    }
    assert!(a["portent.destination_is_answer"].is_boolean());
    assert_eq!(a["event.kind"], "alert");
    assert_eq!(a["threat.technique.id"], "T1568");
    assert_eq!(a["threat.technique.subtechnique.id"], "T1568.003");
    assert_eq!(a["threat.tactic.id"], "TA0011");
    assert_eq!(a["portent.destination_is_answer"], true);
    assert_eq!(a["portent.resolver"], "10.99.0.53");
    assert!(a["@timestamp"].as_str().unwrap().starts_with("2026-11-23T"));
}

#[test]
fn benign_shared_captures_raise_no_dns_calculation_alert() {
    let Some(dir) = shared_captures() else { return };
    let d = tmpdir("calc-benign");
    for (file, label) in shared_labels(&dir) {
        if label != "benign" {
            continue;
        }
        let out = d.join(format!("{file}.alerts"));
        let o = run(&["replay", "-q", "--alerts", out.to_str().unwrap(), dir.join(&file).to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        let got = calc_alerts(&ndjson(&out));
        assert!(got.is_empty(), "{file}: {got:?}");
    }
}
