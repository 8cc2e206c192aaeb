//! The producer: librdkafka through the `rdkafka` crate, set for no loss.
//!
//! - `acks=all` and `enable.idempotence=true`: the broker writes each record once and in
//!   order per partition, even across the client's own retries;
//! - at most 5 requests in flight per connection (the idempotent producer's limit, which
//!   keeps order);
//! - `message.timeout.ms=0`: a record is retried until it is delivered or purged at exit,
//!   never failed because the broker was away for a while;
//! - lz4 compression and 5 ms of linger: NDJSON compresses about 5:1, and at line rate
//!   batches fill long before the linger ends;
//! - bounded local queue (`queue.buffering.max.*`): when it is full, `send` says so and
//!   the shipper waits, and the sensor's own queue and spool take over.
//!
//! A producer can get stuck for good while its broker is up: after a fatal error
//! (librdkafka then refuses every record), or when a broker that lost its state (a new,
//! empty broker on the same address) keeps answering UNKNOWN_PRODUCER_ID to every epoch
//! the client bumps to on its own. Both are seen here (the error callback; the epoch
//! count in the client's statistics), and the producer is replaced: everything the old
//! one had not delivered is purged and handed to a new one (a new producer id) first, in
//! the shipper's order, before any newer record.
//!
//! `PORTENT_RDKAFKA_DEBUG` (librdkafka `debug` contexts, e.g. `eos,broker`) turns on the
//! client's own tracing, logged at debug level.

use super::{add, KafkaStats, Kind, Rec, Sent, Transport};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext, PurgeConfig,
};
use rdkafka::{ClientContext, Message};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most bytes the client holds (queued and in flight), KiB; the record bound is
/// `memory_records`.
const CLIENT_QUEUE_KBYTES: &str = "65536";

/// Client errors repeat every few hundred ms while a broker is down: log one per this.
const LOG_EVERY: Duration = Duration::from_secs(30);
/// At start, how long to wait for the brokers' topic list (only to warn about a topic
/// that does not exist).
const METADATA_WAIT: Duration = Duration::from_secs(2);
/// How often the client reports its statistics (read for its epoch bumps), ms.
const STATS_MS: &str = "1000";
/// Epoch bumps within one statistics interval that mean the broker refuses every epoch:
/// a working producer bumps once after an error and goes on.
const STUCK_BUMPS: i64 = 5;

struct Context {
    stats: Arc<KafkaStats>,
    topics: [String; 2],
    /// Records given back by a purge, with their sequence numbers.
    returned: Mutex<Vec<(u64, Rec)>>,
    last_log: Mutex<Option<Instant>>,
    /// Why this producer can no longer deliver (set once; it is then replaced).
    stuck: Mutex<Option<String>>,
    stuck_flag: AtomicBool,
    /// The idempotent producer's id and epoch at the last statistics.
    epoch: Mutex<(i64, i64)>,
}

impl Context {
    fn kind(&self, topic: &str) -> Kind {
        if topic == self.topics[Kind::Alert.index()] {
            Kind::Alert
        } else {
            Kind::Dns
        }
    }

    fn set_stuck(&self, why: String) {
        let mut s = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            *s = Some(why);
            self.stuck_flag.store(true, Ordering::Relaxed);
        }
    }

    fn is_stuck(&self) -> bool {
        self.stuck_flag.load(Ordering::Relaxed)
    }

    /// Whether a repeated message should be logged now.
    fn log_now(&self) -> bool {
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                if self.log_now() {
                    tracing::warn!("kafka: {fac}: {msg}");
                }
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => tracing::info!("kafka: {fac}: {msg}"),
            _ => tracing::debug!("kafka: {fac}: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        add(&self.stats.broker_errors, 1);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.set_stuck(format!("fatal error: {reason}"));
            return;
        }
        if self.log_now() {
            tracing::warn!("kafka: {error}: {reason} (records wait in the queue and the spool)");
        }
    }

    fn stats_raw(&self, json: &[u8]) {
        // Only the producer id and epoch are read (a full parse of the client's statistics
        // fails on fields newer than the crate's model). librdkafka bumps the epoch itself,
        // without asking the broker, after UNKNOWN_PRODUCER_ID: a broker that does not know
        // the id at all refuses every bump, and the epoch runs up.
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
            return;
        };
        let (Some(id), Some(epoch)) = (v["eos"]["producer_id"].as_i64(), v["eos"]["producer_epoch"].as_i64())
        else {
            return;
        };
        let mut last = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        let (last_id, last_epoch) = std::mem::replace(&mut *last, (id, epoch));
        if id >= 0 && id == last_id && epoch - last_epoch >= STUCK_BUMPS {
            self.set_stuck(format!(
                "the broker refused {} producer epochs in a row: it lost this producer's state (a new broker?)",
                epoch - last_epoch
            ));
        }
    }
}

impl ProducerContext for Context {
    /// The record's sequence number (the shipper's send order).
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, seq: usize) {
        match r {
            Ok(m) => self.stats.on_delivered(self.kind(m.topic()), m.payload_len()),
            Err((e, m)) => {
                let kind = self.kind(m.topic());
                let key = m.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("");
                let payload = m.payload().and_then(|p| std::str::from_utf8(p).ok()).unwrap_or("");
                let code = e.rdkafka_error_code();
                if code == Some(RDKafkaErrorCode::Fatal) {
                    self.set_stuck("fatal error".into());
                }
                let again = matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::PurgeQueue
                            | RDKafkaErrorCode::PurgeInflight
                            | RDKafkaErrorCode::Fatal
                    )
                );
                match e {
                    // Purged, or failed because the producer is stuck: sent again, by
                    // this producer's successor or at the next start.
                    _ if again || self.is_stuck() => {
                        let mut v = self.returned.lock().unwrap_or_else(|e| e.into_inner());
                        v.push((seq as u64, Rec::new(kind, key, payload)));
                    }
                    _ => {
                        add(&self.stats.failed, 1);
                        if self.log_now() {
                            tracing::error!(
                                "kafka: a record to {} failed for good: {e} (counted as failed)",
                                m.topic()
                            );
                        }
                    }
                }
            }
        }
    }
}

pub struct Producer {
    p: BaseProducer<Context>,
    config: ClientConfig,
    topics: [String; 2],
    stats: Arc<KafkaStats>,
    /// Records the replaced producer held, in the shipper's order, waiting for room in the
    /// new one; they go before any newer record.
    backlog: VecDeque<(u64, Rec)>,
}

fn build(
    config: &ClientConfig,
    topics: &[String; 2],
    stats: &Arc<KafkaStats>,
) -> Result<BaseProducer<Context>, String> {
    let ctx = Context {
        stats: stats.clone(),
        topics: topics.clone(),
        returned: Mutex::new(Vec::new()),
        last_log: Mutex::new(None),
        stuck: Mutex::new(None),
        stuck_flag: AtomicBool::new(false),
        epoch: Mutex::new((-1, 0)),
    };
    config.create_with_context(ctx).map_err(|e| format!("cannot create the Kafka producer: {e}"))
}

impl Producer {
    pub fn new(
        brokers: &str,
        client_id: &str,
        topics: [String; 2],
        queue_records: usize,
        stats: Arc<KafkaStats>,
    ) -> Result<Producer, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", client_id)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", "0")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", queue_records.to_string())
            .set("queue.buffering.max.kbytes", CLIENT_QUEUE_KBYTES)
            // Back soon after a broker restart (the default backs off to 10 s).
            .set("reconnect.backoff.max.ms", "1000")
            .set("statistics.interval.ms", STATS_MS);
        if let Ok(d) = std::env::var("PORTENT_RDKAFKA_DEBUG") {
            config.set("debug", d).set_log_level(RDKafkaLogLevel::Debug);
        }
        let p = build(&config, &topics, &stats)?;
        // A missing topic does not lose records (they wait, then go to the spool at exit),
        // but nothing arrives either: say so at once.
        match p.client().fetch_metadata(None, METADATA_WAIT) {
            Ok(md) => {
                for t in topics.iter().filter(|t| !t.is_empty()) {
                    if !md.topics().iter().any(|x| x.name() == t) {
                        tracing::warn!("kafka: topic {t} does not exist on {brokers}; its records wait until it is created");
                    }
                }
            }
            Err(e) => tracing::warn!(
                "kafka: {brokers} not reachable yet ({e}); records wait in the queue and the spool"
            ),
        }
        Ok(Producer { p, config, topics, stats, backlog: VecDeque::new() })
    }

    /// Replaces a stuck producer; what it held goes to the new one first.
    fn recover(&mut self) {
        let why = self.p.context().stuck.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(why) = why else {
            return;
        };
        let fresh = match build(&self.config, &self.topics, &self.stats) {
            Ok(p) => p,
            Err(e) => {
                if self.p.context().log_now() {
                    tracing::error!("kafka: the producer is stuck ({why}) and {e}; records wait");
                }
                return;
            }
        };
        let mut held = self.purge_producer();
        held.sort_by_key(|(seq, _)| *seq);
        tracing::warn!(
            "kafka: the producer is stuck ({why}); a new one takes over and sends the {} records it held first",
            held.len()
        );
        add(&self.stats.producer_restarts, 1);
        self.p = fresh;
        // The older backlog (left from an earlier replacement) goes first.
        self.backlog.extend(held);
        self.send_backlog();
    }

    /// Hands the backlog over, oldest first, while the producer has room.
    fn send_backlog(&mut self) {
        while let Some((seq, rec)) = self.backlog.pop_front() {
            let topic = &self.topics[rec.kind.index()];
            let r = BaseRecord::with_opaque_to(topic, seq as usize).key(&*rec.key).payload(&*rec.payload);
            match self.p.send(r) {
                Ok(()) => {}
                Err(_) => {
                    // Full (or stuck again): it keeps its place. Each of these records
                    // was taken once already, so no error here is about the record itself.
                    self.backlog.push_front((seq, rec));
                    return;
                }
            }
        }
    }

    /// Purges the producer and returns what it had not delivered, with the sequence numbers.
    fn purge_producer(&mut self) -> Vec<(u64, Rec)> {
        self.p.purge(PurgeConfig::default().queue().inflight());
        // Serves the purged records' delivery reports.
        let _ = self.p.flush(Duration::from_secs(2));
        let ctx = self.p.context();
        let mut v = ctx.returned.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *v)
    }
}

impl Transport for Producer {
    fn send(&mut self, rec: Rec, seq: u64) -> Sent {
        if self.p.context().is_stuck() {
            self.recover();
        }
        if !self.backlog.is_empty() {
            self.send_backlog();
            if !self.backlog.is_empty() {
                return Sent::Full(rec);
            }
        }
        let topic = &self.topics[rec.kind.index()];
        let r = BaseRecord::with_opaque_to(topic, seq as usize).key(&*rec.key).payload(&*rec.payload);
        match self.p.send(r) {
            Ok(()) => Sent::Queued,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Sent::Full(rec),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::Fatal), _)) => {
                // Seen at the next poll; the record waits its turn.
                self.p.context().set_stuck("fatal error".into());
                Sent::Full(rec)
            }
            Err((e, _)) => Sent::Rejected(format!("{e} (topic {topic})")),
        }
    }

    fn poll(&mut self, wait: Duration) {
        self.p.poll(wait);
        let ctx = self.p.context();
        if !ctx.is_stuck() {
            // Also raised as an error event; read here too, in case that one is missed.
            if let Some((code, why)) = self.p.client().fatal_error() {
                ctx.set_stuck(format!("fatal error: {code}: {why}"));
            }
        }
        if self.p.context().is_stuck() {
            self.recover();
        }
        if !self.backlog.is_empty() {
            self.send_backlog();
        }
    }

    fn in_flight(&self) -> u64 {
        self.p.in_flight_count().max(0) as u64 + self.backlog.len() as u64
    }

    fn purge(&mut self) -> Vec<(u64, Rec)> {
        let mut v = self.purge_producer();
        v.extend(self.backlog.drain(..));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::kafka::{Kind, Sent, Transport};
    use std::sync::atomic::Ordering;

    fn rec(i: u64) -> Rec {
        Rec::new(Kind::Alert, "10.0.0.1", &format!("{{\"n\":{i}}}"))
    }

    /// After a fatal error the producer refuses everything; a new one takes over, with
    /// every record the old one held, in order, before newer ones, and none counted lost.
    #[test]
    fn a_fatal_error_hands_everything_to_a_new_producer_in_order() {
        let stats = Arc::new(KafkaStats::new());
        // Nothing listens on port 1: records stay queued in the client.
        let mut p =
            Producer::new("127.0.0.1:1", "t", ["a".into(), String::new()], 1000, stats.clone()).unwrap();
        for i in 0..10 {
            assert!(matches!(p.send(rec(i), i), Sent::Queued));
        }
        let reason = std::ffi::CString::new("test").unwrap();
        // SAFETY: a live client handle and a NUL-terminated string, for the call.
        let raised = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                p.p.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            )
        };
        assert_eq!(raised, rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
        let t = Instant::now();
        while stats.producer_restarts.load(Ordering::Relaxed) == 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "the stuck producer was not replaced");
            p.poll(Duration::from_millis(50));
        }
        assert!(p.p.client().fatal_error().is_none(), "a new client");
        for i in 10..15 {
            assert!(matches!(p.send(rec(i), i), Sent::Queued));
        }
        // (The client counts its unserved events too.)
        assert!(p.in_flight() >= 15, "{}", p.in_flight());
        let mut back = p.purge();
        back.sort_by_key(|(s, _)| *s);
        let want: Vec<(u64, Rec)> = (0..15).map(|i| (i, rec(i))).collect();
        assert_eq!(back, want, "every record, with its place in the order");
        assert_eq!(stats.failed.load(Ordering::Relaxed), 0);
        assert_eq!(stats.producer_restarts.load(Ordering::Relaxed), 1);
    }
}
