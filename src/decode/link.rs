//! Link layers: from a captured frame to the IP packet inside it.

use super::DecodeError;

/// A pcap link type (LINKTYPE_* from tcpdump.org's registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// DLT_RAW as OpenBSD (14) and most others (12) number it before LINKTYPE_RAW existed.
    pub const DLT_RAW_12: LinkType = LinkType(12);
    pub const DLT_RAW_14: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    pub fn is_supported(self) -> bool {
        matches!(self.0, 0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276)
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "null",
            1 => "ethernet",
            12 | 14 | 101 => "raw",
            108 => "loop",
            113 => "linux-sll",
            228 => "ipv4",
            229 => "ipv6",
            276 => "linux-sll2",
            _ => "unsupported",
        }
    }
}

/// What lies under the link layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network<'a> {
    /// An IPv4 or IPv6 packet, starting at its header.
    Ip(&'a [u8]),
    /// ARP, LLDP, MPLS, anything not IP.
    Other,
}

/// Deeper stacks than this are not seen on real links; a frame claiming more is crafted.
pub const MAX_VLAN_TAGS: usize = 8;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD1: u16 = 0x9100;
const ETH_QINQ_OLD2: u16 = 0x9200;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

fn be16(b: &[u8], at: usize) -> Result<u16, DecodeError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(DecodeError::LinkTruncated),
    }
}

fn rest(b: &[u8], at: usize) -> Result<&[u8], DecodeError> {
    b.get(at..).ok_or(DecodeError::LinkTruncated)
}

/// The IP packet of an Ethernet frame carrying IPv4 or IPv6, untagged or under one 802.1Q
/// tag: nearly every frame a sensor reads. `None` for anything else, which `strip_link` then
/// answers (and it answers `Ok(Network::Ip(..))` with the same bytes whenever this answers
/// `Some`). A check this small keeps the record loop from going through `strip_link`'s
/// match on the link type and from keeping its `Result` in memory.
#[inline(always)]
pub fn plain_ip(linktype: LinkType, frame: &[u8]) -> Option<&[u8]> {
    if linktype != LinkType::ETHERNET {
        return None;
    }
    let (head, rest) = frame.split_first_chunk::<14>()?;
    let ip_type = |ty| ty == ETH_IPV4 || ty == ETH_IPV6;
    match u16::from_be_bytes([head[12], head[13]]) {
        ty if ip_type(ty) => Some(rest),
        ETH_VLAN => {
            let (tag, ip) = rest.split_first_chunk::<4>()?;
            ip_type(u16::from_be_bytes([tag[2], tag[3]])).then_some(ip)
        }
        _ => None,
    }
}

/// Strips the link header(s) of `frame`. Always inlined: in the reader's record loop a
/// call to it cost more than the untagged Ethernet frame it nearly always gets.
#[inline(always)]
pub fn strip_link(linktype: LinkType, frame: &[u8]) -> Result<Network<'_>, DecodeError> {
    match linktype.0 {
        1 => {
            let ty = be16(frame, 12)?;
            let payload = rest(frame, 14)?;
            // Untagged IP, nearly every frame: no call into the loop for it.
            if ty == ETH_IPV4 || ty == ETH_IPV6 {
                return Ok(Network::Ip(payload));
            }
            by_ether_type(ty, payload)
        }
        12 | 14 | 101 => by_version(frame),
        228 | 229 => by_version(frame),
        // Linux cooked v1: the protocol (an EtherType) is the last field of a 16-byte header.
        113 => by_ether_type(be16(frame, 14)?, rest(frame, 16)?),
        // Linux cooked v2: the protocol comes first in a 20-byte header.
        276 => {
            let ty = be16(frame, 0)?;
            if frame.len() < 20 {
                return Err(DecodeError::LinkTruncated);
            }
            by_ether_type(ty, rest(frame, 20)?)
        }
        // BSD loopback: a 4-byte address family whose byte order and value vary by OS
        // (AF_INET6 is 10, 24, 28 or 30); the IP version nibble after it is what counts.
        0 | 108 => {
            if frame.len() < 4 {
                return Err(DecodeError::LinkTruncated);
            }
            by_version(rest(frame, 4)?)
        }
        _ => Ok(Network::Other),
    }
}

fn by_version(ip: &[u8]) -> Result<Network<'_>, DecodeError> {
    match ip.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Ok(Network::Ip(ip)),
        Some(_) => Ok(Network::Other),
        None => Err(DecodeError::IpTruncated),
    }
}

fn by_ether_type(mut ty: u16, mut payload: &[u8]) -> Result<Network<'_>, DecodeError> {
    let mut tags = 0;
    loop {
        match ty {
            ETH_IPV4 | ETH_IPV6 => return Ok(Network::Ip(payload)),
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD1 | ETH_QINQ_OLD2 => {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(DecodeError::VlanTooDeep);
                }
                ty = be16(payload, 2)?;
                payload = rest(payload, 4)?;
            }
            ETH_PPPOE_SESSION => {
                // RFC 2516: ver/type, code, session id, length, then the PPP protocol field.
                let proto = be16(payload, 6)?;
                let len = usize::from(be16(payload, 4)?);
                let body = rest(payload, 8)?;
                // The PPPoE length covers the PPP protocol field and the payload; trailing
                // Ethernet padding must not reach the IP parser.
                let body = body.get(..len.saturating_sub(2)).unwrap_or(body);
                return match proto {
                    PPP_IPV4 | PPP_IPV6 => Ok(Network::Ip(body)),
                    _ => Ok(Network::Other),
                };
            }
            _ => return Ok(Network::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0, 0, 20];

    fn eth(ty: u16, rest: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&ty.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn ethernet_with_a_qinq_stack() {
        let mut inner = vec![0x00, 0x0a];
        inner.extend_from_slice(&ETH_VLAN.to_be_bytes());
        inner.extend_from_slice(&[0x00, 0x14]);
        inner.extend_from_slice(&ETH_IPV4.to_be_bytes());
        inner.extend_from_slice(&IP);
        let f = eth(ETH_QINQ, &inner);
        assert_eq!(strip_link(LinkType::ETHERNET, &f), Ok(Network::Ip(&IP[..])));
    }

    #[test]
    fn vlan_bomb_is_refused() {
        let mut inner = vec![];
        for _ in 0..20 {
            inner.extend_from_slice(&[0, 1]);
            inner.extend_from_slice(&ETH_VLAN.to_be_bytes());
        }
        let f = eth(ETH_VLAN, &inner);
        assert_eq!(strip_link(LinkType::ETHERNET, &f), Err(DecodeError::VlanTooDeep));
    }

    #[test]
    fn pppoe_session_trims_padding() {
        let mut p = vec![0x11, 0x00, 0x12, 0x34, 0x00, 0x06];
        p.extend_from_slice(&PPP_IPV4.to_be_bytes());
        p.extend_from_slice(&IP);
        p.extend_from_slice(&[0; 10]); // Ethernet padding
        let f = eth(ETH_PPPOE_SESSION, &p);
        assert_eq!(strip_link(LinkType::ETHERNET, &f), Ok(Network::Ip(&IP[..])));
    }

    #[test]
    fn cooked_and_loopback_headers() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETH_IPV4.to_be_bytes());
        sll.extend_from_slice(&IP);
        assert_eq!(strip_link(LinkType::LINUX_SLL, &sll), Ok(Network::Ip(&IP[..])));

        let mut sll2 = ETH_IPV4.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&IP);
        assert_eq!(strip_link(LinkType::LINUX_SLL2, &sll2), Ok(Network::Ip(&IP[..])));

        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&IP);
        assert_eq!(strip_link(LinkType::NULL, &null), Ok(Network::Ip(&IP[..])));
        assert_eq!(strip_link(LinkType::LOOP, &[0, 0]), Err(DecodeError::LinkTruncated));
    }

    /// Wherever the shortcut answers, `strip_link` answers the same bytes.
    #[test]
    fn plain_ip_agrees_with_strip_link() {
        let vlan = |ty: u16, rest: &[u8]| {
            let mut v = vec![0, 7];
            v.extend_from_slice(&ty.to_be_bytes());
            v.extend_from_slice(rest);
            eth(ETH_VLAN, &v)
        };
        let frames = [
            eth(ETH_IPV4, &IP),
            eth(ETH_IPV6, &IP),
            eth(ETH_IPV4, &[]),
            vlan(ETH_IPV4, &IP),
            vlan(ETH_IPV6, &[]),
            vlan(0x0806, &IP),
            vlan(ETH_VLAN, &[0, 1, 0x08, 0x00, 0x45]),
            eth(ETH_VLAN, &[0, 1, 0x08]),
            eth(ETH_QINQ, &[0, 1, 0x08, 0x00, 0x45]),
            eth(0x0806, &[0; 28]),
            vec![0; 13],
            vec![],
        ];
        let mut answered = 0;
        for lt in [LinkType::ETHERNET, LinkType::RAW, LinkType::LINUX_SLL, LinkType::NULL, LinkType(9999)] {
            for f in &frames {
                if let Some(ip) = plain_ip(lt, f) {
                    assert_eq!(strip_link(lt, f), Ok(Network::Ip(ip)), "{lt:?} {f:?}");
                    answered += 1;
                }
            }
        }
        assert_eq!(answered, 5);
        assert_eq!(plain_ip(LinkType::ETHERNET, &vlan(ETH_IPV4, &IP)), Some(&IP[..]));
        assert_eq!(plain_ip(LinkType::ETHERNET, &eth(ETH_IPV6, &IP)), Some(&IP[..]));
    }

    #[test]
    fn non_ip_and_short_frames() {
        assert_eq!(strip_link(LinkType::ETHERNET, &eth(0x0806, &[0; 28])), Ok(Network::Other));
        assert_eq!(strip_link(LinkType::ETHERNET, &[0; 13]), Err(DecodeError::LinkTruncated));
        assert_eq!(strip_link(LinkType::RAW, &[]), Err(DecodeError::IpTruncated));
        assert_eq!(strip_link(LinkType::RAW, &[0x20]), Ok(Network::Other));
    }
}
