//! `portent report` on alerts from real replays, checked as text and, when Debian's
//! chromium is installed, rendered in a headless browser: the DOM must hold the alerts and
//! a screenshot lands in target/report-screenshot.png (the CI artifact).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Alerts of dns-calc.pcap and iodine.pcap, replayed one at a time, in one file.
fn alerts_file(d: &Path) -> PathBuf {
    let out = d.join("alerts.ndjson");
    let mut all = String::new();
    for capture in ["dns-calc.pcap", "iodine.pcap"] {
        let part = d.join(format!("{capture}.ndjson"));
        let p = project_capture(capture);
        let o = run(&["replay", "-q", "-a", part.to_str().unwrap(), p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        all.push_str(&std::fs::read_to_string(&part).unwrap());
    }
    std::fs::write(&out, all).unwrap();
    out
}

fn report(d: &Path) -> PathBuf {
    let alerts = alerts_file(d);
    let html = d.join("report.html");
    let o = run(&["report", alerts.to_str().unwrap(), "-o", html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    html
}

#[test]
fn report_holds_every_alert_and_needs_no_network() {
    let d = tmpdir("report-text");
    let html = std::fs::read_to_string(report(&d)).unwrap();
    for want in [
        "10.99.0.10",
        "update.c2-portent.test",
        "cdn.c2-portent.test",
        "198.51.100.7",
        "o1*o2 + o3",
        "10198",
        "portent-tunnel.test",
        "queries/min",
    ] {
        assert!(html.contains(want), "report lacks {want}");
    }
    assert_eq!(html.matches("<circle").count(), 3, "a timeline dot per alert");
    // Self-contained: nothing loaded from anywhere.
    for bad in ["http://", "https://", "<link", "src=\"", "@import", "url("] {
        let n = html.matches(bad).count();
        // The SVG namespace is an identifier, not a fetch.
        let allowed =
            if bad == "http://" { html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count() } else { 0 };
        assert_eq!(n, allowed, "{bad} in a self-contained page");
    }
}

#[test]
fn report_errors_have_exit_codes() {
    let d = tmpdir("report-errors");
    let bad = d.join("bad.ndjson");
    std::fs::write(&bad, "{\"rule.name\":\"dns_tunneling\"}\nnot json\n").unwrap();
    let o = run(&["report", bad.to_str().unwrap(), "-o", d.join("r.html").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with(&format!("portent: {}:2: not JSON", bad.display())), "{}", stderr(&o));
    let o = run(&["report", d.join("absent.ndjson").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    if Path::new("/dev/full").exists() {
        let good = alerts_file(&d);
        let o = run(&["report", good.to_str().unwrap(), "-o", "/dev/full"]);
        assert_eq!(o.status.code(), Some(3));
        assert!(stderr(&o).contains("/dev/full"), "{}", stderr(&o));
    }
}

/// Runs chromium headless with the flags that keep it off the network, killed after two
/// minutes.
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let mut child = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().expect("wait for chromium").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("chromium output")
}

#[test]
fn report_renders_in_a_headless_browser() {
    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!(
            "SKIP: /usr/bin/chromium is absent (apt-get install -y chromium); the browser check is skipped"
        );
        return;
    }
    let d = tmpdir("report-browser");
    let html = report(&d);
    let url = format!("file://{}", html.display());

    let dom = chromium(&["--dump-dom", &url], &d.join("profile-dom"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for want in ["10.99.0.10", "update.c2-portent.test", "portent-tunnel.test", "198.51.100.7", "22939"] {
        assert!(dom.contains(want), "rendered DOM lacks {want}: {}", &dom[..dom.len().min(500)]);
    }
    assert_eq!(dom.matches("<circle").count(), 3, "the timeline rendered");
    assert_eq!(dom.matches("class=\"client\"").count(), 1, "one flagged client section");

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let o = chromium(
        &[&format!("--screenshot={}", shot.display()), "--window-size=1280,2000", &url],
        &d.join("profile-shot"),
    );
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 10_000,
        "screenshot {} is {len} bytes: {}",
        shot.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
}
