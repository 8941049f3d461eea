//! Helpers for the rule tables at the bottom of each section's file: a minimal valid config
//! that a case overrides section by section, and a [`Load`] without files or DNS.

use super::{validate_using, Load};
use crate::config::model::Config;
use crate::config::parse_yaml;
use crate::config::runtime_files::RuntimeFiles;
use serde_yaml::{Mapping, Value};
use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// Files: `/garbage.pem` holds text without PEM; every other file is missing. Names:
/// `localhost` resolves to 127.0.0.1; `twin.test` to 127.0.0.2 and 127.0.0.3, the first
/// twice (as a resolver may answer); no other name resolves.
struct Fake;

impl Load for Fake {
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        match path.to_str() {
            Some("/garbage.pem") => Ok(b"not a certificate\n".to_vec()),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        let (host, port) = host_port
            .rsplit_once(':')
            .ok_or(io::ErrorKind::InvalidInput)?;
        let port: u16 = port.parse().map_err(|_| io::ErrorKind::InvalidInput)?;
        let ips: &[[u8; 4]] = match host.to_ascii_lowercase().as_str() {
            "localhost" => &[[127, 0, 0, 1]],
            "twin.test" => &[[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 2]],
            _ => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(ips.iter().map(|ip| SocketAddr::from((*ip, port))).collect())
    }
}

const BASE: &str = "
listeners: [{addr: '127.0.0.1:8080'}]
upstreams: {api: {backends: [{addr: '127.0.0.1:3001'}]}}
routes: [{upstream: api}]
";

/// [`BASE`] with the top-level sections of `sections` (YAML) put in place of its own.
fn config_text(sections: &str) -> String {
    let mut base: Mapping = serde_yaml::from_str(BASE).expect("base config parses");
    let over: Mapping = serde_yaml::from_str(sections).expect("case parses as YAML");
    for (k, v) in over {
        base.insert(k, v);
    }
    serde_yaml::to_string(&Value::Mapping(base)).expect("config prints")
}

fn check(sections: &str) -> Result<Config, crate::config::ConfigError> {
    let files = RuntimeFiles {
        pid_file: "/run/t.pid".into(),
        upgrade_sock: "/run/t.sock".into(),
    };
    validate_using(&parse_yaml(&config_text(sections))?, &files, &Fake)
}

/// The config [`BASE`] with `sections` in place, which must be valid.
pub(super) fn accepts(sections: &str) -> Config {
    check(sections).unwrap_or_else(|e| panic!("{sections}\nrejected: {e}"))
}

/// The error of the config [`BASE`] with `sections` in place, which must be invalid.
pub(super) fn rejected(sections: &str) -> crate::config::ConfigError {
    match check(sections) {
        Ok(_) => panic!("{sections}\naccepted"),
        Err(e) => e,
    }
}

/// Every case `(sections, key path, message)` is rejected at that key path with that message.
pub(super) fn rejects(cases: &[(&str, &str, &str)]) {
    let mut wrong = Vec::new();
    for (sections, path, message) in cases {
        match check(sections) {
            Ok(_) => wrong.push(format!(
                "{sections}\n  accepted, expected {path}: {message}"
            )),
            Err(e) if e.path == *path && e.to_string().ends_with(&format!(": {message}")) => {}
            Err(e) => wrong.push(format!(
                "{sections}\n  gave    {}: {e}\n  expected {path}: {message}",
                e.path
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_base_config_is_valid() {
    let config = accepts("{}");
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.routes.len(), 1);
}
