//! Numbers as text, appended to a String, with the bytes `format!` or serde_json gives but
//! without going through `fmt::write` (a few hundred instructions a call, and an alert
//! writes dozens of numbers).
//!
//! `display` and `fixed` take a fast path for the values alerts hold (rounded to a few
//! decimals, far from the limits of an `f64`) and hand anything else to `fmt`, so they write
//! what `{}` and `{:.N}` write for every value; the tests compare them over many.

use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};

/// `n` in decimal, as `{}` and serde_json write it.
pub fn u64(n: u64, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(n));
}

pub fn i64(n: i64, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `x` as serde_json writes an `f64`: the shortest text that reads back as `x` (zmij, the
/// writer serde_json calls), and `null` for NaN and the infinities.
pub fn json_f64(x: f64, out: &mut String) {
    if x.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(x));
    } else {
        out.push_str("null");
    }
}

/// Powers of ten up to the 10^15 bound of `display`'s fast path.
const POW10: [u64; 16] = {
    let mut p = [1u64; 16];
    let mut i = 1;
    while i < p.len() {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// The decimals `display` tries: alert values are rounded to two places.
const DISPLAY_DECIMALS: usize = 2;

/// `x` as `{}` writes it (`format!("{x}")`).
///
/// Fast path: when `x` is the double nearest to k / 100 for an integer |k| < 10^15, that
/// decimal is its shortest round-trip text, which is what `{}` writes (no exponent, no
/// trailing zeros). It is the shortest because it has at most 15 significant digits, and no
/// two decimals of at most 15 digits fall within one `f64` rounding interval (the interval
/// is at most 2^-52 of the value wide, 15-digit decimals are at least 10^-15 of it apart).
pub fn display(x: f64, out: &mut String) {
    if x == 0.0 {
        // `{}` keeps the sign of a negative zero.
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let scale = POW10[DISPLAY_DECIMALS] as f64;
    let k = (x * scale).round();
    // k / scale is the division rounded once, so equality means x is the double nearest to
    // the decimal k / 100.
    if x.is_finite() && k.abs() < POW10[15] as f64 && k / scale == x {
        let k = k.abs() as u64;
        if x < 0.0 {
            out.push('-');
        }
        decimal(k, DISPLAY_DECIMALS, true, out);
    } else {
        let _ = write!(out, "{x}");
    }
}

/// `x` with `digits` decimals (at most 3), as `{:.N}` writes it: the exact value of `x`
/// rounded half to even, with the sign of `x` even when the digits are all zero.
pub fn fixed(x: f64, digits: usize, out: &mut String) {
    match fixed_digits(x, digits) {
        Some(q) => {
            if x.is_sign_negative() {
                out.push('-');
            }
            decimal(q, digits, false, out);
        }
        None => {
            let _ = write!(out, "{x:.digits$}");
        }
    }
}

/// |x| × 10^digits rounded half to even, worked out exactly from the bits of `x`; None for
/// what this does not cover (NaN, the infinities, |x| ≥ 2^63, more than three decimals).
fn fixed_digits(x: f64, digits: usize) -> Option<u64> {
    if digits > 3 || !x.is_finite() {
        return None;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    // |x| = m × 2^e exactly.
    let (m, e) = if biased == 0 { (frac, -1074) } else { (frac | (1u64 << 52), biased - 1075) };
    let scaled = u128::from(m) * u128::from(*POW10.get(digits)?);
    if e >= 0 {
        // An integer: no rounding, as long as it fits.
        let v = scaled.checked_shl(e as u32).filter(|v| v >> e == scaled)?;
        return u64::try_from(v).ok();
    }
    let shift = e.unsigned_abs();
    if shift >= 127 {
        // scaled < 2^63, so the value is below 2^-64: rounds to zero (no tie possible).
        return Some(0);
    }
    let q = scaled >> shift;
    let rest = scaled & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    let q = if rest > half || (rest == half && q & 1 == 1) { q + 1 } else { q };
    u64::try_from(q).ok()
}

/// q / 10^digits as decimal text: the integer part, then the `digits` decimals (all of
/// them, or with `trim` only up to the last non-zero one, and no point if none is left).
fn decimal(q: u64, digits: usize, trim: bool, out: &mut String) {
    let p = POW10.get(digits).copied().unwrap_or(1);
    u64(q / p, out);
    let mut f = q % p;
    let mut n = digits;
    if trim {
        if f == 0 {
            return;
        }
        while f % 10 == 0 {
            f /= 10;
            n -= 1;
        }
    }
    if n == 0 {
        return;
    }
    out.push('.');
    let mut buf = [b'0'; 3];
    for d in buf.iter_mut().take(n).rev() {
        *d = b'0' + (f % 10) as u8;
        f /= 10;
    }
    for &d in buf.iter().take(n) {
        out.push(char::from(d));
    }
}

/// `ip.to_string()`. IPv4 by hand (dotted decimal, no leading zeros): it is most of the
/// addresses written, and `Display` goes through `fmt` five times for each.
pub fn ip(ip: &IpAddr, out: &mut String) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, b) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if b >= 100 {
                    out.push(char::from(b'0' + b / 100));
                }
                if b >= 10 {
                    out.push(char::from(b'0' + b / 10 % 10));
                }
                out.push(char::from(b'0' + b % 10));
            }
        }
        IpAddr::V6(v6) => ipv6(v6, out),
    }
}

/// `v6.to_string()`, the way std writes it (RFC 5952): an IPv4-mapped address as
/// `::ffff:a.b.c.d`; otherwise lower-case hex groups without leading zeros, the longest run
/// of two or more zero groups (the first of equal runs) written `::`.
fn ipv6(v6: &Ipv6Addr, out: &mut String) {
    if let Some(v4) = v6.to_ipv4_mapped() {
        out.push_str("::ffff:");
        return ip(&IpAddr::V4(v4), out);
    }
    let seg = v6.segments();
    let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
    for (i, &s) in seg.iter().enumerate() {
        if s == 0 {
            if run_len == 0 {
                run = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    if best_len > 1 {
        groups(seg.get(..best).unwrap_or_default(), out);
        out.push_str("::");
        groups(seg.get(best + best_len..).unwrap_or_default(), out);
    } else {
        groups(&seg, out);
    }
}

/// Hex groups joined by `:`.
fn groups(seg: &[u16], out: &mut String) {
    const HEX: [u8; 16] = *b"0123456789abcdef";
    for (i, &s) in seg.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let d = (s >> shift) & 15;
            if d != 0 || started || shift == 0 {
                started = true;
                out.push(char::from(HEX[usize::from(d)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use std::net::Ipv4Addr;

    /// Values that test the edges: zeros, ties, powers of ten and two, the bounds of the
    /// fast paths, the smallest and largest doubles, NaN and the infinities.
    fn edge_values() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            0.25,
            0.125,
            0.375,
            0.005,
            0.015,
            1.005,
            0.045,
            0.1 + 0.2,
            1e-7,
            1e-300,
            5e-324,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            f64::MAX,
            f64::MIN,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9_007_199_254_740_992.0,
            9_007_199_254_740_993.0,
            9.223_372_036_854_776e18,
            1.844_674_407_370_955_2e19,
            999_999_999_999_999.0,
            1e15,
            1e13,
            9_999_999_999_999.99,
            9_999_999_999_999.995,
            99_999_999_999_999.99,
            4096.0,
            58.14,
            4.75,
            3.5,
        ];
        for p in -20..=25 {
            let t = 10f64.powi(p);
            v.extend([t, f64::from_bits(t.to_bits() + 1), f64::from_bits(t.to_bits() - 1)]);
        }
        for p in -70..=70 {
            v.push(2f64.powi(p));
        }
        // Exact ties at each number of decimals.
        for k in 0..400u32 {
            v.extend([f64::from(k) + 0.5, f64::from(k) / 4.0 + 0.125, f64::from(k) / 8.0 + 0.0625]);
        }
        let neg: Vec<f64> = v.iter().map(|x| -x).collect();
        v.extend(neg);
        v
    }

    /// Edge values, random doubles of every exponent, and random values of the kinds alerts
    /// hold: hundredths, thousandths, ratios and counts.
    fn values() -> Vec<f64> {
        let mut rng = Rng(0x5eed_f10a7);
        let mut v = edge_values();
        for _ in 0..200_000 {
            let r = rng.next();
            let x = match r % 6 {
                0 => f64::from_bits(rng.next()),
                1 => (rng.next() % 2_000_000) as f64 / 100.0,
                2 => (rng.next() % 20_000_000) as f64 / 1000.0,
                3 => (rng.next() % 1_000_000) as f64 / (1 + rng.next() % 1000) as f64,
                4 => ((rng.next() % 10_000_000) as f64 / 7.0 * 100.0).round() / 100.0,
                _ => (rng.next() >> (rng.next() % 64)) as f64 / 10f64.powi((rng.next() % 20) as i32),
            };
            v.push(if r & 0x100 != 0 { -x } else { x });
        }
        v
    }

    #[test]
    fn display_writes_what_format_writes() {
        for x in values() {
            let mut out = String::new();
            display(x, &mut out);
            assert_eq!(out, format!("{x}"), "bits {:#x}", x.to_bits());
        }
    }

    #[test]
    fn fixed_writes_what_format_writes() {
        for x in values() {
            for digits in 0..=4 {
                let mut out = String::new();
                fixed(x, digits, &mut out);
                assert_eq!(out, format!("{x:.digits$}"), "{digits} decimals, bits {:#x}", x.to_bits());
            }
        }
    }

    #[test]
    fn fixed_takes_the_fast_path_for_alert_values() {
        for x in [0.0, -0.0, 0.5, 2.5, 4.754, -3.25, 1e15, 123_456.789] {
            for digits in 0..=3 {
                assert!(fixed_digits(x, digits).is_some(), "{x} {digits}");
            }
        }
        assert_eq!(fixed_digits(f64::NAN, 1), None);
        assert_eq!(fixed_digits(1e19, 2), None);
    }

    #[test]
    fn json_f64_writes_what_serde_json_writes() {
        for x in values() {
            let mut out = String::new();
            json_f64(x, &mut out);
            assert_eq!(out, serde_json::to_string(&x).unwrap(), "bits {:#x}", x.to_bits());
        }
    }

    #[test]
    fn addresses_write_what_display_writes() {
        let mut rng = Rng(11);
        let mut ips: Vec<IpAddr> =
            ["::", "::1", "1::", "2001:db8::7", "::ffff:192.0.2.1", "::1.2.3.4", "fe80::1:2:3:4"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        ips.extend((0..=255u8).map(|b| IpAddr::from([b, 255 - b, b / 3, 10])));
        for _ in 0..100_000 {
            let r = rng.next();
            // Groups zero with varying odds, so that runs of zeros of every length and place
            // turn up, and small groups that drop leading zeros.
            let seg: [u16; 8] = std::array::from_fn(|i| {
                let g = (rng.next() >> (r % 16)) as u16;
                let (a, b) = ((r >> (8 + i)) & 1 == 1, (r >> (16 + i)) & 1 == 1);
                let zero = match (r >> 24) % 4 {
                    0 => false,
                    1 => a,
                    2 => a || b,
                    _ => a && b,
                };
                if zero {
                    0
                } else {
                    g >> ((r >> (30 + 2 * i)) % 4 * 4)
                }
            });
            ips.push(IpAddr::V6(Ipv6Addr::from(seg)));
            ips.push(IpAddr::from((rng.next() as u32).to_be_bytes()));
        }
        ips.push(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()));
        for a in ips {
            let mut out = String::new();
            ip(&a, &mut out);
            assert_eq!(out, a.to_string());
        }
    }

    #[test]
    fn integers_write_what_format_writes() {
        let mut rng = Rng(7);
        let mut ns = vec![0u64, 1, 9, 10, 99, 100, u64::MAX, u64::MAX - 1, 1 << 63];
        ns.extend((0..10_000).map(|_| rng.next() >> (rng.next() % 64)));
        for n in ns {
            let mut out = String::new();
            u64(n, &mut out);
            assert_eq!(out, n.to_string());
            let s = n as i64;
            out.clear();
            i64(s, &mut out);
            assert_eq!(out, s.to_string());
        }
    }
}
