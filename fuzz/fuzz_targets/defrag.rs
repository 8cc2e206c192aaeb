//! Fuzzes `decode::defrag::Defragmenter`: the input is a stream of packets, each written as
//! one byte of time step (in units of 0.25 s, so the 30 s timeout is reachable), a 2-byte
//! big-endian length, then that many bytes of IP packet. The small caps make eviction, the
//! memory cap and the "recent keys" table turn over within one input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portent::decode::defrag::{Defrag, DefragConfig, Defragmenter};

const MAX_PENDING: usize = 8;
const MAX_BYTES: usize = 128 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut d = Defragmenter::new(DefragConfig {
        max_pending: MAX_PENDING,
        max_bytes: MAX_BYTES,
        max_frags_per_datagram: 16,
        ports: vec![53, 5353],
        ..DefragConfig::default()
    });
    let mut ts: u64 = 1_700_000_000_000_000_000;
    let mut rest = data;
    while let [step, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (pkt, next) = tail.split_at(len);
        rest = next;
        ts += u64::from(*step) * 250_000_000;
        match d.process(ts, pkt) {
            Defrag::Complete(out) => match out.first().map(|b| b >> 4) {
                Some(4) => {
                    let total = u16::from_be_bytes([out[2], out[3]]);
                    assert_eq!(usize::from(total), out.len());
                    assert_eq!(u16::from_be_bytes([out[6], out[7]]) & 0x3fff, 0);
                }
                Some(6) => {
                    let plen = u16::from_be_bytes([out[4], out[5]]);
                    assert_eq!(usize::from(plen) + 40, out.len());
                }
                other => panic!("Complete with IP version {other:?}"),
            },
            Defrag::Consumed | Defrag::NotFragment => {}
        }
        assert!(d.pending() <= MAX_PENDING);
        assert!(d.held_bytes() <= MAX_BYTES);
    }
    d.expire(u64::MAX);
    assert_eq!(d.pending(), 0);
    assert_eq!(d.held_bytes(), 0);
});
