//! The `access_log:` section: on or off, the format, the file.

use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::{AccessLog, AccessLogFormat};
use crate::config::schema::AccessLogSpec;

pub(super) fn access_log(spec: Option<&AccessLogSpec>) -> Result<AccessLog> {
    let mut a = AccessLog::default();
    let Some(spec) = spec else { return Ok(a) };
    a.disabled = spec.enabled == Some(false);
    if let Some(name) = &spec.format {
        a.format = AccessLogFormat::ALL
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "access_log.format",
                    format!("expected `text` or `json`, found {name:?}"),
                )
            })?;
    }
    if let Some(path) = &spec.path {
        if path.is_empty() {
            return Err(ConfigError::invalid(
                "access_log.path",
                "expected a file path, found an empty string",
            ));
        }
        a.path = Some(path.into());
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use crate::config::model::AccessLogFormat;
    use crate::config::validate::testing::{accepts, rejects};

    #[test]
    fn rules() {
        rejects(&[
            (
                "access_log: {format: xml}",
                "access_log.format",
                "expected `text` or `json`, found \"xml\"",
            ),
            (
                "access_log: {path: ''}",
                "access_log.path",
                "expected a file path, found an empty string",
            ),
        ]);
    }

    #[test]
    fn defaults_and_settings() {
        let a = accepts("").access_log;
        assert_eq!(
            (a.disabled, a.format, a.path),
            (false, AccessLogFormat::Text, None)
        );
        let a = accepts("access_log: {format: json, path: /var/log/fulcrum.log}").access_log;
        assert_eq!(a.format, AccessLogFormat::Json);
        assert_eq!(a.path.unwrap().to_str(), Some("/var/log/fulcrum.log"));
        assert!(accepts("access_log: {enabled: false}").access_log.disabled);
    }

    #[test]
    fn trace_context_is_on_by_default() {
        assert!(accepts("").forwarding.trace_context);
        assert!(
            !accepts("forwarding: {trace_context: false}")
                .forwarding
                .trace_context
        );
    }
}
