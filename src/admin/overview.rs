//! The config side of `/status`: its routes with their matches, destinations and policies,
//! and its listeners. Built once from the config (a config is loaded once per process; a
//! reload is a new process); only split weights change at run time, and those are read live
//! from the route's splitter ([`Overview::routes_now`]).
//!
//! The policy texts are `fulcrum route`'s ([`crate::explain::describe`]), so the status page
//! and the CLI say the same thing.

use crate::config::model::{Config, Destination, Listener, Route};
use crate::explain::describe;
use crate::proxy::ProxyState;
use serde::Serialize;
use std::collections::BTreeMap;

/// The routes and listeners of the running config.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    routes: Vec<RouteView>,
    listeners: Vec<ListenerView>,
}

/// One route in `/status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteView {
    /// Its index in `routes:`.
    pub index: usize,
    /// Its `name:`, if any.
    pub name: Option<String>,
    /// What the runtime API calls it: the name, else the index.
    pub id: String,
    /// What requests it takes.
    #[serde(rename = "match")]
    pub matches: MatchView,
    /// Where it sends them, as `fulcrum route` says it (`api`, `split 95% a, 5% b by ...`).
    pub destination: String,
    /// The groups it sends to, with their weights (splits) and request policies.
    pub upstreams: Vec<TargetView>,
    /// Its other policies.
    pub policies: PolicyView,
}

/// A route's match.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MatchView {
    /// Hosts it matches (`*` for any, `*.example.com` for a suffix).
    pub hosts: Vec<String>,
    /// Path prefix.
    pub path: String,
    /// Methods; empty for any.
    pub methods: Vec<String>,
    /// Header conditions by name (`*` for present, `~RE` for a regex).
    pub headers: BTreeMap<String, String>,
    /// Query conditions by name, written like `headers`.
    pub query: BTreeMap<String, String>,
}

/// One group a route sends requests to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetView {
    /// The group's name.
    pub upstream: String,
    /// Its split weight now; absent for a route with one group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The group's connect, read and write timeouts, in milliseconds.
    pub timeouts_ms: TimeoutsView,
    /// Backends one request may try (1: no retries).
    pub max_tries: usize,
    /// No retry once a request has been trying this long (milliseconds); absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_try_duration_ms: Option<u64>,
}

/// A group's timeouts in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TimeoutsView {
    /// TCP/TLS connect.
    pub connect: u64,
    /// Each read.
    pub read: u64,
    /// Each write.
    pub write: u64,
}

/// A route's policies beyond its destination.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyView {
    /// Responses are cached.
    pub cache: bool,
    /// Responses are compressed.
    pub compression: bool,
    /// The rate limit, as text (`10 rps, burst 20 per client IP (...)` or `off (...)`).
    pub rate_limit: String,
    /// The body limit, as text.
    pub body_limit: String,
    /// Path changes (`strip_prefix /api`, `rewrite ...`); empty when none.
    pub path_changes: String,
    /// The mirror, as text; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Plain-HTTP requests are redirected to HTTPS.
    pub redirect_to_https: bool,
}

/// One listener in `/status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenerView {
    /// The address it binds.
    pub addr: String,
    /// HTTPS.
    pub tls: bool,
    /// HTTP/2 offered: through ALPN on HTTPS, or prior knowledge (h2c) on plain TCP.
    pub h2: bool,
    /// Every request is redirected to HTTPS.
    pub redirect_to_https: bool,
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn target(config: &Config, upstream: usize, weight: Option<u32>) -> TargetView {
    let u = &config.upstreams[upstream];
    TargetView {
        upstream: u.name.clone(),
        weight,
        timeouts_ms: TimeoutsView {
            connect: ms(u.timeouts.connect),
            read: ms(u.timeouts.read),
            write: ms(u.timeouts.write),
        },
        max_tries: u.max_tries,
        max_try_duration_ms: u.max_try_duration.map(ms),
    }
}

fn route_view(config: &Config, index: usize, route: &Route) -> RouteView {
    let m = &route.matchers;
    let conditions = |list: &[(String, String)]| list.iter().cloned().collect();
    let headers: Vec<(String, String)> = m
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.text().into_owned()))
        .collect();
    let query: Vec<(String, String)> = m
        .query
        .iter()
        .map(|(n, v)| (n.clone(), v.text().into_owned()))
        .collect();
    let upstreams = match &route.destination {
        Destination::Upstream(g) => vec![target(config, *g, None)],
        Destination::Split(s) => s
            .sides
            .iter()
            .map(|side| target(config, side.upstream, Some(side.weight)))
            .collect(),
    };
    RouteView {
        index,
        name: route.name.clone(),
        id: route.name.clone().unwrap_or_else(|| index.to_string()),
        matches: MatchView {
            hosts: vec![describe::host(&route.host)],
            path: route.path.clone(),
            methods: m.methods.iter().map(|x| x.to_string()).collect(),
            headers: conditions(&headers),
            query: conditions(&query),
        },
        destination: describe::destination(config, route),
        upstreams,
        policies: PolicyView {
            cache: route.cache.is_some(),
            compression: route.compression.is_some(),
            rate_limit: describe::rate_limit(config, route),
            body_limit: describe::body_limit(route),
            path_changes: describe::path_changes(route),
            mirror: describe::mirror(config, route),
            redirect_to_https: route.redirect_to_https,
        },
    }
}

fn listener_view(l: &Listener) -> ListenerView {
    ListenerView {
        addr: l.addr.to_string(),
        tls: l.tls.is_some(),
        h2: l.tls.as_ref().map_or(l.h2c, |t| t.h2),
        redirect_to_https: l.redirect_to_https,
    }
}

impl Overview {
    /// The overview of `config`.
    pub fn of(config: &Config) -> Self {
        Overview {
            routes: config
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| route_view(config, i, r))
                .collect(),
            listeners: config.listeners.iter().map(listener_view).collect(),
        }
    }

    /// The listeners.
    pub fn listeners(&self) -> &[ListenerView] {
        &self.listeners
    }

    /// The routes, with split weights as they are now (the runtime API may have changed
    /// them).
    pub fn routes_now(&self, state: &ProxyState) -> Vec<RouteView> {
        let mut routes = self.routes.clone();
        for (i, r) in routes.iter_mut().enumerate() {
            let Some(Some(splitter)) = state.splitters.get(i) else {
                continue;
            };
            for (t, w) in r.upstreams.iter_mut().zip(splitter.weights()) {
                t.weight = Some(w);
            }
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::valid as config;

    #[test]
    fn routes_and_listeners_as_configured() {
        let c = config(
            "listeners:\n  - addr: 127.0.0.1:8080\n    h2c: true\n\
             upstreams:\n  a:\n    backends:\n      - addr: 127.0.0.1:3000\n      - addr: 127.0.0.1:3002\n    \
             max_tries: 2\n    timeouts: {connect: 2s}\n  \
             b:\n    backends:\n      - addr: 127.0.0.1:3001\n\
             routes:\n\
             \x20 - {name: api, host: api.example.com, path: /api, upstream: a, strip_prefix: true, \
             match: {methods: [GET], headers: {x-canary: 'true'}}, rate_limit: off}\n\
             \x20 - {path: /, split: [{upstream: a, weight: 3}, {upstream: b, weight: 1}]}\n",
        );
        let o = Overview::of(&c);
        assert_eq!(
            o.listeners(),
            &[ListenerView {
                addr: "127.0.0.1:8080".into(),
                tls: false,
                h2: true,
                redirect_to_https: false,
            }]
        );
        let api = &o.routes[0];
        assert_eq!(api.id, "api");
        assert_eq!(api.matches.hosts, vec!["api.example.com".to_string()]);
        assert_eq!(api.matches.methods, vec!["GET".to_string()]);
        assert_eq!(api.matches.headers["x-canary"], "true");
        assert_eq!(api.destination, "a");
        assert_eq!(api.upstreams[0].weight, None);
        assert_eq!(api.upstreams[0].max_tries, 2);
        assert_eq!(api.upstreams[0].timeouts_ms.connect, 2000);
        assert_eq!(api.policies.path_changes, "strip_prefix /api");
        assert!(api.policies.rate_limit.starts_with("off"));
        assert!(!api.policies.cache);
        let split = &o.routes[1];
        assert_eq!(split.id, "1");
        assert_eq!(split.matches.hosts, vec!["*".to_string()]);
        let weights: Vec<_> = split.upstreams.iter().map(|t| t.weight).collect();
        assert_eq!(weights, vec![Some(3), Some(1)]);
        let json = serde_json::to_value(split).expect("serializes");
        assert_eq!(json["match"]["path"], "/");
    }
}
