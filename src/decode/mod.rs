//! Link, IP and transport decoding: frame bytes → the few fields the detectors need.
pub mod defrag;
