//! NDJSON writers for DNS transactions, alerts and stats.
