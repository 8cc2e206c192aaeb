//! Link, IP and transport decoding of one frame, for every supported link type, and the
//! reassembly of whatever fragments come out. Wherever the hand-written fast path answers,
//! it must answer what etherparse does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portent::decode::defrag::{Defrag, DefragConfig, Defragmenter};
use portent::decode::{
    decode, decode_ip, decode_ip_sliced, fast, strip_link, plain_ip, Decoded, LinkType, Network,
};

const LINKTYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

fn same_as_etherparse(ip: &[u8]) {
    if let Some(p) = fast::packet(ip) {
        assert_eq!(decode_ip_sliced(ip), Ok(Decoded::Packet(p)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let lt = LinkType(LINKTYPES[sel as usize % LINKTYPES.len()]);
    // The reader's shortcut for plain Ethernet must answer what `strip_link` does.
    if let Some(ip) = plain_ip(lt, frame) {
        assert_eq!(strip_link(lt, frame), Ok(Network::Ip(ip)));
    }
    if let Ok(Network::Ip(ip)) = strip_link(lt, frame) {
        same_as_etherparse(ip);
    }
    if let Ok(Decoded::Fragment(ip)) = decode(lt, frame) {
        let mut d = Defragmenter::new(DefragConfig::default());
        if let Defrag::Complete(whole) = d.process(0, ip) {
            same_as_etherparse(whole);
            let _ = decode_ip(whole);
        }
    }
});
