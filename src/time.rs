//! Packet time to text. No wall clock here: these only format the capture's timestamps.

use crate::Nanos;

/// RFC 3339 UTC with microseconds, e.g. `2009-11-18T08:00:21.123456Z` (ECS `@timestamp`).
pub fn rfc3339(ns: Nanos) -> String {
    String::from_utf8_lossy(&rfc3339_bytes(ns)).into_owned()
}

/// `rfc3339` without the allocation, for writers that copy the text straight out (alerts
/// carry several timestamps). The year always has four digits: a `Nanos` (u64) ends in 2554.
pub fn rfc3339_bytes(ns: Nanos) -> [u8; 27] {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1_000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(c) = b.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, sod / 3600);
    put(14, 2, (sod % 3600) / 60);
    put(17, 2, sod % 60);
    put(20, 6, micros);
    b
}

/// Howard Hinnant's days-from-epoch to proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// ISO 8601 / RFC 3339 date-time → Nanos: `2018-03-24T17:15:20.865716Z`,
/// `2019-08-22T23:48:27.924120+0000`, `+00:00`, a space for the `T`, no zone (UTC).
pub fn parse_iso(s: &str) -> Option<Nanos> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ns: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut digits = 0;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if digits < 9 {
                ns = ns * 10 + i64::from(c - b'0');
            }
            digits += 1;
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            ns *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i..) {
        None | Some([]) | Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), rest @ ..]) => {
            let digits: Vec<u8> = rest.iter().copied().filter(|c| *c != b':').collect();
            if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = |k: usize| i64::from(digits.get(k).map_or(0, |c| c - b'0'));
            let off = (v(0) * 10 + v(1)) * 3600 + (v(2) * 10 + v(3)) * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    let total = i128::from(secs) * 1_000_000_000 + i128::from(ns);
    Nanos::try_from(total).ok()
}

/// Howard Hinnant's proleptic Gregorian date → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_258_531_221_123_456_789), "2009-11-18T08:00:21.123456Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709551Z");
    }

    /// The digit writer against the `format!` it replaced, over every day of the range in
    /// steps that visit each month, hour, minute, second and many microsecond values.
    #[test]
    fn matches_the_format_it_replaced() {
        fn reference(ns: Nanos) -> String {
            let secs = ns / 1_000_000_000;
            let micros = (ns % 1_000_000_000) / 1_000;
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let sod = secs % 86_400;
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                sod / 3600,
                (sod % 3600) / 60,
                sod % 60
            )
        }
        let mut ns: u64 = 0;
        while let Some(next) = ns.checked_add(86_400 * 1_000_000_000 + 3_661_000_001_001) {
            assert_eq!(rfc3339(ns), reference(ns));
            ns = next;
        }
        assert_eq!(rfc3339(u64::MAX), reference(u64::MAX));
    }
}
