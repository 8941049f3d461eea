//! Admission: whether a request goes on to a backend, decided from its head alone.
//!
//! [`admit`] runs the checks in this order, and the first that fails decides: the head's size
//! and field count (431), its `Transfer-Encoding` (400 or 501, see `transfer_encoding`), the
//! request target (400 or 405, see `target`), the Host (400), an
//! HTTPS-only listener (308), the route (404), the route's HTTPS redirect (308), its rate limit
//! (429) and its body limit by Content-Length (413). It reads the request head, the listener
//! and the shared state and touches no socket: `request_filter` acts on the [`Admission`].

use super::respond::{self, Answer};
use super::state::{ListenerInfo, ProxyState};
use super::survey::{Present, Survey};
use super::{content_length, forwarding, hash_key, host, rewrite, target, transfer_encoding};
use crate::config::model::Destination;
use crate::routing::normalize_host;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Proxy it to a backend of `route`'s group; `client` is the client IP fulcrum believes
    /// (see `forwarding::client_ip`).
    Proceed {
        /// Index of the matched route.
        route: usize,
        /// The group that serves it: the route's, or the side of its split.
        upstream: usize,
        /// The client's IP.
        client: IpAddr,
        /// The path to send upstream, when the route strips its prefix or rewrites.
        path: Option<String>,
    },
    /// Answer it here.
    Answer {
        /// The matched route, when the answer comes from its policy (the request is counted
        /// under it); `None` before routing.
        route: Option<usize>,
        /// The answer.
        answer: Answer,
    },
    /// Answer with a `308 Permanent Redirect` to the same URL over HTTPS.
    Redirect {
        /// The matched route, when the redirect is its policy; `None` for an HTTPS-only
        /// listener.
        route: Option<usize>,
        /// The `Location`.
        location: String,
    },
}

impl Admission {
    fn answer(route: Option<usize>, status: u16, body: &'static str) -> Self {
        Admission::Answer {
            route,
            answer: Answer::new(status, body),
        }
    }
}

/// Decide what to do with a request whose head is `req`, from the TCP peer `peer`, on
/// `listener`; `survey` is what the walk over its fields found (`survey::of`). The request's
/// path is normalized in place (see `target::prepare`), so the route, its policies and the
/// backend all see the same one.
pub fn admit(
    state: &ProxyState,
    listener: &ListenerInfo,
    req: &mut RequestHeader,
    peer: IpAddr,
    survey: &Survey,
) -> Admission {
    let limits = &state.limits;
    let too_large = head_size(req, survey) > limits.max_header_bytes;
    if req.headers.len() > limits.max_headers || too_large {
        let body = "431 Request Header Fields Too Large: too many or too large headers\n";
        return Admission::answer(None, 431, body);
    }
    // Before anything reads the body: its framing must be one fulcrum implements (a request
    // without the field frames its body by length, or has none).
    if survey.present.has(Present::TRANSFER_ENCODING) {
        if let Err(e) = transfer_encoding::check(req) {
            let (status, body) = e.answer();
            return Admission::answer(None, status, body);
        }
    }
    // The target's form, its host and its normalized path, before anything routes on it.
    if let Err(e) = target::prepare(req) {
        let (status, body) = e.answer();
        return Admission::answer(None, status, body);
    }
    let req = &*req;
    // RFC 9112 3.2: exactly one valid Host on HTTP/1.1 (HTTP/2 may carry :authority).
    let hosts = req.headers.get_all(http::header::HOST).iter().count();
    let needs_host = req.version == http::Version::HTTP_11;
    let host = host::raw(req);
    if hosts > 1 || (needs_host && hosts == 0) || host.is_some_and(|h| !host::is_valid(h)) {
        let body = "400 Bad Request: exactly one valid Host header is required\n";
        return Admission::answer(None, 400, body);
    }
    if listener.redirect_to_https {
        return redirect_to_https(req, listener, None);
    }
    let host = host.map(normalize_host);
    let routed = target::route_path(req);
    let found = state.router.find(host.as_deref(), routed, req);
    let Some(index) = found else {
        let (status, body) = respond::status_answer(404);
        return Admission::answer(None, status, body);
    };
    let route = &state.routes[index];
    if !listener.tls && route.redirect_to_https {
        return redirect_to_https(req, listener, Some(index));
    }
    let client = forwarding::client_ip(&state.forwarding, req, peer);
    if let Some(limiter) = &state.rate_limiters[index] {
        if let Err(wait) = limiter.check(client) {
            // Whole seconds, rounded up: a client that waits that long is let in.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let body = "429 Too Many Requests: slow down\n";
            let answer = Answer {
                retry_after: Some(secs.max(1)),
                ..Answer::new(429, body)
            };
            let route = Some(index);
            return Admission::Answer { route, answer };
        }
    }
    if let Some(max) = route.max_body_bytes {
        let declared = survey.present.has(Present::CONTENT_LENGTH);
        if declared && content_length::of(req).is_some_and(|n| n > max) {
            let (status, body) = respond::status_answer(413);
            return Admission::answer(Some(index), status, body);
        }
    }
    let path = match rewrite::upstream_path(route, target::route_path(req)) {
        Ok(path) => path,
        Err(e) => {
            let (status, body) = e.answer();
            return Admission::answer(Some(index), status, body);
        }
    };
    Admission::Proceed {
        route: index,
        upstream: side(state, index, req, client),
        client,
        path,
    }
}

/// The group that serves a request of route `index`: its upstream, or the side its split
/// chooses (by the request's split key, when the route has one and the request carries it).
fn side(state: &ProxyState, index: usize, req: &RequestHeader, client: IpAddr) -> usize {
    match &state.routes[index].destination {
        Destination::Upstream(g) => *g,
        Destination::Split(split) => {
            let Some(splitter) = &state.splitters[index] else {
                return split.sides[0].upstream;
            };
            let key = split
                .key
                .as_ref()
                .and_then(|k| hash_key::extract(k, req, client));
            let side = splitter.choose(key.as_ref().map(|k| k.as_bytes()));
            split.sides[side].upstream
        }
    }
}

/// The same URL over HTTPS, on the listener's HTTPS port; a request without a Host has no URL
/// to redirect to (400).
fn redirect_to_https(
    req: &RequestHeader,
    listener: &ListenerInfo,
    route: Option<usize>,
) -> Admission {
    let Some(host) = host::raw(req).map(normalize_host).filter(|h| !h.is_empty()) else {
        return Admission::answer(route, 400, "400 Bad Request: a Host header is required\n");
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.into_owned()
    };
    let port = match listener.https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{target}");
    Admission::Redirect { route, location }
}

/// Bytes of a request head as parsed: request line and header lines (for limits that must
/// also hold for HTTP/2, where there are no raw head bytes to count).
fn head_size(req: &RequestHeader, survey: &Survey) -> usize {
    let uri = req.uri.authority().map_or(0, |a| a.as_str().len())
        + req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + uri + 12;
    survey.field_bytes + line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    /// A state from a config whose routes go to one upstream, `app`.
    fn state(top: &str, routes: &str) -> ProxyState {
        let yaml = format!(
            "listeners:\n  - addr: 127.0.0.1:8080\n{top}\
             upstreams:\n  app:\n    backends:\n      - addr: 127.0.0.1:3000\n\
             routes:\n{routes}"
        );
        let spec = crate::config::parse_yaml(&yaml).expect("parses");
        ProxyState::new(&crate::config::validate::validate(&spec).expect("valid"))
    }

    fn plain() -> ProxyState {
        state("", "  - {path: /, upstream: app}\n")
    }

    fn get(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn admit_on(state: &ProxyState, listener: ListenerInfo, mut req: RequestHeader) -> Admission {
        let survey = crate::proxy::survey::of(&req.headers);
        admit(state, &listener, &mut req, PEER, &survey)
    }

    fn status(a: &Admission) -> u16 {
        match a {
            Admission::Proceed { .. } => 0,
            Admission::Answer { answer, .. } => answer.status,
            Admission::Redirect { .. } => 308,
        }
    }

    const HOST: (&str, &str) = ("host", "example.com");

    #[test]
    fn a_plain_request_proceeds_with_its_route_and_peer() {
        let a = admit_on(&plain(), ListenerInfo::default(), get("/a", &[HOST]));
        assert_eq!(
            a,
            Admission::Proceed {
                route: 0,
                upstream: 0,
                client: PEER,
                path: None,
            }
        );
    }

    #[test]
    fn too_many_or_too_large_headers_are_431() {
        let s = state(
            "limits:\n  max_headers: 2\n",
            "  - {path: /, upstream: app}\n",
        );
        let few = get("/", &[HOST, ("a", "1")]);
        assert_eq!(status(&admit_on(&s, ListenerInfo::default(), few)), 0);
        let many = get("/", &[HOST, ("a", "1"), ("b", "2")]);
        assert_eq!(status(&admit_on(&s, ListenerInfo::default(), many)), 431);
        let s = state(
            "limits:\n  max_header_bytes: 1KiB\n",
            "  - {path: /, upstream: app}\n",
        );
        let big = "x".repeat(1024);
        let large = get("/", &[HOST, ("a", big.as_str())]);
        assert_eq!(status(&admit_on(&s, ListenerInfo::default(), large)), 431);
    }

    #[test]
    fn a_bad_target_is_answered_before_routing() {
        let a = admit_on(&plain(), ListenerInfo::default(), get("/../x", &[HOST]));
        let (status, body) = target::TargetError::AboveRoot.answer();
        let answer = Answer::new(status, body);
        assert_eq!(
            a,
            Admission::Answer {
                route: None,
                answer
            }
        );
    }

    #[test]
    fn the_normalized_path_is_what_routes() {
        let s = state(
            "",
            "  - {path: /static, upstream: app}\n  - {path: /, upstream: app}\n",
        );
        let mut req = get("/x/../%73tatic/app.css", &[HOST]);
        let survey = crate::proxy::survey::of(&req.headers);
        let a = admit(&s, &ListenerInfo::default(), &mut req, PEER, &survey);
        assert_eq!(status(&a), 0);
        assert!(matches!(a, Admission::Proceed { route: 0, .. }), "{a:?}");
        assert_eq!(req.uri.path(), "/static/app.css");
    }

    #[test]
    fn http_1_1_needs_exactly_one_valid_host() {
        let s = plain();
        let l = ListenerInfo::default();
        assert_eq!(status(&admit_on(&s, l, get("/", &[]))), 400);
        let two = get("/", &[HOST, ("host", "other.example")]);
        assert_eq!(status(&admit_on(&s, l, two)), 400);
        assert_eq!(status(&admit_on(&s, l, get("/", &[("host", "a b")]))), 400);
        let mut old = get("/", &[]);
        old.set_version(http::Version::HTTP_10);
        assert_eq!(status(&admit_on(&s, l, old)), 0);
    }

    #[test]
    fn no_route_is_404_without_a_route() {
        let s = state("", "  - {path: /api, upstream: app}\n");
        let a = admit_on(&s, ListenerInfo::default(), get("/web", &[HOST]));
        let (status, body) = respond::status_answer(404);
        let answer = Answer::new(status, body);
        assert_eq!(
            a,
            Admission::Answer {
                route: None,
                answer
            }
        );
    }

    #[test]
    fn an_https_only_listener_redirects_every_request_to_its_https_port() {
        let s = state("", "  - {path: /api, upstream: app}\n");
        let l = ListenerInfo {
            tls: false,
            redirect_to_https: true,
            https_port: Some(8443),
        };
        // Before routing: even a path no route matches.
        let a = admit_on(&s, l, get("/web?q=1", &[("host", "Example.com:8080")]));
        let location = "https://example.com:8443/web?q=1".to_string();
        assert_eq!(
            a,
            Admission::Redirect {
                route: None,
                location
            }
        );
        let l = ListenerInfo {
            https_port: Some(443),
            ..l
        };
        let a = admit_on(&s, l, get("/api", &[("host", "[::1]:80")]));
        let location = "https://[::1]/api".to_string();
        assert_eq!(
            a,
            Admission::Redirect {
                route: None,
                location
            }
        );
        let mut no_host = get("/api", &[]);
        no_host.set_version(http::Version::HTTP_10);
        assert_eq!(status(&admit_on(&s, l, no_host)), 400);
    }

    #[test]
    fn a_route_redirects_only_on_plain_listeners() {
        // (Validation wants an HTTPS listener to redirect to, which needs certificate files.)
        let mut s = plain();
        s.routes[0].redirect_to_https = true;
        let plain = ListenerInfo {
            https_port: Some(8443),
            ..ListenerInfo::default()
        };
        let a = admit_on(&s, plain, get("/a", &[HOST]));
        let location = "https://example.com:8443/a".to_string();
        assert_eq!(
            a,
            Admission::Redirect {
                route: Some(0),
                location
            }
        );
        let tls = ListenerInfo { tls: true, ..plain };
        assert_eq!(status(&admit_on(&s, tls, get("/a", &[HOST]))), 0);
    }

    #[test]
    fn a_client_over_its_rate_is_429_and_told_when_to_come_back() {
        let s = state(
            "rate_limit: {requests_per_second: 0.1, burst: 1}\n",
            "  - {path: /, upstream: app}\n",
        );
        let l = ListenerInfo::default();
        assert_eq!(status(&admit_on(&s, l, get("/", &[HOST]))), 0);
        match admit_on(&s, l, get("/", &[HOST])) {
            Admission::Answer {
                route: Some(0),
                answer,
            } => {
                assert_eq!(answer.status, 429);
                // One token per 10 s: the wait rounds up to whole seconds, at most 10.
                let secs = answer.retry_after.expect("Retry-After");
                assert!((1..=10).contains(&secs), "{secs}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_rate_limit_counts_the_client_behind_a_trusted_proxy() {
        let s = state(
            "forwarding:\n  trusted_proxies: [192.0.2.0/24]\n\
             rate_limit: {requests_per_second: 0.1, burst: 1}\n",
            "  - {path: /, upstream: app}\n",
        );
        let l = ListenerInfo::default();
        let from = |ip: &str| get("/", &[HOST, ("x-forwarded-for", ip)]);
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            admit_on(&s, l, from("198.51.100.7")),
            Admission::Proceed {
                route: 0,
                upstream: 0,
                client,
                path: None
            }
        );
        // Another client behind the same proxy has its own bucket.
        assert_eq!(status(&admit_on(&s, l, from("198.51.100.8"))), 0);
        assert_eq!(status(&admit_on(&s, l, from("198.51.100.7"))), 429);
    }

    #[test]
    fn a_declared_body_over_the_routes_limit_is_413() {
        let s = state(
            "",
            "  - {path: /upload, upstream: app, max_body_bytes: 1KiB}\n",
        );
        let l = ListenerInfo::default();
        let post = |len: &str| {
            let mut req = get("/upload", &[HOST, ("content-length", len)]);
            req.set_method(http::Method::POST);
            req
        };
        assert_eq!(status(&admit_on(&s, l, post("1024"))), 0);
        let a = admit_on(&s, l, post("1025"));
        let (status_413, body) = respond::status_answer(413);
        let answer = Answer::new(status_413, body);
        assert_eq!(
            a,
            Admission::Answer {
                route: Some(0),
                answer
            }
        );
        // No length declared (chunked): the body filter counts it as it comes.
        let chunked = get("/upload", &[HOST, ("transfer-encoding", "chunked")]);
        assert_eq!(status(&admit_on(&s, l, chunked)), 0);
    }
}
