//! `portent ingest`: NSM logs of the same traffic as a capture give the same alerts as
//! replaying the capture; hand-written Zeek and Suricata lines raise a DNS Calculation alert;
//! the real logs in ../shared/nsm read with no parse error; wrong files fail with exit 2.

mod common;

use common::{bin, ndjson, project_capture, run, stderr, tmpdir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ZEEK_DNS_HEAD: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n#open\t2026-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval\tstring\tcount\tstring\tcount\tstring\tcount\tstring\tbool\tbool\tbool\tbool\tcount\tvector[string]\tvector[interval]\tbool\n";
const ZEEK_CONN_HEAD: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n";

// ---- a portent-independent converter: the project's --dns-log NDJSON → Zeek dns.log ----

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// "2026-11-23T04:13:45.962225Z" → (seconds, microseconds).
fn rfc3339_micros(s: &str) -> (i64, i64) {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let secs =
        days_from_civil(n(0, 4), n(5, 7), n(8, 10)) * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
    (secs, n(20, 26))
}

fn qtype_num(t: &str) -> u16 {
    match t {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "NULL" => 10,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "ANY" => 255,
        t => t.trim_start_matches("TYPE").parse().unwrap_or(0),
    }
}

fn rcode_num(r: &str) -> u16 {
    ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]
        .iter()
        .position(|x| *x == r)
        .unwrap_or(0) as u16
}

/// Presentation text (`\DDD`, `\.`, `\\`) → Zeek's text: printable ASCII kept, the rest and
/// the separators as `\xHH`.
fn zeek_text(s: &str) -> String {
    let b = s.as_bytes();
    let mut raw = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            raw.push(std::str::from_utf8(&b[i + 1..i + 4]).unwrap().parse::<u8>().unwrap());
            i += 4;
        } else if b[i] == b'\\' && i + 1 < b.len() {
            // An escaped dot stays escaped so that it is not a separator.
            if b[i + 1] == b'.' {
                raw.extend_from_slice(b"\\.");
            } else {
                raw.push(b[i + 1]);
            }
            i += 2;
        } else {
            raw.push(b[i]);
            i += 1;
        }
    }
    let mut out = String::new();
    for c in raw {
        if (0x21..0x7f).contains(&c) && c != b',' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}

fn dnslog_to_zeek(records: &[Value]) -> String {
    let mut s = String::from(ZEEK_DNS_HEAD);
    for (i, r) in records.iter().enumerate() {
        let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
        let st = |k: &str| g(k).as_str().map(str::to_string);
        let (secs, us) = rfc3339_micros(&st("@timestamp").unwrap());
        let answered = st("dns.type").as_deref() == Some("answer");
        let flags: Vec<String> = g("dns.header_flags")
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let flag = |f: &str| if flags.iter().any(|x| x == f) { "T" } else { "F" };
        let qtype = st("dns.question.type");
        let (mut answers, mut ttls) = (Vec::new(), Vec::new());
        for a in g("dns.answers").as_array().into_iter().flatten() {
            let Some(d) = a["data"].as_str() else { continue };
            let text = match a["type"].as_str() {
                Some("TXT") => format!("TXT {} {}", d.len(), zeek_text(d)),
                Some("MX") => zeek_text(d.split(' ').nth(1).unwrap_or(d)),
                _ => zeek_text(d),
            };
            answers.push(text);
            ttls.push(format!("{}.000000", a["ttl"].as_u64().unwrap_or(0)));
        }
        let rtt = g("portent.rtt_ms").as_f64().map(|ms| format!("{:.6}", ms / 1000.0));
        let cols = [
            format!("{secs}.{us:06}"),
            format!("C{i}"),
            st("source.ip").unwrap(),
            g("source.port").to_string(),
            st("destination.ip").unwrap(),
            g("destination.port").to_string(),
            st("network.transport").unwrap_or("udp".into()),
            g("dns.id").to_string(),
            rtt.unwrap_or("-".into()),
            st("dns.question.name").map(|n| zeek_text(&n)).unwrap_or("-".into()),
            "1".into(),
            "C_INTERNET".into(),
            qtype.as_deref().map(|t| qtype_num(t).to_string()).unwrap_or("-".into()),
            qtype.clone().unwrap_or("-".into()),
            if answered {
                rcode_num(&st("dns.response_code").unwrap_or_default()).to_string()
            } else {
                "-".into()
            },
            if answered { st("dns.response_code").unwrap_or_default() } else { "-".into() },
            flag("AA").into(),
            flag("TC").into(),
            if answered { flag("RD").into() } else { "T".into() },
            flag("RA").into(),
            "0".into(),
            if answers.is_empty() { "-".into() } else { answers.join(",") },
            if ttls.is_empty() { "-".into() } else { ttls.join(",") },
            "F".into(),
        ];
        s.push_str(&cols.join("\t"));
        s.push('\n');
    }
    s
}

/// The capture's client SYNs as a Zeek conn.log, from tshark; None when tshark is absent.
fn syns_conn_log(pcap: &Path) -> Option<String> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(pcap)
        .args(["-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut s = String::from(ZEEK_CONN_HEAD);
    for (i, l) in String::from_utf8_lossy(&out.stdout).lines().enumerate() {
        let c: Vec<&str> = l.split('\t').collect();
        if c.len() < 5 || c[1].is_empty() {
            continue;
        }
        // tshark may print nanoseconds; Zeek writes microseconds.
        let ts: f64 = c[0].parse().unwrap();
        s.push_str(&format!(
            "{ts:.6}\tS{i}\t{}\t{}\t{}\t{}\ttcp\t-\t-\t-\t-\tS0\t-\t-\t0\tS\t1\t60\t0\t0\t-\n",
            c[1], c[2], c[3], c[4]
        ));
    }
    Some(s)
}

fn alert_keys(alerts: &[Value], rule: &str, keys: &[&str]) -> BTreeSet<Vec<String>> {
    alerts
        .iter()
        .filter(|a| a["rule.name"] == rule)
        .map(|a| keys.iter().map(|k| a.get(*k).map(|v| v.to_string()).unwrap_or_default()).collect())
        .collect()
}

fn ingest(dir: &Path, args: &[String]) -> (Vec<Value>, String, i32) {
    let alerts = dir.join("ingest-alerts.ndjson");
    let mut cmd = Command::new(bin());
    cmd.arg("ingest").args(args).arg("-a").arg(&alerts).args(["-t", "2"]);
    let o = cmd.output().unwrap();
    (ndjson(&alerts), stderr(&o), o.status.code().unwrap_or(-1))
}

fn replay_with_dnslog(dir: &Path, pcap: &Path) -> (Vec<Value>, Vec<Value>) {
    let alerts = dir.join("replay-alerts.ndjson");
    let dnslog = dir.join("replay-dns.ndjson");
    let o = run(&[
        "replay",
        pcap.to_str().unwrap(),
        "-q",
        "-t",
        "2",
        "-a",
        alerts.to_str().unwrap(),
        "--dns-log",
        dnslog.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (ndjson(&alerts), ndjson(&dnslog))
}

const CALC_KEYS: [&str; 6] =
    ["rule.name", "source.ip", "destination.ip", "destination.port", "portent.formula", "dns.question.name"];

#[test]
fn zeek_logs_of_dns_calc_capture_give_the_replay_alerts() {
    let dir = tmpdir("ingest-calc");
    let pcap = project_capture("dns-calc.pcap");
    let Some(conn) = syns_conn_log(&pcap) else {
        eprintln!("SKIP: tshark is not installed; the conn.log of dns-calc.pcap cannot be derived");
        return;
    };
    let (replayed, dnslog) = replay_with_dnslog(&dir, &pcap);
    let want = alert_keys(&replayed, "dns_calculation", &CALC_KEYS);
    assert_eq!(want.len(), 2, "captures/dns-calc.expected.tsv has two alerts");
    // The expected file names both destinations and ports.
    let expected = std::fs::read_to_string(project_capture("dns-calc.expected.tsv")).unwrap();
    for row in expected.lines().skip(1) {
        let c: Vec<&str> = row.split('\t').collect();
        assert!(want.iter().any(|w| w[2] == format!("\"{}\"", c[1]) && w[3] == c[2]), "{row} not replayed");
    }
    std::fs::write(dir.join("dns.log"), dnslog_to_zeek(&dnslog)).unwrap();
    std::fs::write(dir.join("conn.log"), conn).unwrap();
    let args: Vec<String> = ["--zeek-dns", "dns.log", "--zeek-conn", "conn.log"]
        .iter()
        .map(|a| if a.starts_with("--") { a.to_string() } else { dir.join(a).display().to_string() })
        .collect();
    let (got, err, code) = ingest(&dir, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(alert_keys(&got, "dns_calculation", &CALC_KEYS), want, "{err}");
    assert!(got.iter().all(|a| a["event.module"] == "zeek"));
    assert!(err.contains("errors=0"), "{err}");
}

#[test]
fn zeek_logs_of_tunnel_captures_give_the_replay_tunnel_alerts() {
    for cap in ["iodine.pcap", "dns2tcp.pcap"] {
        let dir = tmpdir(&format!("ingest-tun-{cap}"));
        let (replayed, dnslog) = replay_with_dnslog(&dir, &project_capture(cap));
        let keys = ["rule.name", "source.ip", "dns.question.registered_domain"];
        let want = alert_keys(&replayed, "dns_tunneling", &keys);
        if want.is_empty() {
            eprintln!("NOTE: replaying {cap} gives no dns_tunneling alert yet (tunnel detector not merged?); comparing empty sets");
        }
        std::fs::write(dir.join("dns.log"), dnslog_to_zeek(&dnslog)).unwrap();
        let (got, err, code) =
            ingest(&dir, &["--zeek-dns".into(), dir.join("dns.log").display().to_string()]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("errors=0"), "{cap}: {err}");
        assert_eq!(alert_keys(&got, "dns_tunneling", &keys), want, "{cap}: {err}");
    }
}

// ---- hand-written lines: a client resolves update.c2.test to 198.51.100.7 and connects to
// port 198*51+100 = 10198 (apt12) ----

const T0: &str = "1700000000.100000";
const T_SYN: &str = "1700000000.300000";

fn calc_alert(got: &[Value], module: &str) {
    let calc: Vec<&Value> = got.iter().filter(|a| a["rule.name"] == "dns_calculation").collect();
    assert_eq!(calc.len(), 1, "{got:?}");
    let a = calc[0];
    assert_eq!(a["source.ip"], "10.1.1.10");
    assert_eq!(a["destination.ip"], "198.51.100.7");
    assert_eq!(a["destination.port"], 10198);
    assert_eq!(a["portent.formula"], "apt12");
    assert_eq!(a["dns.question.name"], "update.c2.test");
    assert_eq!(a["event.module"], module);
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn hand_written_zeek_tsv_raises_dns_calculation() {
    let dir = tmpdir("ingest-tsv");
    let dns = format!(
        "{ZEEK_DNS_HEAD}{T0}\tCa\t10.1.1.10\t40000\t10.1.1.53\t53\tudp\t4660\t0.001000\tupdate.c2.test\t1\tC_INTERNET\t1\tA\t0\tNOERROR\tF\tF\tT\tT\t0\tedge.c2.test,198.51.100.7\t60.000000,300.000000\tF\n#close\t2026-01-01-00-00-01\n"
    );
    let conn = format!("{ZEEK_CONN_HEAD}{T_SYN}\tCb\t10.1.1.10\t40001\t198.51.100.7\t10198\ttcp\t-\t1.0\t0\t0\tS0\tT\tF\t0\tS\t1\t60\t0\t0\t-\n");
    let args = vec![
        "--zeek-dns".into(),
        write(&dir, "dns.log", &dns),
        "--zeek-conn".into(),
        write(&dir, "conn.log", &conn),
    ];
    let (got, err, code) = ingest(&dir, &args);
    assert_eq!(code, 0, "{err}");
    calc_alert(&got, "zeek");
}

#[test]
fn hand_written_zeek_json_gzip_and_iso_times_raise_dns_calculation() {
    let dir = tmpdir("ingest-json");
    let dns = r#"{"_path":"dns","_write_ts":"2023-11-14T22:13:20.200000Z","ts":"2023-11-14T22:13:20.100000Z","uid":"Ca","id.orig_h":"10.1.1.10","id.orig_p":40000,"id.resp_h":"10.1.1.53","id.resp_p":53,"proto":"udp","trans_id":4660,"rtt":0.001,"query":"update.c2.test","qclass":1,"qtype":1,"rcode":0,"AA":false,"TC":false,"RD":true,"RA":true,"answers":["198.51.100.7"],"TTLs":[300.0]}"#;
    let conn = r#"{"ts":1700000000.3,"uid":"Cb","id.orig_h":"10.1.1.10","id.orig_p":40001,"id.resp_h":"198.51.100.7","id.resp_p":10198,"proto":"tcp","conn_state":"S0","history":"S"}"#;
    // gzip by content, not by name: the file is called .json.
    let gz = dir.join("dns.json");
    let mut e =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, format!("{dns}\n").as_bytes()).unwrap();
    e.finish().unwrap();
    let args = vec![
        "--zeek-dns".into(),
        gz.display().to_string(),
        "--zeek-conn".into(),
        write(&dir, "conn.json", conn),
    ];
    let (got, err, code) = ingest(&dir, &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("zeek-json dns+gzip"), "{err}");
    calc_alert(&got, "zeek");
}

fn eve_flow_syn() -> &'static str {
    r#"{"timestamp":"2023-11-14T22:13:20.300000+0000","flow_id":2,"event_type":"flow","src_ip":"10.1.1.10","src_port":40001,"dest_ip":"198.51.100.7","dest_port":10198,"proto":"TCP","flow":{"pkts_toserver":1,"start":"2023-11-14T22:13:20.300000+0000","end":"2023-11-14T22:13:21.000000+0000","state":"new"},"tcp":{"tcp_flags":"02","syn":true,"state":"syn_sent"}}"#
}

#[test]
fn hand_written_eve_v1_raises_dns_calculation() {
    let dir = tmpdir("ingest-eve1");
    let lines = [
        r#"{"timestamp":"2023-11-14T22:13:20.100000+0000","flow_id":1,"event_type":"dns","src_ip":"10.1.1.10","src_port":40000,"dest_ip":"10.1.1.53","dest_port":53,"proto":"UDP","dns":{"type":"query","id":4660,"rrname":"update.c2.test","rrtype":"A","tx_id":0}}"#,
        r#"{"timestamp":"2023-11-14T22:13:20.101000+0000","flow_id":1,"event_type":"dns","src_ip":"10.1.1.53","src_port":53,"dest_ip":"10.1.1.10","dest_port":40000,"proto":"UDP","dns":{"type":"answer","id":4660,"flags":"8180","qr":true,"rd":true,"ra":true,"rcode":"NOERROR","rrname":"update.c2.test","rrtype":"CNAME","ttl":60,"rdata":"edge.c2.test"}}"#,
        r#"{"timestamp":"2023-11-14T22:13:20.101000+0000","flow_id":1,"event_type":"dns","src_ip":"10.1.1.53","src_port":53,"dest_ip":"10.1.1.10","dest_port":40000,"proto":"UDP","dns":{"type":"answer","id":4660,"flags":"8180","qr":true,"rd":true,"ra":true,"rcode":"NOERROR","rrname":"edge.c2.test","rrtype":"A","ttl":300,"rdata":"198.51.100.7"}}"#,
        eve_flow_syn(),
    ];
    let args = vec!["--eve".into(), write(&dir, "eve.json", &(lines.join("\n") + "\n"))];
    let (got, err, code) = ingest(&dir, &args);
    assert_eq!(code, 0, "{err}");
    calc_alert(&got, "suricata");
}

#[test]
fn hand_written_eve_v2_raises_dns_calculation_and_bad_lines_are_counted() {
    let dir = tmpdir("ingest-eve2");
    let lines = [
        r#"{"timestamp":"2023-11-14T22:13:20.100000+0000","flow_id":1,"event_type":"dns","src_ip":"10.1.1.10","src_port":40000,"dest_ip":"10.1.1.53","dest_port":53,"proto":"UDP","dns":{"type":"query","id":4660,"rrname":"update.c2.test","rrtype":"A","tx_id":0}}"#,
        "this line is not JSON",
        r#"{"timestamp":"2023-11-14T22:13:20.101000+0000","flow_id":1,"event_type":"dns","src_ip":"10.1.1.53","src_port":53,"dest_ip":"10.1.1.10","dest_port":40000,"proto":"UDP","dns":{"version":2,"type":"answer","id":4660,"flags":"8180","qr":true,"rd":true,"ra":true,"rcode":"NOERROR","rrname":"update.c2.test","rrtype":"A","answers":[{"rrname":"update.c2.test","rrtype":"A","ttl":300,"rdata":"198.51.100.7"}],"grouped":{"A":["198.51.100.7"]}}}"#,
        r#"{"timestamp":"2023-11-14T22:13:20.200000+0000","event_type":"stats","stats":{"uptime":1}}"#,
        r#"{"timestamp":"yesterday","event_type":"dns","src_ip":"10.1.1.10","src_port":1,"dest_ip":"10.1.1.53","dest_port":53,"dns":{"type":"query","id":1,"rrname":"x"}}"#,
        eve_flow_syn(),
    ];
    let args = vec!["--eve".into(), write(&dir, "eve.json", &(lines.join("\n") + "\n"))];
    let (got, err, code) = ingest(&dir, &args);
    assert_eq!(code, 0, "only some lines failed: {err}");
    calc_alert(&got, "suricata");
    assert!(err.contains("lines=6 records=3 headers=0 skipped=1 errors=2"), "{err}");
    assert!(err.contains("  not valid JSON: 1 (lines 2)"), "{err}");
    assert!(err.contains("  bad or missing timestamp: 1 (lines 5)"), "{err}");
}

#[test]
fn a_file_of_the_wrong_kind_is_a_one_line_error_with_exit_2() {
    let dir = tmpdir("ingest-wrong");
    let conn = write(&dir, "conn.log", &format!("{ZEEK_CONN_HEAD}1.0\tC\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t-\t-\t-\tS0\t-\t-\t0\tS\t1\t1\t0\t0\t-\n"));
    let text = write(&dir, "notes.txt", "hello\nworld\n");
    let eve = write(&dir, "eve.json", &(eve_flow_syn().to_string() + "\n"));
    let pcap = project_capture("dns-calc.pcap").display().to_string();
    for (flag, file, why) in [
        ("--zeek-dns", &conn, "a Zeek conn log (#path conn), not a dns log"),
        ("--zeek-dns", &text, "not a Zeek log or eve.json"),
        ("--zeek-dns", &pcap, "a packet capture, not a log"),
        ("--zeek-conn", &eve, "Suricata eve.json, not a Zeek conn log"),
        ("--eve", &conn, "a Zeek TSV log, not Suricata eve.json"),
    ] {
        let o = run(&["ingest", flag, file, "-q"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {file}: {e}");
        assert!(e.starts_with(&format!("portent: {file}: ")) && e.contains(why), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(o.stdout.is_empty());
    }
    let o = run(&["ingest"]);
    assert_eq!(o.status.code(), Some(2));
}

// ---- the real logs in ../shared/nsm ----

fn shared_nsm() -> Option<PathBuf> {
    // Beside the project, or beside the worktrees directory when run from a worktree.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = ["../shared/nsm", "../../shared/nsm"]
        .iter()
        .map(|d| root.join(d))
        .find(|p| p.join("SOURCES.tsv").is_file());
    if let Some(p) = found {
        Some(p)
    } else {
        eprintln!("SKIP: ../shared/nsm is absent; the real Zeek and Suricata logs are not read");
        None
    }
}

/// `ingest: FILE: FORMAT: lines=.. records=..` → the counters.
fn counters(err: &str) -> Vec<(String, u64)> {
    let line = err.lines().find(|l| l.starts_with("ingest: ")).unwrap_or_else(|| panic!("{err}"));
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn real_zeek_and_suricata_logs_read_without_parse_errors() {
    let Some(nsm) = shared_nsm() else { return };
    let text = std::fs::read_to_string(nsm.join("SOURCES.tsv")).unwrap();
    let mut seen = 0;
    for row in text.lines().skip(1) {
        let c: Vec<&str> = row.split('\t').collect();
        let (file, format) = (c[0], c[5]);
        let flag = if format.starts_with("eve") {
            "--eve"
        } else if format.contains(" conn") {
            "--zeek-conn"
        } else if format.contains(" dns") {
            "--zeek-dns"
        } else {
            continue; // pcaps
        };
        let dir = tmpdir("ingest-real");
        let (_, err, code) = ingest(&dir, &[flag.into(), nsm.join(file).display().to_string()]);
        assert_eq!(code, 0, "{file}: {err}");
        let n: std::collections::HashMap<String, u64> = counters(&err).into_iter().collect();
        assert!(n["lines"] > 0, "{file}: {err}");
        if file == "zeek-btest/sshfp-trunc.dns.log" {
            // Its two records have ts masked as XXXXXXXXXX.XXXXXX by the btest canonifier:
            // there is no time to read, and saying so is right.
            assert_eq!(n["errors"], 2, "{err}");
            assert!(err.contains("  bad ts: 2 (lines 10, 11)"), "{err}");
        } else {
            assert_eq!(n["errors"], 0, "{file}: {err}");
            assert_eq!(n["records"] + n["headers"], n["lines"], "{file}: {err}");
        }
        seen += 1;
    }
    assert!(seen >= 18, "only {seen} logs in SOURCES.tsv");
}

#[test]
fn rita_dnscat2_dns_log_reports_what_the_tunnel_detector_says() {
    let Some(nsm) = shared_nsm() else { return };
    let dir = tmpdir("ingest-dnscat2");
    let f = nsm.join("zeek-real/rita-dnscat2.dns.log").display().to_string();
    let (got, err, code) = ingest(&dir, &["--zeek-dns".into(), f]);
    assert_eq!(code, 0, "{err}");
    let n: std::collections::HashMap<String, u64> = counters(&err).into_iter().collect();
    assert_eq!((n["records"], n["errors"], n["dns_messages"]), (34, 0, 66), "{err}");
    let tunnel: Vec<&Value> = got.iter().filter(|a| a["rule.name"] == "dns_tunneling").collect();
    // 34 TXT queries to dnsc.r-1x.com; report what the detector makes of them.
    eprintln!(
        "rita-dnscat2.dns.log: {} dns_tunneling alerts: {:?}",
        tunnel.len(),
        tunnel.first().map(|a| &a["dns.question.registered_domain"])
    );
    assert!(!tunnel.is_empty(), "dnscat2 over TXT to dnsc.r-1x.com should be flagged: {err}");
    for a in tunnel {
        assert_eq!(a["source.ip"], "192.168.88.2");
        assert_eq!(a["dns.question.registered_domain"], "r-1x.com");
    }
}

// ---- throughput: `cargo test --release --test ingest -- --ignored --nocapture bench` ----

#[test]
#[ignore]
fn bench_lines_per_second() {
    let dir = tmpdir("ingest-bench");
    let n: usize = std::env::var("PORTENT_BENCH_LINES").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let base = 1_700_000_000u64;
    let name = |i: usize| format!("h{:x}.example{}.com", i * 2_654_435_761 % 1_000_003, i % 97);
    let ip = |i: usize| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let mut tsv = String::from(ZEEK_DNS_HEAD);
    let mut json = String::new();
    let mut eve = String::new();
    for i in 0..n {
        let ts = format!("{}.{:06}", base + (i / 1000) as u64, i % 1000 * 1000);
        let iso =
            format!("2023-11-14T22:{:02}:{:02}.{:06}Z", (i / 60_000) % 60, (i / 1000) % 60, i % 1000 * 1000);
        let (c, q, a) = (format!("192.168.{}.{}", (i >> 8) & 3, i & 255), name(i), ip(i));
        tsv.push_str(&format!("{ts}\tC\t{c}\t{}\t10.0.0.53\t53\tudp\t{}\t0.001000\t{q}\t1\tC_INTERNET\t1\tA\t0\tNOERROR\tF\tF\tT\tT\t0\t{a}\t300.000000\tF\n", 1024 + i % 60000, i % 65536));
        json.push_str(&format!(r#"{{"_path":"dns","ts":"{iso}","uid":"C","id.orig_h":"{c}","id.orig_p":{},"id.resp_h":"10.0.0.53","id.resp_p":53,"proto":"udp","trans_id":{},"rtt":0.001,"query":"{q}","qclass":1,"qtype":1,"rcode":0,"AA":false,"TC":false,"RD":true,"RA":true,"answers":["{a}"],"TTLs":[300.0]}}"#, 1024 + i % 60000, i % 65536));
        json.push('\n');
        eve.push_str(&format!(r#"{{"timestamp":"{iso}","flow_id":{i},"event_type":"dns","src_ip":"10.0.0.53","src_port":53,"dest_ip":"{c}","dest_port":{},"proto":"UDP","dns":{{"version":2,"type":"answer","id":{},"flags":"8180","rcode":"NOERROR","rrname":"{q}","rrtype":"A","answers":[{{"rrname":"{q}","rrtype":"A","ttl":300,"rdata":"{a}"}}]}}}}"#, 1024 + i % 60000, i % 65536));
        eve.push('\n');
    }
    for (flag, file, text) in
        [("--zeek-dns", "dns.log", &tsv), ("--zeek-dns", "dns.json", &json), ("--eve", "eve.json", &eve)]
    {
        let p = write(&dir, file, text);
        let t = std::time::Instant::now();
        let o = Command::new(bin()).args(["ingest", flag, &p, "-q", "-a", "/dev/null"]).output().unwrap();
        let s = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "{}", stderr(&o));
        eprintln!("BENCH {file}: {n} lines in {s:.2} s = {:.0} lines/s", n as f64 / s);
    }
}
