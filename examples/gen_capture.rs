//! Benchmark capture generator: a deterministic (by seed) classic pcap that looks like an
//! edge link, for `benches/replay.sh` and for anyone who wants a large input without
//! shipping one.
//!
//! ```text
//! cargo run --release --example gen_capture -- --out /tmp/x.pcap --packets 2000000 --seed 1
//! cargo run --release --example gen_capture -- --out /tmp/x.pcap --size-mb 1000
//! ```
//!
//! Mix, by packet: about 30% DNS (queries with their responses; A, AAAA, TXT, CNAME chains,
//! NXDOMAIN; a few long random-looking subdomains; about 1% of DNS carried over TCP with the
//! 2-byte length prefix), about 10% TCP SYNs (mostly to 443/80 of an address the client was
//! just given, some to high ports; a share to the APT12 port o1*o2+o3 of a public address
//! answered to the same client just before, so the DNS Calculation rule really fires), and
//! the rest TCP and UDP data with IP packets of 64..1500 bytes. About 10% of frames carry
//! an 802.1Q tag. Timestamps rise by 1..100 µs a packet.
//!
//! Frames are built with `etherparse::PacketBuilder` (checksums included); the pcap writer is
//! the 24-byte global header and 16-byte record headers, little-endian, microseconds.

use etherparse::{PacketBuilder, PacketBuilderStep, VlanId};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

/// splitmix64: tiny, fast, and good enough to make traffic look varied; the same seed
/// gives the same file on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const BASE_DOMAINS: &[&str] = &[
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "youtube.com",
    "facebook.com",
    "fbcdn.net",
    "microsoft.com",
    "windowsupdate.com",
    "office365.com",
    "live.com",
    "apple.com",
    "icloud.com",
    "amazonaws.com",
    "cloudfront.net",
    "akamaiedge.net",
    "github.com",
    "githubusercontent.com",
    "wikipedia.org",
    "netflix.com",
    "nflxvideo.net",
    "twitter.com",
    "linkedin.com",
    "slack.com",
    "zoom.us",
    "dropbox.com",
    "cloudflare.com",
    "example.co.uk",
    "bbc.co.uk",
    "spotify.com",
    "reddit.com",
];
const SUBS: &[&str] =
    &["www", "api", "cdn", "static", "mail", "login", "img", "m", "edge", "assets", "update"];
/// Zones for the long random-looking names (telemetry, CDN tokens, and the odd tunnel).
const LONG_ZONES: &[&str] = &["telemetry.example.net", "t.cdn-token.com", "x.badzone.info"];
const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Ports the DNS Calculation rule ignores by default (mirrors `DEFAULT_EXCLUDED_PORTS`).
const EXCLUDED: [u16; 11] = [8080, 8443, 8000, 8888, 9090, 9200, 9300, 9418, 27017, 27018, 28017];

const CLIENTS: u64 = 2000;
const V6_CLIENTS: u64 = 200;
/// Recent A answers remembered for SYNs (per generator, not per client: a ring).
const RECENT: usize = 4096;

const T_A: u16 = 1;
const T_CNAME: u16 = 5;
const T_TXT: u16 = 16;
const T_AAAA: u16 = 28;
const T_OPT: u16 = 41;

struct Args {
    out: String,
    packets: u64,
    size_bytes: Option<u64>,
    seed: u64,
    /// Percent of SYNs that go to a formula port (the DNS Calculation pattern).
    calc_percent: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { out: String::new(), packets: 2_000_000, size_bytes: None, seed: 1, calc_percent: 5 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag}: missing value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
        match flag.as_str() {
            "--out" | "-o" => a.out = val()?,
            "--packets" | "-n" => a.packets = num(val()?)?,
            "--size-mb" => a.size_bytes = Some(num(val()?)?.saturating_mul(1_000_000)),
            "--seed" => a.seed = num(val()?)?,
            "--calc-percent" => a.calc_percent = num(val()?)?.min(100),
            "-h" | "--help" => {
                return Err("usage: gen_capture --out FILE [--packets N | --size-mb MB] \
                            [--seed S] [--calc-percent P]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.out.is_empty() {
        return Err("--out FILE is required".into());
    }
    Ok(a)
}

/// Classic pcap, little-endian, microsecond stamps, Ethernet.
struct PcapWriter<W: Write> {
    w: W,
    packets: u64,
    bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    fn new(mut w: W) -> io::Result<Self> {
        w.write_all(&portent::capture::write::pcap_header(1))?; // LINKTYPE_ETHERNET
        Ok(PcapWriter { w, packets: 0, bytes: 24 })
    }

    fn record(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        let h = portent::capture::write::pcap_record_header(ts_us, frame.len());
        self.w.write_all(&h)?;
        self.w.write_all(frame)?;
        self.packets += 1;
        self.bytes += 16 + frame.len() as u64;
        Ok(())
    }
}

/// A DNS message in wire format, written by hand: the generator must not share code with the
/// parser it exercises.
struct DnsBuf(Vec<u8>);

impl DnsBuf {
    fn new(id: u16, flags: u16, qd: u16, an: u16, ar: u16) -> DnsBuf {
        let mut b = Vec::with_capacity(512);
        for v in [id, flags, qd, an, 0, ar] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        DnsBuf(b)
    }
    fn name(&mut self, name: &str) {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            self.0.push(label.len() as u8);
            self.0.extend_from_slice(label.as_bytes());
        }
        self.0.push(0);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn question(&mut self, name: &str, qtype: u16) {
        self.name(name);
        self.u16(qtype);
        self.u16(1);
    }
    /// An answer whose owner is the question name (compression pointer to offset 12).
    fn rr_ptr(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.u16(0xc00c);
        self.rr_tail(rtype, ttl, rdata);
    }
    fn rr_named(&mut self, owner: &str, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.name(owner);
        self.rr_tail(rtype, ttl, rdata);
    }
    fn rr_tail(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.u16(rtype);
        self.u16(1);
        self.0.extend_from_slice(&ttl.to_be_bytes());
        self.u16(rdata.len() as u16);
        self.0.extend_from_slice(rdata);
    }
    /// EDNS(0) OPT pseudo-record advertising a 1232-octet UDP payload.
    fn opt(&mut self) {
        self.0.push(0);
        self.u16(T_OPT);
        self.u16(1232);
        self.0.extend_from_slice(&0u32.to_be_bytes());
        self.u16(0);
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut b = DnsBuf(Vec::new());
    b.name(name);
    b.0
}

fn is_internal_v4(a: [u8; 4]) -> bool {
    let ip = Ipv4Addr::from(a);
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a[0] == 0
        || a[0] >= 224
        || (a[0] == 100 && (a[1] & 0xc0) == 64)
}

fn public_v4(rng: &mut Rng) -> [u8; 4] {
    loop {
        let a = (rng.next() as u32).to_be_bytes();
        if !is_internal_v4(a) {
            return a;
        }
    }
}

fn formula_port(a: [u8; 4]) -> Option<u16> {
    let p = u32::from(a[0]) * u32::from(a[1]) + u32::from(a[2]);
    let p = u16::try_from(p).ok()?;
    ((4096..=49151).contains(&p) && !EXCLUDED.contains(&p)).then_some(p)
}

/// A public address whose APT12 port lands in the rule's checked range.
fn calc_v4(rng: &mut Rng) -> ([u8; 4], u16) {
    loop {
        let a = public_v4(rng);
        if let Some(p) = formula_port(a) {
            return (a, p);
        }
    }
}

fn random_label(rng: &mut Rng, len: usize, alphabet: &[u8]) -> String {
    (0..len).map(|_| *rng.pick(alphabet) as char).collect()
}

fn pick_name(rng: &mut Rng) -> String {
    if rng.chance(4) {
        // Long random-looking subdomain: one or two labels of 20..63 characters.
        let l = rng.range(20, 63) as usize;
        let mut n = random_label(rng, l, BASE32);
        if rng.chance(40) {
            n.push('.');
            let l = rng.range(20, 63) as usize;
            n.push_str(&random_label(rng, l, BASE32));
        }
        n.push('.');
        let zone = *rng.pick(LONG_ZONES);
        n.push_str(zone);
        n
    } else {
        format!("{}.{}", rng.pick(SUBS), rng.pick(BASE_DOMAINS))
    }
}

struct Gen {
    rng: Rng,
    ts_us: u64,
    frame: Vec<u8>,
    /// Recent (client, A address) pairs, for SYNs that follow a resolution.
    recent: Vec<([u8; 4], [u8; 4])>,
    recent_pos: usize,
    seq: u32,
}

const RESOLVERS: [[u8; 4]; 4] = [[10, 0, 0, 53], [10, 0, 1, 53], [8, 8, 8, 8], [1, 1, 1, 1]];
const RESOLVER_V6: [u8; 16] = [0x20, 0x01, 0x48, 0x60, 0x48, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x88];

impl Gen {
    fn client(&mut self) -> [u8; 4] {
        let n = self.rng.below(CLIENTS) as u32;
        [10, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8]
    }

    fn client_v6(&mut self) -> [u8; 16] {
        let n = self.rng.below(V6_CLIENTS) as u16;
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0]);
        a[14..].copy_from_slice(&(n + 1).to_be_bytes());
        a
    }

    fn mac(&mut self, ip_last: u8) -> [u8; 6] {
        [0x02, 0x00, 0x5e, 0x10, 0x00, ip_last]
    }

    /// Ethernet (maybe with a VLAN tag) and the IP header, ready for the transport.
    fn ip(&mut self, src: IpAddr, dst: IpAddr) -> PacketBuilderStep<etherparse::IpHeaders> {
        let smac = self.mac(0x01);
        let dmac = self.mac(0xfe);
        let eth = PacketBuilder::ethernet2(smac, dmac);
        let ttl = 64;
        if self.rng.chance(10) {
            let vid = VlanId::try_new(self.rng.range(2, 300) as u16).unwrap_or(VlanId::ZERO);
            let v = eth.single_vlan(vid);
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => v.ipv4(s.octets(), d.octets(), ttl),
                (s, d) => v.ipv6(v6(s), v6(d), ttl),
            }
        } else {
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), ttl),
                (s, d) => eth.ipv6(v6(s), v6(d), ttl),
            }
        }
    }

    fn tick(&mut self) {
        self.ts_us += self.rng.range(1, 100);
    }

    fn emit<W: Write>(&mut self, out: &mut PcapWriter<W>) -> io::Result<()> {
        self.tick();
        out.record(self.ts_us, &self.frame)
    }

    fn udp<W: Write>(
        &mut self,
        out: &mut PcapWriter<W>,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        payload: &[u8],
    ) -> io::Result<()> {
        let b = self.ip(src, dst).udp(sport, dport);
        self.frame.clear();
        b.write(&mut self.frame, payload).map_err(io::Error::other)?;
        self.emit(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp<W: Write>(
        &mut self,
        out: &mut PcapWriter<W>,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        syn: bool,
        fin: bool,
        payload: &[u8],
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(self.rng.next() as u32 | 1);
        let mut b = self.ip(src, dst).tcp(sport, dport, self.seq, 64240);
        if syn {
            b = b.syn();
        } else {
            b = b.ack(self.seq ^ 0x5a5a_5a5a).psh();
        }
        if fin {
            b = b.fin();
        }
        self.frame.clear();
        b.write(&mut self.frame, payload).map_err(io::Error::other)?;
        self.emit(out)
    }

    /// One DNS exchange (query, then response). Returns the number of packets written.
    fn dns<W: Write>(
        &mut self,
        out: &mut PcapWriter<W>,
        forced_a: Option<([u8; 4], [u8; 4])>,
    ) -> io::Result<u64> {
        let rng = &mut self.rng;
        let v6 = forced_a.is_none() && rng.chance(5);
        let (client, server): (IpAddr, IpAddr) = match forced_a {
            Some((c, _)) => (Ipv4Addr::from(c).into(), Ipv4Addr::from(*rng.pick(&RESOLVERS)).into()),
            None if v6 => (Ipv6Addr::from(self.client_v6()).into(), Ipv6Addr::from(RESOLVER_V6).into()),
            None => {
                let c = self.client();
                (Ipv4Addr::from(c).into(), Ipv4Addr::from(*self.rng.pick(&RESOLVERS)).into())
            }
        };
        let rng = &mut self.rng;
        let name = pick_name(rng);
        let k = rng.below(100);
        let (qtype, cname) = match (forced_a.is_some(), k) {
            (true, _) | (false, 0..=54) => (T_A, false),
            (false, 55..=74) => (T_AAAA, false),
            (false, 75..=84) => (T_TXT, false),
            _ => (T_A, true),
        };
        let nx = forced_a.is_none() && rng.chance(5);
        let id = rng.next() as u16;
        let edns = rng.chance(50);
        let ar = u16::from(edns);

        let mut q = DnsBuf::new(id, 0x0100, 1, 0, ar);
        q.question(&name, qtype);
        if edns {
            q.opt();
        }

        let mut answers: Vec<(Option<String>, u16, u32, Vec<u8>)> = Vec::new();
        if !nx {
            let ttl = rng.range(30, 3600) as u32;
            let mut owner: Option<String> = None;
            if cname {
                let target = format!(
                    "{}.{}",
                    rng.pick(SUBS),
                    rng.pick(&["edgekey.net", "cdn.cloudflare.net", "azureedge.net"])
                );
                answers.push((None, T_CNAME, ttl, encode_name(&target)));
                owner = Some(target);
            }
            match qtype {
                T_A => {
                    let n = match forced_a {
                        Some(_) => 1,
                        None => rng.range(1, 4),
                    };
                    for i in 0..n {
                        let a = match forced_a {
                            Some((_, a)) if i == 0 => a,
                            _ => public_v4(rng),
                        };
                        answers.push((owner.clone(), T_A, ttl, a.to_vec()));
                        if let IpAddr::V4(c) = client {
                            if self.recent.len() < RECENT {
                                self.recent.push((c.octets(), a));
                            } else {
                                self.recent[self.recent_pos] = (c.octets(), a);
                                self.recent_pos = (self.recent_pos + 1) % RECENT;
                            }
                        }
                    }
                }
                T_AAAA => {
                    for _ in 0..rng.range(1, 2) {
                        let mut a = [0u8; 16];
                        a[..8].copy_from_slice(&rng.next().to_be_bytes());
                        a[0] = 0x26;
                        a[8..].copy_from_slice(&rng.next().to_be_bytes());
                        answers.push((owner.clone(), T_AAAA, ttl, a.to_vec()));
                    }
                }
                _ => {
                    let mut rdata = Vec::new();
                    for _ in 0..rng.range(1, 3) {
                        let l = rng.range(20, 200) as usize;
                        let s = random_label(rng, l, BASE64);
                        rdata.push(l as u8);
                        rdata.extend_from_slice(s.as_bytes());
                    }
                    answers.push((None, T_TXT, ttl, rdata));
                }
            }
        }
        let rng = &mut self.rng;
        let flags = if nx { 0x8183 } else { 0x8180 };
        let mut r = DnsBuf::new(id, flags, 1, answers.len() as u16, ar);
        r.question(&name, qtype);
        for (owner, t, ttl, rdata) in &answers {
            match owner {
                None => r.rr_ptr(*t, *ttl, rdata),
                Some(o) => r.rr_named(o, *t, *ttl, rdata),
            }
        }
        if edns {
            r.opt();
        }

        let sport = rng.range(1024, 65535) as u16;
        if forced_a.is_none() && rng.chance(1) {
            // DNS over TCP: one segment each way, each message behind its length prefix.
            let mut qm = (q.0.len() as u16).to_be_bytes().to_vec();
            qm.extend_from_slice(&q.0);
            let mut rm = (r.0.len() as u16).to_be_bytes().to_vec();
            rm.extend_from_slice(&r.0);
            self.tcp(out, client, sport, server, 53, false, false, &qm)?;
            self.tcp(out, server, 53, client, sport, false, true, &rm)?;
        } else {
            self.udp(out, client, sport, server, 53, &q.0)?;
            self.udp(out, server, 53, client, sport, &r.0)?;
        }
        Ok(2)
    }

    /// A SYN; with `calc`, first a DNS answer with a formula-friendly public address to the
    /// same client, then the SYN to that address on the formula port.
    fn syn<W: Write>(&mut self, out: &mut PcapWriter<W>, calc: bool) -> io::Result<u64> {
        let sport = self.rng.range(32768, 60999) as u16;
        if calc {
            let c = self.client();
            let (a, port) = calc_v4(&mut self.rng);
            let n = self.dns(out, Some((c, a)))?;
            self.tcp(out, Ipv4Addr::from(c).into(), sport, Ipv4Addr::from(a).into(), port, true, false, &[])?;
            return Ok(n + 1);
        }
        let (c, a) = match self.recent.len() {
            0 => (self.client(), public_v4(&mut self.rng)),
            n => self.recent[self.rng.below(n as u64) as usize],
        };
        let port = match self.rng.below(100) {
            0..=69 => 443,
            70..=84 => 80,
            // High ports: these reach the formula check against the client's answers.
            _ => loop {
                let p = self.rng.range(4096, 49151) as u16;
                if formula_port(a) != Some(p) {
                    break p;
                }
            },
        };
        self.tcp(out, Ipv4Addr::from(c).into(), sport, Ipv4Addr::from(a).into(), port, true, false, &[])?;
        Ok(1)
    }

    fn data<W: Write>(&mut self, out: &mut PcapWriter<W>) -> io::Result<u64> {
        let rng = &mut self.rng;
        let v6 = rng.chance(5);
        // Edge links are bimodal: ACK-sized and MTU-sized packets, little in between.
        let ip_len = match rng.below(100) {
            0..=39 => rng.range(64, 128),
            40..=59 => rng.range(129, 1399),
            _ => rng.range(1400, 1500),
        } as usize;
        let tcp = rng.chance(75);
        let l4 = if tcp { 20 } else { 8 };
        let l3 = if v6 { 40 } else { 20 };
        let payload_len = ip_len.saturating_sub(l3 + l4);
        let payload: Vec<u8> =
            (0..payload_len.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).take(payload_len).collect();
        let (client, remote): (IpAddr, IpAddr) = if v6 {
            let mut r = [0u8; 16];
            r[..8].copy_from_slice(&rng.next().to_be_bytes());
            r[0] = 0x2a;
            (Ipv6Addr::from(self.client_v6()).into(), Ipv6Addr::from(r).into())
        } else {
            let c = self.client();
            (Ipv4Addr::from(c).into(), Ipv4Addr::from(public_v4(&mut self.rng)).into())
        };
        let rng = &mut self.rng;
        let eph = rng.range(32768, 60999) as u16;
        let svc = if tcp {
            *rng.pick(&[443u16, 443, 443, 80, 993, 22, 5222, 8443])
        } else {
            *rng.pick(&[443u16, 443, 443, 3478, 51820, 4500])
        };
        let inbound = rng.chance(60);
        let (s, sp, d, dp) = if inbound { (remote, svc, client, eph) } else { (client, eph, remote, svc) };
        if tcp {
            self.tcp(out, s, sp, d, dp, false, false, &payload)?;
        } else {
            self.udp(out, s, sp, d, dp, &payload)?;
        }
        Ok(1)
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
    }
}

fn run(a: &Args) -> io::Result<(u64, u64)> {
    let f = File::create(&a.out)?;
    let mut out = PcapWriter::new(BufWriter::with_capacity(1 << 20, f))?;
    let mut g = Gen {
        rng: Rng(a.seed ^ 0x706f_7274_656e_7400),
        // 2023-11-14T22:13:20Z: fixed, so the file is the same on every run.
        ts_us: 1_700_000_000_000_000,
        frame: Vec::with_capacity(2048),
        recent: Vec::with_capacity(RECENT),
        recent_pos: 0,
        seq: 0,
    };
    let done = |out: &PcapWriter<_>| match a.size_bytes {
        Some(b) => out.bytes >= b,
        None => out.packets >= a.packets,
    };
    while !done(&out) {
        let k = g.rng.below(1000);
        if k < 176 {
            // A DNS exchange is two packets: 17.6% of draws gives 30% of packets, and
            // 11.8% of draws gives 10% SYNs.
            g.dns(&mut out, None)?;
        } else if k < 294 {
            let calc = g.rng.chance(a.calc_percent);
            g.syn(&mut out, calc)?;
        } else {
            g.data(&mut out)?;
        }
    }
    out.w.flush()?;
    Ok((out.packets, out.bytes))
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gen_capture: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok((p, b)) => {
            eprintln!("gen_capture: wrote {p} packets, {b} bytes to {}", a.out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_capture: {}: {e}", a.out);
            ExitCode::from(1)
        }
    }
}
