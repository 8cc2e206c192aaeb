//! The common shapes decoded by hand: IPv4 (with or without options) or IPv6 without
//! extension headers, carrying UDP or TCP, not fragmented. That is nearly every packet a DNS
//! sensor sees, and etherparse's general slicer costs several times more per packet than
//! these few loads. Anything else (fragments, extension headers, IPsec AH, jumbograms, other
//! protocols, any length that does not add up) gets `None`, and `decode_ip` then asks
//! etherparse, so every odd case keeps exactly its old answer and error.
//!
//! Where this answers, it answers what etherparse does: the fuzz target `decode` and the
//! differential tests in `decode::tests` check that on every input.

use super::{Packet, Proto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// A UDP or TCP packet over IPv4 or IPv6, starting at its IP header; `None` for anything
/// this does not cover.
#[inline(always)]
pub fn packet(ip: &[u8]) -> Option<Packet<'_>> {
    headers(ip).map(|h| h.packet())
}

/// The header bytes that hold a packet's two addresses, turned into `IpAddr`s only when
/// asked: most packets a sensor reads are dropped on their ports alone.
#[derive(Clone, Copy, Debug)]
pub enum Addrs<'a> {
    V4(&'a [u8; 8]),
    V6(&'a [u8; 16], &'a [u8; 16]),
}

impl Addrs<'_> {
    #[inline(always)]
    pub fn src(self) -> IpAddr {
        match self {
            Addrs::V4(a) => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            Addrs::V6(s, _) => IpAddr::V6(Ipv6Addr::from(*s)),
        }
    }

    #[inline(always)]
    pub fn dst(self) -> IpAddr {
        match self {
            Addrs::V4(a) => IpAddr::V4(Ipv4Addr::new(a[4], a[5], a[6], a[7])),
            Addrs::V6(_, d) => IpAddr::V6(Ipv6Addr::from(*d)),
        }
    }
}

/// The transport of a `Headers`, the TCP flags still in their byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp { seq: u32, flags: u8 },
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

impl Transport {
    #[inline(always)]
    pub fn proto(self) -> Proto {
        match self {
            Transport::Udp => Proto::Udp,
            Transport::Tcp { seq, flags } => Proto::Tcp {
                seq,
                syn: flags & TCP_SYN != 0,
                ack: flags & TCP_ACK != 0,
                fin: flags & TCP_FIN != 0,
                rst: flags & TCP_RST != 0,
            },
        }
    }

    /// The inverse of `proto`, for packets etherparse decoded.
    pub fn of(proto: Proto) -> Transport {
        match proto {
            Proto::Udp => Transport::Udp,
            Proto::Tcp { seq, syn, ack, fin, rst } => {
                let bit = |set: bool, b: u8| if set { b } else { 0 };
                let flags = bit(syn, TCP_SYN) | bit(ack, TCP_ACK) | bit(fin, TCP_FIN) | bit(rst, TCP_RST);
                Transport::Tcp { seq, flags }
            }
        }
    }
}

/// What `packet` finds, with the addresses left in the header.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a> {
    pub addrs: Addrs<'a>,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    pub payload: &'a [u8],
}

impl<'a> Headers<'a> {
    #[inline(always)]
    pub fn packet(&self) -> Packet<'a> {
        Packet {
            src: self.addrs.src(),
            dst: self.addrs.dst(),
            sport: self.sport,
            dport: self.dport,
            proto: self.transport.proto(),
            payload: self.payload,
        }
    }
}

/// `packet` without building the addresses.
#[inline(always)]
pub fn headers(ip: &[u8]) -> Option<Headers<'_>> {
    let (addrs, proto, l4) = match *ip.first()? {
        // IPv4 without options, nearly every IPv4 packet: one compare for version and
        // header length, and the transport at a constant offset.
        0x45 => ipv4_plain(ip)?,
        b => match b >> 4 {
            4 => ipv4(ip)?,
            6 => ipv6(ip)?,
            _ => return None,
        },
    };
    match proto {
        PROTO_UDP => udp(addrs, l4),
        PROTO_TCP => tcp(addrs, l4),
        _ => None,
    }
}

/// Addresses, protocol and the transport bytes (cut at the total length, which drops any
/// Ethernet padding).
#[inline(always)]
fn ipv4(ip: &[u8]) -> Option<(Addrs<'_>, u8, &[u8])> {
    let h: &[u8; 20] = ip.first_chunk()?;
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(be16([h[2], h[3]]));
    // MF set or a non-zero offset: a fragment, for the reassembler.
    if header_len < 20 || total_len < header_len || be16([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let l4 = ip.get(header_len..total_len)?;
    let addrs = h[12..].first_chunk()?;
    Some((Addrs::V4(addrs), h[9], l4))
}

/// `ipv4` for a header length of 20: a total length under 20 fails the `get` as it fails
/// `ipv4`'s own check.
#[inline(always)]
fn ipv4_plain(ip: &[u8]) -> Option<(Addrs<'_>, u8, &[u8])> {
    let h: &[u8; 20] = ip.first_chunk()?;
    if be16([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let l4 = ip.get(20..usize::from(be16([h[2], h[3]])))?;
    let addrs = h[12..].first_chunk()?;
    Some((Addrs::V4(addrs), h[9], l4))
}

/// Only a next header of UDP or TCP comes through: an extension header (hop-by-hop,
/// routing, fragment, ...) leaves it to etherparse, and so does a payload length of zero
/// (a jumbogram, or nothing at all).
#[inline(always)]
fn ipv6(ip: &[u8]) -> Option<(Addrs<'_>, u8, &[u8])> {
    let h: &[u8; 40] = ip.first_chunk()?;
    let payload_len = usize::from(be16([h[4], h[5]]));
    if payload_len == 0 {
        return None;
    }
    let l4 = ip.get(40..40 + payload_len)?;
    let src = h[8..].first_chunk()?;
    let dst = h[24..].first_chunk()?;
    Some((Addrs::V6(src, dst), h[6], l4))
}

/// The UDP length field bounds the payload; zero means "the rest" (as etherparse reads it).
#[inline(always)]
fn udp<'a>(addrs: Addrs<'a>, l4: &'a [u8]) -> Option<Headers<'a>> {
    let h: &[u8; 8] = l4.first_chunk()?;
    let len = usize::from(be16([h[4], h[5]]));
    let payload = match len {
        0 => l4.get(8..)?,
        8.. => l4.get(8..len)?,
        _ => return None,
    };
    Some(Headers {
        addrs,
        sport: be16([h[0], h[1]]),
        dport: be16([h[2], h[3]]),
        transport: Transport::Udp,
        payload,
    })
}

#[inline(always)]
fn tcp<'a>(addrs: Addrs<'a>, l4: &'a [u8]) -> Option<Headers<'a>> {
    let h: &[u8; 20] = l4.first_chunk()?;
    let header_len = usize::from(h[12] >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let payload = l4.get(header_len..)?;
    Some(Headers {
        addrs,
        sport: be16([h[0], h[1]]),
        dport: be16([h[2], h[3]]),
        transport: Transport::Tcp { seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]), flags: h[13] },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow path's packets are classified through `Transport::of`: every flag
    /// combination must come back as it went in.
    #[test]
    fn transport_of_a_proto_gives_the_proto_back() {
        assert_eq!(Transport::of(Proto::Udp).proto(), Proto::Udp);
        for bits in 0..16u8 {
            let b = |i: u8| bits & (1 << i) != 0;
            let p = Proto::Tcp { seq: 0xdead_beef, syn: b(0), ack: b(1), fin: b(2), rst: b(3) };
            assert_eq!(Transport::of(p).proto(), p, "{bits:04b}");
        }
    }

    /// Packets are dropped on their ports and flags alone; the addresses they would have
    /// had are the ones `packet` gives.
    #[test]
    fn headers_give_the_addresses_packet_gives() {
        let mut v4 = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 2, 3, 192, 168, 7, 9];
        v4.extend_from_slice(&[0, 53, 0x30, 0x39, 0, 8, 0, 0]);
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend((1..=32).collect::<Vec<u8>>());
        v6.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        for ip in [v4, v6] {
            let h = headers(&ip).unwrap();
            let p = packet(&ip).unwrap();
            assert_eq!((h.addrs.src(), h.addrs.dst(), h.sport, h.dport), (p.src, p.dst, p.sport, p.dport));
            assert_eq!(h.transport.proto(), p.proto);
        }
        let p = packet(&[
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 2, 3, 192, 168, 7, 9, 0, 53, 0x30, 0x39, 0,
            8, 0, 0,
        ])
        .unwrap();
        assert_eq!(p.src, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(p.dst, IpAddr::V4(Ipv4Addr::new(192, 168, 7, 9)));
    }
}
