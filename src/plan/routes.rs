//! Routes added, removed and changed between two configs.
//!
//! A route is known by its `name` when it has one, else by its host, path and `match:`
//! conditions (what the router tells routes apart by). Its destination is compared by group
//! names, so a group renamed in both places, or sides listed in another order, is no change.

use super::movement::{key_text, split_shift, Shift, Target};
use crate::config::model::{Destination, HeaderEdits, HostMatch, Route, RouteRateLimit};
use crate::config::Config;
use std::collections::BTreeMap;

/// What happened to one route.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteChange {
    /// Only in the new config.
    Added {
        /// The route, as the plan names it.
        id: String,
        /// Where it sends requests.
        destination: String,
    },
    /// Only in the old config.
    Removed {
        /// The route, as the plan names it.
        id: String,
        /// Where it sent requests.
        destination: String,
    },
    /// In both, with differences.
    Changed {
        /// The route, as the plan names it.
        id: String,
        /// Old and new destination, when the destination changes ("re-pointed").
        repointed: Option<(String, String)>,
        /// The share of split keys that go to another side.
        shift: Option<Shift>,
        /// Other settings that change, briefly.
        other: Vec<String>,
    },
}

/// How the plan names a route: `"name"`, or host and path with its conditions.
pub fn route_id(r: &Route) -> String {
    if let Some(name) = &r.name {
        return format!("\"{name}\"");
    }
    let mut id = match &r.host {
        HostMatch::Any => r.path.clone(),
        HostMatch::Exact(h) => format!("{h}{}", r.path),
        HostMatch::Suffix(s) => format!("*{s}{}", r.path),
    };
    let m = &r.matchers;
    let mut conditions = Vec::new();
    if !m.methods.is_empty() {
        let mut methods: Vec<&str> = m.methods.iter().map(|m| m.as_str()).collect();
        methods.sort_unstable();
        methods.dedup();
        conditions.push(format!("methods={}", methods.join(",")));
    }
    for (name, value) in &m.headers {
        conditions.push(format!("header {name}={}", value.text()));
    }
    for (name, value) in &m.query {
        conditions.push(format!("query {name}={}", value.text()));
    }
    if !conditions.is_empty() {
        id.push_str(&format!(" [{}]", conditions.join("; ")));
    }
    id
}

/// The route's destination with group names.
pub fn target(config: &Config, r: &Route) -> Target {
    let name = |g: usize| config.upstreams[g].name.clone();
    match &r.destination {
        Destination::Upstream(g) => Target::One(name(*g)),
        Destination::Split(s) => Target::Split(
            s.sides
                .iter()
                .map(|s| (name(s.upstream), s.weight))
                .collect(),
            s.key.clone(),
        ),
    }
}

/// A destination in words: `upstream api`, `split v1 90, v2 10 by header:x-user`.
pub fn describe(t: &Target) -> String {
    match t {
        Target::One(name) => format!("upstream {name}"),
        Target::Split(sides, key) => {
            let sides: Vec<String> = sides.iter().map(|(n, w)| format!("{n} {w}")).collect();
            match key {
                Some(k) => format!("split {} by {}", sides.join(", "), key_text(k)),
                None => format!("split {} per request", sides.join(", ")),
            }
        }
    }
}

/// Whether two destinations send every request the same way: the same group, or the same
/// sides and weights (in any order) and the same key.
fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Split(x, kx), Target::Split(y, ky)) => {
            let sorted = |s: &[(String, u32)]| {
                let mut s = s.to_vec();
                s.sort();
                s
            };
            kx == ky && sorted(x) == sorted(y)
        }
        _ => a == b,
    }
}

fn edits_text(e: &HeaderEdits) -> String {
    format!("{:?}", (&e.remove, &e.set, &e.add))
}

/// The settings besides the destination that differ, by key name.
fn other_changes(old: (&Config, &Route), new: (&Config, &Route)) -> Vec<String> {
    let (oc, o) = old;
    let (nc, n) = new;
    let mut out = Vec::new();
    let mut check = |what: &str, same: bool| {
        if !same {
            out.push(what.to_string());
        }
    };
    let rewrite = |r: &Route| {
        r.rewrite
            .as_ref()
            .map(|w| (w.regex.as_str().to_string(), w.to.clone()))
    };
    check("rewrite", rewrite(o) == rewrite(n));
    let mirror = |c: &Config, r: &Route| {
        r.mirror.as_ref().map(|m| {
            (
                c.upstreams[m.upstream].name.clone(),
                m.percent.to_bits(),
                m.max_body_bytes,
            )
        })
    };
    check("mirror", mirror(oc, o) == mirror(nc, n));
    check("strip_prefix", o.strip_prefix == n.strip_prefix);
    check(
        "redirect_to_https",
        o.redirect_to_https == n.redirect_to_https,
    );
    check(
        "headers.request",
        edits_text(&o.request_headers) == edits_text(&n.request_headers),
    );
    check(
        "headers.response",
        edits_text(&o.response_headers) == edits_text(&n.response_headers),
    );
    check("max_body_bytes", o.max_body_bytes == n.max_body_bytes);
    check(
        "request_buffering",
        o.request_buffering == n.request_buffering,
    );
    let rate = |c: &Config, r: &Route| match &r.rate_limit {
        RouteRateLimit::Inherit => format!("{:?}", c.rate_limit),
        other => format!("{other:?}"),
    };
    check("rate_limit", rate(oc, o) == rate(nc, n));
    check("cache", o.cache == n.cache);
    check("compression", o.compression == n.compression);
    // Parts of a named route's identity (an unnamed route is known by them).
    check("host", o.host == n.host);
    check("match", o.matchers.same_as(&n.matchers));
    check("path", o.path == n.path);
    out
}

/// Routes keyed by their plan names; a second route with the same name gets `#2`, and so on.
fn by_id(config: &Config) -> BTreeMap<String, &Route> {
    let mut out = BTreeMap::new();
    for r in &config.routes {
        let id = route_id(r);
        let mut key = id.clone();
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{id} #{n}");
        }
        out.insert(key, r);
    }
    out
}

/// The route changes from `old` to `new`, in the order: removed, added, changed (each sorted
/// by name).
pub fn diff(old: &Config, new: &Config) -> Vec<RouteChange> {
    let (before, after) = (by_id(old), by_id(new));
    let mut out = Vec::new();
    for (id, r) in &before {
        if !after.contains_key(id) {
            out.push(RouteChange::Removed {
                id: id.clone(),
                destination: describe(&target(old, r)),
            });
        }
    }
    for (id, r) in &after {
        if !before.contains_key(id) {
            out.push(RouteChange::Added {
                id: id.clone(),
                destination: describe(&target(new, r)),
            });
        }
    }
    for (id, o) in &before {
        let Some(n) = after.get(id) else { continue };
        let (ot, nt) = (target(old, o), target(new, n));
        let repointed = (!same_target(&ot, &nt)).then(|| (describe(&ot), describe(&nt)));
        let shift = repointed.as_ref().and_then(|_| split_shift(&ot, &nt));
        let other = other_changes((old, o), (new, n));
        if repointed.is_some() || !other.is_empty() {
            out.push(RouteChange::Changed {
                id: id.clone(),
                repointed,
                shift,
                other,
            });
        }
    }
    out
}
