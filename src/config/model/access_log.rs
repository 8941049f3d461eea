//! The validated `access_log:` section.

use std::path::PathBuf;

/// How an access-log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// fulcrum's one-line text (`client "GET / HTTP/1.1" 200 bytes=...`).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl AccessLogFormat {
    /// Every format with its config name.
    pub const ALL: &'static [(&'static str, AccessLogFormat)] = &[
        ("text", AccessLogFormat::Text),
        ("json", AccessLogFormat::Json),
    ];
}

/// Where and how access-log lines are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessLog {
    /// Off: no line is formatted or written.
    pub disabled: bool,
    /// The line format.
    pub format: AccessLogFormat,
    /// The file lines are appended to; `None` for stderr.
    pub path: Option<PathBuf>,
}
