//! The pipeline fed records that are not frames (what NSM log ingest does).

mod common;

use common::*;
use portent::config::Config;
use portent::output::Sink;
use portent::pipeline::{Engine, Flow, Outputs, Progress};
use std::sync::Arc;

#[test]
fn records_fed_directly_raise_the_same_alert_as_packets() {
    let d = tmpdir("engine");
    let alerts = d.join("alerts");
    let cfg = Config { threads: 2, event_module: Some("zeek".into()), ..Config::default() };
    let outs = Outputs { alerts: Sink::create(&alerts).unwrap(), dns_log: None, kafka: None };
    let mut e = Engine::start(&cfg, outs, Arc::new(Progress::default())).unwrap();
    let client = "10.0.0.5".parse().unwrap();
    let resolver = "10.0.0.53".parse().unwrap();
    let c2 = "198.51.100.7".parse().unwrap();
    let wire = dns_response_a(9, "update.example", &[[198, 51, 100, 7]], 300);
    e.dns_message(SEC, Flow { src: resolver, sport: 53, dst: client, dport: 40000 }, &wire);
    e.syn(2 * SEC, Flow { src: client, sport: 40001, dst: c2, dport: 10198 });
    e.syn(3 * SEC, Flow { src: client, sport: 40002, dst: c2, dport: 10199 });
    let r = e.finish(vec![]).unwrap();
    let got = ndjson(&alerts);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["destination.port"], 10198);
    assert_eq!(got[0]["dns.question.name"], "update.example");
    assert_eq!(got[0]["event.module"], "zeek");
    assert_eq!(r.reader.syns, 2);
    assert_eq!(r.workers.dns_messages, 1);
}
