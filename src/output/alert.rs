//! An alert as one NDJSON line: the detector's fields plus what the sensor adds.

use crate::detect::{event_id, Alert};
use crate::output::doc::{Doc, Field};

/// What the summary and the output thread need besides the text.
pub struct AlertLine {
    pub text: String,
    /// The registered domain, else the question name: what the summary counts it under.
    pub domain: Option<String>,
}

/// Adds `observer.name`, the configured `event.module` if any and `event.id` to the alert,
/// then writes it. `buf` is scratch reused from line to line; the text is copied out at its
/// exact size.
pub fn alert_line(a: &mut Alert, sensor: &str, module: Option<&str>, buf: &mut String) -> AlertLine {
    let doc = &mut a.doc;
    if let Some(m) = module {
        doc.insert("event.module", m.to_string());
    }
    doc.insert("observer.name", sensor.to_string());
    // Its place held before sorting, so that the record keeps its layout's shared order
    // (see `Doc::sort`); the id is filled in below.
    doc.insert("event.id", Field::Null);
    // Sorted once here, so that the lookups below are binary searches.
    doc.sort();
    let domain = summary_domain(doc);
    let id = event_id(sensor, a.rule, doc);
    doc.insert("event.id", id);
    buf.clear();
    doc.write_json(buf);
    AlertLine { text: buf.as_str().to_owned(), domain }
}

/// The registered domain, else the question name, of a sorted record: one pass over its
/// fields rather than two searches.
fn summary_domain(doc: &Doc) -> Option<String> {
    let (mut registered, mut name) = (None, None);
    for (k, v) in doc.sorted_fields()? {
        match k {
            "dns.question.registered_domain" => registered = v.as_str(),
            "dns.question.name" => name = v.as_str(),
            _ => {}
        }
    }
    registered.or(name).map(str::to_string)
}
