//! Resolved settings for every stage, built by the CLI from a TOML file (`file`) and then
//! flags, which override it.

mod file;

pub use file::{default_file, sensor_name, ConfigError, MAX_FLUSH_SECS, MAX_SPOOL_MB};

use crate::cache::CacheConfig;
use crate::detect::calc::CalcConfig;
use crate::detect::lists::Lists;
use crate::detect::tunnel::TunnelConfig;
use crate::output::kafka::KafkaSettings;
use crate::Nanos;

#[derive(Clone, Debug)]
pub struct Config {
    /// Decoder workers; a client's packets always go to the same one.
    pub threads: usize,
    pub cache: CacheConfig,
    pub calc: CalcConfig,
    pub tunnel: TunnelConfig,
    /// How long a query waits for its response before it is logged unanswered (Zeek: 10 s).
    pub dns_timeout: Nanos,
    /// Pending queries kept, for the sensor: each worker gets an equal share.
    pub max_pending_queries: usize,
    /// DNS-over-TCP streams tracked, for the sensor: each worker gets an equal share.
    pub max_tcp_streams: usize,
    /// Idle time after which a DNS-over-TCP stream is forgotten.
    pub tcp_idle: Nanos,
    /// Build DNS transaction records (only when a DNS log is wanted).
    pub dns_log: bool,
    /// Packets per batch handed from the reader to the workers. Fixed, not derived from
    /// `threads`, so that output is the same for any thread count.
    pub batch_packets: usize,
    /// `event.module` on alerts: "portent" for packets; the log source (zeek, suricata)
    /// when the input is NSM logs.
    pub event_module: Option<String>,
    /// Live capture settings (`[capture]`); replay ignores them.
    pub capture: CaptureSettings,
    /// `observer.name` on every record, and part of every alert's `event.id`: the sensor's
    /// name in a fleet (default: the host name).
    pub sensor_name: String,
    /// Alerts and DNS records to Kafka (`[kafka]`).
    pub kafka: KafkaSettings,
}

/// The host's name, for the default sensor name; "portent" when it cannot be read.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(buf.get(..end).unwrap_or(&[])) {
        Ok(s) if rc == 0 && !s.is_empty() => s.to_string(),
        _ => "portent".to_string(),
    }
}

/// What `live` asks of the capture library. Stored here so that a file can set them; the
/// replay path never reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Bytes kept of each packet: a whole frame, with EDNS answers and VLAN tags (the
    /// same default as `live --snaplen`).
    pub snaplen: u32,
    /// Kernel ring buffer, MiB: a burst is absorbed here while the reader catches up.
    pub buffer_mb: u32,
    /// A BPF filter expression; None leaves `live` its own default filter.
    pub bpf: Option<String>,
    /// Put the interface in promiscuous mode (a SPAN or TAP port needs it).
    pub promisc: bool,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings { snaplen: 65_535, buffer_mb: 64, bpf: None, promisc: true }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            cache: CacheConfig::default(),
            calc: CalcConfig::default(),
            tunnel: TunnelConfig::default(),
            dns_timeout: 10 * crate::NANOS_PER_SEC,
            max_pending_queries: 65_536,
            max_tcp_streams: 16_384,
            tcp_idle: 60 * crate::NANOS_PER_SEC,
            dns_log: false,
            batch_packets: 4096,
            event_module: None,
            capture: CaptureSettings::default(),
            sensor_name: host_name(),
            kafka: KafkaSettings::default(),
        }
    }
}

impl Config {
    /// The feeds and allowlists, the part a running sensor reloads on SIGHUP.
    pub fn lists(&self) -> Lists {
        Lists::of(&self.calc, &self.tunnel)
    }

    /// Whether `new` differs from `self` in anything but the feeds and allowlists: those
    /// changes (windows, thresholds, caps, threads, capture) wait for a restart.
    pub fn differs_beyond_lists(&self, new: &Config) -> bool {
        let mut same_lists = new.clone();
        let mine = self.lists();
        mine.apply_calc(&mut same_lists.calc);
        mine.apply_tunnel(&mut same_lists.tunnel);
        // Debug prints every field of every nested config (the reputation feed is the same
        // Arc on both sides now, so its set order cannot differ).
        format!("{same_lists:?}") != format!("{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::reputation::DomainSet;
    use std::sync::Arc;

    #[test]
    fn only_changes_beyond_the_lists_need_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.calc.management_ips = crate::net::CidrSet::parse_list(&["10.0.0.1"]).unwrap();
        new.tunnel.domain_allowlist.push("corp.example".into());
        let feed = Arc::new(DomainSet::parse("bad.example\n"));
        new.calc.reputation = Some(feed.clone());
        new.tunnel.reputation = Some(feed);
        assert!(!old.differs_beyond_lists(&new));
        new.tunnel.queries += 1;
        assert!(old.differs_beyond_lists(&new));
    }
}
