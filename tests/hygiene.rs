//! House rules that a grep can check: no `unwrap()`/`expect()` in non-test code under
//! `src/`, where a panic on input would take the sensor down. A line that must keep one says
//! why, with `// allow-unwrap: <reason>` on the same line.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_unwrap_or_expect_outside_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // Files that are whole test modules: declared as `#[cfg(test)]` then `mod x;`.
    let mut test_only = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for w in lines.windows(2) {
            if w[0] == "#[cfg(test)]" {
                if let Some(m) = w[1].strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                    let dir = if f.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs") {
                        f.parent().unwrap().to_path_buf()
                    } else {
                        f.with_extension("")
                    };
                    test_only.push(dir.join(format!("{m}.rs")));
                    test_only.push(dir.join(m).join("mod.rs"));
                }
            }
        }
    }
    let mut found = Vec::new();
    for f in &files {
        if test_only.contains(f) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break; // test modules sit at the bottom of each file
            }
            let code = line.split("//").next().unwrap_or("");
            if (code.contains(".unwrap()") || code.contains(".expect(")) && !line.contains("allow-unwrap:") {
                found.push(format!("{}:{}: {}", f.strip_prefix(&src).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "unwrap/expect in non-test code:\n{}", found.join("\n"));
    assert!(files.len() > 10, "the scan found the sources");
}
