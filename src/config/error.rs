//! Errors found while loading a config: where (file, key path, line) and what.

use std::fmt;
use std::path::PathBuf;

/// A config that cannot be used. Display prints one line a person can act on:
/// `conf/x.yaml: upstreams.api.backends[2].weight: expected an integer from 1 to 1000, found 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the config came from; `None` for quick mode (command-line flags).
    pub file: Option<PathBuf>,
    /// The key path inside the document, e.g. `routes[0].upstream`; empty for the whole file.
    pub path: String,
    /// What was wrong and what was expected.
    pub kind: ConfigErrorKind,
}

/// The kinds of config error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Read(String),
    /// The YAML does not parse, or a value has the wrong type or an unknown key; carries the
    /// parser's message, which includes line and column.
    Syntax(String),
    /// A value parsed but is not acceptable.
    Invalid(String),
}

impl ConfigError {
    /// An error about the value at `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            path: path.into(),
            kind: ConfigErrorKind::Invalid(message.into()),
        }
    }

    /// Attach the file the config came from.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: ", file.display())?,
            None => write!(f, "command line: ")?,
        }
        if !self.path.is_empty() && self.path != "." {
            write!(f, "{}: ", self.path)?;
        }
        match &self.kind {
            ConfigErrorKind::Read(m) => write!(f, "cannot read file: {m}"),
            ConfigErrorKind::Syntax(m) => write!(f, "{m}"),
            ConfigErrorKind::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ConfigError {}
