//! Explaining one request: admission runs as in the proxy, then each route the router tried is
//! given its verdict, and the matched route's destination and policies are spelled out.

use super::describe;
use super::policies::{chosen_side, details, split_shares, upstream_head, SideChoice};
use crate::config::model::Config;
use crate::proxy::admission::{admit, Admission};
use crate::proxy::{host, target};
use crate::proxy::{ListenerInfo, ProxyState};
use crate::routing::{conditions, normalize_host, prefix_matches};
use pingora_http::RequestHeader;
use serde::Serialize;
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
    let survey = crate::proxy::survey::of(&req.headers);
    let admission = admit(state, &listener, &mut req, peer, &survey);
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
