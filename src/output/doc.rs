//! A flat JSON object built field by field and written once: the alerts and DNS-log records.
//!
//! It replaces `serde_json::Map` (a `BTreeMap` with a `String` per key, a `Value` per field,
//! written through `fmt::Display`), which cost more than the detections on alert-dense
//! traffic. Here keys are mostly `&'static str`, values are typed and written straight from
//! what they hold (a timestamp is formatted on the stack while writing), and the order a
//! `Map` gives, keys sorted byte-wise, comes from one sort when the record is written. The
//! text is serde_json's own (its string escaper, `itoa`/`ryu` numbers), so it is byte for
//! byte what the `Map` wrote; tests/replay and the output tests pin that.

use crate::Nanos;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use std::borrow::Cow;

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
    List(Vec<Field>),
    Object(Doc),
}

/// The fields of one JSON object in the order they were inserted, until `sort`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Doc {
    fields: Vec<(Key, Field)>,
    /// Sorted by key with no key twice: set by `sort`, cleared by `insert`.
    sorted: bool,
}

impl Doc {
    pub fn new() -> Doc {
        Doc::default()
    }

    /// Room for `n` fields, so that building a record of known size does not regrow.
    pub fn with_capacity(n: usize) -> Doc {
        Doc { fields: Vec::with_capacity(n), sorted: false }
    }

    /// Sets a field. As with a map, a later insert of the same key wins; the copy is dropped
    /// when the record is sorted, not searched for here, so building stays linear.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Field>) {
        self.fields.push((key.into(), value.into()));
        self.sorted = false;
    }

    /// The field's current value (the last one inserted under `key`).
    pub fn get(&self, key: &str) -> Option<&Field> {
        if self.sorted {
            let i = self.fields.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
            return self.fields.get(i).map(|(_, v)| v);
        }
        self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        if self.sorted {
            return self.fields.len();
        }
        let mut keys: Vec<&str> = self.fields.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Puts the fields in the order serde_json's `Map` keeps (byte-wise by key), keeping
    /// only the last value of a key inserted twice.
    pub fn sort(&mut self) {
        if self.sorted {
            return;
        }
        // Stable, so that of equal keys the later insert stays behind the earlier one.
        self.fields.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        // `dedup_by` keeps the first of a run and drops `later`; move the later value into
        // the kept slot first, so the last insert wins.
        self.fields.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });
        self.sorted = true;
    }

    /// Appends the record as one line of compact JSON (no newline), exactly as
    /// `Value::Object(map).to_string()` writes the same fields.
    pub fn write_json(&mut self, out: &mut Vec<u8>) {
        self.sort();
        // Writing to a Vec fails only if a value's Serialize does, and none of ours can.
        let _ = serde_json::to_writer(out, &*self);
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
            Field::List(l) => Value::Array(l.iter().map(Field::to_value).collect()),
            Field::Object(d) => Value::Object(d.to_map()),
        }
    }

    /// Appends the value's compact JSON text, as `Value::to_string` writes it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let _ = serde_json::to_writer(out, self);
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Null => s.serialize_unit(),
            Field::Bool(b) => s.serialize_bool(*b),
            Field::U64(n) => s.serialize_u64(*n),
            Field::I64(n) => s.serialize_i64(*n),
            Field::F64(x) => s.serialize_f64(*x),
            Field::Str(v) => s.serialize_str(v),
            Field::Time(t) => {
                let b = crate::time::rfc3339_bytes(*t);
                s.serialize_str(std::str::from_utf8(&b).unwrap_or_default())
            }
            Field::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Field::Object(d) => d.serialize(s),
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.sorted {
            // Only a Doc serialized by hand gets here; `write_json` and `Field::from` sort.
            let mut d = self.clone();
            d.sort();
            return d.serialize(s);
        }
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(d: &mut Doc) -> String {
        let mut out = Vec::new();
        d.write_json(&mut out);
        String::from_utf8(out).unwrap()
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
    fn values_read_back_as_json_built_them() {
        assert_eq!(Field::from(5u16).to_value(), json!(5u16));
        assert_eq!(Field::from(-5i64).to_value(), json!(-5i64));
        assert_eq!(Field::from(5i64).to_value(), json!(5i64));
        assert_eq!(Field::from(2.5).to_value(), json!(2.5));
        assert_eq!(Field::from(f64::NAN).to_value(), json!(f64::NAN));
        assert_eq!(Field::from(vec!["a"]).to_value(), json!(["a"]));
        assert_eq!(Field::Time(0).to_value(), json!("1970-01-01T00:00:00.000000Z"));
        let mut one = Vec::new();
        Field::from("a\"b").write_json(&mut one);
        assert_eq!(one, json!("a\"b").to_string().into_bytes());
    }
}
