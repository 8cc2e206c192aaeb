//! Link, IP and transport decoding: frame bytes → the few fields the detectors need.
//!
//! `link` strips whatever the capture's link type wraps around the IP packet (Ethernet with
//! any stack of 802.1Q/802.1ad tags, PPPoE sessions, Linux cooked v1/v2, BSD null/loop, raw
//! IP). The IP and transport headers are sliced by `etherparse`, which checks every length
//! before anything is read. Nothing here allocates or copies.

pub mod defrag;
pub mod link;

use etherparse::{err, NetSlice, SlicedPacket, TransportSlice};
use std::net::IpAddr;

pub use link::{strip_link, LinkType, Network};

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
pub fn decode_ip(ip: &[u8]) -> Result<Decoded<'_>, DecodeError> {
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
