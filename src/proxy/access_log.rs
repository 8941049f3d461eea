//! The access log: one line per request, as text or JSON (`access_log:` in the config).
//!
//! ```text
//! 127.0.0.1:52310 "GET /api/users HTTP/1.1" 200 bytes=512 duration_ms=1.84 upstream=api backend=10.0.0.1:8000 tries=1 request_id=4f2c... trace_id=4bf9... span_id=00f0...
//! ```
//!
//! A gRPC call also gets its gRPC status next to the HTTP one (`200 grpc_status=14`; `-`
//! when the call ended without one), and a request of a caching route what the cache did
//! (`200 cache=HIT`).
//!
//! Text without a `path` goes through the `log` crate, target `access`, to stderr as before:
//! `RUST_LOG=access=off` silences it, and nothing is formatted when it is off. With a `path`
//! (or as JSON) the line is formatted on the request's thread and written by
//! [`crate::logging::access_file`]; a text line there starts with its RFC 3339 time.

use crate::config::model::{AccessLog, AccessLogFormat};
use crate::logging::access_file::{self, Destination, OpenError};
use crate::logging::time::rfc3339_millis;
use log::Level;
use serde::Serialize;
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Target of access-log records.
pub const TARGET: &str = "access";

/// How this process writes its access log, set once at start ([`install`]).
#[derive(Debug, Clone, Copy)]
struct Mode {
    disabled: bool,
    format: AccessLogFormat,
    /// Lines go to [`access_file`] rather than through the log.
    own_writer: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Set up the access log as configured, opening its file now (an error names the file).
/// Without a call, lines are text through the log.
pub fn install(config: &AccessLog) -> Result<(), OpenError> {
    let destination = match (&config.path, config.format) {
        _ if config.disabled => None,
        (Some(path), _) => Some(Destination::File(path.clone())),
        (None, AccessLogFormat::Json) => Some(Destination::Stderr),
        (None, AccessLogFormat::Text) => None,
    };
    let own_writer = destination.is_some();
    if let Some(d) = destination {
        access_file::open(d)?;
    }
    let _ = MODE.set(Mode {
        disabled: config.disabled,
        format: config.format,
        own_writer,
    });
    Ok(())
}

fn mode() -> Mode {
    *MODE.get_or_init(|| Mode {
        disabled: false,
        format: AccessLogFormat::Text,
        own_writer: false,
    })
}

/// Write out the lines still queued (at exit).
pub fn flush() {
    if mode().own_writer {
        access_file::finish();
    }
    log::logger().flush();
}

/// Whether access-log lines would be written.
pub fn enabled() -> bool {
    let m = mode();
    !m.disabled && (m.own_writer || log::log_enabled!(target: TARGET, Level::Info))
}

/// One request's fields.
pub struct Entry<'a> {
    /// Client address (the TCP peer).
    pub client: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path and query as received.
    pub uri: &'a str,
    /// HTTP version as `HTTP/1.1`, `HTTP/2`.
    pub version: &'a str,
    /// Response status; 0 when none was sent.
    pub status: u16,
    /// For a gRPC call: its `grpc-status`, `-` when it had none; `None` for other requests.
    pub grpc_status: Option<&'a str>,
    /// On a caching route: what the cache did (`HIT`, `MISS`, ...), written after the
    /// status as `cache=HIT`.
    pub cache: Option<&'a str>,
    /// Response body bytes sent.
    pub bytes: usize,
    /// Seconds from reading the request head to the end.
    pub seconds: f64,
    /// Upstream group name, `-` when none.
    pub upstream: &'a str,
    /// Backend that served (the last tried), `-` when none.
    pub backend: &'a str,
    /// Backends tried.
    pub tries: usize,
    /// Request id.
    pub request_id: &'a str,
    /// W3C trace id (32 hex digits), when trace context is on.
    pub trace_id: Option<&'a str>,
    /// fulcrum's span id in the trace (16 hex digits), when trace context is on.
    pub span_id: Option<&'a str>,
    /// The error that ended the request, if any.
    pub error: Option<String>,
}

/// Write the line.
pub fn write(e: &Entry<'_>) {
    let m = mode();
    if m.disabled {
        return;
    }
    match (m.format, m.own_writer) {
        (AccessLogFormat::Text, false) => log::info!(target: TARGET, "{}", text(e)),
        (AccessLogFormat::Text, true) => {
            let mut line = rfc3339_millis(SystemTime::now());
            line.push(' ');
            line.push_str(&text(e));
            access_file::send(line);
        }
        (AccessLogFormat::Json, _) => access_file::send(json(e)),
    }
}

/// The text line (without time).
pub fn text(e: &Entry<'_>) -> String {
    let mut s = String::with_capacity(192);
    let _ = write!(
        s,
        "{} \"{} {} {}\" {}",
        e.client, e.method, e.uri, e.version, e.status
    );
    if let Some(g) = e.grpc_status {
        let _ = write!(s, " grpc_status={g}");
    }
    if let Some(c) = e.cache {
        let _ = write!(s, " cache={c}");
    }
    let _ = write!(
        s,
        " bytes={} duration_ms={:.2} upstream={} backend={} tries={} request_id={}",
        e.bytes,
        e.seconds * 1000.0,
        e.upstream,
        e.backend,
        e.tries,
        e.request_id
    );
    if let (Some(t), Some(sp)) = (e.trace_id, e.span_id) {
        let _ = write!(s, " trace_id={t} span_id={sp}");
    }
    if let Some(err) = &e.error {
        let _ = write!(s, " error=\"{}\"", err.escape_default());
    }
    s
}

/// A JSON line's fields; absent values are `null`.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: &'a str,
    method: &'a str,
    uri: &'a str,
    version: &'a str,
    status: u16,
    bytes: usize,
    duration_ms: f64,
    upstream: Option<&'a str>,
    backend: Option<&'a str>,
    tries: usize,
    request_id: Option<&'a str>,
    trace_id: Option<&'a str>,
    span_id: Option<&'a str>,
    grpc_status: Option<u16>,
    cache: Option<&'a str>,
    error: Option<&'a str>,
}

/// `-` (the text format's "none") as `None`.
fn known(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

/// The JSON line: one object, escaped by serde_json.
pub fn json(e: &Entry<'_>) -> String {
    let line = JsonLine {
        time: rfc3339_millis(SystemTime::now()),
        client: e.client,
        method: e.method,
        uri: e.uri,
        version: e.version,
        status: e.status,
        bytes: e.bytes,
        duration_ms: (e.seconds * 1_000_000.0).round() / 1000.0,
        upstream: known(e.upstream),
        backend: known(e.backend),
        tries: e.tries,
        request_id: known(e.request_id),
        trace_id: e.trace_id,
        span_id: e.span_id,
        grpc_status: e.grpc_status.and_then(|g| g.parse().ok()),
        cache: e.cache,
        error: e.error.as_deref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "127.0.0.1:5000",
            method: "GET",
            uri: "/a?\"q\"",
            version: "HTTP/1.1",
            status: 200,
            grpc_status: None,
            cache: Some("HIT"),
            bytes: 12,
            seconds: 0.0015,
            upstream: "api",
            backend: "-",
            tries: 1,
            request_id: "abc",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            span_id: Some("00f067aa0ba902b7"),
            error: None,
        }
    }

    #[test]
    fn text_keeps_the_old_line_and_adds_the_trace() {
        assert_eq!(
            text(&entry()),
            "127.0.0.1:5000 \"GET /a?\"q\" HTTP/1.1\" 200 cache=HIT bytes=12 duration_ms=1.50 \
             upstream=api backend=- tries=1 request_id=abc \
             trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"
        );
    }

    #[test]
    fn json_is_one_escaped_object() {
        let v: serde_json::Value = serde_json::from_str(&json(&entry())).unwrap();
        assert_eq!(v["uri"], "/a?\"q\"");
        assert_eq!(v["backend"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["cache"], "HIT");
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
    }
}
