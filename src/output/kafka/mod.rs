//! Alerts and DNS records to Kafka, in order, surviving broker outages.
//!
//! The output thread hands each record to `KafkaOut::send`. From there a record goes to a
//! bounded in-memory queue, and a shipper thread moves it to the producer (librdkafka:
//! acks=all, idempotent, bounded in flight, lz4, a few ms of linger). When the broker is
//! unreachable or slower than the sensor, the queue fills and records go to the on-disk
//! spool (`spool.rs`) instead; the shipper sends the spool, oldest first, once the queue is
//! empty again. Per topic the order is kept:
//!
//! - a record of kind K goes to the queue only while K's spool is empty, so every K record
//!   in the queue is older than every K record in the spool;
//! - the shipper takes a spool segment only when the queue is empty, and sends the whole
//!   segment before it reads the queue again.
//!
//! The spool is bounded: past `spool_mb`, the oldest DNS segments are deleted first, alerts
//! only when no DNS records are left, each record counted. What the producer still holds at
//! exit (after `flush_timeout` of trying) is put back at the front of the spool, and the next
//! start sends it first. A record the broker may have written before the exit cut its
//! acknowledgement short can so arrive twice: alerts carry `event.id` for that.
//!
//! Two ways to wait: `Delivery::Backpressure` (replay, ingest) blocks the output thread
//! while the broker is making progress, so a replay faster than the broker slows down
//! instead of filling the spool and dropping; `Delivery::Spill` (live capture) never
//! blocks, since a blocked output thread would cost packets at the capture.

pub mod spool;

#[cfg(feature = "kafka")]
mod rdk;

pub use spool::{Kind, Rec, Recovered, Spool};

use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records waiting in memory for the producer, by default: at ~500 bytes a record, about
/// 16 MiB in the queue and as much again in the producer.
pub const QUEUE_RECORDS: usize = 32_768;
/// Bounds for `memory_records`.
pub const MIN_MEMORY_RECORDS: usize = 16;
pub const MAX_MEMORY_RECORDS: usize = 1 << 20;
/// With `Delivery::Backpressure`, the output thread waits for the broker only while it
/// acknowledged something this recently; after that the broker counts as down and records
/// go to the spool.
const STALL: Duration = Duration::from_secs(2);
/// How often an idle shipper looks at the queue and serves delivery reports.
const IDLE_WAIT: Duration = Duration::from_millis(5);

/// `[kafka]` in the configuration file, `--kafka-*` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT...]`; None: Kafka output off.
    pub brokers: Option<String>,
    pub alerts_topic: String,
    /// DNS transaction records go here when set.
    pub dns_topic: Option<String>,
    pub spool_dir: PathBuf,
    /// Most the spool holds on disk, MiB.
    pub spool_mb: u64,
    /// At exit, how long to keep trying before the rest goes to the spool, seconds.
    pub flush_timeout_secs: u64,
    /// Records held in memory on their way to the broker: the sensor's queue and the
    /// producer's queue each hold this many. Past that, records go to the spool. Smaller
    /// means less lost to a crash (SIGKILL) during an outage, more written to disk.
    pub memory_records: usize,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: None,
            alerts_topic: "portent-alerts".into(),
            dns_topic: None,
            spool_dir: PathBuf::from("/var/lib/portent/kafka-spool"),
            spool_mb: 1024,
            flush_timeout_secs: 10,
            memory_records: QUEUE_RECORDS,
        }
    }
}

/// Whether a name is a legal Kafka topic: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("{name:?}: a topic name has 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?}: not a legal topic name"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{name:?}: {c:?} is not allowed in a topic name (letters, digits, . _ -)"));
    }
    Ok(())
}

/// Whether `HOST:PORT[,HOST:PORT...]` looks right (the broker itself is only found later).
pub fn check_brokers(list: &str) -> Result<(), String> {
    for b in list.split(',') {
        let b = b.trim();
        let ok =
            b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(format!("{b:?}: expected HOST:PORT, e.g. kafka1:9092"));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Block the output thread while the broker makes progress (replay, ingest).
    Backpressure,
    /// Never block: spill to the spool at once (live capture).
    Spill,
}

/// Counters and gauges, shared by the sender, the shipper and the producer's callbacks;
/// read by the live stats record and the summary.
#[derive(Debug)]
pub struct KafkaStats {
    started: Instant,
    /// Acknowledged by the broker, by kind.
    pub delivered: [AtomicU64; 2],
    pub delivered_bytes: AtomicU64,
    /// Written to the spool, by kind.
    pub spooled: [AtomicU64; 2],
    /// Read back from the spool and handed to the producer, by kind.
    pub resent: [AtomicU64; 2],
    /// Deleted unsent because the spool was full, by kind.
    pub dropped: [AtomicU64; 2],
    /// Refused by the producer or the broker for good (too large, unknown topic...).
    pub failed: AtomicU64,
    /// Records lost because the spool could not be written (disk full...).
    pub spool_errors: AtomicU64,
    /// Found in the spool at start, from an earlier run.
    pub recovered: AtomicU64,
    /// Put back into the spool at exit because the broker did not take them in time.
    pub returned_at_exit: AtomicU64,
    /// Errors the client reported about the brokers (connection refused, all brokers
    /// down...).
    pub broker_errors: AtomicU64,
    /// Stuck producers replaced by new ones (after a fatal error, or a broker that lost
    /// the producer's state).
    pub producer_restarts: AtomicU64,
    pub spool_records: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_segments: AtomicU64,
    pub queue_depth: AtomicU64,
    pub in_flight: AtomicU64,
    /// Milliseconds after `started` of the last acknowledgement (or of the start).
    last_progress_ms: AtomicU64,
}

impl KafkaStats {
    pub fn new() -> KafkaStats {
        KafkaStats {
            started: Instant::now(),
            delivered: Default::default(),
            delivered_bytes: AtomicU64::new(0),
            spooled: Default::default(),
            resent: Default::default(),
            dropped: Default::default(),
            failed: AtomicU64::new(0),
            spool_errors: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            returned_at_exit: AtomicU64::new(0),
            broker_errors: AtomicU64::new(0),
            producer_restarts: AtomicU64::new(0),
            spool_records: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_segments: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// One record acknowledged by the broker.
    pub fn on_delivered(&self, kind: Kind, bytes: usize) {
        add(&self.delivered[kind.index()], 1);
        add(&self.delivered_bytes, bytes as u64);
        self.last_progress_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Nothing is waiting for the broker: the stall clock starts again from now.
    fn idle(&self) {
        self.last_progress_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The broker acknowledged something (or had nothing to do) within `STALL`.
    fn healthy(&self) -> bool {
        self.now_ms().saturating_sub(self.last_progress_ms.load(Ordering::Relaxed)) < STALL.as_millis() as u64
    }

    pub fn to_json(&self) -> Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let by_kind = |a: &[AtomicU64; 2]| json!({"alerts": l(&a[0]), "dns": l(&a[1])});
        json!({
            "delivered": by_kind(&self.delivered),
            "delivered_bytes": l(&self.delivered_bytes),
            "spooled": by_kind(&self.spooled),
            "resent_from_spool": by_kind(&self.resent),
            "dropped_spool_full": by_kind(&self.dropped),
            "failed": l(&self.failed),
            "spool_errors": l(&self.spool_errors),
            "recovered_at_start": l(&self.recovered),
            "returned_to_spool_at_exit": l(&self.returned_at_exit),
            "broker_errors": l(&self.broker_errors),
            "producer_restarts": l(&self.producer_restarts),
            "spool": {"records": l(&self.spool_records), "bytes": l(&self.spool_bytes), "segments": l(&self.spool_segments)},
            "queue_depth": l(&self.queue_depth),
            "in_flight": l(&self.in_flight),
        })
    }

    /// One line for the end-of-run summary.
    pub fn to_text(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "kafka: delivered {} alerts, {} DNS records ({} bytes); spooled {} alerts, {} DNS ({} resent, {} recovered from an earlier run); \
             dropped with the spool full: {} DNS, {} alerts; failed {}; left in the spool: {} records ({} bytes, {} put back at exit); \
             stuck producers replaced: {}\n",
            l(&self.delivered[0]),
            l(&self.delivered[1]),
            l(&self.delivered_bytes),
            l(&self.spooled[0]),
            l(&self.spooled[1]),
            l(&self.resent[0]) + l(&self.resent[1]),
            l(&self.recovered),
            l(&self.dropped[1]),
            l(&self.dropped[0]),
            l(&self.failed) + l(&self.spool_errors),
            l(&self.spool_records),
            l(&self.spool_bytes),
            l(&self.returned_at_exit),
            l(&self.producer_restarts),
        )
    }
}

impl Default for KafkaStats {
    fn default() -> Self {
        KafkaStats::new()
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// What the producer did with a record it was handed.
pub enum Sent {
    Queued,
    /// Its queue is full: try again after `poll`.
    Full(Rec),
    /// Refused for good (why).
    Rejected(String),
}

/// The producer side, so that the ordering and spooling can be tested without a broker.
pub trait Transport: Send {
    /// Hands a record over; `seq` comes back with it from `purge`.
    fn send(&mut self, rec: Rec, seq: u64) -> Sent;
    /// Serves delivery reports for up to `wait`.
    fn poll(&mut self, wait: Duration);
    /// Records handed over and not yet acknowledged.
    fn in_flight(&self) -> u64;
    /// Gives up on everything not yet acknowledged and returns it, with its `seq`.
    fn purge(&mut self) -> Vec<(u64, Rec)>;
}

struct Spools {
    s: [Spool; 2],
    bound: u64,
}

impl Spools {
    fn bytes(&self) -> u64 {
        self.s.iter().map(Spool::bytes).sum()
    }

    fn publish(&self, st: &KafkaStats) {
        st.spool_records.store(self.s.iter().map(Spool::records).sum(), Ordering::Relaxed);
        st.spool_bytes.store(self.bytes(), Ordering::Relaxed);
        st.spool_segments.store(self.s.iter().map(|s| s.segments() as u64).sum(), Ordering::Relaxed);
    }

    /// Deletes the oldest segments, DNS records first, until the spool fits its bound.
    fn enforce_bound(&mut self, st: &KafkaStats) {
        while self.bytes() > self.bound {
            let k = if !self.s[Kind::Dns.index()].is_empty() { Kind::Dns } else { Kind::Alert };
            match self.s[k.index()].drop_front() {
                Some((n, _)) => add(&st.dropped[k.index()], n),
                None => break,
            }
        }
    }
}

struct Shared {
    spools: Mutex<Spools>,
    /// Signalled when the shipper takes a segment out (room in the spool).
    room: Condvar,
    stats: Arc<KafkaStats>,
    /// Set by the sender when it is done: from then on the shipper has `flush_timeout`.
    closing: AtomicBool,
}

fn lock(m: &Mutex<Spools>) -> MutexGuard<'_, Spools> {
    // A panic elsewhere while holding the lock leaves the spools usable: every change
    // to them is complete before the lock is released.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending end, owned by the output thread.
pub struct KafkaOut {
    shared: Arc<Shared>,
    tx: Option<Sender<Rec>>,
    mode: Delivery,
    shipper: Option<JoinHandle<()>>,
    dns_topic: bool,
    /// Holds the spool directory's lock until the sender is gone.
    _dir_lock: std::fs::File,
}

impl KafkaOut {
    /// Opens the spool and starts the producer (librdkafka).
    #[cfg(feature = "kafka")]
    pub fn start(s: &KafkaSettings, client_id: &str, mode: Delivery) -> Result<KafkaOut, String> {
        let brokers = s.brokers.clone().ok_or("no Kafka brokers given")?;
        let topics = [s.alerts_topic.clone(), s.dns_topic.clone().unwrap_or_default()];
        let queue = s.memory_records;
        KafkaOut::start_with(s, mode, move |stats| {
            rdk::Producer::new(&brokers, client_id, topics, queue, stats)
        })
    }

    #[cfg(not(feature = "kafka"))]
    pub fn start(_: &KafkaSettings, _: &str, _: Delivery) -> Result<KafkaOut, String> {
        Err("this portent was built without Kafka support (cargo feature `kafka`)".into())
    }

    /// Opens the spool and starts the shipper over the transport `make` builds.
    pub fn start_with<T: Transport + 'static>(
        s: &KafkaSettings,
        mode: Delivery,
        make: impl FnOnce(Arc<KafkaStats>) -> Result<T, String>,
    ) -> Result<KafkaOut, String> {
        let bound = s.spool_mb.saturating_mul(1 << 20).max(1);
        // Drop granularity is one segment: an eighth of the spool, within [64 KiB, 8 MiB].
        let seg = (bound / 8).clamp(64 << 10, 8 << 20);
        let dir = &s.spool_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the Kafka spool {}: {e}", dir.display()))?;
        let dir_lock = lock_dir(dir)?;
        let open = |k: Kind| {
            Spool::open(dir, k, seg)
                .map_err(|e| format!("cannot open the Kafka spool {}: {e}", dir.display()))
        };
        let (alerts, ra) = open(Kind::Alert)?;
        let (dns, rd) = open(Kind::Dns)?;
        let stats = Arc::new(KafkaStats::new());
        add(&stats.recovered, ra.records + rd.records);
        if ra.records + rd.records > 0 {
            tracing::info!(
                alerts = ra.records,
                dns = rd.records,
                "records from an earlier run in the Kafka spool"
            );
        }
        if ra.torn_bytes + rd.torn_bytes > 0 {
            tracing::warn!(
                bytes = ra.torn_bytes + rd.torn_bytes,
                "the Kafka spool ended in a cut record (a crash?); cut away"
            );
        }
        if rd.records > 0 && s.dns_topic.is_none() {
            tracing::warn!(
                records = rd.records,
                "DNS records wait in the Kafka spool but no DNS topic is set; they stay there"
            );
        }
        let transport = make(stats.clone())?;
        let spools = Spools { s: [alerts, dns], bound };
        spools.publish(&stats);
        let shared = Arc::new(Shared {
            spools: Mutex::new(spools),
            room: Condvar::new(),
            stats,
            closing: AtomicBool::new(false),
        });
        let (tx, rx) = bounded(s.memory_records.clamp(MIN_MEMORY_RECORDS, MAX_MEMORY_RECORDS));
        let sh = shared.clone();
        let topics = [true, s.dns_topic.is_some()];
        let flush_timeout = Duration::from_secs(s.flush_timeout_secs);
        let shipper = std::thread::Builder::new()
            .name("portent-kafka".into())
            .spawn(move || ship(sh, rx, transport, topics, flush_timeout))
            .map_err(|e| format!("cannot start the Kafka thread: {e}"))?;
        Ok(KafkaOut {
            shared,
            tx: Some(tx),
            mode,
            shipper: Some(shipper),
            dns_topic: s.dns_topic.is_some(),
            _dir_lock: dir_lock,
        })
    }

    pub fn stats(&self) -> Arc<KafkaStats> {
        self.shared.stats.clone()
    }

    /// Whether DNS records are wanted.
    pub fn wants_dns(&self) -> bool {
        self.dns_topic
    }

    /// One record, keyed by the client's address. Never loses it silently: it is queued,
    /// spooled, or counted as dropped.
    pub fn send(&mut self, kind: Kind, key: &str, payload: &str) {
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        let st = &self.shared.stats;
        let mut rec = Rec::new(kind, key, payload);
        let mut g = lock(&self.shared.spools);
        if g.s[kind.index()].is_empty() {
            match tx.try_send(rec) {
                Ok(()) => return,
                Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => rec = r,
            }
            if self.mode == Delivery::Backpressure {
                // Only this thread appends to the spools, so this kind's spool stays empty
                // while the lock is released.
                drop(g);
                while st.healthy() {
                    match tx.send_timeout(rec, Duration::from_millis(50)) {
                        Ok(()) => return,
                        Err(SendTimeoutError::Timeout(r)) => rec = r,
                        Err(SendTimeoutError::Disconnected(r)) => {
                            rec = r;
                            break;
                        }
                    }
                }
                g = lock(&self.shared.spools);
            }
        }
        match g.s[kind.index()].append(&rec) {
            Ok(()) => add(&st.spooled[kind.index()], 1),
            Err(e) => {
                add(&st.spool_errors, 1);
                if st.spool_errors.load(Ordering::Relaxed) == 1 {
                    tracing::error!("cannot write the Kafka spool ({e}); records are being lost");
                }
            }
        }
        if g.bytes() > g.bound && self.mode == Delivery::Backpressure {
            while g.bytes() > g.bound && st.healthy() {
                g = self
                    .shared
                    .room
                    .wait_timeout(g, Duration::from_millis(50))
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        g.enforce_bound(st);
        g.publish(st);
    }

    /// Hands the spool's buffered lines to the OS (once a batch).
    pub fn flush(&mut self) {
        let mut g = lock(&self.shared.spools);
        for s in g.s.iter_mut() {
            if let Err(e) = s.flush() {
                tracing::warn!("cannot write the Kafka spool: {e}");
            }
        }
    }

    /// End of the run: delivers what it can within the flush timeout, puts the rest in the
    /// spool, and returns the figures.
    pub fn close(mut self) -> Arc<KafkaStats> {
        self.finish();
        self.shared.stats.clone()
    }

    fn finish(&mut self) {
        // Every record sent is in the queue by now.
        self.shared.closing.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(h) = self.shipper.take() {
            if h.join().is_err() {
                tracing::error!("the Kafka thread panicked; records it held are lost");
            }
        }
        let mut g = lock(&self.shared.spools);
        for s in g.s.iter_mut() {
            if let Err(e) = s.sync() {
                tracing::error!("cannot sync the Kafka spool: {e}");
            }
        }
        g.publish(&self.shared.stats);
    }
}

impl Drop for KafkaOut {
    fn drop(&mut self) {
        if self.shipper.is_some() {
            self.finish();
        }
    }
}

/// Keeps a second sensor off the same spool: an exclusive `flock` on `DIR/lock`, held as
/// long as the returned file is open.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let p = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    // SAFETY: flock on a descriptor `f` owns and keeps open for the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "the Kafka spool {} is in use by another portent; give each sensor its own --kafka-spool-dir",
            dir.display()
        ));
    }
    Ok(f)
}

/// The shipper thread: queue and spool to the producer, in order; at the end, what is left
/// goes back to the spool.
fn ship<T: Transport>(
    shared: Arc<Shared>,
    rx: Receiver<Rec>,
    mut t: T,
    topics: [bool; 2],
    flush_timeout: Duration,
) {
    let st = &shared.stats;
    // A spool segment being sent; sent to the end before the queue is read again.
    let mut held: VecDeque<Rec> = VecDeque::new();
    // A record the producer had no room for.
    let mut pending: Option<Rec> = None;
    let mut seq = 0u64;
    let mut closing: Option<Instant> = None;
    let mut sends = 0u32;
    loop {
        if closing.is_none() && shared.closing.load(Ordering::Relaxed) {
            closing = Some(Instant::now());
        }
        let mut next = pending.take().or_else(|| held.pop_front());
        if next.is_none() {
            match rx.try_recv() {
                Ok(r) => next = Some(r),
                Err(TryRecvError::Disconnected) => {
                    closing.get_or_insert_with(Instant::now);
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        if next.is_none() {
            if let Some(seg) = take_segment(&shared, &rx, topics) {
                held = seg.into();
                continue;
            }
        }
        match next {
            Some(r) => match t.send(r, seq) {
                Sent::Queued => {
                    seq += 1;
                    sends += 1;
                    if sends >= 512 {
                        t.poll(Duration::ZERO);
                        sends = 0;
                    }
                }
                Sent::Full(r) => {
                    pending = Some(r);
                    t.poll(IDLE_WAIT);
                }
                Sent::Rejected(why) => {
                    add(&st.failed, 1);
                    if st.failed.load(Ordering::Relaxed) == 1 {
                        tracing::error!("Kafka refused a record for good: {why}");
                    }
                }
            },
            None => {
                if t.in_flight() == 0 {
                    if closing.is_some() {
                        break;
                    }
                    st.idle();
                }
                t.poll(IDLE_WAIT);
                if closing.is_none() {
                    match rx.recv_timeout(IDLE_WAIT) {
                        Ok(r) => pending = Some(r),
                        Err(RecvTimeoutError::Disconnected) => {
                            closing.get_or_insert_with(Instant::now);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            }
        }
        st.queue_depth.store(rx.len() as u64, Ordering::Relaxed);
        st.in_flight.store(t.in_flight(), Ordering::Relaxed);
        if closing.is_some_and(|c| c.elapsed() >= flush_timeout) {
            put_back(&shared, &mut t, pending.take(), held, &rx);
            return;
        }
    }
    st.queue_depth.store(0, Ordering::Relaxed);
    st.in_flight.store(0, Ordering::Relaxed);
}

/// The oldest spool segment, alerts first, when the in-memory queue is empty (so nothing
/// older of its kind is waiting there).
fn take_segment(shared: &Shared, rx: &Receiver<Rec>, topics: [bool; 2]) -> Option<Vec<Rec>> {
    let mut g = lock(&shared.spools);
    if !rx.is_empty() {
        return None;
    }
    for k in [Kind::Alert, Kind::Dns] {
        if !topics[k.index()] || g.s[k.index()].is_empty() {
            continue;
        }
        let r = g.s[k.index()].take_front(k);
        g.publish(&shared.stats);
        shared.room.notify_all();
        match r {
            Ok(Some(recs)) => {
                add(&shared.stats.resent[k.index()], recs.len() as u64);
                return Some(recs);
            }
            Ok(None) => {}
            Err(e) => {
                add(&shared.stats.spool_errors, 1);
                tracing::error!("cannot read the Kafka spool: {e}");
            }
        }
    }
    None
}

/// The flush timeout passed: everything not acknowledged goes back to the front of the
/// spool, oldest first: what the producer held, then the record it had no room for, the rest
/// of the segment being sent, and the in-memory queue.
fn put_back<T: Transport>(
    shared: &Shared,
    t: &mut T,
    pending: Option<Rec>,
    held: VecDeque<Rec>,
    rx: &Receiver<Rec>,
) {
    let mut purged = t.purge();
    purged.sort_by_key(|(seq, _)| *seq);
    let all: Vec<Rec> =
        purged.into_iter().map(|(_, r)| r).chain(pending).chain(held).chain(rx.try_iter()).collect();
    let st = &shared.stats;
    let mut g = lock(&shared.spools);
    for k in [Kind::Alert, Kind::Dns] {
        let recs: Vec<Rec> = all.iter().filter(|r| r.kind == k).cloned().collect();
        if recs.is_empty() {
            continue;
        }
        match g.s[k.index()].prepend(&recs) {
            Ok(()) => add(&st.returned_at_exit, recs.len() as u64),
            Err(e) => {
                add(&st.spool_errors, recs.len() as u64);
                tracing::error!("cannot put {} undelivered records back in the Kafka spool: {e}", recs.len());
            }
        }
    }
    g.publish(st);
    st.queue_depth.store(0, Ordering::Relaxed);
    st.in_flight.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
