//! The `limits:` and `rate_limit:` sections: what one client or connection may ask of fulcrum.

use super::values::{body_limit, int_in, request_buffering, response_buffering};
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use crate::config::units::{parse_positive_duration, parse_size};

/// Most headers Pingora parses; it answers 400 to more, before fulcrum sees the request.
const PINGORA_MAX_HEADERS: i64 = 256;

pub(super) fn limits(spec: Option<&LimitsSpec>) -> Result<Limits> {
    let mut out = Limits::default();
    let Some(spec) = spec else {
        return Ok(out);
    };
    if let Some(v) = &spec.max_header_bytes {
        let n = parse_size("limits.max_header_bytes", v)?;
        if !(1024..=1 << 20).contains(&n) {
            return Err(ConfigError::invalid(
                "limits.max_header_bytes",
                format!("expected a size from 1KiB to 1MiB, found {n} bytes"),
            ));
        }
        out.max_header_bytes = n as usize;
    }
    if let Some(n) = spec.max_headers {
        out.max_headers = int_in("limits.max_headers", n, 1..=PINGORA_MAX_HEADERS)? as usize;
    }
    if let Some(v) = &spec.max_body_bytes {
        out.max_body_bytes = body_limit("limits.max_body_bytes", v)?;
    }
    if let Some(t) = &spec.header_timeout {
        out.header_timeout = parse_positive_duration("limits.header_timeout", t)?;
    }
    if let Some(t) = &spec.body_timeout {
        out.body_timeout = parse_positive_duration("limits.body_timeout", t)?;
    }
    if let Some(t) = &spec.send_timeout {
        out.send_timeout = parse_positive_duration("limits.send_timeout", t)?;
    }
    if let Some(v) = &spec.request_buffering {
        out.request_buffering = request_buffering("limits.request_buffering", v)?;
    }
    if let Some(v) = &spec.response_buffering {
        out.response_buffering = response_buffering("limits.response_buffering", v)?;
    }
    if let Some(t) = &spec.keepalive_timeout {
        let path = "limits.keepalive_timeout";
        let d = parse_positive_duration(path, t)?;
        if d.subsec_nanos() != 0 {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "expected whole seconds (Pingora counts keep-alive in seconds), found {t:?}"
                ),
            ));
        }
        out.keepalive_timeout_secs = d.as_secs();
    }
    if let Some(n) = spec.max_connections {
        out.max_connections = int_in("limits.max_connections", n, 1..=10_000_000)? as usize;
    }
    if let Some(t) = &spec.handshake_timeout {
        out.handshake_timeout = parse_positive_duration("limits.handshake_timeout", t)?;
    }
    if let Some(h2) = &spec.h2 {
        out.h2 = h2_limits(h2)?;
    }
    Ok(out)
}

/// A size at `path` within `min..=max` bytes, `what` naming the range in the error.
fn size_in(path: &str, value: &serde_yaml::Value, min: u64, max: u64, what: &str) -> Result<u64> {
    let n = parse_size(path, value)?;
    if !(min..=max).contains(&n) {
        return Err(ConfigError::invalid(
            path,
            format!("expected a size from {what}, found {n} bytes"),
        ));
    }
    Ok(n)
}

fn h2_limits(spec: &H2Spec) -> Result<H2Limits> {
    let mut out = H2Limits::default();
    let max_window = u64::from(H2Limits::MAX_WINDOW);
    if let Some(n) = spec.max_concurrent_streams {
        out.max_concurrent_streams =
            int_in("limits.h2.max_concurrent_streams", n, 1..=10_000)? as u32;
    }
    if let Some(v) = &spec.stream_window {
        let path = "limits.h2.stream_window";
        out.stream_window = size_in(path, v, 1024, max_window, "1KiB to 2147483647 bytes")? as u32;
    }
    if let Some(v) = &spec.connection_window {
        let path = "limits.h2.connection_window";
        // Every connection starts with 65535 bytes (RFC 9113 6.9.2); it can only grow.
        out.connection_window =
            size_in(path, v, 64 * 1024, max_window, "64KiB to 2147483647 bytes")? as u32;
    }
    if let Some(v) = &spec.max_send_buffer {
        let path = "limits.h2.max_send_buffer";
        out.max_send_buffer = size_in(path, v, 1024, 16 << 20, "1KiB to 16MiB")? as usize;
    }
    Ok(out)
}

pub(super) fn rate_limit(base: &str, spec: &RateLimitSpec) -> Result<RateLimit> {
    let rps = spec.requests_per_second;
    if !(rps.is_finite() && rps > 0.0 && rps <= 1e9) {
        return Err(ConfigError::invalid(
            format!("{base}.requests_per_second"),
            format!("expected a number above 0 (e.g. 10 or 0.5), found {rps}"),
        ));
    }
    let burst = match spec.burst {
        None => rps.ceil().max(1.0) as u32,
        Some(b) => int_in(&format!("{base}.burst"), b, 1..=1_000_000)? as u32,
    };
    let max_clients = match spec.max_clients {
        None => 100_000,
        Some(n) => int_in(&format!("{base}.max_clients"), n, 1..=100_000_000)? as usize,
    };
    Ok(RateLimit {
        requests_per_second: rps,
        burst,
        max_clients,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::rejects;

    #[test]
    fn limit_rules() {
        rejects(&[
            (
                "limits: {max_headers: 0}",
                "limits.max_headers",
                "expected an integer from 1 to 256, found 0",
            ),
            (
                "limits: {max_headers: 257}",
                "limits.max_headers",
                "expected an integer from 1 to 256, found 257",
            ),
            (
                "limits: {max_header_bytes: 10}",
                "limits.max_header_bytes",
                "expected a size from 1KiB to 1MiB, found 10 bytes",
            ),
            (
                "limits: {max_body_bytes: 10XB}",
                "limits.max_body_bytes",
                "expected a size like 512, 64KiB, 10MiB or 1GiB, found \"10XB\"",
            ),
            (
                "limits: {header_timeout: 0s}",
                "limits.header_timeout",
                "expected a duration above zero",
            ),
            (
                "limits: {keepalive_timeout: 1500ms}",
                "limits.keepalive_timeout",
                "expected whole seconds (Pingora counts keep-alive in seconds), found \"1500ms\"",
            ),
            (
                "limits: {max_connections: 0}",
                "limits.max_connections",
                "expected an integer from 1 to 10000000, found 0",
            ),
            (
                "limits: {h2: {max_concurrent_streams: 0}}",
                "limits.h2.max_concurrent_streams",
                "expected an integer from 1 to 10000, found 0",
            ),
            (
                "limits: {h2: {stream_window: 2GiB}}",
                "limits.h2.stream_window",
                "expected a size from 1KiB to 2147483647 bytes, found 2147483648 bytes",
            ),
            (
                "limits: {h2: {connection_window: 1000}}",
                "limits.h2.connection_window",
                "expected a size from 64KiB to 2147483647 bytes, found 1000 bytes",
            ),
            (
                "limits: {h2: {max_send_buffer: 32MiB}}",
                "limits.h2.max_send_buffer",
                "expected a size from 1KiB to 16MiB, found 33554432 bytes",
            ),
        ]);
    }

    #[test]
    fn h2_limits_are_read() {
        let c = crate::config::validate::testing::accepts(
            "limits: {h2: {max_concurrent_streams: 10, stream_window: 16KiB, connection_window: 2MiB, max_send_buffer: 8KiB}}",
        );
        assert_eq!(
            c.limits.h2,
            crate::config::model::H2Limits {
                max_concurrent_streams: 10,
                stream_window: 16 * 1024,
                connection_window: 2 << 20,
                max_send_buffer: 8 * 1024,
            }
        );
    }

    #[test]
    fn rate_limit_rules() {
        rejects(&[
            (
                "rate_limit: {requests_per_second: 0}",
                "rate_limit.requests_per_second",
                "expected a number above 0 (e.g. 10 or 0.5), found 0",
            ),
            (
                "rate_limit: {requests_per_second: 10, burst: 0}",
                "rate_limit.burst",
                "expected an integer from 1 to 1000000, found 0",
            ),
            (
                "rate_limit: {requests_per_second: 10, max_clients: 0}",
                "rate_limit.max_clients",
                "expected an integer from 1 to 100000000, found 0",
            ),
        ]);
    }
}
