//! Arbitrary bytes as a config file: fulcrum's loader (`config::parse_yaml` then
//! `config::validate::validate`) answers with a config or an error, never a panic; a config it
//! accepts prints (`--print-config`) as YAML that loads again. See `tests/fuzz_checks`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    // The loader reads files as UTF-8 text; other bytes never reach the parser.
    checks::config_text(&String::from_utf8_lossy(data));
});
