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

/// The size of each `read()`. A record that does not fit (libpcap's largest snap length is
/// 256 KiB, plus its header) grows the buffer, up to `MAX_BUFFER`.
///
/// Measured on the 1 GB bench (session 4), the kernel's copy out of the page cache being
/// most of the reader's kernel time: reads of 128 KiB made the user side ~10 ms cheaper
/// but the kernel side 15-24 ms dearer (eight times the calls); mapping the file in windows
/// (1-64 MiB, with or without MAP_POPULATE) took 275-313 ms to walk the records against
/// ~160 ms for read(), the page-table work costing more than the copy it saves, and it
/// would have needed SIGBUS handling for a file cut while mapped. Session 10, rounds in
/// turns with the summary's thread clocks: 256 KiB against 1 MiB took the reader 3-7% less
/// CPU at two workers and the worker 2.5% less at one (a 1 MiB buffer is this machine's
/// whole L2, which the copy sweeps on every read), and 128 KiB was between the two.
/// Session 12 mapped the whole file at once and ran this loop over it: the reader took 58%
/// more CPU (page faults), and the workers none less, so the copy's sweep through the L3 is
/// not what their misses are.
const READ_BUFFER: usize = 256 << 10;
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
///
/// Classic pcap files (the four standard magic numbers) are read by `read_legacy`, a plain
/// record loop; pcapng and the rare "modified" pcap go through pcap-parser. Either way the
/// input is first read once into a `READ_BUFFER`, as pcap-parser's `create_reader` does, so
/// that the one that takes over sees exactly what it would have seen alone.
pub fn read_stream(
    path: &Path,
    mut input: Box<dyn Read + Send>,
    f: impl FnMut(&RawPacket<'_>),
    progress: impl FnMut(u64),
) -> Result<FileStats, CaptureError> {
    let mut buf = vec![0u8; READ_BUFFER];
    let filled = match input.read(&mut buf) {
        Ok(n) => n,
        Err(_) => return Err(CaptureError::Read { path: path.into(), err: io::Error::other("read error") }),
    };
    if let Some(head) = buf.get(..filled).and_then(legacy_header) {
        return read_legacy(path, input, buf, filled, head, f, progress);
    }
    buf.truncate(filled);
    read_with_pcap_parser(path, Box::new(io::Cursor::new(buf).chain(input)), f, progress)
}

/// What a classic pcap file header says about its records.
#[derive(Clone, Copy, Debug)]
struct LegacyHeader {
    big_endian: bool,
    /// The link type field as pcap-parser reads it (a signed number, taken as unsigned).
    linktype: LinkType,
    /// Nanoseconds per unit of the records' sub-second field.
    ns_per_unit: u64,
}

const PCAP_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// The header of a classic pcap file, when `data` starts with one. The modified (Kuznetzov)
/// format, with its longer record headers, is left to pcap-parser.
fn legacy_header(data: &[u8]) -> Option<LegacyHeader> {
    let h: &[u8; PCAP_HEADER_LEN] = data.first_chunk()?;
    let (big_endian, ns_per_unit) = match u32::from_le_bytes([h[0], h[1], h[2], h[3]]) {
        0xa1b2_c3d4 => (false, 1_000),
        0xa1b2_3c4d => (false, 1),
        0xd4c3_b2a1 => (true, 1_000),
        0x4d3c_b2a1 => (true, 1),
        _ => return None,
    };
    let network = [h[20], h[21], h[22], h[23]];
    let linktype = if big_endian { u32::from_be_bytes(network) } else { u32::from_le_bytes(network) };
    Some(LegacyHeader { big_endian, linktype: LinkType(linktype), ns_per_unit })
}

/// A classic pcap file, record by record, out of one buffer that is refilled from `input`.
/// The refill, growth and end-of-file rules are pcap-parser's `LegacyPcapReader` driven by
/// the loop in `read_with_pcap_parser` (which this replaced for classic pcap: it cost about
/// 130 instructions a packet), so a cut or corrupt file ends with the same error after the
/// same packets: the tests in `tests/readers.rs` hold both to libpcap.
fn read_legacy(
    path: &Path,
    mut input: Box<dyn Read + Send>,
    mut buf: Vec<u8>,
    filled: usize,
    head: LegacyHeader,
    mut f: impl FnMut(&RawPacket<'_>),
    mut progress: impl FnMut(u64),
) -> Result<FileStats, CaptureError> {
    if !head.linktype.is_supported() {
        return Err(CaptureError::UnsupportedLinkType { path: path.into(), linktype: head.linktype.0 });
    }
    let mut st = FileStats::default();
    let (mut pos, mut end) = (PCAP_HEADER_LEN, filled);
    let mut consumed = PCAP_HEADER_LEN as u64;
    let mut last_progress = 0u64;
    let mut exhausted = false;
    loop {
        // Every complete record in the buffer; `missing` is how many more bytes the next needs.
        let from = pos;
        let avail = buf.get(..end).unwrap_or_default();
        let missing = if head.big_endian {
            records::<true>(avail, &mut pos, &head, &mut st, &mut f)
        } else {
            records::<false>(avail, &mut pos, &head, &mut st, &mut f)
        };
        // Told once a buffer (256 KiB or more) rather than checked for each record.
        consumed += (pos - from) as u64;
        if consumed - last_progress >= 4 << 20 {
            progress(consumed);
            last_progress = consumed;
        }
        let avail = end - pos;
        if avail == 0 && pos == 0 && exhausted {
            break;
        }
        if exhausted {
            progress(consumed);
            return Err(CaptureError::Truncated { path: path.into(), packets: st.packets });
        }
        if avail + missing >= buf.len() {
            let grown = buf.len() * 2;
            if grown > MAX_BUFFER {
                return Err(CaptureError::Corrupt {
                    path: path.into(),
                    packets: st.packets,
                    detail: format!("a record larger than {} MiB", MAX_BUFFER >> 20),
                });
            }
            buf.resize(grown, 0);
        }
        // Move the cut record to the front, then one read into the space after it.
        if pos > 0 {
            buf.copy_within(pos..end, 0);
            (pos, end) = (0, avail);
        }
        let space = buf.get_mut(end..).unwrap_or_default();
        if space.is_empty() {
            continue;
        }
        match input.read(space) {
            Ok(n) => {
                exhausted = n == 0;
                end += n;
            }
            Err(_) => {
                return Err(CaptureError::Read { path: path.into(), err: io::Error::other("read error") })
            }
        }
    }
    progress(consumed);
    Ok(st)
}

/// Delivers every complete record of `buf` from `*pos` on, and returns how many more
/// bytes the next one needs. The byte order is a constant so that the loop reads each
/// header field with one load rather than testing the order four times a record.
#[inline(always)]
fn records<const BIG_ENDIAN: bool>(
    buf: &[u8],
    pos: &mut usize,
    head: &LegacyHeader,
    st: &mut FileStats,
    f: &mut impl FnMut(&RawPacket<'_>),
) -> usize {
    let u32_at = |b: &[u8; RECORD_HEADER_LEN], i: usize| {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if BIG_ENDIAN {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    loop {
        let avail = buf.get(*pos..).unwrap_or_default();
        let Some(h) = avail.first_chunk::<RECORD_HEADER_LEN>() else {
            return RECORD_HEADER_LEN - avail.len();
        };
        let caplen = u32_at(h, 8) as usize;
        let record_len = RECORD_HEADER_LEN + caplen;
        let Some(data) = avail.get(RECORD_HEADER_LEN..record_len) else {
            return record_len - avail.len();
        };
        let ts = u64::from(u32_at(h, 0)) * 1_000_000_000 + u64::from(u32_at(h, 4)) * head.ns_per_unit;
        deliver(st, f, ts, head.linktype, data, u32_at(h, 12));
        *pos += record_len;
    }
}

/// pcapng (and modified pcap) through pcap-parser's streaming reader.
fn read_with_pcap_parser(
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

    /// A file in the temp dir, removed when dropped.
    struct Temp(PathBuf);

    impl std::ops::Deref for Temp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn temp(name: &str, bytes: &[u8]) -> Temp {
        let p = std::env::temp_dir().join(format!("portent-capture-{}-{name}", std::process::id()));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        Temp(p)
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
    fn records_larger_than_one_read_grow_the_buffer() {
        let (big, bigger) = (vec![3u8; READ_BUFFER + 1000], vec![4u8; 4 * READ_BUFFER + 5]);
        let frames: [(u64, &[u8]); 4] = [(1, &[1; 60]), (2, &big), (3, &bigger), (4, &[2; 70])];
        let (got, r) = read(&temp("big-records.pcap", &pcap_bytes(1, &frames)));
        let lens: Vec<usize> = got.iter().map(|g| g.1).collect();
        assert_eq!(lens, vec![60, big.len(), bigger.len(), 70]);
        assert_eq!(r.unwrap().packets, 4);
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

    /// Hands out at most `chunk` bytes a read, as a pipe does.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl Read for Chunked {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.chunk).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    type Seen = (Vec<(Nanos, u32, Vec<u8>, u32)>, Vec<u64>, String);

    fn run(bytes: &[u8], chunk: usize, legacy_loop: bool) -> Seen {
        let (mut got, mut prog) = (Vec::new(), Vec::new());
        let input = Box::new(Chunked { data: bytes.to_vec(), at: 0, chunk });
        let each = |p: &RawPacket<'_>| got.push((p.ts, p.linktype.0, p.data.to_vec(), p.orig_len));
        let r = if legacy_loop {
            read_stream(Path::new("t"), input, each, |b| prog.push(b))
        } else {
            read_with_pcap_parser(Path::new("t"), input, each, |b| prog.push(b))
        };
        (got, prog, format!("{r:?}"))
    }

    /// The hand-written classic pcap loop against pcap-parser's reader, which it replaced:
    /// same packets, same progress reports, same result or error, for whole, cut and
    /// damaged files, both byte orders, both time resolutions, records too big for the
    /// first buffer, and input that arrives in small pieces.
    #[test]
    fn the_legacy_loop_reads_what_pcap_parser_read() {
        let frames: Vec<(u64, Vec<u8>)> =
            (0..40u64).map(|i| (i * 1_234_567, vec![i as u8; 14 + (i as usize * 37) % 300])).collect();
        let le = pcap_bytes(1, &frames);
        // (file, how many cuts of it to try)
        let mut variants = vec![(le.clone(), 2000)];
        // Big-endian, nanosecond, both: rewrite the magic and every header field.
        for magic in [0xa1b2_3c4du32, 0xd4c3_b2a1, 0x4d3c_b2a1] {
            let be = magic & 0xffff == 0xb2a1;
            let mut v = le.clone();
            v[0..4].copy_from_slice(&magic.to_le_bytes());
            let flip = |v: &mut Vec<u8>, at: usize, len: usize| {
                if be {
                    v[at..at + len].reverse();
                }
            };
            for (at, len) in [(4, 2), (6, 2), (8, 4), (12, 4), (16, 4), (20, 4)] {
                flip(&mut v, at, len);
            }
            let mut at = 24;
            while at + 16 <= v.len() {
                let caplen = u32::from_le_bytes(v[at + 8..at + 12].try_into().unwrap()) as usize;
                for k in 0..4 {
                    flip(&mut v, at + 4 * k, 4);
                }
                at += 16 + caplen;
            }
            variants.push((v, 400));
        }
        // Records bigger than the first buffer; the largest record allowed (16 MiB with its
        // header, less one byte) and the smallest refused.
        let big =
            |caplen: usize| pcap_bytes(1, &[(1, vec![7u8; 60]), (2, vec![8u8; caplen]), (3, vec![9u8; 60])]);
        variants.push((big(3 << 20), 20));
        variants.push((big((16 << 20) - 17), 3));
        variants.push((big((16 << 20) - 16), 3));
        // A record header claiming 40 MiB, near the end of the file and far from it.
        let mut huge = pcap_bytes(1, &[(1, vec![7u8; 60]), (2, vec![8u8; 60])]);
        let second = 24 + 16 + 60;
        huge[second + 8..second + 12].copy_from_slice(&(40u32 << 20).to_le_bytes());
        variants.push((huge.clone(), 200));
        huge.extend_from_slice(&[0; 2 << 20]);
        variants.push((huge, 3));
        // Damaged record headers: one byte overwritten.
        let mut r = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let mut v = le.clone();
            let at = 24 + (r as usize % (v.len() - 24));
            v[at] = (r >> 32) as u8;
            variants.push((v, 20));
        }
        let mut checked = 0;
        for (v, cuts) in &variants {
            let step = (v.len() / cuts).max(1);
            for cut in (0..=v.len()).step_by(step).chain([v.len()]) {
                let part = &v[..cut];
                // The first read decides who reads the file: under 24 bytes, pcap-parser.
                for chunk in [usize::MAX, 4096, 100, 7] {
                    if chunk < 4096 && v.len() > 1 << 20 {
                        continue;
                    }
                    let ours = run(part, chunk, true);
                    assert_eq!(ours, run(part, chunk, false), "cut at {cut}, reads of {chunk}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 30_000, "{checked}");
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
