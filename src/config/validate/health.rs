//! An upstream's `health_check:` and `circuit_breaker:`: when a backend counts as down.

use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use crate::config::units::parse_positive_duration;
use http::HeaderValue;
use serde_yaml::Value;

fn status_ranges(path: &str, values: &[Value]) -> Result<Vec<std::ops::RangeInclusive<u16>>> {
    if values.is_empty() {
        return Ok(vec![200..=399]);
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_ascii_lowercase(),
                _ => String::new(),
            };
            let bad = || {
                ConfigError::invalid(
                    format!("{path}[{i}]"),
                    format!("expected a status like 200, 2xx or 200-299, found {text:?}"),
                )
            };
            let code = |t: &str| t.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
            let range = if let Some(class) = text.strip_suffix("xx") {
                let c = class.parse::<u16>().ok().filter(|c| (1..=5).contains(c));
                c.map(|c| c * 100..=c * 100 + 99)
            } else if let Some((a, b)) = text.split_once('-') {
                match (code(a.trim()), code(b.trim())) {
                    (Some(a), Some(b)) if a <= b => Some(a..=b),
                    _ => None,
                }
            } else {
                code(&text).map(|c| c..=c)
            };
            range.ok_or_else(bad)
        })
        .collect()
}

/// A gRPC service name as `grpc.health.v1` takes it: empty (the whole server) or a name
/// without whitespace or control characters, such as `pkg.v1.Users`.
fn grpc_service(base: &str, service: &str) -> Result<String> {
    if service.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            format!("{base}.service"),
            format!("expected a gRPC service name such as pkg.v1.Users, found {service:?}"),
        ));
    }
    Ok(service.to_string())
}

pub(super) fn health_check(base: &str, spec: &HealthCheckSpec) -> Result<HealthCheck> {
    let duration =
        |key: &str, text: &Option<String>, default: u64| -> Result<std::time::Duration> {
            match text {
                Some(t) => parse_positive_duration(&format!("{base}.{key}"), t),
                None => Ok(std::time::Duration::from_millis(default)),
            }
        };
    let interval = duration("interval", &spec.interval, 5_000)?;
    let timeout = duration("timeout", &spec.timeout, 2_000)?;
    let count = |key: &str, v: Option<u32>, default: u32| -> Result<u32> {
        match v.unwrap_or(default) {
            0 => Err(ConfigError::invalid(
                format!("{base}.{key}"),
                "expected at least 1",
            )),
            n => Ok(n),
        }
    };
    let rise = count("rise", spec.rise, 2)?;
    let fall = count("fall", spec.fall, 3)?;
    let http_only = |key: &str, present: bool| -> Result<()> {
        if present {
            Err(ConfigError::invalid(
                format!("{base}.{key}"),
                "only used with `type: http`",
            ))
        } else {
            Ok(())
        }
    };
    let no_http_keys = || -> Result<()> {
        http_only("path", spec.path.is_some())?;
        http_only("method", spec.method.is_some())?;
        http_only("host", spec.host.is_some())?;
        http_only("expect_status", !spec.expect_status.is_empty())?;
        http_only("expect_body", spec.expect_body.is_some())
    };
    let kind_name = spec.kind.as_deref().unwrap_or("http");
    if spec.service.is_some() && kind_name != "grpc" {
        return Err(ConfigError::invalid(
            format!("{base}.service"),
            "only used with `type: grpc`",
        ));
    }
    let kind = match kind_name {
        "tcp" => {
            no_http_keys()?;
            CheckKind::Tcp
        }
        "grpc" => {
            no_http_keys()?;
            CheckKind::Grpc {
                service: grpc_service(base, spec.service.as_deref().unwrap_or(""))?,
            }
        }
        "http" => {
            let path = spec.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(ConfigError::invalid(
                    format!("{base}.path"),
                    format!("expected a path starting with /, found {path:?}"),
                ));
            }
            let method = spec.method.as_deref().unwrap_or("GET");
            let method =
                http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ConfigError::invalid(
                        format!("{base}.method"),
                        format!("{method:?} is not an HTTP method"),
                    )
                })?;
            if let Some(h) = &spec.host {
                HeaderValue::from_str(h).map_err(|_| {
                    ConfigError::invalid(
                        format!("{base}.host"),
                        format!("{h:?} is not a valid host"),
                    )
                })?;
            }
            CheckKind::Http {
                method,
                path,
                host: spec.host.clone(),
                expect_status: status_ranges(
                    &format!("{base}.expect_status"),
                    &spec.expect_status,
                )?,
                expect_body: spec.expect_body.clone().filter(|b| !b.is_empty()),
            }
        }
        other => {
            return Err(ConfigError::invalid(
                format!("{base}.type"),
                format!("expected http, tcp or grpc, found {other:?}"),
            ))
        }
    };
    Ok(HealthCheck {
        kind,
        interval,
        timeout,
        rise,
        fall,
    })
}

pub(super) fn circuit_breaker(
    base: &str,
    spec: Option<&CircuitBreakerSpec>,
) -> Result<CircuitBreaker> {
    let mut cb = CircuitBreaker::default();
    let Some(spec) = spec else { return Ok(cb) };
    cb.max_fails = spec.max_fails.unwrap_or(cb.max_fails);
    let positive = |key: &str, text: &str| parse_positive_duration(&format!("{base}.{key}"), text);
    if let Some(t) = &spec.cooldown {
        cb.cooldown = positive("cooldown", t)?;
    }
    if let Some(t) = &spec.max_cooldown {
        cb.max_cooldown = positive("max_cooldown", t)?;
    }
    if cb.max_cooldown < cb.cooldown {
        return Err(ConfigError::invalid(
            format!("{base}.max_cooldown"),
            "must not be shorter than cooldown",
        ));
    }
    cb.on_5xx = spec.on_5xx.unwrap_or(false);
    cb.slow_response = spec
        .slow_response
        .as_deref()
        .map(|t| positive("slow_response", t))
        .transpose()?;
    Ok(cb)
}

#[cfg(test)]
mod tests {
    use crate::config::model::CheckKind;
    use crate::config::validate::testing::{accepts, rejects};
    use std::time::Duration;

    fn upstream(extra: &str) -> String {
        format!("upstreams: {{api: {{backends: [{{addr: '127.0.0.1:3001'}}], {extra}}}}}")
    }

    #[test]
    fn rules() {
        let cases = [
            (
                upstream("health_check: {type: udp}"),
                "upstreams.api.health_check.type",
                "expected http, tcp or grpc, found \"udp\"",
            ),
            (
                upstream("health_check: {type: tcp, path: /health}"),
                "upstreams.api.health_check.path",
                "only used with `type: http`",
            ),
            (
                upstream("health_check: {rise: 0}"),
                "upstreams.api.health_check.rise",
                "expected at least 1",
            ),
            (
                upstream("health_check: {interval: 0ms}"),
                "upstreams.api.health_check.interval",
                "expected a duration above zero",
            ),
            (
                upstream("health_check: {path: health}"),
                "upstreams.api.health_check.path",
                "expected a path starting with /, found \"health\"",
            ),
            (
                upstream("health_check: {method: 'G T'}"),
                "upstreams.api.health_check.method",
                "\"G T\" is not an HTTP method",
            ),
            (
                upstream("health_check: {expect_status: [200, 600]}"),
                "upstreams.api.health_check.expect_status[1]",
                "expected a status like 200, 2xx or 200-299, found \"600\"",
            ),
            (
                upstream("health_check: {expect_status: [300-200]}"),
                "upstreams.api.health_check.expect_status[0]",
                "expected a status like 200, 2xx or 200-299, found \"300-200\"",
            ),
            (
                upstream("health_check: {type: grpc, path: /health}"),
                "upstreams.api.health_check.path",
                "only used with `type: http`",
            ),
            (
                upstream("health_check: {type: grpc, expect_status: [200]}"),
                "upstreams.api.health_check.expect_status",
                "only used with `type: http`",
            ),
            (
                upstream("health_check: {service: api.v1.Users}"),
                "upstreams.api.health_check.service",
                "only used with `type: grpc`",
            ),
            (
                upstream("health_check: {type: tcp, service: ''}"),
                "upstreams.api.health_check.service",
                "only used with `type: grpc`",
            ),
            (
                upstream("health_check: {type: grpc, service: 'api users'}"),
                "upstreams.api.health_check.service",
                "expected a gRPC service name such as pkg.v1.Users, found \"api users\"",
            ),
            (
                upstream("health_check: {type: grpc, fall: 0}"),
                "upstreams.api.health_check.fall",
                "expected at least 1",
            ),
            (
                upstream("circuit_breaker: {cooldown: 10s, max_cooldown: 5s}"),
                "upstreams.api.circuit_breaker.max_cooldown",
                "must not be shorter than cooldown",
            ),
        ];
        let cases: Vec<_> = cases.iter().map(|(y, p, m)| (y.as_str(), *p, *m)).collect();
        rejects(&cases);
    }

    #[test]
    fn a_grpc_check_asks_about_the_whole_server_by_default() {
        let c = accepts(&upstream("health_check: {type: grpc}"));
        let hc = c.upstreams[0].health_check.clone().expect("health check");
        assert_eq!(
            hc.kind,
            CheckKind::Grpc {
                service: String::new()
            }
        );
        assert_eq!(
            (hc.interval, hc.timeout, hc.rise, hc.fall),
            (Duration::from_secs(5), Duration::from_secs(2), 2, 3)
        );
    }

    #[test]
    fn a_grpc_check_takes_a_service_and_the_shared_keys() {
        let c = accepts(&upstream(
            "health_check: {type: grpc, service: pkg.v1.Users, interval: 2s, timeout: 1s, rise: 1, fall: 2}",
        ));
        let hc = c.upstreams[0].health_check.clone().expect("health check");
        assert_eq!(
            hc.kind,
            CheckKind::Grpc {
                service: "pkg.v1.Users".into()
            }
        );
        assert_eq!(
            (hc.interval, hc.timeout, hc.rise, hc.fall),
            (Duration::from_secs(2), Duration::from_secs(1), 1, 2)
        );
    }
}
