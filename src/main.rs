//! The `portent` command. Thin: parse flags, build the configuration, run, report, and turn
//! the outcome into an exit code (0 clean, 1 alerts with --fail-on-alert, 2 usage or input
//! error, 3 runtime failure).

mod cli;

use clap::{Args, Parser, Subcommand};
use portent::config::Config;
use portent::detect::formula::Formula;
use portent::detect::reputation::DomainSet;
use portent::net::CidrSet;
use portent::output::kafka::{Delivery, KafkaOut};
use portent::output::{summary, Sink};
use portent::pipeline::{self, Outputs, Progress, RunReport};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (mimalloc.h); libmimalloc-sys
/// does not name it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped instead of handing it back to the kernel: the pipeline frees and
/// reallocates its per-batch buffers continuously, and with purging on, the kernel zeroed the
/// re-faulted pages again each time (`clear_page_erms`, ~9% of a replay's CPU). Every table
/// is capped, so the process holds at most its high-water mark.
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; mimalloc reads it on each purge decision, and it is
    // called before any worker thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for them, so every first touch of its memory zeroed a whole 2 MiB:
/// peak RSS 117 MiB instead of 70 on the 1 GB benchmark replay. On a VM whose host takes back
/// freed guest memory (free page reporting), each of those bytes is a fault on the host too, and
/// a replay started a few seconds after the last one spent 0.4 s instead of 0.2 s in the kernel
/// (benches/RESULTS.md, session 8). A no-op where the kernel has no THP.
fn small_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        thp_prctl(true);
    }
}

/// `prctl(PR_SET_THP_DISABLE, 1)` when `disable`, else `prctl(PR_GET_THP_DISABLE)`: 1 when
/// huge pages are off for this process.
fn thp_prctl(disable: bool) -> libc::c_int {
    let (option, arg) = if disable { (libc::PR_SET_THP_DISABLE, 1) } else { (libc::PR_GET_THP_DISABLE, 0) };
    // SAFETY: both options take integer arguments only (no memory is passed); setting the
    // flag changes only how the kernel fills this process's later page faults.
    unsafe {
        libc::prctl(option, arg as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong)
    }
}

#[derive(Parser)]
#[command(
    name = "portent",
    version,
    about = "Passive DNS C2 sensor: DNS Calculation (T1568.003) and DNS tunneling (T1071.004)",
    long_about = "portent watches packets and never sends any. It flags TCP SYNs whose destination \
port is computed from an address the client just resolved (APT12-style DNS Calculation), and \
tunneling-shaped DNS (iodine, dnscat2, dns2tcp). Alerts are NDJSON with ECS field names on \
standard output; the summary goes to standard error.",
    after_long_help = "Exit status:\n  0  ran clean\n  1  alerts were raised (only with --fail-on-alert)\n  2  usage or input error (bad flag, configuration, or capture file)\n  3  runtime failure (an output could not be written)\n\nExamples:\n  portent replay captures/dns-calc.pcap\n  portent config default > portent.toml\n  portent report alerts.ndjson -o report.html"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Replay pcap/pcapng files through the detectors, with packet time as the clock.
    #[command(
        after_help = "Examples:\n  portent replay captures/dns-calc.pcap\n  portent replay --dns-log dns.ndjson -a alerts.ndjson day1-*.pcap\n  tcpdump -w - -i eth0 port 53 | portent replay -"
    )]
    Replay(ReplayArgs),

    /// Print the default configuration file, or check one.
    #[command(
        after_help = "Examples:\n  portent config default > portent.toml\n  portent config check portent.toml\n  portent replay --config portent.toml capture.pcap"
    )]
    Config(cli::ConfigArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  portent completions bash > /etc/bash_completion.d/portent\n  portent completions zsh > ~/.zfunc/_portent\n  portent completions fish > ~/.config/fish/completions/portent.fish"
    )]
    Completions(cli::CompletionsArgs),

    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:\n  portent man | man -l -\n  portent man /usr/local/share/man/man1")]
    Man(cli::ManArgs),

    /// Write a self-contained HTML report (timeline, alerts per client) from an alerts file.
    #[command(
        after_help = "Examples:\n  portent replay -a alerts.ndjson capture.pcap && portent report alerts.ndjson -o report.html\n  portent replay -q capture.pcap | portent report - -o report.html"
    )]
    Report(cli::ReportArgs),
    /// Capture live from network interfaces (libpcap) until SIGINT or SIGTERM.
    #[command(
        after_help = "Examples:\n  portent live -i eth0 -a /var/log/portent/alerts.ndjson\n  portent live -i eth0 -i eth1 --stats /var/log/portent/stats.ndjson --user portent\n\nSignals: SIGINT/SIGTERM stop, drain and print the summary (exit 0); SIGHUP reopens the output files and\nreloads the feeds and allowlists from --config and --reputation, keeping all state (a reload that fails\nis logged and the previous lists stay)."
    )]
    Live(LiveArgs),
    /// Read Zeek dns.log/conn.log and Suricata eve.json through the same detectors.
    #[command(
        after_help = "Zeek logs in TSV or JSON form, plain or gzip (by content). Several files of each kind are\nmerged in time order.\n\nExamples:\n  portent ingest --zeek-dns dns.log --zeek-conn conn.log\n  portent ingest --eve eve.json --eve eve.json.1.gz"
    )]
    Ingest(IngestArgs),
}

#[derive(Args)]
struct IngestArgs {
    /// A Zeek dns.log (TSV or JSON, plain or gzip). Repeatable.
    #[arg(long, value_name = "FILE")]
    zeek_dns: Vec<PathBuf>,

    /// A Zeek conn.log: connections whose history starts with S are SYNs. Repeatable.
    #[arg(long, value_name = "FILE")]
    zeek_conn: Vec<PathBuf>,

    /// A Suricata eve.json (dns v1/v2 events, flow/netflow records). Repeatable.
    #[arg(long, value_name = "FILE")]
    eve: Vec<PathBuf>,

    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct LiveArgs {
    /// Interface to capture on; repeat for several (one capture thread each).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", required = true)]
    interfaces: Vec<String>,

    /// Do not put the interfaces in promiscuous mode.
    #[arg(long)]
    no_promisc: bool,

    /// Bytes kept of each frame [default: 65535, or [capture] snaplen].
    #[arg(long, value_name = "BYTES")]
    snaplen: Option<u32>,

    /// Kernel capture ring per interface, MiB [default: 64, or [capture] buffer_mb].
    #[arg(long, value_name = "MIB")]
    buffer_mb: Option<u32>,

    /// Capture filter (pcap-filter syntax). The default keeps DNS on port 53, TCP SYNs and
    /// IP fragments, with or without a VLAN tag; --bpf "" captures everything.
    #[arg(long, value_name = "EXPR")]
    bpf: Option<String>,

    /// Seconds between NDJSON stats records (0: none while running).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    stats_interval: u64,

    /// Write the stats records here instead of standard error.
    #[arg(long, value_name = "PATH")]
    stats: Option<PathBuf>,

    /// Drop root for this user once the interfaces are open.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,

    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct ReplayArgs {
    /// Capture files (pcap or pcapng), read in the order given, as one stream; "-" reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    #[command(flatten)]
    common: CommonArgs,
}

// Cloned once, into the SIGHUP reloader of `live`.
#[derive(Args, Clone)]
struct CommonArgs {
    /// Read settings from this TOML file first; flags override it. `portent config default`
    /// prints a complete one.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where alerts go, one NDJSON object a line ("-" is standard output).
    #[arg(short = 'a', long, value_name = "PATH", default_value = "-")]
    alerts: PathBuf,

    /// Write one NDJSON record per DNS transaction (query with its response) here.
    #[arg(long, value_name = "PATH")]
    dns_log: Option<PathBuf>,

    /// Decoder worker threads (default: the number of cores). Output is the same for any N
    /// while no state table reaches its cap (the summary counts evictions).
    #[arg(short = 't', long, value_name = "N")]
    threads: Option<usize>,

    /// TimeWindow: how long a DNS answer stays usable for the DNS Calculation rule, seconds
    /// [default: 300, or dns_calculation.time_window from --config].
    #[arg(long, value_name = "SECS")]
    window: Option<u64>,

    /// DNS Calculation: also try the formulas on the destination address itself when the
    /// client has no cached answer (what Elastic's rule does; rule dns_calculation_no_dns).
    #[arg(long)]
    calc_without_dns: bool,

    /// DNS Calculation: also flag destinations in private, loopback and link-local ranges
    /// (internal-threat hunting).
    #[arg(long)]
    include_internal: bool,

    /// An extra DNS Calculation formula over the octets o1..o4 of a resolved IPv4 address,
    /// e.g. --formula 'xor=(o1^o2)*o3'. Repeatable; apt12 and apt12_variant stay on.
    #[arg(long, value_name = "NAME=EXPR")]
    formula: Vec<String>,

    /// DomainReputationFeed: a file of known-bad domains, one a line (# comments allowed).
    #[arg(long, value_name = "PATH")]
    reputation: Option<PathBuf>,

    /// Clients never flagged by any rule (ProcessAllowlist / DaemonAllowList / management
    /// hosts), as CIDRs. Repeatable.
    #[arg(long, value_name = "CIDR")]
    allow_client: Vec<String>,

    /// Registered domains whose encoded-looking names are legitimate (added to the shipped
    /// allowlist). Repeatable.
    #[arg(long, value_name = "DOMAIN")]
    allow_domain: Vec<String>,

    /// Write the end-of-run summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,

    /// Do not print the summary on standard error.
    #[arg(short = 'q', long)]
    quiet: bool,

    /// Exit with status 1 when any alert was raised.
    #[arg(long)]
    fail_on_alert: bool,

    /// This sensor's name: observer.name on every record and part of every alert's event.id
    /// [default: the host name, or general.sensor_name from --config].
    #[arg(long, value_name = "NAME")]
    sensor_name: Option<String>,

    /// Also send alerts (and DNS records, with --kafka-dns-topic) to Kafka: bootstrap
    /// brokers, HOST:PORT[,HOST:PORT...]. Same NDJSON as the files, keyed by client address.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Kafka")]
    kafka_brokers: Option<String>,

    /// Topic for alerts [default: portent-alerts].
    #[arg(long, value_name = "TOPIC", help_heading = "Kafka")]
    kafka_alerts_topic: Option<String>,

    /// Topic for DNS transaction records (none are sent without it).
    #[arg(long, value_name = "TOPIC", help_heading = "Kafka")]
    kafka_dns_topic: Option<String>,

    /// Where records wait while the broker is unreachable or slow; one directory per sensor
    /// [default: /var/lib/portent/kafka-spool].
    #[arg(long, value_name = "DIR", help_heading = "Kafka")]
    kafka_spool_dir: Option<PathBuf>,

    /// Most the spool holds, MiB; when full, the oldest DNS records go first, alerts last
    /// [default: 1024].
    #[arg(long, value_name = "MIB", help_heading = "Kafka")]
    kafka_spool_mb: Option<u64>,

    /// At exit, seconds spent delivering before the rest is left in the spool for the next
    /// start [default: 10].
    #[arg(long, value_name = "SECS", help_heading = "Kafka")]
    kafka_flush_timeout: Option<u64>,
}

fn main() -> ExitCode {
    keep_freed_memory();
    small_pages();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    match cli.cmd {
        Cmd::Replay(a) => replay(a),
        Cmd::Config(a) => cli::config(a),
        Cmd::Completions(a) => cli::completions(a, <Cli as clap::CommandFactory>::command()),
        Cmd::Man(a) => cli::man(a, <Cli as clap::CommandFactory>::command()),
        Cmd::Report(a) => cli::report(a),
        Cmd::Live(a) => live(a),
        Cmd::Ingest(a) => ingest(a),
    }
}

/// Diagnostics go through `tracing` to standard error, at the level RUST_LOG names
/// (`RUST_LOG=info`, `RUST_LOG=portent=debug`; default: warnings only). Standard output
/// carries alert records and nothing else.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

fn err(msg: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "portent: {msg}");
}

fn config(c: &CommonArgs) -> Result<Config, String> {
    let mut cfg = match &c.config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(t) = c.threads {
        if t == 0 || t > 256 {
            return Err(format!("--threads {t}: must be between 1 and 256"));
        }
        cfg.threads = t;
    }
    if let Some(w) = c.window {
        if w == 0 {
            return Err("--window 0: the window must be at least one second".into());
        }
        cfg.cache.window = w.saturating_mul(portent::NANOS_PER_SEC);
        cfg.calc.window = cfg.cache.window;
    }
    if let Some(n) = &c.sensor_name {
        cfg.sensor_name = portent::config::sensor_name(n).map_err(|e| format!("--sensor-name {e}"))?;
    }
    kafka_flags(c, &mut cfg.kafka)?;
    // DNS records are built when a file or a Kafka topic wants them.
    cfg.dns_log = c.dns_log.is_some() || (cfg.kafka.brokers.is_some() && cfg.kafka.dns_topic.is_some());
    cfg.calc.calc_without_dns |= c.calc_without_dns;
    cfg.calc.include_internal |= c.include_internal;
    for f in &c.formula {
        let (name, expr) = f
            .split_once('=')
            .ok_or_else(|| format!("--formula {f:?}: expected NAME=EXPR, e.g. 'xor=(o1^o2)*o3'"))?;
        let name = name.trim();
        if name.is_empty() || cfg.calc.formulas.iter().any(|x| x.name() == name) {
            return Err(format!("--formula {f:?}: the name must be new and not empty"));
        }
        let formula = Formula::parse(name, expr).map_err(|e| format!("--formula {name}: {e}"))?;
        cfg.calc.formulas.push(formula);
    }
    if let Some(p) = &c.reputation {
        let set = DomainSet::load(p).map_err(|e| format!("--reputation {}: {e}", p.display()))?;
        let set = Arc::new(set);
        cfg.calc.reputation = Some(set.clone());
        cfg.tunnel.reputation = Some(set);
    }
    let clients = CidrSet::parse_list(&c.allow_client).map_err(|e| format!("--allow-client: {e}"))?;
    cfg.calc.client_allowlist.0.extend(clients.0.iter().copied());
    cfg.tunnel.client_allowlist.0.extend(clients.0);
    cfg.tunnel.domain_allowlist.extend(c.allow_domain.iter().cloned());
    Ok(cfg)
}

/// The --kafka-* flags over the configuration file's [kafka] section.
fn kafka_flags(c: &CommonArgs, k: &mut portent::output::kafka::KafkaSettings) -> Result<(), String> {
    use portent::config::{MAX_FLUSH_SECS, MAX_SPOOL_MB};
    use portent::output::kafka::{check_brokers, check_topic};
    if let Some(b) = &c.kafka_brokers {
        check_brokers(b).map_err(|e| format!("--kafka-brokers {e}"))?;
        k.brokers = Some(b.trim().to_string());
    }
    if let Some(t) = &c.kafka_alerts_topic {
        check_topic(t).map_err(|e| format!("--kafka-alerts-topic {e}"))?;
        k.alerts_topic = t.clone();
    }
    if let Some(t) = &c.kafka_dns_topic {
        check_topic(t).map_err(|e| format!("--kafka-dns-topic {e}"))?;
        k.dns_topic = Some(t.clone());
    }
    if k.dns_topic.as_ref() == Some(&k.alerts_topic) {
        return Err(format!("--kafka-dns-topic {}: must differ from the alerts topic", k.alerts_topic));
    }
    if let Some(d) = &c.kafka_spool_dir {
        k.spool_dir = d.clone();
    }
    if let Some(mb) = c.kafka_spool_mb {
        if mb == 0 || mb > MAX_SPOOL_MB as u64 {
            return Err(format!("--kafka-spool-mb {mb}: must be between 1 and {MAX_SPOOL_MB}"));
        }
        k.spool_mb = mb;
    }
    if let Some(s) = c.kafka_flush_timeout {
        if s > MAX_FLUSH_SECS as u64 {
            return Err(format!("--kafka-flush-timeout {s}: must be at most {MAX_FLUSH_SECS}"));
        }
        k.flush_timeout_secs = s;
    }
    let any = c.kafka_alerts_topic.is_some()
        || c.kafka_dns_topic.is_some()
        || c.kafka_spool_dir.is_some()
        || c.kafka_spool_mb.is_some()
        || c.kafka_flush_timeout.is_some();
    if any && k.brokers.is_none() {
        return Err("the --kafka-* options need --kafka-brokers (or kafka.brokers in --config)".into());
    }
    Ok(())
}

/// The Kafka output, when brokers are set. `mode` says whether the run may wait for the
/// broker (replay, ingest) or must never block (live).
fn kafka_output(cfg: &Config, mode: Delivery) -> Result<Option<KafkaOut>, String> {
    if cfg.kafka.brokers.is_none() {
        return Ok(None);
    }
    KafkaOut::start(&cfg.kafka, &format!("portent-{}", cfg.sensor_name), mode).map(Some)
}

fn outputs(c: &CommonArgs, cfg: &Config) -> Result<Outputs, String> {
    let stdout = |p: &PathBuf| p.as_os_str() == "-";
    if c.dns_log.as_ref().is_some_and(stdout) && stdout(&c.alerts) {
        return Err(
            "--dns-log - and alerts on standard output would mix; send alerts to a file with --alerts PATH"
                .into(),
        );
    }
    let alerts = Sink::create(&c.alerts).map_err(|e| format!("cannot open the alerts output: {e}"))?;
    let dns_log = match &c.dns_log {
        Some(p) => Some(Sink::create(p).map_err(|e| format!("cannot open the DNS log: {e}"))?),
        None => None,
    };
    let kafka = kafka_output(cfg, Delivery::Backpressure)?;
    Ok(Outputs { alerts, dns_log, kafka })
}

/// Prints an error as the one-line `portent: ...` message and turns it into `code`, so
/// that a run reads top to bottom with `?`.
fn or_exit<T>(r: Result<T, impl std::fmt::Display>, code: u8) -> Result<T, ExitCode> {
    r.map_err(|e| {
        err(e);
        ExitCode::from(code)
    })
}

fn replay(a: ReplayArgs) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let cfg = or_exit(config(&a.common), 2)?;
        let outs = or_exit(outputs(&a.common, &cfg), 2)?;
        let progress = Arc::new(Progress::default());
        let meter = (!a.common.quiet && io::stderr().is_terminal())
            .then(|| ProgressMeter::start(&a.files, progress.clone()));
        let report = pipeline::replay(&a.files, &cfg, outs, progress);
        if let Some(m) = meter {
            m.stop();
        }
        let report = or_exit(report, 3)?;
        let input_errors = report.capture_errors.iter().map(|e| e.to_string()).collect();
        let code = finish(&a.common, &report, Ending { input_errors, ..Ending::default() });
        // The report holds the answer cache: freeing its answers one by one was 2% of a
        // replay's instructions, spent as the process exits anyway.
        std::mem::forget(report);
        Ok(code)
    };
    run().unwrap_or_else(|code| code)
}

fn ingest(a: IngestArgs) -> ExitCode {
    use portent::ingest::{self, Input, Kind};
    let run = || -> Result<ExitCode, ExitCode> {
        let mut inputs = Vec::new();
        for (kind, files) in
            [(Kind::ZeekDns, &a.zeek_dns), (Kind::ZeekConn, &a.zeek_conn), (Kind::Eve, &a.eve)]
        {
            inputs.extend(files.iter().map(|p| Input { path: p.clone(), kind }));
        }
        if inputs.is_empty() {
            return or_exit(Err("ingest: give at least one of --zeek-dns, --zeek-conn, --eve"), 2);
        }
        let mut cfg = or_exit(config(&a.common), 2)?;
        cfg.event_module = Some(ingest::event_module(&inputs).to_string());
        // Every file is sniffed before anything runs: a wrong file is a usage error.
        let sources = or_exit(ingest::open_all(&inputs), 2)?;
        let outs = or_exit(outputs(&a.common, &cfg), 2)?;
        let report = or_exit(ingest::run(sources, &cfg, outs, Arc::new(Progress::default())), 3)?;
        let extra_text = report.files.iter().map(|f| f.to_text()).collect();
        Ok(finish(&a.common, &report.run, Ending { extra_text, ..Ending::default() }))
    };
    run().unwrap_or_else(|code| code)
}

/// A one-line progress display on standard error (only when it is a terminal): bytes read
/// of the total, packets/s, alerts so far, time left.
struct ProgressMeter {
    done: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl ProgressMeter {
    fn start(files: &[PathBuf], p: Arc<Progress>) -> ProgressMeter {
        let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut shown = false;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let el = start.elapsed().as_secs_f64();
                if el < 1.0 {
                    continue;
                }
                let bytes = p.bytes.load(Ordering::Relaxed);
                let pkts = p.packets.load(Ordering::Relaxed);
                let alerts = p.alerts.load(Ordering::Relaxed);
                let frac = if total > 0 { bytes as f64 / total as f64 } else { 0.0 };
                let left = if frac > 0.0 { el / frac - el } else { 0.0 };
                let _ = write!(
                    io::stderr(),
                    "\r\x1b[K{:5.1}% {} of {} MB, {:.0} kpackets/s, {} alerts, {:.0} s left",
                    frac * 100.0,
                    bytes >> 20,
                    total >> 20,
                    pkts as f64 / el / 1e3,
                    alerts,
                    left.max(0.0)
                );
                shown = true;
            }
            if shown {
                let _ = write!(io::stderr(), "\r\x1b[K");
            }
        });
        ProgressMeter { done, handle }
    }

    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

/// Like `outputs`, but files are opened for appending and reopened on SIGHUP (logrotate).
fn live_outputs(
    c: &CommonArgs,
    cfg: &Config,
    hup: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<Outputs, String> {
    use portent::capture::live::ReopeningFile;
    let stdout = |p: &PathBuf| p.as_os_str() == "-";
    if c.dns_log.as_ref().is_some_and(stdout) && stdout(&c.alerts) {
        return Err(
            "--dns-log - and alerts on standard output would mix; send alerts to a file with --alerts PATH"
                .into(),
        );
    }
    let sink = |p: &PathBuf, what: &str| -> Result<Sink, String> {
        if stdout(p) {
            return Sink::create(p).map_err(|e| format!("cannot open the {what}: {e}"));
        }
        let f = ReopeningFile::open(p, hup.clone()).map_err(|e| format!("cannot open the {what}: {e}"))?;
        Ok(Sink::from_writer(&p.display().to_string(), Box::new(f)))
    };
    let alerts = sink(&c.alerts, "alerts output")?;
    let dns_log = match &c.dns_log {
        Some(p) => Some(sink(p, "DNS log")?),
        None => None,
    };
    // Live never waits for the broker: a blocked output would cost packets at the capture.
    let kafka = kafka_output(cfg, Delivery::Spill)?;
    Ok(Outputs { alerts, dns_log, kafka })
}

fn live(a: LiveArgs) -> ExitCode {
    use portent::capture::live::{self, LiveConfig, ReopeningFile, Signals};
    let usage = |e: String| {
        err(e);
        ExitCode::from(2)
    };
    let cfg = match config(&a.common) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    // Flags win over the configuration file's [capture] section.
    let snaplen = a.snaplen.unwrap_or(cfg.capture.snaplen);
    let buffer_mb = a.buffer_mb.unwrap_or(cfg.capture.buffer_mb);
    if snaplen == 0 || snaplen > 262_144 {
        return usage(format!("--snaplen {snaplen}: must be between 1 and 262144"));
    }
    if buffer_mb == 0 || buffer_mb > 2047 {
        return usage(format!("--buffer-mb {buffer_mb}: must be between 1 and 2047"));
    }
    let lcfg = LiveConfig {
        promisc: cfg.capture.promisc && !a.no_promisc,
        snaplen: snaplen as i32,
        buffer_bytes: (buffer_mb as i32) << 20,
        filter: a
            .bpf
            .clone()
            .or_else(|| cfg.capture.bpf.clone())
            .unwrap_or_else(|| live::DEFAULT_FILTER.to_string()),
    };
    // A typo in the filter is caught before any interface opens (and without privileges).
    if let Err(e) = live::check_filter(&lcfg.filter) {
        let first = a.interfaces.first().map(String::as_str).unwrap_or("capture");
        return usage(format!(
            "{first}: bad filter expression ({e}); fix --bpf (syntax in pcap-filter(7)), or pass --bpf \"\" to capture everything"
        ));
    }
    let mut opened = Vec::new();
    for iface in &a.interfaces {
        if a.interfaces.iter().filter(|x| *x == iface).count() > 1 {
            return usage(format!("{iface}: given twice; name each interface once"));
        }
        match live::open(iface, &lcfg) {
            Ok(o) => opened.push(o),
            Err(e) => return usage(e.to_string()),
        }
    }
    let signals = match Signals::register() {
        Ok(s) => s,
        Err(e) => {
            err(format!("cannot install signal handlers: {e}"));
            return ExitCode::from(3);
        }
    };
    let outs = match live_outputs(&a.common, &cfg, &signals.hup) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let stats_out: Option<Box<dyn Write>> = match &a.stats {
        Some(p) => match ReopeningFile::open(p, signals.hup.clone()) {
            Ok(f) => Some(Box::new(f)),
            Err(e) => return usage(format!("cannot open the stats output: {e}")),
        },
        None if a.stats_interval > 0 => Some(Box::new(io::stderr())),
        None => None,
    };
    if let Some(u) = &a.user {
        if let Err(e) = live::drop_privileges(u) {
            return usage(e);
        }
        // The spool gets new segment files while running: the user must be able to write.
        if cfg.kafka.brokers.is_some() && !writable(&cfg.kafka.spool_dir) {
            return usage(format!(
                "--user {u} cannot write the Kafka spool {}; give it the directory (chown) or pick another with --kafka-spool-dir",
                cfg.kafka.spool_dir.display()
            ));
        }
    }
    let progress = Arc::new(Progress::with_latency());
    let mut engine = match pipeline::Engine::start(&cfg, outs, progress.clone()) {
        Ok(e) => e,
        Err(e) => {
            err(e);
            return ExitCode::from(3);
        }
    };
    let every = (a.stats_interval > 0).then(|| std::time::Duration::from_secs(a.stats_interval));
    let reloader = reloader(&a.common, &cfg);
    let lrep = live::run(opened, &mut engine, &progress, &signals, every, stats_out, reloader);
    let report = match engine.finish(Vec::new()) {
        Ok(r) => r,
        Err(e) => {
            err(e);
            return ExitCode::from(3);
        }
    };
    let mut extra_text = String::new();
    for (name, c) in &lrep.ifaces {
        let l = |x: &std::sync::atomic::AtomicU64| x.load(std::sync::atomic::Ordering::Relaxed);
        extra_text.push_str(&format!(
            "live {name}: captured {}, kernel dropped {}, interface dropped {}, queue dropped {}\n",
            l(&c.captured),
            l(&c.pcap_dropped),
            l(&c.pcap_if_dropped),
            l(&c.queue_dropped_packets)
        ));
    }
    let extra_json = Some((
        "live",
        serde_json::json!({
            "sighup": lrep.hups,
            "reloads": lrep.reloads,
            "reload_failures": lrep.reload_failures,
            "stats_records": lrep.stats_records,
            "alert_latency": progress.latency_summary(),
            "errors": lrep.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        }),
    ));
    let runtime_errors = lrep.errors.iter().map(|e| e.to_string()).collect();
    finish(&a.common, &report, Ending { extra_text, extra_json, runtime_errors, ..Ending::default() })
}

/// Whether this process may create files in `dir`.
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access() reads a NUL-terminated path we own.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// What SIGHUP reads again: the configuration file and the `--reputation` feed, through
/// the same `config` as at start, so flags still win over the file. None when neither was
/// given (the lists then come from flags alone and cannot change).
fn reloader(c: &CommonArgs, running: &Config) -> Option<portent::capture::live::Reloader> {
    use portent::capture::live::Reloaded;
    let mut from = Vec::new();
    if let Some(p) = &c.config {
        from.push(p.display().to_string());
    }
    if let Some(p) = &c.reputation {
        from.push(format!("--reputation {}", p.display()));
    }
    if from.is_empty() {
        return None;
    }
    let source = from.join(" and ");
    let (common, running) = (c.clone(), running.clone());
    Some(Arc::new(move || {
        let new = config(&common)?;
        Ok(Reloaded {
            lists: new.lists(),
            source: source.clone(),
            restart_needed: running.differs_beyond_lists(&new),
        })
    }))
}

/// What a run adds to the common ending.
#[derive(Default)]
struct Ending {
    /// Lines after the summary (per-file or per-interface figures).
    extra_text: String,
    /// One more key in the JSON summary.
    extra_json: Option<(&'static str, serde_json::Value)>,
    /// Bad or cut inputs: exit 2.
    input_errors: Vec<String>,
    /// Failures while running: exit 3.
    runtime_errors: Vec<String>,
}

/// The end of every run: the summary (text unless --quiet, JSON when asked), the errors one
/// line each, and the exit code (0 clean, 1 alerts with --fail-on-alert, 2 input, 3 runtime).
fn finish(c: &CommonArgs, report: &RunReport, end: Ending) -> ExitCode {
    if !c.quiet {
        let text = summary::to_text(report) + &end.extra_text;
        let _ = io::stderr().write_all(text.as_bytes());
    }
    if let Some(p) = &c.summary_json {
        let mut j = summary::to_json(report);
        if let Some((k, v)) = end.extra_json {
            j[k] = v;
        }
        if let Err(e) = std::fs::write(p, j.to_string() + "\n") {
            err(format!("cannot write the summary to {}: {e}", p.display()));
            return ExitCode::from(3);
        }
    }
    let mut code = 0u8;
    for e in &end.input_errors {
        err(e);
        code = 2;
    }
    for e in &end.runtime_errors {
        err(e);
        code = 3;
    }
    for (name, e) in &report.output_errors {
        // A reader that hung up (`portent replay x.pcap | head -1`) is not a failure.
        if e.kind() == io::ErrorKind::BrokenPipe {
            continue;
        }
        err(format!("writing to {name} failed: {e}"));
        code = 3;
    }
    if code == 0 && c.fail_on_alert && report.alert_lines > 0 {
        code = 1;
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_turned_off_unless_asked_for() {
        let before = super::thp_prctl(false);
        super::small_pages();
        let after = super::thp_prctl(false);
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            assert_eq!(after, before, "MIMALLOC_ALLOW_THP set: the flag is left as it was");
        } else {
            assert_eq!(after, 1, "THP is off for the process");
        }
    }
}
