//! The `/status` document: version, uptime, the config file and hash, every upstream group
//! with its backends' state, counters, latency and last health check, and the routes and
//! listeners ([`super::overview`]).

use super::overview::{ListenerView, Overview, RouteView};
use crate::balancer::check_record::LastCheck;
use crate::balancer::UpstreamGroup;
use crate::proxy::ProxyState;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// fulcrum's version.
    pub version: &'static str,
    /// Seconds since this process started serving.
    pub uptime_seconds: f64,
    /// The config file and its hash; `null` when none was recorded (library use).
    pub config: Option<ConfigStatus>,
    /// Upstream groups by name.
    pub upstreams: BTreeMap<String, UpstreamStatus>,
    /// Routes in config order.
    pub routes: Vec<RouteView>,
    /// Listeners in config order.
    pub listeners: Vec<ListenerView>,
}

/// The config this process runs on.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ConfigStatus {
    /// The file as given with `-c`; `null` in quick mode.
    pub file: Option<String>,
    /// The first 16 hex digits of the SHA-256 of its text.
    pub hash: String,
}

/// One upstream group in `/status`.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    /// The selection algorithm.
    pub algorithm: &'static str,
    /// Backends now: static ones in config order, then the others as they joined (by slot).
    pub backends: Vec<BackendStatus>,
}

/// One backend in `/status`.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    /// Address.
    pub addr: String,
    /// Weight (the source's, or the runtime API's).
    pub weight: u32,
    /// `enabled`, `drain` or `disabled` (runtime API).
    pub state: &'static str,
    /// Where it came from: `static`, `dns`, `file` or `api`.
    pub source: &'static str,
    /// While ramping up over `slow_start`: how far (0 to 1); absent at full weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<f64>,
    /// The active health check passes (always true without health checks).
    pub healthy: bool,
    /// The circuit breaker has ejected it (open, or half-open awaiting its trial).
    pub ejected: bool,
    /// May take traffic now: healthy and not ejected.
    pub available: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Attempts sent since start.
    pub requests: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Times the circuit breaker ejected it.
    pub ejections: u64,
    /// Latency over the most recent requests (see `latency_window`).
    pub latency_ms: LatencyStatus,
    /// The last active health check: absent when the group has none, `null` before the
    /// first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Option<CheckStatus>>,
}

/// Latency figures in `/status`.
#[derive(Debug, Serialize)]
pub struct LatencyStatus {
    /// Requests the figures cover (the most recent, up to 512).
    pub samples: usize,
    /// Mean, milliseconds.
    pub mean: f64,
    /// Median, milliseconds.
    pub p50: f64,
    /// 99th percentile, milliseconds.
    pub p99: f64,
}

/// A backend's last active health check in `/status`.
#[derive(Debug, Serialize, PartialEq)]
pub struct CheckStatus {
    /// When it started, seconds since the Unix epoch.
    pub last_at_unix: f64,
    /// How long it took, milliseconds.
    pub last_duration_ms: f64,
    /// Why it failed; `null` when it passed.
    pub last_error: Option<String>,
}

impl From<LastCheck> for CheckStatus {
    fn from(c: LastCheck) -> Self {
        CheckStatus {
            last_at_unix: c.at_unix,
            last_duration_ms: c.duration.as_secs_f64() * 1000.0,
            last_error: c.error,
        }
    }
}

fn group_status(g: &UpstreamGroup) -> UpstreamStatus {
    let checked = g.config.health_check.is_some();
    let members = g.members();
    let backends = members
        .iter()
        .filter_map(|m| {
            let i = m.slot();
            let b = &m.backend;
            let s = g.stats.get(i)?;
            let latency = s.latency();
            Some(BackendStatus {
                addr: b.addr.to_string(),
                weight: b.weight,
                state: s.state().name(),
                source: m.source.name(),
                slow_start: s.ramp(),
                healthy: s.is_healthy(),
                ejected: s.is_ejected(),
                available: s.is_ready(),
                in_flight: g.stats.in_flight(i),
                requests: g.stats.requests(i),
                failures: s.failures(),
                ejections: s.ejections(),
                latency_ms: LatencyStatus {
                    samples: latency.samples,
                    mean: latency.mean_ms,
                    p50: latency.p50_ms,
                    p99: latency.p99_ms,
                },
                health_check: checked.then(|| s.last_check().map(CheckStatus::from)),
            })
        })
        .collect();
    UpstreamStatus {
        algorithm: g.config.algorithm.name(),
        backends,
    }
}

/// Build the status document.
pub fn status(state: &ProxyState, started: Instant, overview: &Overview) -> Status {
    let config = crate::config::source::loaded().map(|c| ConfigStatus {
        file: c.path.as_ref().map(|p| p.display().to_string()),
        hash: c.hash.clone(),
    });
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: started.elapsed().as_secs_f64(),
        config,
        upstreams: state
            .groups
            .iter()
            .map(|g| (g.config.name.clone(), group_status(g)))
            .collect(),
        routes: overview.routes_now(state),
        listeners: overview.listeners().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_check_reads_in_seconds_and_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(2_250);
        let c = CheckStatus::from(LastCheck::new(at, Duration::from_micros(1500), None));
        assert_eq!(
            serde_json::to_value(&c).expect("serializes"),
            serde_json::json!({"last_at_unix": 2.25, "last_duration_ms": 1.5, "last_error": null})
        );
    }

    #[test]
    fn health_check_is_absent_without_checks_and_null_before_the_first() {
        let spec = crate::config::parse_yaml(
            "listeners:\n  - addr: 127.0.0.1:8080\n\
             upstreams:\n  a:\n    backends:\n      - addr: 127.0.0.1:3000\n  \
             b:\n    backends:\n      - addr: 127.0.0.1:3001\n    health_check: {interval: 1s}\n\
             routes:\n  - {path: /, upstream: a}\n  - {path: /b, upstream: b}\n",
        )
        .expect("parses");
        let config = crate::config::validate::validate(&spec).expect("valid");
        let state = ProxyState::new(&config);
        let doc = serde_json::to_value(status(&state, Instant::now(), &Overview::of(&config)))
            .expect("serializes");
        let a = &doc["upstreams"]["a"]["backends"][0];
        let b = &doc["upstreams"]["b"]["backends"][0];
        assert!(a.get("health_check").is_none(), "{a}");
        assert_eq!(b["health_check"], serde_json::Value::Null, "{b}");
        assert!(b.as_object().unwrap().contains_key("health_check"));
        assert_eq!(a["latency_ms"]["p50"], 0.0);
        assert_eq!(doc["routes"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["listeners"][0]["addr"], "127.0.0.1:8080");
    }
}
