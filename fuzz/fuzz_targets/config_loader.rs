//! Fuzzes the config loader with arbitrary text. Invariants: nothing panics, and a key
//! read from the environment (`${KEY}`, the only variable set) never appears in an error
//! or in the Debug of a built config, wherever and however the text uses it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

const SECRET: &str = "sk-fuzz-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "KEY").then(|| SECRET.to_string());
    let shown = match spillway::config::parse(text, Path::new("fuzz.yaml"), &env, None) {
        Ok(loaded) => format!("{:?}", loaded.config),
        Err(e) => format!("{e}\n{e:?}"),
    };
    // Written out in the text itself, it is no secret the loader was given.
    if !text.contains(SECRET) {
        assert!(!shown.contains(SECRET), "{shown}");
    }
});
