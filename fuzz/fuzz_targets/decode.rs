//! Link, IP and transport decoding of one frame, for every supported link type, and the
//! reassembly of whatever fragments come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portent::decode::defrag::{Defrag, DefragConfig, Defragmenter};
use portent::decode::{decode, decode_ip, Decoded, LinkType};

const LINKTYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let lt = LinkType(LINKTYPES[sel as usize % LINKTYPES.len()]);
    if let Ok(Decoded::Fragment(ip)) = decode(lt, frame) {
        let mut d = Defragmenter::new(DefragConfig::default());
        if let Defrag::Complete(whole) = d.process(0, ip) {
            let _ = decode_ip(whole);
        }
    }
});
