//! The capture-file record path: pcap and pcapng headers, records and blocks, as a file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let input = Box::new(std::io::Cursor::new(data.to_vec()));
    let mut n = 0u64;
    let r = portent::capture::read_stream(Path::new("fuzz"), input, |p| {
        n += 1;
        let _ = portent::decode::decode(p.linktype, p.data);
    }, |_| {});
    if let Ok(st) = r {
        assert_eq!(st.packets, n);
    }
});
