//! The TOML configuration file: every tunable of both detectors and of capture, named after
//! the detection strategies' mutable elements (TimeWindow, ResolverWhitelist, ...).
//!
//! A key that is absent keeps its default; command-line flags are applied afterwards and
//! win. Every error names the file, the line and the dotted key:
//! `site.toml:12: dns_calculation.connection_volume_threshold: must be at least 1`.
//! Values are read with their spans (`toml::Spanned`) so that range checks done after
//! parsing can still point at the line. Paths are relative to the file's directory.

use super::{CaptureSettings, Config};
use crate::detect::formula::Formula;
use crate::detect::reputation::DomainSet;
use crate::detect::tunnel::domain::SuffixSet;
use crate::net::CidrSet;
use crate::output::kafka::{
    check_brokers, check_topic, KafkaSettings, MAX_MEMORY_RECORDS, MIN_MEMORY_RECORDS,
};
use crate::NANOS_PER_SEC;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// Largest time setting, seconds: 30 days. Longer windows only grow tables without
/// changing what the rules mean.
const MAX_SECS: i64 = 30 * 86_400;
/// Largest table cap: 2^26 entries is already gigabytes for the bigger tables.
const MAX_CAP: i64 = 1 << 26;
/// Largest count or byte threshold; far beyond any real traffic in one window.
const MAX_COUNT: i64 = u32::MAX as i64;
/// Threads: the same bound `--threads` enforces.
const MAX_THREADS: i64 = 256;
/// Config files are hand-written; a bigger one is a mistake (or not a config file).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// A configuration that cannot be used, located as precisely as the file allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// The dotted key, e.g. `dns_calculation.time_window`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

type Item<T> = Option<Spanned<T>>;
type List = Item<Vec<Spanned<String>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Doc {
    general: Option<General>,
    dns_calculation: Option<Calc>,
    dns_tunneling: Option<Tunnel>,
    feeds: Option<Feeds>,
    capture: Option<Capture>,
    kafka: Option<Kafka>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct General {
    threads: Item<i64>,
    dns_timeout: Item<i64>,
    max_pending_queries: Item<i64>,
    max_tcp_streams: Item<i64>,
    tcp_idle: Item<i64>,
    batch_packets: Item<i64>,
    sensor_name: Item<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Calc {
    time_window: Item<i64>,
    ephemeral_port_range: Item<Vec<Spanned<i64>>>,
    excluded_ports: Item<Vec<Spanned<i64>>>,
    include_internal: Item<bool>,
    resolver_whitelist: List,
    ignore_whitelisted_resolvers: Item<bool>,
    management_plane_ips: List,
    process_allowlist: List,
    connection_volume_threshold: Item<i64>,
    calc_without_dns: Item<bool>,
    max_dedup: Item<i64>,
    cache_answers_per_client: Item<i64>,
    cache_max_clients: Item<i64>,
    formula: Option<Vec<Spanned<FormulaEntry>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormulaEntry {
    name: Spanned<String>,
    expr: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tunnel {
    window: Item<i64>,
    horizon: Item<i64>,
    long_name_span: Item<i64>,
    max_groups: Item<i64>,
    max_reputation_pairs: Item<i64>,
    public_suffix_list: Item<String>,
    daemon_allowlist: List,
    use_default_domain_allowlist: Item<bool>,
    domain_allowlist: List,
    score_threshold: Item<f64>,
    query_rate_per_client: Item<i64>,
    distinct_subdomains: Item<i64>,
    outbound_dns_volume: Item<i64>,
    inbound_dns_volume: Item<i64>,
    query_length_threshold: Item<i64>,
    label_length_threshold: Item<i64>,
    entropy_threshold: Item<f64>,
    encoded_share: Item<f64>,
    unusual_type_share: Item<f64>,
    nxdomain_share: Item<f64>,
    nxdomain_min_responses: Item<i64>,
    long_name_queries: Item<i64>,
    long_name_distinct: Item<i64>,
    txt_null_answers: Item<i64>,
    info_bytes: Item<i64>,
    single_query_length: Item<i64>,
    subdomain_entropy_score: Item<f64>,
    burst_queries: Item<i64>,
    burst_domains: Item<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Feeds {
    domain_reputation_feed: Item<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Capture {
    snaplen: Item<i64>,
    buffer_mb: Item<i64>,
    bpf: Item<String>,
    promisc: Item<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kafka {
    brokers: Item<String>,
    alerts_topic: Item<String>,
    dns_topic: Item<String>,
    spool_dir: Item<String>,
    spool_mb: Item<i64>,
    flush_timeout: Item<i64>,
    memory_records: Item<i64>,
}

/// The file being read: for turning spans into lines and relative paths into real ones.
struct Cx<'a> {
    file: &'a str,
    text: &'a str,
    dir: &'a Path,
}

impl Cx<'_> {
    fn line(&self, offset: usize) -> usize {
        let upto = self.text.as_bytes().get(..offset).unwrap_or(self.text.as_bytes());
        upto.iter().filter(|b| **b == b'\n').count() + 1
    }

    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: Some(self.line(span.start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn int(&self, v: &Spanned<i64>, key: &str, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        let x = *v.get_ref();
        if x < lo {
            Err(self.err(v.span(), key, format!("must be at least {lo}")))
        } else if x > hi {
            Err(self.err(v.span(), key, format!("must be at most {hi}")))
        } else {
            Ok(x)
        }
    }

    /// A count that fits `u32` (the detectors' counters), at least `lo`.
    fn count(&self, v: &Spanned<i64>, key: &str, lo: i64) -> Result<u32, ConfigError> {
        self.int(v, key, lo, MAX_COUNT).map(|x| x as u32)
    }

    fn cap(&self, v: &Spanned<i64>, key: &str) -> Result<usize, ConfigError> {
        self.int(v, key, 1, MAX_CAP).map(|x| x as usize)
    }

    /// Seconds in the file, packet-time nanoseconds in `Config`.
    fn secs(&self, v: &Spanned<i64>, key: &str) -> Result<u64, ConfigError> {
        self.int(v, key, 1, MAX_SECS).map(|x| x as u64 * NANOS_PER_SEC)
    }

    fn float(&self, v: &Spanned<f64>, key: &str, lo: f64, hi: f64) -> Result<f64, ConfigError> {
        let x = *v.get_ref();
        if x.is_nan() || x <= lo {
            Err(self.err(v.span(), key, format!("must be greater than {lo}")))
        } else if x > hi {
            Err(self.err(v.span(), key, format!("must be at most {hi}")))
        } else {
            Ok(x)
        }
    }

    fn cidrs(&self, v: &Spanned<Vec<Spanned<String>>>, key: &str) -> Result<CidrSet, ConfigError> {
        let mut out = CidrSet::default();
        for (i, s) in v.get_ref().iter().enumerate() {
            let c = s.get_ref().parse().map_err(|e: String| self.err(s.span(), &format!("{key}[{i}]"), e))?;
            out.0.push(c);
        }
        Ok(out)
    }

    fn path(&self, v: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        let p = Path::new(v.get_ref().as_str());
        if p.as_os_str().is_empty() {
            return Err(self.err(v.span(), key, "must not be empty"));
        }
        Ok(if p.is_absolute() { p.to_path_buf() } else { self.dir.join(p) })
    }
}

impl Config {
    /// Reads a configuration file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let fail = |message: String| ConfigError { file: file.clone(), line: None, key: None, message };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(fail(format!("larger than {} MiB; not a configuration file?", MAX_FILE_BYTES >> 20)));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, &file, dir)
    }

    /// Parses `text` (named `file` in errors); relative paths are taken from `dir`.
    pub fn from_toml(text: &str, file: &str, dir: &Path) -> Result<Config, ConfigError> {
        let cx = Cx { file, text, dir };
        let doc: Doc = toml::from_str(text).map_err(|e| toml_error(&cx, &e))?;
        let mut cfg = Config::default();
        if let Some(g) = &doc.general {
            general(&cx, g, &mut cfg)?;
        }
        if let Some(c) = &doc.dns_calculation {
            calc(&cx, c, &mut cfg)?;
        }
        if let Some(t) = &doc.dns_tunneling {
            tunnel(&cx, t, &mut cfg)?;
        }
        if let Some(v) = doc.feeds.as_ref().and_then(|f| f.domain_reputation_feed.as_ref()) {
            let key = "feeds.domain_reputation_feed";
            let p = cx.path(v, key)?;
            let set =
                DomainSet::load(&p).map_err(|e| cx.err(v.span(), key, format!("{}: {e}", p.display())))?;
            let set = Arc::new(set);
            cfg.calc.reputation = Some(set.clone());
            cfg.tunnel.reputation = Some(set);
        }
        if let Some(c) = &doc.capture {
            capture(&cx, c, &mut cfg.capture)?;
        }
        if let Some(k) = &doc.kafka {
            kafka(&cx, k, &mut cfg.kafka)?;
        }
        Ok(cfg)
    }
}

fn general(cx: &Cx, g: &General, cfg: &mut Config) -> Result<(), ConfigError> {
    if let Some(v) = &g.threads {
        // 0 keeps the default: one worker per core.
        let n = cx.int(v, "general.threads", 0, MAX_THREADS)?;
        if n > 0 {
            cfg.threads = n as usize;
        }
    }
    if let Some(v) = &g.dns_timeout {
        cfg.dns_timeout = cx.secs(v, "general.dns_timeout")?;
    }
    if let Some(v) = &g.max_pending_queries {
        cfg.max_pending_queries = cx.cap(v, "general.max_pending_queries")?;
    }
    if let Some(v) = &g.max_tcp_streams {
        cfg.max_tcp_streams = cx.cap(v, "general.max_tcp_streams")?;
    }
    if let Some(v) = &g.tcp_idle {
        cfg.tcp_idle = cx.secs(v, "general.tcp_idle")?;
    }
    if let Some(v) = &g.batch_packets {
        cfg.batch_packets = cx.int(v, "general.batch_packets", 1, 1 << 20)? as usize;
    }
    if let Some(v) = &g.sensor_name {
        cfg.sensor_name = sensor_name(v.get_ref()).map_err(|e| cx.err(v.span(), "general.sensor_name", e))?;
    }
    Ok(())
}

/// A sensor name: printable, without surrounding spaces, at most 255 bytes.
pub fn sensor_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 255 || t.chars().any(char::is_control) {
        return Err(format!("{s:?}: a sensor name is 1 to 255 printable characters"));
    }
    Ok(t.to_string())
}

/// Spool size bound, MiB: at least 1, at most 1 TiB.
pub const MAX_SPOOL_MB: i64 = 1 << 20;
/// Exit flush timeout, seconds: at most an hour.
pub const MAX_FLUSH_SECS: i64 = 3600;

fn kafka(cx: &Cx, k: &Kafka, out: &mut KafkaSettings) -> Result<(), ConfigError> {
    if let Some(v) = &k.brokers {
        let b = v.get_ref().trim();
        if b.is_empty() {
            out.brokers = None;
        } else {
            check_brokers(b).map_err(|e| cx.err(v.span(), "kafka.brokers", e))?;
            out.brokers = Some(b.to_string());
        }
    }
    if let Some(v) = &k.alerts_topic {
        check_topic(v.get_ref()).map_err(|e| cx.err(v.span(), "kafka.alerts_topic", e))?;
        out.alerts_topic = v.get_ref().clone();
    }
    if let Some(v) = &k.dns_topic {
        if v.get_ref().is_empty() {
            out.dns_topic = None;
        } else {
            check_topic(v.get_ref()).map_err(|e| cx.err(v.span(), "kafka.dns_topic", e))?;
            if *v.get_ref() == out.alerts_topic {
                return Err(cx.err(v.span(), "kafka.dns_topic", "must differ from alerts_topic"));
            }
            out.dns_topic = Some(v.get_ref().clone());
        }
    }
    if let Some(v) = &k.spool_dir {
        out.spool_dir = cx.path(v, "kafka.spool_dir")?;
    }
    if let Some(v) = &k.spool_mb {
        out.spool_mb = cx.int(v, "kafka.spool_mb", 1, MAX_SPOOL_MB)? as u64;
    }
    if let Some(v) = &k.flush_timeout {
        out.flush_timeout_secs = cx.int(v, "kafka.flush_timeout", 0, MAX_FLUSH_SECS)? as u64;
    }
    if let Some(v) = &k.memory_records {
        let (lo, hi) = (MIN_MEMORY_RECORDS as i64, MAX_MEMORY_RECORDS as i64);
        out.memory_records = cx.int(v, "kafka.memory_records", lo, hi)? as usize;
    }
    Ok(())
}

fn port(cx: &Cx, v: &Spanned<i64>, key: &str) -> Result<u16, ConfigError> {
    cx.int(v, key, 1, 65_535).map(|p| p as u16)
}

fn calc(cx: &Cx, c: &Calc, cfg: &mut Config) -> Result<(), ConfigError> {
    const S: &str = "dns_calculation";
    if let Some(v) = &c.time_window {
        let w = cx.secs(v, &format!("{S}.time_window"))?;
        cfg.cache.window = w;
        cfg.calc.window = w;
    }
    if let Some(v) = &c.ephemeral_port_range {
        let key = format!("{S}.ephemeral_port_range");
        let [lo, hi] = v.get_ref().as_slice() else {
            return Err(cx.err(v.span(), &key, "must be [LOW, HIGH], two ports"));
        };
        let (lo, hi) = (port(cx, lo, &key)?, port(cx, hi, &key)?);
        if lo > hi {
            return Err(cx.err(v.span(), &key, format!("the low port {lo} is above the high port {hi}")));
        }
        cfg.calc.port_range = lo..=hi;
    }
    if let Some(v) = &c.excluded_ports {
        let key = format!("{S}.excluded_ports");
        cfg.calc.excluded_ports = v.get_ref().iter().map(|p| port(cx, p, &key)).collect::<Result<_, _>>()?;
    }
    if let Some(v) = &c.include_internal {
        cfg.calc.include_internal = *v.get_ref();
    }
    if let Some(v) = &c.resolver_whitelist {
        cfg.calc.trusted_resolvers = cx.cidrs(v, &format!("{S}.resolver_whitelist"))?;
    }
    if let Some(v) = &c.ignore_whitelisted_resolvers {
        cfg.calc.ignore_trusted_resolvers = *v.get_ref();
    }
    if let Some(v) = &c.management_plane_ips {
        cfg.calc.management_ips = cx.cidrs(v, &format!("{S}.management_plane_ips"))?;
    }
    if let Some(v) = &c.process_allowlist {
        cfg.calc.client_allowlist = cx.cidrs(v, &format!("{S}.process_allowlist"))?;
    }
    if let Some(v) = &c.connection_volume_threshold {
        cfg.calc.volume_threshold = cx.count(v, &format!("{S}.connection_volume_threshold"), 1)?;
    }
    if let Some(v) = &c.calc_without_dns {
        cfg.calc.calc_without_dns = *v.get_ref();
    }
    if let Some(v) = &c.max_dedup {
        cfg.calc.max_dedup = cx.cap(v, &format!("{S}.max_dedup"))?;
    }
    if let Some(v) = &c.cache_answers_per_client {
        cfg.cache.max_per_client = cx.int(v, &format!("{S}.cache_answers_per_client"), 1, 4096)? as usize;
    }
    if let Some(v) = &c.cache_max_clients {
        cfg.cache.max_clients = cx.cap(v, &format!("{S}.cache_max_clients"))?;
    }
    if let Some(list) = &c.formula {
        // The file's list is the whole list: an operator may drop a built-in.
        let mut formulas: Vec<Formula> = Vec::new();
        for (i, f) in list.iter().enumerate() {
            let f = f.get_ref();
            let name = f.name.get_ref().trim();
            if name.is_empty() {
                return Err(cx.err(f.name.span(), &format!("{S}.formula[{i}].name"), "must not be empty"));
            }
            if formulas.iter().any(|x| x.name() == name) {
                let msg = format!("the name {name:?} is used twice");
                return Err(cx.err(f.name.span(), &format!("{S}.formula[{i}].name"), msg));
            }
            let parsed = Formula::parse(name, f.expr.get_ref()).map_err(|e| {
                // The span covers the quotes: the text starts one byte in.
                let at = f.expr.span().start.saturating_add(1).saturating_add(e.pos);
                cx.err(at..at, &format!("{S}.formula[{i}] ({name}).expr"), e.to_string())
            })?;
            formulas.push(parsed);
        }
        cfg.calc.formulas = formulas;
    }
    Ok(())
}

fn tunnel(cx: &Cx, t: &Tunnel, cfg: &mut Config) -> Result<(), ConfigError> {
    let k = |name: &str| format!("dns_tunneling.{name}");
    let c = &mut cfg.tunnel;
    if let Some(v) = &t.window {
        c.window = cx.secs(v, &k("window"))?;
    }
    if let Some(v) = &t.horizon {
        c.horizon = cx.secs(v, &k("horizon"))?;
    }
    if let Some(v) = &t.long_name_span {
        c.long_name_span = cx.secs(v, &k("long_name_span"))?;
    }
    if let Some(v) = &t.max_groups {
        c.max_groups = cx.cap(v, &k("max_groups"))?;
    }
    if let Some(v) = &t.max_reputation_pairs {
        c.max_reputation_pairs = cx.cap(v, &k("max_reputation_pairs"))?;
    }
    if let Some(v) = &t.public_suffix_list {
        let key = k("public_suffix_list");
        let p = cx.path(v, &key)?;
        // Read now so that a bad list fails `config check`, not the first packet.
        SuffixSet::load(&p).map_err(|e| cx.err(v.span(), &key, format!("{}: {e}", p.display())))?;
        c.psl_file = Some(p);
    }
    if let Some(v) = &t.daemon_allowlist {
        c.client_allowlist = cx.cidrs(v, &k("daemon_allowlist"))?;
    }
    if let Some(v) = &t.use_default_domain_allowlist {
        c.use_default_allowlist = *v.get_ref();
    }
    if let Some(v) = &t.domain_allowlist {
        c.domain_allowlist = v.get_ref().iter().map(|s| s.get_ref().clone()).collect();
    }
    if let Some(v) = &t.score_threshold {
        c.threshold = cx.float(v, &k("score_threshold"), 0.0, 1e6)?;
    }
    if let Some(v) = &t.query_rate_per_client {
        c.queries = cx.count(v, &k("query_rate_per_client"), 1)?;
    }
    if let Some(v) = &t.distinct_subdomains {
        c.distinct_subdomains = cx.count(v, &k("distinct_subdomains"), 1)?;
    }
    if let Some(v) = &t.outbound_dns_volume {
        c.bytes_up = cx.count(v, &k("outbound_dns_volume"), 1)?.into();
    }
    if let Some(v) = &t.inbound_dns_volume {
        c.bytes_down = cx.count(v, &k("inbound_dns_volume"), 1)?.into();
    }
    // RFC 1035: a name is at most 255 bytes, a label 63.
    if let Some(v) = &t.query_length_threshold {
        c.subdomain_len = cx.int(v, &k("query_length_threshold"), 1, 255)? as u32;
    }
    if let Some(v) = &t.label_length_threshold {
        c.label_len = cx.int(v, &k("label_length_threshold"), 1, 63)? as u32;
    }
    // Shannon entropy of bytes is at most 8 bits a byte.
    if let Some(v) = &t.entropy_threshold {
        c.entropy = cx.float(v, &k("entropy_threshold"), 0.0, 8.0)?;
    }
    if let Some(v) = &t.encoded_share {
        c.encoded_share = cx.float(v, &k("encoded_share"), 0.0, 1.0)?;
    }
    if let Some(v) = &t.unusual_type_share {
        c.unusual_type_share = cx.float(v, &k("unusual_type_share"), 0.0, 1.0)?;
    }
    if let Some(v) = &t.nxdomain_share {
        c.nxdomain_share = cx.float(v, &k("nxdomain_share"), 0.0, 1.0)?;
    }
    if let Some(v) = &t.nxdomain_min_responses {
        c.nxdomain_min_responses = cx.count(v, &k("nxdomain_min_responses"), 1)?;
    }
    if let Some(v) = &t.long_name_queries {
        c.long_name_queries = cx.count(v, &k("long_name_queries"), 1)?;
    }
    if let Some(v) = &t.long_name_distinct {
        c.long_name_distinct = cx.count(v, &k("long_name_distinct"), 1)?;
    }
    if let Some(v) = &t.txt_null_answers {
        c.txt_null_answers = cx.count(v, &k("txt_null_answers"), 1)?;
    }
    if let Some(v) = &t.info_bytes {
        c.info_bytes = cx.count(v, &k("info_bytes"), 1)?.into();
    }
    if let Some(v) = &t.single_query_length {
        c.single_query_len = cx.int(v, &k("single_query_length"), 1, 255)? as u32;
    }
    if let Some(v) = &t.subdomain_entropy_score {
        c.single_query_entropy = cx.float(v, &k("subdomain_entropy_score"), 0.0, 8.0)?;
    }
    if let Some(v) = &t.burst_queries {
        c.burst_queries = cx.count(v, &k("burst_queries"), 1)?;
    }
    if let Some(v) = &t.burst_domains {
        c.burst_domains = cx.count(v, &k("burst_domains"), 1)?;
    }
    Ok(())
}

fn capture(cx: &Cx, c: &Capture, out: &mut CaptureSettings) -> Result<(), ConfigError> {
    if let Some(v) = &c.snaplen {
        // Below 96 bytes not even the headers and a short DNS name fit.
        out.snaplen = cx.int(v, "capture.snaplen", 96, 262_144)? as u32;
    }
    if let Some(v) = &c.buffer_mb {
        out.buffer_mb = cx.int(v, "capture.buffer_mb", 1, 65_536)? as u32;
    }
    if let Some(v) = &c.bpf {
        let s = v.get_ref().trim();
        out.bpf = (!s.is_empty()).then(|| s.to_string());
    }
    if let Some(v) = &c.promisc {
        out.promisc = *v.get_ref();
    }
    Ok(())
}

/// A parse or type error from the toml crate, with the key found from the text around it:
/// the crate knows the key path but does not expose it.
fn toml_error(cx: &Cx, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    ConfigError {
        file: cx.file.to_string(),
        line: span.as_ref().map(|s| cx.line(s.start)),
        key: span.and_then(|s| key_at(cx.text, s.start)),
        message: e.message().trim().to_string(),
    }
}

/// The dotted key whose line holds `offset`: the nearest `key =` at or above it, under the
/// nearest table header above that. A header itself gives the header's name.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_no = before.matches('\n').count();
    let mut key: Option<String> = None;
    for (i, line) in text.lines().take(line_no + 1).collect::<Vec<_>>().into_iter().enumerate().rev() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            let header = l.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string();
            return Some(match key {
                Some(k) => format!("{header}.{k}"),
                None if i == line_no => header,
                None => return Some(header),
            });
        }
        if key.is_none() {
            if let Some((k, _)) = l.split_once('=') {
                key = Some(k.trim().trim_matches('"').to_string());
            }
        }
    }
    key
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The whole default configuration, every key with a comment: `portent config default`.
/// Parsing it gives `Config::default()` (a test checks every field).
pub fn default_file() -> String {
    let d = Config::default();
    let (c, t, cap) = (&d.calc, &d.tunnel, &d.capture);
    let s = |n: u64| n / NANOS_PER_SEC;
    let cidrs = |set: &CidrSet| list(&set.0.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    let ports: Vec<String> = c.excluded_ports.iter().map(|p| p.to_string()).collect();
    let formulas: String = c
        .formulas
        .iter()
        .map(|f| {
            format!(
                "\n[[dns_calculation.formula]]\n# Reported in alerts as portent.formula.\nname = {:?}\n\
                 # The destination port it predicts.\nexpr = {:?}\n",
                f.name(),
                f.text()
            )
        })
        .collect();
    format!(
        r#"# portent configuration. Every key is optional: an absent key keeps the default shown
# here. Command-line flags override the file. Times are in seconds; relative paths are
# taken from this file's directory.

[general]
# Decoder worker threads; 0 means one per core. Output is the same for any number while
# no state table reaches its cap (the summary counts evictions).
threads = 0
# How long a query waits for its response before it is logged unanswered (Zeek: 10 s).
dns_timeout = {dns_timeout}
# Pending queries kept (for the sensor: each worker holds an equal share).
max_pending_queries = {pending}
# DNS-over-TCP streams tracked (for the sensor, shared out like every cap here).
max_tcp_streams = {streams}
# Idle seconds after which a DNS-over-TCP stream is forgotten.
tcp_idle = {tcp_idle}
# Packets per batch handed from the reader to the workers.
batch_packets = {batch}
# observer.name on every record and part of every alert's event.id: this sensor's name in
# a fleet. Default: the host name.
# sensor_name = "span-01"

[dns_calculation]
# TimeWindow: how long a DNS answer stays usable for the rule, seconds.
time_window = {window}
# PortDeviationThreshold / EphemeralPortRange: only destination ports in [LOW, HIGH] are
# checked (skips the well-known ports and the IANA dynamic range).
ephemeral_port_range = [{plo}, {phi}]
# Destination ports never flagged (proxies, Elasticsearch, git, MongoDB...).
excluded_ports = [{ports}]
# Also flag private, loopback and link-local destinations (internal-threat hunting).
include_internal = {internal}
# ResolverWhitelist: your own resolvers, as CIDRs.
resolver_whitelist = {resolvers}
# Ignore answers from resolver_whitelist for this rule (the cache still holds them).
ignore_whitelisted_resolvers = {ignore}
# ManagementPlaneIPs: never flagged, as client or as destination.
management_plane_ips = {mgmt}
# ProcessAllowlist: clients (CIDRs) never flagged by this rule.
process_allowlist = {clients}
# ConnectionVolumeThreshold: matching SYNs from one client to one address and port within
# the window before an alert (at least 1).
connection_volume_threshold = {volume}
# Also try the formulas on the destination itself when the client resolved nothing in the
# window (Elastic's behaviour; rule dns_calculation_no_dns).
calc_without_dns = {nodns}
# Deduplication entries kept (for the sensor, split across the workers).
max_dedup = {dedup}
# Answers kept per client in the answer cache.
cache_answers_per_client = {per_client}
# Clients kept in the answer cache (for the sensor, split across the workers; past its
# share a worker drops its expired clients, then its least recently answered tenth).
cache_max_clients = {max_clients}
# Formulas over the octets o1..o4 of a resolved IPv4 address, tried in order; operators
# + - * / % << >> & ^ | ~ and parentheses. This list replaces the built-in one.
{formulas}
[dns_tunneling]
# Short window, seconds, per client and registered domain. It slides in halves: the
# counters scored always cover between half a window and a whole one, ending now.
window = {t_window}
# Long horizon for the information estimate, seconds (Paxson et al.: a day).
horizon = {horizon}
# Span of the Elastic long-name rule, seconds.
long_name_span = {span}
# (client, registered domain) groups tracked, least recently seen evicted; for the sensor,
# split across the workers. About 400 bytes each, plus long names and filters.
max_groups = {groups}
# (client, listed domain) pairs remembered to de-duplicate reputation alerts (for the
# sensor, split across the workers).
max_reputation_pairs = {pairs}
# A newer public_suffix_list.dat to use instead of the compiled-in list.
# public_suffix_list = "/usr/share/publicsuffix/public_suffix_list.dat"
# DaemonAllowList: clients (CIDRs) never scored for tunneling or bursts: resolvers,
# management hosts.
daemon_allowlist = {daemons}
# Use the shipped domain allowlist (reverse DNS, DNSBLs, AV look-ups, DKIM, DNS-SD).
use_default_domain_allowlist = {use_default}
# More registered domains whose encoded-looking names are legitimate.
domain_allowlist = {domains}
# Alert when the score reaches this.
score_threshold = {threshold:?}
# QueryRatePerClient: queries per window from one client to one registered domain.
query_rate_per_client = {queries}
# New distinct subdomains per window.
distinct_subdomains = {distinct}
# OutboundDNSVolume: query-name bytes per window.
outbound_dns_volume = {up}
# Answer RDATA bytes per window.
inbound_dns_volume = {down}
# QueryLengthThreshold: longest subdomain, bytes (Elastic: 50).
query_length_threshold = {sublen}
# Longest label, bytes (tunnels fill labels towards 63).
label_length_threshold = {label}
# EntropyThreshold: mean Shannon entropy of subdomains, bits a byte (host names 2.5-3.2).
entropy_threshold = {entropy:?}
# Share of names that fit an encoded alphabet (hex, base32, base64).
encoded_share = {encoded:?}
# Share of TXT, NULL, CNAME, MX, ANY, SRV and private-type queries.
unusual_type_share = {unusual:?}
# NXDOMAIN share of responses, counted from nxdomain_min_responses responses on.
nxdomain_share = {nx:?}
nxdomain_min_responses = {nx_min}
# Elastic long-name rule: queries and distinct names with a long subdomain in the span.
long_name_queries = {lnq}
long_name_distinct = {lnd}
# Sigma: TXT or NULL answers a minute.
txt_null_answers = {txt}
# Paxson et al.: information bytes per client and domain over the horizon.
info_bytes = {info}
# One query is enough when its subdomain is this long, encoded and at least
# subdomain_entropy_score (SubdomainEntropyScore, bits a byte) entropic.
single_query_length = {sq_len}
subdomain_entropy_score = {sq_entropy:?}
# dns_query_burst: queries per window from one client, and registered domains among them.
burst_queries = {burst_q}
burst_domains = {burst_d}

[feeds]
# DomainReputationFeed: known-bad domains, one a line (# comments), used by both detectors.
# domain_reputation_feed = "feeds/bad-domains.txt"

[capture]
# Bytes kept of each packet (live capture only).
snaplen = {snaplen}
# Kernel capture buffer, MiB.
buffer_mb = {buffer}
# BPF filter; empty keeps live's default (DNS, TCP SYNs, fragments).
bpf = {bpf:?}
# Promiscuous mode (a SPAN or TAP port needs it).
promisc = {promisc}

[kafka]
# Bootstrap brokers, HOST:PORT[,HOST:PORT...]; empty: no Kafka output. Records are the same
# NDJSON as the files, keyed by the client's address.
brokers = ""
# Topic for alerts (every alert has an event.id for de-duplication).
alerts_topic = {alerts_topic:?}
# Topic for DNS transaction records; empty: none sent.
dns_topic = ""
# Where records wait while the broker is unreachable or slow (one directory per sensor).
spool_dir = {spool_dir:?}
# Most the spool holds, MiB; when full, the oldest DNS records go first, alerts last.
spool_mb = {spool_mb}
# At exit, seconds spent delivering before the rest is left in the spool for next time.
flush_timeout = {flush_timeout}
# Records held in memory on the way to the broker (the sensor's queue, and as many in the
# Kafka client); past that they go to the spool. Smaller loses less to a crash during an
# outage and writes more to disk.
memory_records = {memory_records}
"#,
        dns_timeout = s(d.dns_timeout),
        pending = d.max_pending_queries,
        streams = d.max_tcp_streams,
        tcp_idle = s(d.tcp_idle),
        batch = d.batch_packets,
        window = s(c.window),
        plo = c.port_range.start(),
        phi = c.port_range.end(),
        ports = ports.join(", "),
        internal = c.include_internal,
        resolvers = cidrs(&c.trusted_resolvers),
        ignore = c.ignore_trusted_resolvers,
        mgmt = cidrs(&c.management_ips),
        clients = cidrs(&c.client_allowlist),
        volume = c.volume_threshold,
        nodns = c.calc_without_dns,
        dedup = c.max_dedup,
        per_client = d.cache.max_per_client,
        max_clients = d.cache.max_clients,
        t_window = s(t.window),
        horizon = s(t.horizon),
        span = s(t.long_name_span),
        groups = t.max_groups,
        pairs = t.max_reputation_pairs,
        daemons = cidrs(&t.client_allowlist),
        use_default = t.use_default_allowlist,
        domains = list(&t.domain_allowlist),
        threshold = t.threshold,
        queries = t.queries,
        distinct = t.distinct_subdomains,
        up = t.bytes_up,
        down = t.bytes_down,
        sublen = t.subdomain_len,
        label = t.label_len,
        entropy = t.entropy,
        encoded = t.encoded_share,
        unusual = t.unusual_type_share,
        nx = t.nxdomain_share,
        nx_min = t.nxdomain_min_responses,
        lnq = t.long_name_queries,
        lnd = t.long_name_distinct,
        txt = t.txt_null_answers,
        info = t.info_bytes,
        sq_len = t.single_query_len,
        sq_entropy = t.single_query_entropy,
        burst_q = t.burst_queries,
        burst_d = t.burst_domains,
        snaplen = cap.snaplen,
        buffer = cap.buffer_mb,
        bpf = cap.bpf.as_deref().unwrap_or(""),
        promisc = cap.promisc,
        alerts_topic = d.kafka.alerts_topic,
        spool_dir = d.kafka.spool_dir.display().to_string(),
        spool_mb = d.kafka.spool_mb,
        flush_timeout = d.kafka.flush_timeout_secs,
        memory_records = d.kafka.memory_records,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "site.toml", Path::new("/etc/portent"))
    }

    fn err(text: &str) -> String {
        parse(text).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn default_file_round_trips() {
        let cfg = parse(&default_file()).unwrap();
        // Debug prints every field of every nested config.
        assert_eq!(format!("{cfg:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn values_land_in_the_config() {
        let cfg = parse(
            "[general]\nthreads = 3\n[dns_calculation]\ntime_window = 60\nephemeral_port_range = [1024, 60000]\n\
             excluded_ports = []\nresolver_whitelist = [\"10.0.0.53\"]\nprocess_allowlist = [\"10.9.0.0/16\"]\n\
             connection_volume_threshold = 3\n[[dns_calculation.formula]]\nname = \"xor\"\nexpr = \"(o1^o2)*o3\"\n\
             [dns_tunneling]\nquery_length_threshold = 40\nentropy_threshold = 4\ndaemon_allowlist = [\"fd00::/8\"]\n\
             [capture]\nbpf = \"udp port 53\"\npromisc = false\n",
        )
        .unwrap();
        assert_eq!(cfg.threads, 3);
        assert_eq!(cfg.cache.window, 60 * NANOS_PER_SEC);
        assert_eq!(cfg.calc.window, 60 * NANOS_PER_SEC);
        assert_eq!(cfg.calc.port_range, 1024..=60000);
        assert!(cfg.calc.excluded_ports.is_empty());
        assert!(cfg.calc.trusted_resolvers.contains("10.0.0.53".parse().unwrap()));
        assert!(cfg.calc.client_allowlist.contains("10.9.3.4".parse().unwrap()));
        assert_eq!(cfg.calc.volume_threshold, 3);
        assert_eq!(cfg.calc.formulas.len(), 1);
        assert_eq!(cfg.calc.formulas[0].eval([1, 2, 3, 4]), Some(9));
        assert_eq!(cfg.tunnel.subdomain_len, 40);
        assert_eq!(cfg.tunnel.entropy, 4.0);
        assert!(cfg.tunnel.client_allowlist.contains("fd12::1".parse().unwrap()));
        assert_eq!(cfg.capture.bpf.as_deref(), Some("udp port 53"));
        assert!(!cfg.capture.promisc);
        // Untouched keys keep their defaults.
        assert_eq!(cfg.tunnel.queries, 30);
    }

    #[test]
    fn kafka_and_sensor_name_land_in_the_config() {
        let cfg = parse(
            "[general]\nsensor_name = \"span-07\"\n[kafka]\nbrokers = \"k1:9092,k2:9092\"\nalerts_topic = \"a\"\n\
             dns_topic = \"d\"\nspool_dir = \"spool\"\nspool_mb = 5\nflush_timeout = 3\nmemory_records = 100\n",
        )
        .unwrap();
        assert_eq!(cfg.sensor_name, "span-07");
        let k = &cfg.kafka;
        assert_eq!(k.brokers.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!((k.alerts_topic.as_str(), k.dns_topic.as_deref()), ("a", Some("d")));
        assert_eq!(k.spool_dir, Path::new("/etc/portent/spool"));
        assert_eq!((k.spool_mb, k.flush_timeout_secs, k.memory_records), (5, 3, 100));
        // Empty strings switch off, as in the default file.
        let cfg = parse("[kafka]\nbrokers = \"\"\ndns_topic = \"\"\n").unwrap();
        assert_eq!((cfg.kafka.brokers, cfg.kafka.dns_topic), (None, None));
        assert_eq!(
            err("[kafka]\nbrokers = \"k1\"\n"),
            "site.toml:2: kafka.brokers: \"k1\": expected HOST:PORT, e.g. kafka1:9092"
        );
        let e = err("[kafka]\n\nalerts_topic = \"bad topic\"\n");
        assert!(e.starts_with("site.toml:3: kafka.alerts_topic: "), "{e}");
        let e = err("[kafka]\ndns_topic = \"portent-alerts\"\n");
        assert_eq!(e, "site.toml:2: kafka.dns_topic: must differ from alerts_topic");
        assert_eq!(err("[kafka]\nspool_mb = 0\n"), "site.toml:2: kafka.spool_mb: must be at least 1");
        let e = err("[general]\nsensor_name = \"  \"\n");
        assert!(e.starts_with("site.toml:2: general.sensor_name: "), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            err("[dns_calculation]\n\nconnection_volume_threshold = 0\n"),
            "site.toml:3: dns_calculation.connection_volume_threshold: must be at least 1"
        );
        let e = err("[dns_tunneling]\nwindow = 60\nquery_lenght_threshold = 5\n");
        assert!(e.starts_with("site.toml:3: dns_tunneling.query_lenght_threshold: unknown field"), "{e}");
        let e = err("[dns_calculation]\ntime_window = \"5m\"\n");
        assert!(e.starts_with("site.toml:2: dns_calculation.time_window: invalid type"), "{e}");
        let e = err("[dns_calculation]\nprocess_allowlist = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/99\",\n]\n");
        assert!(e.starts_with("site.toml:4: dns_calculation.process_allowlist[1]: '10.0.0.0/99'"), "{e}");
        let e = err("[[dns_calculation.formula]]\nname = \"bad\"\nexpr = \"o1 * * o2\"\n");
        assert!(e.starts_with("site.toml:3: dns_calculation.formula[0] (bad).expr: at column 6"), "{e}");
        let e = err("[dns_calculation]\nephemeral_port_range = [5000, 4000]\n");
        assert!(e.starts_with("site.toml:2: dns_calculation.ephemeral_port_range: the low port"), "{e}");
        let e = err("[dns_tunneling]\nentropy_threshold = 9.5\n");
        assert_eq!(e, "site.toml:2: dns_tunneling.entropy_threshold: must be at most 8");
        let e = err("[nonsense]\n");
        assert!(e.starts_with("site.toml:1: nonsense: unknown field"), "{e}");
        let e = err("[feeds]\ndomain_reputation_feed = \"missing-feed.txt\"\n");
        assert!(
            e.starts_with("site.toml:2: feeds.domain_reputation_feed: /etc/portent/missing-feed.txt:"),
            "{e}"
        );
        let e = err("[general\n");
        assert!(e.starts_with("site.toml:1: "), "{e}");
    }
}
