//! What the proxy reads while serving: [`ProxyState`], shared by every listener, built once
//! from the validated config, and [`ListenerInfo`], what one listener adds to it.

use super::context::RequestCtx;
use super::mirror::RouteMirror;
use crate::balancer::UpstreamGroup;
use crate::cache::metrics::CacheCounters;
use crate::cache::Cache;
use crate::compress::RouteCompressor;
use crate::config::model::Destination;
use crate::config::model::{Config, Forwarding, Limits, Listener, Route, RouteRateLimit};
use crate::limits::rate::RateLimiter;
use crate::limits::slots::BackendSlots;
use crate::metrics::RequestMetrics;
use crate::routing::split::Splitter;
use crate::routing::Router;
use std::sync::Arc;

/// Everything the proxy reads while serving requests; built once from the validated config.
pub struct ProxyState {
    /// Routes in config order.
    pub routes: Vec<Route>,
    /// Route lookup tables.
    pub router: Router,
    /// Upstream groups, indexed like the config's upstreams (shared with the metrics
    /// collector, discovery and the runtime API).
    pub groups: Vec<Arc<UpstreamGroup>>,
    /// Forwarding-header policy.
    pub forwarding: Forwarding,
    /// Per-request metric handles.
    pub(super) metrics: RequestMetrics,
    /// Limits on client requests.
    pub limits: Limits,
    /// Per route: the rate limiter it applies (the top-level one shared, or its own).
    pub(super) rate_limiters: Vec<Option<Arc<RateLimiter>>>,
    /// Per group: backend slots, for groups with `max_connections`.
    pub(super) slots: Vec<Option<Arc<BackendSlots>>>,
    /// Per route: the side chooser of a `split` route.
    pub splitters: Vec<Option<Splitter>>,
    /// Per route: its mirror (`mirror:`), with its sampler and counters.
    pub(super) mirrors: Vec<Option<Arc<RouteMirror>>>,
    /// The response cache, when a route caches.
    pub cache: Option<&'static Cache>,
    /// Per caching route: requests by what the cache did.
    pub(super) cache_counters: CacheCounters,
    /// Per route: its response compression (`compression:`), with its counters.
    pub(crate) compression: Vec<Option<RouteCompressor>>,
}

impl ProxyState {
    /// Build selectors, routing tables and peers.
    pub fn new(config: &Config) -> Self {
        let groups: Vec<Arc<UpstreamGroup>> = config
            .upstreams
            .iter()
            .cloned()
            .map(|u| Arc::new(UpstreamGroup::new(u)))
            .collect();
        crate::metrics::register_groups(groups.clone());
        let shared_limiter = config
            .rate_limit
            .as_ref()
            .map(|r| Arc::new(RateLimiter::new(r)));
        let rate_limiters = config
            .routes
            .iter()
            .map(|r| match &r.rate_limit {
                RouteRateLimit::Inherit => shared_limiter.clone(),
                RouteRateLimit::Off => None,
                RouteRateLimit::Own(limit) => Some(Arc::new(RateLimiter::new(limit))),
            })
            .collect();
        let slots = config
            .upstreams
            .iter()
            .map(|u| {
                u.backend_limit
                    .clone()
                    .map(|l| BackendSlots::new(l, u.capacity()))
            })
            .collect();
        let splitters = config
            .routes
            .iter()
            .map(|r| match &r.destination {
                Destination::Upstream(_) => None,
                Destination::Split(split) => {
                    let names: Vec<&str> = split
                        .sides
                        .iter()
                        .map(|s| config.upstreams[s.upstream].name.as_str())
                        .collect();
                    Some(Splitter::new(
                        &names,
                        split.sides.iter().map(|s| s.weight).collect(),
                    ))
                }
            })
            .collect();
        let caching = config.routes.iter().any(|r| r.cache.is_some());
        let cache = caching.then(|| Cache::new(&config.cache));
        if let Some(c) = cache {
            crate::cache::metrics::register_usage(c);
        }
        let labels: Vec<Option<String>> = (0..config.routes.len())
            .map(|i| {
                config.routes[i]
                    .cache
                    .as_ref()
                    .map(|_| crate::metrics::route_label(config, i))
            })
            .collect();
        ProxyState {
            cache,
            cache_counters: CacheCounters::new(&labels),
            splitters,
            mirrors: RouteMirror::for_routes(config),
            compression: RouteCompressor::for_routes(config),
            limits: config.limits.clone(),
            rate_limiters,
            slots,
            metrics: RequestMetrics::new(config),
            routes: config.routes.clone(),
            router: Router::new(&config.routes),
            groups,
            forwarding: config.forwarding.clone(),
        }
    }

    /// The request's route, once `request_filter` matched one.
    pub fn route(&self, ctx: &RequestCtx) -> Option<&Route> {
        ctx.route.and_then(|i| self.routes.get(i))
    }

    /// The upstream group serving the request (see [`RequestCtx::upstream`]).
    pub fn group(&self, ctx: &RequestCtx) -> Option<&UpstreamGroup> {
        ctx.upstream.map(|g| &*self.groups[g])
    }
}

/// What a proxy service knows about the listener it serves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerInfo {
    /// The listener serves HTTPS.
    pub tls: bool,
    /// Redirect every request to HTTPS.
    pub redirect_to_https: bool,
    /// Port of the HTTPS listener redirects go to.
    pub https_port: Option<u16>,
}

impl ListenerInfo {
    /// What the proxy service of `listener` knows, `listeners` being all of them: plain
    /// listeners redirect to the first HTTPS listener's port.
    pub fn of(listener: &Listener, listeners: &[Listener]) -> Self {
        ListenerInfo {
            tls: listener.tls.is_some(),
            redirect_to_https: listener.redirect_to_https,
            https_port: listeners
                .iter()
                .find(|l| l.tls.is_some())
                .map(|l| l.addr.port()),
        }
    }
}
