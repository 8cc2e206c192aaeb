//! Link, IP and transport decoding: frame bytes → the few fields the detectors need.
//!
//! `link` strips whatever the capture's link type wraps around the IP packet (Ethernet with
//! any stack of 802.1Q/802.1ad tags, PPPoE sessions, Linux cooked v1/v2, BSD null/loop, raw
//! IP). `fast` reads the IP and transport headers of the common shapes by hand; the rest are
//! sliced by `etherparse`, which checks every length before anything is read. Nothing here
//! allocates or copies.

pub mod defrag;
pub mod fast;
pub mod link;

use etherparse::{err, NetSlice, SlicedPacket, TransportSlice};
use std::net::IpAddr;

pub use link::{plain_ip, strip_link, LinkType, Network};

/// The transport fields of one UDP or TCP packet, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: Proto,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp { seq: u32, syn: bool, ack: bool, fin: bool, rst: bool },
}

/// What a frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    /// An IP fragment: the IP packet (header included) for the reassembler.
    Fragment(&'a [u8]),
    /// IP, but neither UDP nor TCP (ICMP, ESP, ...).
    OtherIp,
    /// Not IP at all (ARP, LLDP, STP, ...).
    NotIp,
}

/// Why a frame was skipped. Each has a stable name for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    /// The link header is cut short.
    LinkTruncated,
    /// Too many stacked VLAN tags (more than `link::MAX_VLAN_TAGS`).
    VlanTooDeep,
    /// The IP header or its announced length runs past the captured bytes (snap length).
    IpTruncated,
    /// An IP header that is malformed (bad version, header length, ...).
    IpMalformed,
    /// A UDP or TCP header cut short or malformed.
    TransportMalformed,
}

impl DecodeError {
    pub const ALL: [DecodeError; 5] = [
        DecodeError::LinkTruncated,
        DecodeError::VlanTooDeep,
        DecodeError::IpTruncated,
        DecodeError::IpMalformed,
        DecodeError::TransportMalformed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::LinkTruncated => "link_truncated",
            DecodeError::VlanTooDeep => "vlan_too_deep",
            DecodeError::IpTruncated => "ip_truncated",
            DecodeError::IpMalformed => "ip_malformed",
            DecodeError::TransportMalformed => "transport_malformed",
        }
    }
}

/// Decodes one captured frame of the given link type.
pub fn decode(linktype: LinkType, frame: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    match strip_link(linktype, frame)? {
        Network::Ip(ip) => decode_ip(ip),
        Network::Other => Ok(Decoded::NotIp),
    }
}

/// Decodes an IPv4 or IPv6 packet that starts at its IP header.
#[inline]
pub fn decode_ip(ip: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    match fast::packet(ip) {
        Some(p) => Ok(Decoded::Packet(p)),
        None => decode_ip_sliced(ip),
    }
}

/// `decode_ip` by etherparse alone: every shape, every error. Public so that the fuzz target
/// can hold the fast path to it.
pub fn decode_ip_sliced(ip: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    let sliced = SlicedPacket::from_ip(ip).map_err(|e| match e {
        err::packet::SliceError::Len(l) => match l.layer {
            err::Layer::UdpHeader | err::Layer::TcpHeader => DecodeError::TransportMalformed,
            _ => DecodeError::IpTruncated,
        },
        err::packet::SliceError::Tcp(_) => DecodeError::TransportMalformed,
        _ => DecodeError::IpMalformed,
    })?;
    let (src, dst) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()))
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()))
        }
        _ => return Ok(Decoded::NotIp),
    };
    if sliced.is_ip_payload_fragmented() {
        return Ok(Decoded::Fragment(ip));
    }
    match sliced.transport {
        Some(TransportSlice::Udp(u)) => Ok(Decoded::Packet(Packet {
            src,
            dst,
            sport: u.source_port(),
            dport: u.destination_port(),
            proto: Proto::Udp,
            payload: u.payload(),
        })),
        Some(TransportSlice::Tcp(t)) => Ok(Decoded::Packet(Packet {
            src,
            dst,
            sport: t.source_port(),
            dport: t.destination_port(),
            proto: Proto::Tcp {
                seq: t.sequence_number(),
                syn: t.syn(),
                ack: t.ack(),
                fin: t.fin(),
                rst: t.rst(),
            },
            payload: t.payload(),
        })),
        _ => Ok(Decoded::OtherIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64).udp(40000, 53);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn udp_over_ethernet() {
        let f = udp_frame(b"hello");
        let Decoded::Packet(p) = decode(LinkType::ETHERNET, &f).unwrap() else { panic!() };
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "8.8.8.8".parse::<IpAddr>().unwrap());
        assert_eq!((p.sport, p.dport, p.proto), (40000, 53, Proto::Udp));
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut f = udp_frame(b"hi");
        f.extend_from_slice(&[0; 20]);
        let Decoded::Packet(p) = decode(LinkType::ETHERNET, &f).unwrap() else { panic!() };
        assert_eq!(p.payload, b"hi");
    }

    #[test]
    fn tcp_syn_over_ipv6() {
        let b = PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).tcp(5555, 10198, 77, 1024).syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        let Decoded::Packet(p) = decode(LinkType::RAW, &v).unwrap() else { panic!() };
        assert_eq!(p.dport, 10198);
        assert_eq!(p.proto, Proto::Tcp { seq: 77, syn: true, ack: false, fin: false, rst: false });
    }

    #[test]
    fn every_cut_of_a_frame_is_an_error_or_a_decode_never_a_panic() {
        let f = udp_frame(&[0xab; 40]);
        for n in 0..f.len() {
            let r = decode(LinkType::ETHERNET, &f[..n]);
            if n < 14 {
                assert_eq!(r, Err(DecodeError::LinkTruncated), "cut at {n}");
            } else if n < 14 + 20 {
                assert_eq!(r, Err(DecodeError::IpTruncated), "cut at {n}");
            } else {
                // The IPv4 total length announces more than was captured.
                assert!(r.is_err(), "cut at {n}");
            }
        }
    }

    /// Holds the fast path to etherparse on one IP packet: where it answers, etherparse gives
    /// the same packet; where it declines a UDP or TCP packet etherparse decodes, the packet is
    /// one of the shapes it leaves out on purpose. Returns whether the fast path answered.
    pub(crate) fn same_as_etherparse(ip: &[u8]) -> bool {
        let slow = decode_ip_sliced(ip);
        match fast::packet(ip) {
            Some(p) => {
                assert_eq!(slow, Ok(Decoded::Packet(p)), "fast path differs on {ip:02x?}");
                true
            }
            None => {
                if let Ok(Decoded::Packet(_)) = slow {
                    let left_out = match ip.first().map(|b| b >> 4) {
                        Some(4) => ip.get(9) == Some(&51),
                        Some(6) => ip.get(4..6) == Some(&[0, 0]) || !matches!(ip.get(6), Some(6 | 17)),
                        _ => false,
                    };
                    assert!(left_out, "fast path declined a plain UDP/TCP packet: {ip:02x?}");
                }
                false
            }
        }
    }

    use crate::testutil::Rng;

    /// An IP packet of a random common shape, lengths all consistent: IPv4 with 0-40 bytes
    /// of options or IPv6 with an occasional extension header, UDP or TCP (with options)
    /// or something else, sometimes a fragment, sometimes with padding after it.
    fn random_ip(r: &mut Rng) -> Vec<u8> {
        let proto = [17u8, 17, 17, 6, 6, 6, 1, 51, 58, 0][r.below(10)];
        let mut l4 = match proto {
            17 => vec![0u8; 8],
            6 => {
                let mut t = vec![0u8; 20 + 4 * r.below(11)];
                t[12] = ((t.len() / 4) as u8) << 4;
                t
            }
            _ => vec![0u8; 8],
        };
        for b in l4.iter_mut() {
            *b = r.next() as u8;
        }
        if proto == 6 {
            l4[12] = (l4[12] & 0xf0) | (r.next() as u8 & 0x0f);
        }
        let payload_len = [0, 1, 12, 40, 300][r.below(5)];
        l4.extend((0..payload_len).map(|_| r.next() as u8));
        if proto == 17 {
            let len = if r.below(10) == 0 { 0 } else { l4.len() as u16 };
            l4[4..6].copy_from_slice(&len.to_be_bytes());
        }
        let mut ip = if r.below(3) == 0 {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            let ext = r.below(8) == 0;
            h[6] = if ext { [0u8, 43, 44, 60][r.below(4)] } else { proto };
            let mut rest = Vec::new();
            if ext {
                rest.extend_from_slice(&[proto, 0, 0, 0, 0, 0, 0, 0]);
            }
            rest.extend_from_slice(&l4);
            h[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
            for b in &mut h[8..40] {
                *b = r.next() as u8;
            }
            h.extend_from_slice(&rest);
            h
        } else {
            let ihl = 5 + if r.below(3) == 0 { r.below(11) } else { 0 };
            let mut h = vec![0u8; ihl * 4];
            h[0] = 0x40 | ihl as u8;
            h[9] = proto;
            for b in &mut h[12..] {
                *b = r.next() as u8;
            }
            if r.below(6) == 0 {
                h[6] = (r.next() as u8) & 0x3f;
                h[7] = r.next() as u8;
            } else if r.below(4) == 0 {
                h[6] = 0x40; // DF only: not a fragment
            }
            let total = (h.len() + l4.len()) as u16;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&l4);
            h
        };
        if r.below(4) == 0 {
            ip.extend((0..r.below(30)).map(|_| 0u8)); // Ethernet padding
        }
        ip
    }

    /// Cuts, overwrites or grows a packet the way snap lengths and broken stacks do.
    fn mutate(r: &mut Rng, ip: &mut Vec<u8>) {
        for _ in 0..1 + r.below(3) {
            match r.below(4) {
                0 => ip.truncate(r.below(ip.len() + 1)),
                1 if !ip.is_empty() => {
                    // Most of what matters is in the first 80 bytes: the headers.
                    let at = r.below(ip.len().min(80));
                    ip[at] = r.next() as u8;
                }
                2 if !ip.is_empty() => {
                    let at = r.below(ip.len().min(80));
                    ip[at] ^= 1 << r.below(8);
                }
                _ => ip.extend((0..r.below(8)).map(|_| r.next() as u8)),
            }
        }
    }

    #[test]
    fn the_fast_path_agrees_with_etherparse_on_generated_and_mutated_packets() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut checked, mut fast) = (0, 0);
        for _ in 0..40_000 {
            let ip = random_ip(&mut r);
            fast += usize::from(same_as_etherparse(&ip));
            checked += 1;
            for _ in 0..4 {
                let mut m = ip.clone();
                mutate(&mut r, &mut m);
                fast += usize::from(same_as_etherparse(&m));
                checked += 1;
            }
        }
        eprintln!("{checked} packets, {fast} answered by the fast path");
        // Both paths must have been exercised, or the comparison proved little.
        assert!(fast > checked / 8 && fast < checked * 3 / 4, "{fast} of {checked}");
    }

    #[test]
    fn the_fast_path_takes_the_common_shapes() {
        let f = udp_frame(b"hello");
        let Ok(Network::Ip(ip)) = strip_link(LinkType::ETHERNET, &f) else { panic!() };
        assert!(same_as_etherparse(ip));
        let b = PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).tcp(5555, 53, 77, 1024).syn();
        let mut v = Vec::new();
        b.write(&mut v, b"abc").unwrap();
        assert!(same_as_etherparse(&v));
    }

    #[test]
    fn fragments_are_handed_back_whole() {
        let mut f = udp_frame(&[0; 16]);
        // Set MF on the IPv4 header (byte 6 of the IP header).
        f[14 + 6] |= 0x20;
        let ip_start = 14;
        match decode(LinkType::ETHERNET, &f).unwrap() {
            Decoded::Fragment(ip) => assert_eq!(ip, &f[ip_start..]),
            other => panic!("{other:?}"),
        }
    }
}
