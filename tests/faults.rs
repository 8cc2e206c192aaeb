//! Faults: outputs that fail mid-run, and inputs built to make the decoder spin.

mod common;

use common::*;
use std::process::Command;

#[test]
fn a_full_device_is_a_clear_runtime_error() {
    let o =
        run(&["replay", "-q", "--alerts", "/dev/full", project_capture("dns-calc.pcap").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("writing to /dev/full failed") && err.contains("No space left"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unopenable_output_is_an_input_error() {
    let o = run(&[
        "replay",
        "-q",
        "--dns-log",
        "/nonexistent/dir/dns.ndjson",
        project_capture("dns-calc.pcap").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot open the DNS log: /nonexistent/dir/dns.ndjson"), "{}", stderr(&o));
}

/// A small tmpfs that fills up halfway through the DNS log: the run says so, and every line
/// that reached the disk is a whole JSON record.
#[test]
fn a_disk_that_fills_keeps_only_whole_records() {
    let d = tmpdir("diskfull");
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "portent-test", mnt.to_str().unwrap()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root); the disk-full case is not checked");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let log = mnt.join("dns.ndjson");
    let o = run(&[
        "replay",
        "-q",
        "--alerts",
        d.join("alerts").to_str().unwrap(),
        "--dns-log",
        log.to_str().unwrap(),
        project_capture("iodine.pcap").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left on device"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty(), "some records were written before the disk filled");
    assert!(text.ends_with('\n'), "no half record at the end");
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("corrupt line {l:?}: {e}"));
    }
    // The alerts file is elsewhere and complete: the tunnel was still detected.
    assert!(std::fs::read_to_string(d.join("alerts")).unwrap().contains("dns_tunneling"));
}

/// The largest response a UDP datagram can carry, every record a compression pointer,
/// some pointing at themselves, some forward, some in long chains: decoded or rejected,
/// and the run ends.
#[test]
fn a_dns_bomb_is_decoded_or_rejected() {
    let mut msg = vec![0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    // Question: a 255-byte name of 63-byte labels.
    for _ in 0..3 {
        msg.push(63);
        msg.extend(std::iter::repeat_n(b'a', 63));
    }
    msg.push(61);
    msg.extend(std::iter::repeat_n(b'b', 61));
    msg.push(0);
    msg.extend_from_slice(&[0, 1, 0, 1]);
    let mut i = 0u16;
    while msg.len() + 18 < 65_000 {
        let here = msg.len() as u16;
        // Alternate: a pointer chain back to the question, a self-loop, a forward pointer.
        let ptr = match i % 3 {
            0 => 12u16,
            1 => here,
            _ => here + 40,
        };
        msg.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 7]);
        i += 1;
    }
    // Straight through the parser:
    let r = portent::dns::parse_message(&msg);
    if let Ok(m) = &r {
        assert!(m.answers.len() < 65_535);
    }
    // And through the whole sensor, over UDP after IP reassembly would have made it whole
    // (one frame of 65 kB here: the capture's snap length allows it).
    let d = tmpdir("bomb");
    let p = d.join("bomb.pcap");
    write_pcap(&p, &[(SEC, udp([8, 8, 8, 8], [10, 0, 0, 5], 53, 40000, &msg[..msg.len().min(65_000)]))]);
    let o = run(&["replay", "--alerts", d.join("a").to_str().unwrap(), p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("dns: 1 messages") || stderr(&o).contains("parse errors: dns_"),
        "{}",
        stderr(&o)
    );
}
