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
    Reader::new(msg, &mut [0u8; TEXT_BUF]).read(start, out)
}

/// Checks the name at `start` exactly as `read_name_into` would, without rendering it, and
/// returns where it ends: for names nobody will read (answer owners when no DNS log is
/// written), which were a third of all name rendering.
pub fn check_name(msg: &[u8], start: usize) -> Result<usize, NameError> {
    render::<false>(msg, start, &mut []).map(|r| r.end)
}

/// Size of the buffer a `Reader` renders into: the longest text, plus room for the 8-octet
/// store that writes a label's last octets (the dot after the last label falls inside it).
pub const TEXT_BUF: usize = MAX_NAME_TEXT + 8;

/// Reads the names of one message: `read_name_into` and `check_name`, rendering in a buffer
/// the parser keeps for all messages (so none is zeroed per name), and not walking a name
/// twice when it is only a pointer to the name walked last. In a response most owners (and
/// many targets) are exactly that: a pointer to the question or to the CNAME target before.
pub struct Reader<'a, 'b> {
    msg: &'a [u8],
    /// At least `TEXT_BUF` long, else names too long for it fail with `TooLong`.
    buf: &'b mut [u8],
    last: Option<Walked>,
}

/// A name that walked cleanly, with its text still at the start of `Reader::buf` if it was
/// rendered (and found ASCII, which it always is).
#[derive(Clone, Copy)]
struct Walked {
    start: usize,
    hops: usize,
    text: Option<usize>,
}

impl<'a, 'b> Reader<'a, 'b> {
    pub fn new(msg: &'a [u8], buf: &'b mut [u8]) -> Self {
        Reader { msg, buf, last: None }
    }

    /// `read_name_into` on this message.
    pub fn read(&mut self, start: usize, out: &mut String) -> Result<usize, NameError> {
        let (len, ascii, end) = match self.repeat(start) {
            Some((Walked { text: Some(len), .. }, end)) => (len, true, end),
            _ => {
                // The walk overwrites the text of the name remembered, even when it fails.
                self.last = None;
                let r = render::<true>(self.msg, start, self.buf)?;
                let text = r.ascii.then_some(r.len);
                self.last = Some(Walked { start, hops: r.hops, text });
                (r.len, r.ascii, r.end)
            }
        };
        out.push_str(text_str(self.buf.get(..len).unwrap_or_default(), ascii));
        Ok(end)
    }

    /// `check_name` on this message. Most answer owners are a repeat: that test is inlined
    /// into the caller, the walk is not.
    #[inline(always)]
    pub fn check(&mut self, start: usize) -> Result<usize, NameError> {
        match self.repeat(start) {
            Some((_, end)) => Ok(end),
            None => self.check_walk(start),
        }
    }

    #[inline(never)]
    fn check_walk(&mut self, start: usize) -> Result<usize, NameError> {
        let r = render::<false>(self.msg, start, &mut [])?;
        // A rendered text in `buf` stays valid; only a walked name is remembered, though.
        self.last = Some(Walked { start, hops: r.hops, text: None });
        Ok(r.end)
    }

    /// If the name at `start` is a single pointer to the name walked last, that name and
    /// where this one ends. `render` would follow the pointer (backwards, strictly before
    /// `start`) and then walk exactly as it did from the remembered start, with one hop more.
    fn repeat(&self, start: usize) -> Option<(Walked, usize)> {
        let w = self.last?;
        let p = self.msg.get(start..start + 2)?;
        let target = usize::from(p[0] & 0x3F) << 8 | usize::from(p[1]);
        let same = p[0] & 0xC0 == 0xC0 && target == w.start && target < start && w.hops < MAX_PTR_HOPS;
        same.then_some((w, start + 2))
    }
}

/// `text` as a `str`, where `ascii` says every octet of it is below 0x80 (`render` ORs
/// together every value it stores in the text and tests the high bits once: checking the text
/// again with `is_ascii` was a tenth of the cost of reading a typical name). Rendered text is
/// always ASCII (plain label octets are 0x21..=0x7e, the rest is escaped); anything else
/// would go through `from_utf8` (and come out empty, as before, if it were not UTF-8).
fn text_str(text: &[u8], ascii: bool) -> &str {
    if ascii {
        // Checked in test and fuzz builds (cargo-fuzz keeps debug assertions on): the claim
        // below is what makes the call sound.
        debug_assert!(text.is_ascii(), "rendered name text is not ASCII: {text:?}");
        // SAFETY: every octet is below 0x80 (see `Rendered::ascii`), and a sequence of such
        // octets is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(text) }
    } else {
        std::str::from_utf8(text).unwrap_or_default()
    }
}

/// What `render` found.
struct Rendered {
    /// Length of the text (0 when not writing).
    len: usize,
    /// Offset just past the name's in-place octets.
    end: usize,
    /// Pointers followed.
    hops: usize,
    /// Every octet of `text[..len]` was written by this walk with its high bit clear.
    ascii: bool,
}

/// Walks the name at `start`, checking it, and (when `WRITE`) renders it into `text`.
fn render<const WRITE: bool>(msg: &[u8], start: usize, text: &mut [u8]) -> Result<Rendered, NameError> {
    // Every label is written followed by a dot; the last dot is not part of the text.
    let mut n = 0usize;
    // The OR of everything stored in the text, for `Rendered::ascii`.
    let mut stored = 0u64;
    let mut pos = start;
    // Pointers must land strictly before the start of the piece being read; each jump lowers
    // the limit, so no pointer can be followed twice and the walk cannot cycle.
    let mut limit = start;
    let mut end = None;
    let mut hops = 0usize;
    // Where the wire length reaches `MAX_NAME_WIRE` if the labels from `pos` on run that
    // far: a label ending past it makes the name too long. One bound instead of a running
    // total keeps a register free in the label loop.
    let mut wire_end = start.saturating_add(MAX_NAME_WIRE);
    loop {
        // The labels in place from `pos`, up to the root or a pointer: what only changes at a
        // pointer stays out of this loop, which is where a name's time goes.
        let b = loop {
            let b = *msg.get(pos).ok_or(NameError::Short)?;
            // Not a label of 1..=63 octets: the root, a pointer or a bad label type.
            if b.wrapping_sub(1) >= 0x3F {
                break b;
            }
            let len = usize::from(b);
            let label_end = pos + 1 + len;
            if label_end > wire_end {
                return Err(NameError::TooLong);
            }
            if label_end > msg.len() {
                return Err(NameError::Short);
            }
            if WRITE {
                n = write_label(text, n, msg, label_end, len, &mut stored).ok_or(NameError::TooLong)?;
                *text.get_mut(n).ok_or(NameError::TooLong)? = b'.';
                n += 1;
            }
            pos = label_end;
        };
        match b & 0xC0 {
            0x00 => {
                // The root octet is the name's last on the wire.
                if pos >= wire_end {
                    return Err(NameError::TooLong);
                }
                let len = match n {
                    _ if !WRITE => 0,
                    0 => {
                        *text.get_mut(0).ok_or(NameError::TooLong)? = b'.';
                        1
                    }
                    _ => n - 1,
                };
                let end = end.unwrap_or(pos + 1);
                return Ok(Rendered { len, end, hops, ascii: stored & HIGH == 0 });
            }
            0xC0 => {
                let lo = *msg.get(pos + 1).ok_or(NameError::Short)?;
                let target = usize::from(b & 0x3F) << 8 | usize::from(lo);
                hops += 1;
                if target >= limit || hops > MAX_PTR_HOPS {
                    return Err(NameError::BadPointer);
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                // The wire octets left carry over to the piece at `target`.
                wire_end = target + wire_end.saturating_sub(pos);
                limit = target;
                pos = target;
            }
            _ => return Err(NameError::BadLabelType),
        }
    }
}

/// Writes the label `msg[label_end - len..label_end]` escaped at `text[n..]` and returns
/// the new length, or `None` if `text` is too small (never for a `TEXT_BUF` buffer: the
/// wire cap bounds the text). ORs everything it stores into `stored`.
///
/// Labels are checked and copied eight octets at a time. The last 1..=8 octets come from the
/// eight that end the label (only a pointer into the 12-octet header can put a label's end
/// before offset 8; such a label goes octet by octet), and are written as one 8-octet store:
/// `text` past the returned length is scratch, overwritten by the next label or unused.
fn write_label(
    text: &mut [u8],
    n: usize,
    msg: &[u8],
    label_end: usize,
    len: usize,
    stored: &mut u64,
) -> Option<usize> {
    let from = label_end.checked_sub(len)?;
    let mut at = n;
    let mut i = from;
    let mut rest = len;
    while rest > 8 {
        let x = word(msg, i)?;
        if escapes(x) != 0 {
            return write_escaped(text, n, msg.get(from..label_end)?, stored);
        }
        text.get_mut(at..at + 8)?.copy_from_slice(&x.to_le_bytes());
        *stored |= x;
        at += 8;
        i += 8;
        rest -= 8;
    }
    let Some(x) = label_end.checked_sub(8).and_then(|s| word(msg, s)) else {
        return write_escaped(text, n, msg.get(from..label_end)?, stored);
    };
    // Little-endian: the label's last `rest` octets are the top `rest` octets of `x`.
    let drop = 8 * (8 - rest) as u32;
    if escapes(x) >> drop != 0 {
        return write_escaped(text, n, msg.get(from..label_end)?, stored);
    }
    let x = x >> drop;
    text.get_mut(at..at + 8)?.copy_from_slice(&x.to_le_bytes());
    *stored |= x;
    Some(at + rest)
}

/// The eight octets of `msg` from `at`, little-endian.
fn word(msg: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(msg.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// `write_label` octet by octet, for labels with something to escape.
fn write_escaped(text: &mut [u8], n: usize, label: &[u8], stored: &mut u64) -> Option<usize> {
    let mut n = n;
    for &c in label {
        if needs_escape(c) {
            let e = escape(c);
            text.get_mut(n..n + 4)?.copy_from_slice(&e);
            *stored |= u64::from(u32::from_le_bytes(e));
            n += 4;
        } else {
            *text.get_mut(n)? = c;
            *stored |= u64::from(c);
            n += 1;
        }
    }
    Some(n)
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// `needs_escape` on the eight octets of `x` at once: the high bit of each octet of the
/// result is set where that octet needs escaping, every other bit is clear. Each test adds a
/// constant to the low seven bits (or to them XOR a character, also below 0x80), so no sum
/// carries out of its octet and octets do not disturb each other.
fn escapes(x: u64) -> u64 {
    let low = x & LOW7;
    // Bit 7 set where low >= 0x21, where low == 0x7f, where low is not '.', not '\'.
    let printable = low + ONES * 0x5f;
    let del = low + ONES;
    let not_dot = (low ^ (ONES * u64::from(b'.'))) + LOW7;
    let not_backslash = (low ^ (ONES * u64::from(b'\\'))) + LOW7;
    // An octet with its high bit set is flagged by `x` itself, whatever its low bits say.
    (x | del | !(printable & not_dot & not_backslash)) & HIGH
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
    use crate::testutil::Rng;

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

    /// The renderer before labels went eight octets at a time: octet by octet, growing a
    /// `String`. The reference the fast path must match exactly.
    fn reference(msg: &[u8], start: usize) -> Result<(String, usize), NameError> {
        let mut s = String::new();
        let (mut pos, mut limit, mut end, mut wire, mut hops) = (start, start, None, 0usize, 0usize);
        loop {
            let b = *msg.get(pos).ok_or(NameError::Short)?;
            match b & 0xC0 {
                0x00 => {
                    let len = usize::from(b);
                    wire += len + 1;
                    if wire > MAX_NAME_WIRE {
                        return Err(NameError::TooLong);
                    }
                    if len == 0 {
                        if s.is_empty() {
                            s.push('.');
                        }
                        return Ok((s, end.unwrap_or(pos + 1)));
                    }
                    let label = msg.get(pos + 1..pos + 1 + len).ok_or(NameError::Short)?;
                    if !s.is_empty() {
                        s.push('.');
                    }
                    for &c in label {
                        if needs_escape(c) {
                            s.push_str(&format!("\\{c:03}"));
                        } else {
                            s.push(char::from(c));
                        }
                    }
                    pos += 1 + len;
                }
                0xC0 => {
                    let lo = *msg.get(pos + 1).ok_or(NameError::Short)?;
                    let target = usize::from(b & 0x3F) << 8 | usize::from(lo);
                    hops += 1;
                    if target >= limit || hops > MAX_PTR_HOPS {
                        return Err(NameError::BadPointer);
                    }
                    end.get_or_insert(pos + 2);
                    limit = target;
                    pos = target;
                }
                _ => return Err(NameError::BadLabelType),
            }
        }
    }

    /// A label of `len` octets: mostly hostname characters, sometimes anything.
    fn label(rng: &mut Rng, len: usize) -> Vec<u8> {
        let wild = rng.below(4) == 0;
        (0..len)
            .map(|_| match rng.below(if wild { 8 } else { 200 }) {
                0 => [b'.', b'\\', b' ', 0x7f, 0x80, 0xff, 0x20, 0x21, 0x7e, 0][rng.below(10)],
                1 => rng.next() as u8,
                _ => b"abcdefghijklmnopqrstuvwxyz0123456789-_"[rng.below(38)],
            })
            .collect()
    }

    /// Labels of every length, roots and pointers (backwards, forwards, into the header, in
    /// chains), cut anywhere.
    fn random_message(rng: &mut Rng) -> Vec<u8> {
        let mut m: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
        while m.len() < 300 + rng.below(400) {
            match rng.below(10) {
                0 | 3 => m.push(0),
                1 if !m.is_empty() => {
                    let to = rng.below(m.len() + 4);
                    m.extend([0xC0 | (to >> 8) as u8, to as u8]);
                }
                2 => m.push([0x40, 0x80][rng.below(2)] | rng.next() as u8 & 0x3f),
                _ => {
                    let len = if rng.below(3) == 0 { 1 + rng.below(63) } else { 1 + rng.below(12) };
                    m.push(len as u8);
                    m.extend(label(rng, len));
                }
            }
        }
        m.truncate(m.len() - rng.below(8));
        m
    }

    /// The renderer, read from every offset, against the reference.
    #[test]
    fn fast_renderer_matches_reference() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut names = 0;
        for _ in 0..10_000 {
            let m = random_message(&mut rng);
            for start in 0..m.len() {
                let want = reference(&m, start);
                names += usize::from(want.is_ok());
                let mut out = String::from("keep:");
                let got = read_name_into(&m, start, &mut out).map(|end| (out.clone(), end));
                let want_out = want.clone().map(|(s, end)| (format!("keep:{s}"), end));
                assert_eq!(got, want_out, "{m:02x?} at {start}");
                if got.is_err() {
                    assert_eq!(out, "keep:");
                }
                assert_eq!(check_name(&m, start), want.map(|(_, end)| end));
            }
        }
        // Most starts are not names; enough are for the comparison to mean something.
        assert!(names > 200_000, "{names}");
    }

    /// One `Reader` reading and checking names in a random order, mostly at pointers to the
    /// name it walked last (where it skips the walk), against the reference.
    #[test]
    fn reader_repeats_match_reference() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut repeats = 0;
        for _ in 0..3_000 {
            let mut m = random_message(&mut rng);
            let mut buf = vec![0u8; TEXT_BUF];
            let mut last = None;
            let mut ops = Vec::new();
            for _ in 0..200 {
                // A pointer to the last start, appended, or anywhere.
                let start = match (rng.below(3), last) {
                    (0, Some(l)) if l < 0x4000 => {
                        let at = m.len();
                        m.extend([0xC0 | (l >> 8) as u8, l as u8]);
                        repeats += 1;
                        at
                    }
                    _ => rng.below(m.len()),
                };
                let read = rng.below(2) == 0;
                ops.push((start, read));
                last = Some(start);
            }
            let mut r = Reader::new(&m, &mut buf);
            for (start, read) in ops {
                let want = reference(&m, start);
                if read {
                    let mut out = String::from("keep:");
                    let got = r.read(start, &mut out).map(|end| (out.clone(), end));
                    let want = want.map(|(s, end)| (format!("keep:{s}"), end));
                    assert_eq!(got, want, "{m:02x?} at {start}");
                } else {
                    assert_eq!(r.check(start), want.map(|(_, end)| end), "{m:02x?} at {start}");
                }
            }
        }
        assert!(repeats > 100_000, "{repeats}");
    }

    /// Runs of short labels in place, 2..=80 octets in all, with an octet to escape anywhere
    /// or none, followed by a pointer and 0..=9 octets to the end of the message; read from
    /// their start and again after a label and a pointer to them (not at the text's start).
    #[test]
    fn runs_of_every_length() {
        let mut rng = Rng(0x7A3F_0C55_19E2_B0D1);
        for total in 2..=80usize {
            for _ in 0..40 {
                let mut m = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03com\x00".to_vec();
                let run_at = m.len();
                let mut left = total;
                while left >= 2 {
                    let len = (1 + rng.below(12)).min(left - 1);
                    m.push(len as u8);
                    m.extend((0..len).map(|_| b"abcxyz019-_"[rng.below(11)]));
                    left -= len + 1;
                }
                if rng.below(3) == 0 {
                    let at = run_at + 1 + rng.below(m.len() - run_at - 1);
                    if m[at] > 12 {
                        m[at] = [b'.', b'\\', 0x80, b' '][rng.below(4)];
                    }
                }
                m.extend([0xC0, 12]);
                m.extend(std::iter::repeat(0).take(rng.below(10)));
                assert_eq!(read_name(&m, run_at), reference(&m, run_at), "{m:02x?}");
                // The run again, after a label and a pointer.
                let at = m.len();
                m.extend([2, b'a', b'b', 0xC0 | (run_at >> 8) as u8, run_at as u8]);
                assert_eq!(read_name(&m, at), reference(&m, at), "{m:02x?}");
            }
        }
    }

    #[test]
    fn escapes_matches_needs_escape_per_octet() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..200_000u32 {
            let mut x = rng.next().to_le_bytes();
            // Every octet value at every position, beside random neighbours.
            x[(i % 8) as usize] = (i / 8 % 256) as u8;
            let got = escapes(u64::from_le_bytes(x)).to_le_bytes();
            for (o, c) in got.iter().zip(x) {
                assert_eq!(*o, if needs_escape(c) { 0x80 } else { 0 }, "{x:02x?}");
            }
        }
    }

    #[test]
    fn long_labels_and_tails() {
        // Every label length, plain and with one escaped octet at every place.
        for len in 1..=63usize {
            for bad in std::iter::once(None).chain((0..len).map(Some)) {
                let mut m = vec![0u8; 12];
                let mut l: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                if let Some(b) = bad {
                    l[b] = b'.';
                }
                m.push(len as u8);
                m.extend(&l);
                m.extend(b"\x03com\x00");
                let (s, end) = read_name(&m, 12).unwrap();
                assert_eq!(Ok((s, end)), reference(&m, 12));
            }
        }
    }

    /// Labels of every length ending 1..=10 octets before the end of the message, with an
    /// octet to escape at the start, middle or end of it, or none.
    #[test]
    fn labels_at_the_end_of_the_message() {
        for len in 1..=63usize {
            for after in 0..=9usize {
                for bad in [None, Some(0), Some(len / 2), Some(len - 1)] {
                    let mut m = vec![0u8; 12];
                    m.extend(b"\x02ab");
                    m.push(len as u8);
                    let mut l: Vec<u8> = (0..len).map(|i| b'0' + (i % 10) as u8).collect();
                    if let Some(b) = bad {
                        l[b] = [b'.', b'\\', 0x80, 0][b % 4];
                    }
                    m.extend(&l);
                    m.push(0);
                    m.extend(std::iter::repeat(0xC0).take(after));
                    assert_eq!(read_name(&m, 12), reference(&m, 12), "{m:02x?}");
                    // And as the target of a pointer from after it.
                    let p = m.len();
                    m.extend([0xC0, 12]);
                    assert_eq!(read_name(&m, p), reference(&m, p), "{m:02x?}");
                }
            }
        }
    }

    /// `text_str`, told whether the octets are ASCII, gives what `from_utf8` gave for any
    /// octets: ASCII, other UTF-8, and not UTF-8 at all (empty).
    #[test]
    fn ascii_str_matches_from_utf8() {
        let mut rng = Rng(0x5851_F42D_4C95_7F2D);
        for i in 0..100_000 {
            let len = rng.below(40);
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8 & 0x7f).collect();
            match i % 4 {
                0 => {}
                1 if len > 0 => v[rng.below(len)] |= 0x80,
                _ => {
                    let at = rng.below(len + 1);
                    let s = ["é", "\u{1F600}", "ß", "\u{7FF}"][rng.below(4)];
                    v.splice(at..at, s.bytes());
                }
            }
            assert_eq!(text_str(&v, v.is_ascii()), std::str::from_utf8(&v).unwrap_or_default(), "{v:02x?}");
        }
    }

    #[test]
    fn skip_checks_in_place_part() {
        assert_eq!(skip_name(b"\x01a\xc0\x00", 0), Err(NameError::BadPointer));
        assert_eq!(skip_name(b"\x00\x01a\xc0\x00", 1), Ok(5));
        assert_eq!(skip_name(b"\x01a", 0), Err(NameError::Short));
        assert_eq!(skip_name(b"\x05a", 0), Err(NameError::Short));
    }

    /// The 255-octet cap across pointers: a name whose labels are split over two to four
    /// pieces (each continued by a pointer to the one before), 250..=260 octets in all.
    #[test]
    fn length_cap_across_pointers() {
        let mut rng = Rng(0x3C6E_F372_FE94_F82B);
        let mut at_cap = 0;
        for _ in 0..20_000 {
            let total = 250 + rng.below(11);
            let pieces = 2 + rng.below(3);
            // Label lengths adding up (with their length octets and the root) to `total`.
            let mut lens = Vec::new();
            let mut left = total - 1;
            while left > 0 {
                let len = (1 + rng.below(63)).min(left - 1).max(1);
                if len + 1 > left {
                    break;
                }
                lens.push(len);
                left -= len + 1;
            }
            if left != 0 {
                continue;
            }
            let wire: usize = lens.iter().map(|l| l + 1).sum::<usize>() + 1;
            assert_eq!(wire, total);
            at_cap += usize::from(total == 255);
            // Pieces from the last (with the root) to the first; each continues with a pointer.
            let mut cuts: Vec<usize> = (0..pieces - 1).map(|_| rng.below(lens.len() + 1)).collect();
            cuts.sort_unstable();
            let mut m = vec![0u8; 12];
            let mut next = None;
            let mut hi = lens.len();
            for &lo in cuts.iter().rev().chain(std::iter::once(&0)) {
                let here = m.len();
                for &len in &lens[lo..hi] {
                    m.push(len as u8);
                    m.extend((0..len).map(|i| [b'a', b'.', b'z', 0x80][(i * 7 + len) % 4]));
                }
                match next {
                    None => m.push(0),
                    Some(p) => m.extend([0xC0 | (p >> 8) as u8, p as u8]),
                }
                next = Some(here);
                hi = lo;
            }
            let start = next.unwrap();
            let want = reference(&m, start);
            assert_eq!(want.is_ok(), total <= 255, "{m:02x?}");
            assert_eq!(read_name(&m, start), want, "{m:02x?} at {start}");
            assert_eq!(check_name(&m, start), want.map(|(_, end)| end));
        }
        assert!(at_cap > 500, "{at_cap}");
    }

    /// Every octet value that matters to the escape test (the bounds of the plain range, the
    /// dot, the backslash, high octets) at every position of labels of 1..=63 octets, in the
    /// name's last label, with the name ending at the end of the message, and read again
    /// through a pointer.
    #[test]
    fn escapes_everywhere_in_names_at_the_end() {
        for len in 1..=63usize {
            for at in 0..len {
                for c in [0u8, 0x20, 0x21, b'.', b'/', b'[', b'\\', b']', 0x7e, 0x7f, 0x80, 0xa1, 0xae, 0xff]
                {
                    let mut m = vec![0xffu8; 12];
                    m.extend(b"\x02ab");
                    m.push(len as u8);
                    m.extend((0..len).map(|i| if i == at { c } else { b'a' + (i % 26) as u8 }));
                    m.push(0);
                    assert_eq!(read_name(&m, 12), reference(&m, 12), "{m:02x?}");
                    // And the message cut inside the name.
                    let cut = &m[..m.len() - 1 - at % 3];
                    assert_eq!(read_name(cut, 12), reference(cut, 12), "{cut:02x?}");
                    let p = m.len();
                    m.extend([0xC0, 12]);
                    assert_eq!(read_name(&m, p), reference(&m, p), "{m:02x?}");
                }
            }
        }
    }

    /// `render` reports its text as ASCII for every name it renders, and the text is.
    #[test]
    fn rendered_text_is_ascii() {
        let mut rng = Rng(0xBF58_476D_1CE4_E5B9);
        let mut buf = vec![0u8; TEXT_BUF];
        for _ in 0..3_000 {
            let m = random_message(&mut rng);
            for start in 0..m.len() {
                if let Ok(r) = render::<true>(&m, start, &mut buf) {
                    assert!(r.ascii, "{m:02x?} at {start}");
                    assert!(buf[..r.len].is_ascii(), "{m:02x?} at {start}");
                }
            }
        }
    }
}
