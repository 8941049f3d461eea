//! Whether the proxy serves yet, for `/health`.
//!
//! The admin listener starts at once, but the proxy listeners wait for every upstream
//! group's first health-check round. Until the proxy starts, `/health` answers `503`, so a
//! readiness probe (Kubernetes, a load balancer) never passes before the proxy can serve.

use crate::balancer::UpstreamGroup;
use async_trait::async_trait;
use http::StatusCode;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once the proxy services start; shared by the admin app and [`MarkServing`].
#[derive(Debug, Clone, Default)]
pub struct Serving(Arc<AtomicBool>);

impl Serving {
    /// Not serving yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The proxy serves from now on.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the proxy serves.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A background service that sets [`Serving`] when it starts, and only then reports ready:
/// it depends on the health checks, and the proxy services depend on it, so the flag is set
/// before any proxy listener accepts and after the first health-check round. It also tells
/// the groups that they serve: backends that join from now on wait for their first health
/// check and ramp up over `slow_start`.
pub struct MarkServing(pub Serving, pub Vec<Arc<UpstreamGroup>>);

#[async_trait]
impl BackgroundService for MarkServing {
    async fn start_with_ready_notifier(
        &self,
        _shutdown: ShutdownWatch,
        ready_notifier: ServiceReadyNotifier,
    ) {
        for g in &self.1 {
            g.mark_serving();
        }
        self.0.set();
        ready_notifier.notify_ready();
    }
}

/// The `/health` answer: `503` while the proxy does not serve yet or while some group (named
/// in `down`) has no backend that can take traffic, else `200 ok`.
pub fn health_answer(serving: bool, down: &[&str]) -> (StatusCode, String) {
    if !serving {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: waiting for the first health-check round\n".to_string(),
        )
    } else if down.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no healthy backend in: {}\n", down.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_unavailable_until_the_proxy_serves() {
        let serving = Serving::new();
        let clone = serving.clone();
        let (status, body) = health_answer(serving.is_set(), &[]);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "starting: waiting for the first health-check round\n");
        clone.set();
        assert!(serving.is_set(), "clones share the flag");
        assert_eq!(
            health_answer(serving.is_set(), &[]),
            (StatusCode::OK, "ok\n".to_string())
        );
    }

    #[test]
    fn health_names_the_groups_without_a_backend() {
        assert_eq!(
            health_answer(true, &["api", "web"]),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy backend in: api, web\n".to_string()
            )
        );
        // Starting wins: the groups' state means nothing before the first round.
        assert_eq!(
            health_answer(false, &["api"]).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
