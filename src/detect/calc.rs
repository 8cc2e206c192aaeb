//! DNS Calculation (ATT&CK T1568.003): a SYN whose destination port is a formula of an
//! address the client was just given.
