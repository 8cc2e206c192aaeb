//! Writing classic pcap (little-endian, microsecond), for the project's own tools: the
//! benchmark generator and tests that build captures. The sensor itself never writes
//! packets.

/// The 24-byte file header for frames of `linktype`, snap length 65535.
pub fn pcap_header(linktype: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0
    h[16..20].copy_from_slice(&65535u32.to_le_bytes());
    h[20..24].copy_from_slice(&linktype.to_le_bytes());
    h
}

/// The 16-byte record header for one whole frame captured at `ts_us` microseconds.
pub fn pcap_record_header(ts_us: u64, len: usize) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// A whole capture in memory: header, then each (µs, frame).
pub fn pcap_bytes<F: AsRef<[u8]>>(linktype: u32, frames: &[(u64, F)]) -> Vec<u8> {
    let mut v = pcap_header(linktype).to_vec();
    for (ts_us, f) in frames {
        let f = f.as_ref();
        v.extend_from_slice(&pcap_record_header(*ts_us, f.len()));
        v.extend_from_slice(f);
    }
    v
}
