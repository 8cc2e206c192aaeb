//! pcap and pcapng files, streamed through a fixed buffer: memory does not grow with the
//! file, and a file cut mid-record (a rotated capture) still yields every complete packet
//! before the cut.

use super::RawPacket;
use crate::decode::LinkType;
use crate::Nanos;
use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Big enough for any frame up to libpcap's 256 KiB maximum snap length.
const READ_BUFFER: usize = 1 << 20;
/// A block larger than this is not a packet: the length field is garbage.
const MAX_BUFFER: usize = 16 << 20;

#[derive(Debug)]
pub enum CaptureError {
    Open {
        path: PathBuf,
        err: io::Error,
    },
    Read {
        path: PathBuf,
        err: io::Error,
    },
    Empty {
        path: PathBuf,
    },
    NotACapture {
        path: PathBuf,
    },
    UnsupportedLinkType {
        path: PathBuf,
        linktype: u32,
    },
    /// The file ends inside a record; every complete record before it was delivered.
    Truncated {
        path: PathBuf,
        packets: u64,
    },
    /// A record's header is inconsistent (length beyond any sane frame, bad block).
    Corrupt {
        path: PathBuf,
        packets: u64,
        detail: String,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Open { path, err } => write!(f, "{}: cannot open: {err}", path.display()),
            CaptureError::Read { path, err } => write!(f, "{}: read failed: {err}", path.display()),
            CaptureError::Empty { path } => write!(f, "{}: empty file, not a capture", path.display()),
            CaptureError::NotACapture { path } => {
                write!(f, "{}: not a pcap or pcapng file (unknown magic number)", path.display())
            }
            CaptureError::UnsupportedLinkType { path, linktype } => write!(
                f,
                "{}: unsupported link type {linktype} (supported: ethernet, raw IP, linux-sll, linux-sll2, null/loop)",
                path.display()
            ),
            CaptureError::Truncated { path, packets } => write!(
                f,
                "{}: truncated: the file ends inside a record after {packets} complete packets (all of them were processed)",
                path.display()
            ),
            CaptureError::Corrupt { path, packets, detail } => write!(
                f,
                "{}: corrupt after {packets} packets: {detail} (the packets before it were processed)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// What a file held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub packets: u64,
    pub bytes: u64,
    /// pcapng packets on an interface with a link type we cannot decode.
    pub unsupported_linktype: u64,
    /// pcapng blocks that are not packets or interfaces (statistics, name resolution, custom).
    pub other_blocks: u64,
}

#[derive(Clone, Copy)]
struct Interface {
    linktype: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

/// Opens `path` ("-" is standard input) and calls `f` for every packet, in file order.
/// `progress` is told how many bytes of the file have been consumed so far.
pub fn read_file(
    path: &Path,
    f: impl FnMut(&RawPacket<'_>),
    progress: impl FnMut(u64),
) -> Result<FileStats, CaptureError> {
    let input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|err| CaptureError::Open { path: path.into(), err })?)
    };
    read_stream(path, input, f, progress)
}

/// `read_file` over any reader; `path` only names it in errors.
pub fn read_stream(
    path: &Path,
    input: Box<dyn Read + Send>,
    mut f: impl FnMut(&RawPacket<'_>),
    mut progress: impl FnMut(u64),
) -> Result<FileStats, CaptureError> {
    let mut reader = match create_reader(READ_BUFFER, input) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err(CaptureError::Empty { path: path.into() }),
        Err(PcapError::ReadError) => {
            return Err(CaptureError::Read { path: path.into(), err: io::Error::other("read error") })
        }
        Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) => {
            return Err(CaptureError::Truncated { path: path.into(), packets: 0 })
        }
        Err(_) => return Err(CaptureError::NotACapture { path: path.into() }),
    };

    let mut st = FileStats::default();
    let mut legacy: Option<Interface> = None;
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut consumed: u64 = 0;
    let mut last_progress: u64 = 0;
    let mut buffer = READ_BUFFER;
    // Byte order of the current pcapng section; None for a classic pcap file.
    let mut ng_big_endian: Option<bool> = None;
    loop {
        if let Some(be) = ng_big_endian {
            if let Some(len) = short_ng_block(reader.data(), be) {
                return Err(CaptureError::Corrupt {
                    path: path.into(),
                    packets: st.packets,
                    detail: format!("a pcapng block claims {len} bytes, less than the 12 of an empty block"),
                });
            }
        }
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let linktype = LinkType(h.network.0 as u32);
                        if !linktype.is_supported() {
                            return Err(CaptureError::UnsupportedLinkType {
                                path: path.into(),
                                linktype: linktype.0,
                            });
                        }
                        let resolution = if h.is_nanosecond_precision() { 1_000_000_000 } else { 1_000_000 };
                        legacy = Some(Interface { linktype, resolution, offset_secs: 0 });
                    }
                    PcapBlockOwned::Legacy(b) => {
                        if let Some(i) = legacy {
                            let ts = u64::from(b.ts_sec) * 1_000_000_000
                                + u64::from(b.ts_usec) * (1_000_000_000 / i.resolution);
                            deliver(&mut st, &mut f, ts, i.linktype, b.data, b.origlen);
                        }
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        ng_big_endian = Some(shb.big_endian());
                        ifaces.clear();
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => ifaces.push(Interface {
                        linktype: LinkType(idb.linktype.0 as u32),
                        resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                        offset_secs: idb.ts_offset(),
                    }),
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match ifaces.get(epb.if_id as usize) {
                            Some(i) if i.linktype.is_supported() => {
                                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let ns = (u128::from(units) * 1_000_000_000 / u128::from(i.resolution))
                                    as i128
                                    + i128::from(i.offset_secs) * 1_000_000_000;
                                let ts = ns.clamp(0, i128::from(u64::MAX)) as Nanos;
                                // pcap-parser hands the padded block data; caplen says how much is the frame.
                                let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                                deliver(&mut st, &mut f, ts, i.linktype, data, epb.origlen);
                            }
                            _ => st.unsupported_linktype += 1,
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => match ifaces.first() {
                        // Simple packets carry no timestamp; they sort with time zero.
                        Some(i) if i.linktype.is_supported() => {
                            let caplen = (spb.origlen as usize).min(spb.data.len());
                            let data = spb.data.get(..caplen).unwrap_or(spb.data);
                            deliver(&mut st, &mut f, 0, i.linktype, data, spb.origlen)
                        }
                        _ => st.unsupported_linktype += 1,
                    },
                    PcapBlockOwned::NG(_) => st.other_blocks += 1,
                }
                // No shift here: `consume` moves the unread half of the buffer down whenever
                // half of it is used, copying the file a second time (7% of a replay's
                // instructions under callgrind). `refill` moves only the cut record's bytes.
                reader.consume_noshift(offset);
                consumed += offset as u64;
                if consumed - last_progress >= 4 << 20 {
                    progress(consumed);
                    last_progress = consumed;
                }
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.reader_exhausted() {
                    progress(consumed);
                    return Err(CaptureError::Truncated { path: path.into(), packets: st.packets });
                }
                if let Err(e) = reader.refill() {
                    return Err(refill_error(path, st.packets, e));
                }
            }
            Err(PcapError::BufferTooSmall) => {
                buffer *= 2;
                if buffer > MAX_BUFFER || !reader.grow(buffer) {
                    return Err(CaptureError::Corrupt {
                        path: path.into(),
                        packets: st.packets,
                        detail: format!("a record larger than {} MiB", MAX_BUFFER >> 20),
                    });
                }
                if let Err(e) = reader.refill() {
                    return Err(refill_error(path, st.packets, e));
                }
            }
            Err(PcapError::UnexpectedEof) => {
                progress(consumed);
                return Err(CaptureError::Truncated { path: path.into(), packets: st.packets });
            }
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Read { path: path.into(), err: io::Error::other("read error") })
            }
            Err(e) => {
                return Err(CaptureError::Corrupt {
                    path: path.into(),
                    packets: st.packets,
                    detail: format!("{e:?}").chars().take(120).collect(),
                })
            }
        }
    }
    progress(consumed);
    Ok(st)
}

/// The length of the next pcapng block when it is shorter than any valid block (12 bytes:
/// type, length, trailing length). pcap-parser 0.17 subtracts 12 from it unchecked for some
/// block types (a process-information block of length 4..11 panics in a build with overflow
/// checks: found by the pcap_file fuzz target), so such a block stops here as corrupt.
fn short_ng_block(data: &[u8], big_endian: bool) -> Option<u32> {
    const SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    let ty = data.get(0..4)?;
    if ty == SHB {
        return None; // a new section carries its own byte order; its parser checks its length
    }
    let b: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    let len = if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
    (len < 12).then_some(len)
}

fn refill_error(path: &Path, packets: u64, e: PcapError<&[u8]>) -> CaptureError {
    match e {
        PcapError::ReadError => CaptureError::Read { path: path.into(), err: io::Error::other("read error") },
        _ => CaptureError::Truncated { path: path.into(), packets },
    }
}

fn deliver(
    st: &mut FileStats,
    f: &mut impl FnMut(&RawPacket<'_>),
    ts: Nanos,
    linktype: LinkType,
    data: &[u8],
    orig_len: u32,
) {
    st.packets += 1;
    st.bytes += data.len() as u64;
    f(&RawPacket { ts, linktype, data, orig_len });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::capture::write::pcap_bytes;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("portent-capture-{}-{name}", std::process::id()));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    fn read(p: &Path) -> (Vec<(Nanos, usize)>, Result<FileStats, CaptureError>) {
        let mut got = vec![];
        let r = read_file(p, |pk| got.push((pk.ts, pk.data.len())), |_| {});
        (got, r)
    }

    #[test]
    fn reads_every_record_with_its_time() {
        let p = temp("ok.pcap", &pcap_bytes(1, &[(1_500_000, &[1u8; 60][..]), (2_000_001, &[2u8; 70][..])]));
        let (got, r) = read(&p);
        assert_eq!(got, vec![(1_500_000_000, 60), (2_000_001_000, 70)]);
        assert_eq!(r.unwrap().packets, 2);
    }

    #[test]
    fn a_cut_file_delivers_what_came_before_the_cut() {
        let whole = pcap_bytes(1, &[(1, &[1; 60]), (2, &[2; 60]), (3, &[3; 60])]);
        let p = temp("cut.pcap", &whole[..whole.len() - 10]);
        let (got, r) = read(&p);
        assert_eq!(got.len(), 2);
        assert!(matches!(r, Err(CaptureError::Truncated { packets: 2, .. })), "{r:?}");
    }

    /// fuzz/artifacts/pcap_file crash-018d3064: a pcapng section, then a process-information
    /// block (type 0x80000001) whose length field says 4.
    #[test]
    fn a_pcapng_block_shorter_than_its_header_is_corrupt_not_a_panic() {
        let mut v = Vec::new();
        v.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]);
        v.extend_from_slice(&28u32.to_le_bytes());
        v.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(-1i64).to_le_bytes());
        v.extend_from_slice(&28u32.to_le_bytes());
        v.extend_from_slice(&0x8000_0001u32.to_le_bytes());
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&[0x58, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xeb, 0x00, 0x04, 0xa9, 0x35, 0x51]);
        let (got, r) = read(&temp("short-block.pcapng", &v));
        assert!(got.is_empty());
        assert!(matches!(r, Err(CaptureError::Corrupt { .. })), "{r:?}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let (_, r) = read(&temp("text.pcap", b"this is not a capture file at all, just text"));
        assert!(matches!(r, Err(CaptureError::NotACapture { .. })), "{r:?}");
        let (_, r) = read(&temp("empty.pcap", b""));
        assert!(matches!(r, Err(CaptureError::Empty { .. })), "{r:?}");
        let (_, r) = read(&temp("lt.pcap", &pcap_bytes(147, &[(1, &[0; 10])])));
        assert!(matches!(r, Err(CaptureError::UnsupportedLinkType { linktype: 147, .. })), "{r:?}");
        let (_, r) = read(Path::new("/nonexistent/portent.pcap"));
        assert!(matches!(r, Err(CaptureError::Open { .. })), "{r:?}");
        let msg = r.unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/portent.pcap: cannot open"), "{msg}");
    }
}
