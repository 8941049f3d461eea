//! The top-level `access_log:` section as written in YAML.

use serde::{Deserialize, Serialize};

/// `access_log:`: where request lines go and in which format.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// Write access-log lines at all; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `text` (default) or `json` (one object per line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// A file the lines are appended to (reopened on SIGUSR1); default: stderr, through the
    /// log (target `access`) for `text`, as is for `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}
