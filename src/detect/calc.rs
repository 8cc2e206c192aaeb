//! DNS Calculation (ATT&CK T1568.003): a SYN whose destination port is a formula of an
//! address the client was just given. (Stub API; the detector lands from its branch.)

use super::{Alert, Syn};
use crate::cache::AnswerCache;
use crate::Nanos;

#[derive(Clone, Debug, Default)]
pub struct CalcConfig {}

#[derive(Clone, Copy, Debug, Default)]
pub struct CalcStats {}

pub struct CalcDetector {}

impl CalcDetector {
    pub fn new(_cfg: CalcConfig) -> Self {
        CalcDetector {}
    }
    pub fn on_syn(&mut self, _syn: &Syn, _cache: &AnswerCache, _out: &mut Vec<Alert>) {}
    pub fn expire(&mut self, _now: Nanos) {}
    pub fn stats(&self) -> CalcStats {
        CalcStats {}
    }
}
