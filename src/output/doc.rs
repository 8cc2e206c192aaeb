//! A flat JSON object built field by field and written once: the alerts and DNS-log records.
//!
//! It replaces `serde_json::Map` (a `BTreeMap` with a `String` per key, a `Value` per field,
//! written through `fmt::Display`), which cost more than the detections on alert-dense
//! traffic. Here keys are mostly `&'static str`, values are typed and written straight from
//! what they hold (a timestamp is formatted on the stack while writing), and the order a
//! `Map` gives, keys sorted byte-wise, is worked out once per layout of keys (see `Orders`).
//! The text is serde_json's: numbers go through the writers it uses (`itoa`, `zmij`), a
//! string that needs escaping gets its escapes, and any other string is copied whole; so it
//! is byte for byte what the `Map` wrote (tests below compare them). The key text of a
//! layout is also kept, ready to copy, with its order.

use crate::output::num;
use crate::Nanos;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A field's name: nearly always a literal.
pub type Key = Cow<'static, str>;

/// One value, as `serde_json::Value` would hold it after `json!(..)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Null,
    Bool(bool),
    /// Non-negative integers (what `json!` makes of any unsigned or non-negative integer).
    U64(u64),
    /// Negative integers.
    I64(i64),
    /// Finite floats; `Field::from(f64)` turns the others into `Null`, as `json!` does.
    F64(f64),
    Str(Cow<'static, str>),
    /// Packet time, written as `time::rfc3339` text.
    Time(Nanos),
    /// An address, written as its `Display` text (a JSON string).
    Ip(IpAddr),
    List(Vec<Field>),
    Object(Doc),
}

/// The fields of one JSON object in the order they were inserted, and once `sort` has run,
/// the order to write them in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Doc {
    fields: Vec<(Key, Field)>,
    sorted: Option<Sorted>,
}

/// Indices into `Doc::fields` in key order (of a key inserted twice, only the last).
#[derive(Clone, Debug)]
enum Sorted {
    /// The layout's order and key text, shared by every record built the same way. (An
    /// `Arc` because a record must be `Send`, though it stays on the thread that built it.)
    Shared(Arc<Layout>),
    /// This record's own: some key is not a literal, or an insert after sorting added one.
    /// `plain_keys`: every key is known to need no escaping.
    Own { order: Vec<u32>, plain_keys: bool },
}

impl Sorted {
    fn order(&self) -> &[u32] {
        match self {
            Sorted::Shared(l) => &l.order,
            Sorted::Own { order, .. } => order,
        }
    }

    /// Makes the order this record's own, so that it can change.
    fn make_own(&mut self) {
        if let Sorted::Shared(l) = self {
            *self = Sorted::Own { order: l.order.clone(), plain_keys: l.plain_keys };
        }
    }
}

/// Two records are equal when their fields and the order they write them in are, however
/// that order was found.
impl PartialEq for Sorted {
    fn eq(&self, other: &Sorted) -> bool {
        self.order() == other.order()
    }
}

impl Doc {
    pub fn new() -> Doc {
        Doc::default()
    }

    /// Room for `n` fields, so that building a record of known size does not regrow.
    pub fn with_capacity(n: usize) -> Doc {
        Doc { fields: Vec::with_capacity(n), sorted: None }
    }

    /// Sets a field. As with a map, a later insert of the same key wins: while the record
    /// is built the field is only appended (`sort` drops the earlier copy); once sorted, it
    /// also takes its place in the order.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Field>) {
        let (key, value) = (key.into(), value.into());
        let Some(sorted) = self.sorted.as_mut() else {
            self.fields.push((key, value));
            return;
        };
        match position(&self.fields, sorted.order(), &key) {
            Ok(at) => {
                if let Some(slot) = sorted.order().get(at).and_then(|&i| self.fields.get_mut(i as usize)) {
                    slot.1 = value;
                }
            }
            Err(at) => {
                sorted.make_own();
                if let Sorted::Own { order, plain_keys } = sorted {
                    *plain_keys &= !needs_escape(key.as_bytes());
                    order.insert(at, self.fields.len() as u32);
                }
                self.fields.push((key, value));
            }
        }
    }

    /// The field's current value (the last one inserted under `key`).
    pub fn get(&self, key: &str) -> Option<&Field> {
        match &self.sorted {
            Some(s) => {
                let order = s.order();
                let at = position(&self.fields, order, key).ok()?;
                order.get(at).and_then(|&i| self.fields.get(i as usize)).map(|(_, v)| v)
            }
            None => self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        }
    }

    /// The fields in key order, each key once with its last value; `None` until `sort`
    /// has run. One pass over this finds several fields for the cost of one lookup.
    pub fn sorted_fields(&self) -> Option<impl Iterator<Item = (&str, &Field)> + '_> {
        let order = self.sorted.as_ref()?.order();
        Some(order.iter().filter_map(|&i| self.fields.get(i as usize)).map(|(k, v)| (k.as_ref(), v)))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        match &self.sorted {
            Some(s) => s.order().len(),
            None => order(&self.fields).len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Works out the order serde_json's `Map` keeps (byte-wise by key), keeping only the
    /// last value of a key inserted twice. Later inserts keep it.
    pub fn sort(&mut self) {
        if self.sorted.is_none() {
            self.sorted = Some(ORDERS.with(|o| match o.try_borrow_mut() {
                Ok(mut orders) => orders.sorted(&self.fields),
                // Not reentrant, but if it were: work it out without the cache.
                Err(_) => own(&self.fields),
            }));
        }
    }

    /// Appends the record as one line of compact JSON (no newline), exactly as
    /// `Value::Object(map).to_string()` writes the same fields.
    pub fn write_json(&mut self, out: &mut String) {
        self.sort();
        if let Some(s) = &self.sorted {
            write_object(&self.fields, s, out);
        }
    }

    /// The same record as a `serde_json::Map`, for tests and tools that inspect alerts.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in &self.fields {
            m.insert(k.to_string(), v.to_value());
        }
        m
    }
}

/// Where `key` is, or would go, in `order`.
fn position(fields: &[(Key, Field)], order: &[u32], key: &str) -> Result<usize, usize> {
    order.binary_search_by(|&i| fields.get(i as usize).map_or("", |(k, _)| k.as_ref()).cmp(key))
}

/// Indices of the fields in key order, of a key inserted twice only the last.
fn order(fields: &[(Key, Field)]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..fields.len() as u32).collect();
    let key = |i: u32| fields.get(i as usize).map_or("", |(k, _)| k.as_ref());
    // Equal keys with the later insert first, so that dedup keeps it.
    idx.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(b.cmp(&a)));
    idx.dedup_by(|b, a| key(*a) == key(*b));
    idx
}

fn own(fields: &[(Key, Field)]) -> Sorted {
    Sorted::Own { order: order(fields), plain_keys: !fields.iter().any(|(k, _)| needs_escape(k.as_bytes())) }
}

/// The orders already worked out, one per layout: the sequence of literal keys a builder
/// inserts is the same on every call (an alert of a rule, a DNS record with or without an
/// answer), so sorting it is done once per layout and thread rather than per record. A
/// layout is told apart by the address and length of each key; a record with a key that
/// is not a literal is sorted afresh.
#[derive(Default)]
struct Orders {
    known: Vec<Arc<Layout>>,
}

/// One layout: its keys, their order, and the text written before each value (`{"key":`
/// for the first, `,"key":` for the rest, escaped), so that a record of the layout copies
/// one piece of text per field.
#[derive(Debug)]
struct Layout {
    keys: Vec<(usize, usize)>,
    order: Vec<u32>,
    plain_keys: bool,
    text: String,
    /// Where each field's piece of `text` ends, in `order`.
    ends: Vec<u32>,
}

/// More layouts than any build has; past it records are sorted afresh.
const MAX_LAYOUTS: usize = 64;

thread_local! {
    static ORDERS: RefCell<Orders> = RefCell::new(Orders::default());
}

fn literal(k: &Key) -> Option<(usize, usize)> {
    match k {
        Cow::Borrowed(s) => Some((s.as_ptr() as usize, s.len())),
        Cow::Owned(_) => None,
    }
}

impl Orders {
    fn sorted(&mut self, fields: &[(Key, Field)]) -> Sorted {
        let same = |keys: &[(usize, usize)]| {
            keys.len() == fields.len() && keys.iter().zip(fields).all(|(l, (k, _))| literal(k) == Some(*l))
        };
        if let Some(l) = self.known.iter().find(|l| same(&l.keys)) {
            return Sorted::Shared(l.clone());
        }
        let keys: Option<Vec<(usize, usize)>> = fields.iter().map(|(k, _)| literal(k)).collect();
        match keys.filter(|_| self.known.len() < MAX_LAYOUTS) {
            Some(keys) => {
                let l = Arc::new(layout(fields, keys));
                self.known.push(l.clone());
                Sorted::Shared(l)
            }
            None => own(fields),
        }
    }
}

fn layout(fields: &[(Key, Field)], keys: Vec<(usize, usize)>) -> Layout {
    let order = order(fields);
    let plain_keys = !fields.iter().any(|(k, _)| needs_escape(k.as_bytes()));
    let mut text = String::new();
    let mut ends = Vec::with_capacity(order.len());
    for (n, (k, _)) in order.iter().filter_map(|&i| fields.get(i as usize)).enumerate() {
        text.push(if n == 0 { '{' } else { ',' });
        write_str(k, &mut text);
        text.push(':');
        ends.push(text.len() as u32);
    }
    Layout { keys, order, plain_keys, text, ends }
}

fn write_object(fields: &[(Key, Field)], s: &Sorted, out: &mut String) {
    let (order, plain_keys) = match s {
        Sorted::Shared(l) => return write_layout(fields, l, out),
        Sorted::Own { order, plain_keys } => (order, *plain_keys),
    };
    out.push('{');
    for (n, (k, v)) in order.iter().filter_map(|&i| fields.get(i as usize)).enumerate() {
        if n > 0 {
            out.push(',');
        }
        if plain_keys {
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
        } else {
            write_str(k, out);
            out.push(':');
        }
        v.write_json(out);
    }
    out.push('}');
}

/// `write_object` for a record of a known layout: the text before each value is copied
/// whole.
fn write_layout(fields: &[(Key, Field)], l: &Layout, out: &mut String) {
    if l.order.is_empty() {
        out.push_str("{}");
        return;
    }
    let mut start = 0;
    for (&i, &end) in l.order.iter().zip(&l.ends) {
        let end = end as usize;
        out.push_str(l.text.get(start..end).unwrap_or_default());
        start = end;
        match fields.get(i as usize) {
            Some((_, v)) => v.write_json(out),
            None => out.push_str("null"),
        }
    }
    out.push('}');
}

/// A JSON string as serde_json writes it. Most strings (addresses, names) need no escape:
/// those are copied whole, after a check eight bytes at a time.
pub(crate) fn write_str(s: &str, out: &mut String) {
    out.push('"');
    write_escaped(s, out);
    out.push('"');
}

/// The inside of `write_str`: the text with its escapes, without the quotes.
pub(crate) fn write_escaped(s: &str, out: &mut String) {
    if needs_escape(s.as_bytes()) {
        escape(s, out);
    } else {
        out.push_str(s);
    }
}

/// A packet time as its JSON string (`time::rfc3339` text).
pub(crate) fn write_time(t: Nanos, out: &mut String) {
    out.push('"');
    out.push_str(std::str::from_utf8(&crate::time::rfc3339_bytes(t)).unwrap_or_default());
    out.push('"');
}

/// An address as its JSON string (`Display` text).
pub(crate) fn write_ip(ip: &IpAddr, out: &mut String) {
    out.push('"');
    num::ip(ip, out);
    out.push('"');
}

/// serde_json's escapes: the short forms for `"`, `\` and five control characters,
/// `\u00xx` (lower-case hex) for the other control characters; every other byte as is.
fn escape(s: &str, out: &mut String) {
    const HEX: [u8; 16] = *b"0123456789abcdef";
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `start` and `i` are character boundaries.
        out.push_str(s.get(start..i).unwrap_or_default());
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

/// Whether any byte is one serde_json escapes: a control character (below 0x20), `"` or
/// `\`. Everything else, including DEL and non-ASCII UTF-8, it copies as is.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero when some byte of `x` is below `n` (n <= 0x80). Exact ("hasless" from Bit
    // Twiddling Hacks): a borrow only starts at a byte that is itself below `n`.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let special = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1) != 0
    };
    if b.len() < 8 {
        return b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    }
    // Whole words, then the last eight bytes (overlapping the words already seen).
    b.chunks_exact(8).any(special) || b.get(b.len() - 8..).is_some_and(special)
}

impl Field {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as `json!` would have built it.
    pub fn to_value(&self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(*b),
            Field::U64(n) => Value::from(*n),
            Field::I64(n) => Value::from(*n),
            Field::F64(x) => Value::from(*x),
            Field::Str(s) => Value::String(s.to_string()),
            Field::Time(t) => Value::String(crate::time::rfc3339(*t)),
            Field::Ip(ip) => Value::String(ip.to_string()),
            Field::List(l) => Value::Array(l.iter().map(Field::to_value).collect()),
            Field::Object(d) => Value::Object(d.to_map()),
        }
    }

    /// Appends the value's compact JSON text, as `Value::to_string` writes it.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Field::Null => out.push_str("null"),
            Field::Bool(true) => out.push_str("true"),
            Field::Bool(false) => out.push_str("false"),
            Field::U64(n) => num::u64(*n, out),
            Field::I64(n) => num::i64(*n, out),
            Field::F64(x) => num::json_f64(*x, out),
            Field::Str(s) => write_str(s, out),
            Field::Time(t) => write_time(*t, out),
            Field::Ip(ip) => write_ip(ip, out),
            Field::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Field::Object(d) => match &d.sorted {
                Some(s) => write_object(&d.fields, s, out),
                None => d.clone().write_json(out),
            },
        }
    }
}

impl From<Doc> for Field {
    fn from(mut d: Doc) -> Field {
        d.sort();
        Field::Object(d)
    }
}

impl From<bool> for Field {
    fn from(b: bool) -> Field {
        Field::Bool(b)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Field {
            fn from(n: $t) -> Field {
                Field::U64(n as u64)
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Field {
            fn from(n: $t) -> Field {
                if n >= 0 { Field::U64(n as u64) } else { Field::I64(n as i64) }
            }
        }
    )*};
}
signed!(i32, i64);

impl From<f64> for Field {
    fn from(x: f64) -> Field {
        if x.is_finite() {
            Field::F64(x)
        } else {
            Field::Null
        }
    }
}

impl From<IpAddr> for Field {
    fn from(ip: IpAddr) -> Field {
        Field::Ip(ip)
    }
}

impl From<Ipv4Addr> for Field {
    fn from(ip: Ipv4Addr) -> Field {
        Field::Ip(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for Field {
    fn from(ip: Ipv6Addr) -> Field {
        Field::Ip(IpAddr::V6(ip))
    }
}

impl From<&'static str> for Field {
    fn from(s: &'static str) -> Field {
        Field::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Field {
    fn from(s: String) -> Field {
        Field::Str(Cow::Owned(s))
    }
}

impl From<Cow<'static, str>> for Field {
    fn from(s: Cow<'static, str>) -> Field {
        Field::Str(s)
    }
}

impl<T: Into<Field>> From<Vec<T>> for Field {
    fn from(v: Vec<T>) -> Field {
        Field::List(v.into_iter().map(Into::into).collect())
    }
}

/// For detector tests: the alert's line is what a `serde_json::Map` of its fields writes.
#[cfg(test)]
pub fn assert_writes_as_a_map(d: &Doc) {
    let mut line = String::new();
    d.clone().write_json(&mut line);
    assert_eq!(line, Value::Object(d.to_map()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(d: &mut Doc) -> String {
        let mut out = String::new();
        d.write_json(&mut out);
        out
    }

    #[test]
    fn writes_what_a_serde_json_map_writes() {
        let mut d = Doc::new();
        let mut inner = Doc::new();
        inner.insert("type", "A");
        inner.insert("data", Field::Null);
        inner.insert("ttl", 300u32);
        d.insert("z.last", "quote \" backslash \\ newline \n tab \t nul \u{0} é ≥ 😀");
        d.insert("a.first", Field::Time(1_700_000_000_123_456_789));
        d.insert("m.neg", -5i64);
        d.insert("m.pos", 7i32);
        d.insert("m.big", u64::MAX);
        d.insert("f.round", 0.1 + 0.2);
        d.insert("f.whole", 3.0);
        d.insert("f.tiny", 1e-7);
        d.insert("f.huge", 1e300);
        d.insert("f.nan", f64::NAN);
        d.insert("f.inf", f64::NEG_INFINITY);
        d.insert("b", true);
        d.insert("list", vec!["x", "y"]);
        d.insert("empty", Vec::<String>::new());
        d.insert("answers", vec![Field::from(inner)]);
        d.insert(String::from("owned.key"), String::from("v"));
        d.insert("Upper", "sorts before lower case");
        d.insert("a.firsT", "byte-wise order");
        let want = Value::Object(d.to_map()).to_string();
        assert_eq!(text(&mut d), want);
        // Sorting again (or writing twice) changes nothing.
        assert_eq!(text(&mut d), want);
        assert!(want.starts_with(r#"{"Upper":"#), "{want}");
        assert!(want.contains(r#""a.first":"2023-11-14T22:13:20.123456Z""#), "{want}");
        assert!(want.contains(r#""answers":[{"data":null,"ttl":300,"type":"A"}]"#), "{want}");
        assert!(want.contains(r#""f.nan":null"#) && want.contains(r#""f.round":0.30000000000000004"#));
    }

    #[test]
    fn a_later_insert_of_a_key_wins() {
        let mut d = Doc::new();
        d.insert("event.module", "portent");
        d.insert("a", 1u32);
        d.insert("event.module", String::from("custom"));
        assert_eq!(d.get("event.module"), Some(&Field::from("custom")));
        assert_eq!(d.len(), 2);
        let mut m = Map::new();
        m.insert("event.module".into(), json!("portent"));
        m.insert("a".into(), json!(1));
        m.insert("event.module".into(), json!("custom"));
        assert_eq!(text(&mut d), Value::Object(m).to_string());
        assert_eq!(d.len(), 2);
        assert_eq!(d.get("event.module").and_then(Field::as_str), Some("custom"));
    }

    #[test]
    fn strings_are_escaped_exactly_where_serde_json_escapes() {
        // Every byte value, at every position of a chunk and in the tail.
        for c in 0u8..=0x7f {
            for at in 0..19 {
                let mut s = "x".repeat(19);
                s.replace_range(at..at + 1, std::str::from_utf8(&[c]).unwrap());
                let want = c < 0x20 || c == b'"' || c == b'\\';
                assert_eq!(needs_escape(s.as_bytes()), want, "byte {c:#x} at {at}");
                let mut out = String::new();
                write_str(&s, &mut out);
                assert_eq!(out, Value::String(s.clone()).to_string());
            }
        }
        for s in ["", "é", "≥ 😀 \u{7f}", "aaaaaaa\u{80}bbbbbbbb", "ÿÿÿÿÿÿÿÿÿÿ"] {
            assert!(!needs_escape(s.as_bytes()), "{s:?}");
        }
    }

    /// The second record of a layout takes its order from the cache: same text as a fresh
    /// sort, for layouts that differ only in one key, in a duplicate, or in an owned key.
    #[test]
    fn cached_orders_match_a_fresh_sort() {
        fn build(variant: u32) -> Doc {
            let mut d = Doc::new();
            d.insert("b", 1u32);
            d.insert("a", 2u32);
            match variant {
                0 => d.insert("c", 3u32),
                1 => d.insert("a", 4u32),
                2 => d.insert("q\"uote\n\u{1}", 7u32),
                _ => d.insert(format!("c{variant}"), 5u32),
            }
            d.insert("aa", 6u32);
            d
        }
        for round in 0..3 {
            for variant in 0..5 {
                let mut d = build(variant);
                let want = Value::Object(d.to_map()).to_string();
                assert_eq!(text(&mut d), want, "round {round} variant {variant}");
            }
        }
    }

    #[test]
    fn an_empty_record_and_an_empty_object() {
        for _ in 0..2 {
            assert_eq!(text(&mut Doc::new()), "{}");
            let mut d = Doc::new();
            d.insert("inner", Doc::new());
            assert_eq!(text(&mut d), r#"{"inner":{}}"#);
        }
    }

    #[test]
    fn inserts_into_a_sorted_doc_keep_it_sorted() {
        // The second time round the order comes from the layout cache.
        for _ in 0..2 {
            let mut d = Doc::new();
            d.insert("m", 1u32);
            d.insert("c", 2u32);
            d.sort();
            d.insert("m", 8u32);
            assert_eq!(text(&mut d), r#"{"c":2,"m":8}"#);
        }
        let mut d = Doc::new();
        d.insert("m", 1u32);
        d.insert("c", 2u32);
        d.sort();
        d.insert("a", 3u32);
        d.insert("z", 4u32);
        d.insert("m", 5u32);
        d.insert("d", 6u32);
        assert_eq!(text(&mut d), r#"{"a":3,"c":2,"d":6,"m":5,"z":4}"#);
        // A key that needs escaping, inserted after the layout was found to need none.
        d.insert("q\"uote", 7u32);
        assert_eq!(text(&mut d), r#"{"a":3,"c":2,"d":6,"m":5,"q\"uote":7,"z":4}"#);
        assert_eq!(d.get("d"), Some(&Field::U64(6)));
        assert_eq!(d.get("e"), None);
    }

    #[test]
    fn integers_are_written_as_serde_json_writes_them() {
        for n in [0u64, 1, 9, 10, 99, 100, 12345, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut out = String::new();
            Field::from(n).write_json(&mut out);
            assert_eq!(out, json!(n).to_string());
        }
        for n in [-1i64, -9, -10, -12345, i64::MIN + 1, i64::MIN] {
            let mut out = String::new();
            Field::from(n).write_json(&mut out);
            assert_eq!(out, json!(n).to_string());
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut v4: Vec<IpAddr> = (0..=255u8).map(|b| IpAddr::from([b, 255 - b, b / 3, 10])).collect();
        v4.extend(
            ["0.0.0.0", "255.255.255.255", "10.0.0.5", "1.1.1.1"].map(|a| a.parse::<IpAddr>().unwrap()),
        );
        let v6 = ["::", "::1", "2001:db8::7", "::ffff:192.0.2.1", "fe80::1:2:3:4", "1:2:3:4:5:6:7:8"];
        for ip in v4.into_iter().chain(v6.map(|a| a.parse().unwrap())) {
            let mut out = String::new();
            Field::from(ip).write_json(&mut out);
            assert_eq!(out, json!(ip.to_string()).to_string());
        }
    }

    #[test]
    fn values_read_back_as_json_built_them() {
        assert_eq!(Field::from(5u16).to_value(), json!(5u16));
        assert_eq!(Field::from(-5i64).to_value(), json!(-5i64));
        assert_eq!(Field::from(5i64).to_value(), json!(5i64));
        assert_eq!(Field::from(2.5).to_value(), json!(2.5));
        assert_eq!(Field::from(f64::NAN).to_value(), json!(f64::NAN));
        assert_eq!(Field::from(vec!["a"]).to_value(), json!(["a"]));
        assert_eq!(Field::Time(0).to_value(), json!("1970-01-01T00:00:00.000000Z"));
        let mut one = String::new();
        Field::from("a\"b").write_json(&mut one);
        assert_eq!(one, json!("a\"b").to_string());
    }
}
