//! DNS tunneling (ATT&CK T1071.004): tunneling-shaped query traffic per client and
//! registered domain. (Stub API; the detector lands from its branch.)

use super::{Alert, DnsEvent};
use crate::Nanos;

#[derive(Clone, Debug, Default)]
pub struct TunnelConfig {}

#[derive(Clone, Copy, Debug, Default)]
pub struct TunnelStats {}

pub struct TunnelDetector {}

impl TunnelDetector {
    pub fn new(_cfg: TunnelConfig) -> Result<Self, String> {
        Ok(TunnelDetector {})
    }
    pub fn on_dns(&mut self, _ev: &DnsEvent, _out: &mut Vec<Alert>) {}
    pub fn expire(&mut self, _now: Nanos, _out: &mut Vec<Alert>) {}
    pub fn stats(&self) -> TunnelStats {
        TunnelStats {}
    }
}
