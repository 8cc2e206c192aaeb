//! Floods: state stays within its caps however many distinct keys arrive.

use portent::cache::{AnswerCache, CacheConfig};
use portent::dns::{DnsMessage, Question, RData, Record};
use std::net::{IpAddr, Ipv4Addr};

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Documented limit for the answer cache at its default caps (README, "Memory").
const CACHE_RSS_LIMIT_KIB: u64 = 512 * 1024;

#[test]
fn a_million_distinct_clients_stay_within_the_cache_cap() {
    let cfg = CacheConfig::default();
    let cap = cfg.max_clients;
    let cache = AnswerCache::new(cfg);
    let msg = DnsMessage {
        response: true,
        questions: vec![Question { name: "flood.example".into(), qtype: 1, qclass: 1 }],
        answers: vec![Record {
            name: "flood.example".into(),
            rtype: 1,
            class: 1,
            ttl: 60,
            rdlen: 4,
            data: RData::A(Ipv4Addr::new(198, 51, 100, 7)),
        }],
        ..Default::default()
    };
    let before = rss_kib();
    let resolver: IpAddr = "10.0.0.53".parse().unwrap();
    for i in 0..1_000_000u32 {
        let client = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
        // All within one window: only the cap, not age, can make room.
        cache.insert(client, resolver, 1_000_000_000 + u64::from(i), &msg);
        if i % 100_000 == 0 {
            assert!(cache.len() <= cap);
        }
    }
    let st = cache.stats();
    assert!(cache.len() <= cap, "{} clients > cap {cap}", cache.len());
    assert_eq!(
        st.clients + st.evicted_clients,
        1_000_000,
        "every client is either kept or counted as evicted"
    );
    assert!(st.evicted_clients >= 1_000_000 - cap as u64);
    if let (Some(b), Some(a)) = (before, rss_kib()) {
        eprintln!("RSS {b} KiB before, {a} KiB after a million clients");
        assert!(a.saturating_sub(b) < CACHE_RSS_LIMIT_KIB, "the cache grew by {} KiB", a - b);
    }
}
