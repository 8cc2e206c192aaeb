//! `portent live` end to end: errors an operator can fix, and a real capture on a veth pair
//! between two network namespaces made for the test (root and `ip netns` required; skipped
//! with a message otherwise). Nothing leaves the namespaces.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn assert_one_line_error(o: &std::process::Output, prefix: &str, cause: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("portent: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {err}");
    assert!(lines[0].starts_with(prefix), "starts with {prefix:?}: {err}");
    assert!(lines[0].contains(cause), "says {cause:?}: {err}");
    assert!(lines[0].contains("; "), "says what to do: {err}");
}

#[test]
fn a_missing_interface_is_a_one_line_usage_error() {
    let o = run(&["live", "-q", "-i", "portent-nosuch0"]);
    let err = stderr(&o);
    // Without root, libpcap may refuse before it looks the name up: either way, one line.
    if err.contains("permission denied") {
        assert_one_line_error(&o, "portent: portent-nosuch0: ", "permission denied");
    } else {
        assert_one_line_error(&o, "portent: portent-nosuch0: ", "no such interface");
    }
}

#[test]
fn a_bad_filter_is_a_one_line_usage_error() {
    let o = run(&["live", "-q", "-i", "lo", "--bpf", "udp port fiftythree or"]);
    assert_one_line_error(&o, "portent: lo: ", "bad filter expression");
}

#[test]
fn bad_numbers_are_usage_errors() {
    let o = run(&["live", "-q", "-i", "lo", "--snaplen", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["live", "-q", "-i", "lo", "-i", "lo"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces joined by a veth pair; deleting the namespaces removes the pair. Names
/// carry the process id and a counter, so tests running side by side do not collide.
struct Netns {
    a: String,
    b: String,
    va: String,
    vb: String,
}

impl Netns {
    fn create() -> Option<Netns> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: live capture test needs root (network namespaces)");
            return None;
        }
        let pid = std::process::id();
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = Netns {
            a: format!("portent-{pid}-{k}-a"),
            b: format!("portent-{pid}-{k}-b"),
            va: format!("pv{pid}{k}a"),
            vb: format!("pv{pid}{k}b"),
        };
        let ok = sh(&["ip", "netns", "add", &n.a])
            && sh(&["ip", "netns", "add", &n.b])
            && sh(&[
                "ip", "link", "add", &n.va, "netns", &n.a, "type", "veth", "peer", "name", &n.vb, "netns",
                &n.b,
            ])
            && sh(&["ip", "-n", &n.a, "link", "set", &n.va, "up"])
            && sh(&["ip", "-n", &n.b, "link", "set", &n.vb, "up"]);
        if !ok {
            eprintln!("SKIP: cannot create network namespaces and a veth pair here");
            return None;
        }
        Some(n)
    }

    /// `ip netns exec NS PROGRAM`: the program replaces `ip`, so the child's pid is the
    /// program's own (signals reach it directly).
    fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.a]);
        sh(&["ip", "netns", "del", &self.b]);
    }
}

/// Kills the child if the test fails before it is reaped.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Reap {
    fn pid(&self) -> i32 {
        self.0.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits for the child to exit, at most `limit`.
    fn wait(&mut self, what: &str, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.0.as_mut().unwrap().try_wait().unwrap() {
                self.0 = None;
                return s;
            }
            assert!(start.elapsed() < limit, "{what} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `portent live` in a namespace, with its standard error collected line by line as it
/// comes (the SIGHUP messages are read while it runs).
struct Live {
    child: Reap,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn start(ns: &str, iface: &str, out: &Path, extra: &[&str]) -> Live {
        let mut child = Netns::exec(ns, bin())
            .args(["live", "-i", iface, "--stats-interval", "1", "-q"])
            .arg("--alerts")
            .arg(out.join("alerts.ndjson"))
            .arg("--stats")
            .arg(out.join("stats.ndjson"))
            .arg("--summary-json")
            .arg(out.join("summary.json"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portent live");
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let live = Live { child: Reap(Some(child)), stderr, reader: Some(reader) };
        // The first stats record means the handle is open and the loop runs.
        let stats = out.join("stats.ndjson");
        wait_for("the first stats record", Duration::from_secs(10), || {
            std::fs::read_to_string(&stats).is_ok_and(|s| !s.is_empty())
        });
        live
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status and everything it wrote on standard error.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.child.signal(libc::SIGTERM);
        let status = self.child.wait("portent after SIGTERM", Duration::from_secs(15));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stderr())
    }
}

/// A helper program (resolver, listener, tcpdump) that must say it is ready on standard
/// error or standard output before the test goes on.
fn start_ready(mut cmd: Command, ready: &str, from_stderr: bool) -> Reap {
    if from_stderr {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn().expect("start a helper");
    let pipe: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let want = ready.to_string();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains(&want) {
                let _ = tx.send(Ok(()));
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Reap(Some(child)),
        Ok(Err(seen)) => panic!("helper exited before {ready:?}: {seen}"),
        Err(_) => panic!("helper did not say {ready:?} within 10 s"),
    }
}

/// The program's path: on PATH, or in the sbin directories a non-login root shell may
/// leave off it (Debian installs dnsmasq in /usr/sbin).
fn program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin"].map(Into::into));
    let found = dirs.map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIP: {name} is not installed");
    }
    found
}

fn have(name: &str) -> bool {
    program(name).is_some()
}

/// (rule.name, source.ip, destination.ip, destination.port, portent.formula) per alert.
fn keys(alerts: &[Value]) -> Vec<(String, String, String, u64, String)> {
    let s = |a: &Value, k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut v: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                s(a, "rule.name"),
                s(a, "source.ip"),
                s(a, "destination.ip"),
                a.get("destination.port").and_then(Value::as_u64).unwrap_or(0),
                s(a, "portent.formula"),
            )
        })
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An alert without its time-dependent fields (as sorted text), with its time in µs and the
/// answer's age in ms, sorted.
fn normalised(alerts: &[Value]) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = alerts
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let m = a.as_object_mut().unwrap();
            let ts = m
                .remove("@timestamp")
                .and_then(|t| t.as_str().and_then(portent::time::parse_iso))
                .unwrap_or(0)
                / 1_000;
            let age = m.remove("portent.answer_age_ms").and_then(|x| x.as_u64()).unwrap_or(0);
            // event.id digests @timestamp among the alert's key fields: it differs exactly
            // when the time does, and the time is compared on its own.
            m.remove("event.id");
            // The reason says the age in tenths of a second: keep the words, drop the figure.
            if let Some(Value::String(r)) = m.get_mut("event.reason") {
                *r = r
                    .split(' ')
                    .map(|w| if w.contains('.') && w.parse::<f64>().is_ok() { "T" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            (a.to_string(), ts, age)
        })
        .collect();
    v.sort();
    v
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn live_capture_on_a_veth_matches_replay() {
    let Some(ns) = Netns::create() else { return };
    if !have("tcpreplay") || !have("tcpdump") {
        return;
    }
    let d = tmpdir("live-veth");
    // Live packets carry their arrival time, and tcpreplay --pps squeezes the capture's
    // 400 s time-shifted control (SYN to 198.51.100.44 long after its answer, see
    // dns-calc.controls.tsv) into milliseconds, where it rightly alerts. So both runs use a
    // copy without that control; every other packet is replayed as captured.
    let pcap = d.join("dns-calc-no-late.pcap");
    let full = project_capture("dns-calc.pcap");
    assert!(
        sh(&[
            "tcpdump",
            "-r",
            full.to_str().unwrap(),
            "-w",
            pcap.to_str().unwrap(),
            "not host 198.51.100.44"
        ]),
        "tcpdump could not filter the capture"
    );
    let alerts = d.join("alerts.ndjson");
    let stats = d.join("stats.ndjson");
    let summary = d.join("summary.json");

    // What replay says about the same capture.
    let replay_alerts = d.join("replay.ndjson");
    let replay_summary = d.join("replay-summary.json");
    let o = run(&[
        "replay",
        "-q",
        "-a",
        replay_alerts.to_str().unwrap(),
        "--summary-json",
        replay_summary.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = keys(&ndjson(&replay_alerts));

    let live = Live::start(&ns.a, &ns.va, &d, &[]);
    let o = Netns::exec(&ns.b, "tcpreplay")
        .args(["-q", "-i", &ns.vb, "--pps", "500"])
        .arg(&pcap)
        .output()
        .expect("run tcpreplay");
    assert!(o.status.success(), "tcpreplay failed: {}", stderr(&o));

    // Alerts are flushed every batch and batches close every 100 ms: the two alerts should
    // show up while portent still runs.
    wait_for("the live alerts", Duration::from_secs(5), || ndjson(&alerts).len() >= want.len());
    let (status, err) = live.stop();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {err}");

    let got = keys(&ndjson(&alerts));
    assert_eq!(got, want, "live alerts equal replay alerts");

    // And both are the capture's two expected DNS Calculation alerts.
    let expected = std::fs::read_to_string(project_capture("dns-calc.expected.tsv")).unwrap();
    let mut exp: Vec<(String, String, u64)> = expected
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string(), c[2].parse().unwrap())
        })
        .collect();
    exp.sort();
    let mut got3: Vec<(String, String, u64)> =
        got.iter().filter(|k| k.0 == "dns_calculation").map(|k| (k.1.clone(), k.2.clone(), k.3)).collect();
    got3.sort();
    assert_eq!(exp.len(), 2);
    assert_eq!(got3, exp, "the two expected dns_calculation alerts");

    // The last stats record covers the whole run: nothing dropped at this rate.
    let recs = ndjson(&stats);
    let last = recs.last().expect("stats records");
    assert_eq!(last["final"], Value::Bool(true), "{last}");
    let iface = &last["interfaces"][&ns.va];
    assert_eq!(iface["pcap_dropped"], 0, "{last}");
    assert_eq!(iface["queue_dropped_packets"], 0, "{last}");
    // Capture-to-alert latency is measured for every alert (hdrhistogram percentiles).
    let lat = &last["alert_latency"];
    assert_eq!(lat["count"], 2, "{last}");
    for k in ["p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(lat[k].as_u64().is_some_and(|v| v >= 1), "{k} in {lat}");
    }
    // Each thread's CPU time so far: the capture thread's under its interface, the rest
    // beside (seconds; every thread has run, and none for longer than the test).
    let cpu = &last["cpu_seconds"];
    let workers = cpu["workers"].as_array().expect("workers' CPU");
    assert!(!workers.is_empty(), "{cpu}");
    for v in workers.iter().chain([&cpu["reader"], &cpu["output"], &iface["cpu_seconds"]]) {
        assert!(v.as_f64().is_some_and(|s| s > 0.0 && s < 60.0), "{v} in {last}");
    }
    // Every DNS packet and SYN of the capture passed the filter and reached the engine.
    let captured = iface["captured"].as_u64().unwrap();
    let rs = json_file(&replay_summary);
    let ls = json_file(&summary);
    assert_eq!(ls["dns"]["udp_packets"], rs["dns"]["udp_packets"], "live {ls}\nreplay {rs}");
    assert!(captured >= rs["dns"]["udp_packets"].as_u64().unwrap(), "{last}");
}

/// The C2 server's address in the test: public-looking (the rule skips private ranges), only
/// ever assigned inside the test's own namespace. apt12: 185*73 + 44 = 13549.
const C2: &str = "185.73.44.9";
const C2_PORT: u16 = 13549;
/// An ordinary site: apt12 gives 104*16 + 133 = 1797 and the variant 104*(16+133) = 15496;
/// the client connects to 443 and 15000, neither a formula port.
const ORDINARY: &str = "104.16.133.229";
const RESOLVER: &str = "10.77.0.1";
const CLIENT: &str = "10.77.0.2";

/// Names resolved by the client through the real resolver, and what it then connects to.
const C2_NAME: &str = "update.c2-live.test";

/// A real resolver (dnsmasq) and TCP listeners in namespace A, a client in B that resolves
/// with dig and connects with the kernel's own TCP (python3): real traffic, no replay.
/// portent captures on A's end of the veth, tcpdump on the same interface writes a pcap, and
/// `portent replay` of that pcap must give exactly the live alerts.
#[test]
fn real_resolver_traffic_live_equals_replay_of_the_same_packets() {
    let Some(ns) = Netns::create() else { return };
    let Some(dnsmasq) = program("dnsmasq") else { return };
    if !have("dig") || !have("tcpdump") || !have("python3") {
        return;
    }
    let d = tmpdir("live-real");
    // Addresses: the resolver on the veth, the servers on A's loopback, routes from B to
    // them through A. Nothing routes out of the two namespaces.
    let (a, b) = (ns.a.as_str(), ns.b.as_str());
    for cmd in [
        vec!["ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", &ns.va],
        vec!["ip", "-n", a, "link", "set", "lo", "up"],
        vec!["ip", "-n", a, "addr", "add", "185.73.44.9/32", "dev", "lo"],
        vec!["ip", "-n", a, "addr", "add", "104.16.133.229/32", "dev", "lo"],
        vec!["ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", &ns.vb],
        vec!["ip", "-n", b, "route", "add", "185.73.44.9/32", "via", RESOLVER],
        vec!["ip", "-n", b, "route", "add", "104.16.133.229/32", "via", RESOLVER],
    ] {
        assert!(sh(&cmd), "{cmd:?}");
    }
    let mut dnsmasq = Netns::exec(a, dnsmasq);
    dnsmasq.args([
        "--keep-in-foreground",
        "--log-facility=-",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=10.77.0.1",
        "--pid-file=",
        "--user=root",
        "--address=/update.c2-live.test/185.73.44.9",
        "--address=/www.ordinary.test/104.16.133.229",
        "--address=/mail.ordinary.test/104.16.133.229",
        "--address=/intranet.ordinary.test/10.77.0.1",
    ]);
    let _resolver = start_ready(dnsmasq, "started", true);
    let listen = "import socket,select,sys,time\n\
        ss=[]\n\
        for p in (13549,443,15000):\n\
        \x20s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
        \x20s.bind(('0.0.0.0',p)); s.listen(64); ss.append(s)\n\
        print('listening',flush=True)\n\
        end=time.time()+120\n\
        while time.time()<end:\n\
        \x20r,_,_=select.select(ss,[],[],0.5)\n\
        \x20for s in r:\n\
        \x20\x20c,_=s.accept(); c.close()\n";
    let mut listener = Netns::exec(a, "python3");
    listener.args(["-c", listen]);
    let _listener = start_ready(listener, "listening", false);

    // Immediate mode: without it libpcap hands packets over a block at a time, and the last
    // partial block is lost when tcpdump is interrupted.
    let pcap = d.join("real.pcap");
    let mut tcpdump = Netns::exec(a, "tcpdump");
    tcpdump.args(["-i", &ns.va, "-n", "-U", "--immediate-mode", "-Z", "root", "-w"]).arg(&pcap);
    let mut tcpdump = start_ready(tcpdump, "listening on", true);
    let live = Live::start(a, &ns.va, &d, &[]);

    let resolve = |name: &str| -> String {
        let o = Netns::exec(b, "dig")
            .args(["+short", "+time=2", "+tries=2", "@10.77.0.1", name, "A"])
            .output()
            .expect("run dig");
        assert!(o.status.success(), "dig {name}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let connect = |addr: &str, port: u16| {
        let o = Netns::exec(b, "python3")
            .args([
                "-c",
                "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()",
            ])
            .args([addr, &port.to_string()])
            .output()
            .expect("run python3");
        assert!(o.status.success(), "connect {addr}:{port}: {}", stderr(&o));
    };
    // Ordinary lookups and connections first, then the beacon, then more ordinary traffic.
    assert_eq!(resolve("www.ordinary.test"), ORDINARY);
    connect(ORDINARY, 443);
    assert_eq!(resolve("intranet.ordinary.test"), RESOLVER);
    let c2 = resolve(C2_NAME);
    assert_eq!(c2, C2);
    connect(&c2, C2_PORT);
    // The same C2 on an ordinary port, and the ordinary site on a port in the formula range
    // that no formula gives: neither may alert.
    connect(&c2, 443);
    assert_eq!(resolve("mail.ordinary.test"), ORDINARY);
    connect(ORDINARY, 15000);

    let alerts = d.join("alerts.ndjson");
    wait_for("the live alert", Duration::from_secs(5), || !ndjson(&alerts).is_empty());
    // Let the last handshakes' packets through before stopping both captures.
    std::thread::sleep(Duration::from_millis(500));
    let (status, err) = live.stop();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {err}");
    tcpdump.signal(libc::SIGINT);
    let st = tcpdump.wait("tcpdump", Duration::from_secs(10));
    assert!(st.success(), "tcpdump: {st:?}");

    // Exactly the beacon, with the name it came from.
    let live_alerts = ndjson(&alerts);
    assert_eq!(
        keys(&live_alerts),
        vec![("dns_calculation".into(), CLIENT.into(), C2.into(), u64::from(C2_PORT), "apt12".into())],
        "{live_alerts:?}"
    );
    let a0 = &live_alerts[0];
    assert_eq!(a0["dns.question.name"], C2_NAME);
    assert_eq!(a0["portent.resolver"], RESOLVER);
    assert_eq!(a0["portent.destination_is_answer"], true);

    // Replay of tcpdump's copy of the same packets: the same records, field for field,
    // except the times. Each capture socket stamps a packet on its own, a few microseconds
    // apart, so the times are only checked to agree within a millisecond.
    let replay_alerts = d.join("replay.ndjson");
    let o = run(&["replay", "-q", "-a", replay_alerts.to_str().unwrap(), pcap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (live_n, replay_n) = (normalised(&live_alerts), normalised(&ndjson(&replay_alerts)));
    assert_eq!(live_n.len(), replay_n.len(), "live {live_n:?}\nreplay {replay_n:?}");
    for ((l, lt, la), (r, rt, ra)) in live_n.iter().zip(&replay_n) {
        assert_eq!(l, r, "live alert equals the replay alert");
        assert!(lt.abs_diff(*rt) <= 1_000, "alert times {lt} µs and {rt} µs");
        assert!(la.abs_diff(*ra) <= 1, "answer ages {la} ms and {ra} ms");
    }

    // The last stats record covers the whole run: no kernel or queue drops, and every SYN
    // and DNS packet of the pcap reached the engine.
    let last = ndjson(&d.join("stats.ndjson")).pop().expect("stats records");
    assert_eq!(last["final"], Value::Bool(true), "{last}");
    let iface = &last["interfaces"][&ns.va];
    assert_eq!(iface["pcap_dropped"], 0, "{last}");
    assert_eq!(iface["queue_dropped_packets"], 0, "{last}");
    let replay_summary = d.join("replay-summary.json");
    let o = run(&[
        "replay",
        "-q",
        "-a",
        "/dev/null",
        "--summary-json",
        replay_summary.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let (ls, rs) = (json_file(&d.join("summary.json")), json_file(&replay_summary));
    assert_eq!(ls["dns"]["udp_packets"], rs["dns"]["udp_packets"], "live {ls}\nreplay {rs}");
    assert_eq!(ls["syns"], rs["syns"], "live {ls}\nreplay {rs}");
    // 4 lookups (query and answer each) and 4 connections.
    assert!(rs["dns"]["udp_packets"].as_u64().unwrap() >= 8, "{rs}");
    assert_eq!(rs["syns"], 4, "{rs}");
}

/// Replays frames made in the test onto the veth from namespace B, at `pps`.
fn replay_frames(ns: &Netns, dir: &Path, name: &str, frames: &[(u64, Vec<u8>)], pps: u32) {
    let p = dir.join(name);
    write_pcap(&p, frames);
    let o = Netns::exec(&ns.b, "tcpreplay")
        .args(["-q", "-i", &ns.vb, "--pps", &pps.to_string()])
        .arg(&p)
        .output()
        .expect("run tcpreplay");
    assert!(o.status.success(), "tcpreplay failed: {}", stderr(&o));
}

/// A query from `client` for `name`, as a frame.
fn query_frame(client: [u8; 4], name: &str) -> Vec<u8> {
    udp(client, [10, 66, 0, 53], 40000, 53, &dns_query(1, name, 1))
}

fn rules(alerts: &[Value]) -> Vec<(String, String, String)> {
    let s = |a: &Value, k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    alerts
        .iter()
        .map(|a| (s(a, "rule.name"), s(a, "source.ip"), s(a, "portent.reputation.listed_domain")))
        .collect()
}

/// SIGHUP on a running sensor: the edited feed takes effect without a restart, the alerts
/// file is reopened (logrotate), and a broken configuration is refused with one error line
/// while the previous feed keeps working.
#[test]
fn sighup_reloads_the_feed_and_a_bad_reload_keeps_the_old_one() {
    let Some(ns) = Netns::create() else { return };
    if !have("tcpreplay") {
        return;
    }
    let d = tmpdir("live-hup");
    let site = d.join("site.toml");
    let good = "[feeds]\ndomain_reputation_feed = \"feed.txt\"\n";
    std::fs::write(&site, good).unwrap();
    std::fs::write(d.join("feed.txt"), "# known bad\nold-bad.test\n").unwrap();
    let alerts = d.join("alerts.ndjson");
    let live = Live::start(&ns.a, &ns.va, &d, &["-c", site.to_str().unwrap()]);
    let (c5, c6) = ([10, 66, 0, 5], [10, 66, 0, 6]);

    // Before: only the listed domain alerts.
    let q = [query_frame(c5, "www.old-bad.test"), query_frame(c5, "www.new-bad.test")];
    replay_frames(&ns, &d, "1.pcap", &q.map(|f| (0, f)), 100);
    wait_for("the first reputation alert", Duration::from_secs(5), || !ndjson(&alerts).is_empty());

    // logrotate moves the file away, the feed gains a domain, then SIGHUP.
    std::fs::rename(&alerts, d.join("alerts.ndjson.1")).unwrap();
    std::fs::write(d.join("feed.txt"), "old-bad.test\nnew-bad.test\nthird-bad.test\n").unwrap();
    live.child.signal(libc::SIGHUP);
    wait_for("the reload line", Duration::from_secs(5), || live.stderr().contains("SIGHUP: reloaded"));
    let err = live.stderr();
    let line = err.lines().find(|l| l.contains("SIGHUP: reloaded")).unwrap();
    assert!(line.starts_with("portent: SIGHUP: reloaded "), "{err}");
    assert!(line.contains("site.toml") && line.contains("reputation feed 3 domains"), "{err}");

    // After: the new domain alerts; the pair that already alerted stays de-duplicated.
    let q = [query_frame(c5, "mail.old-bad.test"), query_frame(c5, "www.new-bad.test")];
    replay_frames(&ns, &d, "2.pcap", &q.map(|f| (0, f)), 100);
    wait_for("the second reputation alert", Duration::from_secs(5), || !ndjson(&alerts).is_empty());

    // A broken configuration: refused, one error line, the running feed stays.
    std::fs::write(&site, "[feeds]\ndomain_reputation_feed = \"missing.txt\"\n").unwrap();
    live.child.signal(libc::SIGHUP);
    wait_for("the reload error", Duration::from_secs(5), || live.stderr().contains("SIGHUP: reload failed"));
    let q = [query_frame(c6, "www.third-bad.test")];
    replay_frames(&ns, &d, "3.pcap", &q.map(|f| (0, f)), 100);
    wait_for("the third reputation alert", Duration::from_secs(5), || ndjson(&alerts).len() >= 2);

    let (status, err) = live.stop();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {err}");
    let failed: Vec<&str> = err.lines().filter(|l| l.contains("reload failed")).collect();
    assert_eq!(failed.len(), 1, "{err}");
    assert!(
        failed[0]
            .starts_with("portent: SIGHUP: reload failed, the previous feeds and allowlists stay in force: ")
            && failed[0].contains("site.toml:2: feeds.domain_reputation_feed:")
            && failed[0].contains("missing.txt"),
        "{err}"
    );
    let r = |k: &str, c: &str, dom: &str| (k.to_string(), c.to_string(), dom.to_string());
    assert_eq!(
        rules(&ndjson(&d.join("alerts.ndjson.1"))),
        vec![r("dns_reputation", "10.66.0.5", "old-bad.test")]
    );
    assert_eq!(
        rules(&ndjson(&alerts)),
        vec![
            r("dns_reputation", "10.66.0.5", "new-bad.test"),
            r("dns_reputation", "10.66.0.6", "third-bad.test")
        ]
    );
    let live_summary = json_file(&d.join("summary.json"))["live"].clone();
    assert_eq!(live_summary["sighup"], 2, "{live_summary}");
    assert_eq!(live_summary["reloads"], 1, "{live_summary}");
    assert_eq!(live_summary["reload_failures"], 1, "{live_summary}");
}

/// `pairs` beacons, one client each: an answer from the resolver, then the client's SYN to
/// the apt12 port of the answer. Every pair is one alert, so alerts are spread evenly over
/// the capture.
fn beacon_frames(pairs: u32) -> Vec<(u64, Vec<u8>)> {
    let excluded = [8080, 8443, 8000, 8888, 9090, 9200, 9300, 9418];
    let mut frames = Vec::new();
    for i in 0..pairs {
        let client = [10, 50, (i / 250) as u8, (i % 250 + 1) as u8];
        // o1 in 60..100, o2 in 70..120: public, and apt12 = o1*o2 + o3 stays in 4201..=11981.
        let (o1, o2) = (60 + i % 40, 70 + (i / 40) % 50);
        let mut o3 = i % 200 + 1;
        while excluded.contains(&(o1 * o2 + o3)) {
            o3 += 1;
        }
        let addr = [o1 as u8, o2 as u8, o3 as u8, 7];
        let port = (o1 * o2 + o3) as u16;
        let t = u64::from(i) * 2 * 1_000_000;
        let answer = dns_response_a(i as u16, &format!("c{i}.beacon.test"), &[addr], 300);
        frames.push((t, udp([10, 50, 255, 53], client, 53, 40000, &answer)));
        frames.push((t + 1_000_000, syn(client, addr, 41000, port)));
    }
    frames
}

/// SIGTERM while tcpreplay is still sending: the sensor drains what it captured and every
/// alert those packets raise is in the file, whole, before it exits 0.
#[test]
fn sigterm_in_the_middle_of_a_replay_loses_no_alert() {
    let Some(ns) = Netns::create() else { return };
    if !have("tcpreplay") {
        return;
    }
    let d = tmpdir("live-term");
    let frames = beacon_frames(2000);
    let pcap = d.join("beacons.pcap");
    write_pcap(&pcap, &frames);
    let alerts = d.join("alerts.ndjson");
    let live = Live::start(&ns.a, &ns.va, &d, &[]);
    // 4000 packets at 1000/s: four seconds of replay, stopped after about one.
    let mut replay = Reap(Some(
        Netns::exec(&ns.b, "tcpreplay")
            .args(["-q", "-i", &ns.vb, "--pps", "1000"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tcpreplay"),
    ));
    let count = || std::fs::read_to_string(&alerts).map_or(0, |s| s.lines().count());
    wait_for("500 alerts", Duration::from_secs(20), || count() >= 500);
    let (status, err) = live.stop();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {err}");
    let tcpreplay_still_ran = replay.0.as_mut().unwrap().try_wait().unwrap().is_none();
    drop(replay);

    // (a) The file ends on a whole line, and every line is a whole record.
    let text = std::fs::read(&alerts).unwrap();
    assert_eq!(text.last(), Some(&b'\n'), "the alerts file ends on a whole line");
    let got = ndjson(&alerts);
    // (b) As many lines as the summary and the last stats record counted.
    let summary = json_file(&d.join("summary.json"));
    assert_eq!(summary["alerts"]["total"], got.len(), "{summary}");
    let last = ndjson(&d.join("stats.ndjson")).pop().expect("stats records");
    assert_eq!(last["final"], Value::Bool(true), "{last}");
    assert_eq!(last["alerts"], got.len(), "{last}");
    // No packet was lost between the wire and the engine, so what it processed is exactly
    // the first N packets of the capture.
    let iface = &last["interfaces"][&ns.va];
    assert_eq!(iface["pcap_dropped"], 0, "{last}");
    assert_eq!(iface["queue_dropped_packets"], 0, "{last}");
    let n = summary["packets"].as_u64().unwrap() as usize;
    eprintln!("SIGTERM after {n} of {} packets; {} alerts written", frames.len(), got.len());
    assert!(
        tcpreplay_still_ran && n < frames.len(),
        "SIGTERM came mid-replay: {n} of {} packets",
        frames.len()
    );
    assert_eq!(iface["captured"], n, "{last}");

    // (c) The alerts are those of `portent replay` on the first N packets: each complete
    // pair among them, none lost at the stop.
    let prefix = d.join("prefix.pcap");
    write_pcap(&prefix, &frames[..n]);
    let replay_alerts = d.join("replay.ndjson");
    let o = run(&["replay", "-q", "-a", replay_alerts.to_str().unwrap(), prefix.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = keys(&ndjson(&replay_alerts));
    assert_eq!(want.len(), n / 2, "one alert per complete pair");
    assert_eq!(keys(&got), want, "live alerts equal replay of the first {n} packets");
}

/// Starts the sensor on `iface` in namespace A, replays `frames` onto the veth from B at
/// `pps`, then stops it: its exit must be clean. The last stats record and the alerts.
fn capture_then_stop(
    ns: &Netns,
    iface: &str,
    d: &Path,
    frames: &[(u64, Vec<u8>)],
    pps: u32,
) -> (Value, Vec<Value>) {
    let live = Live::start(&ns.a, iface, d, &[]);
    replay_frames(ns, d, "frames.pcap", frames, pps);
    let (status, err) = live.stop();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {err}");
    let last = ndjson(&d.join("stats.ndjson")).pop().expect("stats records");
    (last, ndjson(&d.join("alerts.ndjson")))
}

/// SIGTERM just after the last packet: the kernel hands packets over in blocks (TPACKET_V3),
/// and the block it was still filling at the stop must reach the engine too.
#[test]
fn the_packets_just_before_a_sigterm_are_not_lost() {
    let Some(ns) = Netns::create() else { return };
    if !have("tcpreplay") {
        return;
    }
    let d = tmpdir("live-tail");
    let frames = beacon_frames(300);
    // 600 packets in 30 ms, and the stop as soon as tcpreplay is done. The sensor notices
    // the signal tens of ms later, by when the kernel has usually handed the last block
    // over already; so this holds the whole path to account, not the drain's wait alone.
    let (last, alerts) = capture_then_stop(&ns, &ns.va, &d, &frames, 20_000);
    let iface = &last["interfaces"][&ns.va];
    assert_eq!(iface["pcap_dropped"], 0, "{last}");
    assert_eq!(iface["captured"], frames.len(), "every packet sent before the stop: {last}");
    let summary = json_file(&d.join("summary.json"));
    assert_eq!(summary["packets"], frames.len(), "{summary}");
    assert_eq!(alerts.len(), 300, "one alert per pair");
}

/// `-i any` (Linux cooked capture) with the default filter: libpcap has no `vlan` test for
/// that link type, so the sensor must use the filter without it rather than refuse to start.
#[test]
fn the_any_device_takes_the_default_filter() {
    let Some(ns) = Netns::create() else { return };
    if !have("tcpreplay") {
        return;
    }
    let d = tmpdir("live-any");
    let frames = beacon_frames(50);
    let (last, alerts) = capture_then_stop(&ns, "any", &d, &frames, 1_000);
    assert_eq!(last["interfaces"]["any"]["captured"], frames.len(), "{last}");
    assert_eq!(alerts.len(), 50, "one alert per pair");
}

#[test]
fn the_capture_section_of_the_configuration_file_is_used() {
    let d = tmpdir("live-cfg");
    let cfg = d.join("site.toml");
    std::fs::write(&cfg, "[capture]\nbpf = \"udp port fiftythree\"\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_portent"))
        .args(["live", "-i", "lo", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad filter expression") && err.contains("fiftythree"), "{err}");
}
