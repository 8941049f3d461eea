//! The access log: one line per request through the `log` crate, target `access`.
//!
//! ```text
//! 127.0.0.1:52310 "GET /api/users HTTP/1.1" 200 bytes=512 duration_ms=1.84 upstream=api backend=10.0.0.1:8000 tries=1 request_id=4f2c...
//! ```
//!
//! A gRPC call also gets its gRPC status next to the HTTP one (`200 grpc_status=14`; `-`
//! when the call ended without one), and a request of a caching route what the cache did
//! (`200 cache=HIT`).
//!
//! `RUST_LOG=access=off` silences it; nothing is formatted when it is off.

use log::Level;

/// Target of access-log records.
pub const TARGET: &str = "access";

/// Whether access-log lines would be written.
pub fn enabled() -> bool {
    log::log_enabled!(target: TARGET, Level::Info)
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
    /// The error that ended the request, if any.
    pub error: Option<String>,
}

/// Write the line.
pub fn write(e: &Entry<'_>) {
    let mut status = match e.grpc_status {
        None => e.status.to_string(),
        Some(g) => format!("{} grpc_status={g}", e.status),
    };
    if let Some(c) = e.cache {
        status.push_str(" cache=");
        status.push_str(c);
    }
    match &e.error {
        None => log::info!(
            target: TARGET,
            "{} \"{} {} {}\" {} bytes={} duration_ms={:.2} upstream={} backend={} tries={} request_id={}",
            e.client, e.method, e.uri, e.version, status, e.bytes, e.seconds * 1000.0,
            e.upstream, e.backend, e.tries, e.request_id
        ),
        Some(err) => log::info!(
            target: TARGET,
            "{} \"{} {} {}\" {} bytes={} duration_ms={:.2} upstream={} backend={} tries={} request_id={} error=\"{}\"",
            e.client, e.method, e.uri, e.version, status, e.bytes, e.seconds * 1000.0,
            e.upstream, e.backend, e.tries, e.request_id, err.escape_default()
        ),
    }
}
