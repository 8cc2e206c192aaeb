//! The configuration file through the binary: the printed default round-trips, `config
//! check` accepts and rejects with file, line and key, and `replay --config` applies the
//! file with flags on top.

mod common;

use common::*;
use portent::config::Config;
use std::path::Path;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn printed_default_parses_to_the_default_config() {
    let o = run(&["config", "default"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    // Every key has a comment on the line above it.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") && !l.starts_with('#') {
            let above = (0..i).rev().map(|j| lines[j]).find(|a| !a.contains(" = ") || a.starts_with('#'));
            assert!(above.is_some_and(|a| a.starts_with('#')), "key without a comment: {l}");
        }
    }
    let cfg = Config::from_toml(&text, "default.toml", Path::new(".")).unwrap();
    // Debug prints every field of every nested configuration.
    assert_eq!(format!("{cfg:?}"), format!("{:?}", Config::default()));
    for key in [
        "time_window",
        "ephemeral_port_range",
        "resolver_whitelist",
        "process_allowlist",
        "connection_volume_threshold",
        "management_plane_ips",
        "domain_reputation_feed",
        "query_length_threshold",
        "subdomain_entropy_score",
        "entropy_threshold",
        "query_rate_per_client",
        "daemon_allowlist",
        "outbound_dns_volume",
        "snaplen",
        "bpf",
        "promisc",
    ] {
        assert!(text.contains(&format!("{key} = ")), "default file lacks {key}");
    }

    let d = tmpdir("config-default");
    let f = d.join("portent.toml");
    std::fs::write(&f, &text).unwrap();
    let o = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}: ok\n", f.display()));
}

#[test]
fn check_names_file_line_and_key() {
    let d = tmpdir("config-check");
    let cases = [
        (
            "[dns_calculation]\ntime_window = 60\nconnection_volume_threshold = 0\n",
            ":3: dns_calculation.connection_volume_threshold: must be at least 1",
        ),
        ("[dns_tunneling]\n\nquery_rate = 5\n", ":3: dns_tunneling.query_rate: unknown field `query_rate`"),
        (
            "[capture]\npromisc = \"yes\"\n",
            ":2: capture.promisc: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[[dns_calculation.formula]]\nname = \"x\"\nexpr = \"o1 +\"\n",
            ":3: dns_calculation.formula[0] (x).expr: at column",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = d.join(format!("site{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let o = run(&["config", "check", f.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{text}: {err}");
        assert!(stdout(&o).is_empty());
        let line = err.lines().next().unwrap_or("");
        assert!(line.starts_with(&format!("portent: {}{want}", f.display())), "want {want:?}, got {err}");
    }
    let o = run(&["config", "check", d.join("absent.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("absent.toml: cannot read"), "{}", stderr(&o));
}

fn calc_alerts(extra: &[&str]) -> (Option<i32>, usize, String) {
    let pcap = project_capture("dns-calc.pcap");
    let mut args = vec!["replay", "-q"];
    args.extend_from_slice(extra);
    args.push(pcap.to_str().unwrap());
    let o = run(&args);
    let n = stdout(&o).lines().filter(|l| l.contains("\"rule.name\":\"dns_calculation\"")).count();
    (o.status.code(), n, stderr(&o))
}

#[test]
fn replay_applies_the_file_then_the_flags() {
    let d = tmpdir("config-replay");
    assert_eq!(calc_alerts(&[]).1, 2, "baseline: dns-calc.pcap raises two alerts");

    // The file's formula list replaces the built-ins: a formula that matches nothing.
    let f = d.join("narrow.toml");
    std::fs::write(&f, "[[dns_calculation.formula]]\nname = \"first_octet\"\nexpr = \"o1\"\n").unwrap();
    let (code, n, err) = calc_alerts(&["--config", f.to_str().unwrap()]);
    assert_eq!((code, n), (Some(0), 0), "{err}");
    // A --formula flag adds to the file's list.
    let (code, n, err) = calc_alerts(&["--config", f.to_str().unwrap(), "--formula", "apt12=o1*o2+o3"]);
    assert_eq!((code, n), (Some(0), 1), "{err}");

    // ProcessAllowlist from the file silences the client.
    let f = d.join("allow.toml");
    std::fs::write(&f, "[dns_calculation]\nprocess_allowlist = [\"10.99.0.0/24\"]\n").unwrap();
    assert_eq!(calc_alerts(&["-c", f.to_str().unwrap()]).1, 0);

    // A bad file stops replay before it starts: exit 2, the error names the file.
    let f = d.join("bad.toml");
    std::fs::write(&f, "[dns_calculation]\nephemeral_port_range = [1]\n").unwrap();
    let (code, n, err) = calc_alerts(&["--config", f.to_str().unwrap()]);
    assert_eq!((code, n), (Some(2), 0));
    assert_eq!(
        err.trim_end(),
        format!(
            "portent: {}:2: dns_calculation.ephemeral_port_range: must be [LOW, HIGH], two ports",
            f.display()
        )
    );
}

/// The caps in the configuration are for the sensor, whatever `--threads` says: each worker
/// holds its share. Forty clients each ask for a name under a domain of their own and get an
/// answer, with room for ten groups and ten answer-cache clients: thirty of each are evicted
/// at one thread and at two (caps per worker would evict twenty at two).
#[test]
fn the_group_and_cache_caps_are_for_the_sensor_not_for_each_worker() {
    let d = tmpdir("config-group-cap");
    let frames: Vec<(u64, Vec<u8>)> = (0..40u8)
        .flat_map(|i| {
            let (id, name, t) = (u16::from(i), format!("www.site{i}.com"), u64::from(i) * 1_000_000);
            let q = dns_query(id, &name, 1);
            let r = dns_response_a(id, &name, &[[93, 184, 216, i]], 60);
            [
                (t, udp([10, 0, 1, i], [10, 0, 0, 53], 40000, 53, &q)),
                (t + 1000, udp([10, 0, 0, 53], [10, 0, 1, i], 53, 40000, &r)),
            ]
        })
        .collect();
    let pcap = d.join("forty.pcap");
    write_pcap(&pcap, &frames);
    let cfg = d.join("cap.toml");
    std::fs::write(&cfg, "[dns_tunneling]\nmax_groups = 10\n[dns_calculation]\ncache_max_clients = 10\n")
        .unwrap();
    for threads in ["1", "2"] {
        let s = d.join(format!("summary-{threads}.json"));
        let o = run(&[
            "replay",
            "-q",
            "-c",
            cfg.to_str().unwrap(),
            "--threads",
            threads,
            "--summary-json",
            s.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&s).unwrap()).unwrap();
        assert_eq!(v["tunnel"]["groups_evicted"], 30, "--threads {threads}: {}", v["tunnel"]);
        assert_eq!(v["cache"]["evicted_clients"], 30, "--threads {threads}: {}", v["cache"]);
        assert_eq!(v["cache"]["clients"], 10, "--threads {threads}: {}", v["cache"]);
    }
}
