//! Every input that once crashed a fuzz target (kept in tests/regressions/, named after the
//! target and the crash) goes through the whole sensor: an error or a clean run, never a
//! panic.

mod common;

use common::*;

#[test]
fn fuzz_crashes_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("pcap_file-") {
            let o = run(&["replay", "-q", "--alerts", "/dev/null", p.to_str().unwrap()]);
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(matches!(o.status.code(), Some(0) | Some(2)), "{name}: {:?} {err}", o.status);
            n += 1;
        }
    }
    assert!(n > 0, "the regression inputs are there");
}
