//! Registered domains: the Public Suffix List (compiled in, or a newer file from the
//! configuration) and the domain allowlist.
//!
//! Everything here works on names already lowercased into a caller's buffer, in the
//! presentation form `crate::dns` produces: a bare `.` always separates labels (a dot inside
//! a label arrives escaped as `\046`), so splitting on `.` is safe.

use super::features::NameFeatures;
use std::collections::HashSet;

/// A public suffix list parsed from the standard `public_suffix_list.dat` text: plain rules
/// (`co.uk`), wildcards (`*.ck`) and exceptions (`!www.ck`). ICANN and private sections are
/// both used, as the compiled-in list does. Rules are stored lowercased as written; the
/// list carries both Unicode and, for most IDN suffixes, no punycode form, so a name on the
/// wire (`xn--...`) only matches a punycode rule. Good enough for grouping: an unmatched
/// suffix falls back to the last label, as for any unknown TLD.
#[derive(Clone, Debug, Default)]
pub struct SuffixSet {
    rules: HashSet<String, crate::FastRandom>,
    /// `*.ck` stored as `ck`: every direct child of it is a public suffix.
    wildcards: HashSet<String, crate::FastRandom>,
    /// `!www.ck` stored as `www.ck`: not a public suffix although a wildcard covers it.
    exceptions: HashSet<String, crate::FastRandom>,
}

impl SuffixSet {
    /// Parses the list. Per the format, a rule is the first whitespace-separated word of a
    /// line; `//` starts a comment line. Returns an error when no rule was found, which is
    /// what a wrong file (HTML error page, empty file) looks like.
    pub fn parse(text: &str) -> Result<SuffixSet, String> {
        let mut s = SuffixSet::default();
        for line in text.lines() {
            let Some(word) = line.split_whitespace().next() else {
                continue;
            };
            if word.starts_with("//") {
                continue;
            }
            let word = word.trim_end_matches('.').to_lowercase();
            if let Some(rest) = word.strip_prefix('!') {
                s.exceptions.insert(rest.to_string());
            } else if let Some(rest) = word.strip_prefix("*.") {
                s.wildcards.insert(rest.to_string());
            } else if !word.is_empty() {
                s.rules.insert(word);
            }
        }
        if s.rules.is_empty() && s.wildcards.is_empty() {
            return Err("no public suffix rules found".into());
        }
        Ok(s)
    }

    pub fn load(path: &std::path::Path) -> Result<SuffixSet, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("public suffix list {}: {e}", path.display()))?;
        SuffixSet::parse(&text).map_err(|e| format!("public suffix list {}: {e}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.rules.len() + self.wildcards.len() + self.exceptions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte offset in `name` where its public suffix starts, or None when no rule matches.
    /// Walks from the longest candidate to the shortest, so the first hit is the longest
    /// matching rule; an exception is always longer than the wildcard it excepts, so it is
    /// met first.
    fn suffix_start(&self, name: &str) -> Option<usize> {
        let mut start = 0;
        loop {
            let cand = name.get(start..)?;
            if self.exceptions.contains(cand) {
                // The suffix is the exception minus its first label.
                return cand.find('.').map(|i| start + i + 1);
            }
            if self.rules.contains(cand) {
                return Some(start);
            }
            if let Some(i) = cand.find('.') {
                if self.wildcards.contains(&cand[i + 1..]) {
                    return Some(start);
                }
                start += i + 1;
            } else {
                return None;
            }
        }
    }
}

/// Which list decides public suffixes.
#[derive(Clone, Debug, Default)]
pub enum SuffixList {
    /// The list compiled into the `psl` crate.
    #[default]
    Builtin,
    File(SuffixSet),
}

/// The registered domain of `name` (lowercase, presentation form, no trailing dot): the
/// public suffix plus one label. Borrowed from `name`.
///
/// - Under a known suffix: suffix + one label (`a.b.example.co.uk` → `example.co.uk`); a
///   name that is itself a suffix is its own registered domain.
/// - Under an unknown but TLD-shaped last label (letters only, or `xn--`: `.local`,
///   `.test`, iodine's `pirate.sea`, bare labels): the last two labels.
/// - Unrooted names, whose last label cannot be a TLD (digits, escapes, `=`...): the first
///   label. Such names cannot be routed by any resolver, so they only reach a server sent
///   to it directly; dnscat2's direct mode is exactly that (`dnscat.<hex>.<hex>`), and
///   grouping by the first label keeps a session in one group instead of one group per
///   query.
pub fn registered_domain<'a>(name: &'a str, list: &SuffixList) -> &'a str {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return ".";
    }
    let known_start = match list {
        SuffixList::Builtin => {
            psl::suffix(name.as_bytes()).filter(|s| s.is_known()).map(|s| name.len() - s.as_bytes().len())
        }
        SuffixList::File(set) => set.suffix_start(name),
    };
    match known_start {
        Some(0) => name,
        Some(start) => {
            // start points just past a '.', so start >= 2 and start - 1 is that dot.
            let before = name.get(..start.saturating_sub(1)).unwrap_or("");
            let label_start = after_last_dot(before);
            name.get(label_start..).unwrap_or(name)
        }
        None => {
            let last_start = after_last_dot(name);
            let last = name.get(last_start..).unwrap_or("");
            if !tld_shaped(last) {
                return name.split('.').next().unwrap_or(name);
            }
            if last_start == 0 {
                return name;
            }
            let before = name.get(..last_start - 1).unwrap_or("");
            let start = after_last_dot(before);
            name.get(start..).unwrap_or(name)
        }
    }
}

/// Where the last label of `name` starts: just past its last dot, or 0.
///
/// A plain byte loop: labels are short, and `str::rfind(char)` goes through a generic
/// searcher whose set-up cost more than the scan (5% of a replay's instructions).
pub fn after_last_dot(name: &str) -> usize {
    name.as_bytes().iter().rposition(|&b| b == b'.').map_or(0, |i| i + 1)
}

/// A label that could be a top-level domain: ASCII letters only, or an IDN `xn--` label.
fn tld_shaped(label: &str) -> bool {
    if label.is_empty() || label.len() > 63 {
        return false;
    }
    if let Some(rest) = label.strip_prefix("xn--") {
        return rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    }
    label.bytes().all(|b| b.is_ascii_alphabetic())
}

/// The default domain allowlist shipped with portent; each entry says why it is there.
pub const DEFAULT_ALLOWLIST: &str = include_str!("../default_allowlist.txt");

/// Domains (and underscore labels) whose names legitimately look encoded.
///
/// A domain entry matches the domain itself and every name under it. An entry that is a
/// single label starting with `_` (`_domainkey`, `_tcp`) matches any name that has that
/// label anywhere, since DKIM selectors and DNS-SD service names sit under every domain.
#[derive(Clone, Debug, Default)]
pub struct DomainAllowList {
    domains: HashSet<String, crate::FastRandom>,
    labels: HashSet<String, crate::FastRandom>,
    /// The most labels any domain entry has: a lookup only tries that many trailing labels.
    max_labels: usize,
}

impl DomainAllowList {
    /// Same line format as the reputation feed: one entry a line, `#` comments.
    pub fn parse(text: &str) -> DomainAllowList {
        let mut a = DomainAllowList::default();
        a.extend_text(text);
        a
    }

    pub fn extend_text(&mut self, text: &str) {
        for line in text.lines() {
            let e = line.split('#').next().unwrap_or("").trim();
            let e = e.trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            self.add(&e);
        }
    }

    pub fn add(&mut self, entry: &str) {
        let e = entry.trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase();
        if e.starts_with('_') && !e.contains('.') {
            self.labels.insert(e);
        } else if !e.is_empty() {
            self.max_labels = self.max_labels.max(e.split('.').count());
            self.domains.insert(e);
        }
    }

    pub fn len(&self) -> usize {
        self.domains.len() + self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry that allows `name` (lowercase, no trailing dot), if any.
    pub fn matching<'a>(&'a self, name: &str) -> Option<&'a str> {
        if !self.labels.is_empty() && name.contains('_') {
            for label in name.split('.') {
                if let Some(l) = self.labels.get(label) {
                    return Some(l.as_str());
                }
            }
        }
        if self.domains.is_empty() {
            return None;
        }
        // Try the trailing 1..=max_labels labels, shortest first.
        let mut end_labels = 0;
        let mut pos = name.len();
        loop {
            let start = name.get(..pos).map_or(0, after_last_dot);
            end_labels += 1;
            if let Some(d) = name.get(start..).and_then(|c| self.domains.get(c)) {
                return Some(d.as_str());
            }
            if start == 0 || end_labels >= self.max_labels {
                return None;
            }
            pos = start - 1;
        }
    }
}

/// What the tunnel detector needs of a name before it finds the group: whether the domain
/// allowlist covers it, and where its registered domain lies in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameClass {
    pub allowed: bool,
    pub rd_start: u16,
    pub rd_len: u16,
}

impl NameClass {
    /// Classifies `name` (lowercase, no trailing dot, not empty).
    pub fn of(name: &str, allow: &DomainAllowList, list: &SuffixList) -> NameClass {
        if allow.matching(name).is_some() {
            return NameClass { allowed: true, rd_start: 0, rd_len: 0 };
        }
        let rd = registered_domain(name, list);
        // `rd` is borrowed from `name` (a suffix, or the first label), so its offset is the
        // distance between the two pointers.
        let start = (rd.as_ptr() as usize).wrapping_sub(name.as_ptr() as usize);
        if start.saturating_add(rd.len()) > name.len() {
            // Only the empty name's "." is not part of it.
            return NameClass { allowed: false, rd_start: 0, rd_len: name.len() as u16 };
        }
        NameClass { allowed: false, rd_start: start as u16, rd_len: rd.len() as u16 }
    }

    /// The registered domain within the `name` this class was made for.
    pub fn registered_domain<'a>(&self, name: &'a str) -> &'a str {
        let start = self.rd_start as usize;
        name.get(start..start + self.rd_len as usize).unwrap_or(name)
    }
}

/// Names up to this many bytes are cached; longer ones (tunnel payloads, mostly, which
/// never repeat) are classified afresh.
const CACHED_NAME: usize = 88;
const NAME_CACHE_SLOTS: usize = 1024;

/// Two cache lines: the name, its class, once a query needed them its subdomain's
/// features, and the slot of the group that last took the name with its client's tag.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct CachedName {
    len: u8,
    name: [u8; CACHED_NAME],
    class: NameClass,
    features: Option<NameFeatures>,
    group: u32,
    /// `client_tag` of that group's client: a popular name comes from many clients, and
    /// reading another client's group to find it is not ours cost a cache miss each time.
    client: u32,
}

/// A client address folded to 32 bits: equal addresses give equal tags.
pub fn client_tag(ip: std::net::IpAddr) -> u32 {
    match ip {
        std::net::IpAddr::V4(a) => a.to_bits(),
        std::net::IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u32) ^ ((b >> 32) as u32) ^ ((b >> 64) as u32) ^ ((b >> 96) as u32)
        }
    }
}

/// `CachedName::group` when no group has taken the name since it was cached.
const NO_GROUP: u32 = u32::MAX;

/// A direct-mapped cache of `NameClass` and `NameFeatures` by name. Every name is seen at
/// least twice (query and response) and popular names far more often, while the
/// allowlist's hash probes, the public suffix match and the features cost hundreds of
/// instructions a name. Both depend only on the name and the two lists, so the owner clears
/// the cache whenever a list changes.
pub struct NameCache {
    slots: Box<[CachedName]>,
}

impl Default for NameCache {
    fn default() -> Self {
        let empty = CachedName {
            len: 0,
            name: [0; CACHED_NAME],
            class: NameClass::default(),
            features: None,
            group: NO_GROUP,
            client: 0,
        };
        NameCache { slots: vec![empty; NAME_CACHE_SLOTS].into_boxed_slice() }
    }
}

impl NameCache {
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.len = 0;
        }
    }

    /// The class of `name` (lowercase, no trailing dot, not empty), from the cache or
    /// computed and remembered; with the slot that now holds `name`, if any.
    pub fn class(
        &mut self,
        name: &str,
        allow: &DomainAllowList,
        list: &SuffixList,
    ) -> (NameClass, Option<usize>) {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > CACHED_NAME {
            return (NameClass::of(name, allow, list), None);
        }
        let slot = (name_hash(b) >> 54) as usize % NAME_CACHE_SLOTS;
        let Some(e) = self.slots.get_mut(slot) else {
            return (NameClass::of(name, allow, list), None);
        };
        if e.len as usize == b.len() && e.name.get(..b.len()) == Some(b) {
            return (e.class, Some(slot));
        }
        let class = NameClass::of(name, allow, list);
        let Some(dst) = e.name.get_mut(..b.len()) else {
            return (class, None);
        };
        dst.copy_from_slice(b);
        e.len = b.len() as u8;
        e.class = class;
        e.features = None;
        e.group = NO_GROUP;
        (class, Some(slot))
    }

    /// The group slot last remembered with the name `class` returned `slot` for, if it was
    /// remembered for a client with the tag `client`. Only a hint: the slot may have been
    /// reused for another group since, or another client share the tag; the caller checks
    /// the key.
    pub fn group(&self, slot: Option<usize>, client: u32) -> Option<u32> {
        let e = self.slots.get(slot?)?;
        (e.group != NO_GROUP && e.client == client).then_some(e.group)
    }

    pub fn set_group(&mut self, slot: Option<usize>, group: u32, client: u32) {
        if let Some(e) = slot.and_then(|i| self.slots.get_mut(i)) {
            e.group = group;
            e.client = client;
        }
    }

    /// The features of the subdomain of the name `class` returned `slot` for: remembered, or
    /// computed by `compute` and remembered. Only for a name whose presentation form is the
    /// lowercase one cached (features see case).
    pub fn features(&mut self, slot: Option<usize>, compute: impl FnOnce() -> NameFeatures) -> NameFeatures {
        let Some(e) = slot.and_then(|i| self.slots.get_mut(i)) else {
            return compute();
        };
        if let Some(f) = e.features {
            return f;
        }
        let f = compute();
        e.features = Some(f);
        f
    }
}

/// A cheap hash of a short name, eight bytes at a time: it only spreads names over the
/// cache's slots, whose hits compare the whole name.
fn name_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h.wrapping_mul(K)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(name: &str) -> &str {
        registered_domain(name, &SuffixList::Builtin)
    }

    #[test]
    fn builtin_registered_domains() {
        assert_eq!(rd("a.b.example.com"), "example.com");
        assert_eq!(rd("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(rd("example.com."), "example.com");
        assert_eq!(rd("com"), "com");
        assert_eq!(rd("co.uk"), "co.uk");
        // Unknown TLD-shaped suffixes: last two labels.
        assert_eq!(rd("vaaaakardli.pirate.sea"), "pirate.sea");
        assert_eq!(rd("printer._ipp._tcp.local"), "_tcp.local");
        assert_eq!(rd("x.y.test"), "y.test");
        assert_eq!(rd("wpad"), "wpad");
        // Reverse DNS: in-addr.arpa is a public suffix.
        assert_eq!(rd("4.3.2.1.in-addr.arpa"), "1.in-addr.arpa");
        // dnscat2 direct mode: unrooted, grouped by the first label.
        assert_eq!(rd("dnscat.546b03f5.19e4d098dc8c"), "dnscat");
        assert_eq!(rd("dnscat.a35c00f5.edf0dbda"), "dnscat");
        // custom exfil under a made-up TLD-shaped suffix.
        assert_eq!(rd("h4sicn03*2qaa.4s2fgaaaa==-.test.txt"), "test.txt");
        assert_eq!(rd(""), ".");
        assert_eq!(rd("."), ".");
    }

    const MINI_PSL: &str = "// comment line\n\
        // ===BEGIN ICANN DOMAINS===\n\
        com\n\
        uk\n\
        co.uk\n\
        *.ck\n\
        !www.ck\n\
        \n\
        sea   trailing words are ignored\n";

    #[test]
    fn psl_file_parser() {
        let set = SuffixSet::parse(MINI_PSL).unwrap();
        assert_eq!(set.len(), 6);
        let list = SuffixList::File(set);
        let r = |n| registered_domain(n, &list);
        assert_eq!(r("a.b.example.com"), "example.com");
        assert_eq!(r("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(r("a.foo.uk"), "foo.uk");
        // Wildcard: every child of ck is a suffix.
        assert_eq!(r("a.b.c.ck"), "b.c.ck");
        // Exception: www.ck is registrable under ck.
        assert_eq!(r("a.www.ck"), "www.ck");
        // Listed in this file only: sea is now a public suffix.
        assert_eq!(r("x.pirate.sea"), "pirate.sea");
        // Not in this file: falls back to last two labels.
        assert_eq!(r("a.b.example.org"), "example.org");
        assert!(SuffixSet::parse("// nothing\n\n").is_err());
        assert!(SuffixSet::load(std::path::Path::new("/nonexistent/psl.dat")).is_err());
    }

    #[test]
    fn allowlist_domains_and_labels() {
        let a =
            DomainAllowList::parse("in-addr.arpa # reverse\n*.avqs.mcafee.com\n_domainkey\nSpamhaus.org.\n");
        assert_eq!(a.len(), 4);
        assert_eq!(a.matching("4.3.2.1.in-addr.arpa"), Some("in-addr.arpa"));
        assert_eq!(a.matching("0.1.2.3.zen.spamhaus.org"), Some("spamhaus.org"));
        assert_eq!(a.matching("abcdef.avqs.mcafee.com"), Some("avqs.mcafee.com"));
        assert_eq!(a.matching("www.mcafee.com"), None);
        assert_eq!(a.matching("sel1._domainkey.example.com"), Some("_domainkey"));
        assert_eq!(a.matching("notspamhaus.org"), None);
        assert_eq!(a.matching("arpa"), None);
    }

    #[test]
    fn default_allowlist_covers_the_documented_cases() {
        let a = DomainAllowList::parse(DEFAULT_ALLOWLIST);
        for n in [
            "4.3.2.1.in-addr.arpa",
            "b.a.9.8.ip6.arpa",
            "2.0.0.127.zen.spamhaus.org",
            "2.0.0.127.bl.spamcop.net",
            "2.0.0.127.dnsbl.sorbs.net",
            "2.0.0.127.b.barracudacentral.org",
            "0.sophosxl.net",
            "x.avqs.mcafee.com",
            "s1._domainkey.example.com",
            "_ipp._tcp.example.com",
            "_sip._udp.example.com",
            "iTunes_Ctrl_4ABB39A41EEFDEB3.local".to_ascii_lowercase().as_str(),
        ] {
            assert!(a.matching(n).is_some(), "{n}");
        }
        assert!(a.matching("www.example.com").is_none());
        assert!(a.matching("vaaaakardli.pirate.sea").is_none());
    }

    #[test]
    fn name_cache_returns_what_it_would_compute() {
        let allow = DomainAllowList::parse(DEFAULT_ALLOWLIST);
        let file = SuffixList::File(SuffixSet::parse(MINI_PSL).unwrap());
        let mut r = crate::testutil::Rng(11);
        for list in [SuffixList::Builtin, file] {
            let mut cache = NameCache::default();
            let parts = [
                "www",
                "a",
                "_tcp",
                "example",
                "co",
                "uk",
                "com",
                "in-addr",
                "arpa",
                "ck",
                "local",
                "spamhaus",
                "org",
                "3",
                "\\046x",
                "x".repeat(30).leak(),
                "0123456789abcdefghij",
            ];
            for _ in 0..50_000 {
                let n = 1 + r.below(5);
                let name: Vec<&str> = (0..n).map(|_| parts[r.below(parts.len())]).collect();
                let name = name.join(".");
                let (got, slot) = cache.class(&name, &allow, &list);
                assert_eq!(got, NameClass::of(&name, &allow, &list), "{name}");
                assert_eq!(slot.is_some(), name.len() <= CACHED_NAME, "{name}");
                let sub = &name[..name.len().saturating_sub(got.rd_len as usize + 1)];
                let want = super::super::features::name_features(sub);
                let f = cache.features(slot, || super::super::features::name_features(sub));
                assert_eq!(f, want, "{name}");
                if !got.allowed {
                    assert_eq!(got.registered_domain(&name), registered_domain(&name, &list), "{name}");
                } else {
                    assert!(allow.matching(&name).is_some());
                }
            }
            cache.clear();
            assert!(cache.slots.iter().all(|s| s.len == 0));
        }
    }

    /// The group hint and its client tag fit in the two lines a cached name had.
    #[test]
    fn a_cached_name_is_two_lines() {
        assert_eq!(std::mem::size_of::<CachedName>(), 128);
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_ne!(client_tag(v6), client_tag("2001:db8::2".parse().unwrap()));
        assert_eq!(client_tag("10.0.0.1".parse().unwrap()), 0x0a00_0001);
    }
}
