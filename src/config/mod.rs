//! Configuration: the YAML schema users write, validation, and the model the proxy trusts.
//!
//! The flow is one way: text -> [`schema::FileConfig`] (shape only) -> [`validate::validate`] ->
//! [`model::Config`]. Quick mode builds a [`schema::FileConfig`] from flags and takes the same
//! path, so a flag and a file can never mean different things.

pub mod error;
pub mod model;
pub mod runtime_files;
pub mod schema;
pub mod units;
pub mod validate;

pub use error::{ConfigError, ConfigErrorKind};
pub use model::Config;
pub use schema::FileConfig;

use std::path::Path;

/// Read, parse and validate a config file. Binds nothing. The default `pid_file` and
/// `upgrade_sock` are this file's own ([`runtime_files::RuntimeFiles::for_config_file`]).
pub fn load_file(path: &Path) -> Result<(FileConfig, Config), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        path: String::new(),
        kind: ConfigErrorKind::Read(e.to_string()),
    })?;
    let spec = parse_yaml(&text).map_err(|e| e.in_file(path))?;
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
        ConfigError {
            file: None,
            path: if path == "." { String::new() } else { path },
            kind: ConfigErrorKind::Syntax(message),
        }
    })
}

/// Serialize a schema back to YAML (for `--print-config`).
pub fn to_yaml(spec: &FileConfig) -> String {
    serde_yaml::to_string(spec).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
}
