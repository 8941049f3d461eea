//! The log filter fulcrum starts with, and a logger that tells a client's disconnect from a
//! failure.
//!
//! By default fulcrum logs its own records from INFO up and Pingora's from WARN up (Pingora
//! reports its start-up steps at INFO); `RUST_LOG` replaces the whole filter.
//!
//! A client that goes away mid-response (broken pipe, connection reset, TLS closed without
//! `close_notify`) is not a fault of fulcrum's or a backend's, yet Pingora logs some of these
//! at ERROR (`Fail to serve cache: Downstream WriteError ...`). [`Relevel`] passes such records
//! on at INFO; it touches only records from Pingora's crates whose error is a downstream one of
//! those kinds, never an upstream error. fulcrum logs the request itself at INFO
//! (`proxy::client_gone`).

use log::{Level, Log, Metadata, Record};

/// The filter used when `RUST_LOG` is unset: fulcrum at INFO, Pingora's crates at WARN (the
/// directive matches every target starting with `pingora`).
pub const DEFAULT_FILTER: &str = "info,pingora=warn";

/// Error kinds (as Pingora displays them) that a client leaving causes.
const DOWNSTREAM_GONE: [&str; 3] = [
    "Downstream ConnectionClosed",
    "Downstream WriteError",
    "Downstream ReadError",
];

/// Causes under a downstream read or write error that mean the peer went away.
const PEER_GONE: [&str; 6] = [
    "Broken pipe",
    "Connection reset",
    "os error 32",
    "os error 104",
    "close_notify",
    "connection closed",
];

/// Whether a log message reports a client that went away: its error (the message itself or
/// the part after a `: `) starts with a downstream error kind and, for a read or write error,
/// has a peer-gone cause.
pub fn is_client_gone(message: &str) -> bool {
    let Some(kind) = DOWNSTREAM_GONE
        .iter()
        .find(|k| message.starts_with(**k) || message.contains(&format!(": {k}")))
    else {
        return false;
    };
    *kind == "Downstream ConnectionClosed" || PEER_GONE.iter().any(|c| message.contains(c))
}

/// A logger that passes every record to `inner`, Pingora's client-gone errors at INFO.
pub struct Relevel<L> {
    inner: L,
}

impl<L: Log> Relevel<L> {
    /// Wrap `inner`.
    pub fn new(inner: L) -> Self {
        Relevel { inner }
    }
}

impl<L: Log> Log for Relevel<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() == Level::Error
            && record.target().starts_with("pingora")
            && is_client_gone(&record.args().to_string())
        {
            let info = Record::builder()
                .args(*record.args())
                .level(Level::Info)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build();
            self.inner.log(&info);
            return;
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Install the process logger: env_logger with `RUST_LOG` or [`DEFAULT_FILTER`], wrapped in
/// [`Relevel`].
pub fn init() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER))
            .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Relevel::new(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_disconnects_are_recognized() {
        for m in [
            "Fail to serve cache: Downstream WriteError context: write body cause: Broken pipe (os error 32), GET /big",
            "Fail to proxy: Downstream WriteError cause: Connection reset by peer (os error 104), status: 0",
            "Fail to proxy: Downstream ReadError cause: peer closed connection without sending TLS close_notify",
            "Error finish sending body to downstream: Downstream ConnectionClosed",
            "Downstream WriteError cause: Broken pipe (os error 32)",
        ] {
            assert!(is_client_gone(m), "{m}");
        }
    }

    #[test]
    fn other_errors_are_left_alone() {
        for m in [
            "Fail to proxy: Upstream WriteError cause: Broken pipe (os error 32)",
            "Fail to proxy: Upstream ConnectionClosed, status: 502",
            "Fail to proxy: Downstream WriteTimedout, status: 0",
            "Fail to proxy: Downstream WriteError cause: No space left on device",
            "Fail to proxy: Downstream InvalidHTTPHeader",
        ] {
            assert!(!is_client_gone(m), "{m}");
        }
    }
}
