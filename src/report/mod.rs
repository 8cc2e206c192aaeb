//! `portent report`: one self-contained HTML page from an alerts file (NDJSON), for the
//! analyst who has a browser and no SIEM. Inline CSS, inline SVG and a few lines of inline
//! JS; nothing is fetched, so the page opens offline and from an e-mail attachment.
//!
//! Every string taken from an alert goes through `esc`: query names are chosen by whoever
//! runs the tunnel, so the page treats them as hostile text.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Alerts drawn; past it the page says how many were left out. A browser stays responsive
/// with tens of thousands of rows, and an analyst reads far fewer.
pub const MAX_ALERTS: usize = 20_000;

/// Reads NDJSON alert records: every non-empty line must be a JSON object with `rule.name`.
/// The error names the 1-based line.
pub fn parse_ndjson(text: &str) -> Result<Vec<Value>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| (i + 1, format!("not JSON: {e}")))?;
        if v.get("rule.name").and_then(Value::as_str).is_none() {
            return Err((i + 1, "not an alert record: no rule.name".into()));
        }
        out.push(v);
    }
    Ok(out)
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn s<'a>(a: &'a Value, key: &str) -> &'a str {
    a.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A field as display text: strings as they are, numbers and the rest as JSON.
fn text(a: &Value, key: &str) -> String {
    match a.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// `@timestamp` (RFC 3339, UTC, as portent writes it) as seconds since the epoch.
pub fn parse_time(t: &str) -> Option<f64> {
    let ns = crate::time::parse_iso(t)?;
    Some((ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9)
}

const RULE_COLOURS: [(&str, &str); 5] = [
    ("dns_calculation", "#c0392b"),
    ("dns_calculation_no_dns", "#e67e22"),
    ("dns_tunneling", "#2c6fbb"),
    ("dns_query_burst", "#8e44ad"),
    ("dns_reputation", "#16a085"),
];

fn colour(rule: &str) -> &'static str {
    RULE_COLOURS.iter().find(|(r, _)| *r == rule).map_or("#555", |(_, c)| c)
}

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
header{background:#1d232b;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b9c2cc}
main{padding:16px 28px;max-width:1220px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 18px;margin:0 0 16px}
h2{font-size:16px;margin:4px 0 10px}
h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef1;vertical-align:top}
th{font-weight:600;color:#4a5561;background:#f8f9fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.name{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all;font-size:12.5px}
.rule{display:inline-block;color:#fff;border-radius:3px;padding:0 6px;font-size:12px}
.over td{background:#fdecea}
.bar{display:inline-block;height:8px;background:#2c6fbb;border-radius:2px;vertical-align:middle}
.over .bar{background:#c0392b}
.chain{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:6px 0 12px}
.step{border:1px solid #cfd6dd;border-radius:4px;padding:4px 8px;background:#fafbfc;max-width:420px}
.step b{display:block;font-size:11px;color:#66717d;font-weight:600;text-transform:uppercase}
.arrow{color:#8a949e;font-size:18px}
.reason{color:#4a5561;margin:2px 0 8px}
#filter{padding:5px 8px;width:280px;border:1px solid #cfd6dd;border-radius:4px}
.legend span{margin-right:14px}
svg text{font-size:11px;fill:#4a5561}
";

const JS: &str = "
document.getElementById('filter').addEventListener('input',function(e){
  var q=e.target.value.trim().toLowerCase();
  document.querySelectorAll('section.client').forEach(function(s){
    s.style.display=(!q||s.textContent.toLowerCase().indexOf(q)>=0)?'':'none';
  });
});
";

/// The page. `title` is shown in the header (escaped like everything else).
pub fn render(alerts: &[Value], title: &str) -> String {
    let shown = &alerts[..alerts.len().min(MAX_ALERTS)];
    let mut h = String::with_capacity(64 * 1024 + shown.len() * 2048);
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for a in shown {
        *by_rule.entry(s(a, "rule.name")).or_default() += 1;
    }
    let times: Vec<f64> = shown.iter().filter_map(|a| parse_time(s(a, "@timestamp"))).collect();
    let first = shown.iter().map(|a| s(a, "@timestamp")).filter(|t| !t.is_empty()).min().unwrap_or("");
    let last = shown.iter().map(|a| s(a, "@timestamp")).max().unwrap_or("");

    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>{t}</title><style>{CSS}</style></head><body>\n<header><h1>{t}</h1><p>{n} alerts",
        t = esc(title),
        n = shown.len()
    );
    if !first.is_empty() {
        let _ = write!(h, " from {} to {}", esc(first), esc(last));
    }
    let rules: Vec<String> = by_rule.iter().map(|(r, n)| format!("{} {n}", esc(r))).collect();
    let _ = write!(h, " — {}</p></header>\n<main>\n", rules.join(", "));
    if alerts.len() > shown.len() {
        let _ = writeln!(
            h,
            "<section><b>Only the first {} of {} alerts are shown.</b></section>",
            shown.len(),
            alerts.len()
        );
    }

    timeline(&mut h, shown, &times);

    // Per client, in address order; alerts in file (time) order within each.
    let mut clients: BTreeMap<&str, Vec<(usize, &Value)>> = BTreeMap::new();
    for (i, a) in shown.iter().enumerate() {
        clients.entry(s(a, "source.ip")).or_default().push((i, a));
    }
    let _ = writeln!(
        h,
        "<section><h2>Flagged clients ({})</h2><input id=\"filter\" type=\"search\" \
         placeholder=\"Filter by client, domain, rule…\"></section>",
        clients.len()
    );
    for (client, list) in &clients {
        let _ = writeln!(
            h,
            "<section class=\"client\" id=\"client-{c}\"><h2>Client <span class=\"name\">{c}</span> — {n} alert{pl}</h2>",
            c = esc(client),
            n = list.len(),
            pl = if list.len() == 1 { "" } else { "s" }
        );
        for (i, a) in list {
            alert_block(&mut h, *i, a);
        }
        h.push_str("</section>\n");
    }
    let _ = write!(h, "</main>\n<script>{JS}</script>\n</body></html>\n");
    h
}

/// Inline SVG: one lane per rule, a dot per alert at its time, linked to its block.
fn timeline(h: &mut String, alerts: &[Value], times: &[f64]) {
    let (Some(lo), Some(hi)) =
        (times.iter().copied().reduce(f64::min), times.iter().copied().reduce(f64::max))
    else {
        return;
    };
    let span = (hi - lo).max(1.0);
    let lanes: Vec<&str> = RULE_COLOURS
        .iter()
        .map(|(r, _)| *r)
        .filter(|r| alerts.iter().any(|a| s(a, "rule.name") == *r))
        .chain({
            let mut other: Vec<&str> = alerts
                .iter()
                .map(|a| s(a, "rule.name"))
                .filter(|r| !RULE_COLOURS.iter().any(|(k, _)| k == r))
                .collect();
            other.sort_unstable();
            other.dedup();
            other
        })
        .collect();
    let (left, width, lane_h) = (190.0, 960.0, 34.0);
    let height = 40.0 + lane_h * lanes.len() as f64;
    let _ = writeln!(
        h,
        "<section><h2>Timeline</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"alerts over time\">",
        w = left + width + 20.0
    );
    for (k, lane) in lanes.iter().enumerate() {
        let y = 20.0 + lane_h * k as f64 + lane_h / 2.0;
        let _ = writeln!(
            h,
            "<text x=\"{x}\" y=\"{ty}\" text-anchor=\"end\">{r}</text>\
             <line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#e1e5ea\"/>",
            x = left - 10.0,
            ty = y + 4.0,
            r = esc(lane),
            x2 = left + width
        );
    }
    let axis_y = 20.0 + lane_h * lanes.len() as f64 + 14.0;
    let _ = writeln!(
        h,
        "<text x=\"{left}\" y=\"{axis_y}\">+0 s</text><text x=\"{x}\" y=\"{axis_y}\" text-anchor=\"end\">+{span:.0} s</text>",
        x = left + width
    );
    for (i, a) in alerts.iter().enumerate() {
        let Some(t) = parse_time(s(a, "@timestamp")) else { continue };
        let rule = s(a, "rule.name");
        let k = lanes.iter().position(|l| *l == rule).unwrap_or(0);
        let x = left + (t - lo) / span * width;
        let y = 20.0 + lane_h * k as f64 + lane_h / 2.0;
        let _ = writeln!(
            h,
            "<a href=\"#alert-{i}\"><circle cx=\"{x:.1}\" cy=\"{y}\" r=\"6\" fill=\"{c}\" fill-opacity=\"0.75\">\
             <title>{tip}</title></circle></a>",
            c = colour(rule),
            tip = esc(&format!("{} {} {} {}", s(a, "@timestamp"), rule, s(a, "source.ip"), s(a, "dns.question.name")))
        );
    }
    h.push_str("</svg><div class=\"legend\">");
    for lane in &lanes {
        let _ = write!(
            h,
            "<span><span class=\"rule\" style=\"background:{}\">{}</span></span>",
            colour(lane),
            esc(lane)
        );
    }
    h.push_str("</div></section>\n");
}

fn alert_block(h: &mut String, i: usize, a: &Value) {
    let rule = s(a, "rule.name");
    let _ = write!(
        h,
        "<h3 id=\"alert-{i}\"><span class=\"rule\" style=\"background:{c}\">{r}</span> {t}</h3>\n\
         <p class=\"reason\">{reason}</p>\n",
        c = colour(rule),
        r = esc(rule),
        t = esc(s(a, "@timestamp")),
        reason = esc(s(a, "event.reason"))
    );
    if rule.starts_with("dns_calculation") {
        calc_chain(h, a);
    } else if rule == "dns_tunneling" {
        tunnel_numbers(h, a);
    } else {
        let mut rows = String::new();
        for key in ["dns.question.name", "dns.question.registered_domain", "destination.ip"] {
            let v = text(a, key);
            if !v.is_empty() {
                let _ = write!(rows, "<tr><th>{}</th><td class=\"name\">{}</td></tr>", esc(key), esc(&v));
            }
        }
        if let Some(m) = a.as_object() {
            for (k, v) in m.iter().filter(|(k, _)| k.starts_with("portent.")) {
                let v = match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                let _ = write!(rows, "<tr><th>{}</th><td class=\"name\">{}</td></tr>", esc(k), esc(&v));
            }
        }
        if !rows.is_empty() {
            let _ = writeln!(h, "<table>{rows}</table>");
        }
    }
}

/// name → address → formula → port → SYN.
fn calc_chain(h: &mut String, a: &Value) {
    let step = |h: &mut String, label: &str, body: String| {
        let _ =
            write!(h, "<div class=\"step\"><b>{}</b><span class=\"name\">{}</span></div>", esc(label), body);
    };
    let arrow = |h: &mut String| h.push_str("<span class=\"arrow\">→</span>");
    h.push_str("<div class=\"chain\">");
    let name = s(a, "dns.question.name");
    if name.is_empty() {
        step(h, "name", "(no DNS answer: formula over the destination)".into());
    } else {
        step(h, "name", esc(name));
    }
    arrow(h);
    let resolved = text(a, "dns.resolved_ip");
    let addr = if resolved.is_empty() { text(a, "destination.ip") } else { resolved };
    let resolver = s(a, "portent.resolver");
    let via = if resolver.is_empty() { String::new() } else { format!("<br>via {}", esc(resolver)) };
    step(h, "address", format!("{}{via}", esc(&addr)));
    arrow(h);
    step(
        h,
        "formula",
        format!("{} = {}", esc(s(a, "portent.formula")), esc(s(a, "portent.formula_expression"))),
    );
    arrow(h);
    step(h, "port", esc(&text(a, "destination.port")));
    arrow(h);
    let age = text(a, "portent.answer_age_ms");
    let age = if age.is_empty() { String::new() } else { format!("<br>{} ms after the answer", esc(&age)) };
    step(
        h,
        "SYN",
        format!(
            "{}<br>{}:{} → {}:{}{age}",
            esc(s(a, "@timestamp")),
            esc(s(a, "source.ip")),
            esc(&text(a, "source.port")),
            esc(s(a, "destination.ip")),
            esc(&text(a, "destination.port"))
        ),
    );
    h.push_str("</div>\n");
}

/// Each measured feature against its threshold, the crossed ones highlighted, then the
/// query rate and an example name.
fn tunnel_numbers(h: &mut String, a: &Value) {
    let _ = writeln!(
        h,
        "<table><tr><th>registered domain</th><td class=\"name\">{}</td></tr>\
         <tr><th>example query</th><td class=\"name\">{}</td></tr>\
         <tr><th>query rate</th><td>{} queries/min ({} queries in the window)</td></tr>\
         <tr><th>score</th><td>{} (alert at {})</td></tr></table>",
        esc(s(a, "dns.question.registered_domain")),
        esc(s(a, "dns.question.name")),
        esc(&text(a, "portent.tunnel.query_rate_per_min")),
        esc(&text(a, "portent.tunnel.queries")),
        esc(&text(a, "portent.tunnel.score")),
        esc(&text(a, "portent.tunnel.threshold")),
    );
    let Some(m) = a.as_object() else { return };
    let crossed: Vec<&str> = m
        .get("portent.tunnel.crossed")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    h.push_str(
        "<table><tr><th>feature</th><th>value</th><th>threshold</th><th>value / threshold</th></tr>\n",
    );
    for (k, v) in m {
        let Some(feature) = k.strip_prefix("portent.tunnel.") else { continue };
        if feature.ends_with("_threshold") || feature == "threshold" || feature == "score" {
            continue;
        }
        let Some(t) = m.get(&format!("{k}_threshold")).and_then(Value::as_f64) else { continue };
        let Some(x) = v.as_f64() else { continue };
        let ratio = if t > 0.0 { x / t } else { 0.0 };
        let over = crossed.contains(&feature) || ratio >= 1.0;
        let _ = writeln!(
            h,
            "<tr{cls}><td>{f}</td><td class=\"num\">{x}</td><td class=\"num\">{t}</td>\
             <td><span class=\"bar\" style=\"width:{w:.0}px\"></span> {ratio:.2}</td></tr>",
            cls = if over { " class=\"over\"" } else { "" },
            f = esc(feature),
            x = esc(&v.to_string()),
            t = esc(&m.get(&format!("{k}_threshold")).map(|v| v.to_string()).unwrap_or_default()),
            w = (ratio.clamp(0.0, 2.0) * 100.0).max(1.0),
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hostile_strings_are_escaped() {
        let a = json!({
            "@timestamp": "2026-11-23T04:13:53.089805Z",
            "rule.name": "dns_tunneling",
            "source.ip": "10.0.0.1\"><script>alert(1)</script>",
            "dns.question.name": "<img src=x onerror=alert(1)>.evil.test",
            "event.reason": "a & b 'c'",
            "portent.tunnel.entropy": 4.2,
            "portent.tunnel.entropy_threshold": 3.5,
        });
        let page = render(&[a], "t<b>");
        assert!(!page.contains("<script>alert"), "script injected");
        assert!(!page.contains("<img"), "tag injected");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.evil.test"));
        assert!(page.contains("a &amp; b &#39;c&#39;"));
        assert!(page.contains("<title>t&lt;b&gt;</title>"));
        // Exactly one script element: ours.
        assert_eq!(page.matches("<script").count(), 1);
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_time("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(parse_time("2026-11-23T04:13:53Z"), Some(1_795_407_233.0));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-13-23T04:13:53Z"), None);
    }

    #[test]
    fn ndjson_errors_name_the_line() {
        assert_eq!(parse_ndjson("{\"rule.name\":\"x\"}\n\n").map(|v| v.len()), Ok(1));
        assert_eq!(parse_ndjson("{\"rule.name\":\"x\"}\nnope\n").map_err(|e| e.0), Err(2));
        assert_eq!(parse_ndjson("{\"a\":1}\n").map_err(|e| e.0), Err(1));
    }

    #[test]
    fn calc_chain_and_tunnel_numbers() {
        let calc = json!({
            "@timestamp": "2026-11-23T04:13:45.963256Z", "rule.name": "dns_calculation",
            "source.ip": "10.99.0.10", "source.port": 43452, "destination.ip": "198.51.100.7",
            "destination.port": 10198, "dns.question.name": "update.c2-portent.test",
            "dns.resolved_ip": "198.51.100.7", "portent.formula": "apt12",
            "portent.formula_expression": "o1*o2 + o3", "portent.answer_age_ms": 0,
        });
        let tun = json!({
            "@timestamp": "2026-11-23T04:13:53.089805Z", "rule.name": "dns_tunneling",
            "source.ip": "10.99.0.11", "portent.tunnel.query_rate_per_min": 840.0,
            "portent.tunnel.entropy": 3.65, "portent.tunnel.entropy_threshold": 3.5,
            "portent.tunnel.queries": 14, "portent.tunnel.queries_threshold": 30.0,
            "portent.tunnel.crossed": ["entropy"],
        });
        let page = render(&[calc, tun], "r");
        let chain = page.split("class=\"chain\"").nth(1).unwrap_or("");
        let order = ["update.c2-portent.test", "198.51.100.7", "o1*o2 + o3", "10198", "10.99.0.10:43452"];
        let pos: Vec<usize> = order.iter().map(|x| chain.find(x).unwrap_or(usize::MAX)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]) && pos[4] != usize::MAX, "{pos:?}");
        assert!(page.contains("<tr class=\"over\"><td>entropy</td><td class=\"num\">3.65</td>"));
        assert!(page.contains("<tr><td>queries</td><td class=\"num\">14</td><td class=\"num\">30.0</td>"));
        assert!(page.contains("840.0 queries/min"));
        assert_eq!(page.matches("<circle").count(), 2);
    }
}
