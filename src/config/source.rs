//! Which config this process runs on: the file it was loaded from and a hash of its text,
//! for `/status`, the status page and the `fulcrum_config_info` metric.
//!
//! Recorded once, at start-up, before Pingora runs; quick mode has no file and hashes the
//! YAML its flags stand for.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The config this process loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The file, as given with `-c`; `None` in quick mode.
    pub path: Option<PathBuf>,
    /// The first 16 hex digits of the SHA-256 of the file's bytes: enough to tell two configs
    /// apart at a glance and to compare with `sha256sum FILE`.
    pub hash: String,
}

static LOADED: OnceLock<LoadedConfig> = OnceLock::new();

/// The short hash of a config's text (see [`LoadedConfig::hash`]).
pub fn hash_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Record the config this process runs on; only the first call counts.
pub fn record(path: Option<PathBuf>, text: &str) {
    let _ = LOADED.set(LoadedConfig {
        path,
        hash: hash_of(text),
    });
}

/// The config recorded at start-up, if any (none in unit tests and library use).
pub fn loaded() -> Option<&'static LoadedConfig> {
    LOADED.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_sha256_prefix() {
        // sha256("") = e3b0c44298fc1c149afbf4c8996fb924...
        assert_eq!(hash_of(""), "e3b0c44298fc1c14");
        assert_ne!(hash_of("a: 1\n"), hash_of("a: 2\n"));
    }
}
