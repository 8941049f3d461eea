//! Active health checks: one Pingora background service per upstream group that has them.
//!
//! The checks themselves are pingora-load-balancing's where they fit: [`TcpHealthCheck`], and
//! [`HttpHealthCheck`] with a validator for the expected statuses when `host` is configured;
//! a check that needs a body substring or a `Host` per backend goes through Pingora's HTTP
//! connector ([`BodyCheck`]); `type: grpc` calls the standard gRPC health service
//! ([`grpc::GrpcCheck`]). The verdicts
//! go to the group's stats table, which selection reads without locks.
//!
//! State machine per backend: every backend starts healthy (as in Pingora and HAProxy). The
//! first check's verdict applies at once, so a backend that is down at start-up is taken out
//! after one interval at most, not after `fall` of them; from then on `fall` consecutive
//! failures make a healthy backend unhealthy and `rise` consecutive passes bring it back. Each
//! change is logged once (a backend going down at warn level, coming back at info) with the upstream, the backend and the reason. A
//! backend that becomes healthy also has its circuit breaker closed: the check just saw it
//! come back, which is better evidence than waiting out a cooldown.
//!
//! The service reports ready to Pingora after its first round, and the proxy services depend
//! on it, so a starting (or upgrading) process serves no traffic before it knows which
//! backends are up.

use crate::balancer::check_record::LastCheck;
use crate::balancer::{Member, UpstreamGroup};
use crate::config::model::{CheckKind, HealthCheck as CheckConfig, Upstream};
use async_trait::async_trait;
use pingora_core::connectors::http::Connector as HttpConnector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod grpc;
pub mod grpc_wire;
pub mod metrics;

/// Fails unless the status is in one of the ranges.
fn check_status(resp: &ResponseHeader, expect: &[RangeInclusive<u16>]) -> Result<()> {
    let status = resp.status.as_u16();
    if expect.iter().any(|r| r.contains(&status)) {
        Ok(())
    } else {
        let expected: Vec<String> = expect
            .iter()
            .map(|r| match r.start() == r.end() {
                true => r.start().to_string(),
                false => format!("{}-{}", r.start(), r.end()),
            })
            .collect();
        Error::e_explain(
            ErrorType::CustomCode("unexpected status", status),
            format!("status {status}, expected {}", expected.join(", ")),
        )
    }
}

/// An HTTP check for what pingora's `HttpHealthCheck` cannot express: a required body
/// substring, or a `Host` header that names each backend (pingora's sends one request for
/// all backends, and a request without `Host` is a 400 for servers like nginx).
pub struct BodyCheck {
    connector: HttpConnector,
    peer_template: HttpPeer,
    req: RequestHeader,
    expect_status: Vec<RangeInclusive<u16>>,
    expect_body: Option<String>,
    /// Send `Host: <backend address>` (no `host` configured).
    host_per_backend: bool,
}

/// Responses bigger than this fail a body check (nobody's health page is that big).
const MAX_BODY: usize = 64 * 1024;

#[async_trait]
impl HealthCheck for BodyCheck {
    fn health_threshold(&self, _success: bool) -> usize {
        1
    }

    async fn check(&self, target: &Backend) -> Result<()> {
        let mut peer = self.peer_template.clone();
        peer._address = target.addr.clone();
        let (mut session, _) = self.connector.get_http_session(&peer).await?;
        let mut req = self.req.clone();
        if self.host_per_backend {
            let _ = req.insert_header("host", target.addr.to_string());
        }
        session.write_request_header(Box::new(req)).await?;
        session.finish_request_body().await?;
        session.set_read_timeout(peer.options.read_timeout);
        session.read_response_header().await?;
        if let Some(resp) = session.response_header() {
            check_status(resp, &self.expect_status)?;
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await? {
            if self.expect_body.is_some() && body.len() <= MAX_BODY {
                body.extend_from_slice(&chunk);
            }
        }
        let Some(expect_body) = &self.expect_body else {
            return Ok(());
        };
        let needle = expect_body.as_bytes();
        if body.windows(needle.len()).any(|w| w == needle) {
            Ok(())
        } else {
            Error::e_explain(
                ErrorType::Custom("body mismatch"),
                format!("response body does not contain {expect_body:?}"),
            )
        }
    }
}

/// Build pingora's checker for a group.
fn checker(upstream: &Upstream, cfg: &CheckConfig) -> Box<dyn HealthCheck + Send + Sync> {
    // A checker has one server name for all backends: the group's `sni`, or else the first
    // backend's name, with the name check off (the chain is still verified).
    let (tls, sni) = match (&upstream.tls, upstream.backends.first()) {
        (Some(t), Some(b)) => (true, crate::peer::server_name(t, b)),
        (Some(t), None) => (true, t.sni.clone()),
        (None, _) => (false, String::new()),
    };
    let name_checked = upstream.tls.as_ref().is_some_and(|t| !t.sni.is_empty());
    match &cfg.kind {
        CheckKind::Tcp => {
            let mut check = if tls {
                TcpHealthCheck::new_tls(&sni)
            } else {
                TcpHealthCheck::new()
            };
            check.peer_template.options.connection_timeout = Some(cfg.timeout);
            if let Some(t) = &upstream.tls {
                crate::peer::apply_tls(&mut check.peer_template.options, t);
                check.peer_template.options.verify_hostname &= name_checked;
            }
            check
        }
        CheckKind::Grpc { service } => {
            let mut peer = HttpPeer::new("0.0.0.0:1", tls, sni.clone());
            if let Some(t) = &upstream.tls {
                crate::peer::apply_tls(&mut peer.options, t);
                peer.options.verify_hostname &= name_checked;
            }
            Box::new(grpc::GrpcCheck::new(peer, service, sni, cfg.timeout))
        }
        CheckKind::Http {
            method,
            path,
            host,
            expect_status,
            expect_body,
        } => {
            let Ok(mut req) = RequestHeader::build(method.clone(), path.as_bytes(), None) else {
                // Validation accepted method and path, so this cannot happen; stay useful.
                log::warn!(
                    "upstream {}: cannot build the health-check request; checking TCP only",
                    upstream.name
                );
                return TcpHealthCheck::new();
            };
            let host = host.clone().unwrap_or_default();
            if !host.is_empty() {
                let _ = req.insert_header("host", host.as_str());
            }
            let _ = req.insert_header("user-agent", "fulcrum-health-check");
            let mut peer = HttpPeer::new("0.0.0.0:1", tls, sni);
            peer.options.connection_timeout = Some(cfg.timeout);
            peer.options.read_timeout = Some(cfg.timeout);
            peer.options.write_timeout = Some(cfg.timeout);
            if let Some(t) = &upstream.tls {
                crate::peer::apply_tls(&mut peer.options, t);
                peer.options.verify_hostname &= name_checked;
            }
            crate::peer::apply_protocol(&mut peer.options, &upstream.protocol);
            match (expect_body, host.is_empty()) {
                (Some(_), _) | (None, true) => Box::new(BodyCheck {
                    connector: HttpConnector::new(None),
                    peer_template: peer,
                    req,
                    expect_status: expect_status.clone(),
                    expect_body: expect_body.clone(),
                    host_per_backend: host.is_empty(),
                }),
                (None, false) => {
                    let mut check = HttpHealthCheck::new(&host, tls);
                    check.peer_template = peer;
                    check.req = req;
                    let expect = expect_status.clone();
                    check.validator = Some(Box::new(move |resp| check_status(resp, &expect)));
                    Box::new(check)
                }
            }
        }
    }
}

/// A short reason for a failed check: Pingora's errors carry the whole peer in their
/// context, which makes a health log line a screenful.
fn reason(e: &Error) -> String {
    const MAX: usize = 200;
    let full = match (&e.cause, &e.context) {
        // fulcrum's own verdicts (status, body) say it all in their context.
        (None, Some(context)) => context.as_str().to_string(),
        (None, None) => e.etype().as_str().to_string(),
        (Some(_), _) => format!("{}: {}", e.etype().as_str(), e.root_cause()),
    };
    match full.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &full[..cut]),
        None => full,
    }
}

/// Per-slot progress of the rise/fall state machine.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    /// The backend this streak is about (a slot may go to another backend).
    addr: Option<std::net::SocketAddr>,
    checked: bool,
    /// Consecutive verdicts that disagree with the current state.
    against: u32,
}

/// The health-check background service of one upstream group.
pub struct HealthService {
    group: Arc<UpstreamGroup>,
    check: Box<dyn HealthCheck + Send + Sync>,
    config: CheckConfig,
    streaks: Mutex<Vec<Streak>>,
}

impl HealthService {
    /// The service for a group, if it has health checks configured.
    pub fn for_group(group: &Arc<UpstreamGroup>) -> Option<Self> {
        let cfg = group.config.health_check.clone()?;
        metrics::register(&group.config.name);
        Some(HealthService {
            check: checker(&group.config, &cfg),
            streaks: Mutex::new(vec![Streak::default(); group.stats.capacity()]),
            config: cfg,
            group: group.clone(),
        })
    }

    /// The name of the group this service checks.
    pub fn upstream_name(&self) -> &str {
        &self.group.config.name
    }

    /// Check every backend once, concurrently, and apply the verdicts.
    pub async fn run_round(&self) {
        self.check_members(false).await;
    }

    /// Check the backends of the current snapshot (only those never checked, with
    /// `only_new`), concurrently, and apply the verdicts.
    async fn check_members(&self, only_new: bool) {
        let members = self.group.members();
        let targets: Vec<&Member> = {
            let streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
            members
                .iter()
                .filter(|m| {
                    !only_new
                        || streaks
                            .get(m.slot())
                            .is_none_or(|s| s.addr != Some(m.backend.addr) || !s.checked)
                })
                .collect()
        };
        let timeout = self.config.timeout + Duration::from_millis(100);
        let checks = targets.iter().map(|m| async move {
            let target = Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(m.backend.addr),
                weight: m.backend.weight as usize,
                ext: Default::default(),
            };
            let (at, started) = (std::time::SystemTime::now(), std::time::Instant::now());
            let verdict = match tokio::time::timeout(timeout, self.check.check(&target)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(reason(&e)),
                Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
            };
            let took = started.elapsed();
            (verdict, LastCheck::new(at, took, None))
        });
        let verdicts = futures::future::join_all(checks).await;
        let upstream = &self.group.config.name;
        // A backend removed during the check may have left its slot to another: its
        // record would be misattributed.
        let now = self.group.members();
        for (m, (verdict, mut last)) in targets.iter().zip(verdicts) {
            metrics::observe(upstream, last.duration);
            last.error = verdict.as_ref().err().cloned();
            let same = now
                .find(m.backend.addr)
                .is_some_and(|n| n.slot() == m.slot());
            if let (true, Some(stats)) = (same, self.group.stats.get(m.slot())) {
                stats.record_check(last);
            }
            self.apply(m, verdict);
        }
    }

    fn apply(&self, member: &Member, verdict: std::result::Result<(), String>) {
        let i = member.slot();
        let Some(stats) = self.group.stats.get(i) else {
            return;
        };
        let mut streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        let Some(streak) = streaks.get_mut(i) else {
            return;
        };
        if streak.addr != Some(member.backend.addr) {
            *streak = Streak {
                addr: Some(member.backend.addr),
                ..Streak::default()
            };
        }
        let passed = verdict.is_ok();
        let healthy = stats.is_healthy();
        let flip = if !streak.checked {
            streak.checked = true;
            passed != healthy
        } else if passed == healthy {
            streak.against = 0;
            false
        } else {
            streak.against += 1;
            streak.against
                >= if passed {
                    self.config.rise
                } else {
                    self.config.fall
                }
        };
        if !flip {
            return;
        }
        streak.against = 0;
        stats.set_healthy(passed);
        if passed {
            stats.reset_breaker();
            if let (Some(window), true) = (self.group.config.slow_start, self.group.is_serving()) {
                stats.start_ramp(window);
            }
        }
        let addr = member.backend.addr;
        let upstream = &self.group.config.name;
        // Down at WARN (it must show with RUST_LOG=warn), back up at INFO.
        match verdict {
            Ok(()) => {
                log::info!("upstream {upstream}: backend {addr} is healthy (health check passed)")
            }
            Err(reason) => {
                log::warn!("upstream {upstream}: backend {addr} is unhealthy ({reason})")
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.run_round().await;
        ready.notify_ready();
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = ticker.tick() => self.run_round().await,
                // Backends that join are checked at once: they take traffic after a pass.
                _ = self.group.joined.notified() => self.check_members(true).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_status_reads_as_one_short_reason() {
        let resp = ResponseHeader::build(503, None).unwrap();
        let e = check_status(&resp, &[200..=399, 404..=404]).unwrap_err();
        assert_eq!(reason(&e), "status 503, expected 200-399, 404");
        let ok = ResponseHeader::build(204, None).unwrap();
        assert!(check_status(&ok, &[200..=399]).is_ok());
    }
}
