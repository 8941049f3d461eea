//! Checks of single values that several sections share: integers in a range, addresses, host
//! names, header names and values, body sizes.

use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::{HostMatch, MAX_REQUEST_BUFFERING, MAX_RESPONSE_BUFFERING};
use crate::config::units::{parse_positive_duration, parse_size};
use http::{HeaderName, HeaderValue};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// `value` when it lies in `range`, else an error at `path` saying so:
/// `expected an integer from 1 to 1000, found 0`.
pub(super) fn int_in(path: &str, value: i64, range: RangeInclusive<i64>) -> Result<i64> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(ConfigError::invalid(
        path,
        format!(
            "expected an integer from {} to {}, found {value}",
            range.start(),
            range.end()
        ),
    ))
}

/// A positive duration in whole seconds (Pingora counts keep-alive in seconds).
pub(super) fn whole_seconds(path: &str, text: &str) -> Result<Duration> {
    let d = parse_positive_duration(path, text)?;
    if d.subsec_nanos() != 0 {
        return Err(ConfigError::invalid(
            path,
            format!(
                "expected whole seconds (Pingora counts keep-alive in seconds), found {text:?}"
            ),
        ));
    }
    Ok(d)
}

pub(super) fn socket_addr(path: &str, text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            format!("expected IP:port like 127.0.0.1:8080 or [::1]:8080, found {text:?}"),
        )
    })
}

pub(super) fn host_match(path: &str, host: Option<&str>) -> Result<HostMatch> {
    let Some(host) = host else {
        return Ok(HostMatch::Any);
    };
    let lower = host.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with('.')
        && !name.ends_with('.');
    if !valid {
        return Err(ConfigError::invalid(
            path,
            format!("expected a host name like api.example.com or *.example.com, found {host:?}"),
        ));
    }
    Ok(if wild {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_string())
    })
}

pub(super) fn header_name(path: &str, name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::invalid(path, format!("{name:?} is not a valid header name")))
}

pub(super) fn header_pairs(
    base: &str,
    map: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>> {
    map.iter()
        .map(|(name, value)| {
            let path = format!("{base}.{name}");
            let n = header_name(&path, name)?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                ConfigError::invalid(&path, format!("{value:?} is not a valid header value"))
            })?;
            Ok((n, v))
        })
        .collect()
}

/// A body size limit; `0` means none.
pub(super) fn body_limit(path: &str, value: &Value) -> Result<Option<u64>> {
    Ok(Some(parse_size(path, value)?).filter(|&n| n > 0))
}

/// A `request_buffering` size: `0` or `off` for none, else at most
/// [`MAX_REQUEST_BUFFERING`] (Pingora's retry buffer, which carries the body, holds no more).
pub(super) fn request_buffering(path: &str, value: &Value) -> Result<u64> {
    if value.as_str().is_some_and(|s| s.trim() == "off") {
        return Ok(0);
    }
    let n = parse_size(path, value)?;
    if n > MAX_REQUEST_BUFFERING {
        return Err(ConfigError::invalid(
            path,
            format!(
                "expected a size up to 64KiB (the body is held in Pingora's 64 KiB retry \
                 buffer), or 0/off to stream every body, found {n} bytes"
            ),
        ));
    }
    Ok(n)
}

/// A `limits.response_buffering` size: `0` or `off` for none, else at most
/// [`MAX_RESPONSE_BUFFERING`] (memory per client connection).
pub(super) fn response_buffering(path: &str, value: &Value) -> Result<u64> {
    if value.as_str().is_some_and(|s| s.trim() == "off") {
        return Ok(0);
    }
    let n = parse_size(path, value)?;
    if n > MAX_RESPONSE_BUFFERING {
        return Err(ConfigError::invalid(
            path,
            format!("expected a size up to 16MiB (held per client connection), or 0/off, found {n} bytes"),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_buffering_takes_off_zero_and_sizes_up_to_64_kib() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(request_buffering("k", &v("off")), Ok(0));
        assert_eq!(request_buffering("k", &Value::from(0u64)), Ok(0));
        assert_eq!(request_buffering("k", &v("16KiB")), Ok(16 * 1024));
        assert_eq!(request_buffering("k", &v("64KiB")), Ok(64 * 1024));
        let e = request_buffering("a.b", &v("65537")).unwrap_err();
        assert_eq!(e.path, "a.b");
        assert!(e.to_string().contains("retry buffer"), "{e}");
        assert_eq!(request_buffering("a.b", &v("on")).unwrap_err().path, "a.b");
    }

    #[test]
    fn response_buffering_takes_off_zero_and_sizes_up_to_16_mib() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(response_buffering("k", &v("off")), Ok(0));
        assert_eq!(response_buffering("k", &v("16MiB")), Ok(16 << 20));
        assert_eq!(
            response_buffering("a.b", &v("17MiB")).unwrap_err().path,
            "a.b"
        );
    }

    #[test]
    fn int_in_names_the_range_and_what_was_found() {
        assert_eq!(int_in("k", 5, 1..=10), Ok(5));
        assert_eq!(int_in("k", 0, 0..=0), Ok(0));
        let e = int_in("a.b", 11, 1..=10).unwrap_err();
        assert_eq!(e.path, "a.b");
        assert_eq!(
            e.to_string(),
            "command line: a.b: expected an integer from 1 to 10, found 11"
        );
    }

    #[test]
    fn host_match_lowercases_and_keeps_wildcards_as_suffixes() {
        assert_eq!(host_match("h", None), Ok(HostMatch::Any));
        assert_eq!(
            host_match("h", Some("API.example.com")),
            Ok(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(
            host_match("h", Some("*.example.com")),
            Ok(HostMatch::Suffix(".example.com".into()))
        );
        for bad in ["", "*.", ".example.com", "example.com.", "a b", "a/b"] {
            assert!(host_match("h", Some(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
