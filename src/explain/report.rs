//! Explaining one request: admission runs as in the proxy, then each route the router tried is
//! given its verdict, and the matched route's destination and policies are spelled out.

use super::describe;
use crate::config::model::{Config, Destination, Route};
use crate::proxy::admission::{admit, Admission};
use crate::proxy::head::Head;
use crate::proxy::{forwarding, hash_key, header_rules, host, request_id, target};
use crate::proxy::{ListenerInfo, ProxyState};
use crate::routing::{conditions, normalize_host, prefix_matches};
use pingora_http::RequestHeader;
use serde::Serialize;
use std::fmt::Write;
use std::net::IpAddr;

/// Exit code when fulcrum would proxy the request.
pub const EXIT_PROXIED: u8 = 0;
/// Exit code when fulcrum would answer the request itself (an error status or a redirect).
pub const EXIT_ANSWERED: u8 = 3;

/// Everything `fulcrum route` says about one request.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The request as given (`GET https://api.example.com/x`).
    pub request: String,
    /// The listener it arrives on (`127.0.0.1:8443 (https)`).
    pub listener: String,
    /// The TCP peer's address (`--client-ip`).
    pub peer: String,
    /// The host routed on (lowercase, no port), if the request has one.
    pub host: Option<String>,
    /// The normalized path routed on, when the target is acceptable.
    pub path: Option<String>,
    /// The path as sent, when normalization changed or refused it.
    pub path_as_sent: Option<String>,
    /// Why no route was looked for, when the request is answered before routing.
    pub not_routed: Option<String>,
    /// The routes tried for the host, in order, with their verdicts.
    pub candidates: Vec<Candidate>,
    /// The routes of other hosts (verdict: the host does not apply).
    pub other_hosts: Vec<Candidate>,
    /// The matched route and its policies.
    pub route: Option<RouteReport>,
    /// The request line and header fields sent upstream, when the request is proxied.
    pub upstream_request: Vec<String>,
    /// What fulcrum does with the request.
    pub outcome: Outcome,
}

/// One route and its verdict for the request.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The route's label (its name, or host and path).
    pub route: String,
    /// The hosts it matches.
    pub host: String,
    /// Its path prefix.
    pub path: String,
    /// Its `match:` conditions, empty when none.
    pub conditions: String,
    /// `matched`, or why not.
    pub verdict: String,
    /// Whether this route serves the request.
    pub matched: bool,
}

/// The matched route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    /// Its label (`crate::metrics::route_label`).
    pub name: String,
    /// Its destination and policies, in print order.
    pub details: Vec<Detail>,
}

/// One line about the matched route.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// What it is about.
    pub key: &'static str,
    /// What it says.
    pub value: String,
}

/// What fulcrum does with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Proxied to a backend of `upstream` (or one side of a split decided per request).
    Proxied {
        /// The group, or the split's shares when each request is chosen on its own.
        upstream: String,
        /// The path and query sent upstream.
        path: String,
    },
    /// Answered by fulcrum with an error status.
    Answered {
        /// The status.
        status: u16,
        /// The body's one line.
        body: String,
    },
    /// Redirected (308) to HTTPS.
    Redirected {
        /// The `Location`.
        location: String,
    },
}

impl Explanation {
    /// The process exit code: [`EXIT_PROXIED`] or [`EXIT_ANSWERED`].
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Proxied { .. } => EXIT_PROXIED,
            _ => EXIT_ANSWERED,
        }
    }
}

/// The listener a request arrives on: one of the kind the scheme names (HTTPS for `https://`,
/// plain otherwise), the one on `port` when there is such a listener, else the first; with a
/// description. Without a listener of that kind, one is assumed (and the description says so).
pub fn choose_listener(config: &Config, tls: bool, port: Option<u16>) -> (ListenerInfo, String) {
    let kind = if tls { "https" } else { "http" };
    let same_kind: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.tls.is_some() == tls)
        .collect();
    let chosen = same_kind
        .iter()
        .find(|l| Some(l.addr.port()) == port)
        .or(same_kind.first());
    match chosen {
        Some(l) => {
            let info = ListenerInfo::of(l, &config.listeners);
            let redirect = if info.redirect_to_https {
                ", redirects every request to HTTPS"
            } else {
                ""
            };
            (info, format!("{} ({kind}{redirect})", l.addr))
        }
        None => {
            let info = ListenerInfo {
                tls,
                redirect_to_https: false,
                https_port: config
                    .listeners
                    .iter()
                    .find(|l| l.tls.is_some())
                    .map(|l| l.addr.port()),
            };
            (
                info,
                format!("none ({kind}: the config has no such listener; assumed)"),
            )
        }
    }
}

/// Explain what fulcrum does with `req` (as a client sends it) from the TCP peer `peer` on
/// `listener` (described by `listener_text`), with `state` built from `config`. `line` is the
/// request as the user gave it.
pub fn explain(
    config: &Config,
    state: &ProxyState,
    line: String,
    (listener, listener_text): (ListenerInfo, String),
    mut req: RequestHeader,
    peer: IpAddr,
) -> Explanation {
    let as_sent = req.uri.path().to_string();
    // The path alone, as the proxy normalizes it (admission reports the error, if any).
    let mut probe = req.clone();
    let path = target::prepare(&mut probe)
        .ok()
        .map(|()| target::route_path(&probe).to_string());
    let admission = admit(state, &listener, &mut req, peer);
    let req = &req;
    let host = host::raw(req).map(|h| normalize_host(h).into_owned());
    let path_as_sent = match &path {
        Some(p) if *p == as_sent || as_sent == "*" => None,
        _ => Some(as_sent.clone()),
    };

    let (routed, matched) = match &admission {
        Admission::Proceed { route, .. } => (true, Some(*route)),
        Admission::Answer { route: Some(r), .. } | Admission::Redirect { route: Some(r), .. } => {
            (true, Some(*r))
        }
        Admission::Answer {
            route: None,
            answer,
        } => (answer.status == 404, None),
        Admission::Redirect { route: None, .. } => (false, None),
    };
    let not_routed = (!routed).then(|| match &admission {
        Admission::Redirect { .. } => {
            "the listener redirects every request to HTTPS before routing".to_string()
        }
        _ => "the request is answered before routing".to_string(),
    });

    let (candidates, other_hosts) = if routed {
        verdicts(config, state, host.as_deref(), req, matched)
    } else {
        (Vec::new(), Vec::new())
    };

    let outcome = match &admission {
        Admission::Proceed {
            upstream,
            path: upstream_path,
            ..
        } => {
            let route = &state.routes[matched.unwrap_or_default()];
            let path = upstream_path
                .clone()
                .unwrap_or_else(|| req.uri.path().to_string());
            let path = match req.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let upstream = match chosen_side(route, req, admission_client(&admission)) {
                SideChoice::Deterministic | SideChoice::NotSplit => {
                    config.upstreams[*upstream].name.clone()
                }
                SideChoice::Turns(_) => {
                    format!("one side per request: {}", split_shares(config, route))
                }
            };
            Outcome::Proxied { upstream, path }
        }
        Admission::Answer { answer, .. } => Outcome::Answered {
            status: answer.status,
            body: answer.body.trim_end().to_string(),
        },
        Admission::Redirect { location, .. } => Outcome::Redirected {
            location: location.clone(),
        },
    };

    let route = matched.map(|i| RouteReport {
        name: crate::metrics::route_label(config, i),
        details: details(config, state, i, req, &admission),
    });
    let upstream_request = match (&admission, matched) {
        (Admission::Proceed { .. }, Some(i)) => {
            upstream_head(state, &state.routes[i], req, peer, listener.tls, &outcome)
        }
        _ => Vec::new(),
    };

    Explanation {
        request: line,
        listener: listener_text,
        peer: peer.to_string(),
        host,
        path,
        path_as_sent,
        not_routed,
        candidates,
        other_hosts,
        route,
        upstream_request,
        outcome,
    }
}

fn admission_client(a: &Admission) -> Option<IpAddr> {
    match a {
        Admission::Proceed { client, .. } => Some(*client),
        _ => None,
    }
}

/// Each route the router tries for `host`, in order, with its verdict; then the routes of
/// other hosts.
fn verdicts(
    config: &Config,
    state: &ProxyState,
    host: Option<&str>,
    req: &RequestHeader,
    matched: Option<usize>,
) -> (Vec<Candidate>, Vec<Candidate>) {
    let path = target::route_path(req);
    let order = state.router.candidates(host);
    let label = |i: usize| crate::metrics::route_label(config, i);
    let entry = |i: usize, verdict: String, matched: bool| {
        let r = &state.routes[i];
        Candidate {
            route: label(i),
            host: describe::host(&r.host),
            path: r.path.clone(),
            conditions: describe::conditions(r),
            verdict,
            matched,
        }
    };
    let mut first: Option<usize> = None;
    let mut tried = Vec::with_capacity(order.len());
    for &i in &order {
        let r = &state.routes[i];
        let verdict = if let Some(f) = first {
            format!("not tried: {} matched first", label(f))
        } else if !prefix_matches(&r.path, path) {
            format!("path prefix {} does not match", r.path)
        } else if let Some(why) = conditions::explain_unmet(&r.matchers, req) {
            why.to_string()
        } else {
            first = Some(i);
            "matched".to_string()
        };
        tried.push(entry(i, verdict, first == Some(i)));
    }
    if first != matched {
        // Cannot happen while this walk and `Router::find` agree; say so rather than mislead.
        let note = format!(
            "(the router chose {})",
            matched.map_or("no route".to_string(), label)
        );
        tried.push(Candidate {
            route: String::new(),
            host: String::new(),
            path: String::new(),
            conditions: String::new(),
            verdict: note,
            matched: false,
        });
    }
    let others = (0..state.routes.len())
        .filter(|i| !order.contains(i))
        .map(|i| entry(i, "host does not apply".to_string(), false))
        .collect();
    (tried, others)
}

/// How a request's split side is chosen.
enum SideChoice {
    /// The route has one upstream.
    NotSplit,
    /// By the request's split key: the same side for the same key while the weights stay.
    Deterministic,
    /// By weighted turns; the text says why (no key configured, or the request lacks it).
    Turns(String),
}

fn chosen_side(route: &Route, req: &RequestHeader, client: Option<IpAddr>) -> SideChoice {
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

fn split_shares(config: &Config, route: &Route) -> String {
    match &route.destination {
        Destination::Split(s) => {
            let sides: Vec<(usize, u32)> = s.sides.iter().map(|x| (x.upstream, x.weight)).collect();
            describe::shares(config, &sides)
        }
        Destination::Upstream(g) => config.upstreams[*g].name.clone(),
    }
}

/// The matched route's destination and policies.
fn details(
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
fn upstream_head(
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
    forwarding::apply(&state.forwarding, head, peer, host::raw(req), proto);
    let id = request_id::of(req);
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

/// The explanation as aligned text.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let kv = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{k:<19}{v}");
    };
    kv(&mut out, "request", &e.request);
    kv(&mut out, "listener", &e.listener);
    kv(&mut out, "client", &e.peer);
    kv(&mut out, "host", e.host.as_deref().unwrap_or("(none)"));
    match (&e.path, &e.path_as_sent) {
        (Some(p), Some(sent)) => kv(&mut out, "path", &format!("{p} (normalized from {sent})")),
        (Some(p), None) => kv(&mut out, "path", p),
        (None, sent) => {
            let sent = sent.as_deref().unwrap_or("");
            kv(
                &mut out,
                "path",
                &format!("{sent} (refused, see the result)"),
            )
        }
    }
    if let Some(why) = &e.not_routed {
        let _ = writeln!(out, "\nno route looked up: {why}");
    }
    if !e.candidates.is_empty() || e.not_routed.is_none() {
        let host = e.host.as_deref().unwrap_or("(no host)");
        let _ = writeln!(out, "\nroutes tried for {host}, in order:");
        table(&mut out, &e.candidates, true);
    }
    if !e.other_hosts.is_empty() {
        let _ = writeln!(out, "\nroutes for other hosts (host does not apply):");
        table(&mut out, &e.other_hosts, false);
    }
    if let Some(r) = &e.route {
        let _ = writeln!(out, "\nmatched route: {}", r.name);
        for d in &r.details {
            let _ = writeln!(out, "  {:<19}{}", d.key, d.value);
        }
    }
    if !e.upstream_request.is_empty() {
        let _ = writeln!(out, "\nrequest sent upstream:");
        for l in &e.upstream_request {
            let _ = writeln!(out, "  {l}");
        }
    }
    let _ = writeln!(out);
    let result = match &e.outcome {
        Outcome::Proxied { upstream, path } => format!("proxied to {upstream} as {path}"),
        Outcome::Answered { status, body } => format!("fulcrum answers {status} itself: {body}"),
        Outcome::Redirected { location } => {
            format!("fulcrum answers 308 Permanent Redirect, Location: {location}")
        }
    };
    kv(
        &mut out,
        "result",
        &format!("{result} (exit {})", e.exit_code()),
    );
    out
}

/// Candidates as columns: number, route, host, path, conditions, verdict.
fn table(out: &mut String, rows: &[Candidate], numbered: bool) {
    if rows.is_empty() {
        let _ = writeln!(out, "  (no route applies to this host)");
        return;
    }
    let width = |f: fn(&Candidate) -> &str, title: &str| {
        rows.iter()
            .map(|c| f(c).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let w_route = width(|c| &c.route, "route");
    let w_host = width(|c| &c.host, "host");
    let w_path = width(|c| &c.path, "path");
    let conditions = |c: &Candidate| {
        if c.conditions.is_empty() {
            "-".to_string()
        } else {
            c.conditions.clone()
        }
    };
    let w_cond = rows
        .iter()
        .map(|c| conditions(c).chars().count())
        .chain(["conditions".len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "  {:>3}  {:<w_route$}  {:<w_host$}  {:<w_path$}  {:<w_cond$}  verdict",
        "#", "route", "host", "path", "conditions"
    );
    for (n, c) in rows.iter().enumerate() {
        let number = if numbered && !c.route.is_empty() {
            format!("{}.", n + 1)
        } else {
            String::new()
        };
        let cond = if c.route.is_empty() {
            String::new()
        } else {
            conditions(c)
        };
        let line = format!(
            "  {number:>3}  {:<w_route$}  {:<w_host$}  {:<w_path$}  {cond:<w_cond$}  {}",
            c.route, c.host, c.path, c.verdict
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
