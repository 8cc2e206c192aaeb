//! The queue, spool and shipper against an in-memory broker that can be taken down: order,
//! bounds, the drop policy, and records kept across a restart.

use super::*;
use std::path::Path;

#[derive(Default)]
struct BrokerState {
    up: bool,
    /// Records written, in the order the broker took them.
    log: Vec<Rec>,
    /// Most records acknowledged per poll (0: all).
    rate: usize,
}

#[derive(Clone, Default)]
struct Broker(Arc<Mutex<BrokerState>>);

impl Broker {
    fn new(up: bool, rate: usize) -> Broker {
        Broker(Arc::new(Mutex::new(BrokerState { up, log: Vec::new(), rate })))
    }
    fn set_up(&self, up: bool) {
        self.0.lock().unwrap().up = up;
    }
    fn log(&self) -> Vec<Rec> {
        self.0.lock().unwrap().log.clone()
    }
}

/// A producer with a bounded queue in front of the broker.
struct Fake {
    broker: Broker,
    queue: VecDeque<(u64, Rec)>,
    cap: usize,
    stats: Arc<KafkaStats>,
}

impl Transport for Fake {
    fn send(&mut self, rec: Rec, seq: u64) -> Sent {
        if self.queue.len() >= self.cap {
            return Sent::Full(rec);
        }
        self.queue.push_back((seq, rec));
        Sent::Queued
    }

    fn poll(&mut self, wait: Duration) {
        let mut b = self.broker.0.lock().unwrap();
        if !b.up {
            drop(b);
            std::thread::sleep(wait.min(Duration::from_millis(1)));
            return;
        }
        let n = if b.rate == 0 { self.queue.len() } else { b.rate.min(self.queue.len()) };
        for (_, r) in self.queue.drain(..n) {
            self.stats.on_delivered(r.kind, r.payload.len());
            b.log.push(r);
        }
    }

    fn in_flight(&self) -> u64 {
        self.queue.len() as u64
    }

    fn purge(&mut self) -> Vec<(u64, Rec)> {
        self.queue.drain(..).collect()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portent-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn settings(dir: &Path, spool_mb: u64, flush_secs: u64) -> KafkaSettings {
    KafkaSettings {
        brokers: Some("fake:9092".into()),
        dns_topic: Some("portent-dns".into()),
        spool_dir: dir.to_path_buf(),
        spool_mb,
        flush_timeout_secs: flush_secs,
        ..KafkaSettings::default()
    }
}

fn start(s: &KafkaSettings, mode: Delivery, broker: &Broker, cap: usize) -> KafkaOut {
    let b = broker.clone();
    KafkaOut::start_with(s, mode, move |stats| Ok(Fake { broker: b, queue: VecDeque::new(), cap, stats }))
        .unwrap()
}

/// Record `i` of kind `k`, about `pad` bytes.
fn rec(k: Kind, i: usize, pad: usize) -> Rec {
    let payload = format!("{{\"kind\":\"{}\",\"n\":{i},\"pad\":\"{}\"}}", k.name(), "x".repeat(pad));
    Rec::new(k, &format!("10.0.{}.{}", i / 250 % 250, i % 250), &payload)
}

fn send_all(out: &mut KafkaOut, recs: &[Rec]) {
    for r in recs {
        out.send(r.kind, &r.key, &r.payload);
    }
    out.flush();
}

fn of_kind(recs: &[Rec], k: Kind) -> Vec<Rec> {
    recs.iter().filter(|r| r.kind == k).cloned().collect()
}

fn mixed(n: usize, pad: usize) -> Vec<Rec> {
    (0..n).map(|i| rec(if i % 10 == 0 { Kind::Alert } else { Kind::Dns }, i, pad)).collect()
}

fn l(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn with_the_broker_up_everything_arrives_once_in_order() {
    let d = tmp("up");
    let broker = Broker::new(true, 0);
    let mut out = start(&settings(&d, 64, 5), Delivery::Spill, &broker, 1000);
    let recs = mixed(5000, 20);
    send_all(&mut out, &recs);
    let st = out.close();
    let log = broker.log();
    for k in [Kind::Alert, Kind::Dns] {
        assert_eq!(of_kind(&log, k), of_kind(&recs, k), "{k:?}");
    }
    assert_eq!(l(&st.delivered[0]) + l(&st.delivered[1]), 5000);
    assert_eq!(l(&st.spool_records), 0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_outage_spools_and_the_spool_goes_out_in_order_when_the_broker_returns() {
    let d = tmp("outage");
    let broker = Broker::new(false, 0);
    let mut out = start(&settings(&d, 64, 20), Delivery::Spill, &broker, 100);
    // More than the producer and the in-memory queue hold together.
    let recs = mixed(QUEUE_RECORDS + 20_000, 30);
    send_all(&mut out, &recs[..QUEUE_RECORDS + 10_000]);
    let st = out.stats();
    assert!(l(&st.spooled[1]) > 0, "records went to the spool: {}", st.to_json());
    assert!(broker.log().is_empty());
    broker.set_up(true);
    // Records keep coming while the spool drains.
    send_all(&mut out, &recs[QUEUE_RECORDS + 10_000..]);
    let st = out.close();
    let log = broker.log();
    for k in [Kind::Alert, Kind::Dns] {
        assert_eq!(of_kind(&log, k), of_kind(&recs, k), "{k:?}: once each, in order");
    }
    assert_eq!(l(&st.dropped[0]) + l(&st.dropped[1]), 0);
    assert!(l(&st.resent[1]) > 0);
    assert_eq!(l(&st.spool_records), 0, "{}", st.to_json());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn what_is_not_delivered_at_exit_goes_out_first_on_the_next_start() {
    let d = tmp("restart");
    let broker = Broker::new(false, 0);
    let recs = mixed(3000, 30);
    let mut out = start(&settings(&d, 64, 0), Delivery::Spill, &broker, 500);
    send_all(&mut out, &recs[..2000]);
    // Let the shipper fill the producer's queue before the exit.
    wait_until(|| l(&out.stats().in_flight) == 500);
    let st = out.close();
    assert_eq!(l(&st.returned_at_exit) + l(&st.spooled[0]) + l(&st.spooled[1]), 2000, "{}", st.to_json());
    assert_eq!(l(&st.spool_records), 2000);
    assert!(broker.log().is_empty());

    // The next run: the broker is back, and new records follow the old ones.
    broker.set_up(true);
    let mut out = start(&settings(&d, 64, 5), Delivery::Spill, &broker, 500);
    assert_eq!(l(&out.stats().recovered), 2000);
    send_all(&mut out, &recs[2000..]);
    let st = out.close();
    let log = broker.log();
    for k in [Kind::Alert, Kind::Dns] {
        assert_eq!(of_kind(&log, k), of_kind(&recs, k), "{k:?}");
    }
    assert_eq!(l(&st.spool_records), 0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_full_spool_drops_the_oldest_dns_records_first_and_alerts_last() {
    let d = tmp("full");
    let broker = Broker::new(false, 0);
    let mut out = start(&settings(&d, 1, 0), Delivery::Spill, &broker, 10);
    // ~500-byte records: the 1 MiB spool holds about 2000.
    let recs = mixed(QUEUE_RECORDS + 10_000, 450);
    send_all(&mut out, &recs);
    let st = out.stats();
    let (da, dd) = (l(&st.dropped[0]), l(&st.dropped[1]));
    assert!(dd > 0, "DNS records dropped: {}", st.to_json());
    assert_eq!(da, 0, "no alert dropped while DNS records were there to drop");
    assert!(l(&st.spool_bytes) <= 1 << 20);
    // Only alerts now: they push the last DNS records out, then the oldest alerts.
    let alerts: Vec<Rec> = (0..4000).map(|i| rec(Kind::Alert, 100_000 + i, 450)).collect();
    send_all(&mut out, &alerts);
    assert!(l(&st.dropped[0]) > 0, "{}", st.to_json());
    assert!(l(&st.spool_bytes) <= 1 << 20);
    // What is left of the DNS spool: nothing (every DNS segment went before any alert).
    {
        let g = lock(&out.shared.spools);
        assert!(g.s[Kind::Dns.index()].is_empty());
    }
    let total: u64 = recs.len() as u64 + 4000;
    let st = out.close();
    // Every record is accounted for: in the spool, put back, or dropped and counted.
    let accounted = l(&st.spool_records) + l(&st.dropped[0]) + l(&st.dropped[1]);
    assert_eq!(accounted, total, "{}", st.to_json());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn backpressure_waits_for_a_slow_broker_instead_of_dropping() {
    let d = tmp("slow");
    // Acknowledges 200 records a poll: slower than the sender.
    let broker = Broker::new(true, 200);
    let mut out = start(&settings(&d, 1, 5), Delivery::Backpressure, &broker, 1000);
    let recs = mixed(QUEUE_RECORDS * 2 + 5000, 450);
    send_all(&mut out, &recs);
    let st = out.close();
    assert_eq!(l(&st.dropped[0]) + l(&st.dropped[1]), 0, "{}", st.to_json());
    let log = broker.log();
    for k in [Kind::Alert, Kind::Dns] {
        assert_eq!(of_kind(&log, k), of_kind(&recs, k), "{k:?}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn two_sensors_cannot_share_a_spool() {
    let d = tmp("lock");
    let broker = Broker::new(true, 0);
    let s = settings(&d, 1, 1);
    let out = start(&s, Delivery::Spill, &broker, 10);
    let b = broker.clone();
    let e = KafkaOut::start_with(&s, Delivery::Spill, move |stats| {
        Ok(Fake { broker: b, queue: VecDeque::new(), cap: 10, stats })
    })
    .err()
    .unwrap();
    assert!(e.contains("in use by another portent"), "{e}");
    drop(out);
    // Free again once the first is gone.
    let out = start(&s, Delivery::Spill, &broker, 10);
    drop(out);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn names_are_checked() {
    assert!(check_topic("portent-alerts").is_ok());
    assert!(check_topic("a.b_c-1").is_ok());
    assert!(check_topic("").is_err());
    assert!(check_topic("..").is_err());
    assert!(check_topic("bad topic").is_err());
    assert!(check_topic("nul\0").is_err());
    assert!(check_topic(&"x".repeat(250)).is_err());
    assert!(check_brokers("127.0.0.1:9092").is_ok());
    assert!(check_brokers("k1:9092, k2:9093").is_ok());
    assert!(check_brokers("[::1]:9092").is_ok());
    assert!(check_brokers("k1").is_err());
    assert!(check_brokers("k1:0").is_err());
    assert!(check_brokers(":9092").is_err());
}
