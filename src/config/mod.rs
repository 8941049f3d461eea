//! Configuration: the YAML schema users write, validation, and the model the proxy trusts.
//!
//! The flow is one way: text -> [`schema::FileConfig`] (shape only) -> [`validate::validate`] ->
//! [`model::Config`]. Quick mode builds a [`schema::FileConfig`] from flags and takes the same
//! path, so a flag and a file can never mean different things.

pub mod algorithm;
pub mod error;
pub mod model;
pub mod protocol;
pub mod runtime_files;
pub mod schema;
pub mod source;
pub mod units;
pub mod validate;

pub use error::{ConfigError, ConfigErrorKind};
pub use model::Config;
pub use schema::FileConfig;

use std::path::Path;

/// Read, parse and validate a config file. Binds nothing. The default `pid_file` and
/// `upgrade_sock` are this file's own ([`runtime_files::RuntimeFiles::for_config_file`]).
pub fn load_file(path: &Path) -> Result<(FileConfig, Config), ConfigError> {
    load_text(path, &read_file(path)?)
}

/// The text of the config file at `path`, as read.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        path: String::new(),
        kind: ConfigErrorKind::Read(e.to_string()),
    })
}

/// Parse and validate `text`, read from the file at `path` ([`load_file`] without the read:
/// errors name `path`, and the default runtime files are `path`'s).
pub fn load_text(path: &Path, text: &str) -> Result<(FileConfig, Config), ConfigError> {
    let spec = parse_yaml(text).map_err(|e| e.in_file(path))?;
    let files = runtime_files::RuntimeFiles::for_config_file(path);
    let config = validate::validate_with(&spec, &files).map_err(|e| e.in_file(path))?;
    Ok((spec, config))
}

/// Parse YAML text into the schema, with key paths in errors.
pub fn parse_yaml(text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(
            "",
            "the file is empty; see conf/demo.yaml for a starting point",
        ));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde_yaml prefixes some messages with the (parent) path it tracked itself.
        let message = match message.split_once(": ") {
            Some((p, rest)) if !p.contains(' ') && path.starts_with(p) => rest.to_string(),
            _ => message,
        };
        // The path already ends with an unknown key's name; say what it is.
        let message = match message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((_, rest)) => format!("unknown key{rest}"),
            None => message,
        };
        let path = if path == "." { String::new() } else { path };
        if let Some(key) = duplicate_name(&message) {
            return duplicate_error(text, &path, key);
        }
        ConfigError {
            file: None,
            path,
            kind: ConfigErrorKind::Syntax(message),
        }
    })
}

/// The name in a `duplicate name` error of the schema's unique-key maps.
fn duplicate_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("duplicate name `")?
        .split_once('`')
        .map(|(key, _)| key)
}

/// A duplicate name's error at the duplicate itself: its key path and its line (block-style
/// YAML; a flow-style map gets the key path alone).
fn duplicate_error(text: &str, map_path: &str, key: &str) -> ConfigError {
    let path = match map_path {
        "" => key.to_string(),
        p => format!("{p}.{key}"),
    };
    let lines = key_lines(text, map_path, key);
    let message = match lines.as_slice() {
        [first, second, ..] => format!(
            "duplicate name `{key}` on line {second} (first defined on line {first}): \
             each name may be defined once"
        ),
        _ => format!("duplicate name `{key}`: each name may be defined once"),
    };
    ConfigError::invalid(path, message)
}

/// Line numbers (from 1) where `key:` is written as a block-map key directly under the
/// top-level `section:` (`section` being a top-level key such as `upstreams`).
fn key_lines(text: &str, section: &str, key: &str) -> Vec<usize> {
    let is_key = |line: &str, name: &str| {
        [name.to_string(), format!("\"{name}\""), format!("'{name}'")]
            .iter()
            .any(|k| {
                line.strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
    };
    let mut out = Vec::new();
    let mut inside = false;
    let mut indent = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let depth = line.len() - trimmed.len();
        if depth == 0 {
            inside = is_key(trimmed, section);
            continue;
        }
        if inside && is_key(trimmed, key) && indent.is_none_or(|i| i == depth) {
            indent = Some(depth);
            out.push(n + 1);
        }
    }
    out
}

/// Serialize a schema back to YAML (for `--print-config`).
pub fn to_yaml(spec: &FileConfig) -> String {
    serde_yaml::to_string(spec).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
}

/// A config from YAML that must be valid, for unit tests elsewhere in the crate.
#[cfg(test)]
pub fn valid(yaml: &str) -> Config {
    let spec = parse_yaml(yaml).expect("parses");
    validate::validate(&spec).expect("valid")
}
