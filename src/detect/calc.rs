//! DNS Calculation (ATT&CK T1568.003): a SYN whose destination port is a formula of an
//! address the client was just given.
//!
//! On each SYN from client C to (D, P) the detector reads the answers C received within the
//! window (`AnswerCache::scan`, oldest first) and, for every IPv4 answer A and every
//! enabled formula F (config order), flags F(A) == P. This is the behaviour of APT12's
//! backdoors (FireEye, 2014: port = o1*o2 + o3 of the resolved C2 address), MITRE's DET0262,
//! and Elastic's "Connection to Commonly Abused Port via DNS Calculation" rule.
//!
//! Two outcomes per match, both reported: D is A itself (the documented behaviour,
//! `portent.destination_is_answer` true) or D is another address (the address may be
//! calculated too; false, lower severity). With `calc_without_dns` the formulas also run
//! over D itself when C has no answer cached at all, which is what the Elastic rule does
//! (rule `dns_calculation_no_dns`, lowest severity).
//!
//! Severity, on ECS's 0..=100 scale:
//! - 73: D is the resolved address (`severity::ANSWER`);
//! - 47: D is another address (`severity::OTHER_DESTINATION`);
//! - 21: no DNS answer at all, formula over D (`severity::NO_DNS`);
//! - +20, capped at 99, when the answer's name or a CNAME in its chain is on the
//!   DomainReputationFeed.
//!
//! Repeats: one alert per (client, destination, resolved address, port, formula) per window,
//! counted from the first matching SYN; retransmissions and reconnects only bump the count.
//! Only SYNs that matched make state, so a SYN flood of non-matching packets grows nothing.

use crate::cache::{AnswerCache, CachedAnswer};
use crate::detect::formula::Formula;
use crate::detect::reputation::DomainSet;
use crate::detect::{alert_base, Alert, Syn};
use crate::net::{is_internal, CidrSet};
use crate::output::doc::Field;
use crate::output::num;
use crate::Nanos;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::sync::Arc;

pub const RULE: &str = "dns_calculation";
pub const RULE_NO_DNS: &str = "dns_calculation_no_dns";

/// Alert severities; see the module documentation for the reasoning.
pub mod severity {
    /// The client connected to the address it was given, on the port the formula makes of
    /// it: exactly APT12's pattern.
    pub const ANSWER: u8 = 73;
    /// The port fits a recent answer but the destination differs: the address may be
    /// calculated too, or the port a coincidence.
    pub const OTHER_DESTINATION: u8 = 47;
    /// No DNS at all, formula over the destination: Elastic's rule, noisy by nature.
    pub const NO_DNS: u8 = 21;
    /// Added when the name is on the DomainReputationFeed.
    pub const REPUTATION_BONUS: u8 = 20;
    pub const MAX: u8 = 99;
}

/// The ports that server software commonly listens on inside the formula range and that
/// would otherwise match by coincidence (web proxies and alternates, Elasticsearch, git,
/// MongoDB), after the Elastic rule's exclusions.
pub const DEFAULT_EXCLUDED_PORTS: [u16; 11] =
    [8080, 8443, 8000, 8888, 9090, 9200, 9300, 9418, 27017, 27018, 28017];

#[derive(Clone, Debug)]
pub struct CalcConfig {
    /// Enabled formulas, tried in this order for each answer.
    pub formulas: Vec<Formula>,
    /// TimeWindow: how old an answer may be, and how long a deduplication entry lives.
    /// Answers are also limited by the cache's own window; the smaller one wins.
    pub window: Nanos,
    /// PortDeviationThreshold / EphemeralPortRange: only these destination ports are
    /// checked. The default skips the well-known ports below 4096 and the IANA dynamic
    /// range above 49151.
    pub port_range: RangeInclusive<u16>,
    /// Destination ports never flagged.
    pub excluded_ports: Vec<u16>,
    /// Flag internal destinations (`crate::net::is_internal`) too: internal-threat hunting.
    pub include_internal: bool,
    /// ResolverWhitelist.
    pub trusted_resolvers: CidrSet,
    /// Ignore answers from `trusted_resolvers` for this rule (the cache still holds them).
    pub ignore_trusted_resolvers: bool,
    /// ManagementPlaneIPs: never flagged, as client or as destination.
    pub management_ips: CidrSet,
    /// Clients never flagged.
    pub client_allowlist: CidrSet,
    /// ConnectionVolumeThreshold: matching SYNs from one client to one (address, port)
    /// within the window before an alert. 0 behaves as 1.
    pub volume_threshold: u32,
    /// DomainReputationFeed.
    pub reputation: Option<Arc<DomainSet>>,
    /// Also run the formulas over the destination when the client has no answer at all in
    /// the window (from any resolver, trusted or not).
    pub calc_without_dns: bool,
    /// Most deduplication entries kept; past it, expired ones go, then the oldest tenth.
    pub max_dedup: usize,
}

impl Default for CalcConfig {
    fn default() -> Self {
        CalcConfig {
            formulas: vec![Formula::apt12(), Formula::apt12_variant()],
            window: 300 * crate::NANOS_PER_SEC,
            port_range: 4096..=49151,
            excluded_ports: DEFAULT_EXCLUDED_PORTS.to_vec(),
            include_internal: false,
            trusted_resolvers: CidrSet::default(),
            ignore_trusted_resolvers: false,
            management_ips: CidrSet::default(),
            client_allowlist: CidrSet::default(),
            volume_threshold: 1,
            reputation: None,
            calc_without_dns: false,
            // 64 Ki entries of ~100 bytes: a few MB per worker, far above what real
            // matches produce (every entry needs a SYN that fits a formula).
            max_dedup: 65_536,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CalcStats {
    pub syns: u64,
    /// Client on the allowlist or a management IP.
    pub filtered_client: u64,
    pub filtered_port_range: u64,
    pub filtered_port_excluded: u64,
    pub filtered_dest_management: u64,
    pub filtered_dest_internal: u64,
    /// SYNs that passed the filters but whose client had no answer in the window.
    pub no_answer: u64,
    /// Answers skipped because a trusted resolver gave them (`ignore_trusted_resolvers`).
    pub trusted_answers_ignored: u64,
    /// (SYN, answer, formula) triples where the formula gave the port.
    pub matches: u64,
    pub alerts: u64,
    pub alerts_no_dns: u64,
    /// Matching SYNs that did not alert: repeats of an alerted key, or below the volume
    /// threshold.
    pub suppressed: u64,
    pub dedup_entries: u64,
    /// Entries pushed out by `max_dedup` before their window ended.
    pub dedup_evictions: u64,
    /// Entries that left because their window ended.
    pub dedup_expired: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DedupKey {
    client: IpAddr,
    dst: IpAddr,
    /// The address the formula ran over (the destination itself for `no_dns`).
    resolved: Ipv4Addr,
    port: u16,
    formula: usize,
    no_dns: bool,
}

#[derive(Clone, Copy, Debug)]
struct DedupEntry {
    /// Packet time of the first matching SYN; the window runs from here.
    first: Nanos,
    count: u32,
    alerted: bool,
    /// The SYN that last counted here, so that two cached answers with the same address
    /// (two names) count one SYN once.
    syn_seq: u64,
}

pub struct CalcDetector {
    cfg: CalcConfig,
    dedup: HashMap<DedupKey, DedupEntry, crate::FastRandom>,
    /// No entry's window started before this (`Nanos::MAX` when there is none), so `expire`
    /// knows without a walk when nothing can have ended: the pipeline calls it after every
    /// batch, and walking ten thousand entries each time was 1.4% of a replay.
    oldest_first: Nanos,
    stats: CalcStats,
    syn_seq: u64,
    /// Matches of the current SYN, reused so that the hot path does not allocate.
    scratch: Vec<(CachedAnswer, usize)>,
}

impl CalcDetector {
    pub fn new(cfg: CalcConfig) -> Self {
        CalcDetector {
            cfg,
            dedup: HashMap::default(),
            oldest_first: Nanos::MAX,
            stats: CalcStats::default(),
            syn_seq: 0,
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &CalcConfig {
        &self.cfg
    }

    /// Takes new feeds and allowlists (SIGHUP); the de-duplication entries stay, so an
    /// alerted key stays quiet for the rest of its window.
    pub fn set_lists(&mut self, lists: &crate::detect::lists::Lists) {
        lists.apply_calc(&mut self.cfg);
    }

    /// Checks one SYN (SYN set, ACK clear) against the answers its client was given.
    pub fn on_syn(&mut self, syn: &Syn, cache: &AnswerCache, out: &mut Vec<Alert>) {
        self.stats.syns += 1;
        self.syn_seq += 1;
        let cfg = &self.cfg;
        if cfg.management_ips.contains(syn.src) || cfg.client_allowlist.contains(syn.src) {
            self.stats.filtered_client += 1;
            return;
        }
        if !cfg.port_range.contains(&syn.dport) {
            self.stats.filtered_port_range += 1;
            return;
        }
        if cfg.excluded_ports.contains(&syn.dport) {
            self.stats.filtered_port_excluded += 1;
            return;
        }
        if cfg.management_ips.contains(syn.dst) {
            self.stats.filtered_dest_management += 1;
            return;
        }
        if !cfg.include_internal && is_internal(syn.dst) {
            self.stats.filtered_dest_internal += 1;
            return;
        }

        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let mut in_window = 0u64;
        let mut trusted = 0u64;
        cache.scan(syn.src, syn.ts, |a| {
            if syn.ts.saturating_sub(a.ts) > cfg.window {
                return;
            }
            in_window += 1;
            if cfg.ignore_trusted_resolvers && cfg.trusted_resolvers.contains(a.answer().resolver) {
                trusted += 1;
                return;
            }
            let Some(v4) = a.v4 else { return };
            let octets = v4.octets();
            for (i, f) in cfg.formulas.iter().enumerate() {
                if f.eval(octets) == Some(syn.dport) {
                    scratch.push((a.answer().to_answer(), i));
                }
            }
        });
        self.stats.trusted_answers_ignored += trusted;

        if in_window == 0 {
            self.stats.no_answer += 1;
            if self.cfg.calc_without_dns {
                self.without_dns(syn, out);
            }
        }
        for (answer, fi) in scratch.drain(..) {
            let IpAddr::V4(resolved) = answer.addr else {
                continue;
            };
            self.stats.matches += 1;
            let key = DedupKey {
                client: syn.src,
                dst: syn.dst,
                resolved,
                port: syn.dport,
                formula: fi,
                no_dns: false,
            };
            if let Some(count) = self.count(key, syn.ts) {
                if let Some(f) = self.cfg.formulas.get(fi) {
                    out.push(answer_alert(&self.cfg, syn, &answer, resolved, f, count));
                    self.stats.alerts += 1;
                }
            }
        }
        self.scratch = scratch;
    }

    /// The Elastic rule's reading: the formula over the destination address itself.
    fn without_dns(&mut self, syn: &Syn, out: &mut Vec<Alert>) {
        let IpAddr::V4(dst) = syn.dst else { return };
        for fi in 0..self.cfg.formulas.len() {
            let hit = self.cfg.formulas.get(fi).is_some_and(|f| f.eval(dst.octets()) == Some(syn.dport));
            if !hit {
                continue;
            }
            self.stats.matches += 1;
            let key = DedupKey {
                client: syn.src,
                dst: syn.dst,
                resolved: dst,
                port: syn.dport,
                formula: fi,
                no_dns: true,
            };
            if let Some(count) = self.count(key, syn.ts) {
                if let Some(f) = self.cfg.formulas.get(fi) {
                    out.push(no_dns_alert(syn, dst, f, count));
                    self.stats.alerts_no_dns += 1;
                }
            }
        }
    }

    /// Counts one matching SYN under `key`; returns the count when this SYN is the one that
    /// should alert (the threshold just reached, first time in the window).
    fn count(&mut self, key: DedupKey, ts: Nanos) -> Option<u32> {
        let window = self.cfg.window;
        let threshold = self.cfg.volume_threshold.max(1);
        if !self.dedup.contains_key(&key) && self.dedup.len() >= self.cfg.max_dedup.max(1) {
            self.make_room(ts);
        }
        let seq = self.syn_seq;
        let fresh = DedupEntry { first: ts, count: 1, alerted: false, syn_seq: seq };
        // Every entry below either starts its window at `ts` or keeps its own `first`.
        self.oldest_first = self.oldest_first.min(ts);
        let e = match self.dedup.entry(key) {
            Entry::Vacant(v) => v.insert(fresh),
            Entry::Occupied(o) => {
                let e = o.into_mut();
                if e.syn_seq == seq {
                    // Same SYN, another cached answer with the same address: counted already.
                    return None;
                }
                if ts.saturating_sub(e.first) > window {
                    *e = fresh; // the old window is over: start a new one
                } else {
                    e.count = e.count.saturating_add(1);
                    e.syn_seq = seq;
                }
                e
            }
        };
        if !e.alerted && e.count >= threshold {
            e.alerted = true;
            Some(e.count)
        } else {
            self.stats.suppressed += 1;
            None
        }
    }

    /// Frees room in a full dedup table: expired entries first, then the oldest tenth by
    /// first SYN (ties broken by key, so the choice is deterministic).
    fn make_room(&mut self, now: Nanos) {
        self.expire(now);
        let cap = self.cfg.max_dedup.max(1);
        if self.dedup.len() < cap {
            return;
        }
        let mut by_age: Vec<(Nanos, DedupKey)> = self.dedup.iter().map(|(k, e)| (e.first, *k)).collect();
        by_age.sort_unstable();
        let n = (cap / 10).max(1);
        for (_, k) in by_age.iter().take(n) {
            self.dedup.remove(k);
        }
        self.stats.dedup_evictions += n.min(by_age.len()) as u64;
    }

    /// Drops dedup entries whose window ended before `now` (packet time). The pipeline calls
    /// it now and then (e.g. with the cache's own expiry); a full table also calls it.
    pub fn expire(&mut self, now: Nanos) {
        let window = self.cfg.window;
        // `now - first` only shrinks as `first` grows: if the oldest start is still inside
        // the window, so is every other.
        if now.saturating_sub(self.oldest_first) <= window {
            return;
        }
        let before = self.dedup.len();
        let mut oldest = Nanos::MAX;
        self.dedup.retain(|_, e| {
            let keep = now.saturating_sub(e.first) <= window;
            if keep {
                oldest = oldest.min(e.first);
            }
            keep
        });
        self.oldest_first = oldest;
        self.stats.dedup_expired += (before - self.dedup.len()) as u64;
    }

    pub fn stats(&self) -> CalcStats {
        CalcStats { dedup_entries: self.dedup.len() as u64, ..self.stats }
    }
}

fn answer_alert(
    cfg: &CalcConfig,
    syn: &Syn,
    a: &CachedAnswer,
    resolved: Ipv4Addr,
    f: &Formula,
    count: u32,
) -> Alert {
    let is_answer = syn.dst == a.addr;
    let mut sev = if is_answer { severity::ANSWER } else { severity::OTHER_DESTINATION };
    let rep = cfg.reputation.as_deref().and_then(|set| {
        std::iter::once(&*a.qname)
            .chain(a.cname_chain.iter().map(String::as_str))
            .find_map(|n| set.matching(n))
            .map(str::to_string)
    });
    if rep.is_some() {
        sev = sev.saturating_add(severity::REPUTATION_BONUS).min(severity::MAX);
    }
    let age = syn.ts.saturating_sub(a.ts);
    let age_s = age as f64 / crate::NANOS_PER_SEC as f64;
    // The reason, written piece by piece rather than through `format!`:
    // "{src} connected to {dst}:{dport} = {rendered} ({formula}) {age:.1} s after resolving
    // {qname} to {resolved}", or for another destination "... ({formula}) of {resolved}, which
    // it got for {qname} {age:.1} s earlier; the destination is another address".
    let mut reason = String::with_capacity(192);
    connected(syn, resolved, f, &mut reason);
    if is_answer {
        reason.push(' ');
        num::fixed(age_s, 1, &mut reason);
        reason.push_str(" s after resolving ");
        reason.push_str(&a.qname);
        reason.push_str(" to ");
        num::ip(&IpAddr::V4(resolved), &mut reason);
    } else {
        reason.push_str(" of ");
        num::ip(&IpAddr::V4(resolved), &mut reason);
        reason.push_str(", which it got for ");
        reason.push_str(&a.qname);
        reason.push(' ');
        num::fixed(age_s, 1, &mut reason);
        reason.push_str(" s earlier; the destination is another address");
    }
    let mut m =
        alert_base(syn.ts, RULE, sev, ("T1568", "Dynamic Resolution"), ("T1568.003", "DNS Calculation"));
    m.insert("source.ip", syn.src);
    m.insert("source.port", syn.sport);
    m.insert("destination.ip", syn.dst);
    m.insert("destination.port", syn.dport);
    m.insert("dns.question.name", a.qname.to_string());
    m.insert("dns.resolved_ip", resolved);
    m.insert("portent.formula", f.name().to_string());
    m.insert("portent.formula_expression", f.text().to_string());
    m.insert("portent.answer_age_ms", age / 1_000_000);
    m.insert("portent.resolver", a.resolver);
    m.insert("portent.syn_count", count);
    m.insert("portent.destination_is_answer", is_answer);
    m.insert(
        "portent.cname_chain",
        Field::List(a.cname_chain.iter().map(|c| Field::from(c.clone())).collect()),
    );
    if let Some(d) = rep {
        m.insert("portent.reputation_match", d);
    }
    m.insert("event.reason", reason);
    Alert { ts: syn.ts, rule: RULE, client: syn.src, doc: m }
}

/// The start of a reason: "{src} connected to {dst}:{dport} = {rendered} ({formula})",
/// the formula rendered over `octets`.
fn connected(syn: &Syn, octets: Ipv4Addr, f: &Formula, out: &mut String) {
    num::ip(&syn.src, out);
    out.push_str(" connected to ");
    num::ip(&syn.dst, out);
    out.push(':');
    num::u64(u64::from(syn.dport), out);
    out.push_str(" = ");
    f.render_into(octets.octets(), out);
    out.push_str(" (");
    out.push_str(f.name());
    out.push(')');
}

fn no_dns_alert(syn: &Syn, dst: Ipv4Addr, f: &Formula, count: u32) -> Alert {
    // "{src} connected to {dst}:{dport} = {rendered} ({formula}) of the destination itself,
    // with no DNS answer cached for {src}"
    let mut reason = String::with_capacity(160);
    connected(syn, dst, f, &mut reason);
    reason.push_str(" of the destination itself, with no DNS answer cached for ");
    num::ip(&syn.src, &mut reason);
    let mut m = alert_base(
        syn.ts,
        RULE_NO_DNS,
        severity::NO_DNS,
        ("T1568", "Dynamic Resolution"),
        ("T1568.003", "DNS Calculation"),
    );
    m.insert("source.ip", syn.src);
    m.insert("source.port", syn.sport);
    m.insert("destination.ip", syn.dst);
    m.insert("destination.port", syn.dport);
    m.insert("portent.formula", f.name().to_string());
    m.insert("portent.formula_expression", f.text().to_string());
    m.insert("portent.syn_count", count);
    m.insert("event.reason", reason);
    Alert { ts: syn.ts, rule: RULE_NO_DNS, client: syn.src, doc: m }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::dns::{rtype, DnsMessage, Question, RData, Record};
    use crate::NANOS_PER_SEC as S;
    use serde_json::{json, Value};

    /// 2023-11-14T22:13:20Z, an arbitrary packet time.
    const T0: Nanos = 1_700_000_000 * S;
    const CLIENT: &str = "10.0.0.5";
    const RESOLVER: &str = "192.0.2.53";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A response for `name`: the CNAME chain first, then the A records at its end.
    fn response(name: &str, cnames: &[&str], addrs: &[[u8; 4]]) -> DnsMessage {
        let mut answers = vec![];
        let mut owner = name.to_string();
        for c in cnames {
            answers.push(Record {
                name: owner.clone(),
                rtype: rtype::CNAME,
                class: 1,
                ttl: 60,
                rdlen: 0,
                data: RData::Name(c.to_string()),
            });
            owner = c.to_string();
        }
        for a in addrs {
            answers.push(Record {
                name: owner.clone(),
                rtype: rtype::A,
                class: 1,
                ttl: 60,
                rdlen: 4,
                data: RData::A(Ipv4Addr::from(*a)),
            });
        }
        DnsMessage {
            response: true,
            questions: vec![Question { name: name.into(), qtype: 1, qclass: 1 }],
            answers,
            ..Default::default()
        }
    }

    struct Rig {
        cache: AnswerCache,
        det: CalcDetector,
    }

    impl Rig {
        fn new(cfg: CalcConfig) -> Rig {
            Rig { cache: AnswerCache::new(CacheConfig::default()), det: CalcDetector::new(cfg) }
        }

        /// CLIENT resolves `name` to `addrs` through RESOLVER at `ts`.
        fn answer(&self, ts: Nanos, name: &str, addrs: &[[u8; 4]]) {
            self.answer_from(ts, CLIENT, RESOLVER, name, &[], addrs);
        }

        fn answer_from(
            &self,
            ts: Nanos,
            client: &str,
            resolver: &str,
            name: &str,
            cnames: &[&str],
            addrs: &[[u8; 4]],
        ) {
            self.cache.insert(ip(client), ip(resolver), ts, &response(name, cnames, addrs));
        }

        fn syn_from(&mut self, ts: Nanos, client: &str, dst: &str, dport: u16) -> Vec<Alert> {
            let mut out = vec![];
            let syn = Syn { ts, src: ip(client), sport: 50_123, dst: ip(dst), dport };
            self.det.on_syn(&syn, &self.cache, &mut out);
            out
        }

        fn syn(&mut self, ts: Nanos, dst: &str, dport: u16) -> Vec<Alert> {
            self.syn_from(ts, CLIENT, dst, dport)
        }
    }

    /// A formula that turns o3.o4 into the port, so a test picks any port by address:
    /// 93.184.x.y gives x*256 + y.
    fn port_formula() -> CalcConfig {
        CalcConfig { formulas: vec![Formula::parse("port", "o3*256 + o4").unwrap()], ..Default::default() }
    }

    fn addr_for(port: u16) -> [u8; 4] {
        [93, 184, (port >> 8) as u8, port as u8]
    }

    fn dotted(a: [u8; 4]) -> String {
        Ipv4Addr::from(a).to_string()
    }

    fn field(a: &Alert, k: &str) -> Value {
        a.doc.get(k).map(Field::to_value).unwrap_or_else(|| panic!("alert lacks {k}: {:?}", a.doc))
    }

    #[test]
    fn apt12_answer_match_reads_like_the_issue() {
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + 1_200_000_000, "198.51.100.7", 10198);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert_eq!((a.ts, a.rule, a.client), (T0 + 1_200_000_000, RULE, ip(CLIENT)));
        crate::output::doc::assert_writes_as_a_map(&a.doc);
        assert_eq!(
            field(a, "event.reason"),
            "10.0.0.5 connected to 198.51.100.7:10198 = 198*51 + 100 (apt12) 1.2 s after resolving c2.example to 198.51.100.7"
        );
        assert_eq!(field(a, "event.severity"), 73);
        assert_eq!(field(a, "portent.answer_age_ms"), 1200);
        assert_eq!(field(a, "portent.formula"), "apt12");
        assert_eq!(field(a, "threat.technique.subtechnique.id"), "T1568.003");
        assert_eq!(field(a, "rule.name"), "dns_calculation");
        let st = r.det.stats();
        assert_eq!((st.syns, st.matches, st.alerts, st.dedup_entries), (1, 1, 1, 1));
    }

    #[test]
    fn apt12_variant_and_configured_formulas() {
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + S, "198.51.100.7", 198 * (51 + 100));
        assert_eq!(out.len(), 1);
        assert_eq!(field(&out[0], "portent.formula"), "apt12_variant");
        assert_eq!(field(&out[0], "portent.formula_expression"), "o1*(o2 + o3)");

        let mut r = Rig::new(port_formula());
        r.answer(T0, "x.example", &[addr_for(31337)]);
        let out = r.syn(T0 + S, &dotted(addr_for(31337)), 31337);
        assert_eq!(out.len(), 1);
        assert_eq!(field(&out[0], "portent.formula"), "port");
        assert_eq!(
            field(&out[0], "event.reason").as_str().unwrap().split(" = ").nth(1).unwrap(),
            "122*256 + 105 (port) 1.0 s after resolving x.example to 93.184.122.105"
        );
        // The defaults do not match that port.
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "x.example", &[addr_for(31337)]);
        assert!(r.syn(T0 + S, &dotted(addr_for(31337)), 31337).is_empty());
    }

    #[test]
    fn schema_every_field_typed() {
        let cfg = CalcConfig {
            reputation: Some(Arc::new(DomainSet::parse("bad.example\n"))),
            ..Default::default()
        };
        let mut r = Rig::new(cfg);
        r.answer_from(
            T0,
            CLIENT,
            RESOLVER,
            "www.shop.example",
            &["edge.cdn.example", "x.bad.example"],
            &[[198, 51, 100, 7]],
        );
        let out = r.syn(T0 + 2 * S, "198.51.100.7", 10198);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        let strings = [
            "@timestamp",
            "source.ip",
            "destination.ip",
            "dns.question.name",
            "dns.resolved_ip",
            "portent.formula",
            "portent.formula_expression",
            "portent.resolver",
            "portent.reputation_match",
            "event.reason",
            "rule.name",
        ];
        for k in strings {
            assert!(field(a, k).is_string(), "{k} is {:?}", field(a, k));
        }
        for k in [
            "source.port",
            "destination.port",
            "portent.answer_age_ms",
            "portent.syn_count",
            "event.severity",
        ] {
            assert!(field(a, k).is_u64(), "{k} is {:?}", field(a, k));
        }
        assert!(field(a, "portent.destination_is_answer").is_boolean());
        assert!(field(a, "portent.cname_chain").is_array());
        assert_eq!(field(a, "source.ip"), "10.0.0.5");
        assert_eq!(field(a, "source.port"), 50_123);
        assert_eq!(field(a, "destination.ip"), "198.51.100.7");
        assert_eq!(field(a, "destination.port"), 10198);
        assert_eq!(field(a, "dns.question.name"), "www.shop.example");
        assert_eq!(field(a, "dns.resolved_ip"), "198.51.100.7");
        assert_eq!(field(a, "portent.resolver"), RESOLVER);
        assert_eq!(field(a, "portent.syn_count"), 1);
        assert_eq!(field(a, "portent.answer_age_ms"), 2000);
        assert_eq!(field(a, "portent.destination_is_answer"), true);
        assert_eq!(field(a, "portent.cname_chain"), json!(["edge.cdn.example", "x.bad.example"]));
        assert_eq!(field(a, "portent.reputation_match"), "bad.example");
        assert_eq!(field(a, "event.severity"), 93);
        assert_eq!(field(a, "@timestamp"), "2023-11-14T22:13:22.000000Z");
    }

    #[test]
    fn port_range_edges() {
        for (port, alerts) in [(4095, false), (4096, true), (49151, true), (49152, false)] {
            let mut r = Rig::new(port_formula());
            r.answer(T0, "x.example", &[addr_for(port)]);
            let out = r.syn(T0 + S, &dotted(addr_for(port)), port);
            assert_eq!(out.len(), usize::from(alerts), "port {port}");
            assert_eq!(r.det.stats().filtered_port_range, u64::from(!alerts), "port {port}");
        }
        // The range is configurable.
        let mut r = Rig::new(CalcConfig { port_range: 1..=65535, ..port_formula() });
        r.answer(T0, "x.example", &[addr_for(443)]);
        assert_eq!(r.syn(T0 + S, &dotted(addr_for(443)), 443).len(), 1);
    }

    #[test]
    fn excluded_ports() {
        let mut r = Rig::new(port_formula());
        for (i, &port) in DEFAULT_EXCLUDED_PORTS.iter().enumerate() {
            r.answer(T0, &format!("h{i}.example"), &[addr_for(port)]);
            assert!(r.syn(T0 + S, &dotted(addr_for(port)), port).is_empty(), "port {port}");
        }
        assert_eq!(r.det.stats().filtered_port_excluded, 11);
        assert_eq!(r.det.stats().dedup_entries, 0);
        // Without the exclusions every one of them alerts.
        let mut r = Rig::new(CalcConfig { excluded_ports: vec![], ..port_formula() });
        for (i, &port) in DEFAULT_EXCLUDED_PORTS.iter().enumerate() {
            r.answer(T0, &format!("h{i}.example"), &[addr_for(port)]);
            assert_eq!(r.syn(T0 + S, &dotted(addr_for(port)), port).len(), 1, "port {port}");
        }
    }

    #[test]
    fn internal_destinations() {
        // 10.20.30.40: apt12 gives 10*20+30 = 230, so use the port formula's 30*256+40.
        for (include, n) in [(false, 0), (true, 1)] {
            let mut r = Rig::new(CalcConfig { include_internal: include, ..port_formula() });
            r.answer(T0, "intranet.example", &[[10, 20, 30, 40]]);
            assert_eq!(r.syn(T0 + S, "10.20.30.40", 30 * 256 + 40).len(), n, "include_internal {include}");
            assert_eq!(r.det.stats().filtered_dest_internal, 1 - n as u64);
        }
    }

    #[test]
    fn trusted_resolvers() {
        for (ignore, n) in [(false, 1), (true, 0)] {
            let cfg = CalcConfig {
                trusted_resolvers: CidrSet::parse_list(&["192.0.2.0/24"]).unwrap(),
                ignore_trusted_resolvers: ignore,
                ..Default::default()
            };
            let mut r = Rig::new(cfg);
            r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
            assert_eq!(r.syn(T0 + S, "198.51.100.7", 10198).len(), n, "ignore {ignore}");
            assert_eq!(r.det.stats().trusted_answers_ignored, 1 - n as u64);
            assert_eq!(r.cache.stats().answers, 1, "the cache still holds the answer");
            // Another resolver's answer still counts when ignoring.
            r.answer_from(T0, CLIENT, "203.0.113.53", "c2.example", &[], &[[198, 51, 100, 7]]);
            assert_eq!(r.syn(T0 + 2 * S, "198.51.100.7", 10198).len(), 1 - n);
        }
    }

    #[test]
    fn management_ips_and_client_allowlist() {
        let cfg = CalcConfig {
            management_ips: CidrSet::parse_list(&["10.9.0.0/16", "198.51.100.7"]).unwrap(),
            client_allowlist: CidrSet::parse_list(&["10.0.0.77"]).unwrap(),
            ..Default::default()
        };
        let mut r = Rig::new(cfg);
        for c in ["10.9.1.1", "10.0.0.77", CLIENT] {
            r.answer_from(T0, c, RESOLVER, "c2.example", &[], &[[198, 51, 100, 7], [203, 0, 113, 9]]);
        }
        // Management IP as client, allowlisted client, management IP as destination.
        assert!(r.syn_from(T0 + S, "10.9.1.1", "203.0.113.9", 203 + 113).is_empty());
        assert!(r.syn_from(T0 + S, "10.0.0.77", "203.0.113.9", 203 + 113).is_empty());
        assert!(r.syn(T0 + S, "198.51.100.7", 10198).is_empty());
        let st = r.det.stats();
        assert_eq!((st.filtered_client, st.filtered_dest_management), (2, 1));
        // An allowlisted client is not an allowlisted destination.
        let mut r = Rig::new(CalcConfig {
            client_allowlist: CidrSet::parse_list(&["203.200.113.9"]).unwrap(),
            ..Default::default()
        });
        r.answer(T0, "c3.example", &[[203, 200, 113, 9]]);
        assert_eq!(r.syn(T0 + S, "203.200.113.9", 203 * 200 + 113).len(), 1);
    }

    #[test]
    fn volume_threshold_alerts_on_the_nth_syn() {
        let mut r = Rig::new(CalcConfig { volume_threshold: 3, ..Default::default() });
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        assert!(r.syn(T0 + S, "198.51.100.7", 10198).is_empty());
        assert!(r.syn(T0 + 2 * S, "198.51.100.7", 10198).is_empty());
        let out = r.syn(T0 + 3 * S, "198.51.100.7", 10198);
        assert_eq!(out.len(), 1);
        assert_eq!(field(&out[0], "portent.syn_count"), 3);
        assert!(r.syn(T0 + 4 * S, "198.51.100.7", 10198).is_empty());
        assert_eq!(r.det.stats().suppressed, 3);
        // The count is per (address, port): another port starts its own count.
        r.answer(T0, "c3.example", &[[198, 52, 100, 7]]);
        assert!(r.syn(T0 + 5 * S, "198.52.100.7", 198 * 52 + 100).is_empty());
    }

    #[test]
    fn answer_window_edges() {
        let window = 300 * S;
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + window, "198.51.100.7", 10198);
        assert_eq!(out.len(), 1, "at exactly the window");
        assert_eq!(field(&out[0], "portent.answer_age_ms"), 300_000);
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        assert!(r.syn(T0 + window + 1, "198.51.100.7", 10198).is_empty(), "1 ns past it");
        assert_eq!(r.det.stats().no_answer, 1);
        // A shorter detector window than the cache's wins.
        let mut r = Rig::new(CalcConfig { window: 10 * S, ..Default::default() });
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        assert!(r.syn(T0 + 11 * S, "198.51.100.7", 10198).is_empty());
        // A SYN before the answer (reordered capture) does not use it.
        assert!(r.syn(T0 - 1, "198.51.100.7", 10198).is_empty());
    }

    /// `expire` skips its walk while the oldest window is still open: the entries it keeps
    /// and the count it reports match a plain walk at every step, including after a window
    /// restarts (which moves an entry's start later) and after entries leave.
    #[test]
    fn expire_matches_a_plain_walk() {
        let window = 10 * S;
        let mut r = Rig::new(CalcConfig { window, ..port_formula() });
        // One key per port; the SYN for port p comes at T0 + p s, the answer just before.
        let mut firsts: Vec<Nanos> = vec![];
        for p in 1..=20u16 {
            let ts = T0 + u64::from(p) * S;
            r.answer(ts - 1, "c2.example", &[addr_for(4096 + p)]);
            assert_eq!(r.syn(ts, &dotted(addr_for(4096 + p)), 4096 + p).len(), 1);
            firsts.push(ts);
        }
        // Port 1 again after its window: the entry restarts at T0 + 12 s.
        r.answer(T0 + 12 * S - 1, "c2.example", &[addr_for(4097)]);
        assert_eq!(r.syn(T0 + 12 * S, &dotted(addr_for(4097)), 4097).len(), 1);
        firsts[0] = T0 + 12 * S;
        let mut expired = 0;
        for now in (0..80).map(|k| T0 + k * S / 2) {
            r.det.expire(now);
            let before = firsts.len();
            firsts.retain(|&f| now.saturating_sub(f) <= window);
            expired += (before - firsts.len()) as u64;
            let st = r.det.stats();
            assert_eq!((st.dedup_entries, st.dedup_expired), (firsts.len() as u64, expired), "at {now}");
        }
        assert!(firsts.is_empty(), "the walk ran to the end");
    }

    #[test]
    fn repeats_make_one_alert_per_window() {
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        let mut alerts = vec![];
        for i in 0..5 {
            alerts.extend(r.syn(T0 + S + i * S, "198.51.100.7", 10198));
        }
        assert_eq!(alerts.len(), 1);
        assert_eq!(field(&alerts[0], "portent.syn_count"), 1);
        let st = r.det.stats();
        assert_eq!((st.matches, st.alerts, st.suppressed, st.dedup_entries), (5, 1, 4, 1));
        // The window runs from the first SYN (T0+1s); past it, with a fresh answer, a new alert.
        r.answer(T0 + 301 * S, "c2.example", &[[198, 51, 100, 7]]);
        assert!(r.syn(T0 + 301 * S, "198.51.100.7", 10198).is_empty(), "T0+1s + 300 s: still the window");
        let out = r.syn(T0 + 301 * S + 1, "198.51.100.7", 10198);
        assert_eq!(out.len(), 1);
        // expire() by packet time empties the table.
        r.det.expire(T0 + 601 * S + 2);
        let st = r.det.stats();
        assert_eq!((st.dedup_entries, st.dedup_expired), (0, 1));
    }

    #[test]
    fn other_destination_is_reported_lower() {
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + S, "203.0.113.9", 10198);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert_eq!(field(a, "portent.destination_is_answer"), false);
        assert_eq!(field(a, "event.severity"), 47);
        assert_eq!(field(a, "dns.resolved_ip"), "198.51.100.7");
        assert_eq!(field(a, "destination.ip"), "203.0.113.9");
        assert_eq!(
            field(a, "event.reason"),
            "10.0.0.5 connected to 203.0.113.9:10198 = 198*51 + 100 (apt12) of 198.51.100.7, which it got for c2.example 1.0 s earlier; the destination is another address"
        );
    }

    #[test]
    fn calc_without_dns() {
        // 203.0.113.9: apt12 gives 203*0+113, below the range; use 198.51.100.7 again.
        let mut off = Rig::new(CalcConfig::default());
        assert!(off.syn(T0, "198.51.100.7", 10198).is_empty());
        let mut on = Rig::new(CalcConfig { calc_without_dns: true, ..Default::default() });
        let out = on.syn(T0, "198.51.100.7", 10198);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert_eq!(a.rule, RULE_NO_DNS);
        crate::output::doc::assert_writes_as_a_map(&a.doc);
        assert_eq!(field(a, "rule.name"), "dns_calculation_no_dns");
        assert_eq!(field(a, "event.severity"), 21);
        assert_eq!(field(a, "portent.formula"), "apt12");
        assert_eq!(
            field(a, "event.reason"),
            "10.0.0.5 connected to 198.51.100.7:10198 = 198*51 + 100 (apt12) of the destination itself, with no DNS answer cached for 10.0.0.5"
        );
        assert!(on.syn(T0 + S, "198.51.100.7", 10198).is_empty(), "deduplicated too");
        assert_eq!(on.det.stats().alerts_no_dns, 1);
        // With any answer cached for the client, the DNS reading applies instead.
        let mut on = Rig::new(CalcConfig { calc_without_dns: true, ..Default::default() });
        on.answer(T0, "unrelated.example", &[[93, 184, 216, 34]]);
        assert!(on.syn(T0 + S, "198.51.100.7", 10198).is_empty());
    }

    #[test]
    fn reputation_raises_severity() {
        let feed = Some(Arc::new(DomainSet::parse("evil.example\n")));
        let mut r = Rig::new(CalcConfig { reputation: feed.clone(), ..Default::default() });
        r.answer(T0, "a.evil.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + S, "198.51.100.7", 10198);
        assert_eq!(field(&out[0], "event.severity"), 93);
        assert_eq!(field(&out[0], "portent.reputation_match"), "evil.example");
        // Through a CNAME, for another destination: 47 + 20.
        let mut r = Rig::new(CalcConfig { reputation: feed, ..Default::default() });
        r.answer_from(T0, CLIENT, RESOLVER, "benign.example", &["c.evil.example"], &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + S, "203.0.113.9", 10198);
        assert_eq!(field(&out[0], "event.severity"), 67);
        // No feed match: no field.
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "a.evil.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + S, "198.51.100.7", 10198);
        assert!(!out[0].doc.contains_key("portent.reputation_match"));
    }

    #[test]
    fn order_is_deterministic_and_same_address_counts_once() {
        let cfg = CalcConfig {
            formulas: vec![Formula::parse("b", "o1*o2 + o3").unwrap(), Formula::apt12()],
            ..Default::default()
        };
        let mut r = Rig::new(cfg);
        // Two answers both giving 10198 (198*51+100 and 100*101+98), and the first address
        // again under a second name.
        r.answer(T0, "old.example", &[[198, 51, 100, 7]]);
        r.answer(T0 + S, "new.example", &[[100, 101, 98, 1]]);
        r.answer(T0 + 2 * S, "alias.example", &[[198, 51, 100, 7]]);
        let out = r.syn(T0 + 3 * S, "203.0.113.9", 10198);
        let got: Vec<_> = out
            .iter()
            .map(|a| {
                (
                    a.doc.get("dns.question.name").and_then(Field::as_str).unwrap(),
                    a.doc.get("portent.formula").and_then(Field::as_str).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("old.example", "b"),
                ("old.example", "apt12"),
                ("new.example", "b"),
                ("new.example", "apt12")
            ]
        );
        assert_eq!(r.det.stats().dedup_entries, 4);
        assert!(out.iter().all(|a| field(a, "portent.syn_count") == 1));
    }

    #[test]
    fn syn_flood_grows_no_state() {
        let mut r = Rig::new(CalcConfig::default());
        r.answer(T0, "c2.example", &[[198, 51, 100, 7]]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = vec![];
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let src = IpAddr::V4(Ipv4Addr::from((x >> 32) as u32));
            let dst = IpAddr::V4(Ipv4Addr::from(x as u32));
            let syn = Syn { ts: T0 + i, src, sport: (x >> 16) as u16, dst, dport: (x >> 48) as u16 };
            r.det.on_syn(&syn, &r.cache, &mut out);
        }
        assert!(out.is_empty());
        let st = r.det.stats();
        assert_eq!(st.syns, 50_000);
        assert_eq!((st.dedup_entries, st.matches), (0, 0));
        assert!(st.no_answer > 30_000, "{st:?}");
    }

    #[test]
    fn dedup_table_is_capped() {
        let mut r = Rig::new(CalcConfig { max_dedup: 10, ..port_formula() });
        let mut n = 0;
        for p in 5000..5050u16 {
            r.answer(T0, "x.example", &[addr_for(p)]);
            n += r.syn(T0 + u64::from(p), &dotted(addr_for(p)), p).len();
        }
        assert_eq!(n, 50);
        let st = r.det.stats();
        assert!(st.dedup_entries <= 10, "{st:?}");
        assert_eq!(st.dedup_evictions, 40);
    }

    /// CPU time of this thread (ns, from the scheduler), so that a busy machine does not
    /// count time spent waiting for a core.
    fn cpu_ns() -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Not a timed test: `cargo test --release --lib detect::calc::tests::bench_on_syn -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_on_syn() {
        let mut r = Rig::new(CalcConfig::default());
        let addrs: Vec<[u8; 4]> = (0..8).map(|i| [198, 51, 100 + i, 7]).collect();
        r.answer(T0, "c2.example", &addrs);
        let mut out = Vec::new();
        let n = 2_000_000u64;
        let (client, dst) = (ip(CLIENT), ip("198.51.100.7"));
        let start = cpu_ns();
        for i in 0..n {
            // Ports that no formula gives: the common case, a SYN that matches nothing.
            let syn =
                Syn { ts: T0 + S + i, src: client, sport: 40_000, dst, dport: 20_000 + (i % 1000) as u16 };
            r.det.on_syn(&syn, &r.cache, &mut out);
        }
        let ns = (cpu_ns() - start) as f64 / n as f64;
        assert!(out.is_empty());
        assert_eq!(r.det.stats().syns, n);
        println!("on_syn: {ns:.1} ns per SYN with 8 cached answers and 2 formulas");
        // For comparison: the cache lookup alone.
        let start = cpu_ns();
        let mut seen = 0u64;
        for i in 0..n {
            r.cache.lookup(client, T0 + S + i, |a| seen += u64::from(a.ts <= T0));
        }
        let ns = (cpu_ns() - start) as f64 / n as f64;
        assert_eq!(seen, 8 * n);
        println!("AnswerCache::lookup alone: {ns:.1} ns");
    }
}
