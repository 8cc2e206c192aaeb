//! Kafka output against a real Kafka-protocol broker (tansu, started here on 127.0.0.1),
//! read back with a real consumer (confluent-kafka, `tests/kafka_consume.py`) and compared
//! with the file output of the same run, record for record.
//!
//! The broker is `$PORTENT_TANSU`, or `${PORTENT_CACHE:-$HOME/.cache/portent}/tansu/bin/tansu`
//! as `scripts/build-tansu.sh` builds it; each test skips with a message when the broker or
//! the consumer is missing (CI provides both).
//!
//! Two outages. tansu keeps its log in memory here, so a killed broker loses what it had
//! acknowledged:
//! - `a_broker_outage_mid_replay_loses_nothing` puts a TCP proxy in front of the broker:
//!   "down" resets every connection and refuses new ones, what a sensor sees when its broker
//!   dies, and "up" lets it reconnect to the same broker, which still holds everything;
//! - `a_broker_killed_and_replaced_mid_replay_loses_nothing` really kills the broker
//!   (SIGKILL) and starts a new, empty one on the same port. The first broker's records are
//!   read back while it lives, the rest from the new one. This is also the case the proxy
//!   hides: the new broker has never heard of the producer's id (tansu answers
//!   UNKNOWN_PRODUCER_ID to every epoch librdkafka bumps to, so the sensor must replace its
//!   producer).
//!
//! The restart of the sensor itself is real (a second process).

mod common;

use common::{bin, project_capture, tmpdir};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn tansu_path() -> Option<PathBuf> {
    let p = match std::env::var_os("PORTENT_TANSU") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("PORTENT_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/portent")
            });
            cache.join("tansu/bin/tansu")
        }
    };
    p.is_file().then_some(p)
}

/// The broker and the consumer, or None (and a message) when either is missing.
fn tools() -> Option<PathBuf> {
    let Some(t) = tansu_path() else {
        eprintln!(
            "SKIP: no tansu broker (set PORTENT_TANSU or run scripts/build-tansu.sh); Kafka tests skipped"
        );
        return None;
    };
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with confluent-kafka is missing (pip install confluent-kafka); Kafka tests skipped");
        return None;
    }
    Some(t)
}

/// A free port below the kernel's ephemeral range. The proxy closes and reopens its
/// listener, and a broker is restarted on its port; a port from the ephemeral range (what
/// binding port 0 returns) can meanwhile become the source port of some outgoing connection,
/// and the re-bind then fails with AddrInUse (seen once in CI). The kernel never hands out
/// ports below the range on its own.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|l| l.parse::<u16>().ok()))
        .unwrap_or(32768);
    let first = 10_000 + (std::process::id() % 5_000) as u16 * 3;
    let _ = NEXT.compare_exchange(0, first, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < low, "no free port below the ephemeral range ({low})");
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn wait_listening(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tansu broker on 127.0.0.1:`port`, advertising `advertised` to clients; killed on drop.
struct Tansu {
    child: Child,
}

impl Tansu {
    fn start(bin: &Path, port: u16, advertised: u16, topics: &[&str]) -> Tansu {
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Tansu { child };
        wait_listening(port);
        for topic in topics {
            let o = Command::new(bin)
                .args([
                    "topic",
                    "create",
                    "--broker",
                    &format!("tcp://127.0.0.1:{port}"),
                    "--partitions",
                    "3",
                    topic,
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "create {topic}: {}", String::from_utf8_lossy(&o.stderr));
        }
        t
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1: `down` resets every connection through it and refuses new
/// ones; `up` accepts again.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(target: u16, up: bool) -> Proxy {
        let port = free_port();
        let (upf, stop) = (Arc::new(AtomicBool::new(up)), Arc::new(AtomicBool::new(false)));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, s, c) = (upf.clone(), stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            while !s.load(Ordering::Relaxed) {
                if !u.load(Ordering::Relaxed) {
                    // Closed: connecting is refused, as with a dead broker.
                    listener = None;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let l = listener.get_or_insert_with(|| {
                    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    l
                });
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut v = c.lock().unwrap();
                        v.push(client.try_clone().unwrap());
                        v.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let p = Proxy { port, up: upf, stop, conns, thread: Some(thread) };
        if up {
            wait_listening(port);
        }
        p
    }

    fn down(&self) {
        self.up.store(false, Ordering::Relaxed);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The listener is closed within one turn of the accept loop.
        std::thread::sleep(Duration::from_millis(50));
    }

    fn up(&self) {
        self.up.store(true, Ordering::Relaxed);
        wait_listening(self.port);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// One record read back: (topic, partition, key, value).
type Read_ = (String, i32, String, String);

/// Reads every record of `topics` (each with how many are expected) with the real consumer.
fn consume(port: u16, topics: &[(&str, usize)]) -> Vec<Read_> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_consume.py");
    let mut args = vec![script.display().to_string(), format!("127.0.0.1:{port}")];
    args.extend(topics.iter().map(|(t, n)| format!("{t}={n}")));
    args.extend(["--timeout".into(), "60".into(), "--grace".into(), "2".into()]);
    let o = Command::new("python3").args(&args).output().unwrap();
    assert!(o.status.success(), "consumer failed: {}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{}", String::from_utf8_lossy(&o.stderr).trim());
    String::from_utf8(o.stdout).unwrap().lines().map(parse_read).collect()
}

/// One line of `kafka_consume.py`: TOPIC<TAB>PARTITION<TAB>KEY<TAB>VALUE.
fn parse_read(l: &str) -> Read_ {
    let mut f = l.splitn(4, '\t');
    let (t, p, k, v) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    (t.to_string(), p.parse().unwrap(), k.to_string(), v.to_string())
}

/// The real consumer running in the background (`kafka_consume.py --follow`): every record
/// of `topics`, as it arrives.
struct Follower {
    child: Child,
    got: Arc<Mutex<Vec<Read_>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(port: u16, topics: &[&str]) -> Follower {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_consume.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(format!("127.0.0.1:{port}"))
            .args(topics.iter().map(|t| format!("{t}=0")))
            .args(["--follow", "--timeout", "300"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let got: Arc<Mutex<Vec<Read_>>> = Arc::default();
        let g = got.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for l in out.lines().map_while(Result::ok) {
                g.lock().unwrap().push(parse_read(&l));
            }
        });
        Follower { child, got, reader: Some(reader) }
    }

    fn read(&self) -> Vec<Read_> {
        self.got.lock().unwrap().clone()
    }

    /// Stops the consumer; everything it read.
    fn stop(mut self) -> Vec<Read_> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.read()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
}

fn of_topic(recs: &[Read_], topic: &str) -> Vec<Read_> {
    recs.iter().filter(|r| r.0 == topic).cloned().collect()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every record read carries its client as the key, and per key (one partition) the
/// records come in the order of the file.
fn check_keys_and_order(read: &[Read_], file: &[String]) {
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    let mut by_key_read: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, p, k, v) in read {
        assert_eq!(json(v)["source.ip"].as_str(), Some(k.as_str()), "the key is the client: {v}");
        assert_eq!(*partition_of.entry(k).or_insert(*p), *p, "one client, one partition");
        by_key_read.entry(k).or_default().push(v);
    }
    let mut by_key_file: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for v in file {
        let k = json(v)["source.ip"].as_str().unwrap().to_string();
        by_key_file.entry(k).or_default().push(v);
    }
    for (k, v) in &by_key_read {
        assert_eq!(Some(v), by_key_file.get(*k), "order of {k}'s records");
    }
}

fn summary(p: &Path) -> Value {
    json(&std::fs::read_to_string(p).unwrap())
}

/// Adds the Kafka output (alerts and DNS records to `topics`, spool in `spool`) and the
/// file outputs of the same run, named by `tag` under `d`, to `c`. Returns the alerts, DNS
/// log and summary paths.
fn kafka_and_files(
    c: &mut Command,
    brokers: &str,
    topics: [&str; 2],
    spool: &Path,
    d: &Path,
    tag: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let (a, l, s) =
        (d.join(format!("{tag}.alerts")), d.join(format!("{tag}.dns")), d.join(format!("{tag}.json")));
    c.args(["--kafka-brokers", brokers])
        .args(["--kafka-alerts-topic", topics[0], "--kafka-dns-topic", topics[1], "--kafka-spool-dir"])
        .arg(spool)
        .arg("-a")
        .arg(&a)
        .arg("--dns-log")
        .arg(&l)
        .arg("--summary-json")
        .arg(&s);
    (a, l, s)
}

#[test]
fn kafka_records_equal_the_file_output_record_for_record() {
    let Some(tansu) = tools() else {
        return;
    };
    let d = tmpdir("kafka-equal");
    let port = free_port();
    let _broker = Tansu::start(&tansu, port, port, &["t-alerts", "t-dns"]);
    let mut c = Command::new(bin());
    c.arg("replay").args([project_capture("dns-calc.pcap"), project_capture("iodine.pcap")]).args([
        "-q",
        "--sensor-name",
        "test-sensor",
    ]);
    let brokers = format!("127.0.0.1:{port}");
    let (a, l, s) = kafka_and_files(&mut c, &brokers, ["t-alerts", "t-dns"], &d.join("spool"), &d, "run");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (alerts, dns) = (lines(&a), lines(&l));
    assert!(alerts.len() >= 3 && dns.len() > 100, "{} alerts, {} DNS records", alerts.len(), dns.len());
    let read = consume(port, &[("t-alerts", alerts.len()), ("t-dns", dns.len())]);
    let (ra, rd) = (of_topic(&read, "t-alerts"), of_topic(&read, "t-dns"));
    // The same bytes, record for record.
    assert_eq!(sorted(ra.iter().map(|r| r.3.clone()).collect()), sorted(alerts.clone()));
    assert_eq!(sorted(rd.iter().map(|r| r.3.clone()).collect()), sorted(dns.clone()));
    check_keys_and_order(&ra, &alerts);
    check_keys_and_order(&rd, &dns);
    // Every alert names the sensor and has its own id.
    let mut ids: Vec<String> = Vec::new();
    for a in &alerts {
        let v = json(a);
        assert_eq!(v["observer.name"], "test-sensor");
        ids.push(v["event.id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), alerts.len(), "event.id is unique per alert");
    let k = &summary(&s)["kafka"];
    assert_eq!(k["delivered"]["alerts"], alerts.len() as u64, "{k}");
    assert_eq!(k["delivered"]["dns"], dns.len() as u64, "{k}");
    assert_eq!(k["spool"]["records"], 0, "{k}");
}

/// pcap global header and records of a file.
fn pcap_records(p: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let b = std::fs::read(p).unwrap();
    let (head, mut rest) = b.split_at(24);
    let mut recs = Vec::new();
    while rest.len() >= 16 {
        let len = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        let (r, tail) = rest.split_at(16 + len);
        recs.push(r.to_vec());
        rest = tail;
    }
    (head.to_vec(), recs)
}

/// Alerts read back, de-duplicated by event.id: each exactly once, and the same as the file.
fn check_alerts_once(read: &[Read_], file: &[String]) {
    let mut by_id: BTreeMap<String, &str> = BTreeMap::new();
    for (_, _, _, v) in read {
        let id = json(v)["event.id"].as_str().unwrap().to_string();
        if let Some(prev) = by_id.insert(id, v) {
            assert_eq!(prev, v, "two different alerts share an event.id");
        }
    }
    let got: Vec<String> = by_id.values().map(|v| v.to_string()).collect();
    assert_eq!(sorted(got), sorted(file.to_vec()), "every alert once after de-duplication by event.id");
}

/// A replay reading a capture from a pipe the test feeds, with small batches (records flow
/// while the input trickles in) and a small memory bound (an outage reaches the spool).
struct PipedReplay {
    child: Child,
    stdin: std::process::ChildStdin,
    alerts: PathBuf,
    dns: PathBuf,
    summary: PathBuf,
}

impl PipedReplay {
    fn start(d: &Path, brokers: &str, topics: [&str; 2], spool: &Path, stderr: Stdio) -> PipedReplay {
        let cfg = d.join("portent.toml");
        std::fs::write(
            &cfg,
            "[general]\nbatch_packets = 16\n[kafka]\nmemory_records = 16\nflush_timeout = 30\n",
        )
        .unwrap();
        let mut c = Command::new(bin());
        c.args(["replay", "-", "-q", "--threads", "2", "-c"]).arg(&cfg);
        let (alerts, dns, summary) = kafka_and_files(&mut c, brokers, topics, spool, d, "run");
        let mut child = c
            // The client's own account of the outage, for the test's output.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        PipedReplay { child, stdin, alerts, dns, summary }
    }

    /// Writes pcap records 64 at a time, pausing between the chunks.
    fn feed(&mut self, part: &[Vec<u8>], pause: Duration) {
        for chunk in part.chunks(64) {
            for r in chunk {
                self.stdin.write_all(r).unwrap();
            }
            self.stdin.flush().unwrap();
            std::thread::sleep(pause);
        }
    }
}

/// DNS records read back: each at least once and nothing the file does not have. Returns
/// how many were read twice.
fn check_dns_at_least_once(read: &[Read_], file: &[String]) -> usize {
    let mut got: Vec<String> = read.iter().map(|r| r.3.clone()).collect();
    got = sorted(got);
    got.dedup();
    let mut want = sorted(file.to_vec());
    want.dedup();
    assert_eq!(got, want, "every DNS record at least once, and nothing else");
    read.len() - file.len()
}

#[test]
fn a_broker_outage_mid_replay_loses_nothing() {
    let Some(tansu) = tools() else {
        return;
    };
    let d = tmpdir("kafka-outage");
    let port = free_port();
    let proxy = Proxy::start(port, true);
    let _broker = Tansu::start(&tansu, port, proxy.port, &["o-alerts", "o-dns"]);
    let brokers = format!("127.0.0.1:{}", proxy.port);
    let mut r = PipedReplay::start(&d, &brokers, ["o-alerts", "o-dns"], &d.join("spool"), Stdio::piped());
    let (head, recs) = pcap_records(&project_capture("iodine.pcap"));
    let third = recs.len() / 3;
    r.stdin.write_all(&head).unwrap();
    r.feed(&recs[..third], Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(500));
    // The broker goes away in the middle of the replay, for longer than the sensor waits
    // for it, while records keep coming.
    proxy.down();
    let t = Instant::now();
    r.feed(&recs[third..2 * third], Duration::from_millis(150));
    std::thread::sleep(Duration::from_secs(4).saturating_sub(t.elapsed()));
    proxy.up();
    r.feed(&recs[2 * third..], Duration::from_millis(20));
    let PipedReplay { child, stdin, alerts: a, dns: l, summary: s } = r;
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (alerts, dns) = (lines(&a), lines(&l));
    assert!(!alerts.is_empty() && dns.len() > 100, "{} alerts, {} DNS records", alerts.len(), dns.len());
    let k = &summary(&s)["kafka"];
    eprintln!("kafka figures: {k}");
    assert!(k["spooled"]["dns"].as_u64().unwrap() > 0, "the outage reached the spool: {k}");
    assert!(k["resent_from_spool"]["dns"].as_u64().unwrap() > 0, "{k}");
    assert_eq!(k["dropped_spool_full"]["dns"], 0, "{k}");
    assert_eq!(k["dropped_spool_full"]["alerts"], 0, "{k}");
    assert_eq!(k["spool"]["records"], 0, "all delivered in the end: {k}");
    let read = consume(proxy.port, &[("o-alerts", alerts.len()), ("o-dns", dns.len())]);
    check_alerts_once(&of_topic(&read, "o-alerts"), &alerts);
    let twice = check_dns_at_least_once(&of_topic(&read, "o-dns"), &dns);
    eprintln!("DNS records: {} in the file, {twice} read twice", dns.len());
}

/// Bytes in the spool's segment files.
fn spool_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fault test with a real broker death: the broker process is killed (SIGKILL)
/// in the middle of a replay and a new one, which has never heard of this producer, its
/// producer id or its sequence numbers, is started on the same port.
///
/// tansu keeps its log in memory, so what the first broker acknowledged dies with it: the
/// test reads it back before the kill. The replay is fed through a pipe in three phases:
/// (1) the first capture, read back live until the broker has everything the sensor wrote
/// out so far; kill; (2) the second capture while no broker runs (it must reach the
/// spool); a new broker; (3) the rest, then end of input, and read back from the new broker.
#[test]
fn a_broker_killed_and_replaced_mid_replay_loses_nothing() {
    let Some(tansu) = tools() else {
        return;
    };
    let started = Instant::now();
    let d = tmpdir("kafka-kill");
    let port = free_port();
    let topics = ["k-alerts", "k-dns"];
    let broker = Tansu::start(&tansu, port, port, &topics);
    let spool = d.join("spool");
    let log = d.join("stderr.log");
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let mut r = PipedReplay::start(&d, &format!("127.0.0.1:{port}"), topics, &spool, stderr);
    let (a, l, s) = (r.alerts.clone(), r.dns.clone(), r.summary.clone());
    // Three captures of the same link type as one stream, one per phase.
    let phases: Vec<(Vec<u8>, Vec<Vec<u8>>)> = ["iodine.pcap", "dns2tcp.pcap", "dns-calc.pcap"]
        .iter()
        .map(|c| pcap_records(&project_capture(c)))
        .collect();
    r.stdin.write_all(&phases[0].0).unwrap();
    let pause = Duration::from_millis(10);

    // Phase 1: until the broker holds, and the consumer has read, every record out so far
    // (the alerts file is flushed every batch; nothing new for a while covers DNS).
    let follower = Follower::start(port, &topics);
    r.feed(&phases[0].1, pause);
    let mut last = (usize::MAX, Instant::now());
    wait_for("the first broker to have every record out so far", Duration::from_secs(60), || {
        let read = follower.read();
        if read.len() != last.0 {
            last = (read.len(), Instant::now());
            return false;
        }
        let alerts = of_topic(&read, "k-alerts").len();
        !read.is_empty() && alerts == lines(&a).len() && last.1.elapsed() >= Duration::from_millis(1500)
    });
    let read1 = follower.stop();
    let down = Instant::now();
    drop(broker); // SIGKILL: its log dies with it.

    // Phase 2: no broker at all; records go on coming and must reach the spool.
    r.feed(&phases[1].1, pause);
    wait_for("records in the spool", Duration::from_secs(30), || spool_bytes(&spool) > 0);
    let outage = down.elapsed();

    // A new, empty broker on the same port, and the rest of the replay.
    let _broker2 = Tansu::start(&tansu, port, port, &topics);
    r.feed(&phases[2].1, pause);
    let PipedReplay { mut child, stdin, .. } = r;
    drop(stdin);
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let kafka_log: Vec<&str> = stderr.lines().filter(|l| l.contains("kafka")).collect();
    eprintln!("portent's Kafka log:\n{}", kafka_log.join("\n"));
    assert!(status.success(), "{stderr}");

    let (alerts, dns) = (lines(&a), lines(&l));
    let k = &summary(&s)["kafka"];
    eprintln!("kafka figures: {k}");
    let (ra1, rd1) = (of_topic(&read1, "k-alerts"), of_topic(&read1, "k-dns"));
    let read2 = consume(port, &[("k-alerts", alerts.len() - ra1.len()), ("k-dns", dns.len() - rd1.len())]);
    let (ra2, rd2) = (of_topic(&read2, "k-alerts"), of_topic(&read2, "k-dns"));
    eprintln!(
        "file: {} alerts, {} DNS; first broker: {} alerts, {} DNS; second broker: {} alerts, {} DNS; \
         broker down {:.1} s; test {:.1} s",
        alerts.len(),
        dns.len(),
        ra1.len(),
        rd1.len(),
        ra2.len(),
        rd2.len(),
        outage.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(!rd1.is_empty() && !rd2.is_empty(), "both brokers got records");
    // Alerts: each exactly once after de-duplication by event.id, in the file's order per
    // client.
    let ra: Vec<Read_> = ra1.iter().chain(&ra2).cloned().collect();
    check_alerts_once(&ra, &alerts);
    // DNS records: each at least once, nothing the file does not have; without repeats,
    // the file's order per client too.
    let rd: Vec<Read_> = rd1.iter().chain(&rd2).cloned().collect();
    match check_dns_at_least_once(&rd, &dns) {
        0 => check_keys_and_order(&rd, &dns),
        twice => eprintln!("{twice} DNS records read twice; order not compared"),
    }
    if ra.len() == alerts.len() {
        check_keys_and_order(&ra, &alerts);
    }
    // The spool's figures: the outage went through it, and nothing was lost on the way.
    let n = |v: &Value| v.as_u64().unwrap();
    assert!(n(&k["spooled"]["dns"]) + n(&k["spooled"]["alerts"]) > 0, "the outage reached the spool: {k}");
    assert!(n(&k["resent_from_spool"]["dns"]) + n(&k["resent_from_spool"]["alerts"]) > 0, "{k}");
    assert!(n(&k["broker_errors"]) > 0, "the client saw its broker die: {k}");
    assert_eq!(k["dropped_spool_full"], serde_json::json!({"alerts": 0, "dns": 0}), "{k}");
    assert_eq!(k["failed"], 0, "{k}");
    assert_eq!(k["spool_errors"], 0, "{k}");
    assert_eq!(k["spool"]["records"], 0, "all delivered in the end: {k}");
    assert_eq!(k["delivered"]["alerts"], alerts.len() as u64, "{k}");
    assert_eq!(k["delivered"]["dns"], dns.len() as u64, "{k}");
}

#[test]
fn records_left_in_the_spool_go_out_first_on_the_next_start() {
    let Some(tansu) = tools() else {
        return;
    };
    let d = tmpdir("kafka-restart");
    let port = free_port();
    let spool = d.join("spool");
    let run = |capture: &str, tag: &str| {
        let mut c = Command::new(bin());
        c.arg("replay").arg(project_capture(capture)).args(["-q", "--kafka-flush-timeout", "2"]);
        let brokers = format!("127.0.0.1:{port}");
        let (a, l, s) = kafka_and_files(&mut c, &brokers, ["r-alerts", "r-dns"], &spool, &d, tag);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (lines(&a), lines(&l), summary(&s)["kafka"].clone())
    };
    // First run: no broker at all. Everything waits in the spool, and the run still ends
    // cleanly.
    let (a1, l1, k1) = run("dns-calc.pcap", "one");
    assert_eq!(k1["spool"]["records"], (a1.len() + l1.len()) as u64, "{k1}");
    assert_eq!(k1["delivered"]["alerts"], 0);
    // Second run, with the broker back: the first run's records go first.
    let _broker = Tansu::start(&tansu, port, port, &["r-alerts", "r-dns"]);
    let (a2, l2, k2) = run("benign-lookups.pcap", "two");
    assert_eq!(k2["recovered_at_start"], (a1.len() + l1.len()) as u64, "{k2}");
    assert_eq!(k2["spool"]["records"], 0, "{k2}");
    let all_alerts: Vec<String> = a1.iter().chain(&a2).cloned().collect();
    let all_dns: Vec<String> = l1.iter().chain(&l2).cloned().collect();
    let read = consume(port, &[("r-alerts", all_alerts.len()), ("r-dns", all_dns.len())]);
    let (ra, rd) = (of_topic(&read, "r-alerts"), of_topic(&read, "r-dns"));
    assert_eq!(
        sorted(ra.iter().map(|r| r.3.clone()).collect()),
        sorted(all_alerts.clone()),
        "alerts once each"
    );
    assert_eq!(
        sorted(rd.iter().map(|r| r.3.clone()).collect()),
        sorted(all_dns.clone()),
        "DNS records once each"
    );
    check_keys_and_order(&ra, &all_alerts);
    check_keys_and_order(&rd, &all_dns);
}

#[test]
fn kafka_flags_are_checked_before_anything_runs() {
    let cap = project_capture("dns-calc.pcap");
    let cap = cap.to_str().unwrap();
    let usage = |args: &[&str], want: &str| {
        let o = common::run(&[&["replay", "-q", cap], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", common::stderr(&o));
        let e = common::stderr(&o);
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "one line: {e}");
    };
    usage(&["--kafka-dns-topic", "d"], "need --kafka-brokers");
    usage(&["--kafka-brokers", "k1"], "expected HOST:PORT");
    usage(
        &["--kafka-brokers", "k1:9092", "--kafka-alerts-topic", "bad topic"],
        "not allowed in a topic name",
    );
    usage(&["--kafka-brokers", "k1:9092", "--kafka-dns-topic", "portent-alerts"], "must differ");
    usage(&["--kafka-brokers", "k1:9092", "--kafka-spool-mb", "0"], "--kafka-spool-mb 0");
    usage(&["--sensor-name", " "], "--sensor-name");
    // A spool directory that cannot be made is a usage error too.
    usage(&["--kafka-brokers", "127.0.0.1:9", "--kafka-spool-dir", "/proc/portent-spool"], "Kafka spool");
}

#[test]
fn alerts_name_the_sensor_and_their_id_is_the_same_on_every_run_and_thread_count() {
    let d = tmpdir("kafka-ids");
    let cap = project_capture("dns-calc.pcap");
    let run = |threads: &str, name: &str| {
        let out = d.join(format!("a-{threads}-{name}"));
        let o = common::run(&[
            "replay",
            "-q",
            "-t",
            threads,
            "--sensor-name",
            name,
            "-a",
            out.to_str().unwrap(),
            cap.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::ndjson(&out)
    };
    let one = run("1", "span-01");
    assert_eq!(one.len(), 2);
    for a in &one {
        assert_eq!(a["observer.name"], "span-01");
        assert_eq!(a["event.id"].as_str().unwrap().len(), 32);
    }
    assert_ne!(one[0]["event.id"], one[1]["event.id"]);
    assert_eq!(run("3", "span-01"), one, "same records, ids included, for any thread count");
    let other = run("1", "span-02");
    for (a, b) in one.iter().zip(&other) {
        assert_ne!(a["event.id"], b["event.id"], "another sensor, another id");
    }
}
