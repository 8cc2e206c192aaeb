//! The feeds and allowlists of both detectors: the settings a running sensor takes again
//! on SIGHUP without a restart. They only decide whether a record is looked at or how an
//! alert is graded, never the shape of any state table, so swapping them keeps the answer
//! cache, the tunnel windows and the de-duplication entries as they are.

use crate::detect::calc::CalcConfig;
use crate::detect::reputation::DomainSet;
use crate::detect::tunnel::TunnelConfig;
use crate::net::CidrSet;
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct Lists {
    /// DomainReputationFeed (both detectors).
    pub reputation: Option<Arc<DomainSet>>,
    /// DNS Calculation: ResolverWhitelist.
    pub resolver_whitelist: CidrSet,
    /// DNS Calculation: ManagementPlaneIPs.
    pub management_ips: CidrSet,
    /// DNS Calculation: ProcessAllowlist (and `--allow-client`).
    pub calc_clients: CidrSet,
    /// Tunneling: DaemonAllowList (and `--allow-client`).
    pub daemon_allowlist: CidrSet,
    /// Tunneling: use the shipped domain allowlist.
    pub use_default_domain_allowlist: bool,
    /// Tunneling: more allowed domains (and `--allow-domain`).
    pub domain_allowlist: Vec<String>,
}

impl Lists {
    /// The lists as two detector configurations hold them.
    pub fn of(calc: &CalcConfig, tunnel: &TunnelConfig) -> Lists {
        Lists {
            // Both detectors get the same feed from the configuration; the calc copy is
            // the one taken when they differ (they cannot, short of a hand-built config).
            reputation: calc.reputation.clone().or_else(|| tunnel.reputation.clone()),
            resolver_whitelist: calc.trusted_resolvers.clone(),
            management_ips: calc.management_ips.clone(),
            calc_clients: calc.client_allowlist.clone(),
            daemon_allowlist: tunnel.client_allowlist.clone(),
            use_default_domain_allowlist: tunnel.use_default_allowlist,
            domain_allowlist: tunnel.domain_allowlist.clone(),
        }
    }

    /// Writes the DNS Calculation half into `calc`.
    pub fn apply_calc(&self, calc: &mut CalcConfig) {
        calc.reputation = self.reputation.clone();
        calc.trusted_resolvers = self.resolver_whitelist.clone();
        calc.management_ips = self.management_ips.clone();
        calc.client_allowlist = self.calc_clients.clone();
    }

    /// Writes the tunneling half into `tunnel`.
    pub fn apply_tunnel(&self, tunnel: &mut TunnelConfig) {
        tunnel.reputation = self.reputation.clone();
        tunnel.client_allowlist = self.daemon_allowlist.clone();
        tunnel.use_default_allowlist = self.use_default_domain_allowlist;
        tunnel.domain_allowlist = self.domain_allowlist.clone();
    }

    /// One line of counts for the operator's log.
    pub fn describe(&self) -> String {
        format!(
            "reputation feed {} domains; allowlists: resolvers {}, management IPs {}, calc clients {}, \
             tunnel clients {}, domains {}{}",
            self.reputation.as_ref().map_or(0, |r| r.len()),
            self.resolver_whitelist.0.len(),
            self.management_ips.0.len(),
            self.calc_clients.0.len(),
            self.daemon_allowlist.0.len(),
            self.domain_allowlist.len(),
            if self.use_default_domain_allowlist { " plus the shipped list" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_through_the_detector_configs() {
        let l = Lists {
            reputation: Some(Arc::new(DomainSet::parse("bad.example\nworse.example\n"))),
            resolver_whitelist: CidrSet::parse_list(&["10.0.0.53"]).unwrap(),
            management_ips: CidrSet::parse_list(&["10.9.0.0/16", "10.8.0.1"]).unwrap(),
            calc_clients: CidrSet::parse_list(&["10.1.0.0/24"]).unwrap(),
            daemon_allowlist: CidrSet::parse_list(&["fd00::/8"]).unwrap(),
            use_default_domain_allowlist: false,
            domain_allowlist: vec!["corp.example".into()],
        };
        let (mut c, mut t) = (CalcConfig::default(), TunnelConfig::default());
        l.apply_calc(&mut c);
        l.apply_tunnel(&mut t);
        let back = Lists::of(&c, &t);
        assert_eq!(format!("{back:?}"), format!("{l:?}"));
        assert!(t.reputation.as_ref().is_some_and(|r| r.matching("x.bad.example").is_some()));
        assert_eq!(
            l.describe(),
            "reputation feed 2 domains; allowlists: resolvers 1, management IPs 2, calc clients 1, \
             tunnel clients 1, domains 1"
        );
    }
}
