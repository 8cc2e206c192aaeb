//! DNS tunneling (ATT&CK T1071.004): tunneling-shaped query traffic per client and
//! registered domain.
