//! The `pingora:` section: Pingora's own `ServerConf`, with fulcrum's defaults filled in.

use super::Result;
use crate::config::error::{ConfigError, ConfigErrorKind};
use crate::config::runtime_files::RuntimeFiles;
use pingora_core::server::configuration::ServerConf;
use serde_yaml::{Mapping, Value};

/// fulcrum's defaults for Pingora keys the user did not set. Pingora's own defaults (a 300 s
/// grace period, files named after pingora in /tmp) surprise in a demo or a test.
const PINGORA_DEFAULTS: &[(&str, PingoraDefault)] = &[
    ("grace_period_seconds", PingoraDefault::Int(5)),
    ("graceful_shutdown_timeout_seconds", PingoraDefault::Int(5)),
    // One pair of files per instance (config file or quick-mode address): see RuntimeFiles.
    ("pid_file", PingoraDefault::PidFile),
    ("upgrade_sock", PingoraDefault::UpgradeSock),
    ("threads", PingoraDefault::Cpus),
    ("work_stealing", PingoraDefault::WorkStealing),
    // Idle upstream connections kept for reuse, over all backends of a listener (Pingora: 128).
    // Fewer than the requests in flight, and every release past the limit closes a connection
    // that the next request opens again (docs/configuration.md's `pingora` section has the measurements).
    ("upstream_keepalive_pool_size", PingoraDefault::Int(1024)),
    // Timeouts of a second or more on the runtime's own tokio timer rather than Pingora's
    // process-wide one (a lock, a map lookup and a `Notify` per timeout that has to wait).
    (
        "fast_timeout_to_tokio_threshold_seconds",
        PingoraDefault::Int(0),
    ),
];

/// How a default of [`PINGORA_DEFAULTS`] is made.
enum PingoraDefault {
    /// This number.
    Int(u64),
    /// [`RuntimeFiles::pid_file`].
    PidFile,
    /// [`RuntimeFiles::upgrade_sock`].
    UpgradeSock,
    /// The number of CPUs.
    Cpus,
    /// With one worker thread, Pingora's single-threaded runtime (`false`): less CPU per
    /// request (docs/performance.md). With several, Pingora's default (`true`): without work
    /// stealing, Pingora's upstream connection pool starts each idle connection's watcher on a
    /// random thread, a wake-up across threads per request, and a connection picked up on
    /// another thread than its watcher's can fail to be reused ("failed to acquire reusable
    /// stream").
    WorkStealing,
}

/// The `pingora:` mapping with fulcrum's defaults filled in, as it will be used; `files` are
/// the instance's default `pid_file` and `upgrade_sock`.
fn pingora_with_defaults(raw: Option<&Mapping>, files: &RuntimeFiles) -> Mapping {
    let mut map = raw.cloned().unwrap_or_default();
    for (key, default) in PINGORA_DEFAULTS {
        let key = Value::String((*key).to_string());
        if map.contains_key(&key) {
            continue;
        }
        let value = match default {
            PingoraDefault::WorkStealing => {
                // `threads` is filled in before this key.
                let one = map.get("threads").and_then(Value::as_u64) == Some(1);
                if !one {
                    continue;
                }
                Value::Bool(false)
            }
            PingoraDefault::Int(n) => Value::Number((*n).into()),
            PingoraDefault::PidFile => Value::String(files.pid_file.clone()),
            PingoraDefault::UpgradeSock => Value::String(files.upgrade_sock.clone()),
            PingoraDefault::Cpus => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                Value::Number((n as u64).into())
            }
        };
        map.insert(key, value);
    }
    map
}

pub(super) fn pingora_conf(raw: Option<&Mapping>, files: &RuntimeFiles) -> Result<ServerConf> {
    let map = pingora_with_defaults(raw, files);
    let mut unknown = Vec::new();
    let conf: ServerConf =
        serde_ignored::deserialize(Value::Mapping(map), |path| unknown.push(path.to_string()))
            .map_err(|e| ConfigError {
                file: None,
                path: "pingora".into(),
                kind: ConfigErrorKind::Syntax(e.to_string()),
            })?;
    if let Some(key) = unknown.first() {
        return Err(ConfigError::invalid(
            format!("pingora.{key}"),
            "unknown key (see Pingora's ServerConf for the keys this section takes)",
        ));
    }
    if conf.threads == 0 {
        return Err(ConfigError::invalid(
            "pingora.threads",
            "expected at least 1 thread, found 0",
        ));
    }
    conf.validate()
        .map_err(|e| ConfigError::invalid("pingora", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::testing::rejects;

    fn files() -> RuntimeFiles {
        RuntimeFiles {
            pid_file: "/run/x.pid".into(),
            upgrade_sock: "/run/x.sock".into(),
        }
    }

    fn pingora(yaml: &str) -> ServerConf {
        let raw: Option<Mapping> = serde_yaml::from_str(yaml).ok();
        pingora_conf(raw.as_ref(), &files()).expect("valid pingora section")
    }

    #[test]
    fn instance_files_are_defaults_only() {
        let conf = pingora("threads: 1");
        assert_eq!(conf.pid_file, "/run/x.pid");
        assert_eq!(conf.upgrade_sock, "/run/x.sock");
        let conf = pingora("{pid_file: /a.pid, upgrade_sock: /a.sock}");
        assert_eq!(conf.pid_file, "/a.pid");
        assert_eq!(conf.upgrade_sock, "/a.sock");
    }

    #[test]
    fn runtime_defaults_unless_asked_otherwise() {
        let conf = pingora("threads: 1");
        assert!(!conf.work_stealing);
        assert_eq!(conf.fast_timeout_to_tokio_threshold_seconds, Some(0));
        // Several threads keep Pingora's default, the work-stealing runtime.
        assert!(ServerConf::default().work_stealing);
        assert!(pingora("threads: 2").work_stealing);
        let conf = pingora(
            "{threads: 1, work_stealing: true, fast_timeout_to_tokio_threshold_seconds: 900}",
        );
        assert!(conf.work_stealing);
        assert_eq!(conf.fast_timeout_to_tokio_threshold_seconds, Some(900));
        assert!(!pingora("{threads: 4, work_stealing: false}").work_stealing);
        assert_eq!(pingora("{}").upstream_keepalive_pool_size, 1024);
        assert_eq!(
            pingora("upstream_keepalive_pool_size: 8").upstream_keepalive_pool_size,
            8
        );
    }

    #[test]
    fn rules() {
        rejects(&[
            (
                "pingora: {threads: 0}",
                "pingora.threads",
                "expected at least 1 thread, found 0",
            ),
            (
                "pingora: {no_such_key: 1}",
                "pingora.no_such_key",
                "unknown key (see Pingora's ServerConf for the keys this section takes)",
            ),
            (
                "pingora: {max_retries: 1}\nupstreams: {api: {max_tries: 2, backends: [{addr: 127.0.0.1:3001}, {addr: 127.0.0.1:3002}]}}",
                "upstreams.api.max_tries",
                "2 tries need pingora.max_retries of at least 2, found 1",
            ),
            (
                "pingora: {max_retries: 4}\nupstreams: {api: {max_tries: 5, discovery: {dns: 'api.internal:80'}}}",
                "upstreams.api.max_tries",
                "5 tries need pingora.max_retries of at least 5, found 4",
            ),
            (
                "pingora: {max_retries: 2}\nupstreams: {api: {discovery: {dns: 'api.internal:80'}}}",
                "upstreams.api.max_tries",
                "3 tries need pingora.max_retries of at least 3, found 2",
            ),
        ]);
    }
}
