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

use super::{add, KafkaStats, Kind, Rec, Sent, Transport};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext, PurgeConfig,
};
use rdkafka::{ClientContext, Message};
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

struct Context {
    stats: Arc<KafkaStats>,
    topics: [String; 2],
    /// Records given back by a purge, with their sequence numbers.
    returned: Mutex<Vec<(u64, Rec)>>,
    last_log: Mutex<Option<Instant>>,
}

impl Context {
    fn kind(&self, topic: &str) -> Kind {
        if topic == self.topics[Kind::Alert.index()] {
            Kind::Alert
        } else {
            Kind::Dns
        }
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
        if self.log_now() {
            tracing::warn!("kafka: {error}: {reason} (records wait in the queue and the spool)");
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
                match e {
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight,
                    ) => {
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
    topics: [String; 2],
}

impl Producer {
    pub fn new(
        brokers: &str,
        client_id: &str,
        topics: [String; 2],
        queue_records: usize,
        stats: Arc<KafkaStats>,
    ) -> Result<Producer, String> {
        let ctx = Context {
            stats,
            topics: topics.clone(),
            returned: Mutex::new(Vec::new()),
            last_log: Mutex::new(None),
        };
        let p: BaseProducer<Context> = ClientConfig::new()
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
            .create_with_context(ctx)
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
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
        Ok(Producer { p, topics })
    }
}

impl Transport for Producer {
    fn send(&mut self, rec: Rec, seq: u64) -> Sent {
        let topic = &self.topics[rec.kind.index()];
        let r = BaseRecord::with_opaque_to(topic, seq as usize).key(&*rec.key).payload(&*rec.payload);
        match self.p.send(r) {
            Ok(()) => Sent::Queued,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Sent::Full(rec),
            Err((e, _)) => Sent::Rejected(format!("{e} (topic {topic})")),
        }
    }

    fn poll(&mut self, wait: Duration) {
        self.p.poll(wait);
    }

    fn in_flight(&self) -> u64 {
        self.p.in_flight_count().max(0) as u64
    }

    fn purge(&mut self) -> Vec<(u64, Rec)> {
        self.p.purge(PurgeConfig::default().queue().inflight());
        // Serves the purged records' delivery reports.
        let _ = self.p.flush(Duration::from_secs(2));
        let ctx = self.p.context();
        let mut v = ctx.returned.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *v)
    }
}
