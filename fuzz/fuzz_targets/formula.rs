//! DNS Calculation formula expressions from the configuration: parse, then evaluate on a
//! few addresses. Never panics, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portent::detect::formula::Formula;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(f) = Formula::parse("fuzz", text) {
        for o in [[0, 0, 0, 0], [255, 255, 255, 255], [198, 51, 100, 7], [1, 2, 3, 4]] {
            if let Some(p) = f.eval(o) {
                assert!(p >= 1);
            }
        }
    }
});
