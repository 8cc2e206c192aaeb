use super::*;
use crate::dns::{DnsMessage, Question, RData, Record};
use crate::testutil::Rng;
use serde_json::json;

const SEC: Nanos = NANOS_PER_SEC;
const T0: Nanos = 1_700_000_000 * SEC;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn query(name: &str, qtype: u16) -> DnsMessage {
    DnsMessage { questions: vec![Question { name: name.into(), qtype, qclass: 1 }], ..DnsMessage::default() }
}

fn response(name: &str, qtype: u16, rcode: u16, answers: &[(u16, u16)]) -> DnsMessage {
    let mut m = query(name, qtype);
    m.response = true;
    m.rcode = rcode;
    for &(rtype, rdlen) in answers {
        m.answers.push(Record { name: name.into(), rtype, class: 1, ttl: 60, rdlen, data: RData::Other });
        m.answer_rdata_bytes += rdlen as u32;
    }
    m
}

/// Feeds one message; the client is the querier either way.
fn feed(det: &mut TunnelDetector, ts: Nanos, client: &str, msg: &DnsMessage, out: &mut Vec<Alert>) {
    let ev = DnsEvent { ts, client: ip(client), server: ip("192.0.2.53"), msg, wire_len: 100 };
    det.on_dns(&ev, out);
}

const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const HEX: &[u8] = b"0123456789abcdef";

fn det() -> TunnelDetector {
    TunnelDetector::new(TunnelConfig::default()).unwrap()
}

fn by_rule<'a>(alerts: &'a [Alert], rule: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.rule == rule).collect()
}

#[test]
fn fast_hex_tunnel_alerts_once_per_window_with_every_feature() {
    let mut d = det();
    let mut out = Vec::new();
    let mut r = Rng(7);
    // 120 TXT queries in 60 s, 2 × 30 hex characters under c2.example.net, answered.
    for i in 0..120u64 {
        let name = format!("{}.{}.c2.example.net", r.text(HEX, 30), r.text(HEX, 30));
        let ts = T0 + i * SEC / 2;
        feed(&mut d, ts, "10.0.0.5", &query(&name, rtype::TXT), &mut out);
        feed(&mut d, ts + 1000, "10.0.0.5", &response(&name, rtype::TXT, 0, &[(rtype::TXT, 120)]), &mut out);
    }
    let t = by_rule(&out, "dns_tunneling");
    assert_eq!(t.len(), 1, "one alert per group per window");
    crate::output::doc::assert_writes_as_a_map(&t[0].doc);
    let doc = &t[0].doc.to_map();
    assert_eq!(doc["dns.question.registered_domain"], "example.net");
    assert_eq!(doc["source.ip"], "10.0.0.5");
    assert_eq!(doc["destination.ip"], "192.0.2.53");
    assert_eq!(doc["threat.technique.subtechnique.id"], "T1071.004");
    assert_eq!(doc["portent.tunnel.max_subdomain_len"], 64);
    assert_eq!(doc["portent.tunnel.max_label_len"], 30);
    assert_eq!(doc["portent.tunnel.encoded_alphabet"], "hex");
    assert_eq!(doc["portent.tunnel.encoded_share"], 1);
    assert_eq!(doc["portent.tunnel.threshold"], 4.0);
    let crossed: Vec<&str> =
        doc["portent.tunnel.crossed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for f in ["max_subdomain_len", "entropy", "encoded_share", "unusual_type_share", "distinct_subdomains"] {
        assert!(crossed.contains(&f), "{f} not in {crossed:?}");
    }
    for k in [
        "queries",
        "responses",
        "query_rate_per_min",
        "distinct_subdomains",
        "mean_subdomain_len",
        "entropy",
        "type_txt",
        "type_null",
        "type_cname",
        "type_mx",
        "type_any",
        "type_srv",
        "type_private",
        "nxdomain_share",
        "bytes_up",
        "bytes_down",
        "info_bytes_horizon",
    ] {
        assert!(doc.contains_key(&format!("portent.tunnel.{k}")), "{k}");
    }
    let reason = doc["event.reason"].as_str().unwrap();
    assert!(reason.contains("example.net") && reason.contains("encoded_share"), "{reason}");
    // The next window re-alerts with its own counts.
    for i in 0..60u64 {
        let name = format!("{}.{}.c2.example.net", r.text(HEX, 30), r.text(HEX, 30));
        feed(&mut d, T0 + 61 * SEC + i * SEC / 2, "10.0.0.5", &query(&name, rtype::TXT), &mut out);
    }
    assert_eq!(by_rule(&out, "dns_tunneling").len(), 2);
    assert_eq!(d.stats().alerts_tunneling, 2);
}

#[test]
fn many_plain_names_are_not_a_tunnel() {
    // suri_datasets-06-state-long.pcap in miniature: test0..test1199.example.com in a second.
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..1200u64 {
        feed(&mut d, T0 + i * 800_000, "5.6.7.8", &query(&format!("test{i}.example.com"), 1), &mut out);
    }
    assert!(out.is_empty(), "{:?}", out.first().map(|a| a.doc.get("event.reason")));
}

#[test]
fn slow_base32_tunnel_is_caught_by_the_horizon_only() {
    let mut d = det();
    let mut out = Vec::new();
    let mut r = Rng(11);
    let mut first_alert = None;
    // 3 queries a minute for an hour, 48 base32 characters each (30 bytes of payload).
    for i in 0..180u64 {
        let name = format!("{}.{}.exfil.example.org", r.text(B32, 24), r.text(B32, 24));
        let ts = T0 + i * 20 * SEC;
        feed(&mut d, ts, "10.1.1.1", &query(&name, 1), &mut out);
        if first_alert.is_none() && !out.is_empty() {
            first_alert = Some(i);
        }
    }
    let t = by_rule(&out, "dns_tunneling");
    assert!(!t.is_empty(), "slow tunnel not caught");
    let crossed = t[0].doc.get("portent.tunnel.crossed").unwrap().to_value();
    let crossed = crossed.as_array().unwrap();
    assert!(crossed.contains(&json!("info_bytes_horizon")), "{crossed:?}");
    // Window rules stay quiet: none of the volume features or the long-name rule crossed.
    for f in ["queries", "distinct_subdomains", "bytes_up", "long_names", "single_query"] {
        assert!(!crossed.contains(&json!(f)), "{f} crossed: {crossed:?}");
    }
    assert!(t[0].doc.to_map()["portent.tunnel.info_bytes_horizon"].as_f64().unwrap() >= 4096.0);
    // Not a flood: re-alerts only after another 4 kB.
    assert!(t.len() <= 2, "{} alerts", t.len());
    assert!(first_alert.unwrap() > 100, "caught after {first_alert:?} queries");
}

#[test]
fn elastic_long_name_rule_over_five_minutes() {
    // 30 queries, 30 distinct 52-byte low-entropy names, spread over 4 minutes: too slow for
    // the window, too little information for the horizon, but Elastic's rule fires.
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..30u64 {
        let name = format!("{}{:02}.long.example.com", "abcdefghij".repeat(5), i);
        feed(&mut d, T0 + i * 8 * SEC, "10.2.2.2", &query(&name, 1), &mut out);
    }
    let t = by_rule(&out, "dns_tunneling");
    assert_eq!(t.len(), 1);
    assert!(t[0].doc.to_map()["portent.tunnel.crossed"].as_array().unwrap().contains(&json!("long_names")));
}

#[test]
fn sigma_txt_answers_alone() {
    // 60 TXT answers in a minute for one plain name (a chatty TXT client).
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..60u64 {
        feed(&mut d, T0 + i * SEC, "10.3.3.3", &query("cfg.example.com", rtype::TXT), &mut out);
        feed(
            &mut d,
            T0 + i * SEC + 1,
            "10.3.3.3",
            &response("cfg.example.com", rtype::TXT, 0, &[(rtype::TXT, 20)]),
            &mut out,
        );
    }
    let t = by_rule(&out, "dns_tunneling");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].doc.to_map()["portent.tunnel.txt_null_answers"], 51);
}

#[test]
fn one_long_encoded_query_is_enough_but_one_long_name_is_not() {
    let mut d = det();
    let mut out = Vec::new();
    let mut r = Rng(3);
    let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let name = format!("{}.{}.test.txt", r.text(b64, 50), r.text(b64, 20));
    feed(&mut d, T0, "10.4.4.4", &query(&name, 1), &mut out);
    let t = by_rule(&out, "dns_tunneling");
    assert_eq!(t.len(), 1);
    assert!(t[0].doc.to_map()["portent.tunnel.crossed"].as_array().unwrap().contains(&json!("single_query")));
    // A long descriptive host name: long but neither encoded nor entropic.
    let mut out = Vec::new();
    let name = "this-is-a-very-long-but-perfectly-ordinary-host-name-for-the-intranet.corp.example.com";
    feed(&mut d, T0, "10.4.4.5", &query(name, 1), &mut out);
    assert!(out.is_empty());
}

#[test]
fn responses_only_capture_counts_the_question() {
    let mut d = det();
    let mut out = Vec::new();
    let mut r = Rng(5);
    for i in 0..100u64 {
        let name = format!("{}.{}.t.example.net", r.text(HEX, 30), r.text(HEX, 30));
        feed(&mut d, T0 + i * SEC / 4, "10.5.5.5", &response(&name, rtype::TXT, 0, &[]), &mut out);
    }
    let t = by_rule(&out, "dns_tunneling");
    assert_eq!(t.len(), 1);
    assert!(t[0].doc.to_map()["portent.tunnel.queries"].as_u64().unwrap() >= 15);
    assert_eq!(t[0].doc.to_map()["portent.tunnel.queries"], t[0].doc.to_map()["portent.tunnel.responses"]);
}

#[test]
fn two_sided_traffic_counts_each_query_once() {
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..10u64 {
        let name = format!("h{i}.example.com");
        feed(&mut d, T0 + i, "10.6.6.6", &query(&name, 1), &mut out);
        feed(&mut d, T0 + i, "10.6.6.6", &response(&name, 1, 3, &[]), &mut out);
    }
    let i = d.slot_of(ip("10.6.6.6"), "example.com").unwrap();
    let g = &d.slots[i as usize];
    assert_eq!((g.w.queries, g.w.responses, g.w.nxdomain, g.w.distinct), (10, 10, 10, 10));
}

#[test]
fn allowlists_silence_tunnel_shaped_traffic() {
    let mut cfg = TunnelConfig {
        client_allowlist: CidrSet::parse_list(&["10.9.0.0/16"]).unwrap(),
        domain_allowlist: vec!["corp-av.example".into()],
        ..TunnelConfig::default()
    };
    let mut d = TunnelDetector::new(cfg.clone()).unwrap();
    let mut out = Vec::new();
    let mut r = Rng(9);
    for i in 0..100u64 {
        let hex = format!("{}.{}", r.text(HEX, 32), r.text(HEX, 32));
        let ts = T0 + i * SEC / 4;
        feed(&mut d, ts, "10.9.1.1", &query(&format!("{hex}.evil.example.net"), 16), &mut out);
        feed(&mut d, ts, "10.7.7.7", &query(&format!("{hex}.zen.spamhaus.org"), 1), &mut out);
        feed(&mut d, ts, "10.7.7.7", &query(&format!("{hex}.lookup.corp-av.example"), 16), &mut out);
        feed(&mut d, ts, "10.7.7.7", &query(&format!("{hex}._domainkey.example.com"), 16), &mut out);
    }
    assert!(out.is_empty());
    let s = d.stats();
    assert_eq!((s.allowlisted_client, s.allowlisted_domain, s.groups), (100, 300, 0));
    // Without the default list the DNSBL look-ups do alert.
    cfg.use_default_allowlist = false;
    let mut d = TunnelDetector::new(cfg).unwrap();
    for i in 0..100u64 {
        let hex = format!("{}.{}", r.text(HEX, 32), r.text(HEX, 32));
        feed(&mut d, T0 + i * SEC / 4, "10.7.7.7", &query(&format!("{hex}.zen.spamhaus.org"), 1), &mut out);
    }
    assert_eq!(by_rule(&out, "dns_tunneling").len(), 1);
}

#[test]
fn reputation_feed_alerts_once_per_pair_per_window() {
    let feed_set = Arc::new(DomainSet::parse("drivres-update.info\n"));
    let cfg = TunnelConfig {
        reputation: Some(feed_set),
        client_allowlist: CidrSet::parse_list(&["10.8.8.8"]).unwrap(),
        ..TunnelConfig::default()
    };
    let mut d = TunnelDetector::new(cfg).unwrap();
    let mut out = Vec::new();
    feed(&mut d, T0, "10.8.8.8", &query("Drivres-Update.info", 1), &mut out);
    feed(&mut d, T0 + SEC, "10.8.8.8", &response("drivres-update.info", 1, 0, &[(1, 4)]), &mut out);
    feed(&mut d, T0 + 2 * SEC, "10.8.8.8", &query("www.drivres-update.info", 1), &mut out);
    feed(&mut d, T0 + 2 * SEC, "10.8.8.9", &query("www.drivres-update.info", 1), &mut out);
    feed(&mut d, T0 + 3 * SEC, "10.8.8.9", &query("update.info", 1), &mut out);
    let r = by_rule(&out, "dns_reputation");
    crate::output::doc::assert_writes_as_a_map(&r[0].doc);
    assert_eq!(r.len(), 2, "one per (client, listed domain) per window");
    assert_eq!(r[0].doc.to_map()["portent.reputation.listed_domain"], "drivres-update.info");
    assert_eq!(r[0].doc.to_map()["dns.question.name"], "Drivres-Update.info");
    assert_eq!(r[1].doc.to_map()["source.ip"], "10.8.8.9");
    // A window later it alerts again.
    feed(&mut d, T0 + 61 * SEC, "10.8.8.8", &query("drivres-update.info", 1), &mut out);
    assert_eq!(by_rule(&out, "dns_reputation").len(), 3);
    assert_eq!(d.stats().alerts_reputation, 3);
}

#[test]
fn query_burst_across_many_domains() {
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..700u64 {
        feed(
            &mut d,
            T0 + i * 50_000_000,
            "10.10.10.10",
            &query(&format!("www.site{}.com", i % 350), 1),
            &mut out,
        );
    }
    let b = by_rule(&out, "dns_query_burst");
    crate::output::doc::assert_writes_as_a_map(&b[0].doc);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].doc.to_map()["portent.burst.registered_domains"], 350);
    assert_eq!(b[0].doc.to_map()["portent.burst.queries"], 600);
    assert!(by_rule(&out, "dns_tunneling").is_empty());
}

#[test]
fn psl_file_from_config() {
    let dir = std::env::temp_dir().join(format!("portent-psl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("psl.dat");
    std::fs::write(&p, "// test list\ncom\nexample.com\n").unwrap();
    let cfg = TunnelConfig { psl_file: Some(p.clone()), ..TunnelConfig::default() };
    let mut d = TunnelDetector::new(cfg).unwrap();
    let mut out = Vec::new();
    feed(&mut d, T0, "10.0.0.1", &query("a.b.example.com", 1), &mut out);
    // example.com is a public suffix in this list, so the group is b.example.com.
    assert!(d.slot_of(ip("10.0.0.1"), "b.example.com").is_some());
    let bad = TunnelConfig { psl_file: Some(dir.join("missing.dat")), ..TunnelConfig::default() };
    assert!(TunnelDetector::new(bad).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn million_domain_flood_stays_bounded() {
    // One client, a million distinct registered domains. The cap is small so that the
    // test runs quickly in debug builds; every message still creates a group and evicts.
    let cfg = TunnelConfig { max_groups: 1024, ..TunnelConfig::default() };
    let mut d = TunnelDetector::new(cfg).unwrap();
    let mut out = Vec::new();
    let mut msg = query("", 1);
    let mut name = String::new();
    for i in 0..1_000_000u64 {
        name.clear();
        use std::fmt::Write;
        let _ = write!(name, "www.d{i:x}.com");
        msg.questions[0].name.clone_from(&name);
        let ev = DnsEvent {
            ts: T0 + i * 1000,
            client: ip("10.11.0.1"),
            server: ip("192.0.2.53"),
            msg: &msg,
            wire_len: 40,
        };
        d.on_dns(&ev, &mut out);
    }
    let s = d.stats();
    assert_eq!(s.groups, 1024);
    assert_eq!(s.clients, 1);
    assert_eq!(s.evictions, 1_000_000 - 1024);
    assert!(d.slots.len() <= 1024 && d.clients[&ip("10.11.0.1")].groups == 1024);
    assert_eq!(d.index.len(), 1024);
    // Recency order survived: the newest group is at the head, the oldest kept at the tail.
    let head = &d.slots[d.head as usize];
    assert_eq!(head.domain.as_str(), "d".to_string() + &format!("{:x}.com", 999_999u64));
    let tail = &d.slots[d.tail as usize];
    assert_eq!(tail.domain.as_str(), format!("d{:x}.com", 1_000_000u64 - 1024));
    // The burst rule saw it (once per window: all within one second).
    assert_eq!(by_rule(&out, "dns_query_burst").len(), 1);
}

#[test]
fn expire_drops_idle_groups_and_clients() {
    let mut d = det();
    let mut out = Vec::new();
    feed(&mut d, T0, "10.0.0.1", &query("a.example.com", 1), &mut out);
    feed(&mut d, T0 + 3600 * SEC, "10.0.0.2", &query("b.example.org", 1), &mut out);
    d.expire(T0 + 24 * 3600 * SEC, &mut out);
    let s = d.stats();
    assert_eq!((s.groups, s.clients, s.expired), (1, 1, 1));
    assert!(d.clients.contains_key(&ip("10.0.0.2")));
    // Re-use of the freed slot keeps the list consistent.
    feed(&mut d, T0 + 25 * 3600 * SEC, "10.0.0.3", &query("c.example.net", 1), &mut out);
    assert_eq!(d.stats().groups, 2);
    d.expire(T0 + 60 * 3600 * SEC, &mut out);
    assert_eq!((d.stats().groups, d.head, d.tail), (0, NIL, NIL));
}

#[test]
fn junk_names_do_not_panic() {
    let mut d = det();
    let mut out = Vec::new();
    for name in ["", ".", "..", "\\", "a\\", "\\999.x", "x.\\255\\255", &"a.".repeat(600), "é.ü.中国"] {
        feed(&mut d, T0, "10.0.0.1", &query(name, 1), &mut out);
        feed(&mut d, T0, "10.0.0.1", &response(name, 65534, 3, &[(10, 65535)]), &mut out);
    }
    let empty = DnsMessage::default();
    feed(&mut d, T0, "10.0.0.1", &empty, &mut out);
    assert!(d.stats().skipped >= 3);
}

/// Per-message cost. Run: `cargo test --release --lib tunnel::tests::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_ns_per_message() {
    let mut r = Rng(1);
    let mut msgs = Vec::new();
    for i in 0..20_000u64 {
        let name = match i % 4 {
            0 => format!("www.site{}.com", i % 500),
            1 => format!("{}.{}.t.example.net", r.text(HEX, 30), r.text(HEX, 30)),
            2 => format!("img{}.cdn.example.co.uk", i % 50),
            _ => format!("api.service{}.io", i % 100),
        };
        msgs.push(query(&name, if i % 4 == 1 { rtype::TXT } else { 1 }));
        msgs.push(response(&name, 1, 0, &[(1, 4)]));
    }
    let mut d = det();
    let mut out = Vec::new();
    let clients: Vec<IpAddr> = (0..64).map(|i| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, i))).collect();
    let start = std::time::Instant::now();
    let rounds = 10u64;
    for round in 0..rounds {
        for (i, m) in msgs.iter().enumerate() {
            let ev = DnsEvent {
                ts: T0 + round * 3600 * SEC + i as u64 * 1000,
                client: clients[(i / 2) % clients.len()],
                server: ip("192.0.2.53"),
                msg: m,
                wire_len: 100,
            };
            d.on_dns(&ev, &mut out);
        }
        out.clear();
    }
    let n = rounds * msgs.len() as u64;
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("{n} messages, {ns:.0} ns/message, stats {:?}", d.stats());
}

/// A burst that straddles what would be a fixed window boundary: the group opens with one
/// ordinary query at T0, then 12 encoded queries in the 10 s before T0+60 s and 12 in the
/// 10 s after. Cut at T0+60 s, neither half has the 15 new names the volume side needs; the
/// sliding window sees all 24 together and alerts.
#[test]
fn a_burst_across_a_window_boundary_is_seen_whole() {
    let mut d = det();
    let mut out = Vec::new();
    let mut rng = Rng(7);
    feed(&mut d, T0, "10.0.0.9", &query("www.straddle.example", rtype::A), &mut out);
    for i in 0..24u64 {
        let name = format!("{}.straddle.example", rng.text(HEX, 40));
        feed(&mut d, T0 + 50 * SEC + i * 20 * SEC / 24, "10.0.0.9", &query(&name, rtype::TXT), &mut out);
    }
    let alerts = by_rule(&out, "dns_tunneling");
    assert_eq!(alerts.len(), 1, "{:?}", out.iter().map(|a| a.doc.get("event.reason")).collect::<Vec<_>>());
    let a = alerts[0];
    assert!(a.ts >= T0 + 60 * SEC, "raised once the burst passed the boundary");
    assert!(a.doc.to_map()["portent.tunnel.distinct_subdomains"].as_f64().unwrap() >= 15.0, "{:?}", a.doc);
}

/// The alert takes each feature's keys from `FEATURE_KEYS` (formatting them only for a
/// feature missing there): the table must list every feature `group_features` reports.
#[test]
fn every_feature_has_its_keys_in_the_table() {
    let mut d = det();
    let mut out = Vec::new();
    feed(&mut d, T0, "10.0.0.9", &query("www.keys.example", rtype::A), &mut out);
    let g = d.slots.iter().find(|g| g.live).expect("one group");
    let names: Vec<&str> = group_features(g, &d.cfg).iter().map(|f| f.name).collect();
    let table: Vec<&str> = FEATURE_KEYS.iter().map(|k| k.0).collect();
    assert_eq!(names, table);
    for (name, value, threshold) in FEATURE_KEYS {
        assert_eq!((value, threshold), (&*feature_keys(name).0, &*feature_keys(name).1));
        assert_eq!(value, format!("portent.tunnel.{name}"));
        assert_eq!(threshold, format!("portent.tunnel.{name}_threshold"));
    }
    assert_eq!(TYPE_KEYS[0], "portent.tunnel.type_txt");
}

#[test]
fn long_and_short_domains_keep_one_group_each_per_client() {
    // Registered domains longer than the inline buffer live on the heap; both kinds must be
    // found again, kept apart per client, and reported by name.
    let long_label = "l".repeat(60);
    let long = format!("{long_label}.com");
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..40u64 {
        for client in ["10.7.0.1", "10.7.0.2"] {
            feed(&mut d, T0 + i * SEC, client, &query(&format!("{:032x}.{long}", i * 7919), 16), &mut out);
            feed(&mut d, T0 + i * SEC, client, &query(&format!("h{i}.example.com"), 1), &mut out);
        }
    }
    assert_eq!((d.stats().groups, d.stats().clients), (4, 2));
    for client in ["10.7.0.1", "10.7.0.2"] {
        let i = d.slot_of(ip(client), &long).unwrap();
        let g = &d.slots[i as usize];
        assert!(matches!(g.domain, SmallBytes::Heap(_)));
        assert_eq!(g.h_queries, 40);
        let i = d.slot_of(ip(client), "example.com").unwrap();
        let g = &d.slots[i as usize];
        assert!(matches!(g.domain, SmallBytes::Inline { .. }));
        assert_eq!(g.h_queries, 40);
    }
    let t = by_rule(&out, "dns_tunneling");
    assert_eq!(t.len(), 2, "{t:?}");
    for a in t {
        assert_eq!(a.doc.to_map()["dns.question.registered_domain"], long.as_str());
    }
}

#[test]
fn the_horizon_feature_is_where_score_looks_for_it() {
    let mut d = det();
    let mut out = Vec::new();
    feed(&mut d, T0, "10.8.0.1", &query("a.example.com", 1), &mut out);
    let i = d.slot_of(ip("10.8.0.1"), "example.com").unwrap();
    let g = &d.slots[i as usize];
    assert_eq!(group_features(g, &d.cfg)[HORIZON_FEATURE].name, "info_bytes_horizon");
}

/// A window with counters up to `level` quarters of about the default thresholds, empty
/// one time in four.
fn random_window(r: &mut Rng, level: usize) -> Window {
    let mut n = |k: usize| r.below(k * level / 4) as u32;
    if n(4) == 0 {
        return Window { start: T0, last: T0, ..Window::default() };
    }
    let mut w = Window {
        start: T0,
        last: T0 + 5 * SEC,
        queries: n(40),
        responses: n(40),
        distinct: n(20),
        sub_len_sum: n(4000) as u64,
        max_sub: n(80),
        max_label: n(64),
        entropy_sum: n(200) as f64 / 7.0,
        entropy_n: n(40),
        txt_null_answers: n(60),
        nxdomain: n(40),
        bytes_up: n(4000) as u64,
        bytes_down: n(10_000) as u64,
        single_query: n(8) == 0,
        ..Window::default()
    };
    for c in w.encoded.iter_mut().chain(w.types.iter_mut()) {
        *c = n(20);
    }
    if w.queries == 0 && w.responses == 0 {
        w.queries = 1;
    }
    w
}

/// The pre-check before the score says "maybe" exactly when a volume feature or a
/// standalone rule counts, and never skips a group whose full score reaches the threshold,
/// over random groups and configurations with thresholds of zero and odd score thresholds.
#[test]
fn may_alert_agrees_with_the_full_score() {
    let mut r = Rng(0x5eed);
    let mut d = det();
    let mut out = Vec::new();
    feed(&mut d, T0, "10.9.0.1", &query("a.example.com", 1), &mut out);
    let i = d.slot_of(ip("10.9.0.1"), "example.com").unwrap() as usize;
    let (mut maybe, mut alerts) = (0, 0);
    for round in 0..200_000 {
        let mut cfg = TunnelConfig::default();
        let pick = |r: &mut Rng, d: u32| [0, 1, d / 2, d, d * 2][r.below(5)];
        cfg.queries = pick(&mut r, 30);
        cfg.distinct_subdomains = pick(&mut r, 15);
        cfg.bytes_up = pick(&mut r, 3000) as u64;
        cfg.bytes_down = pick(&mut r, 8000) as u64;
        cfg.long_name_queries = pick(&mut r, 25);
        cfg.long_name_distinct = pick(&mut r, 15);
        cfg.txt_null_answers = pick(&mut r, 50);
        cfg.info_bytes = pick(&mut r, 4096) as u64;
        cfg.subdomain_len = pick(&mut r, 50);
        cfg.label_len = pick(&mut r, 40);
        cfg.threshold = [4.0, 0.5, 1.0, 0.0, -1.0, 8.0, f64::NAN, f64::INFINITY][r.below(8)];
        let g = &mut d.slots[i];
        let level = 1 + r.below(4);
        g.w = random_window(&mut r, level);
        let e = random_window(&mut r, level);
        // An empty earlier half, boxed or not, reads the same.
        g.earlier = if e.is_empty() && r.below(2) == 0 { None } else { Some(Box::new(e)) };
        g.long_queries = r.below(15 * level) as u32;
        g.long_distinct = r.below(10 * level) as u32;
        g.info_bits = r.below(20_000 * level) as f64 / 1.5;
        g.info_alerted = [0.0, r.below(10_000) as f64 / 3.0][r.below(2)];
        let g = &d.slots[i];
        let fs = group_features(g, &cfg);
        let (s, _) = score(&fs, &cfg, g);
        let counts = fs.iter().enumerate().any(|(k, f)| match f.kind {
            Kind::Volume => f.crossed(),
            Kind::Standalone if k == HORIZON_FEATURE => {
                f.crossed() && f.value >= g.info_alerted + cfg.info_bytes as f64
            }
            Kind::Standalone => f.crossed(),
            _ => false,
        });
        let fast = may_alert(g, &cfg);
        if cfg.threshold > 0.0 {
            assert_eq!(fast, counts, "round {round}");
        } else {
            assert!(fast, "round {round}");
        }
        assert!(fast || s < cfg.threshold || s.is_nan(), "round {round}: score {s}");
        maybe += fast as u32;
        alerts += (s >= cfg.threshold) as u32;
    }
    // Both sides of the decision were exercised.
    assert!(maybe > 20_000 && maybe < 180_000 && alerts > 10_000, "{maybe} {alerts}");
}

#[test]
fn has_ascii_upper_matches_the_byte_test() {
    let mut r = Rng(3);
    for n in 0..5000 {
        let b: Vec<u8> = (0..n % 40).map(|_| r.next() as u8).collect();
        assert_eq!(has_ascii_upper(&b), b.iter().any(|c| c.is_ascii_uppercase()), "{b:?}");
    }
    for c in 0..=255u8 {
        for pos in 0..9 {
            let mut b = vec![b'a'; 9];
            b[pos] = c;
            assert_eq!(has_ascii_upper(&b), c.is_ascii_uppercase(), "{c} at {pos}");
        }
    }
}

#[test]
fn small_bytes_hold_any_length() {
    let mut b = SmallBytes::<INLINE_BYTES>::default();
    assert!(b.is_empty());
    for n in [0usize, 1, 37, 38, 39, 5, 200, 3, 0, 255] {
        let v: Vec<u8> = (0..n).map(|i| i as u8).collect();
        b.set(&v);
        assert_eq!(b.as_bytes(), &v[..]);
        assert_eq!(b.len(), n);
    }
    b.clear();
    assert!(b.is_empty());
}

/// The index, the links beside the slab and the recency list against a plain model (an
/// exact LRU list of keys) over random lookups, evictions at the cap, expiry and slot
/// re-use, with long and short registered domains: every live group is found through the
/// index by its hash, and nothing else is in it.
#[test]
fn index_and_recency_list_agree_with_a_reference_lru() {
    const CAP: usize = 48;
    let mut r = Rng(0x1d3);
    let mut d = TunnelDetector::new(TunnelConfig { max_groups: CAP, ..TunnelConfig::default() }).unwrap();
    let mut out = Vec::new();
    // Most recently seen first, with the time each key was last seen.
    let mut model: Vec<((IpAddr, String), Nanos)> = Vec::new();
    let long = "x".repeat(50);
    let mut ts = T0;
    for step in 0..20_000 {
        ts += r.below(40) as Nanos * SEC;
        if r.below(200) == 0 {
            // Idle groups leave from the tail, as the detector's expiry walks it.
            let now = ts + r.below(2 * 24 * 3600) as Nanos * SEC;
            d.expire(now, &mut out);
            model.retain(|(_, seen)| seen.saturating_add(d.cfg.horizon) > now);
            ts = now;
        } else {
            let client = format!("10.0.{}.{}", r.below(3), r.below(8));
            let n = r.below(30);
            let domain = if n % 7 == 0 { format!("d{n}{long}.com") } else { format!("d{n}.com") };
            feed(&mut d, ts, &client, &query(&format!("h{}.{domain}", r.below(5)), 1), &mut out);
            let key = (ip(&client), domain);
            match model.iter().position(|(k, _)| *k == key) {
                Some(p) => {
                    model.remove(p);
                }
                None if model.len() >= CAP => {
                    model.pop();
                }
                None => {}
            }
            model.insert(0, (key, ts));
        }
        assert_eq!(d.index.len(), model.len(), "step {step}");
        assert_eq!(d.stats().groups, model.len(), "step {step}");
        // The recency list, head to tail, is the model's order.
        let mut at = d.head;
        for ((client, domain), _) in &model {
            let g = &d.slots[at as usize];
            assert!(g.live, "step {step}");
            assert_eq!((g.client, g.domain.as_str()), (*client, domain.as_str()), "step {step}");
            let link = d.links[at as usize];
            assert_eq!(link.hash, d.hasher.hash_one((*client, domain.as_str())), "step {step}");
            let found = d.index.find(link.hash, |&j| j == at);
            assert!(found.is_some(), "step {step}: {domain} not in the index");
            at = link.next;
        }
        assert_eq!(at, NIL, "step {step}");
        assert_eq!(d.slots.iter().filter(|g| g.live).count(), model.len(), "step {step}");
    }
    assert!(d.stats().evictions > 1000 && d.stats().expired > 100, "{:?}", d.stats());
}

/// What the order of `Group` is for: the key in the first cache line, what a message
/// reads after it, and no more than six lines in all.
#[test]
fn group_layout_keeps_the_key_in_one_line() {
    use std::mem::{offset_of, size_of};
    let line = |offset: usize| offset / 64;
    assert_eq!(size_of::<Window>(), 128);
    assert_eq!(size_of::<Group>(), 384);
    assert_eq!(line(offset_of!(Group, domain) + size_of::<SmallBytes<INLINE_DOMAIN>>() - 1), 0);
    assert_eq!(line(offset_of!(Group, client) + size_of::<IpAddr>() - 1), 0);
    // What `may_alert` reads of the earlier half sits in one line of the box.
    assert!(offset_of!(Window, bytes_down) + 8 <= 32 && offset_of!(Window, single_query) < 32);
}

/// Expiring every group at once counts and leaves what removing them one by one does, and
/// the detector carries on as before.
#[test]
fn expiring_every_group_at_once_matches_one_by_one() {
    let fill = |d: &mut TunnelDetector| {
        let mut r = Rng(0x7e4);
        let mut out = Vec::new();
        for i in 0..3_000u64 {
            let client = format!("10.1.{}.{}", r.below(4), r.below(50));
            let name = format!("h{}.d{}.com", r.below(9), r.below(40));
            // Out of order now and then, as merged captures are.
            let ts = T0 + i * SEC - r.below(5) as Nanos * SEC;
            feed(d, ts, &client, &query(&name, 1), &mut out);
            feed(d, ts, &client, &response(&name, 1, 0, &[(1, 4)]), &mut out);
        }
        out.len()
    };
    let (mut bulk, mut walk) = (det(), det());
    assert_eq!(fill(&mut bulk), fill(&mut walk));
    let before = walk.stats();
    assert!(before.groups > 1000 && before.clients > 100, "{before:?}");
    let mut out = Vec::new();
    for now in [T0 + 24 * 3600 * SEC, Nanos::MAX / 2] {
        bulk.expire(now, &mut out);
        walk.expire_tail(now);
        assert_eq!(bulk.stats(), walk.stats());
    }
    assert_eq!(walk.stats().expired, before.groups as u64);
    assert_eq!((bulk.stats().groups, bulk.stats().clients, bulk.head, bulk.tail), (0, 0, NIL, NIL));
    assert!(bulk.index.is_empty() && bulk.free.is_empty() && bulk.slots.is_empty());
    // Both take new traffic alike afterwards.
    let (a, b) = (fill(&mut bulk), fill(&mut walk));
    assert_eq!(a, b);
    assert_eq!(bulk.stats().groups, walk.stats().groups);
    assert_eq!(bulk.stats().clients, walk.stats().clients);
}

/// The group a name's last message found is only a hint: a slot since taken by another
/// group, or a name from another client, falls back to the index.
#[test]
fn a_stale_group_hint_falls_back_to_the_index() {
    let mut d = TunnelDetector::new(TunnelConfig { max_groups: 1, ..TunnelConfig::default() }).unwrap();
    let mut out = Vec::new();
    let name = "x.a.example.com";
    feed(&mut d, T0, "10.0.0.1", &query(name, 1), &mut out);
    let a = d.slot_of(ip("10.0.0.1"), "example.com").unwrap();
    // Another client's group evicts the first and takes its slot.
    feed(&mut d, T0 + SEC, "10.0.0.2", &query("y.example.org", 1), &mut out);
    assert_eq!(d.slot_of(ip("10.0.0.2"), "example.org"), Some(a));
    // The name's hint points at that slot, which now holds another key.
    feed(&mut d, T0 + 2 * SEC, "10.0.0.1", &response(name, 1, 0, &[]), &mut out);
    assert_eq!(d.slot_of(ip("10.0.0.2"), "example.org"), None);
    let g = &d.slots[a as usize];
    assert_eq!((g.client, g.domain.as_str(), g.w.queries), (ip("10.0.0.1"), "example.com", 1));
    // Same name, another client: its own group, not the first client's.
    feed(&mut d, T0 + 3 * SEC, "10.0.0.3", &query(name, 1), &mut out);
    let g = &d.slots[a as usize];
    assert_eq!((g.client, g.w.queries, g.w.responses), (ip("10.0.0.3"), 1, 0));
    assert_eq!(d.stats().evictions, 3);
    // A response after its query takes the hint and counts in the same group.
    feed(&mut d, T0 + 4 * SEC, "10.0.0.3", &response(name, 1, 0, &[]), &mut out);
    let g = &d.slots[a as usize];
    assert_eq!((g.client, g.w.queries, g.w.responses), (ip("10.0.0.3"), 1, 1));
    assert_eq!((d.stats().groups, d.stats().evictions), (1, 3));
}

/// Two clients whose tags collide still get a group each: the tag only spares a read, the
/// key decides.
#[test]
fn clients_with_one_tag_keep_their_own_groups() {
    let (a, b) = ("2001:db8::1", "2001:db8::1:0:0");
    assert_eq!(domain::client_tag(ip(a)), domain::client_tag(ip(b)));
    let mut d = det();
    let mut out = Vec::new();
    let name = "x.a.example.com";
    for (k, c) in [a, b, a, b].into_iter().enumerate() {
        feed(&mut d, T0 + k as Nanos * SEC, c, &query(name, 1), &mut out);
        feed(&mut d, T0 + k as Nanos * SEC, c, &response(name, 1, 0, &[]), &mut out);
    }
    assert_eq!(d.stats().groups, 2);
    for c in [a, b] {
        let g = &d.slots[d.slot_of(ip(c), "example.com").unwrap() as usize];
        assert_eq!((g.w.queries, g.w.responses), (2, 2));
    }
}

/// Every filter in the pool belongs to exactly one live group: groups evicted at the cap,
/// expired, or past their horizon hand theirs back, and the pool never outgrows the cap.
#[test]
fn bloom_filters_are_handed_back() {
    let cap = 64;
    let mut d = TunnelDetector::new(TunnelConfig { max_groups: cap, ..TunnelConfig::default() }).unwrap();
    let held = |d: &TunnelDetector| {
        d.slots.iter().filter(|g| g.live).filter(|g| matches!(g.seen, Seen::Bloom(_))).count()
    };
    let mut r = Rng(0xb100);
    let mut out = Vec::new();
    let horizon = d.cfg.horizon;
    for i in 0..20_000u64 {
        let client = format!("10.2.0.{}", r.below(10));
        let name = format!("{}.d{}.com", r.text(B32, 12), r.below(8));
        // Long gaps now and then: whole horizons pass, and groups expire (when the sweep
        // comes first) or start a new horizon (when their next query does).
        let ts = T0 + i * SEC / 10 + (i / 5_000) * 2 * horizon;
        if i % 5_000 == 0 && i % 10_000 != 0 {
            d.expire(ts - 1, &mut out);
        }
        feed(&mut d, ts, &client, &query(&name, 1), &mut out);
        assert_eq!(d.blooms.taken(), held(&d), "after message {i}");
        assert!(d.blooms.bits.len() <= cap);
    }
    assert!(d.stats().evictions > 0 && d.stats().expired > 0, "{:?}", d.stats());
    d.expire(Nanos::MAX / 2, &mut out);
    assert_eq!((d.blooms.taken(), d.blooms.bits.len()), (0, 0));
}

/// A pooled filter counts distinct names as the boxed one did: the second name is always
/// new, repeats never are, and a taken-again entry starts empty.
#[test]
fn a_reused_bloom_filter_starts_empty() {
    let mut blooms = Blooms::default();
    let mut a = Seen::Empty;
    assert!(a.insert(1, &mut blooms) && !a.insert(1, &mut blooms));
    // The same two bits as 1 (bit 1 twice): still counted as a new name, as before.
    assert!(a.insert(1 | (1 << 32), &mut blooms));
    assert!(!a.insert(1, &mut blooms));
    assert!(a.insert(5, &mut blooms) && !a.insert(5, &mut blooms));
    a.release(&mut blooms);
    assert!(matches!(a, Seen::Empty) && blooms.taken() == 0);
    let mut b = Seen::Empty;
    assert!(b.insert(7, &mut blooms) && b.insert(9, &mut blooms));
    assert!(b.insert(5, &mut blooms), "bits left by the last owner are gone");
    assert_eq!((blooms.taken(), blooms.bits.len()), (1, 1));
}

/// A group reset in place is exactly the group `new` builds: every field (the Debug form
/// shows them all), with the name buffers compared by contents since `reset` alone keeps
/// those on the heap (`release` frees them first when a group is removed).
#[test]
fn a_reset_group_starts_like_a_new_one() {
    let mut blooms = Blooms::with_capacity(4);
    let long = format!("{}.com", "d".repeat(60));
    let mut g = Group::new(ip("10.0.0.1"), &long, T0);
    let mut r = Rng(0x5e7);
    g.server = ip("10.9.9.9");
    (g.saw_query, g.live) = (true, false);
    g.last_seen = T0 + 9 * SEC;
    assert!(g.seen.insert(1, &mut blooms) && g.seen.insert(2, &mut blooms));
    g.seen.release(&mut blooms);
    assert!(g.seen.insert(3, &mut blooms));
    g.example.set("e".repeat(90).as_bytes());
    g.prev_name.set("p".repeat(70).as_bytes());
    g.w = random_window(&mut r, 3);
    g.earlier = Some(Box::new(random_window(&mut r, 3)));
    (g.last_query, g.quiet_until, g.long_start, g.h_start) = (T0 + 1, T0 + 2, T0 + 3, T0 + 4);
    (g.h_queries, g.info_bits, g.info_alerted) = (77, 12.5, 3.25);
    (g.long_queries, g.long_distinct) = (5, 4);
    let ts = T0 + 100 * SEC;
    g.reset(ip("2001:db8::7"), "example.org", ts);
    assert!(matches!(g.example, SmallBytes::Heap(_)), "reset alone keeps the buffer");
    let fresh = Group::new(ip("2001:db8::7"), "example.org", ts);
    let inline = |g: &mut Group| {
        g.domain = SmallBytes::new(g.domain.as_bytes());
        g.example = SmallBytes::new(g.example.as_bytes());
        g.prev_name = SmallBytes::new(g.prev_name.as_bytes());
        format!("{g:?}")
    };
    assert_eq!(inline(&mut g), format!("{fresh:?}"));
    // Removed (filter, box and heap buffers handed back), then reused.
    g.domain.set(long.as_bytes());
    g.example.set("e".repeat(90).as_bytes());
    g.prev_name.set("p".repeat(70).as_bytes());
    g.earlier = Some(Box::new(random_window(&mut r, 2)));
    assert!(g.seen.insert(4, &mut blooms) && g.seen.insert(5, &mut blooms));
    g.release(&mut blooms);
    assert!(!g.live && g.earlier.is_none() && blooms.taken() == 0);
    assert!([&g.domain, &g.example, &g.prev_name].iter().all(|b| matches!(b, SmallBytes::Inline { .. })));
    g.reset(ip("2001:db8::7"), "example.org", ts);
    assert_eq!(format!("{g:?}"), format!("{fresh:?}"));
}

/// A group in a reused slot (whose last owner had long names, a boxed earlier half and a
/// filter) alerts and scores exactly as the same traffic in a fresh detector.
#[test]
fn a_reused_slot_behaves_like_a_fresh_one() {
    let run = |d: &mut TunnelDetector, t: Nanos, out: &mut Vec<Alert>| {
        for k in 0..400u64 {
            let name = format!("{:x}{k}.t.example.net", k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            feed(d, t + k * SEC / 4, "10.0.0.2", &query(&name, 16), out);
            feed(d, t + k * SEC / 4, "10.0.0.2", &response(&name, 16, 0, &[(16, 200)]), out);
        }
    };
    let mut used = det();
    let mut out = Vec::new();
    let long = "q".repeat(50);
    for k in 0..600u64 {
        let name = format!("{long}{k}.{}.com", "r".repeat(45));
        feed(&mut used, T0 + k * SEC, "10.0.0.1", &query(&name, 16), &mut out);
    }
    let slot = used.slot_of(ip("10.0.0.1"), &format!("{}.com", "r".repeat(45))).unwrap();
    assert!(used.slots[slot as usize].earlier.is_some());
    let later = T0 + 10 * 24 * 3600 * SEC;
    // Expired one by one (not all at once), so the slot is reused rather than cleared.
    used.cfg.horizon = SEC;
    used.expire_tail(later);
    used.cfg.horizon = det().cfg.horizon;
    assert_eq!((used.stats().groups, used.free.len()), (0, 1));
    let mut a = Vec::new();
    run(&mut used, later, &mut a);
    assert_eq!(used.slot_of(ip("10.0.0.2"), "example.net"), Some(slot));
    let mut fresh = det();
    let mut b = Vec::new();
    run(&mut fresh, later, &mut b);
    assert!(!a.is_empty());
    let doc = |v: &[Alert]| v.iter().map(|x| format!("{:?}", x.doc)).collect::<Vec<_>>();
    assert_eq!(doc(&a), doc(&b));
    let (gu, gf) = (&used.slots[slot as usize], &fresh.slots[0]);
    let fs = |g: &Group| format!("{:?}", group_features(g, &used.cfg));
    assert_eq!(fs(gu), fs(gf));
}
