//! Per-name features: the subdomain's decoded length and labels, the Shannon entropy of its
//! bytes, which encoded-payload alphabet it fits, a fingerprint for distinct counting, and
//! its information-content estimate. One pass over the name, no allocation.

/// The longest presentation-form name we look at: 255 wire bytes, each at most 4 characters
/// once escaped as `\DDD` (RFC 1035 §5.1). Longer text cannot come from a valid message.
pub const MAX_NAME_TEXT: usize = 255 * 4;

/// Shorter subdomains are not classified as encoded: a 15-character label such as
/// `test1199` or `clients6` fits base32/base64 alphabets by accident, while encoders emit
/// long labels to amortise the per-query overhead (dnscat2 polls are 18 hex characters).
pub const ENCODED_MIN_LEN: usize = 16;

/// The encoded-payload alphabet a subdomain fits, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alphabet {
    /// Not (recognisably) encoded, or too short to tell.
    Plain = 0,
    /// `[0-9a-f]` with both digits and letters (dnscat2).
    Hex = 1,
    /// `[a-z0-9]` in one case, with digits and letters beyond `f`: RFC 4648 base32
    /// (`a-z2-7`) and iodine's base32 (`a-z0-5`) both fit; so does base36, which is fine.
    Base32 = 2,
    /// Upper case, lower case and digits together, or base64's `+/=*`: dns2tcp, iodine's
    /// base64 codecs, custom exfiltration.
    Base64 = 3,
    /// Bytes outside printable ASCII (escaped `\DDD` in presentation form): iodine's
    /// 8-bit-clean base128 and raw codecs.
    Binary = 4,
}

impl Alphabet {
    pub fn name(self) -> &'static str {
        match self {
            Alphabet::Plain => "plain",
            Alphabet::Hex => "hex",
            Alphabet::Base32 => "base32",
            Alphabet::Base64 => "base64",
            Alphabet::Binary => "binary",
        }
    }
}

/// Features of one query name's subdomain part (the labels left of the registered domain).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NameFeatures {
    /// Decoded bytes of the subdomain, separating dots included (what Elastic's rule
    /// measures as subdomain length, with each `\DDD` escape counted as the one byte it is).
    pub sub_len: u32,
    /// Longest label of the subdomain, decoded.
    pub max_label: u32,
    /// Shannon entropy of the subdomain's bytes (dots excluded), bits per byte.
    pub entropy: f32,
    pub alphabet: Option<Alphabet>,
    /// FNV-1a of the lowercased decoded subdomain: distinct-name counting.
    pub fingerprint: u64,
}

/// Decodes presentation form into bytes: `\DDD` is one byte, `\X` is X, and an unescaped `.`
/// is a label separator (reported as None). Malformed escapes pass through as text.
struct Decoded<'a> {
    s: &'a [u8],
    i: usize,
}

impl Iterator for Decoded<'_> {
    type Item = Option<u8>;
    fn next(&mut self) -> Option<Option<u8>> {
        let b = *self.s.get(self.i)?;
        self.i += 1;
        match b {
            b'.' => Some(None),
            b'\\' => {
                let d = |k: usize| self.s.get(self.i + k).filter(|c| c.is_ascii_digit());
                if let (Some(a), Some(b2), Some(c)) = (d(0), d(1), d(2)) {
                    let v = (a - b'0') as u32 * 100 + (b2 - b'0') as u32 * 10 + (c - b'0') as u32;
                    if v <= 255 {
                        self.i += 3;
                        return Some(Some(v as u8));
                    }
                }
                match self.s.get(self.i) {
                    Some(&x) => {
                        self.i += 1;
                        Some(Some(x))
                    }
                    None => Some(Some(b'\\')),
                }
            }
            _ => Some(Some(b)),
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Character classes of a decoded byte, as bit flags: one table look-up a byte instead of a
/// chain of range tests.
const UPPER: u8 = 1;
const LOWER: u8 = 2;
const DIGIT: u8 = 4;
/// A letter beyond `f`/`F`: not hex.
const HIGH_LETTER: u8 = 8;
const B64_PUNCT: u8 = 16;
const OTHER: u8 = 32;
/// Outside printable ASCII; the highest flag, so that `class >> 6` counts it.
const BINARY: u8 = 64;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'A'..=b'F' => UPPER,
            b'G'..=b'Z' => UPPER | HIGH_LETTER,
            b'a'..=b'f' => LOWER,
            b'g'..=b'z' => LOWER | HIGH_LETTER,
            b'0'..=b'9' => DIGIT,
            b'+' | b'/' | b'=' | b'*' => B64_PUNCT,
            0x21..=0x7e => OTHER,
            _ => BINARY,
        };
        b += 1;
    }
    t
};

/// Measures `sub`, the subdomain in presentation form (may be empty).
pub fn name_features(sub: &str) -> NameFeatures {
    let mut hist = [0u16; 256];
    // The byte values present, in order of first appearance: entropy visits only those bins,
    // always in that order, so that its float sum is the same on every build.
    let mut present = [0u8; 256];
    let mut n_present = 0usize;
    let (mut len, mut label, mut max_label, mut payload) = (0u32, 0u32, 0u32, 0u32);
    let (mut classes, mut binary) = (0u8, 0u32);
    let mut fp = FNV_OFFSET;
    for item in (Decoded { s: sub.as_bytes(), i: 0 }) {
        len += 1;
        let Some(b) = item else {
            max_label = max_label.max(label);
            label = 0;
            fp = (fp ^ b'.' as u64).wrapping_mul(FNV_PRIME);
            continue;
        };
        label += 1;
        payload += 1;
        if let Some(h) = hist.get_mut(b as usize) {
            if *h == 0 {
                if let Some(slot) = present.get_mut(n_present) {
                    *slot = b;
                    n_present += 1;
                }
            }
            *h = h.saturating_add(1);
        }
        fp = (fp ^ b.to_ascii_lowercase() as u64).wrapping_mul(FNV_PRIME);
        let c = CLASS.get(b as usize).copied().unwrap_or(BINARY);
        classes |= c;
        binary += (c >> 6) as u32;
    }
    max_label = max_label.max(label);
    let entropy = entropy_of(&hist, present.get(..n_present).unwrap_or(&[]), payload);
    let has = |flag: u8| classes & flag != 0;
    let (upper, lower, digit, high_letter) = (has(UPPER), has(LOWER), has(DIGIT), has(HIGH_LETTER));
    let alphabet = if (payload as usize) < ENCODED_MIN_LEN {
        None
    } else if binary * 10 >= payload {
        // iodine's base128 alphabet is half high-bit bytes; a tenth is already far beyond
        // any IDN or typo.
        Some(Alphabet::Binary)
    } else if binary > 0 {
        None
    } else if (upper && lower && digit) || (has(B64_PUNCT) && (upper || lower)) {
        Some(Alphabet::Base64)
    } else if has(OTHER) {
        None
    } else if digit && !high_letter && (upper || lower) {
        Some(Alphabet::Hex)
    } else if digit && high_letter && !(upper && lower) {
        Some(Alphabet::Base32)
    } else {
        None
    };
    NameFeatures { sub_len: len, max_label, entropy, alphabet, fingerprint: fp }
}

fn entropy_of(hist: &[u16; 256], present: &[u8], n: u32) -> f32 {
    if n == 0 {
        return 0.0;
    }
    let row = plogp_table().get(n as usize);
    let n = n as f32;
    let mut h = 0.0f32;
    for &b in present {
        let c = hist.get(b as usize).copied().unwrap_or(0);
        if c != 0 {
            let term = match row.and_then(|r| r.get(c as usize)) {
                Some(&t) => t,
                None => plogp(c, n),
            };
            h -= term;
        }
    }
    h
}

/// `p × log2 p` for `c` of `n` bytes. The table holds exactly these f32 values, computed by
/// the same operations, so entropy comes out bit for bit as without it.
fn plogp(c: u16, n: f32) -> f32 {
    let p = c as f32 / n;
    p * p.log2()
}

/// Payloads up to this many bytes (nearly every host name) take `p × log2 p` from a table
/// instead of calling `log2` per distinct byte.
const PLOGP_MAX: usize = 64;

fn plogp_table() -> &'static [[f32; PLOGP_MAX + 1]; PLOGP_MAX + 1] {
    static TABLE: std::sync::OnceLock<Box<[[f32; PLOGP_MAX + 1]; PLOGP_MAX + 1]>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([[0f32; PLOGP_MAX + 1]; PLOGP_MAX + 1]);
        for (n, row) in t.iter_mut().enumerate().skip(1) {
            for (c, v) in row.iter_mut().enumerate().take(n + 1).skip(1) {
                *v = plogp(c as u16, n as f32);
            }
        }
        t
    })
}

/// Cost, in bits, of naming a back-reference in the info estimate: roughly what DEFLATE
/// spends on a short length/distance pair.
const MATCH_BITS: f32 = 12.0;
/// Per-name overhead (the separator a compressor would see between names).
const NAME_BITS: f32 = 4.0;
/// Shortest run worth a back-reference (DEFLATE's minimum match).
const MIN_MATCH: usize = 3;
/// Longest previous name kept for matching: a whole name's wire length.
pub const PREV_CAP: usize = 255;

/// Information content of one new distinct subdomain, in bits, in the spirit of Paxson et
/// al. (USENIX Security 2013), who bound a client's per-domain information by the gzip size
/// of its distinct query names. A full compressor per group would cost memory and time at
/// line rate, so this is a one-name-window LZ: the run shared with the previous distinct
/// name at the front and at the back (counters like `test1198`/`test1199`, session ids,
/// fixed prefixes like `dnscat.`) costs one back-reference each; the remaining bytes cost
/// the name's own order-0 entropy per byte (what Huffman coding of literals approaches),
/// at least 1 bit. Calibrated against zlib: 1200 names `test0..test1199` estimate to about
/// 2.7 kB (zlib: 2.5 kB) and 180 random 48-character base32 names to about 5 kB (zlib:
/// 5.8 kB).
pub fn info_bits(decoded: &[u8], prev: &[u8], entropy: f32) -> f32 {
    let prefix = decoded.iter().zip(prev).take_while(|(a, b)| a == b).count();
    let rest = decoded.len() - prefix;
    let suffix = decoded
        .iter()
        .rev()
        .zip(prev.iter().rev())
        .take(rest.min(prev.len().saturating_sub(prefix)))
        .take_while(|(a, b)| a == b)
        .count();
    let mut bits = NAME_BITS;
    let mut literals = decoded.len();
    for run in [prefix, suffix] {
        if run >= MIN_MATCH {
            bits += MATCH_BITS;
            literals -= run;
        }
    }
    bits + literals as f32 * entropy.clamp(1.0, 8.0)
}

/// `sub` (presentation form) as `decode_into` would decode it, when it has no escape (nearly
/// always): the text is then its own decoding, dots kept, cut at `PREV_CAP` bytes.
pub fn without_escapes(sub: &str) -> Option<&[u8]> {
    let b = sub.as_bytes();
    if b.contains(&b'\\') {
        return None;
    }
    Some(b.get(..PREV_CAP).unwrap_or(b))
}

/// Decodes `sub` (presentation form) into `out`, dots kept, at most `PREV_CAP` bytes.
/// Returns the number of bytes written.
pub fn decode_into(sub: &str, out: &mut [u8; PREV_CAP]) -> usize {
    let mut n = 0;
    for item in (Decoded { s: sub.as_bytes(), i: 0 }) {
        let Some(slot) = out.get_mut(n) else { break };
        *slot = item.unwrap_or(b'.');
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_labels_decode_escapes() {
        let f = name_features("ab\\200\\255c.de");
        assert_eq!(f.sub_len, 8); // a b 0xC8 0xFF c . d e
        assert_eq!(f.max_label, 5);
        let f = name_features("");
        assert_eq!((f.sub_len, f.max_label, f.entropy, f.alphabet), (0, 0, 0.0, None));
        // `\.` and a malformed escape are single bytes, never separators.
        let f = name_features("a\\.b\\9");
        assert_eq!((f.sub_len, f.max_label), (4, 4));
    }

    #[test]
    fn entropy_values() {
        assert_eq!(name_features("aaaa").entropy, 0.0);
        assert!((name_features("abab").entropy - 1.0).abs() < 1e-6);
        assert!((name_features("0123456789abcdef").entropy - 4.0).abs() < 1e-5);
        // Dots are not characters of the payload.
        assert!((name_features("ab.ab").entropy - 1.0).abs() < 1e-6);
        assert!(name_features("test1199").entropy < 3.0);
    }

    #[test]
    fn alphabets() {
        let a = |s: &str| name_features(s).alphabet;
        // dnscat2 (ndpi_bad-dns-traffic.pcap)
        assert_eq!(a("05e100a621c3620001636f6e736f6c65202873697276696d65732900"), Some(Alphabet::Hex));
        // iodine base32 (elastic_dns-tunnel-iodine.pcap)
        assert_eq!(a("laegpumiplhhpz12ynd1efljwlkjcgwy"), Some(Alphabet::Base32));
        // dns2tcp base64 (suri_dns2tcp_bug-1158.pcap)
        assert_eq!(
            a("hvOBgAABAEI5ODFGMjk4MEMyRTFFOEZDREI1MEZGRTA2OEIxQzMwODcyQTlBQjc"),
            Some(Alphabet::Base64)
        );
        // custom exfil (ndpi_dns-exf.pcap): '*' and '=' in labels
        assert_eq!(
            a("H4sICN03*2QAA3Rlc3QudHh0AAvJyCxWAKJEheLU5KLUEoW0zJxULgAge-.4S2FgAAAA==-"),
            Some(Alphabet::Base64)
        );
        // iodine base128: high-bit bytes escaped
        assert_eq!(a("1qcaf82\\2002hb\\201\\202Y\\203zwq\\204\\205\\2064yp"), Some(Alphabet::Binary));
        // Too short, or ordinary host names.
        assert_eq!(a("test1199"), None);
        assert_eq!(a("7cd501a621c36201"), Some(Alphabet::Hex));
        assert_eq!(a("r3---sn-4g5e6nsz-aw2e"), None);
        assert_eq!(a("mail-attachment-eu-west"), None);
        assert_eq!(a("thisisalongenglishhostname"), None);
    }

    #[test]
    fn fingerprint_ignores_case_only() {
        assert_eq!(name_features("WwW").fingerprint, name_features("www").fingerprint);
        assert_ne!(name_features("www1").fingerprint, name_features("www2").fingerprint);
    }

    #[test]
    fn info_estimate_tracks_zlib() {
        // Counter names: mostly one back-reference each.
        let mut total = 0.0;
        let mut prev = Vec::new();
        for i in 0..1200 {
            let s = format!("test{i}");
            let f = name_features(&s);
            total += info_bits(s.as_bytes(), &prev, f.entropy);
            prev = s.into_bytes();
        }
        let kb = total / 8.0 / 1000.0;
        assert!((2.0..3.5).contains(&kb), "{kb}");
        // Random base32 names: close to their raw entropy.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut total = 0.0;
        let mut prev = Vec::new();
        for _ in 0..180 {
            let s: String = (0..48)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"abcdefghijklmnopqrstuvwxyz234567"[(x % 32) as usize] as char
                })
                .collect();
            let f = name_features(&s);
            total += info_bits(s.as_bytes(), &prev, f.entropy);
            prev = s.into_bytes();
        }
        let kb = total / 8.0 / 1000.0;
        assert!((4.2..6.0).contains(&kb), "{kb}");
        // A repeated fixed prefix is charged once per name, not per byte.
        let b = info_bits(b"dnscat.aaaa1", b"dnscat.bbbb2", 2.0);
        assert!((b - (4.0 + 12.0 + 5.0 * 2.0)).abs() < 1e-6, "{b}");
    }

    #[test]
    fn decode_into_caps() {
        let mut buf = [0u8; PREV_CAP];
        assert_eq!(decode_into("a\\200.b", &mut buf), 4);
        assert_eq!(&buf[..4], b"a\xc8.b");
        let long = "x".repeat(1000);
        assert_eq!(decode_into(&long, &mut buf), PREV_CAP);
    }

    #[test]
    fn without_escapes_matches_decode_into() {
        let mut r = crate::testutil::Rng(5);
        let alphabet = b"ab.Z9\\0123-=";
        for n in 0..400 {
            let s = r.text(alphabet, n % 300);
            let mut a = [0u8; PREV_CAP];
            let k = decode_into(&s, &mut a);
            if let Some(d) = without_escapes(&s) {
                assert_eq!(d, &a[..k], "{s}");
            } else {
                assert!(s.contains('\\'));
            }
        }
    }

    /// The class table against the range tests it replaced, for every byte value.
    #[test]
    fn class_table_matches_the_ranges() {
        for b in 0..=255u8 {
            let want = match b {
                b'A'..=b'Z' => UPPER | if b > b'F' { HIGH_LETTER } else { 0 },
                b'a'..=b'z' => LOWER | if b > b'f' { HIGH_LETTER } else { 0 },
                b'0'..=b'9' => DIGIT,
                b'+' | b'/' | b'=' | b'*' => B64_PUNCT,
                b'-' | b'_' => OTHER,
                0x21..=0x7e => OTHER,
                _ => BINARY,
            };
            assert_eq!(CLASS[b as usize], want, "{b}");
        }
    }

    /// The table path against the direct computation, bit for bit, around its edge.
    #[test]
    fn entropy_table_is_bit_identical() {
        let mut r = crate::testutil::Rng(9);
        for len in 1..200usize {
            for _ in 0..20 {
                let k = 1 + r.below(40);
                let b: Vec<u8> = (0..len).map(|_| b'a' + r.below(k) as u8).collect();
                let mut hist = [0u16; 256];
                let mut present = Vec::new();
                for &x in &b {
                    if hist[x as usize] == 0 {
                        present.push(x);
                    }
                    hist[x as usize] += 1;
                }
                let mut want = 0.0f32;
                for &x in &present {
                    want -= plogp(hist[x as usize], len as f32);
                }
                let got = entropy_of(&hist, &present, len as u32);
                assert_eq!(got.to_bits(), want.to_bits(), "{len}");
            }
        }
    }
}
