//! The command line as an operator meets it: help with an example for every subcommand,
//! completions and the manual page from the clap definition, the documented exit codes, and
//! what goes to standard output and standard error.

mod common;

use common::*;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The subcommands as `portent --help` lists them, so that new ones are covered too.
fn subcommands() -> Vec<String> {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    let list: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect();
    assert!(list.len() >= 5, "found the commands in --help: {text}");
    list
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let cmds = subcommands();
    for c in ["replay", "config", "report", "completions", "man"] {
        assert!(cmds.iter().any(|x| x == c), "{c} in {cmds:?}");
    }
    for c in &cmds {
        let o = run(&[c, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{c} --help: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains("Usage: portent "), "{c}: {text}");
        assert!(text.contains("Example"), "{c} --help has no example: {text}");
    }
    let top = stdout(&run(&["--help"]));
    for line in ["0  ran clean", "1  alerts were raised", "2  usage or input error", "3  runtime failure"] {
        assert!(top.contains(line), "exit status {line:?} documented in --help");
    }
}

#[test]
fn completions_and_man_page_come_from_the_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.len() > 500, "{shell}: {} bytes", text.len());
        assert!(
            text.contains("replay") && text.contains("fail-on-alert"),
            "{shell} completes replay's flags"
        );
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2), "unknown shell is a usage error");

    let o = run(&["man"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH portent 1"),
        "roff: {}",
        &page[..page.len().min(200)]
    );
    for c in subcommands() {
        assert!(page.contains(&format!("portent\\-{c}(1)")), "man page mentions {c}");
    }
    assert!(page.contains("runtime failure"), "exit codes in the man page");

    let d = tmpdir("man-dir");
    let o = run(&["man", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let replay = std::fs::read_to_string(d.join("portent-replay.1")).unwrap();
    assert!(replay.contains("fail\\-on\\-alert"), "portent-replay.1 documents the flags");
}

fn replay(args: &[&str], capture: &str) -> Output {
    let p = project_capture(capture);
    let mut a = vec!["replay"];
    a.extend_from_slice(args);
    a.push(p.to_str().unwrap());
    run(&a)
}

#[test]
fn exit_codes() {
    // 0: ran clean, even with --fail-on-alert when nothing alerted.
    let o = replay(&["-q", "--fail-on-alert"], "benign-lookups.pcap");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    // Alerts without --fail-on-alert still exit 0.
    assert_eq!(replay(&["-q"], "dns-calc.pcap").status.code(), Some(0));
    // 1: alerts with --fail-on-alert.
    assert_eq!(replay(&["-q", "--fail-on-alert"], "dns-calc.pcap").status.code(), Some(1));
    // 2: usage and input errors.
    assert_eq!(run(&["replay", "--no-such-flag", "x.pcap"]).status.code(), Some(2));
    assert_eq!(run(&["replay"]).status.code(), Some(2), "no capture given");
    assert_eq!(run(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(replay(&["-q", "--threads", "0"], "dns-calc.pcap").status.code(), Some(2));
    assert_eq!(replay(&["-q", "--formula", "x=o1+"], "dns-calc.pcap").status.code(), Some(2));
    let o = run(&["replay", "-q", "/nonexistent/capture.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/capture.pcap"), "{}", stderr(&o));
    // 3: a runtime failure; the message names the output.
    if std::path::Path::new("/dev/full").exists() {
        let o = replay(&["-q", "--alerts", "/dev/full"], "dns-calc.pcap");
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("portent: ") && err.contains("/dev/full"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    } else {
        eprintln!("SKIP: /dev/full is absent; exit code 3 is not checked");
    }
    // --help and --version are not errors.
    assert_eq!(run(&["--version"]).status.code(), Some(0));
}

#[test]
fn stdout_holds_only_alerts_and_quiet_means_quiet() {
    // A clean run with -q: nothing at all on stderr (and no alerts on stdout).
    let o = replay(&["-q"], "benign-lookups.pcap");
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stderr.is_empty(), "-q stderr: {}", stderr(&o));
    assert!(o.stdout.is_empty());

    // Without -q: the summary on stderr (not a terminal, so no progress meter).
    for capture in ["dns-calc.pcap", "iodine.pcap"] {
        let o = replay(&[], capture);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("portent: ") && err.contains("packets") && err.contains("alerts: "), "{err}");
        assert!(!err.contains('\r') && !err.contains("\x1b["), "no progress meter off a terminal: {err:?}");
        let out = stdout(&o);
        assert!(!out.is_empty(), "{capture} raises alerts");
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert!(v["rule.name"].as_str().is_some_and(|r| !r.is_empty()), "no rule.name: {line}");
        }
    }
}

/// The summary says where the CPU went, thread by thread, in its text and its JSON.
#[test]
fn the_summary_splits_cpu_time_by_thread() {
    let d = tmpdir("cli-cpu");
    let s = d.join("summary.json");
    let o = replay(&["--threads", "3", "--summary-json", s.to_str().unwrap()], "iodine.pcap");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&s).unwrap()).unwrap();
    let cpu = &v["cpu_seconds"];
    let secs = |x: &serde_json::Value| x.as_f64().unwrap_or_else(|| panic!("not seconds: {cpu}"));
    let workers: Vec<f64> = cpu["workers"].as_array().expect("workers").iter().map(secs).collect();
    assert_eq!(workers.len(), 3, "one figure per worker: {cpu}");
    // The reader parsed the whole capture and every worker ran: none of them took no time.
    assert!(secs(&cpu["reader"]) > 0.0, "{cpu}");
    assert!(workers.iter().all(|&w| w > 0.0), "{cpu}");
    assert!(secs(&cpu["output"]) >= 0.0, "{cpu}");
    // All of it fits in the run's wall time on every core this process may use.
    let total = secs(&cpu["reader"]) + workers.iter().sum::<f64>() + secs(&cpu["output"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(total <= secs(&v["wall_seconds"]) * cores + 0.05, "{total} s over {cores} cores: {v}");
    let line = stderr(&o).lines().find(|l| l.trim_start().starts_with("cpu: reader")).map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("no cpu line: {}", stderr(&o)));
    assert_eq!(line.matches(" + ").count(), 2, "three workers: {line}");
}

#[test]
fn test_scratch_directories_are_removed_unless_the_test_fails() {
    let passed = tmpdir("scratch-pass");
    let p = passed.to_path_buf();
    std::fs::write(p.join("f"), "x").unwrap();
    drop(passed);
    assert!(!p.exists(), "a passing test's directory is removed");

    let kept = std::thread::spawn(|| {
        let d = tmpdir("scratch-fail");
        let p = d.to_path_buf();
        std::fs::write(p.join("f"), "x").unwrap();
        // The guard sees the panic while it unwinds; the path goes out through the payload.
        std::panic::panic_any(p)
    })
    .join()
    .unwrap_err()
    .downcast::<std::path::PathBuf>()
    .unwrap();
    assert!(kept.join("f").is_file(), "a failing test's files are kept for a look");
    std::fs::remove_dir_all(&*kept).unwrap();
}
