//! `Engine::reload`, the SIGHUP path of `live`: new feeds and allowlists reach every worker
//! between two batches, and the state built before them (answer cache, de-duplication,
//! tunnel windows) is still there after. Run with several workers so that the lists must
//! reach each of them.

mod common;

use common::*;
use portent::config::Config;
use portent::detect::lists::Lists;
use portent::detect::reputation::DomainSet;
use portent::net::CidrSet;
use portent::output::Sink;
use portent::pipeline::{Engine, Flow, Outputs, Progress};
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

struct Rig {
    e: Engine,
    alerts: PathBuf,
    resolver: IpAddr,
    _dir: TmpDir,
}

impl Rig {
    fn new(tag: &str, cfg: Config) -> Rig {
        let dir = tmpdir(tag);
        let alerts = dir.join("alerts.ndjson");
        let outs = Outputs { alerts: Sink::create(&alerts).unwrap(), dns_log: None, kafka: None };
        let e = Engine::start(&Config { threads: 3, ..cfg }, outs, Arc::new(Progress::default())).unwrap();
        Rig { e, alerts, resolver: ip("10.0.0.53"), _dir: dir }
    }

    fn answer(&mut self, t: u64, client: &str, name: &str, addr: [u8; 4]) {
        let wire = dns_response_a(7, name, &[addr], 300);
        let flow = Flow { src: self.resolver, sport: 53, dst: ip(client), dport: 40000 };
        self.e.dns_message(t * SEC, flow, &wire);
    }

    fn query(&mut self, t: u64, client: &str, name: &str) {
        let wire = dns_query(7, name, 1);
        let flow = Flow { src: ip(client), sport: 40000, dst: self.resolver, dport: 53 };
        self.e.dns_message(t * SEC, flow, &wire);
    }

    fn syn(&mut self, t: u64, client: &str, dst: &str, port: u16) {
        self.e.syn(t * SEC, Flow { src: ip(client), sport: 41000, dst: ip(dst), dport: port });
    }

    /// (rule, client, domain or destination:port) of every alert, in output order.
    fn finish(self) -> Vec<(String, String, String)> {
        self.e.finish(vec![]).unwrap();
        ndjson(&self.alerts)
            .iter()
            .map(|a| {
                let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let what = match s("rule.name").as_str() {
                    "dns_calculation" => format!("{}:{}", s("destination.ip"), a["destination.port"]),
                    "dns_reputation" => s("portent.reputation.listed_domain"),
                    _ => s("dns.question.registered_domain"),
                };
                (s("rule.name"), s("source.ip"), what)
            })
            .collect()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidrs(v: &[&str]) -> CidrSet {
    CidrSet::parse_list(v).unwrap()
}

fn calc(rule: &str, client: &str, dst: &str) -> (String, String, String) {
    (rule.to_string(), client.to_string(), dst.to_string())
}

#[test]
fn an_answer_cached_before_the_reload_still_alerts_after_it() {
    let cfg = Config::default();
    let mut r = Rig::new("reload-calc", cfg.clone());
    // 198*51 + 100 = 10198; 203*(0+113) = 22939 (apt12_variant).
    r.answer(1, "10.0.0.5", "update.example", [198, 51, 100, 7]);
    r.answer(1, "10.0.0.6", "update.example", [198, 51, 100, 7]);
    r.answer(1, "10.0.0.7", "cdn.example", [203, 0, 113, 9]);
    r.syn(2, "10.0.0.6", "198.51.100.7", 10198);
    let mut lists = cfg.lists();
    // After the reload, 203.0.113.9 is a management address: never flagged as destination.
    lists.management_ips = cidrs(&["203.0.113.9"]);
    r.e.reload(lists);
    // Made before the reload, used after it.
    r.syn(3, "10.0.0.5", "198.51.100.7", 10198);
    // Alerted before the reload: still de-duplicated after it.
    r.syn(4, "10.0.0.6", "198.51.100.7", 10198);
    // Would alert without the new list.
    r.syn(5, "10.0.0.7", "203.0.113.9", 22939);
    let got = r.finish();
    assert_eq!(
        got,
        vec![
            calc("dns_calculation", "10.0.0.6", "198.51.100.7:10198"),
            calc("dns_calculation", "10.0.0.5", "198.51.100.7:10198"),
        ]
    );
}

#[test]
fn the_same_run_without_a_reload_alerts_on_all_three() {
    // The control for the test above: the management list is what silenced 203.0.113.9.
    let mut r = Rig::new("reload-calc-control", Config::default());
    r.answer(1, "10.0.0.7", "cdn.example", [203, 0, 113, 9]);
    r.syn(5, "10.0.0.7", "203.0.113.9", 22939);
    assert_eq!(r.finish(), vec![calc("dns_calculation", "10.0.0.7", "203.0.113.9:22939")]);
}

/// A subdomain long, base32 and entropic enough for the one-query tunneling rule (70
/// pseudo-random base32 characters in two labels), different for each `i`.
fn tunnel_name(i: u32, domain: &str) -> String {
    const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut x = 0x9e37_79b9u32.wrapping_mul(i + 1);
    let mut s = String::new();
    for k in 0..70 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.push(B32[(x % 32) as usize] as char);
        if k == 34 {
            s.push('.');
        }
    }
    format!("{s}.{domain}")
}

#[test]
fn a_newly_allowlisted_domain_stops_alerting() {
    let cfg = Config::default();
    let mut r = Rig::new("reload-allow", cfg.clone());
    r.query(1, "10.0.1.1", &tunnel_name(1, "tun.example"));
    let mut lists = cfg.lists();
    lists.domain_allowlist.push("tun.example".into());
    r.e.reload(lists);
    r.query(2, "10.0.1.2", &tunnel_name(2, "tun.example"));
    // Not on the list: still alerts after the reload.
    r.query(3, "10.0.1.3", &tunnel_name(3, "other.example"));
    let got = r.finish();
    assert_eq!(
        got,
        vec![
            calc("dns_tunneling", "10.0.1.1", "tun.example"),
            calc("dns_tunneling", "10.0.1.3", "other.example"),
        ]
    );
}

#[test]
fn a_newly_listed_reputation_domain_starts_alerting_and_old_pairs_stay_quiet() {
    let old = Arc::new(DomainSet::parse("known-bad.example\n"));
    let mut cfg = Config::default();
    cfg.calc.reputation = Some(old.clone());
    cfg.tunnel.reputation = Some(old);
    let mut r = Rig::new("reload-feed", cfg.clone());
    r.query(1, "10.0.2.1", "www.known-bad.example");
    r.query(1, "10.0.2.1", "www.new-bad.example");
    let mut lists: Lists = cfg.lists();
    lists.reputation = Some(Arc::new(DomainSet::parse("known-bad.example\nnew-bad.example\n")));
    r.e.reload(lists);
    // Alerted before: the (client, domain) pair is remembered across the reload.
    r.query(2, "10.0.2.1", "mail.known-bad.example");
    r.query(3, "10.0.2.1", "www.new-bad.example");
    let got = r.finish();
    assert_eq!(
        got,
        vec![
            calc("dns_reputation", "10.0.2.1", "known-bad.example"),
            calc("dns_reputation", "10.0.2.1", "new-bad.example"),
        ]
    );
}

#[test]
fn a_tunnel_window_keeps_filling_across_a_reload() {
    // A burst of 10 queries over 10 registered domains, half before and half after the
    // reload: it alerts only if the client's window survived.
    let mut cfg = Config::default();
    cfg.tunnel.burst_queries = 10;
    cfg.tunnel.burst_domains = 10;
    let mut r = Rig::new("reload-window", cfg.clone());
    for i in 0..5 {
        r.query(1, "10.0.3.1", &format!("www.site{i}.example"));
    }
    let mut lists = cfg.lists();
    lists.domain_allowlist.push("unrelated.example".into());
    r.e.reload(lists);
    for i in 5..10 {
        r.query(2, "10.0.3.1", &format!("www.site{i}.example"));
    }
    let got = r.finish();
    assert_eq!(got.iter().filter(|a| a.0 == "dns_query_burst").count(), 1, "{got:?}");
}
