//! DomainReputationFeed: a list of known-bad domains, one a line, `#` comments allowed.
//! A name matches when it is a listed domain or lies under one.

use std::collections::HashSet;

#[derive(Clone, Debug, Default)]
pub struct DomainSet {
    domains: HashSet<String, crate::FastRandom>,
}

impl DomainSet {
    /// Parses the feed's text. Entries are lowercased; a trailing dot and a leading `*.` are
    /// dropped (both mean "this domain and everything under it").
    pub fn parse(text: &str) -> DomainSet {
        let domains = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| l.trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase())
            .filter(|l| !l.is_empty())
            .collect();
        DomainSet { domains }
    }

    pub fn load(path: &std::path::Path) -> std::io::Result<DomainSet> {
        Ok(DomainSet::parse(&std::fs::read_to_string(path)?))
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The listed domain that `name` is or lies under, if any.
    pub fn matching<'a>(&'a self, name: &str) -> Option<&'a str> {
        if self.domains.is_empty() {
            return None;
        }
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = lower.as_str();
        loop {
            if let Some(d) = self.domains.get(rest) {
                return Some(d.as_str());
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_domain_and_subdomains_only() {
        let s = DomainSet::parse("# feed\nDrivres-Update.info.\n*.softupdates.info  # APT28\n\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s.matching("drivres-update.info"), Some("drivres-update.info"));
        assert_eq!(s.matching("a.b.DRIVRES-update.info."), Some("drivres-update.info"));
        assert_eq!(s.matching("softupdates.info"), Some("softupdates.info"));
        assert_eq!(s.matching("notdrivres-update.info"), None);
        assert_eq!(s.matching("info"), None);
    }
}
