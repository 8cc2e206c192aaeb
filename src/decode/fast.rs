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
    let (src, dst, proto, l4) = match ip.first()? >> 4 {
        4 => ipv4(ip)?,
        6 => ipv6(ip)?,
        _ => return None,
    };
    match proto {
        PROTO_UDP => udp(src, dst, l4),
        PROTO_TCP => tcp(src, dst, l4),
        _ => None,
    }
}

/// Addresses, protocol and the transport bytes (cut at the total length, which drops any
/// Ethernet padding).
#[inline(always)]
fn ipv4(ip: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    let h: &[u8; 20] = ip.first_chunk()?;
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(be16([h[2], h[3]]));
    // MF set or a non-zero offset: a fragment, for the reassembler.
    if header_len < 20 || total_len < header_len || be16([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let l4 = ip.get(header_len..total_len)?;
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    Some((IpAddr::V4(src), IpAddr::V4(dst), h[9], l4))
}

/// Only a next header of UDP or TCP comes through: an extension header (hop-by-hop,
/// routing, fragment, ...) leaves it to etherparse, and so does a payload length of zero
/// (a jumbogram, or nothing at all).
#[inline(always)]
fn ipv6(ip: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    let h: &[u8; 40] = ip.first_chunk()?;
    let payload_len = usize::from(be16([h[4], h[5]]));
    if payload_len == 0 {
        return None;
    }
    let l4 = ip.get(40..40 + payload_len)?;
    let src: [u8; 16] = *h[8..].first_chunk()?;
    let dst: [u8; 16] = *h[24..].first_chunk()?;
    Some((IpAddr::V6(Ipv6Addr::from(src)), IpAddr::V6(Ipv6Addr::from(dst)), h[6], l4))
}

/// The UDP length field bounds the payload; zero means "the rest" (as etherparse reads it).
#[inline(always)]
fn udp(src: IpAddr, dst: IpAddr, l4: &[u8]) -> Option<Packet<'_>> {
    let h: &[u8; 8] = l4.first_chunk()?;
    let len = usize::from(be16([h[4], h[5]]));
    let payload = match len {
        0 => l4.get(8..)?,
        8.. => l4.get(8..len)?,
        _ => return None,
    };
    Some(Packet {
        src,
        dst,
        sport: be16([h[0], h[1]]),
        dport: be16([h[2], h[3]]),
        proto: Proto::Udp,
        payload,
    })
}

#[inline(always)]
fn tcp(src: IpAddr, dst: IpAddr, l4: &[u8]) -> Option<Packet<'_>> {
    let h: &[u8; 20] = l4.first_chunk()?;
    let header_len = usize::from(h[12] >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let payload = l4.get(header_len..)?;
    let flags = h[13];
    Some(Packet {
        src,
        dst,
        sport: be16([h[0], h[1]]),
        dport: be16([h[2], h[3]]),
        proto: Proto::Tcp {
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            syn: flags & 0x02 != 0,
            ack: flags & 0x10 != 0,
            fin: flags & 0x01 != 0,
            rst: flags & 0x04 != 0,
        },
        payload,
    })
}
