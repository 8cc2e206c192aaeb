//! `parse_message` on arbitrary bytes: never panics, and a decoded message keeps the bounds
//! the types document (see `portent::dns::parse::fuzz_parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portent::dns::parse::fuzz_parse(data));
