//! Threads and queues: one reader → N workers → one output thread.
//!
//! The reader streams the capture, decodes link/IP/transport headers and keeps only what the
//! detectors need: DNS on port 53 (UDP and TCP) and TCP SYNs. It routes each of those by the
//! client's address, so that a client's answers, its SYNs and its tunnel state all live on
//! one worker, and hands them over in batches over bounded crossbeam channels (never one send
//! per packet). Workers parse DNS, fill the shared answer cache, run the detectors and turn
//! what they find into NDJSON lines. The output thread merges the workers' lines back into
//! input order and writes them.
//!
//! Determinism: batches close every `batch_packets` input packets whatever the thread count,
//! every worker sees every batch boundary with the same packet clock, and the output orders
//! lines by (packet index, phase, time, text). So the same input gives the same output for
//! any `--threads` as long as no state table reaches its cap. Caps are totals split evenly
//! across workers, and each worker evicts its least recently used entries (the answer cache
//! too: each worker makes room in its own part, by its own clock), so once a cap is reached
//! which entries go depends on how clients fall across workers, never on thread timing.
//! Every eviction is counted in the summary.

use crate::cache::{AnswerCache, CacheStats};
use crate::capture::{self, CaptureError, RawPacket};
use crate::config::Config;
use crate::decode::defrag::{Defrag, DefragConfig, Defragmenter};
use crate::decode::fast::{self, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::decode::{self, Decoded, LinkType, Network};
use crate::detect::calc::{CalcDetector, CalcStats};
use crate::detect::lists::Lists;
use crate::detect::tunnel::{TunnelDetector, TunnelStats};
use crate::detect::{Alert, DnsEvent, Syn};
use crate::dns::tcp::{StreamKey, TcpDnsStats, TcpDnsStreams, TcpFlags};
use crate::dns::txn::{Seen, Transaction, Transactions, Transport, TxnKey, TxnStats};
use crate::dns::{parse_message_reusing, DnsMessage, Spare};
use crate::output::alert::alert_line;
use crate::output::kafka::{KafkaOut, KafkaStats, Kind};
use crate::output::{dnslog, Sink};
use crate::stats::{cpu_of, thread_cpu, CpuTime, ReaderStats, WorkerStats};
use crate::Nanos;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches in flight per worker: enough to ride out a slow batch, small enough that memory
/// stays flat (each batch holds at most `batch_packets` DNS payloads).
const QUEUE_BATCHES: usize = 8;

pub const DNS_PORT: u16 = 53;
pub const MDNS_PORT: u16 = 5353;
pub const LLMNR_PORT: u16 = 5355;

/// Live counters for a progress display; updated once per batch.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
    pub alerts: AtomicU64,
    /// Batches the output thread has written out (every worker's share of each).
    pub batches_written: AtomicU64,
    /// Live only: microseconds from a packet's capture timestamp to its alert being written,
    /// when `Progress::with_latency` made one. In replay packet time is not wall time, so
    /// there is nothing to measure.
    pub latency: Option<std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
}

impl Progress {
    /// A progress record that also measures capture-to-alert latency (1 µs to 1 h, 3
    /// significant digits: fixed size, about 100 KiB).
    pub fn with_latency() -> Progress {
        let h = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok();
        Progress { latency: h.map(std::sync::Mutex::new), ..Progress::default() }
    }

    /// p50, p99, p99.9 and max of the latency so far, in microseconds, with the count.
    pub fn latency_summary(&self) -> Option<serde_json::Value> {
        let h = self.latency.as_ref()?.lock().ok()?;
        Some(serde_json::json!({
            "count": h.len(),
            "p50_us": h.value_at_quantile(0.50),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
        }))
    }
}

pub struct Outputs {
    pub alerts: Sink,
    pub dns_log: Option<Sink>,
    /// Alerts (and DNS records, when it has a DNS topic) to Kafka as well.
    pub kafka: Option<KafkaOut>,
}

/// Everything a run learned, for the summary and for tests.
pub struct RunReport {
    pub reader: ReaderStats,
    pub workers: WorkerStats,
    pub txn: TxnStats,
    pub tcp: TcpDnsStats,
    pub calc: Vec<CalcStats>,
    pub tunnel: Vec<TunnelStats>,
    pub cache: CacheStats,
    pub answer_cache: Arc<AnswerCache>,
    pub capture_errors: Vec<CaptureError>,
    pub output_errors: Vec<(String, io::Error)>,
    pub alert_lines: u64,
    pub dns_lines: u64,
    /// Alerts by rule, then by client and by domain, for the summary's top lists.
    pub alerts_by_rule: BTreeMap<String, AlertTally>,
    pub first_ts: Option<Nanos>,
    pub last_ts: Option<Nanos>,
    pub wall: Duration,
    /// CPU time by thread.
    pub cpu: CpuTime,
    /// The run stopped early because an output failed.
    pub aborted: bool,
    /// The Kafka output's figures, when it was on.
    pub kafka: Option<Arc<KafkaStats>>,
}

#[derive(Clone, Debug, Default)]
pub struct AlertTally {
    pub count: u64,
    pub clients: HashMap<IpAddr, u64>,
    pub domains: HashMap<String, u64>,
}

/// Addresses and ports of a record that did not come as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// Which worker owns a client. Stable for the run and independent of timing.
pub fn route(ip: IpAddr, workers: usize) -> usize {
    let h = match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u64) ^ ((x >> 64) as u64)
        }
    };
    // Fibonacci hashing: spreads sequential addresses across workers.
    ((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % workers.max(1) as u64) as usize
}

/// The transport fields `Dispatcher::classify` decides on.
struct L4<'a> {
    sport: u16,
    dport: u16,
    transport: fast::Transport,
    payload: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
enum ItemKind {
    UdpDns,
    TcpDns { seq: u32, flags: TcpFlags },
    Syn,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    seq: u64,
    ts: Nanos,
    kind: ItemKind,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    /// Payload bytes in `WorkBatch::data`.
    off: u32,
    len: u32,
}

impl Item {
    /// An item for a record that came without a frame; `push` fills in its payload.
    fn of_flow(seq: u64, ts: Nanos, kind: ItemKind, flow: &Flow) -> Item {
        let Flow { src, dst, sport, dport } = *flow;
        Item { seq, ts, kind, src, dst, sport, dport, off: 0, len: 0 }
    }
}

#[derive(Default)]
struct WorkBatch {
    items: Vec<Item>,
    data: Vec<u8>,
    /// Input packets before this boundary: the phase-1 (expiry) lines sort here.
    end_seq: u64,
    /// The packet clock at the boundary: the latest packet time seen so far.
    end_ts: Nanos,
    last: bool,
    /// New feeds and allowlists (SIGHUP), taken by the worker after this batch's items:
    /// the control path rides on the batches, so the per-packet path has no lock.
    lists: Option<Arc<Lists>>,
}

/// A line for one of the outputs, with its place in the merged order.
struct OutLine {
    key: (u64, u8, Nanos),
    text: String,
    /// The client: the Kafka message key.
    client: IpAddr,
    alert: Option<AlertMeta>,
}

struct AlertMeta {
    rule: &'static str,
    client: IpAddr,
    domain: Option<String>,
}

/// Reads every file in order through the pipeline. Capture errors (a bad or cut file) are
/// collected, and the next file is still read: a rotated set with one damaged file loses
/// only what that file lacks.
pub fn replay(
    paths: &[PathBuf],
    cfg: &Config,
    outputs: Outputs,
    progress: Arc<Progress>,
) -> Result<RunReport, String> {
    let mut engine = Engine::start(cfg, outputs, progress.clone())?;
    let mut capture_errors = Vec::new();
    let mut bytes_before = 0u64;
    for path in paths {
        if engine.aborted() {
            break;
        }
        tracing::info!(file = %path.display(), "reading");
        let r = capture::read_file(
            path,
            // Inlined into the record loop: as a call, its register saves and the packet
            // handed over in memory cost about 25 instructions a packet.
            #[inline(always)]
            |p| engine.packet(p),
            |b| progress.bytes.store(bytes_before + b, Ordering::Relaxed),
        );
        bytes_before += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match r {
            Ok(st) => {
                tracing::info!(file = %path.display(), packets = st.packets, bytes = st.bytes, "done");
                engine.dispatcher.stats.unsupported_linktype += st.unsupported_linktype;
            }
            Err(e) => {
                tracing::info!(file = %path.display(), "stopped: {e}");
                capture_errors.push(e);
            }
        }
    }
    engine.finish(capture_errors)
}

/// The running pipeline, fed one packet at a time by whatever reads the packets: `replay`
/// for files, the live capture loop for interfaces. The caller's thread is the reader.
pub struct Engine {
    started: Instant,
    /// The calling thread's CPU time at start: the reader's is what it used since.
    reader_cpu: Duration,
    dispatcher: Dispatcher,
    handles: Vec<std::thread::JoinHandle<WorkerResult>>,
    output: std::thread::JoinHandle<OutputResult>,
    cache: Arc<AnswerCache>,
    abort: Arc<AtomicBool>,
    progress: Arc<Progress>,
    kafka: Option<Arc<KafkaStats>>,
}

impl Engine {
    /// Builds the detectors (a configuration error stops here, before any thread starts),
    /// then starts the workers and the output thread.
    pub fn start(cfg: &Config, outputs: Outputs, progress: Arc<Progress>) -> Result<Engine, String> {
        let started = Instant::now();
        let reader_cpu = thread_cpu();
        tracing::info!(
            workers = cfg.threads.max(1),
            window_s = cfg.cache.window / crate::NANOS_PER_SEC,
            formulas = cfg.calc.formulas.len(),
            "pipeline starting"
        );
        let n = cfg.threads.max(1);
        let cfg = Arc::new(cfg.clone());
        let cache = Arc::new(AnswerCache::with_parts(cfg.cache.clone(), n));
        let abort = Arc::new(AtomicBool::new(false));

        let mut workers = Vec::with_capacity(n);
        for id in 0..n {
            workers.push(Worker::new(id, n, cfg.clone(), cache.clone())?);
        }

        let (pool_tx, pool_rx) = bounded::<WorkBatch>(n * (QUEUE_BATCHES + 2));
        let mut work_tx = Vec::with_capacity(n);
        let mut out_rx = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for w in workers {
            let (wtx, wrx) = bounded::<WorkBatch>(QUEUE_BATCHES);
            let (otx, orx) = bounded::<Vec<OutLine>>(QUEUE_BATCHES);
            work_tx.push(wtx);
            out_rx.push(orx);
            let pool_tx = pool_tx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("portent-worker-{}", w.id))
                    .spawn(move || w.run(wrx, pool_tx, otx))
                    .map_err(|e| format!("cannot start a worker thread: {e}"))?,
            );
        }
        drop(pool_tx);

        let kafka = outputs.kafka.as_ref().map(KafkaOut::stats);
        let out_abort = abort.clone();
        let out_progress = progress.clone();
        let output = std::thread::Builder::new()
            .name("portent-output".into())
            .spawn(move || write_output(out_rx, outputs, out_abort, out_progress))
            .map_err(|e| format!("cannot start the output thread: {e}"))?;

        Ok(Engine {
            started,
            reader_cpu,
            dispatcher: Dispatcher::new(n, cfg.batch_packets, work_tx, pool_rx),
            handles,
            output,
            cache,
            abort,
            progress,
            kafka,
        })
    }

    /// One captured frame. Blocks when the workers are behind (replay loses nothing; a live
    /// source counts its own drops at its queue). Inlined into the reader's record loop: the
    /// call's register saves were a tenth of the reader's instructions per packet.
    #[inline(always)]
    pub fn packet(&mut self, p: &RawPacket<'_>) {
        if self.dispatcher.packet(p) {
            self.progress.packets.store(self.dispatcher.packets(), Ordering::Relaxed);
        }
    }

    /// A DNS message that arrived by other means than a frame (an NSM log record rendered
    /// back to wire format): it goes through the same parse, cache and detectors as a
    /// captured one. `src`/`dst` are the message's own direction.
    pub fn dns_message(&mut self, ts: Nanos, flow: Flow, wire: &[u8]) {
        let response = wire.get(2).is_some_and(|b| b & 0x80 != 0);
        let client = if response { flow.dst } else { flow.src };
        self.dispatcher
            .external(ts, |d, seq| d.push(client, Item::of_flow(seq, ts, ItemKind::UdpDns, &flow), wire));
    }

    /// A connection attempt known from a flow record (Zeek conn.log, Suricata flow): a SYN
    /// for the DNS Calculation rule.
    pub fn syn(&mut self, ts: Nanos, flow: Flow) {
        self.dispatcher.external(ts, |d, seq| {
            d.stats.syns += 1;
            d.push(flow.src, Item::of_flow(seq, ts, ItemKind::Syn, &flow), &[])
        });
    }

    /// Closes the current batch now, so that a quiet live link still gets its alerts out and
    /// its timers run.
    pub fn tick(&mut self) {
        if self.dispatcher.in_batch() > 0 {
            self.dispatcher.flush(false);
        }
    }

    /// New feeds and allowlists for the detectors (SIGHUP in `live`). The packets fed so
    /// far are judged with the old ones: the current batch closes now, and every worker
    /// switches after it. The answer cache, the tunnel windows and every de-duplication
    /// entry are kept.
    pub fn reload(&mut self, lists: Lists) {
        self.dispatcher.lists = Some(Arc::new(lists));
        self.dispatcher.flush(false);
    }

    /// An output failed: the caller should stop feeding packets.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Waits, at most `limit`, until the output thread has written every batch closed so
    /// far: a stats record made after it counts every alert of the packets fed before.
    /// False when the limit passed or an output failed first.
    pub fn settle(&self, limit: Duration) -> bool {
        let t = Instant::now();
        while self.progress.batches_written.load(Ordering::Acquire) < self.dispatcher.batches {
            if self.aborted() || t.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// CPU time of each thread so far, for live stats: the reader's (the calling thread,
    /// which must be the one that started the engine), each worker's and the output's.
    pub fn cpu(&self) -> CpuTime {
        CpuTime {
            reader: thread_cpu().saturating_sub(self.reader_cpu),
            workers: self.handles.iter().map(cpu_of).collect(),
            output: cpu_of(&self.output),
        }
    }

    /// The shared answer cache, for stats while running.
    pub fn cache(&self) -> &Arc<AnswerCache> {
        &self.cache
    }

    pub fn reader_stats(&self) -> ReaderStats {
        self.dispatcher.stats()
    }

    /// The Kafka output's live figures, when it is on.
    pub fn kafka_stats(&self) -> Option<&Arc<KafkaStats>> {
        self.kafka.as_ref()
    }

    /// End of input: flushes every worker, waits for the output, and reports.
    pub fn finish(self, capture_errors: Vec<CaptureError>) -> Result<RunReport, String> {
        let Engine { started, reader_cpu, mut dispatcher, handles, output, cache, abort, progress, kafka } =
            self;
        dispatcher.finish();
        let mut cpu = CpuTime { reader: thread_cpu().saturating_sub(reader_cpu), ..CpuTime::default() };
        progress.packets.store(dispatcher.packets(), Ordering::Relaxed);
        let reader = dispatcher.stats();
        let seen = dispatcher.seq > 0;
        let (first_ts, last_ts) = (seen.then_some(dispatcher.first_ts), seen.then_some(dispatcher.last_ts));
        drop(dispatcher);

        let mut wstats = WorkerStats::default();
        let mut txn = TxnStats::default();
        let mut tcp = TcpDnsStats::default();
        let mut calc = Vec::new();
        let mut tunnel = Vec::new();
        for h in handles {
            let r = h.join().map_err(|_| "a worker thread panicked".to_string())?;
            wstats.add(&r.stats);
            txn.answered += r.txn.answered;
            txn.unanswered += r.txn.unanswered;
            txn.unsolicited += r.txn.unsolicited;
            txn.evicted += r.txn.evicted;
            tcp.messages += r.tcp.messages;
            tcp.gaps += r.tcp.gaps;
            tcp.evicted += r.tcp.evicted;
            tcp.timed_out_partial += r.tcp.timed_out_partial;
            tcp.oversize += r.tcp.oversize;
            calc.push(r.calc);
            tunnel.push(r.tunnel);
            cpu.workers.push(r.cpu);
        }
        let out = output.join().map_err(|_| "the output thread panicked".to_string())?;
        cpu.output = out.cpu;
        Ok(RunReport {
            reader,
            workers: wstats,
            txn,
            tcp,
            calc,
            tunnel,
            cache: cache.stats(),
            answer_cache: cache,
            capture_errors,
            output_errors: out.errors,
            alert_lines: out.alert_lines,
            dns_lines: out.dns_lines,
            alerts_by_rule: out.by_rule,
            first_ts,
            last_ts,
            wall: started.elapsed(),
            cpu,
            aborted: abort.load(Ordering::Relaxed),
            kafka,
        })
    }
}

/// The reader's half: decode, filter, route, batch.
struct Dispatcher {
    n: usize,
    batch_packets: usize,
    current: Vec<WorkBatch>,
    tx: Vec<Sender<WorkBatch>>,
    pool: Receiver<WorkBatch>,
    /// Input records so far, frames and `external` ones.
    seq: u64,
    /// The `seq` at which the current batch closes. Per-packet bookkeeping is kept to what
    /// cannot be had per batch or at the end: this, and the times and counts below, used to
    /// be a fifth of the reader's instructions on a packet that is dropped.
    flush_at: u64,
    /// Records that were not frames, so that `stats.packets` need not be counted per frame.
    externals: u64,
    clock: Nanos,
    /// The times of the first and the last record; meaningful once `seq > 0`.
    first_ts: Nanos,
    last_ts: Nanos,
    /// All but `packets`, which `stats()` fills in.
    stats: ReaderStats,
    defrag: Defragmenter,
    /// A reassembled datagram, copied out of the reassembler so it can be routed.
    whole: Vec<u8>,
    /// Lists to hand to every worker with the next batch.
    lists: Option<Arc<Lists>>,
    /// Batches closed so far.
    batches: u64,
}

impl Dispatcher {
    fn new(n: usize, batch_packets: usize, tx: Vec<Sender<WorkBatch>>, pool: Receiver<WorkBatch>) -> Self {
        Dispatcher {
            n,
            batch_packets: batch_packets.max(1),
            current: (0..n).map(|_| WorkBatch::default()).collect(),
            tx,
            pool,
            seq: 0,
            flush_at: batch_packets.max(1) as u64,
            externals: 0,
            clock: 0,
            first_ts: 0,
            last_ts: 0,
            stats: ReaderStats::default(),
            defrag: Defragmenter::new(DefragConfig::default()),
            whole: Vec::new(),
            lists: None,
            batches: 0,
        }
    }

    /// Inlined through `Engine::packet` into the record loop: its frame set-up and the
    /// packet handed over in memory cost about 10 instructions a packet as a call.
    /// Says whether the packet closed a batch.
    #[inline(always)]
    fn packet(&mut self, p: &RawPacket<'_>) -> bool {
        let seq = self.seq;
        self.seq += 1;
        self.stats.bytes += u64::from(p.orig_len.max(p.data.len() as u32));
        if seq == 0 {
            self.first_ts = p.ts;
        }
        self.last_ts = p.ts;
        // Captures merged from several interfaces can step back in time; the clock never does.
        self.clock = self.clock.max(p.ts);
        // `decode::decode`, with the fast path's packets going straight to `classify`
        // rather than through a `Decoded`.
        let ip = match decode::plain_ip(p.linktype, p.data) {
            Some(ip) => Some(ip),
            None => self.other_link(p.linktype, p.data),
        };
        if let Some(ip) = ip {
            match fast::headers(ip) {
                Some(h) => {
                    let l4 =
                        L4 { sport: h.sport, dport: h.dport, transport: h.transport, payload: h.payload };
                    self.classify(seq, p.ts, &l4, || (h.addrs.src(), h.addrs.dst()))
                }
                None => self.slow_path(seq, p.ts, ip),
            }
        }
        if self.seq >= self.flush_at {
            self.flush(false);
            return true;
        }
        false
    }

    /// The IP packet of a frame `plain_ip` did not answer (tag stacks, PPPoE, cooked,
    /// raw, loopback), or `None` after counting why there is none.
    #[inline(never)]
    fn other_link<'a>(&mut self, linktype: LinkType, frame: &'a [u8]) -> Option<&'a [u8]> {
        match decode::strip_link(linktype, frame) {
            Ok(Network::Ip(ip)) => Some(ip),
            Ok(Network::Other) => {
                self.stats.not_ip += 1;
                None
            }
            Err(e) => {
                self.stats.malformed(e);
                None
            }
        }
    }

    /// An IP packet the fast path left to etherparse: fragments, extension headers, other
    /// protocols, malformed headers. Kept out of line so that `packet` stays small.
    #[inline(never)]
    fn slow_path(&mut self, seq: u64, ts: Nanos, ip: &[u8]) {
        match decode::decode_ip_sliced(ip) {
            Ok(Decoded::Packet(pk)) => self.classify_packet(seq, ts, &pk),
            Ok(Decoded::Fragment(ip)) => {
                self.stats.fragments += 1;
                // Only the first fragment has the UDP header: DNS answers too big for one
                // packet (DNSSEC, long TXT/NULL) exist only after reassembly.
                if let Defrag::Complete(d) = self.defrag.process(ts, ip) {
                    let mut whole = std::mem::take(&mut self.whole);
                    whole.clear();
                    whole.extend_from_slice(d);
                    match decode::decode_ip(&whole) {
                        Ok(Decoded::Packet(pk)) => self.classify_packet(seq, ts, &pk),
                        Ok(_) => self.stats.other_ip += 1,
                        Err(e) => self.stats.malformed(e),
                    }
                    self.whole = whole;
                }
            }
            Ok(Decoded::OtherIp) => self.stats.other_ip += 1,
            Ok(Decoded::NotIp) => self.stats.not_ip += 1,
            Err(e) => self.stats.malformed(e),
        }
    }

    /// An input record that is not a frame: it takes a place in the input order like a
    /// packet does, so batching and output order stay deterministic.
    fn external(&mut self, ts: Nanos, f: impl FnOnce(&mut Self, u64)) {
        let seq = self.seq;
        self.seq += 1;
        self.externals += 1;
        if seq == 0 {
            self.first_ts = ts;
        }
        self.last_ts = ts;
        self.clock = self.clock.max(ts);
        f(self, seq);
        if self.seq >= self.flush_at {
            self.flush(false);
        }
    }

    /// Frames read so far.
    fn packets(&self) -> u64 {
        self.seq - self.externals
    }

    /// Records in the current batch.
    fn in_batch(&self) -> u64 {
        self.seq - (self.flush_at - self.batch_packets as u64)
    }

    fn stats(&self) -> ReaderStats {
        ReaderStats { packets: self.packets(), ..self.stats.clone() }
    }

    fn classify_packet(&mut self, seq: u64, ts: Nanos, pk: &decode::Packet<'_>) {
        let l4 = L4 {
            sport: pk.sport,
            dport: pk.dport,
            transport: fast::Transport::of(pk.proto),
            payload: pk.payload,
        };
        self.classify(seq, ts, &l4, || (pk.src, pk.dst));
    }

    /// `addrs` is only called for a packet that is kept: building the two `IpAddr`s of
    /// every packet cost the reader more than reading the ports.
    #[inline(always)]
    fn classify(&mut self, seq: u64, ts: Nanos, l4: &L4<'_>, addrs: impl Fn() -> (IpAddr, IpAddr)) {
        self.stats.decoded += 1;
        let item = |kind, (src, dst)| Item {
            seq,
            ts,
            kind,
            src,
            dst,
            sport: l4.sport,
            dport: l4.dport,
            off: 0,
            len: 0,
        };
        match l4.transport {
            fast::Transport::Udp => {
                if l4.sport == DNS_PORT || l4.dport == DNS_PORT {
                    self.stats.dns_udp += 1;
                    let (src, dst) = addrs();
                    // The QR bit says which side asked; the asker is the client.
                    let response = l4.payload.get(2).is_some_and(|b| b & 0x80 != 0);
                    let client = if response { dst } else { src };
                    self.push(client, item(ItemKind::UdpDns, (src, dst)), l4.payload);
                } else if l4.sport == MDNS_PORT || l4.dport == MDNS_PORT {
                    self.stats.mdns += 1;
                } else if l4.sport == LLMNR_PORT || l4.dport == LLMNR_PORT {
                    self.stats.llmnr += 1;
                }
            }
            fast::Transport::Tcp { seq: tseq, flags } => {
                let dns = l4.sport == DNS_PORT || l4.dport == DNS_PORT;
                let first = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
                if !dns && !first {
                    return;
                }
                let (src, dst) = addrs();
                if dns {
                    self.stats.dns_tcp_segments += 1;
                    let client = if l4.dport == DNS_PORT { src } else { dst };
                    let flags = TcpFlags {
                        syn: flags & TCP_SYN != 0,
                        fin: flags & TCP_FIN != 0,
                        rst: flags & TCP_RST != 0,
                    };
                    self.push(client, item(ItemKind::TcpDns { seq: tseq, flags }, (src, dst)), l4.payload);
                }
                if first {
                    self.stats.syns += 1;
                    self.push(src, item(ItemKind::Syn, (src, dst)), &[]);
                }
            }
        }
    }

    /// Hands `item` (its payload, `payload`) to the worker that owns `client`. Inlined, so
    /// that the item is written straight into the batch rather than built in memory first
    /// and copied.
    #[inline(always)]
    fn push(&mut self, client: IpAddr, mut item: Item, payload: &[u8]) {
        let w = route(client, self.n);
        let Some(b) = self.current.get_mut(w) else {
            return;
        };
        item.off = b.data.len() as u32;
        item.len = payload.len() as u32;
        b.data.extend_from_slice(payload);
        b.items.push(item);
    }

    /// Closes the batch: every worker gets its share, even an empty one, so that all of them
    /// see the same boundaries and clock.
    fn flush(&mut self, last: bool) {
        self.defrag.expire(self.clock);
        for w in 0..self.n {
            let Some(slot) = self.current.get_mut(w) else {
                continue;
            };
            // A batch back from a worker keeps the room its last use needed. Until the pool
            // fills, a new one gets the room of the batch it replaces, rather than growing
            // by doubling (a copy into fresh memory each time) as it fills.
            let fresh = self.pool.try_recv().unwrap_or_else(|_| WorkBatch {
                items: Vec::with_capacity(slot.items.len()),
                data: Vec::with_capacity(slot.data.len()),
                ..WorkBatch::default()
            });
            let mut b = std::mem::replace(slot, fresh);
            b.end_seq = self.seq;
            b.end_ts = self.clock;
            b.last = last;
            b.lists = self.lists.clone();
            if let Some(tx) = self.tx.get(w) {
                // A worker only hangs up when it is gone; the join reports that.
                let _ = tx.send(b);
            }
        }
        self.flush_at = self.seq + self.batch_packets as u64;
        self.lists = None;
        self.batches += 1;
    }

    fn finish(&mut self) {
        self.flush(true);
        self.tx.clear();
        self.stats.defrag = self.defrag.stats();
    }
}

struct WorkerResult {
    cpu: Duration,
    stats: WorkerStats,
    txn: TxnStats,
    tcp: TcpDnsStats,
    calc: CalcStats,
    tunnel: TunnelStats,
}

struct Worker {
    /// Also the answer cache part this worker owns.
    id: usize,
    cfg: Arc<Config>,
    cache: Arc<AnswerCache>,
    txns: Option<Transactions>,
    tcp: TcpDnsStreams,
    calc: CalcDetector,
    tunnel: TunnelDetector,
    stats: WorkerStats,
    clock: Nanos,
    last_cache_sweep: Nanos,
    alerts: Vec<Alert>,
    done: Vec<Transaction>,
    lines: Vec<OutLine>,
    tcp_msgs: Vec<Vec<u8>>,
    /// Memory of finished messages, reused by the next parse.
    spare: Spare,
    /// Where `emit` writes each line's JSON before copying it out.
    json: String,
}

impl Worker {
    fn new(id: usize, n: usize, cfg: Arc<Config>, cache: Arc<AnswerCache>) -> Result<Worker, String> {
        // The detectors' caps are totals for the sensor: each worker gets its share, so that
        // memory does not grow with --threads.
        let share = |cap: usize| cap.div_ceil(n).max(1);
        let mut calc = cfg.calc.clone();
        calc.max_dedup = share(calc.max_dedup);
        let mut tunnel = cfg.tunnel.clone();
        tunnel.max_groups = share(tunnel.max_groups);
        tunnel.max_reputation_pairs = share(tunnel.max_reputation_pairs);
        Ok(Worker {
            id,
            txns: cfg.dns_log.then(|| Transactions::new(cfg.dns_timeout, share(cfg.max_pending_queries))),
            // Without a DNS log nobody reads answer owner names or TXT text: skip rendering them.
            spare: Spare::new(!cfg.dns_log),
            tcp: TcpDnsStreams::new(share(cfg.max_tcp_streams)),
            calc: CalcDetector::new(calc),
            tunnel: TunnelDetector::new(tunnel)?,
            cfg,
            cache,
            stats: WorkerStats::default(),
            clock: 0,
            last_cache_sweep: 0,
            alerts: Vec::new(),
            done: Vec::new(),
            lines: Vec::new(),
            tcp_msgs: Vec::new(),
            json: String::new(),
        })
    }

    fn run(
        mut self,
        rx: Receiver<WorkBatch>,
        pool: Sender<WorkBatch>,
        out: Sender<Vec<OutLine>>,
    ) -> WorkerResult {
        while let Ok(mut b) = rx.recv() {
            for item in &b.items {
                let payload = b.data.get(item.off as usize..(item.off + item.len) as usize).unwrap_or(&[]);
                self.item(item, payload);
            }
            if let Some(lists) = b.lists.take() {
                self.calc.set_lists(&lists);
                self.tunnel.set_lists(&lists);
            }
            self.boundary(b.end_seq, b.end_ts, b.last);
            let lines = std::mem::take(&mut self.lines);
            if out.send(lines).is_err() || b.last {
                break;
            }
            b.items.clear();
            b.data.clear();
            let _ = pool.try_send(b);
        }
        WorkerResult {
            cpu: thread_cpu(),
            stats: self.stats,
            txn: self.txns.as_ref().map(|t| t.stats()).unwrap_or_default(),
            tcp: self.tcp.stats(),
            calc: self.calc.stats(),
            tunnel: self.tunnel.stats(),
        }
    }

    fn item(&mut self, it: &Item, payload: &[u8]) {
        match it.kind {
            ItemKind::UdpDns => match parse_message_reusing(payload, &mut self.spare) {
                Ok(msg) => self.message(it, msg, payload.len(), Transport::Udp),
                Err(e) => *self.stats.dns_errors.entry(e.reason()).or_default() += 1,
            },
            ItemKind::TcpDns { seq, flags } => {
                let key = StreamKey { src: it.src, sport: it.sport, dst: it.dst, dport: it.dport };
                let mut msgs = std::mem::take(&mut self.tcp_msgs);
                self.tcp.on_segment(key, it.ts, seq, flags, payload, &mut |m| msgs.push(m.to_vec()));
                for m in msgs.drain(..) {
                    self.stats.dns_tcp_messages += 1;
                    match parse_message_reusing(&m, &mut self.spare) {
                        Ok(msg) => self.message(it, msg, m.len(), Transport::Tcp),
                        Err(e) => *self.stats.dns_errors.entry(e.reason()).or_default() += 1,
                    }
                }
                self.tcp_msgs = msgs;
            }
            ItemKind::Syn => {
                self.stats.syns += 1;
                let syn = Syn { ts: it.ts, src: it.src, sport: it.sport, dst: it.dst, dport: it.dport };
                self.calc.on_syn(&syn, &self.cache, &mut self.alerts);
                self.emit(it.seq, 0);
            }
        }
    }

    fn message(&mut self, it: &Item, msg: DnsMessage, wire_len: usize, transport: Transport) {
        self.stats.dns_messages += 1;
        if msg.anomalies != 0 {
            self.stats.dns_anomalies += 1;
        }
        let (client, client_port, server, server_port) = if msg.response {
            (it.dst, it.dport, it.src, it.sport)
        } else {
            (it.src, it.sport, it.dst, it.dport)
        };
        if msg.response {
            self.stats.dns_responses += 1;
            self.stats.cached_answers += self.cache.insert(client, server, it.ts, &msg) as u64;
        } else {
            self.stats.dns_queries += 1;
        }
        self.tunnel.on_dns(&DnsEvent { ts: it.ts, client, server, msg: &msg, wire_len }, &mut self.alerts);
        if let Some(txns) = self.txns.as_mut() {
            let key = TxnKey { client, client_port, server, server_port, transport, id: msg.id };
            txns.on_message(key, Seen { ts: it.ts, seq: it.seq, msg }, &mut self.done);
        } else {
            self.spare.recycle(msg);
        }
        self.emit(it.seq, 0);
    }

    /// The batch boundary: time-driven work, at the same packet clock on every worker.
    fn boundary(&mut self, end_seq: u64, end_ts: Nanos, last: bool) {
        self.clock = self.clock.max(end_ts);
        let now = self.clock;
        if let Some(t) = self.txns.as_mut() {
            t.expire(now, &mut self.done);
        }
        self.tunnel.expire(now, &mut self.alerts);
        self.calc.expire(now);
        self.tcp.expire(now, self.cfg.tcp_idle);
        // Each worker sweeps only its own clients, by its own clock, so a sweep never takes
        // an answer another worker could still use.
        let every = (self.cfg.cache.window / 8).max(1);
        if now.saturating_sub(self.last_cache_sweep) >= every {
            self.cache.expire_part(self.id, now);
            self.last_cache_sweep = now;
        }
        if last {
            if let Some(t) = self.txns.as_mut() {
                t.flush(&mut self.done);
            }
            // End of input: close every window so the long-horizon scores report.
            self.tunnel.expire(Nanos::MAX / 2, &mut self.alerts);
        }
        self.emit(end_seq, 1);
    }

    // Inline: called after every message and SYN, and most raise nothing; the check alone
    // costs less than the call and the register saves of `write_lines`.
    #[inline]
    fn emit(&mut self, seq: u64, phase: u8) {
        if !(self.alerts.is_empty() && self.done.is_empty()) {
            self.write_lines(seq, phase);
        }
    }

    #[inline(never)]
    fn write_lines(&mut self, seq: u64, phase: u8) {
        for mut a in self.alerts.drain(..) {
            self.stats.alerts.entry(a.rule).and_modify(|c| *c += 1).or_insert(1);
            let line =
                alert_line(&mut a, &self.cfg.sensor_name, self.cfg.event_module.as_deref(), &mut self.json);
            self.lines.push(OutLine {
                key: (seq, phase, a.ts),
                text: line.text,
                client: a.client,
                alert: Some(AlertMeta { rule: a.rule, client: a.client, domain: line.domain }),
            });
        }
        for t in self.done.drain(..) {
            let ts = t.query.as_ref().or(t.response.as_ref()).map(|s| s.ts).unwrap_or(0);
            self.json.clear();
            dnslog::write_line(&t, &self.cfg.sensor_name, &mut self.json);
            // Copied out at its exact size: `json` has grown to fit a line already.
            let text = self.json.as_str().to_owned();
            self.lines.push(OutLine { key: (seq, phase, ts), text, client: t.key.client, alert: None });
            for s in [t.query, t.response].into_iter().flatten() {
                self.spare.recycle(s.msg);
            }
        }
    }
}

struct OutputResult {
    cpu: Duration,
    errors: Vec<(String, io::Error)>,
    alert_lines: u64,
    dns_lines: u64,
    by_rule: BTreeMap<String, AlertTally>,
}

fn write_output(
    rx: Vec<Receiver<Vec<OutLine>>>,
    mut outputs: Outputs,
    abort: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> OutputResult {
    let mut by_rule: BTreeMap<String, AlertTally> = BTreeMap::new();
    let mut merged: Vec<OutLine> = Vec::new();
    let mut alerts = 0u64;
    let mut batches = 0u64;
    'outer: loop {
        // One batch from every worker: together they cover one span of the input.
        for r in &rx {
            match r.recv() {
                Ok(lines) => merged.extend(lines),
                Err(_) => break 'outer,
            }
        }
        merged.sort_unstable_by(|a, b| a.key.cmp(&b.key).then_with(|| a.text.cmp(&b.text)));
        for l in merged.drain(..) {
            match l.alert {
                Some(meta) => {
                    alerts += 1;
                    if let Some(h) = progress.latency.as_ref() {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos() as u64)
                            .unwrap_or(0);
                        let us = (now.saturating_sub(l.key.2) / 1_000).clamp(1, 3_600_000_000);
                        if let Ok(mut h) = h.lock() {
                            let _ = h.record(us);
                        }
                    }
                    outputs.alerts.line(&l.text);
                    if let Some(k) = outputs.kafka.as_mut() {
                        k.send(Kind::Alert, &l.client.to_string(), &l.text);
                    }
                    let t = by_rule.entry(meta.rule.to_string()).or_default();
                    t.count += 1;
                    *t.clients.entry(meta.client).or_default() += 1;
                    if let Some(d) = meta.domain {
                        *t.domains.entry(d).or_default() += 1;
                    }
                }
                None => {
                    if let Some(s) = outputs.dns_log.as_mut() {
                        s.line(&l.text);
                    }
                    if let Some(k) = outputs.kafka.as_mut().filter(|k| k.wants_dns()) {
                        k.send(Kind::Dns, &l.client.to_string(), &l.text);
                    }
                }
            }
        }
        // Alerts are what an operator waits for: flush them every batch.
        outputs.alerts.flush();
        if let Some(k) = outputs.kafka.as_mut() {
            k.flush();
        }
        progress.alerts.store(alerts, Ordering::Relaxed);
        batches += 1;
        progress.batches_written.store(batches, Ordering::Release);
        if outputs.alerts.failed() || outputs.dns_log.as_ref().is_some_and(|s| s.failed()) {
            abort.store(true, Ordering::Relaxed);
        }
    }
    outputs.alerts.flush();
    // Delivers what it can within its flush timeout; the rest waits in the spool.
    if let Some(k) = outputs.kafka.take() {
        k.close();
    }
    let mut errors = Vec::new();
    let alert_lines = outputs.alerts.lines();
    let mut dns_lines = 0;
    errors.extend(outputs.alerts.take_error());
    if let Some(s) = outputs.dns_log.as_mut() {
        s.flush();
        dns_lines = s.lines();
        errors.extend(s.take_error());
    }
    OutputResult { cpu: thread_cpu(), errors, alert_lines, dns_lines, by_rule }
}
