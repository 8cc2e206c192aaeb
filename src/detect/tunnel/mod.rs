//! DNS tunneling (ATT&CK T1071.004, DET0400): tunneling-shaped query traffic per client and
//! registered domain.
//!
//! DNS traffic is grouped by (client, registered domain) — the Public Suffix List decides
//! the registered domain (`domain`). Each group keeps counters over a window of packet time
//! (default 60 s, sliding in half-window steps: the span scored always ends at the current
//! message and covers between half a window and a whole one) and over a
//! long horizon (default 24 h): query and response counts, distinct new subdomains, their
//! lengths, entropy and encoded-alphabet share (`features`), the record-type mix, the
//! NXDOMAIN share, bytes up and down, and an information-content estimate of the distinct
//! names (Paxson et al. 2013) that catches slow tunnels no per-minute rule sees.
//!
//! ## Score
//!
//! Every feature has a threshold; a feature that reaches it *crosses* and contributes its
//! ratio `min(value / threshold, 2)`. Features come in three kinds:
//!
//! - **shape** (what each name looks like): longest subdomain, longest label, mean entropy,
//!   encoded share, unusual record-type share, NXDOMAIN share. Sum: `S`.
//! - **volume** (how much): queries, distinct subdomains, bytes up, bytes down. Sum: `V`.
//! - **standalone** published rules, each enough alone: Elastic's long-name rule (≥ 25
//!   queries and ≥ 15 distinct names with a ≥ 50-byte subdomain in 5 minutes), Sigma's
//!   TXT/NULL answer rate (> 50 a minute), Paxson's information bound (4 kB per client and
//!   domain over the horizon), and one long encoded query (below). Sum of ratios: `R`.
//!
//! `score = S × V + threshold × R`, alert when `score ≥ threshold` (default 4).
//!
//! Why a product: volume alone is normal (a mail server, `test0..test1199.example.com`,
//! a busy CDN) and so is shape alone (one long CDN or DKIM name); a tunnel needs names that
//! carry data *and* enough of them. Two shape features crossing with two volume features
//! (2 × 2) reach the default threshold; so does one very strong shape feature at twice its
//! threshold with one volume feature at twice its own. The standalone rules are weighted
//! by the threshold so that each fires alone, which keeps "catches what Elastic, Sigma and
//! Paxson catch" true by construction.
//!
//! **One query is enough** when its subdomain is long (≥ 60 bytes by default), fits an
//! encoded alphabet and has high entropy (≥ 4 bits a byte): that is a payload, not a host
//! name, whatever the rate (ndpi_dns-exf.pcap: one base64 gzip blob in the labels).
//!
//! One alert per group per window; later windows re-alert with updated counts. A group
//! that crosses only by its horizon information re-alerts when it has carried another
//! `info_bytes` since its last alert, not every window.
//!
//! ## Other rules
//!
//! - `dns_query_burst`: one client sending many queries across many registered domains in
//!   a window (high-volume DNS), once per client per window.
//! - `dns_reputation`: any query under a DomainReputationFeed domain, once per (client,
//!   listed domain) per window. Mapped to T1071.004 as well: the lookup of a known C2
//!   domain is the application-layer channel being opened; the allowlists do not apply.
//!
//! ## Memory
//!
//! Groups live in a slab with a least-recently-seen list; at `max_groups` the least recently
//! seen group is evicted (counted). The lookup is one probe of a table of slot numbers keyed
//! by a hash of (client, registered domain), with the domain kept inside the group and the
//! list links and each slot's hash in one array beside the slab: at the cap every message
//! used to chase a per-client map, a boxed key and two neighbours' links through cold
//! memory. Each group is a fixed 384-byte record of six cache lines (its domain inline up
//! to 38 bytes, its example name and previous subdomain inline up to 38 bytes each, on the
//! heap beyond), laid out so that the key fills the first line; plus, once it has sent two
//! names, a 128-byte Bloom filter of name fingerprints, and once its window has slid, the
//! 128-byte earlier half. Beside it 16 bytes of links and hash and an index entry.
//! `expire` drops groups idle for a horizon (all in one step when even the newest group is
//! a horizon old, as at the end of input). Beside the groups, a 1024-line cache (128 kB)
//! keeps the allowlist answer, registered domain and subdomain features of recent names,
//! and the slot of the group each last went to (`domain::NameCache`): every name comes at
//! least twice, as query and response, and the response finds its group there.

pub mod domain;
pub mod features;

#[cfg(test)]
mod calibrate;

use crate::detect::reputation::DomainSet;
use crate::detect::{alert_base, Alert, DnsEvent};
use crate::dns::rtype;
use crate::net::CidrSet;
use crate::output::doc::{Field, Key};
use crate::{Nanos, NANOS_PER_SEC};
use domain::{DomainAllowList, NameCache, SuffixList, SuffixSet};
use features::{Alphabet, NameFeatures, MAX_NAME_TEXT, PREV_CAP};
use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::FastRandom;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use domain::{registered_domain, DEFAULT_ALLOWLIST};

/// Settings. `Default` holds the documented defaults; each threshold says where it comes
/// from.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    /// Short window (packet time).
    pub window: Nanos,
    /// Long horizon for the information estimate (Paxson et al. bound a day).
    pub horizon: Nanos,
    /// Span of the Elastic long-name rule (their rule looks back 5 minutes).
    pub long_name_span: Nanos,
    /// Cap on tracked (client, registered domain) groups per detector; least recently seen
    /// is evicted. The pipeline gives each worker's detector its share of the configured
    /// total. 65 536 groups of 384 bytes are 25 MB, plus long names and filters.
    pub max_groups: usize,
    /// Cap on (client, listed domain) pairs remembered for reputation de-duplication.
    pub max_reputation_pairs: usize,
    /// A newer public_suffix_list.dat to use instead of the compiled-in list.
    pub psl_file: Option<PathBuf>,
    /// DaemonAllowList: clients never scored for tunneling or bursts (resolvers, ESXi
    /// management addresses...).
    pub client_allowlist: CidrSet,
    /// Use `default_allowlist.txt` (reverse DNS, DNSBLs, AV look-ups, DKIM, DNS-SD, mDNS).
    pub use_default_allowlist: bool,
    /// More domain allowlist entries, same syntax as the default file.
    pub domain_allowlist: Vec<String>,
    /// DomainReputationFeed.
    pub reputation: Option<Arc<DomainSet>>,

    /// Alert when the score reaches this.
    pub threshold: f64,
    /// QueryRatePerClient: queries per window to one registered domain. Elastic's 25 in 5
    /// minutes is the long-name rule below; a plain rate needs to be higher to mean volume.
    pub queries: u32,
    /// New distinct subdomains per window (Elastic: 15).
    pub distinct_subdomains: u32,
    /// OutboundDNSVolume: query-name bytes per window (iodine fills ~200-byte names).
    pub bytes_up: u64,
    /// Answer RDATA bytes per window.
    pub bytes_down: u64,
    /// QueryLengthThreshold: longest subdomain, decoded bytes (Elastic: 50).
    pub subdomain_len: u32,
    /// Longest label: tunnels fill labels towards the 63-byte limit; host names rarely pass
    /// 40.
    pub label_len: u32,
    /// EntropyThreshold: mean Shannon entropy of subdomains, bits a byte. Host names sit
    /// near 2.5-3.2; 16+ hex characters approach 4, base32 4.5, base64 5+.
    pub entropy: f64,
    /// Share of names that fit an encoded alphabet.
    pub encoded_share: f64,
    /// Share of queries of type TXT, NULL, CNAME, MX, ANY, SRV or private (65280-65534):
    /// the types tunnels use for downstream capacity.
    pub unusual_type_share: f64,
    /// NXDOMAIN share of responses (a tunnel's server often answers nothing for
    /// upstream-only traffic), counted only from `nxdomain_min_responses` responses on.
    pub nxdomain_share: f64,
    pub nxdomain_min_responses: u32,
    /// Elastic long-name rule: queries and distinct names with a subdomain of at least
    /// `subdomain_len` bytes within `long_name_span`.
    pub long_name_queries: u32,
    pub long_name_distinct: u32,
    /// Sigma: more than 50 TXT or NULL answers a minute (scaled to the window).
    pub txt_null_answers: u32,
    /// Paxson et al.: ~4 kB of information per client and domain per day.
    pub info_bytes: u64,
    /// One query is enough when its subdomain is this long, encoded and this entropic.
    pub single_query_len: u32,
    pub single_query_entropy: f64,
    /// dns_query_burst: queries per window from one client, and registered domains among
    /// them. A browser page load touches tens of domains; hundreds in a minute with
    /// hundreds of queries is a scanner, a DGA sweep or a misused client.
    pub burst_queries: u32,
    pub burst_domains: u32,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            window: 60 * NANOS_PER_SEC,
            horizon: 24 * 3600 * NANOS_PER_SEC,
            long_name_span: 300 * NANOS_PER_SEC,
            max_groups: 65_536,
            max_reputation_pairs: 16_384,
            psl_file: None,
            client_allowlist: CidrSet::default(),
            use_default_allowlist: true,
            domain_allowlist: Vec::new(),
            reputation: None,
            threshold: 4.0,
            queries: 30,
            distinct_subdomains: 15,
            bytes_up: 3_000,
            bytes_down: 8_000,
            subdomain_len: 50,
            label_len: 40,
            entropy: 3.5,
            encoded_share: 0.5,
            unusual_type_share: 0.5,
            nxdomain_share: 0.5,
            nxdomain_min_responses: 10,
            long_name_queries: 25,
            long_name_distinct: 15,
            txt_null_answers: 50,
            info_bytes: 4_096,
            single_query_len: 60,
            single_query_entropy: 4.0,
            burst_queries: 600,
            burst_domains: 200,
        }
    }
}

/// Counters for the stats reporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelStats {
    pub messages: u64,
    /// Groups tracked now, and clients with at least one group.
    pub groups: usize,
    pub clients: usize,
    /// Groups dropped at `max_groups` (least recently seen first).
    pub evictions: u64,
    /// Groups dropped by `expire` after a horizon without traffic.
    pub expired: u64,
    pub allowlisted_client: u64,
    pub allowlisted_domain: u64,
    /// Messages without a question, or with a name longer than any valid one.
    pub skipped: u64,
    pub alerts_tunneling: u64,
    pub alerts_burst: u64,
    pub alerts_reputation: u64,
    /// Reputation de-duplication pairs dropped at `max_reputation_pairs`.
    pub reputation_evictions: u64,
}

const NIL: u32 = u32::MAX;

/// The most group slots reserved at start; a larger `max_groups` grows past it on demand.
const MAX_RESERVED_GROUPS: usize = 1 << 18;

/// Counters over one window.
///
/// 128 bytes in this order: what `may_alert` reads of both halves on every message comes
/// first (32 bytes), so that the group can keep that much of its earlier half with the
/// fields every message touches and the rest apart.
#[derive(Clone, Debug, Default)]
#[repr(C)]
struct Window {
    queries: u32,
    distinct: u32,
    txt_null_answers: u32,
    single_query: bool,
    bytes_up: u64,
    bytes_down: u64,
    start: Nanos,
    last: Nanos,
    sub_len_sum: u64,
    entropy_sum: f64,
    responses: u32,
    max_sub: u32,
    max_label: u32,
    entropy_n: u32,
    nxdomain: u32,
    /// Names per encoded alphabet, at `Alphabet as usize - 1` (`name_features` never
    /// reports Plain as an alphabet).
    encoded: [u32; 4],
    /// txt, null, cname, mx, any, srv, private.
    types: [u32; 7],
}

impl Window {
    fn is_empty(&self) -> bool {
        self.queries == 0 && self.responses == 0
    }

    /// The counters of two adjacent spans taken together (`self` the earlier).
    fn merged(&self, later: &Window) -> Window {
        if self.is_empty() {
            return later.clone();
        }
        let mut m = later.clone();
        m.start = self.start.min(later.start);
        m.last = self.last.max(later.last);
        m.queries += self.queries;
        m.responses += self.responses;
        m.distinct += self.distinct;
        m.sub_len_sum += self.sub_len_sum;
        m.max_sub = m.max_sub.max(self.max_sub);
        m.max_label = m.max_label.max(self.max_label);
        m.entropy_sum += self.entropy_sum;
        m.entropy_n += self.entropy_n;
        for (a, b) in m.encoded.iter_mut().zip(self.encoded.iter()) {
            *a += b;
        }
        for (a, b) in m.types.iter_mut().zip(self.types.iter()) {
            *a += b;
        }
        m.txt_null_answers = m.txt_null_answers.saturating_add(self.txt_null_answers);
        m.nxdomain += self.nxdomain;
        m.bytes_up += self.bytes_up;
        m.bytes_down += self.bytes_down;
        m.single_query |= self.single_query;
        m
    }
}

/// The alert's key for each `type_slot`: `portent.tunnel.type_{txt,null,…}`.
const TYPE_KEYS: [&str; 7] = {
    macro_rules! keys {
        ($($name:literal),*) => { [$(concat!("portent.tunnel.type_", $name)),*] };
    }
    keys!("txt", "null", "cname", "mx", "any", "srv", "private")
};

fn type_slot(t: u16) -> Option<usize> {
    match t {
        rtype::TXT => Some(0),
        rtype::NULL => Some(1),
        rtype::CNAME => Some(2),
        rtype::MX => Some(3),
        rtype::ANY => Some(4),
        rtype::SRV => Some(5),
        65280..=65534 => Some(6),
        _ => None,
    }
}

/// Fingerprints of the names a group has sent this horizon: the first inline, then a
/// 1024-bit Bloom filter (k = 2) from the detector's `Blooms`. Tunnel names never repeat, so
/// the filter fills after about a thousand names and starts calling new names old; by then
/// the group has long crossed every threshold.
#[derive(Debug, Default)]
enum Seen {
    #[default]
    Empty,
    One(u64),
    /// The filter's entry in `Blooms`: owned by this group until `release`.
    Bloom(u32),
}

impl Seen {
    /// Inserts; true when `fp` was (probably) not there before.
    fn insert(&mut self, fp: u64, blooms: &mut Blooms) -> bool {
        match self {
            Seen::Empty => {
                *self = Seen::One(fp);
                true
            }
            Seen::One(old) if *old == fp => false,
            Seen::One(old) => {
                let old = *old;
                let i = blooms.take();
                if let Some(b) = blooms.get_mut(i) {
                    set_bits(b, old);
                    set_bits(b, fp);
                }
                *self = Seen::Bloom(i);
                true
            }
            Seen::Bloom(i) => blooms.get_mut(*i).map_or(true, |b| set_bits(b, fp)),
        }
    }

    /// Empties the set, handing its filter back.
    fn release(&mut self, blooms: &mut Blooms) {
        if let Seen::Bloom(i) = std::mem::take(self) {
            blooms.give(i);
        }
    }
}

/// Sets `fp`'s two bits; true when either was clear.
fn set_bits(b: &mut [u64; 16], fp: u64) -> bool {
    let mut new = false;
    for bit in [(fp & 1023) as usize, ((fp >> 32) & 1023) as usize] {
        if let Some(w) = b.get_mut(bit / 64) {
            new |= *w & (1 << (bit % 64)) == 0;
            *w |= 1 << (bit % 64);
        }
    }
    new
}

/// The Bloom filters of every group that sent a second distinct name this horizon, in one
/// pool with a free list. A box each cost an allocation and a free per group, and each
/// box was new memory; a freed entry here is the next one taken, still in cache.
#[derive(Debug, Default)]
struct Blooms {
    bits: Vec<[u64; 16]>,
    free: Vec<u32>,
}

impl Blooms {
    fn with_capacity(n: usize) -> Self {
        // Address space only, like the group slots: pages are touched as filters are taken.
        Blooms { bits: Vec::with_capacity(n), free: Vec::new() }
    }

    /// An empty filter.
    fn take(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => {
                if let Some(b) = self.bits.get_mut(i as usize) {
                    *b = [0; 16];
                }
                i
            }
            None => {
                self.bits.push([0; 16]);
                (self.bits.len() - 1) as u32
            }
        }
    }

    fn give(&mut self, i: u32) {
        self.free.push(i);
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut [u64; 16]> {
        self.bits.get_mut(i as usize)
    }

    /// Filters held by groups.
    #[cfg(test)]
    fn taken(&self) -> usize {
        self.bits.len() - self.free.len()
    }

    fn clear(&mut self) {
        self.bits.clear();
        self.free.clear();
    }
}

/// Registered domains up to this many bytes are stored in the group itself, so that
/// confirming a lookup reads the group's own memory rather than another allocation; 38
/// keeps the domain and the client in the group's first cache line.
const INLINE_DOMAIN: usize = 38;

/// A group's example name and previous subdomain: short for nearly every group, and
/// allocating both for each new group cost more than the rest of its set-up (and put each
/// behind a pointer to cold memory).
const INLINE_BYTES: usize = 38;

/// Bytes kept inline up to `N`, on the heap beyond.
#[derive(Clone, Debug)]
enum SmallBytes<const N: usize> {
    Inline {
        len: u8,
        buf: [u8; N],
    },
    /// Once on the heap, kept there: a group whose names outgrew the inline space is likely
    /// to send more like them.
    Heap(Vec<u8>),
}

impl<const N: usize> Default for SmallBytes<N> {
    fn default() -> Self {
        SmallBytes::Inline { len: 0, buf: [0; N] }
    }
}

impl<const N: usize> SmallBytes<N> {
    fn new(b: &[u8]) -> Self {
        let mut s = Self::default();
        s.set(b);
        s
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, buf } => buf.get(..*len as usize).unwrap_or(&[]),
            SmallBytes::Heap(v) => v,
        }
    }

    /// For contents set from a `&str` (always whole, so always valid UTF-8).
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    fn len(&self) -> usize {
        self.as_bytes().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the contents with `b`.
    fn set(&mut self, b: &[u8]) {
        match self {
            SmallBytes::Heap(v) => {
                v.clear();
                v.extend_from_slice(b);
            }
            SmallBytes::Inline { len, buf } => match buf.get_mut(..b.len()) {
                Some(dst) => {
                    dst.copy_from_slice(b);
                    *len = b.len() as u8;
                }
                None => *self = SmallBytes::Heap(b.to_vec()),
            },
        }
    }

    fn clear(&mut self) {
        self.set(&[]);
    }
}

/// Six cache lines (every group's first touch zeroes and writes them all): the key alone in
/// the first (the lookup's one dependent read), then what a message reads; the earlier half
/// window apart, since most groups never slide one. The two addresses and the flags sit
/// together so that they cost one padding between them.
/// `group_layout_keeps_the_key_in_one_line` checks the order.
#[derive(Debug)]
#[repr(C, align(64))]
struct Group {
    domain: SmallBytes<INLINE_DOMAIN>,
    client: IpAddr,
    server: IpAddr,
    saw_query: bool,
    /// False once removed: the slot keeps the dead group, so that the next group to take it
    /// is written over it field by field rather than built apart and copied in.
    live: bool,

    last_seen: Nanos,
    seen: Seen,
    /// The longest query name of the window, for the alert.
    example: SmallBytes<INLINE_BYTES>,

    /// The window slides in two halves: `w` is the current half, `earlier` the one before
    /// it (empty when it is older than a whole window). Features are read over both, so the
    /// span scored is always between half a window and a whole one, ending now: a burst
    /// cannot hide by straddling a boundary.
    w: Window,

    last_query: Nanos,
    /// No new alert for this group before this time: one alert per group per window.
    quiet_until: Nanos,
    long_start: Nanos,
    h_start: Nanos,
    h_queries: u64,
    info_bits: f64,
    /// Information (bytes) at the last alert whose crossing included the horizon rule.
    info_alerted: f64,
    long_queries: u32,
    long_distinct: u32,

    /// The half before `w`, once the window has slid with one in view; `None` is an empty
    /// half. Kept after it empties: a group that slid once tends to again.
    earlier: Option<Box<Window>>,
    prev_name: SmallBytes<INLINE_BYTES>,
}

/// What `Group::earlier` reads as when the group has no earlier half.
static EMPTY_WINDOW: Window = Window {
    queries: 0,
    distinct: 0,
    txt_null_answers: 0,
    single_query: false,
    bytes_up: 0,
    bytes_down: 0,
    start: 0,
    last: 0,
    sub_len_sum: 0,
    entropy_sum: 0.0,
    responses: 0,
    max_sub: 0,
    max_label: 0,
    entropy_n: 0,
    nxdomain: 0,
    encoded: [0; 4],
    types: [0; 7],
};

impl Group {
    fn new(client: IpAddr, rd: &str, ts: Nanos) -> Group {
        Group {
            client,
            domain: SmallBytes::new(rd.as_bytes()),
            server: client,
            saw_query: false,
            live: true,
            last_seen: ts,
            seen: Seen::Empty,
            example: SmallBytes::default(),
            w: Window { start: ts, last: ts, ..Window::default() },
            last_query: 0,
            quiet_until: 0,
            long_start: ts,
            h_start: ts,
            h_queries: 0,
            info_bits: 0.0,
            info_alerted: 0.0,
            long_queries: 0,
            long_distinct: 0,
            earlier: None,
            prev_name: SmallBytes::default(),
        }
    }

    /// Kills the group, handing back its filter and what it holds on the heap: a slot may
    /// stay dead for long (after an expiry), and kept buffers cost 1 MB more peak RSS on the
    /// 1 GB bench capture than freeing them here.
    fn release(&mut self, blooms: &mut Blooms) {
        self.live = false;
        self.seen.release(blooms);
        self.earlier = None;
        for b in [&mut self.example, &mut self.prev_name] {
            if matches!(b, SmallBytes::Heap(_)) {
                *b = SmallBytes::default();
            }
        }
        if matches!(self.domain, SmallBytes::Heap(_)) {
            self.domain = SmallBytes::default();
        }
    }

    /// Makes a dead group into what `new` would build, in place: building a whole group and
    /// moving it into the slot went through a stack copy of all six lines. Its filter must
    /// have been released (`release` does).
    fn reset(&mut self, client: IpAddr, rd: &str, ts: Nanos) {
        self.client = client;
        self.domain.set(rd.as_bytes());
        self.server = client;
        self.saw_query = false;
        self.live = true;
        self.last_seen = ts;
        self.seen = Seen::Empty;
        self.example.clear();
        self.w = Window { start: ts, last: ts, ..Window::default() };
        self.last_query = 0;
        self.quiet_until = 0;
        self.long_start = ts;
        self.h_start = ts;
        self.h_queries = 0;
        self.info_bits = 0.0;
        self.info_alerted = 0.0;
        self.long_queries = 0;
        self.long_distinct = 0;
        // Another group's earlier half says nothing of this one's: the box goes.
        self.earlier = None;
        self.prev_name.clear();
    }

    fn earlier(&self) -> &Window {
        self.earlier.as_deref().unwrap_or(&EMPTY_WINDOW)
    }

    /// The window slides: `old`, the half that just ended, becomes the earlier half while
    /// `now` is within a window of its start.
    fn set_earlier(&mut self, old: Window, now: Nanos, window: Nanos) {
        let in_view = now < old.start.saturating_add(window);
        match (&mut self.earlier, in_view) {
            (Some(e), true) => **e = old,
            (Some(e), false) => **e = Window::default(),
            (None, true) => self.earlier = Some(Box::new(old)),
            (None, false) => {}
        }
    }
}

/// A slot's neighbours in the recency list (`NIL` at either end) and its key's hash.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    hash: u64,
}

#[derive(Debug, Default)]
struct Client {
    /// Groups of this client in the table; the client leaves with its last group.
    groups: u32,
    w_start: Nanos,
    queries: u32,
    distinct_domains: u32,
    server: Option<IpAddr>,
    alerted: bool,
}

pub struct TunnelDetector {
    cfg: TunnelConfig,
    suffixes: SuffixList,
    allow: DomainAllowList,
    /// Allowlist and registered-domain answers for recent names.
    names: NameCache,
    clients: HashMap<IpAddr, Client, FastRandom>,
    /// Groups by slot; a slot on `free` holds a dead group (`live` false).
    slots: Vec<Group>,
    /// Beside each slot: its links in the recency list and its key's hash. Small and dense,
    /// so the relinking on every message stays in cache where the groups themselves do not;
    /// removal reads the hash where it unlinks.
    links: Vec<Link>,
    /// Slot numbers of live groups, by the hash of (client, registered domain). A probe
    /// checks a candidate's hash in `links` before reading its group: the line a hit then
    /// relinks anyway, and no third array beside the slab.
    index: hashbrown::HashTable<u32>,
    hasher: FastRandom,
    free: Vec<u32>,
    /// Most recently seen group, and least recently seen.
    head: u32,
    tail: u32,
    live: usize,
    /// The latest packet time any group was seen at: when even that is a horizon old, every
    /// group is idle.
    newest_seen: Nanos,
    blooms: Blooms,
    reputation_seen: HashMap<(IpAddr, Box<str>), Nanos, FastRandom>,
    stats: TunnelStats,
}

/// One feature as the score and the alert see it.
#[derive(Clone, Copy, Debug)]
struct Feature {
    name: &'static str,
    value: f64,
    threshold: f64,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Shape,
    Volume,
    Standalone,
    /// Reported, never scored.
    Info,
}

impl Feature {
    fn crossed(&self) -> bool {
        self.kind != Kind::Info && self.threshold > 0.0 && self.value >= self.threshold
    }
    fn ratio(&self) -> f64 {
        if self.crossed() {
            (self.value / self.threshold).min(2.0)
        } else {
            0.0
        }
    }
}

const N_FEATURES: usize = 15;
/// Where `group_features` puts `info_bytes_horizon`.
const HORIZON_FEATURE: usize = 12;

/// The shipped allowlist (unless turned off) and the configured entries.
fn domain_allowlist(cfg: &TunnelConfig) -> DomainAllowList {
    let mut allow = if cfg.use_default_allowlist {
        DomainAllowList::parse(DEFAULT_ALLOWLIST)
    } else {
        DomainAllowList::default()
    };
    for e in &cfg.domain_allowlist {
        allow.extend_text(e);
    }
    allow
}

impl TunnelDetector {
    pub fn new(cfg: TunnelConfig) -> Result<Self, String> {
        let suffixes = match &cfg.psl_file {
            Some(p) => SuffixList::File(SuffixSet::load(p)?),
            None => SuffixList::Builtin,
        };
        let reserve = cfg.max_groups.clamp(1, MAX_RESERVED_GROUPS);
        Ok(TunnelDetector {
            allow: domain_allowlist(&cfg),
            names: NameCache::default(),
            cfg,
            suffixes,
            clients: HashMap::default(),
            // Reserved up front (address space only: pages are touched as groups arrive).
            // Grown by doubling, the slab was copied and its fresh pages zeroed again at
            // every step: 12% of a replay's time while the first 65k groups filled.
            slots: Vec::with_capacity(reserve),
            links: Vec::with_capacity(reserve),
            index: hashbrown::HashTable::with_capacity(reserve),
            hasher: FastRandom::default(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            live: 0,
            newest_seen: 0,
            blooms: Blooms::with_capacity(reserve),
            reputation_seen: HashMap::default(),
            stats: TunnelStats::default(),
        })
    }

    /// Takes new feeds and allowlists (SIGHUP). Groups, windows and the reputation
    /// de-duplication pairs stay: a window that was filling keeps filling.
    pub fn set_lists(&mut self, lists: &crate::detect::lists::Lists) {
        lists.apply_tunnel(&mut self.cfg);
        self.allow = domain_allowlist(&self.cfg);
        self.names.clear();
    }

    pub fn stats(&self) -> TunnelStats {
        TunnelStats { groups: self.live, clients: self.clients.len(), ..self.stats }
    }

    pub fn on_dns(&mut self, ev: &DnsEvent, out: &mut Vec<Alert>) {
        self.stats.messages += 1;
        let Some(q) = ev.msg.questions.first() else {
            self.stats.skipped += 1;
            return;
        };
        let raw = q.name.trim_end_matches('.');
        if raw.len() > MAX_NAME_TEXT || raw.is_empty() {
            self.stats.skipped += 1;
            return;
        }
        // Most names arrive lowercase already; copy only the others. ASCII lowercasing keeps
        // UTF-8 valid and byte offsets unchanged.
        // A stack buffer of a full MAX_NAME_TEXT was zeroed on every message; names over
        // 256 bytes of text are rare enough to allocate.
        let mut small: [u8; 256];
        let long;
        let raw_is_lower = !has_ascii_upper(raw.as_bytes());
        let lower = if !raw_is_lower {
            small = [0u8; 256];
            if let Some(dst) = small.get_mut(..raw.len()) {
                dst.copy_from_slice(raw.as_bytes());
                dst.make_ascii_lowercase();
                let Ok(l) = std::str::from_utf8(dst) else { return };
                l
            } else {
                long = raw.to_ascii_lowercase();
                long.as_str()
            }
        } else {
            raw
        };

        if self.cfg.reputation.is_some() {
            self.check_reputation(ev, raw, lower, out);
        }
        if self.cfg.client_allowlist.contains(ev.client) {
            self.stats.allowlisted_client += 1;
            return;
        }
        let (class, cached) = self.names.class(lower, &self.allow, &self.suffixes);
        if class.allowed {
            self.stats.allowlisted_domain += 1;
            return;
        }
        let rd = class.registered_domain(lower);
        let tag = domain::client_tag(ev.client);
        let hint = self.names.group(cached, tag);
        let idx = self.group_index(ev.client, rd, ev.ts, hint);
        if hint != Some(idx) {
            self.names.set_group(cached, idx, tag);
        }
        let cfg = &self.cfg;
        let Some(g) = self.slots.get_mut(idx as usize) else {
            return;
        };
        g.last_seen = g.last_seen.max(ev.ts);
        self.newest_seen = self.newest_seen.max(ev.ts);
        g.server = ev.server;
        let counts_query = !ev.msg.response || !g.saw_query;
        if !ev.msg.response {
            g.saw_query = true;
        }
        let half = (cfg.window / 2).max(1);
        if ev.ts >= g.w.start.saturating_add(half) {
            let fresh = Window { start: ev.ts, ..Window::default() };
            let old = std::mem::replace(&mut g.w, fresh);
            g.set_earlier(old, ev.ts, cfg.window);
        }
        g.w.last = g.w.last.max(ev.ts);
        if ev.ts >= g.h_start.saturating_add(cfg.horizon) {
            g.h_start = ev.ts;
            g.h_queries = 0;
            g.info_bits = 0.0;
            g.info_alerted = 0.0;
            g.seen.release(&mut self.blooms);
            g.prev_name.clear();
        }
        if ev.ts >= g.long_start.saturating_add(cfg.long_name_span) {
            g.long_start = ev.ts;
            g.long_queries = 0;
            g.long_distinct = 0;
        }
        let prev_query = g.last_query;
        if counts_query {
            g.last_query = ev.ts;
            // The subdomain: what is left of the registered domain and its joining dot.
            let sub = raw.get(..raw.len().saturating_sub(rd.len() + 1)).unwrap_or("");
            let f = if raw_is_lower {
                self.names.features(cached, || features::name_features(sub))
            } else {
                features::name_features(sub)
            };
            count_query(g, &mut self.blooms, cfg, raw, sub, &f, q.qtype);
        }
        if ev.msg.response {
            g.w.responses += 1;
            if ev.msg.rcode == 3 {
                g.w.nxdomain += 1;
            }
            g.w.bytes_down += ev.msg.answer_rdata_bytes as u64;
            let tn =
                ev.msg.answers.iter().filter(|r| r.rtype == rtype::TXT || r.rtype == rtype::NULL).count();
            g.w.txt_null_answers = g.w.txt_null_answers.saturating_add(tn as u32);
        }
        if ev.ts >= g.quiet_until && may_alert(g, cfg) {
            let fs = group_features(g, cfg);
            let (score, info_crossed) = score(&fs, cfg, g);
            if score >= cfg.threshold {
                g.quiet_until = ev.ts.saturating_add(cfg.window);
                if info_crossed {
                    g.info_alerted = g.info_bits / 8.0;
                }
                out.push(tunnel_alert(ev.ts, g, &fs, score, cfg));
                self.stats.alerts_tunneling += 1;
            }
        }
        if counts_query {
            self.count_client_query(ev, prev_query, out);
        }
    }

    /// Drops groups idle for a whole horizon, and reputation pairs older than a window.
    pub fn expire(&mut self, now: Nanos, _out: &mut Vec<Alert>) {
        if self.live > 0 && self.newest_seen.saturating_add(self.cfg.horizon) <= now {
            // Every group is idle (the end of input's expiry, or a long gap in a capture):
            // the walk below would remove them all, unlinking and unhashing each.
            self.clear_groups();
        }
        self.expire_tail(now);
        let window = self.cfg.window;
        self.reputation_seen.retain(|_, t| t.saturating_add(window) > now);
    }

    /// Removes idle groups from the tail of the recency list, one by one.
    fn expire_tail(&mut self, now: Nanos) {
        while self.tail != NIL {
            let idle = match self.slots.get(self.tail as usize) {
                Some(g) if g.live => g.last_seen.saturating_add(self.cfg.horizon) <= now,
                _ => break,
            };
            if !idle {
                break;
            }
            self.remove_group(self.tail);
            self.stats.expired += 1;
        }
    }

    /// Expires every group at once, counted as `expire_tail` would count them. Keeps the
    /// tables' capacity: their pages are touched already.
    fn clear_groups(&mut self) {
        self.stats.expired += self.live as u64;
        self.slots.clear();
        self.links.clear();
        self.index.clear();
        self.free.clear();
        self.blooms.clear();
        // A client is in the map only while it has a group.
        self.clients.clear();
        self.head = NIL;
        self.tail = NIL;
        self.live = 0;
    }

    /// Finds or creates the group, moving it to the front of the recency list. `hint` is a
    /// slot that may hold it (where the name's last message found its group: a response
    /// follows its query); a live group with the same key is the one the index would find,
    /// since keys are unique, and then the hash and the probe are skipped.
    fn group_index(&mut self, client: IpAddr, rd: &str, ts: Nanos, hint: Option<u32>) -> u32 {
        if let Some(i) = hint {
            if slot_holds(&self.slots, i, client, rd) {
                self.touch(i);
                return i;
            }
        }
        let h = self.hasher.hash_one((client, rd));
        let (slots, links) = (&self.slots, &self.links);
        let found = self.index.find(h, |&i| {
            links.get(i as usize).map(|l| l.hash) == Some(h) && slot_holds(slots, i, client, rd)
        });
        if let Some(&i) = found {
            self.touch(i);
            return i;
        }
        self.new_group(client, rd, ts, h)
    }

    /// Creates the group, evicting the least recently seen at the cap. Kept out of line:
    /// the group it builds is 64-byte aligned, and building it inside `on_dns` made every
    /// message pay for realigning that frame.
    #[inline(never)]
    fn new_group(&mut self, client: IpAddr, rd: &str, ts: Nanos, h: u64) -> u32 {
        if self.live >= self.cfg.max_groups.max(1) && self.tail != NIL {
            self.remove_group(self.tail);
            self.stats.evictions += 1;
        }
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(g) = self.slots.get_mut(i as usize) {
                    g.reset(client, rd, ts);
                }
                if let Some(l) = self.links.get_mut(i as usize) {
                    l.hash = h;
                }
                i
            }
            None => {
                // Built by the iterator where `extend` writes it, past the capacity check:
                // `push` took a finished group and so built it on the stack and copied it.
                self.slots.extend(std::iter::once_with(|| Group::new(client, rd, ts)));
                self.links.push(Link { prev: NIL, next: NIL, hash: h });
                (self.slots.len() - 1) as u32
            }
        };
        let links = &self.links;
        self.index.insert_unique(h, i, |&j| links.get(j as usize).map_or(0, |l| l.hash));
        self.clients.entry(client).or_default().groups += 1;
        self.live += 1;
        self.link_front(i);
        i
    }

    fn touch(&mut self, i: u32) {
        if self.head == i {
            return;
        }
        self.unlink(i);
        self.link_front(i);
    }

    fn links(&self, i: u32) -> (u32, u32) {
        self.links.get(i as usize).map_or((NIL, NIL), |l| (l.prev, l.next))
    }

    fn set_links(&mut self, i: u32, prev: Option<u32>, next: Option<u32>) {
        if let Some(l) = self.links.get_mut(i as usize) {
            if let Some(p) = prev {
                l.prev = p;
            }
            if let Some(n) = next {
                l.next = n;
            }
        }
    }

    fn unlink(&mut self, i: u32) {
        let (p, n) = self.links(i);
        if p != NIL {
            self.set_links(p, None, Some(n));
        } else {
            self.head = n;
        }
        if n != NIL {
            self.set_links(n, Some(p), None);
        } else {
            self.tail = p;
        }
        self.set_links(i, Some(NIL), Some(NIL));
    }

    fn link_front(&mut self, i: u32) {
        let old = self.head;
        self.set_links(i, Some(NIL), Some(old));
        if old != NIL {
            self.set_links(old, Some(i), None);
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn remove_group(&mut self, i: u32) {
        self.unlink(i);
        // Left where it lies, dead: taking it out first copied the whole group.
        let Some(g) = self.slots.get_mut(i as usize).filter(|g| g.live) else {
            return;
        };
        let client = g.client;
        g.release(&mut self.blooms);
        let h = self.links.get(i as usize).map_or(0, |l| l.hash);
        if let Ok(e) = self.index.find_entry(h, |&j| j == i) {
            e.remove();
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.groups = c.groups.saturating_sub(1);
            if c.groups == 0 {
                self.clients.remove(&client);
            }
        }
        self.free.push(i);
        self.live -= 1;
    }

    /// The slot of the group of (client, registered domain), if there is one.
    #[cfg(test)]
    fn slot_of(&self, client: IpAddr, rd: &str) -> Option<u32> {
        self.slots
            .iter()
            .position(|g| g.live && g.client == client && g.domain.as_str() == rd)
            .map(|i| i as u32)
    }

    fn count_client_query(&mut self, ev: &DnsEvent, prev_query: Nanos, out: &mut Vec<Alert>) {
        let cfg = &self.cfg;
        let Some(c) = self.clients.get_mut(&ev.client) else {
            return;
        };
        if ev.ts >= c.w_start.saturating_add(cfg.window) || c.queries == 0 {
            c.w_start = ev.ts;
            c.queries = 0;
            c.distinct_domains = 0;
            c.alerted = false;
        }
        c.queries += 1;
        c.server = Some(ev.server);
        // First query to this registered domain in the client's window.
        if prev_query == 0 || prev_query < c.w_start {
            c.distinct_domains += 1;
        }
        if !c.alerted && c.queries >= cfg.burst_queries && c.distinct_domains >= cfg.burst_domains {
            c.alerted = true;
            let mut doc = alert_base(
                ev.ts,
                "dns_query_burst",
                47,
                ("T1071", "Application Layer Protocol"),
                ("T1071.004", "DNS"),
            );
            doc.insert("source.ip", ev.client);
            doc.insert("destination.ip", ev.server);
            doc.insert("portent.window.start", Field::Time(c.w_start));
            doc.insert("portent.window.end", Field::Time(c.w_start.saturating_add(cfg.window)));
            doc.insert("portent.burst.queries", c.queries);
            doc.insert("portent.burst.queries_threshold", cfg.burst_queries);
            doc.insert("portent.burst.registered_domains", c.distinct_domains);
            doc.insert("portent.burst.registered_domains_threshold", cfg.burst_domains);
            doc.insert(
                "event.reason",
                format!(
                    "{} sent {} DNS queries across {} registered domains within {} s \
                     (thresholds: {} queries, {} domains)",
                    ev.client,
                    c.queries,
                    c.distinct_domains,
                    cfg.window / NANOS_PER_SEC,
                    cfg.burst_queries,
                    cfg.burst_domains
                ),
            );
            out.push(Alert { ts: ev.ts, rule: "dns_query_burst", client: ev.client, doc });
            self.stats.alerts_burst += 1;
        }
    }

    fn check_reputation(&mut self, ev: &DnsEvent, raw: &str, lower: &str, out: &mut Vec<Alert>) {
        let Some(feed) = self.cfg.reputation.clone() else {
            return;
        };
        let Some(listed) = feed.matching(lower) else {
            return;
        };
        let key = (ev.client, Box::<str>::from(listed));
        if let Some(&t) = self.reputation_seen.get(&key) {
            if ev.ts < t.saturating_add(self.cfg.window) {
                return;
            }
        }
        if self.reputation_seen.len() >= self.cfg.max_reputation_pairs.max(1)
            && !self.reputation_seen.contains_key(&key)
        {
            let window = self.cfg.window;
            let before = self.reputation_seen.len();
            self.reputation_seen.retain(|_, t| t.saturating_add(window) > ev.ts);
            if self.reputation_seen.len() >= self.cfg.max_reputation_pairs.max(1) {
                self.reputation_seen.clear();
            }
            self.stats.reputation_evictions += (before - self.reputation_seen.len()) as u64;
        }
        self.reputation_seen.insert(key, ev.ts);
        let rd = registered_domain(lower, &self.suffixes);
        let mut doc = alert_base(
            ev.ts,
            "dns_reputation",
            73,
            ("T1071", "Application Layer Protocol"),
            ("T1071.004", "DNS"),
        );
        doc.insert("source.ip", ev.client);
        doc.insert("destination.ip", ev.server);
        doc.insert("dns.question.name", raw.to_string());
        doc.insert("dns.question.registered_domain", rd.to_string());
        doc.insert("portent.reputation.listed_domain", listed.to_string());
        doc.insert("portent.window.start", Field::Time(ev.ts));
        doc.insert("portent.window.end", Field::Time(ev.ts.saturating_add(self.cfg.window)));
        doc.insert(
            "event.reason",
            format!("{} looked up {raw}, under {listed} which the domain reputation feed lists", ev.client),
        );
        out.push(Alert { ts: ev.ts, rule: "dns_reputation", client: ev.client, doc });
        self.stats.alerts_reputation += 1;
    }
}

/// Whether `b` has an ASCII capital, eight bytes at a time: most names have none, and then
/// need no lowercase copy.
fn has_ascii_upper(b: &[u8]) -> bool {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let upper_in = |x: u64| {
        // With each byte's top bit cleared no addition carries into the next byte; bit 7 of
        // `y + 0x3f` is set from 'A' (0x41) on, of `y + 0x25` from past 'Z' (0x5a).
        let y = x & LOW7;
        let from_a = y.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
        let past_z = y.wrapping_add(0x2525_2525_2525_2525);
        from_a & !past_z & !x & HIGH != 0
    };
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if upper_in(u64::from_le_bytes(w)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|b| b.is_ascii_uppercase())
}

/// Whether slot `i` holds the live group of (`client`, `rd`).
#[inline]
fn slot_holds(slots: &[Group], i: u32, client: IpAddr, rd: &str) -> bool {
    matches!(slots.get(i as usize), Some(g) if g.live && g.client == client && g.domain.as_bytes() == rd.as_bytes())
}

fn count_query(
    g: &mut Group,
    blooms: &mut Blooms,
    cfg: &TunnelConfig,
    raw: &str,
    sub: &str,
    f: &NameFeatures,
    qtype: u16,
) {
    let w = &mut g.w;
    w.queries += 1;
    g.h_queries += 1;
    // Wire size of the name: one length byte per label plus the root byte.
    w.bytes_up += raw.len() as u64 + 2;
    w.sub_len_sum += f.sub_len as u64;
    w.max_sub = w.max_sub.max(f.sub_len);
    w.max_label = w.max_label.max(f.max_label);
    if f.sub_len > 0 {
        w.entropy_sum += f.entropy as f64;
        w.entropy_n += 1;
    }
    if let Some(a) = f.alphabet {
        if let Some(c) = (a as usize).checked_sub(1).and_then(|k| w.encoded.get_mut(k)) {
            *c += 1;
        }
    }
    if let Some(c) = type_slot(qtype).and_then(|s| w.types.get_mut(s)) {
        *c += 1;
    }
    if raw.len() > g.example.len() || g.example.is_empty() {
        g.example.set(raw.as_bytes());
    }
    if f.sub_len as usize >= cfg.single_query_len as usize
        && f.alphabet.is_some()
        && f.entropy as f64 >= cfg.single_query_entropy
    {
        w.single_query = true;
    }
    let long = f.sub_len >= cfg.subdomain_len;
    if long {
        g.long_queries += 1;
    }
    if sub.is_empty() || !g.seen.insert(f.fingerprint, blooms) {
        return;
    }
    w.distinct += 1;
    if long {
        g.long_distinct += 1;
    }
    // Zeroed only when needed: most names have no escape.
    let mut buf: [u8; PREV_CAP];
    let dec = match features::without_escapes(sub) {
        Some(d) => d,
        None => {
            buf = [0u8; PREV_CAP];
            let n = features::decode_into(sub, &mut buf);
            buf.get(..n).unwrap_or(&[])
        }
    };
    g.info_bits += features::info_bits(dec, g.prev_name.as_bytes(), f.entropy) as f64;
    g.prev_name.set(dec);
}

fn group_features(g: &Group, cfg: &TunnelConfig) -> [Feature; N_FEATURES] {
    let w = &g.earlier().merged(&g.w);
    let q = w.queries.max(1) as f64;
    let encoded: u32 = w.encoded.iter().sum();
    let unusual: u32 = w.types.iter().sum();
    let nx =
        if w.responses >= cfg.nxdomain_min_responses { w.nxdomain as f64 / w.responses as f64 } else { 0.0 };
    let entropy = if w.entropy_n > 0 { w.entropy_sum / w.entropy_n as f64 } else { 0.0 };
    let f = |name, value: f64, threshold: f64, kind| Feature { name, value, threshold, kind };
    let long_ratio = (g.long_queries as f64 / cfg.long_name_queries.max(1) as f64)
        .min(g.long_distinct as f64 / cfg.long_name_distinct.max(1) as f64);
    [
        f("max_subdomain_len", w.max_sub as f64, cfg.subdomain_len as f64, Kind::Shape),
        f("max_label_len", w.max_label as f64, cfg.label_len as f64, Kind::Shape),
        f("entropy", entropy, cfg.entropy, Kind::Shape),
        f("encoded_share", encoded as f64 / q, cfg.encoded_share, Kind::Shape),
        f("unusual_type_share", unusual as f64 / q, cfg.unusual_type_share, Kind::Shape),
        f("nxdomain_share", nx, cfg.nxdomain_share, Kind::Shape),
        f("queries", w.queries as f64, cfg.queries as f64, Kind::Volume),
        f("distinct_subdomains", w.distinct as f64, cfg.distinct_subdomains as f64, Kind::Volume),
        f("bytes_up", w.bytes_up as f64, cfg.bytes_up as f64, Kind::Volume),
        f("bytes_down", w.bytes_down as f64, cfg.bytes_down as f64, Kind::Volume),
        f("long_names", long_ratio, 1.0, Kind::Standalone),
        f("txt_null_answers", w.txt_null_answers as f64, cfg.txt_null_answers as f64 + 1.0, Kind::Standalone),
        f("info_bytes_horizon", g.info_bits / 8.0, cfg.info_bytes as f64, Kind::Standalone),
        f("single_query", if w.single_query { 1.0 } else { 0.0 }, 1.0, Kind::Standalone),
        f("mean_subdomain_len", w.sub_len_sum as f64 / q, 0.0, Kind::Info),
    ]
}

/// `S × V + threshold × R` (see the module docs), and whether the horizon rule counted.
/// The horizon rule counts again only after another `info_bytes` since the last alert it
/// was part of.
fn score(fs: &[Feature; N_FEATURES], cfg: &TunnelConfig, g: &Group) -> (f64, bool) {
    let (mut s, mut v, mut r, mut info) = (0.0, 0.0, 0.0, false);
    for (i, f) in fs.iter().enumerate() {
        match f.kind {
            Kind::Shape => s += f.ratio(),
            Kind::Volume => v += f.ratio(),
            // By position: comparing the name here ran for every feature of every message.
            Kind::Standalone if i == HORIZON_FEATURE => {
                if f.crossed() && f.value >= g.info_alerted + cfg.info_bytes as f64 {
                    r += f.ratio();
                    info = true;
                }
            }
            Kind::Standalone => r += f.ratio(),
            Kind::Info => {}
        }
    }
    (s * v + cfg.threshold * r, info)
}

/// False only when `score` cannot reach the threshold: with a positive threshold that
/// needs a volume feature (else `S × V` is 0) or a standalone rule. Reads the two halves
/// directly, as `Window::merged` would combine them, so the common message that crosses
/// nothing builds no feature array and no merged window; any doubt falls through to the
/// full score, which alone decides.
fn may_alert(g: &Group, cfg: &TunnelConfig) -> bool {
    if cfg.threshold.is_nan() || cfg.threshold <= 0.0 {
        return true;
    }
    let (e, w) = (g.earlier(), &g.w);
    // An empty half has every counter at zero, so plain sums equal what `merged` returns;
    // wrapping as the release build's `+=` does.
    let crosses_u32 = |a: u32, b: u32, t: u32| t > 0 && a.wrapping_add(b) >= t;
    // Converting to f64 keeps order, so an integer reaching the threshold converts to one
    // that does; a smaller one can convert equal only from 2^53 on.
    let crosses_u64 = |a: u64, b: u64, t: u64| {
        let x = a.wrapping_add(b);
        t > 0 && (x >= t || (x >= 1 << 53 && x as f64 >= t as f64))
    };
    if crosses_u32(e.queries, w.queries, cfg.queries)
        || crosses_u32(e.distinct, w.distinct, cfg.distinct_subdomains)
        || crosses_u64(e.bytes_up, w.bytes_up, cfg.bytes_up)
        || crosses_u64(e.bytes_down, w.bytes_down, cfg.bytes_down)
        || e.single_query
        || w.single_query
    {
        return true;
    }
    // In integers: for a, b < 2^32 with b >= 1, a / b rounds to at least 1.0 exactly when
    // a >= b (below, it is at most 1 - 2^-32, which f64 represents); a u32 plus one is exact
    // in f64, so reaching it is exceeding the u32.
    if g.long_queries >= cfg.long_name_queries.max(1) && g.long_distinct >= cfg.long_name_distinct.max(1) {
        return true;
    }
    let txt_null = w.txt_null_answers.saturating_add(e.txt_null_answers);
    if txt_null > cfg.txt_null_answers {
        return true;
    }
    let info = g.info_bits / 8.0;
    let info_threshold = cfg.info_bytes as f64;
    info_threshold > 0.0 && info >= info_threshold && info >= g.info_alerted + info_threshold
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Each feature's name with the keys of its value and threshold, so that an alert does not
/// format ~30 key strings. A feature missing here still gets its keys, formatted.
const FEATURE_KEYS: [(&str, &str, &str); N_FEATURES] = {
    macro_rules! keys {
        ($($name:literal),*) => {
            [$(($name, concat!("portent.tunnel.", $name), concat!("portent.tunnel.", $name, "_threshold"))),*]
        };
    }
    keys!(
        "max_subdomain_len",
        "max_label_len",
        "entropy",
        "encoded_share",
        "unusual_type_share",
        "nxdomain_share",
        "queries",
        "distinct_subdomains",
        "bytes_up",
        "bytes_down",
        "long_names",
        "txt_null_answers",
        "info_bytes_horizon",
        "single_query",
        "mean_subdomain_len"
    )
};

fn feature_keys(name: &'static str) -> (Key, Key) {
    match FEATURE_KEYS.iter().find(|k| k.0 == name) {
        Some(&(_, value, threshold)) => (value.into(), threshold.into()),
        None => (format!("portent.tunnel.{name}").into(), format!("portent.tunnel.{name}_threshold").into()),
    }
}

/// `feature_keys` for the feature at `i` of `group_features`, which reports them in the
/// table's order: the name is checked there first.
fn feature_keys_at(i: usize, name: &'static str) -> (Key, Key) {
    match FEATURE_KEYS.get(i) {
        Some(&(n, value, threshold)) if n == name => (value.into(), threshold.into()),
        _ => feature_keys(name),
    }
}

fn tunnel_alert(ts: Nanos, g: &Group, fs: &[Feature; N_FEATURES], score: f64, cfg: &TunnelConfig) -> Alert {
    use crate::output::num;
    let severity = if score >= 2.0 * cfg.threshold { 73 } else { 47 };
    let mut doc = alert_base(
        ts,
        "dns_tunneling",
        severity,
        ("T1071", "Application Layer Protocol"),
        ("T1071.004", "DNS"),
    );
    let w = &g.earlier().merged(&g.w);
    doc.insert("source.ip", g.client);
    doc.insert("destination.ip", g.server);
    doc.insert("dns.question.registered_domain", g.domain.as_str().to_string());
    doc.insert("dns.question.name", String::from_utf8_lossy(g.example.as_bytes()).into_owned());
    doc.insert("portent.window.start", Field::Time(w.start));
    doc.insert("portent.window.end", Field::Time(w.last));
    doc.insert("portent.tunnel.score", round2(score));
    doc.insert("portent.tunnel.threshold", cfg.threshold);
    doc.insert("portent.tunnel.queries", w.queries);
    doc.insert("portent.tunnel.responses", w.responses);
    let secs = (w.last.saturating_sub(w.start) as f64 / NANOS_PER_SEC as f64).max(1.0);
    doc.insert("portent.tunnel.query_rate_per_min", round2(w.queries as f64 * 60.0 / secs));
    let (best, best_n) = (1..5usize)
        .filter_map(|i| w.encoded.get(i - 1).map(|&n| (i, n)))
        .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
        .unwrap_or((0, 0));
    let alphabet = match best {
        1 => Alphabet::Hex,
        2 => Alphabet::Base32,
        3 => Alphabet::Base64,
        4 => Alphabet::Binary,
        _ => Alphabet::Plain,
    };
    doc.insert("portent.tunnel.encoded_alphabet", if best_n > 0 { alphabet.name() } else { "none" });
    for (key, n) in TYPE_KEYS.iter().zip(w.types) {
        doc.insert(*key, n);
    }
    doc.insert("portent.tunnel.txt_null_answers", w.txt_null_answers);
    doc.insert("portent.tunnel.long_name_queries", g.long_queries);
    doc.insert("portent.tunnel.long_name_distinct", g.long_distinct);
    doc.insert("portent.tunnel.long_name_queries_threshold", cfg.long_name_queries);
    doc.insert("portent.tunnel.long_name_distinct_threshold", cfg.long_name_distinct);
    doc.insert("portent.tunnel.horizon_queries", g.h_queries);
    doc.insert("portent.tunnel.horizon_start", Field::Time(g.h_start));
    // event.reason, written piece by piece (`format!` cost more than the rest of the
    // alert): "{client} sent {queries} queries ({distinct} new names, longest subdomain
    // {max_sub} bytes, mean entropy {:.2}, {:.0}% {alphabet}-encoded) under {domain} in {:.0}
    // s, about {:.0} bytes of information this horizon; score {:.2} ≥ {threshold} from:
    // {name} {value} ≥ {threshold}, ..." with the values and thresholds rounded to hundredths.
    let mut reason = String::with_capacity(512);
    num::ip(&g.client, &mut reason);
    reason.push_str(" sent ");
    num::u64(u64::from(w.queries), &mut reason);
    reason.push_str(" queries (");
    num::u64(u64::from(w.distinct), &mut reason);
    reason.push_str(" new names, longest subdomain ");
    num::u64(u64::from(w.max_sub), &mut reason);
    reason.push_str(" bytes, mean entropy ");
    num::fixed(if w.entropy_n > 0 { w.entropy_sum / w.entropy_n as f64 } else { 0.0 }, 2, &mut reason);
    reason.push_str(", ");
    num::fixed(100.0 * w.encoded.iter().sum::<u32>() as f64 / w.queries.max(1) as f64, 0, &mut reason);
    reason.push_str("% ");
    reason.push_str(if best_n > 0 { alphabet.name() } else { "none" });
    reason.push_str("-encoded) under ");
    reason.push_str(g.domain.as_str());
    reason.push_str(" in ");
    num::fixed(secs, 0, &mut reason);
    reason.push_str(" s, about ");
    num::fixed(g.info_bits / 8.0, 0, &mut reason);
    reason.push_str(" bytes of information this horizon; score ");
    num::fixed(score, 2, &mut reason);
    reason.push_str(" ≥ ");
    num::display(cfg.threshold, &mut reason);
    reason.push_str(" from: ");
    let mut crossed = Vec::new();
    for (i, f) in fs.iter().enumerate() {
        let (key, threshold_key) = feature_keys_at(i, f.name);
        let value =
            if f.value.fract() == 0.0 { Field::from(f.value as u64) } else { Field::from(round2(f.value)) };
        doc.insert(key, value);
        if f.kind != Kind::Info {
            doc.insert(threshold_key, round2(f.threshold));
        }
        if f.crossed() {
            if !crossed.is_empty() {
                reason.push_str(", ");
            }
            crossed.push(Field::from(f.name));
            reason.push_str(f.name);
            reason.push(' ');
            num::display(round2(f.value), &mut reason);
            reason.push_str(" ≥ ");
            num::display(round2(f.threshold), &mut reason);
        }
    }
    doc.insert("portent.tunnel.crossed", Field::List(crossed));
    doc.insert("event.reason", reason);
    Alert { ts, rule: "dns_tunneling", client: g.client, doc }
}

#[cfg(test)]
mod tests;
