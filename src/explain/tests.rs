//! `fulcrum route` on configs parsed from text: verdicts, outcomes and the split side.

use super::render::render;
use super::report::{choose_listener, explain, Explanation, Outcome};
use super::request;
use crate::config::model::Config;
use crate::proxy::ProxyState;
use crate::routing::split::{keyed_side, side_seed};

const YAML: &str = "listeners:\n  - addr: 127.0.0.1:8080\n\
upstreams:\n\
\x20 web:\n    backends:\n      - addr: 127.0.0.1:3000\n\
\x20 api-v1:\n    backends:\n      - addr: 127.0.0.1:3001\n\
\x20 api-v2:\n    backends:\n      - addr: 127.0.0.1:3002\n\
routes:\n\
\x20 - {path: /, upstream: web}\n\
\x20 - name: api\n    host: api.example.com\n    path: /api\n    strip_prefix: true\n\
\x20   rewrite: {regex: '^/v1/(.*)$', to: '/legacy/$1'}\n\
\x20   split: [{upstream: api-v1, weight: 90}, {upstream: api-v2, weight: 10}]\n\
\x20   split_key: 'cookie:user'\n\
\x20 - name: canary\n    host: api.example.com\n    path: /api\n\
\x20   match: {methods: [GET, HEAD], headers: {x-canary: 'true', x-v: '~^v[0-9]+$'}, query: {beta: '*'}}\n\
\x20   upstream: api-v2\n\
\x20 - {name: admin, host: admin.example.com, path: /, upstream: web}\n";

fn config() -> Config {
    let spec = crate::config::parse_yaml(YAML).expect("parses");
    crate::config::validate::validate(&spec).expect("valid")
}

fn run(config: &Config, state: &ProxyState, words: &str, headers: &[&str]) -> Explanation {
    let words = vec![words.to_string()];
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let spec = request::parse(&words, &headers).expect("request");
    let listener = choose_listener(config, spec.https == Some(true), spec.port);
    let head = spec.head().expect("head");
    let peer = "127.0.0.1".parse().unwrap();
    explain(config, state, spec.line(), listener, head, peer)
}

#[test]
fn each_route_tried_gets_its_reason() {
    let c = config();
    let s = ProxyState::new(&c);
    let e = run(
        &c,
        &s,
        "POST http://api.example.com/api/v1/users?beta=1",
        &["x-canary: false"],
    );
    let verdicts: Vec<(&str, &str)> = e
        .candidates
        .iter()
        .map(|c| (c.route.as_str(), c.verdict.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("canary", "method POST not in [GET, HEAD]"),
            ("api", "matched"),
            ("/", "not tried: api matched first"),
        ]
    );
    assert_eq!(e.other_hosts.len(), 1);
    assert_eq!(e.other_hosts[0].verdict, "host does not apply");
    // No cookie: the side is a weighted turn, not a promise.
    assert_eq!(
        e.outcome,
        Outcome::Proxied {
            upstream: "one side per request: 90% api-v1, 10% api-v2".into(),
            path: "/legacy/users?beta=1".into(),
        }
    );
    let text = render(&e);
    assert!(
        text.contains("weighted turn (the request has no cookie:user): 90% api-v1, 10% api-v2"),
        "{text}"
    );
    assert_eq!(e.exit_code(), 0);

    let e = run(
        &c,
        &s,
        "GET http://api.example.com/api/x",
        &["x-canary: true", "x-v: beta"],
    );
    assert_eq!(
        e.candidates[0].verdict,
        "header x-v: value \"beta\" does not match regex ^v[0-9]+$"
    );
    let e = run(
        &c,
        &s,
        "GET http://api.example.com/api/x?beta",
        &["x-canary: true", "x-v: v2"],
    );
    assert_eq!(e.candidates[0].verdict, "matched");
    let e = run(&c, &s, "GET http://api.example.com/apix", &[]);
    assert_eq!(e.candidates[1].verdict, "path prefix /api does not match");
    assert_eq!(e.candidates[2].verdict, "matched");
}

#[test]
fn a_keyed_split_names_the_side_the_hash_gives() {
    let c = config();
    let s = ProxyState::new(&c);
    let seeds = [side_seed("api-v1"), side_seed("api-v2")];
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let cookie = format!("cookie: user={user}");
        let e = run(&c, &s, "GET http://api.example.com/api/a", &[&cookie]);
        let side = ["api-v1", "api-v2"][keyed_side(&seeds, &[90, 10], user.as_bytes())];
        let Outcome::Proxied { upstream, path } = &e.outcome else {
            panic!("{e:?}")
        };
        assert_eq!(upstream, side);
        assert_eq!(path, "/a");
        let text = render(&e);
        assert!(
            text.contains(&format!(
                "split side         {side} (split_key cookie:user = \"{user}\""
            )),
            "{text}"
        );
    }
}

#[test]
fn requests_fulcrum_answers_itself() {
    let c = config();
    let s = ProxyState::new(&c);
    let e = run(&c, &s, "GET /../x", &["host: api.example.com"]);
    assert_eq!(
        e.outcome,
        Outcome::Answered {
            status: 400,
            body: "400 Bad Request: the path climbs above /".into()
        }
    );
    assert!(e.candidates.is_empty());
    assert_eq!(e.path, None);
    assert!(render(&e).contains("path               /../x (refused, see the result)\n"));
    assert_eq!(e.exit_code(), 3);

    let e = run(&c, &s, "GET http://admin.example.com/a/./b//c", &[]);
    assert_eq!(e.path.as_deref(), Some("/a/b/c"));
    assert_eq!(e.path_as_sent.as_deref(), Some("/a/./b//c"));
    assert!(render(&e).contains("/a/b/c (normalized from /a/./b//c)"));

    // No catch-all for a host with an exact table but no matching prefix: only without `/`.
    let mut c2 = config();
    c2.routes.remove(0);
    let s2 = ProxyState::new(&c2);
    let e = run(&c2, &s2, "GET http://api.example.com/web", &[]);
    assert!(
        matches!(e.outcome, Outcome::Answered { status: 404, .. }),
        "{e:?}"
    );
    assert_eq!(e.candidates.len(), 2);
    assert!(e.candidates.iter().all(|c| !c.matched));

    // A route that redirects to HTTPS, on a plain listener (validation would want an HTTPS
    // listener, which needs certificate files).
    let mut s3 = ProxyState::new(&c);
    s3.routes[3].redirect_to_https = true;
    let e = run(&c, &s3, "GET http://admin.example.com/x?y=1", &[]);
    assert_eq!(
        e.outcome,
        Outcome::Redirected {
            location: "https://admin.example.com/x?y=1".into()
        }
    );
    assert_eq!(e.route.as_ref().map(|r| r.name.as_str()), Some("admin"));
}

#[test]
fn the_upstream_head_has_forwarding_headers() {
    let c = config();
    let s = ProxyState::new(&c);
    let e = run(
        &c,
        &s,
        "GET http://admin.example.com/x",
        &["x-request-id: abc"],
    );
    let head = e.upstream_request.join("\n");
    assert!(head.starts_with("GET /x HTTP/1.1\n"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    assert!(
        head.contains("x-forwarded-host: admin.example.com"),
        "{head}"
    );
    assert!(head.contains("via: 1.1 fulcrum"), "{head}");
    assert!(head.contains("x-request-id: abc"), "{head}");
}

#[test]
fn an_https_only_listener_redirects_before_routing() {
    let c = config();
    let s = ProxyState::new(&c);
    let spec = request::parse(&["GET http://admin.example.com/a".to_string()], &[]).unwrap();
    let listener = crate::proxy::ListenerInfo {
        tls: false,
        redirect_to_https: true,
        https_port: Some(8443),
    };
    let listener = (listener, "test listener".to_string());
    let peer = "127.0.0.1".parse().unwrap();
    let e = explain(&c, &s, spec.line(), listener, spec.head().unwrap(), peer);
    assert_eq!(
        e.outcome,
        Outcome::Redirected {
            location: "https://admin.example.com:8443/a".into()
        }
    );
    assert!(e.candidates.is_empty() && e.route.is_none());
    let text = render(&e);
    assert!(
        text.contains("no route looked up: the listener redirects every request to HTTPS"),
        "{text}"
    );
    assert_eq!(e.exit_code(), 3);
}

#[test]
fn the_listener_follows_the_scheme_and_port() {
    let c = config();
    let (info, text) = choose_listener(&c, false, Some(9999));
    assert!(!info.tls);
    assert_eq!(text, "127.0.0.1:8080 (http)");
    let (info, text) = choose_listener(&c, true, None);
    assert!(info.tls);
    assert_eq!(
        text,
        "none (https: the config has no such listener; assumed)"
    );
}
