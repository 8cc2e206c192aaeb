//! Live capture through libpcap: one thread per interface copies frames into batches and
//! hands them to the engine thread over one bounded queue. The capture threads never wait
//! for the engine: when the queue is full, the whole batch is dropped and counted, so a slow
//! engine costs packets (visible in the stats) and never memory.
//!
//! Stopping: SIGINT/SIGTERM set a flag; capture threads notice it within one read timeout,
//! read what the kernel ring still holds, send their last batch and exit; the engine thread
//! drains the queue until every sender is gone. SIGHUP bumps a counter that the reopening
//! output files check before each write, so logrotate can move them away; the engine thread
//! also sees it and reloads the feeds and allowlists (`Reloader`) without losing state.

use super::RawPacket;
use crate::decode::LinkType;
use crate::detect::lists::Lists;
use crate::pipeline::{Engine, Progress};
use crate::Nanos;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use serde_json::{json, Value};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

macro_rules! untagged_filter {
    () => {
        "(udp port 53) or (tcp port 53) or (tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn) or \
         (ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] == 44)"
    };
}

/// What the detectors need and nothing else: DNS over UDP and TCP, TCP SYNs (without ACK)
/// for DNS Calculation, and IP fragments so that fragmented DNS answers reach the
/// reassembler. The same again under one VLAN tag (`vlan` shifts the offsets after it).
pub const DEFAULT_FILTER: &str = concat!(untagged_filter!(), " or (vlan and (", untagged_filter!(), "))");

/// `DEFAULT_FILTER` without its VLAN half, for link types other than Ethernet: libpcap has
/// no `vlan` test for them (Linux cooked capture, `-i any`, refused the default filter), and
/// the kernel has already taken the tag off such frames.
const DEFAULT_FILTER_UNTAGGED: &str = untagged_filter!();

/// How long the capture thread sleeps on an empty ring before it looks at the stop flag
/// again: the latency of stopping.
pub const READ_TIMEOUT_MS: i32 = 100;
/// The kernel hands a block of the ring (TPACKET_V3) over when it is full or when this
/// much time has passed since it was opened: the longest a packet on a quiet link waits
/// in the kernel.
const BLOCK_TIMEOUT_MS: i32 = 10;
/// After the stop, an empty ring ends the drain only once this long has passed: a
/// packet that arrived just before the stop is in a block the kernel has not handed
/// over yet.
const DRAIN_QUIET: Duration = Duration::from_millis(3 * BLOCK_TIMEOUT_MS as u64);
/// A batch closes at this many packets...
const BATCH_PACKETS: usize = 256;
/// ...or this many bytes of frame data (four full-size 65535-byte frames).
const BATCH_BYTES: usize = 256 << 10;
/// ...or when its first packet is this old: the most a packet waits in its capture thread.
const BATCH_AGE: Duration = Duration::from_millis(20);
/// Batches waiting for the engine, all interfaces together: at most
/// QUEUE_BATCHES × BATCH_BYTES (16 MiB) of frames in flight.
pub const QUEUE_BATCHES: usize = 64;
/// How often the capture thread refreshes its libpcap counters (pcap_stats is a syscall).
const PCAP_STATS_EVERY: Duration = Duration::from_millis(500);
/// After the stop flag, at most this long reading what the kernel ring still holds.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// At the stop, how long the final stats record waits for the output to catch up.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// The engine closes its current batch this often, so a quiet link still gets alerts out.
const TICK_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub promisc: bool,
    pub snaplen: i32,
    /// Kernel ring size in bytes.
    pub buffer_bytes: i32,
    /// A BPF expression; empty captures everything.
    pub filter: String,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig { promisc: true, snaplen: 65535, buffer_bytes: 64 << 20, filter: DEFAULT_FILTER.into() }
    }
}

/// One line for the operator: what failed on which interface, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveError {
    pub iface: String,
    pub cause: String,
    pub hint: String,
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; {}", self.iface, self.cause, self.hint)
    }
}

/// Turns a libpcap error text into a cause and a remedy.
fn classify_open_error(iface: &str, msg: &str) -> LiveError {
    let lower = msg.to_ascii_lowercase();
    let (cause, hint) = if lower.contains("no such device") || lower.contains("doesn't exist") {
        ("no such interface".to_string(), "list the interfaces with `ip link`".to_string())
    } else if lower.contains("permission") || lower.contains("not permitted") {
        (
            format!("permission denied ({msg})"),
            "run as root, or grant CAP_NET_RAW and CAP_NET_ADMIN (e.g. setcap cap_net_raw,cap_net_admin=eip portent)"
                .to_string(),
        )
    } else if lower.contains("not up") || lower.contains("network is down") {
        (format!("interface is down ({msg})"), "bring it up with `ip link set <iface> up`".to_string())
    } else {
        (format!("cannot open for capture ({msg})"), "check the interface name and permissions".to_string())
    };
    LiveError { iface: iface.to_string(), cause, hint }
}

fn filter_error(iface: &str, msg: &str) -> LiveError {
    LiveError {
        iface: iface.to_string(),
        cause: format!("bad filter expression ({msg})"),
        hint: "fix --bpf (syntax in pcap-filter(7)), or pass --bpf \"\" to capture everything".into(),
    }
}

/// Compiles a filter for Ethernet without touching any interface, so a typo is caught
/// before anything opens.
pub fn check_filter(expr: &str) -> Result<(), String> {
    if expr.is_empty() {
        return Ok(());
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    dead.compile(expr, true).map(|_| ()).map_err(|e| e.to_string())
}

/// An opened, filtered interface, ready for its capture thread.
pub struct Opened {
    pub name: String,
    pub linktype: LinkType,
    cap: pcap::Capture<pcap::Active>,
}

/// Opens an interface with the settings and installs the filter.
pub fn open(iface: &str, cfg: &LiveConfig) -> Result<Opened, LiveError> {
    let inactive =
        pcap::Capture::from_device(iface).map_err(|e| classify_open_error(iface, &e.to_string()))?;
    let mut cap = inactive
        .promisc(cfg.promisc)
        .snaplen(cfg.snaplen)
        .buffer_size(cfg.buffer_bytes)
        // Not immediate mode, so libpcap uses TPACKET_V3: packets packed into blocks that
        // the kernel hands over whole. Immediate mode means TPACKET_V2, one fixed slot per
        // packet, sized for the whole snap length when the interface offloads (a veth and
        // most NICs do), so the 64 MiB ring held about a thousand packets; and it woke the
        // capture thread for nearly every packet. On a veth that thread took 17-35% of a CPU
        // at 50k-150k packets/s, and the kernel dropped packets from 153k/s.
        // See benches/RESULTS.md, session 12.
        .immediate_mode(false)
        .timeout(BLOCK_TIMEOUT_MS)
        .open()
        .map_err(|e| classify_open_error(iface, &e.to_string()))?
        // Non-blocking, with our own poll(), so that the thread wakes to see the stop flag
        // and to hand over a partial batch on a quiet link.
        .setnonblock()
        .map_err(|e| classify_open_error(iface, &e.to_string()))?;
    let linktype = LinkType(cap.get_datalink().0 as u32);
    if !cfg.filter.is_empty() {
        let filter = if cfg.filter == DEFAULT_FILTER && linktype != LinkType::ETHERNET {
            DEFAULT_FILTER_UNTAGGED
        } else {
            &cfg.filter
        };
        cap.filter(filter, true).map_err(|e| filter_error(iface, &e.to_string()))?;
    }
    if !linktype.is_supported() {
        return Err(LiveError {
            iface: iface.to_string(),
            cause: format!("unsupported link type {}", linktype.0),
            hint: "capture on an Ethernet, raw IP or loopback interface".into(),
        });
    }
    Ok(Opened { name: iface.to_string(), linktype, cap })
}

/// Frames from one interface, copied out of libpcap's ring.
pub struct Batch {
    pub iface: usize,
    pub linktype: LinkType,
    /// (ts, offset in `data`, captured length, wire length)
    frames: Vec<(Nanos, u32, u32, u32)>,
    data: Vec<u8>,
}

impl Batch {
    fn new(iface: usize, linktype: LinkType) -> Batch {
        Batch { iface, linktype, frames: Vec::with_capacity(BATCH_PACKETS), data: Vec::new() }
    }

    fn push(&mut self, ts: Nanos, data: &[u8], orig_len: u32) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(data);
        self.frames.push((ts, off, data.len() as u32, orig_len));
    }

    fn full(&self) -> bool {
        self.frames.len() >= BATCH_PACKETS || self.data.len() >= BATCH_BYTES
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn packets(&self) -> impl Iterator<Item = RawPacket<'_>> {
        self.frames.iter().filter_map(move |&(ts, off, len, orig_len)| {
            let end = (off as usize).checked_add(len as usize)?;
            Some(RawPacket { ts, linktype: self.linktype, data: self.data.get(off as usize..end)?, orig_len })
        })
    }
}

/// Per interface counters, written by its capture thread, read by the stats record.
#[derive(Debug, Default)]
pub struct IfaceCounters {
    pub captured: AtomicU64,
    /// libpcap's counters: seen by the filter, dropped by the kernel (ring full), dropped
    /// by the interface or driver.
    pub pcap_received: AtomicU64,
    pub pcap_dropped: AtomicU64,
    pub pcap_if_dropped: AtomicU64,
    /// Dropped at our queue because the engine was behind.
    pub queue_dropped_packets: AtomicU64,
    pub queue_dropped_batches: AtomicU64,
    /// The capture thread's CPU time, nanoseconds, as of its last counter refresh.
    pub cpu_ns: AtomicU64,
}

fn pcap_ts(ts: &libc::timeval) -> Nanos {
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let usec = u64::try_from(ts.tv_usec).unwrap_or(0);
    secs.saturating_mul(crate::NANOS_PER_SEC).saturating_add(usec.saturating_mul(1000))
}

/// Sleeps until the capture has frames or `ms` pass (a signal also wakes it).
fn wait_readable(cap: &pcap::Capture<pcap::Active>, ms: i32) {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd { fd: cap.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call. Errors (EINTR) just return.
    unsafe { libc::poll(&mut fds, 1, ms) };
}

/// Called on the capture thread: its CPU time is read there.
fn refresh_stats(cap: &mut pcap::Capture<pcap::Active>, c: &IfaceCounters) {
    c.cpu_ns.store(crate::stats::thread_cpu().as_nanos() as u64, Ordering::Relaxed);
    if let Ok(s) = cap.stats() {
        c.pcap_received.store(u64::from(s.received), Ordering::Relaxed);
        c.pcap_dropped.store(u64::from(s.dropped), Ordering::Relaxed);
        c.pcap_if_dropped.store(u64::from(s.if_dropped), Ordering::Relaxed);
    }
}

fn offer(tx: &Sender<Batch>, batch: Batch, c: &IfaceCounters) {
    let n = batch.len() as u64;
    match tx.try_send(batch) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            c.queue_dropped_packets.fetch_add(n, Ordering::Relaxed);
            c.queue_dropped_batches.fetch_add(1, Ordering::Relaxed);
        }
        // The engine is gone (an output failed): nothing more to do with these.
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn capture_loop(
    idx: usize,
    mut o: Opened,
    tx: Sender<Batch>,
    stop: Arc<AtomicBool>,
    c: Arc<IfaceCounters>,
) -> Result<(), LiveError> {
    let mut batch = Batch::new(idx, o.linktype);
    let mut opened_at = Instant::now();
    let mut last_stats = Instant::now();
    let mut draining: Option<Instant> = None;
    let result = loop {
        if draining.is_none() && stop.load(Ordering::Relaxed) {
            draining = Some(Instant::now());
        }
        if draining.is_some_and(|t| t.elapsed() >= DRAIN_LIMIT) {
            break Ok(());
        }
        match o.cap.next_packet() {
            Ok(p) => {
                if batch.is_empty() {
                    opened_at = Instant::now();
                }
                batch.push(pcap_ts(&p.header.ts), p.data, p.header.len);
                c.captured.fetch_add(1, Ordering::Relaxed);
                // A batch also closes on age, so a trickle of packets is not held back.
                if batch.full() || opened_at.elapsed() >= BATCH_AGE {
                    offer(&tx, std::mem::replace(&mut batch, Batch::new(idx, o.linktype)), &c);
                }
            }
            // Non-blocking: the ring is empty right now. At a high rate it is empty between
            // most packets, so a batch is only handed over once it is BATCH_AGE old:
            // one-packet batches would fill the queue long before the engine is busy.
            Err(pcap::Error::TimeoutExpired) => {
                let age = opened_at.elapsed();
                if !batch.is_empty() && (age >= BATCH_AGE || draining.is_some()) {
                    offer(&tx, std::mem::replace(&mut batch, Batch::new(idx, o.linktype)), &c);
                }
                // After a stop, an empty ring is the end of the drain, once the kernel has
                // had the time to hand over the block it was filling.
                if let Some(t) = draining {
                    let left = DRAIN_QUIET.saturating_sub(t.elapsed());
                    if left.is_zero() {
                        break Ok(());
                    }
                    wait_readable(&o.cap, left.as_millis().clamp(1, READ_TIMEOUT_MS as u128) as i32);
                    continue;
                }
                let wait = if batch.is_empty() {
                    READ_TIMEOUT_MS
                } else {
                    BATCH_AGE.saturating_sub(age).as_millis().clamp(1, READ_TIMEOUT_MS as u128) as i32
                };
                wait_readable(&o.cap, wait);
            }
            Err(e) => {
                break Err(LiveError {
                    iface: o.name.clone(),
                    cause: format!("capture failed ({e})"),
                    hint: "check that the interface still exists and is up".into(),
                })
            }
        }
        if last_stats.elapsed() >= PCAP_STATS_EVERY {
            refresh_stats(&mut o.cap, &c);
            last_stats = Instant::now();
        }
    };
    refresh_stats(&mut o.cap, &c);
    if !batch.is_empty() {
        // The last batch waits for room: the engine drains until every sender is gone.
        let n = batch.len() as u64;
        if tx.send(batch).is_err() {
            c.queue_dropped_packets.fetch_add(n, Ordering::Relaxed);
        }
    }
    result
}

/// Signals as flags and counters, polled by the loops.
#[derive(Clone, Default)]
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub hup: Arc<AtomicU64>,
}

impl Signals {
    /// SIGINT and SIGTERM set `stop`; SIGHUP increments `hup`. A second SIGINT/SIGTERM
    /// while stopping exits at once, so a stuck drain can still be interrupted.
    pub fn register() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let s = Signals::default();
        for sig in [SIGINT, SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(sig, 130, s.stop.clone())?;
            signal_hook::flag::register(sig, s.stop.clone())?;
        }
        let hup = s.hup.clone();
        // SAFETY: the handler only does an atomic add, which is async-signal-safe.
        unsafe {
            signal_hook::low_level::register(SIGHUP, move || {
                hup.fetch_add(1, Ordering::Relaxed);
            })?;
        }
        Ok(s)
    }
}

/// An output file that reopens its path (append, create) when the SIGHUP counter moves:
/// after logrotate renames the file, the next write goes to a fresh one.
pub struct ReopeningFile {
    path: PathBuf,
    file: File,
    hup: Arc<AtomicU64>,
    seen: u64,
    pub reopened: u64,
}

impl ReopeningFile {
    pub fn open(path: &Path, hup: Arc<AtomicU64>) -> io::Result<ReopeningFile> {
        let file = Self::open_path(path)?;
        let seen = hup.load(Ordering::Relaxed);
        Ok(ReopeningFile { path: path.to_path_buf(), file, hup, seen, reopened: 0 })
    }

    fn open_path(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    fn maybe_reopen(&mut self) -> io::Result<()> {
        let now = self.hup.load(Ordering::Relaxed);
        if now != self.seen {
            self.seen = now;
            self.file = Self::open_path(&self.path)?;
            self.reopened += 1;
        }
        Ok(())
    }
}

impl Write for ReopeningFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.maybe_reopen()?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Drops root for `name`: supplementary groups, group, then user (in that order: once the
/// uid is gone, the others cannot change). Call after every capture handle is open.
pub fn drop_privileges(name: &str) -> Result<(), String> {
    let cname =
        std::ffi::CString::new(name).map_err(|_| format!("--user {name:?}: not a valid user name"))?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: every pointer refers to live memory of the stated size for the whole call.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Err(format!("--user {name}: no such user; create it or pick another with --user"));
    }
    let (uid, gid) = (pw.pw_uid, pw.pw_gid);
    // SAFETY: plain syscalls on integers.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(format!("--user {name}: setgroups failed: {}", io::Error::last_os_error()));
        }
        if libc::setgid(gid) != 0 {
            return Err(format!("--user {name}: setgid({gid}) failed: {}", io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err(format!("--user {name}: setuid({uid}) failed: {}", io::Error::last_os_error()));
        }
        // Check that it stuck: root must not be regainable.
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(format!("--user {name}: could regain root after dropping it; refusing to run"));
        }
    }
    Ok(())
}

/// What a reload read: the lists, where from, and whether the files also changed settings
/// that only a restart applies.
pub struct Reloaded {
    pub lists: Lists,
    /// Where they came from, for the log line ("site.toml", "--reputation feed.txt").
    pub source: String,
    pub restart_needed: bool,
}

/// Reads the configuration again on SIGHUP. It runs on a thread of its own, so that a big
/// feed never holds up the engine (and so the capture queue); the engine takes the result
/// between two batches.
pub type Reloader = Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>;

/// The SIGHUP side of the engine loop: at most one load at a time; a SIGHUP that comes
/// while one runs asks for one more afterwards, so the last edit is always read.
struct Reloads {
    loader: Option<Reloader>,
    seen: u64,
    running: Option<Receiver<Result<Reloaded, String>>>,
    again: bool,
    done: u64,
    failed: u64,
    /// Where the one-line messages go: standard error (a test collects them).
    say: fn(&str),
}

impl Reloads {
    fn new(loader: Option<Reloader>, hup: &AtomicU64) -> Reloads {
        let seen = hup.load(Ordering::Relaxed);
        Reloads { loader, seen, running: None, again: false, done: 0, failed: 0, say }
    }

    fn start(&mut self) {
        let Some(load) = self.loader.clone() else {
            (self.say)("SIGHUP: output files reopened; nothing to reload (no --config or --reputation)");
            return;
        };
        let (tx, rx) = bounded(1);
        let spawned = std::thread::Builder::new().name("portent-reload".into()).spawn(move || {
            let _ = tx.send(load());
        });
        match spawned {
            Ok(_) => self.running = Some(rx),
            Err(e) => {
                self.failed += 1;
                (self.say)(&format!("SIGHUP: reload failed, the previous feeds and allowlists stay in force: cannot start a thread ({e})"));
            }
        }
    }

    /// Called once per engine loop turn: starts a load on a new SIGHUP, applies a finished one.
    fn poll(&mut self, hup: &AtomicU64, engine: &mut Engine) {
        let now = hup.load(Ordering::Relaxed);
        if now != self.seen {
            self.seen = now;
            if self.running.is_some() {
                self.again = true;
            } else {
                self.start();
            }
        }
        let Some(rx) = &self.running else { return };
        let outcome = match rx.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(r) => r,
            Err(TryRecvError::Disconnected) => Err("the reload thread stopped without an answer".to_string()),
        };
        self.running = None;
        match outcome {
            Ok(r) => {
                self.done += 1;
                let note = if r.restart_needed {
                    "; settings other than feeds and allowlists changed too and take effect on restart"
                } else {
                    ""
                };
                (self.say)(&format!(
                    "SIGHUP: reloaded {}: {}; output files reopened{note}",
                    r.source,
                    r.lists.describe()
                ));
                engine.reload(r.lists);
            }
            Err(e) => {
                self.failed += 1;
                (self.say)(&format!(
                    "SIGHUP: reload failed, the previous feeds and allowlists stay in force: {e}"
                ));
            }
        }
        if std::mem::take(&mut self.again) {
            self.start();
        }
    }
}

/// One line for the operator on standard error, like every other `portent:` message.
fn say(line: &str) {
    let _ = writeln!(io::stderr(), "portent: {line}");
}

/// What the live run adds to the engine's report.
pub struct LiveReport {
    pub ifaces: Vec<(String, Arc<IfaceCounters>)>,
    pub errors: Vec<LiveError>,
    pub hups: u64,
    /// SIGHUP reloads applied, and reloads that failed (the old lists stayed).
    pub reloads: u64,
    pub reload_failures: u64,
    pub stats_records: u64,
}

/// Runs the capture threads and feeds the engine on the calling thread until a stop signal,
/// an output failure, or every capture thread ending. `stats`, when given, gets one NDJSON
/// record every `stats_every` (None: only the last) and a last one marked `"final": true`.
/// `reload`, when given, is run on every SIGHUP.
pub fn run(
    opened: Vec<Opened>,
    engine: &mut Engine,
    progress: &Progress,
    signals: &Signals,
    stats_every: Option<Duration>,
    mut stats: Option<Box<dyn Write>>,
    reload: Option<Reloader>,
) -> LiveReport {
    let (tx, rx): (Sender<Batch>, Receiver<Batch>) = bounded(QUEUE_BATCHES);
    let mut ifaces = Vec::new();
    let mut threads: Vec<JoinHandle<Result<(), LiveError>>> = Vec::new();
    let mut errors = Vec::new();
    // The capture threads have their own stop flag: the engine also stops them when an
    // output fails.
    let cap_stop = Arc::new(AtomicBool::new(false));
    for (idx, o) in opened.into_iter().enumerate() {
        let c = Arc::new(IfaceCounters::default());
        ifaces.push((o.name.clone(), c.clone()));
        let (tx, stop, name) = (tx.clone(), cap_stop.clone(), o.name.clone());
        match std::thread::Builder::new()
            .name(format!("portent-cap-{idx}"))
            .spawn(move || capture_loop(idx, o, tx, stop, c))
        {
            Ok(h) => threads.push(h),
            Err(e) => errors.push(LiveError {
                iface: name,
                cause: format!("cannot start the capture thread ({e})"),
                hint: "check the process limits".into(),
            }),
        }
    }
    drop(tx);

    let mut last_tick = Instant::now();
    let started = Instant::now();
    let mut next_stats = stats_every.map(|d| started + d);
    let mut stats_records = 0u64;
    let mut reloads = Reloads::new(reload, &signals.hup);
    loop {
        if !cap_stop.load(Ordering::Relaxed) && (signals.stop.load(Ordering::Relaxed) || engine.aborted()) {
            cap_stop.store(true, Ordering::Relaxed);
        }
        match rx.recv_timeout(TICK_EVERY) {
            Ok(batch) => {
                for p in batch.packets() {
                    engine.packet(&p);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        reloads.poll(&signals.hup, engine);
        if last_tick.elapsed() >= TICK_EVERY {
            engine.tick();
            last_tick = Instant::now();
        }
        if let (Some(t), Some(out)) = (next_stats, stats.as_mut()) {
            if Instant::now() >= t {
                let rec = stats_record(&ifaces, &rx, engine, progress, signals);
                if writeln!(out, "{rec}").and_then(|_| out.flush()).is_ok() {
                    stats_records += 1;
                }
                next_stats = stats_every.map(|d| Instant::now() + d);
            }
        }
    }
    for h in threads {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push(LiveError {
                iface: "capture".into(),
                cause: "a capture thread panicked".into(),
                hint: "please report this".into(),
            }),
        }
    }
    engine.tick();
    // A final record when stats are on: it carries the drop counts of the whole run, and
    // once the output has caught up, every alert.
    engine.settle(SETTLE_LIMIT);
    if let Some(out) = stats.as_mut() {
        let mut rec = stats_record(&ifaces, &rx, engine, progress, signals);
        rec["final"] = Value::Bool(true);
        if writeln!(out, "{rec}").and_then(|_| out.flush()).is_ok() {
            stats_records += 1;
        }
    }
    LiveReport {
        ifaces,
        errors,
        hups: signals.hup.load(Ordering::Relaxed),
        reloads: reloads.done,
        reload_failures: reloads.failed,
        stats_records,
    }
}

fn wall_now() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// One NDJSON stats record.
pub fn stats_record(
    ifaces: &[(String, Arc<IfaceCounters>)],
    rx: &Receiver<Batch>,
    engine: &Engine,
    progress: &Progress,
    signals: &Signals,
) -> Value {
    let r = engine.reader_stats();
    let per_iface: serde_json::Map<String, Value> = ifaces
        .iter()
        .map(|(name, c)| {
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
            (
                name.clone(),
                json!({
                    "captured": l(&c.captured),
                    "pcap_received": l(&c.pcap_received),
                    "pcap_dropped": l(&c.pcap_dropped),
                    "pcap_if_dropped": l(&c.pcap_if_dropped),
                    "queue_dropped_packets": l(&c.queue_dropped_packets),
                    "queue_dropped_batches": l(&c.queue_dropped_batches),
                    "cpu_seconds": l(&c.cpu_ns) as f64 / 1e9,
                }),
            )
        })
        .collect();
    json!({
        "@timestamp": crate::time::rfc3339(wall_now()),
        "event.kind": "metric",
        "interfaces": per_iface,
        "queue": {"depth": rx.len(), "capacity": QUEUE_BATCHES},
        "packets": r.packets,
        "dns": {"udp_packets": r.dns_udp, "tcp_segments": r.dns_tcp_segments, "syns": r.syns, "fragments": r.fragments},
        "cache_entries": engine.cache().len(),
        "alerts": progress.alerts.load(Ordering::Relaxed),
        "alert_latency": progress.latency_summary(),
        // Which thread a faster link would saturate first: the reader (here the engine
        // thread, which decodes and routes), the workers and the output, named as in the
        // summary; each capture thread's is under its interface.
        "cpu_seconds": engine.cpu().to_json(),
        "sighup": signals.hup.load(Ordering::Relaxed),
        "kafka": engine.kafka_stats().map(|k| k.to_json()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_compiles() {
        assert_eq!(check_filter(DEFAULT_FILTER), Ok(()));
        assert_eq!(check_filter(""), Ok(()));
    }

    #[test]
    fn the_untagged_default_filter_compiles_for_linux_cooked_capture() {
        let sll = pcap::Capture::dead(pcap::Linktype::LINUX_SLL).unwrap();
        assert!(sll.compile(DEFAULT_FILTER, true).is_err(), "libpcap has no vlan test on SLL");
        assert!(sll.compile(DEFAULT_FILTER_UNTAGGED, true).is_ok());
        assert!(DEFAULT_FILTER.starts_with(DEFAULT_FILTER_UNTAGGED));
        assert!(DEFAULT_FILTER.contains("(vlan and ((udp port 53)"));
    }

    #[test]
    fn default_filter_keeps_dns_syns_and_fragments_only() {
        let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        let prog = dead.compile(DEFAULT_FILTER, true).unwrap();
        let eth = |ethertype: u16, ip: &[u8]| {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(ip);
            f
        };
        // IPv4 header (20 bytes) with protocol, flags/fragment offset, then 20 transport bytes.
        let ipv4 = |proto: u8, frag: u16, l4: &[u8]| {
            let mut v = vec![0x45, 0, 0, 40, 0, 1];
            v.extend_from_slice(&frag.to_be_bytes());
            v.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            v.extend_from_slice(l4);
            v.resize(40, 0);
            v
        };
        let udp = |sport: u16, dport: u16| {
            let mut v = sport.to_be_bytes().to_vec();
            v.extend_from_slice(&dport.to_be_bytes());
            v.extend_from_slice(&[0, 8, 0, 0]);
            v
        };
        let tcp = |dport: u16, flags: u8| {
            let mut v = 40000u16.to_be_bytes().to_vec();
            v.extend_from_slice(&dport.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            v
        };
        let check = |frame: Vec<u8>, keep: bool, what: &str| assert_eq!(prog.filter(&frame), keep, "{what}");
        check(eth(0x0800, &ipv4(17, 0, &udp(40000, 53))), true, "DNS query over UDP");
        check(eth(0x0800, &ipv4(17, 0, &udp(53, 40000))), true, "DNS answer over UDP");
        check(eth(0x0800, &ipv4(17, 0, &udp(40000, 123))), false, "NTP");
        check(eth(0x0800, &ipv4(6, 0, &tcp(10198, 0x02))), true, "SYN");
        check(eth(0x0800, &ipv4(6, 0, &tcp(10198, 0x12))), false, "SYN-ACK");
        check(eth(0x0800, &ipv4(6, 0, &tcp(443, 0x10))), false, "ACK on 443");
        check(eth(0x0800, &ipv4(6, 0, &tcp(53, 0x18))), true, "DNS over TCP data");
        check(eth(0x0800, &ipv4(17, 0x2000, &udp(53, 40000))), true, "first fragment (MF)");
        check(eth(0x0800, &ipv4(17, 185, &[0; 20])), true, "later fragment (offset)");
        // The same DNS query behind an 802.1Q tag.
        let mut tagged = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0, 5, 0x08, 0x00];
        tagged.extend_from_slice(&ipv4(17, 0, &udp(40000, 53)));
        check(tagged, true, "DNS query under VLAN 5");
    }

    #[test]
    fn bad_filter_is_reported() {
        let e = check_filter("udp port fiftythree").unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn open_errors_name_the_cause_and_a_remedy() {
        let e = classify_open_error("eth9", "eth9: No such device exists (SIOCGIFHWADDR: No such device)");
        assert_eq!(e.to_string(), "eth9: no such interface; list the interfaces with `ip link`");
        let e = classify_open_error(
            "eth0",
            "You don't have permission to capture on that device (socket: Operation not permitted)",
        );
        assert!(e.cause.starts_with("permission denied"), "{e}");
        assert!(e.hint.contains("CAP_NET_RAW"), "{e}");
    }

    #[test]
    fn batch_hands_back_what_was_pushed() {
        let mut b = Batch::new(0, LinkType::ETHERNET);
        b.push(5, &[1, 2, 3], 3);
        b.push(7, &[4, 5], 1500);
        let got: Vec<(Nanos, Vec<u8>, u32)> =
            b.packets().map(|p| (p.ts, p.data.to_vec(), p.orig_len)).collect();
        assert_eq!(got, vec![(5, vec![1, 2, 3], 3), (7, vec![4, 5], 1500)]);
        assert!(!b.full());
    }

    #[test]
    fn a_full_queue_drops_whole_batches_and_counts_them() {
        let (tx, rx) = bounded(1);
        let c = IfaceCounters::default();
        for _ in 0..3 {
            let mut b = Batch::new(0, LinkType::ETHERNET);
            b.push(1, &[0; 10], 10);
            b.push(2, &[0; 10], 10);
            offer(&tx, b, &c);
        }
        assert_eq!(rx.len(), 1);
        assert_eq!(c.queue_dropped_batches.load(Ordering::Relaxed), 2);
        assert_eq!(c.queue_dropped_packets.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn reopening_file_follows_a_rename_after_hup() {
        let d = std::env::temp_dir().join(format!("portent-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("alerts.ndjson");
        let hup = Arc::new(AtomicU64::new(0));
        let mut f = ReopeningFile::open(&p, hup.clone()).unwrap();
        f.write_all(b"one\n").unwrap();
        std::fs::rename(&p, d.join("alerts.ndjson.1")).unwrap();
        f.write_all(b"two\n").unwrap();
        hup.fetch_add(1, Ordering::Relaxed);
        f.write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(d.join("alerts.ndjson.1")).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
        assert_eq!(f.reopened, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sighup_loads_off_thread_one_at_a_time_and_a_failure_changes_nothing() {
        use crate::config::Config;
        use crate::output::Sink;
        use crate::pipeline::Outputs;
        let cfg = Config { threads: 2, ..Config::default() };
        let outs = Outputs { alerts: Sink::discard(), dns_log: None, kafka: None };
        let mut engine = Engine::start(&cfg, outs, Arc::new(Progress::default())).unwrap();
        let hup = AtomicU64::new(0);
        let (ok, calls) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let loader: Reloader = {
            let (ok, calls) = (ok.clone(), calls.clone());
            Arc::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                if ok.load(Ordering::SeqCst) {
                    // Slow enough that the test can send SIGHUPs while it runs.
                    std::thread::sleep(Duration::from_millis(50));
                    Ok(Reloaded {
                        lists: Lists::default(),
                        source: "site.toml".into(),
                        restart_needed: false,
                    })
                } else {
                    Err("site.toml:3: dns_calculation.resolver_whitelist[0]: bad".into())
                }
            })
        };
        thread_local!(static SAID: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) });
        let mut r = Reloads::new(Some(loader), &hup);
        r.say = |l| SAID.with(|s| s.borrow_mut().push(l.to_string()));
        let said = || SAID.with(|s| s.borrow().clone());
        let settle = |r: &mut Reloads, engine: &mut Engine| {
            for _ in 0..1000 {
                r.poll(&hup, engine);
                if r.running.is_none() && !r.again {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            panic!("the reload did not finish");
        };
        // No SIGHUP: nothing is read.
        settle(&mut r, &mut engine);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // A failing load is counted and nothing is applied.
        hup.fetch_add(1, Ordering::Relaxed);
        settle(&mut r, &mut engine);
        assert_eq!((r.done, r.failed, calls.load(Ordering::SeqCst)), (0, 1, 1));
        assert_eq!(
            said(),
            ["SIGHUP: reload failed, the previous feeds and allowlists stay in force: \
              site.toml:3: dns_calculation.resolver_whitelist[0]: bad"]
        );
        ok.store(true, Ordering::SeqCst);
        hup.fetch_add(1, Ordering::Relaxed);
        settle(&mut r, &mut engine);
        assert_eq!((r.done, r.failed, calls.load(Ordering::SeqCst)), (1, 1, 2));
        assert!(
            said()[1].starts_with("SIGHUP: reloaded site.toml: reputation feed 0 domains;"),
            "{:?}",
            said()
        );
        // Two more SIGHUPs while a load is under way: one more load after it, not two.
        hup.fetch_add(1, Ordering::Relaxed);
        r.poll(&hup, &mut engine);
        assert!(r.running.is_some());
        hup.fetch_add(2, Ordering::Relaxed);
        settle(&mut r, &mut engine);
        assert_eq!((r.done, calls.load(Ordering::SeqCst)), (3, 4));
        assert_eq!(said().len(), 4);
        // Without a configuration to read, a SIGHUP only reopens the outputs, and says so.
        let mut r = Reloads::new(None, &hup);
        r.say = |l| SAID.with(|s| s.borrow_mut().push(l.to_string()));
        hup.fetch_add(1, Ordering::Relaxed);
        r.poll(&hup, &mut engine);
        assert!(said()[4].contains("nothing to reload"), "{:?}", said());
        engine.finish(Vec::new()).unwrap();
    }

    #[test]
    fn pcap_time_is_nanoseconds() {
        let tv = libc::timeval { tv_sec: 2, tv_usec: 500_000 };
        assert_eq!(pcap_ts(&tv), 2_500_000_000);
    }
}
