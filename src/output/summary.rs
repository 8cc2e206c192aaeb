//! The end-of-run summary: a few lines a person reads at a glance on standard error, and
//! the same figures as one JSON object for scripts and tests.

use crate::pipeline::RunReport;
use serde_json::{json, Value};

pub fn to_json(r: &RunReport) -> Value {
    let secs = r.wall.as_secs_f64().max(1e-9);
    let by_rule: serde_json::Map<String, Value> = r
        .alerts_by_rule
        .iter()
        .map(|(rule, t)| {
            let mut clients: Vec<_> = t.clients.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            clients.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut domains: Vec<_> = t.domains.iter().map(|(k, v)| (k.clone(), *v)).collect();
            domains.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let top = |v: Vec<(String, u64)>| -> Vec<Value> {
                v.into_iter().take(5).map(|(k, n)| json!({"key": k, "alerts": n})).collect()
            };
            (
                rule.clone(),
                json!({"alerts": t.count, "top_clients": top(clients), "top_domains": top(domains)}),
            )
        })
        .collect();
    json!({
        "packets": r.reader.packets,
        "bytes": r.reader.bytes,
        "decoded": r.reader.decoded,
        "not_ip": r.reader.not_ip,
        "other_ip": r.reader.other_ip,
        "fragments": r.reader.fragments,
        "defrag": {
            "reassembled": r.reader.defrag.reassembled,
            "tiny_first": r.reader.defrag.tiny_first,
            "overlaps": r.reader.defrag.overlaps,
            "overlap_conflicts": r.reader.defrag.overlap_conflicts,
            "dropped_timeout": r.reader.defrag.dropped_timeout,
            "dropped_cap_frags": r.reader.defrag.dropped_cap_frags,
            "dropped_cap_pending": r.reader.defrag.dropped_cap_pending,
            "dropped_cap_memory": r.reader.defrag.dropped_cap_memory,
            "dropped_too_big": r.reader.defrag.dropped_too_big,
            "dropped_bad_offset": r.reader.defrag.dropped_bad_offset,
            "skipped_not_dns": r.reader.defrag.skipped_not_dns,
            "malformed": r.reader.defrag.malformed,
        },
        "malformed": r.reader.malformed,
        "unsupported_linktype": r.reader.unsupported_linktype,
        "dns": {
            "udp_packets": r.reader.dns_udp,
            "tcp_segments": r.reader.dns_tcp_segments,
            "messages": r.workers.dns_messages,
            "tcp_messages": r.workers.dns_tcp_messages,
            "queries": r.workers.dns_queries,
            "responses": r.workers.dns_responses,
            "parse_errors": r.workers.dns_errors,
            "with_anomalies": r.workers.dns_anomalies,
            "mdns": r.reader.mdns,
            "llmnr": r.reader.llmnr,
            "tcp_gaps": r.tcp.gaps,
            "tcp_streams_evicted": r.tcp.evicted,
            "transactions": {"answered": r.txn.answered, "unanswered": r.txn.unanswered, "unsolicited": r.txn.unsolicited, "evicted": r.txn.evicted},
        },
        "syns": r.reader.syns,
        "tunnel": {
            "groups": r.tunnel.iter().map(|t| t.groups as u64).sum::<u64>(),
            "groups_evicted": r.tunnel.iter().map(|t| t.evictions).sum::<u64>(),
            "groups_expired": r.tunnel.iter().map(|t| t.expired).sum::<u64>(),
            "allowlisted_client": r.tunnel.iter().map(|t| t.allowlisted_client).sum::<u64>(),
            "allowlisted_domain": r.tunnel.iter().map(|t| t.allowlisted_domain).sum::<u64>(),
        },
        "calc": {
            "syns": r.calc.iter().map(|c| c.syns).sum::<u64>(),
            "matches": r.calc.iter().map(|c| c.matches).sum::<u64>(),
            "suppressed_repeats": r.calc.iter().map(|c| c.suppressed).sum::<u64>(),
            "dedup_evicted": r.calc.iter().map(|c| c.dedup_evictions).sum::<u64>(),
        },
        "cache": {
            "clients": r.cache.clients,
            "answers": r.cache.answers,
            "evicted_answers": r.cache.evicted_answers,
            "evicted_clients": r.cache.evicted_clients,
            "expired_clients": r.cache.expired_clients,
        },
        "alerts": { "total": r.alert_lines, "by_rule": by_rule },
        "dns_log_records": r.dns_lines,
        "capture_errors": r.capture_errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "wall_seconds": secs,
        "cpu_seconds": r.cpu.to_json(),
        "packets_per_second": r.reader.packets as f64 / secs,
        "gbit_per_second": r.reader.bytes as f64 * 8.0 / secs / 1e9,
        "first_packet": r.first_ts.map(crate::time::rfc3339),
        "last_packet": r.last_ts.map(crate::time::rfc3339),
        "kafka": r.kafka.as_ref().map(|k| k.to_json()),
    })
}

fn si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0} ")
    }
}

fn counts<'a>(m: impl IntoIterator<Item = (&'a &'static str, &'a u64)>) -> String {
    let v: Vec<String> = m.into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The human summary, several short lines.
pub fn to_text(r: &RunReport) -> String {
    let secs = r.wall.as_secs_f64().max(1e-9);
    let mut s = String::new();
    let w = &r.workers;
    let rd = &r.reader;
    s.push_str(&format!(
        "portent: {} packets, {}B in {:.2} s: {}packets/s, {}bit/s\n",
        rd.packets,
        si(rd.bytes as f64),
        secs,
        si(rd.packets as f64 / secs),
        si(rd.bytes as f64 * 8.0 / secs)
    ));
    if let (Some(a), Some(b)) = (r.first_ts, r.last_ts) {
        s.push_str(&format!("  packet time: {} .. {}\n", crate::time::rfc3339(a), crate::time::rfc3339(b)));
    }
    let workers: Vec<String> = r.cpu.workers.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect();
    s.push_str(&format!(
        "  cpu: reader {:.2} s, workers {} s, output {:.2} s\n",
        r.cpu.reader.as_secs_f64(),
        workers.join(" + "),
        r.cpu.output.as_secs_f64()
    ));
    s.push_str(&format!(
        "  decoded {} UDP/TCP; skipped: not IP {}, other IP {}; fragments {} ({} datagrams reassembled, {} overlaps, {} dropped); malformed: {}\n",
        rd.decoded,
        rd.not_ip,
        rd.other_ip,
        rd.fragments,
        rd.defrag.reassembled,
        rd.defrag.overlaps,
        rd.defrag.dropped_timeout
            + rd.defrag.dropped_cap_frags
            + rd.defrag.dropped_cap_pending
            + rd.defrag.dropped_cap_memory
            + rd.defrag.dropped_too_big
            + rd.defrag.dropped_bad_offset,
        counts(&rd.malformed)
    ));
    s.push_str(&format!(
        "  dns: {} messages ({} queries, {} responses; {} over TCP), parse errors: {}; mDNS {}, LLMNR {} (not analysed)\n",
        w.dns_messages,
        w.dns_queries,
        w.dns_responses,
        w.dns_tcp_messages,
        counts(&w.dns_errors),
        rd.mdns,
        rd.llmnr
    ));
    s.push_str(&format!(
        "  cache: {} clients, {} answers; evicted {} answers, {} clients\n",
        r.cache.clients, r.cache.answers, r.cache.evicted_answers, r.cache.evicted_clients
    ));
    let groups: usize = r.tunnel.iter().map(|t| t.groups).sum();
    let evicted: u64 = r.tunnel.iter().map(|t| t.evictions).sum();
    let dedup_evicted: u64 = r.calc.iter().map(|c| c.dedup_evictions).sum();
    s.push_str(&format!(
        "  state: {groups} tunneling groups ({evicted} evicted at the cap); DNS Calculation dedup evicted {dedup_evicted}\n"
    ));
    s.push_str(&format!("  alerts: {}", r.alert_lines));
    if r.alerts_by_rule.is_empty() {
        s.push('\n');
    } else {
        s.push_str(" (");
        let parts: Vec<String> = r.alerts_by_rule.iter().map(|(k, t)| format!("{k} {}", t.count)).collect();
        s.push_str(&parts.join(", "));
        s.push_str(")\n");
        for (rule, t) in &r.alerts_by_rule {
            let mut c: Vec<_> = t.clients.iter().collect();
            c.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let mut d: Vec<_> = t.domains.iter().collect();
            d.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let c: Vec<String> = c.iter().take(3).map(|(k, v)| format!("{k} ({v})")).collect();
            let d: Vec<String> = d.iter().take(3).map(|(k, v)| format!("{k} ({v})")).collect();
            s.push_str(&format!(
                "    {rule}: clients {}; domains {}\n",
                c.join(", "),
                if d.is_empty() { "-".into() } else { d.join(", ") }
            ));
        }
    }
    if r.dns_lines > 0 {
        s.push_str(&format!("  dns log: {} records\n", r.dns_lines));
    }
    if let Some(k) = &r.kafka {
        s.push_str("  ");
        s.push_str(&k.to_text());
    }
    s
}
