//! The matched route's side of the story: its split side, destination and policies, and the
//! head the proxy would send upstream.

use super::describe;
use super::report::{Detail, Outcome};
use crate::config::model::{Config, Destination, Route};
use crate::proxy::admission::Admission;
use crate::proxy::head::Head;
use crate::proxy::{forwarding, hash_key, header_rules, host, request_id, ProxyState};
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// How a request's split side is chosen.
pub(super) enum SideChoice {
    /// The route has one upstream.
    NotSplit,
    /// By the request's split key: the same side for the same key while the weights stay.
    Deterministic,
    /// By weighted turns; the text says why (no key configured, or the request lacks it).
    Turns(String),
}

pub(super) fn chosen_side(
    route: &Route,
    req: &RequestHeader,
    client: Option<IpAddr>,
) -> SideChoice {
    let Destination::Split(split) = &route.destination else {
        return SideChoice::NotSplit;
    };
    let Some(key) = &split.key else {
        return SideChoice::Turns("no split_key".into());
    };
    let client = client.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    match hash_key::extract(key, req, client) {
        Some(_) => SideChoice::Deterministic,
        None => SideChoice::Turns(format!("the request has no {}", describe::hash_key(key))),
    }
}

pub(super) fn split_shares(config: &Config, route: &Route) -> String {
    match &route.destination {
        Destination::Split(s) => {
            let sides: Vec<(usize, u32)> = s.sides.iter().map(|x| (x.upstream, x.weight)).collect();
            describe::shares(config, &sides)
        }
        Destination::Upstream(g) => config.upstreams[*g].name.clone(),
    }
}

/// The matched route's destination and policies.
pub(super) fn details(
    config: &Config,
    state: &ProxyState,
    index: usize,
    req: &RequestHeader,
    admission: &Admission,
) -> Vec<Detail> {
    let route = &state.routes[index];
    let mut out = Vec::new();
    let mut add = |key: &'static str, value: String| out.push(Detail { key, value });
    add("matches", {
        let c = describe::conditions(route);
        let base = format!("host {} path {}", describe::host(&route.host), route.path);
        if c.is_empty() {
            base
        } else {
            format!("{base}, {c}")
        }
    });
    add("destination", describe::destination(config, route));
    if let Admission::Proceed {
        upstream, client, ..
    } = admission
    {
        match chosen_side(route, req, Some(*client)) {
            SideChoice::NotSplit => {}
            SideChoice::Deterministic => {
                let Destination::Split(split) = &route.destination else {
                    unreachable!("a deterministic side is a split's")
                };
                let key = split.key.as_ref().expect("a keyed split");
                let value = hash_key::extract(key, req, *client)
                    .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
                    .unwrap_or_default();
                let value = match key {
                    crate::config::model::HashKey::ClientIp => client.to_string(),
                    _ => format!("{value:?}"),
                };
                add(
                    "split side",
                    format!(
                        "{} (split_key {} = {value}: every request with this key goes there \
                         while the weights stay)",
                        config.upstreams[*upstream].name,
                        describe::hash_key(key)
                    ),
                );
            }
            SideChoice::Turns(why) => add(
                "split side",
                format!("weighted turn ({why}): {}", split_shares(config, route)),
            ),
        }
    }
    let changes = describe::path_changes(route);
    match admission {
        Admission::Proceed { path, .. } => {
            let sent = path.clone().unwrap_or_else(|| req.uri.path().to_string());
            let sent = match req.uri.query() {
                Some(q) => format!("{sent}?{q}"),
                None => sent,
            };
            let how = if changes.is_empty() {
                "unchanged".to_string()
            } else {
                changes
            };
            add("upstream path", format!("{sent} ({how})"));
        }
        _ if !changes.is_empty() => add("path changes", changes),
        _ => {}
    }
    add("request headers", describe::edits(&route.request_headers));
    add("forwarding", forwarding_summary(state));
    add("response headers", {
        let mut extra = Vec::new();
        if state.forwarding.via {
            extra.push(format!("Via: {}", forwarding::VIA));
        }
        if let Some(h) = &state.forwarding.served_by_header {
            extra.push(format!("{h}: <backend address>"));
        }
        extra.push("x-request-id".to_string());
        format!(
            "{} (fulcrum adds {})",
            describe::edits(&route.response_headers),
            extra.join(", ")
        )
    });
    add(
        "redirect_to_https",
        if route.redirect_to_https {
            "yes: on plain-HTTP listeners, 308 to the same URL over HTTPS".to_string()
        } else {
            "no".to_string()
        },
    );
    add("rate limit", describe::rate_limit(config, route));
    add("body limit", describe::body_limit(route));
    add("request buffering", describe::buffering(route));
    add(
        "mirror",
        describe::mirror(config, route).unwrap_or_else(|| "none".into()),
    );
    out
}

/// Which forwarding headers fulcrum sets, per `forwarding:`.
fn forwarding_summary(state: &ProxyState) -> String {
    let f = &state.forwarding;
    let mut on = Vec::new();
    for (set, name) in [
        (f.x_forwarded_for, "X-Forwarded-For"),
        (f.x_forwarded_proto, "X-Forwarded-Proto"),
        (f.x_forwarded_host, "X-Forwarded-Host"),
        (f.forwarded, "Forwarded"),
        (f.via, "Via"),
    ] {
        if set {
            on.push(name);
        }
    }
    on.push("X-Request-Id");
    let trusted = if f.trusted_proxies.is_empty() {
        "no trusted proxies: clients' own forwarding headers are replaced".to_string()
    } else {
        let nets: Vec<String> = f.trusted_proxies.iter().map(|n| n.to_string()).collect();
        format!("chains from {} are extended", nets.join(", "))
    };
    format!("sets {} ({trusted})", on.join(", "))
}

/// The head sent upstream: the request line, then the fields as the proxy rewrites them
/// (forwarding headers, request id, then the route's own edits).
pub(super) fn upstream_head(
    state: &ProxyState,
    route: &Route,
    req: &RequestHeader,
    peer: IpAddr,
    tls: bool,
    outcome: &Outcome,
) -> Vec<String> {
    let Outcome::Proxied { path, .. } = outcome else {
        return Vec::new();
    };
    let mut fields = req.headers.clone();
    let proto = if tls { "https" } else { "http" };
    let head: &mut dyn Head = &mut fields;
    let all = crate::proxy::survey::Present::ALL;
    forwarding::apply(&state.forwarding, head, peer, host::raw(req), proto, all);
    let id = request_id::of(req, all);
    let client_id = req.headers.get(&request_id::HEADER) == Some(&id);
    let shown = if client_id {
        id
    } else {
        http::HeaderValue::from_static("<generated per request>")
    };
    head.set(&request_id::HEADER, shown);
    header_rules::edit(&route.request_headers, head);
    let mut out = vec![format!("{} {path} HTTP/1.1", req.method)];
    for (name, value) in fields.iter() {
        out.push(format!(
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out
}
