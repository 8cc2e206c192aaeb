//! NDJSON out: DNS transaction records and alerts, one JSON object a line, with ECS field
//! names written as flat dotted keys (`"source.ip"`), which Elasticsearch, Vector and jq
//! all read as the nested fields.
//!
//! **Architecture invariant:** only `output` and `detect` build JSON; decoding never does.

pub mod alert;
pub mod dnslog;
pub mod doc;
pub mod kafka;
pub mod num;
pub mod sink;
pub mod summary;

pub use sink::Sink;
