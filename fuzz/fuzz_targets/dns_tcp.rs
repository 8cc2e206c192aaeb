//! `TcpDnsStreams` fed arbitrary segments with arbitrary seqs and flags: never panics and
//! stays within its bounds (see `portent::dns::tcp::fuzz_tcp`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portent::dns::tcp::fuzz_tcp(data);
});
