//! Domain names on the wire → presentation text, following compression pointers only
//! backwards.
//!
//! Written by hand instead of using `domain`'s `ParsedName`: that walker checks a pointer only
//! against the pointer's own offset, so a pointer back into the piece it sits in is accepted
//! and the cycle only ends at its 255-hop or length cap; it also rejects names of exactly 255
//! octets (`name_len >= 255`), and rendering our escaped text would take a second pass.
//! Here one iterative pass checks and renders.

/// RFC 1035 §3.1: a name is at most 255 octets on the wire (length octets and root included).
pub const MAX_NAME_WIRE: usize = 255;

/// Longest text `read_name` can produce: four labels (63+63+63+61 octets, 255 on the wire)
/// with every octet escaped as `\DDD`, plus three dots: 250 * 4 + 3.
pub const MAX_NAME_TEXT: usize = 1003;

/// A 255-octet name has at most 127 labels, and honest compression needs at most one pointer
/// per label; the decreasing limit already forbids cycles, this only bounds pointer chains.
pub const MAX_PTR_HOPS: usize = 127;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The message ended inside the name.
    Short,
    /// A compression pointer pointed at or after the start of the piece it continues (forward,
    /// self or cycle), or the chain was longer than `MAX_PTR_HOPS`.
    BadPointer,
    /// More than `MAX_NAME_WIRE` octets.
    TooLong,
    /// Label type 0b01 or 0b10 (RFC 6891 §5 retired extended labels).
    BadLabelType,
}

/// Reads the name at `start` in `msg` and returns its presentation text (no trailing dot,
/// root is ".") with the offset just past the name's in-place octets (after the first
/// pointer, if any).
pub fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), NameError> {
    let mut s = String::new();
    let end = read_name_into(msg, start, &mut s)?;
    Ok((s, end))
}

/// `read_name`, appending the text to `out` (which the caller may be reusing: the parser
/// recycles the strings of messages it has finished with). On error `out` is unchanged.
pub fn read_name_into(msg: &[u8], start: usize, out: &mut String) -> Result<usize, NameError> {
    // Render on the stack, then copy once. Most names fit the small buffer (zeroing the
    // full-size one on every call costs more than the rare retry).
    let mut small = [0u8; SMALL_TEXT];
    match render::<true>(msg, start, &mut small) {
        Ok((len, end)) => {
            out.push_str(small.get(..len).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or_default());
            Ok(end)
        }
        Err(Overflow::Buffer) => {
            let mut full = [0u8; MAX_NAME_TEXT];
            let (len, end) = render::<true>(msg, start, &mut full).map_err(Overflow::into_name)?;
            out.push_str(full.get(..len).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or_default());
            Ok(end)
        }
        Err(Overflow::Name(e)) => Err(e),
    }
}

/// Text length that covers nearly all real names without escapes.
const SMALL_TEXT: usize = 256;

/// Checks the name at `start` exactly as `read_name_into` would, without rendering it, and
/// returns where it ends: for names nobody will read (answer owners when no DNS log is
/// written), which were a third of all name rendering.
pub fn check_name(msg: &[u8], start: usize) -> Result<usize, NameError> {
    render::<false>(msg, start, &mut []).map(|(_, end)| end).map_err(Overflow::into_name)
}

/// `render` failed on the name, or only on the size of the text buffer it was given.
enum Overflow {
    Name(NameError),
    Buffer,
}

impl Overflow {
    fn into_name(self) -> NameError {
        match self {
            Overflow::Name(e) => e,
            // The full-size buffer holds any name within MAX_NAME_WIRE.
            Overflow::Buffer => NameError::TooLong,
        }
    }
}

impl From<NameError> for Overflow {
    fn from(e: NameError) -> Self {
        Overflow::Name(e)
    }
}

/// Walks the name at `start`, checking it, and (when `WRITE`) renders it into `text`.
/// Returns the text length (0 when not writing) and where the name ends in the message.
fn render<const WRITE: bool>(msg: &[u8], start: usize, text: &mut [u8]) -> Result<(usize, usize), Overflow> {
    let mut n = 0usize;
    let mut pos = start;
    // Pointers must land strictly before the start of the piece being read; each jump lowers
    // the limit, so no pointer can be followed twice and the walk cannot cycle.
    let mut limit = start;
    let mut end = None;
    let mut wire = 0usize;
    let mut hops = 0usize;
    loop {
        let b = *msg.get(pos).ok_or(NameError::Short)?;
        match b & 0xC0 {
            0x00 => {
                let len = usize::from(b);
                wire += len + 1;
                if wire > MAX_NAME_WIRE {
                    return Err(NameError::TooLong.into());
                }
                if len == 0 {
                    if WRITE && n == 0 {
                        *text.get_mut(0).ok_or(Overflow::Buffer)? = b'.';
                        n = 1;
                    }
                    return Ok((n, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(NameError::Short)?;
                if WRITE {
                    if n != 0 {
                        *text.get_mut(n).ok_or(Overflow::Buffer)? = b'.';
                        n += 1;
                    }
                    n = write_label(text, n, label).ok_or(Overflow::Buffer)?;
                }
                pos += 1 + len;
            }
            0xC0 => {
                let lo = *msg.get(pos + 1).ok_or(NameError::Short)?;
                let target = usize::from(b & 0x3F) << 8 | usize::from(lo);
                hops += 1;
                if target >= limit || hops > MAX_PTR_HOPS {
                    return Err(NameError::BadPointer.into());
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                limit = target;
                pos = target;
            }
            _ => return Err(NameError::BadLabelType.into()),
        }
    }
}

/// Writes `label` escaped at `text[n..]`, returns the new length, or `None` if `text` is too
/// small (never for a `MAX_NAME_TEXT` buffer: the wire cap bounds the text).
fn write_label(text: &mut [u8], n: usize, label: &[u8]) -> Option<usize> {
    if !label.iter().any(|&c| needs_escape(c)) {
        text.get_mut(n..n + label.len())?.copy_from_slice(label);
        return Some(n + label.len());
    }
    let mut n = n;
    for &c in label {
        if needs_escape(c) {
            text.get_mut(n..n + 4)?.copy_from_slice(&escape(c));
            n += 4;
        } else {
            *text.get_mut(n)? = c;
            n += 1;
        }
    }
    Some(n)
}

fn escape(c: u8) -> [u8; 4] {
    [b'\\', b'0' + c / 100, b'0' + (c / 10) % 10, b'0' + c % 10]
}

/// Steps over the name at `start` without following pointers (for records whose names nobody
/// reads): checks only the in-place labels. Returns the offset just past them.
pub fn skip_name(msg: &[u8], start: usize) -> Result<usize, NameError> {
    let mut pos = start;
    let mut wire = 0usize;
    loop {
        let b = *msg.get(pos).ok_or(NameError::Short)?;
        match b & 0xC0 {
            0x00 => {
                let len = usize::from(b);
                wire += len + 1;
                if wire > MAX_NAME_WIRE {
                    return Err(NameError::TooLong);
                }
                pos += 1 + len;
                if len == 0 {
                    return Ok(pos);
                }
            }
            0xC0 => {
                let lo = *msg.get(pos + 1).ok_or(NameError::Short)?;
                let target = usize::from(b & 0x3F) << 8 | usize::from(lo);
                if target >= start {
                    return Err(NameError::BadPointer);
                }
                return Ok(pos + 2);
            }
            _ => return Err(NameError::BadLabelType),
        }
    }
}

/// Appends `bytes` with printable ASCII kept and everything else, plus `.` and `\`, as `\DDD`
/// (RFC 1035 §5.1), so 8-bit labels (iodine's base128) survive into text unambiguously.
pub fn push_escaped(out: &mut String, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // Copy the longest plain run in one go: most labels are entirely plain.
        let plain = rest.iter().position(|&c| needs_escape(c)).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(plain);
        if let Ok(s) = std::str::from_utf8(run) {
            out.push_str(s);
        }
        if let Some((&c, after)) = tail.split_first() {
            for d in escape(c) {
                out.push(char::from(d));
            }
            rest = after;
        } else {
            rest = tail;
        }
    }
}

fn needs_escape(c: u8) -> bool {
    !(0x21..=0x7e).contains(&c) || c == b'.' || c == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(msg: &[u8], start: usize, expect: Result<(&str, usize), NameError>) {
        let got = read_name(msg, start);
        assert_eq!(got.as_ref().map(|(s, end)| (s.as_str(), *end)).map_err(|e| *e), expect);
    }

    #[test]
    fn plain_root_and_escapes() {
        check(b"\x03www\x07example\x03com\x00", 0, Ok(("www.example.com", 17)));
        check(b"\x00", 0, Ok((".", 1)));
        // A dot, a backslash, a space and a high byte inside labels.
        check(b"\x03a.b\x02\\ \x01\xff\x00", 0, Ok(("a\\046b.\\092\\032.\\255", 10)));
        // Case is kept.
        check(b"\x03WwW\x00", 0, Ok(("WwW", 5)));
    }

    #[test]
    fn pointers_backwards_only() {
        // "com" at 0, then "a" + pointer to 0 at 5.
        let m = b"\x03com\x00\x01a\xc0\x00";
        check(m, 5, Ok(("a.com", 9)));
        // Self pointer.
        check(b"\x00\x00\xc0\x02", 2, Err(NameError::BadPointer));
        // Forward pointer.
        check(b"\xc0\x04\x00\x00\x01a\x00", 0, Err(NameError::BadPointer));
        // Pointer into the piece it continues: "a" at 2 then pointer to 2.
        check(b"\x00\x00\x01a\xc0\x02", 2, Err(NameError::BadPointer));
        // Two-pointer cycle: 0 -> 2 is forward from the start of the name at 2 -> 0 -> 2.
        check(b"\xc0\x02\xc0\x00", 2, Err(NameError::BadPointer));
        // Pointer cut short, reserved label type.
        check(b"\x01a\xc0", 0, Err(NameError::Short));
        check(b"\x41a", 0, Err(NameError::BadLabelType));
    }

    #[test]
    fn length_cap_is_255_inclusive() {
        // 3 labels of 63 + one of 61 + root = 255 octets: accepted, fully escaped = max text.
        let mut m = Vec::new();
        for len in [63u8, 63, 63, 61] {
            m.push(len);
            m.extend(vec![0u8; usize::from(len)]);
        }
        m.push(0);
        assert_eq!(m.len(), 255);
        let (s, end) = read_name(&m, 0).unwrap();
        assert_eq!((s.len(), end), (MAX_NAME_TEXT, 255));
        // One more octet in the last label: 256.
        m[3 * 64] = 62;
        m.insert(254, 0);
        assert_eq!(read_name(&m, 0), Err(NameError::TooLong));
        assert_eq!(skip_name(&m, 0), Err(NameError::TooLong));
    }

    #[test]
    fn skip_checks_in_place_part() {
        assert_eq!(skip_name(b"\x01a\xc0\x00", 0), Err(NameError::BadPointer));
        assert_eq!(skip_name(b"\x00\x01a\xc0\x00", 1), Ok(5));
        assert_eq!(skip_name(b"\x01a", 0), Err(NameError::Short));
        assert_eq!(skip_name(b"\x05a", 0), Err(NameError::Short));
    }
}
