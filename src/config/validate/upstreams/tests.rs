use crate::config::validate::testing::{accepts, rejects};
use std::net::SocketAddr;

fn upstream(fields: &str) -> String {
    format!("upstreams: {{api: {{{fields}}}}}")
}

const ONE: &str = "backends: [{addr: '127.0.0.1:3001'}]";

#[test]
fn rules() {
    let cases = [
        (
            upstream("backends: []"),
            "upstreams.api.backends",
            "an upstream needs `backends` or `discovery` (or both), e.g. \
                 `backends: [{addr: 127.0.0.1:3001}]` or `discovery: {dns: api.internal:8080}`",
        ),
        (
            upstream("algorithm: random"),
            "upstreams.api.backends",
            "an upstream needs `backends` or `discovery` (or both), e.g. \
                 `backends: [{addr: 127.0.0.1:3001}]` or `discovery: {dns: api.internal:8080}`",
        ),
        (
            upstream("backends: [{addr: '127.0.0.3:80'}, {addr: 'twin.test:80'}]"),
            "upstreams.api.backends[1].addr",
            "127.0.0.3:80 is already backends[0] of this upstream",
        ),
        (
            upstream("backends: [{addr: 'twin.test:80'}, {addr: '127.0.0.2:80'}]"),
            "upstreams.api.backends[1].addr",
            "127.0.0.2:80 is already backends[0] of this upstream",
        ),
        (
            upstream("backends: [{addr: 'twin.test:80'}, {addr: 'TWIN.test:80'}]"),
            "upstreams.api.backends[1].addr",
            "127.0.0.2:80 is already backends[0] of this upstream",
        ),
        (
            upstream(&format!("slow_start: 0s, {ONE}")),
            "upstreams.api.slow_start",
            "expected a duration above zero",
        ),
        (
            upstream(&format!("slow_start: slowly, {ONE}")),
            "upstreams.api.slow_start",
            "expected a duration like 500ms, 5s, 2m or 1h, found \"slowly\"",
        ),
        (
            upstream("backends: [{addr: '127.0.0.1:3001', weight: 0}]"),
            "upstreams.api.backends[0].weight",
            "expected an integer from 1 to 1000, found 0",
        ),
        (
            upstream(
                "backends: [{addr: '127.0.0.1:3001'}, {addr: '127.0.0.1:3002', weight: 1001}]",
            ),
            "upstreams.api.backends[1].weight",
            "expected an integer from 1 to 1000, found 1001",
        ),
        (
            upstream("backends: [{addr: '127.0.0.1:3001'}, {addr: 'localhost:3001'}]"),
            "upstreams.api.backends[1].addr",
            "127.0.0.1:3001 is already backends[0] of this upstream",
        ),
        (
            upstream("backends: [{addr: '0.0.0.0:80'}]"),
            "upstreams.api.backends[0].addr",
            "0.0.0.0:80 cannot be a backend: it needs a port and a unicast, specified IP",
        ),
        (
            upstream("backends: [{addr: '127.0.0.1:0'}]"),
            "upstreams.api.backends[0].addr",
            "127.0.0.1:0 cannot be a backend: it needs a port and a unicast, specified IP",
        ),
        (
            upstream("backends: [{addr: backend}]"),
            "upstreams.api.backends[0].addr",
            "expected host:port, found \"backend\" (no port)",
        ),
        (
            upstream("backends: [{addr: 'backend:http'}]"),
            "upstreams.api.backends[0].addr",
            "expected host:port, found \"backend:http\"",
        ),
        (
            upstream("backends: [{addr: 'nowhere.test:80'}]"),
            "upstreams.api.backends[0].addr",
            "cannot resolve \"nowhere.test:80\": entity not found",
        ),
        (
            upstream(&format!("algorithm: fastest, {ONE}")),
            "upstreams.api.algorithm",
            "unknown algorithm \"fastest\", expected one of: ALGORITHMS",
        ),
        (
            upstream(&format!("hash_key: path, {ONE}")),
            "upstreams.api.hash_key",
            "only used with `algorithm: consistent` (ip_hash always hashes the client IP; \
                 other algorithms use no key)",
        ),
        (
            upstream(&format!(
                "algorithm: consistent, hash_key: 'cookie:', {ONE}"
            )),
            "upstreams.api.hash_key",
            "expected client_ip, path, header:NAME, cookie:NAME or query:NAME, found \"cookie:\"",
        ),
        (
            upstream(&format!("algorithm: consistent, fallback: ip_hash, {ONE}")),
            "upstreams.api.fallback",
            "the fallback must not need a key itself; pick round_robin, weighted_round_robin, \
                 random, p2c, least_connections or first, found \"ip_hash\"",
        ),
        (
            upstream(&format!("sticky: {{}}, {ONE}")),
            "upstreams.api.sticky",
            "only used with `algorithm: cookie`",
        ),
        (
            upstream(&format!("max_tries: 0, {ONE}")),
            "upstreams.api.max_tries",
            "expected at least 1 try, found 0",
        ),
        (
            upstream(&format!("max_try_duration: 1 minute, {ONE}")),
            "upstreams.api.max_try_duration",
            "expected a duration like 500ms, 5s, 2m or 1h, found \"1 minute\"",
        ),
        (
            upstream(&format!("timeouts: {{read: 0s}}, {ONE}")),
            "upstreams.api.timeouts.read",
            "expected a duration above zero",
        ),
        (
            upstream(&format!("max_connections: 0, {ONE}")),
            "upstreams.api.max_connections",
            "expected an integer from 1 to 1000000, found 0",
        ),
        (
            upstream(&format!("queue: {{size: 1}}, {ONE}")),
            "upstreams.api.queue",
            "only used with `max_connections`",
        ),
        (
            upstream(&format!("max_connections: 10, queue: {{size: -1}}, {ONE}")),
            "upstreams.api.queue.size",
            "expected an integer from 0 to 1000000, found -1",
        ),
        (
            upstream(&format!("tls: {{ca_file: /no/ca.pem}}, {ONE}")),
            "upstreams.api.tls.ca_file",
            "cannot read /no/ca.pem: entity not found",
        ),
        (
            upstream(&format!("tls: {{ca_file: /garbage.pem}}, {ONE}")),
            "upstreams.api.tls.ca_file",
            "/garbage.pem contains no PEM certificate",
        ),
        (
            upstream(&format!("tls: {{sni: 'a b'}}, {ONE}")),
            "upstreams.api.tls.sni",
            "expected a host name, found \"a b\"",
        ),
    ];
    let algorithms: Vec<_> = crate::config::model::Algorithm::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let algorithms = algorithms.join(", ");
    let cases: Vec<_> = cases
        .iter()
        .map(|(y, p, m)| (y.clone(), *p, m.replace("ALGORITHMS", &algorithms)))
        .collect();
    let cases: Vec<_> = cases
        .iter()
        .map(|(y, p, m)| (y.as_str(), *p, m.as_str()))
        .collect();
    rejects(&cases);
}

#[test]
fn host_names_are_resolved_through_the_loader() {
    let config = accepts(&upstream(
        "backends: [{addr: 'LocalHost:3001'}, {addr: '127.0.0.1:3002'}]",
    ));
    let backends = &config.upstreams[0].backends;
    assert_eq!(
        backends[0].addr,
        "127.0.0.1:3001".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(backends[0].host.as_deref(), Some("localhost"));
    assert_eq!(backends[1].host, None);
}

#[test]
fn a_host_name_stands_for_each_of_its_addresses() {
    let config = accepts(&upstream(
        "backends: [{addr: '127.0.0.1:3001'}, {addr: 'twin.test:3002', weight: 7}]",
    ));
    let backends: Vec<_> = config.upstreams[0]
        .backends
        .iter()
        .map(|b| (b.addr.to_string(), b.host.as_deref(), b.weight))
        .collect();
    assert_eq!(
        backends,
        [
            ("127.0.0.1:3001".to_string(), None, 1),
            ("127.0.0.2:3002".to_string(), Some("twin.test"), 7),
            ("127.0.0.3:3002".to_string(), Some("twin.test"), 7),
        ]
    );
}

#[test]
fn the_same_name_on_another_port_is_other_backends() {
    let config = accepts(&upstream(
        "backends: [{addr: 'twin.test:1'}, {addr: 'twin.test:2'}]",
    ));
    let addrs: Vec<_> = config.upstreams[0]
        .backends
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    assert_eq!(
        addrs,
        ["127.0.0.2:1", "127.0.0.3:1", "127.0.0.2:2", "127.0.0.3:2"]
    );
}

#[test]
fn slow_start_is_a_duration_on_any_algorithm() {
    assert_eq!(accepts(&upstream(ONE)).upstreams[0].slow_start, None);
    for algorithm in ["round_robin", "least_connections", "consistent", "cookie"] {
        let config = accepts(&upstream(&format!(
            "algorithm: {algorithm}, slow_start: 30s, {ONE}"
        )));
        assert_eq!(
            config.upstreams[0].slow_start,
            Some(std::time::Duration::from_secs(30)),
            "{algorithm}"
        );
    }
}

#[test]
fn tries_default_to_three_and_stop_at_the_backend_count() {
    let config = accepts(&upstream(ONE));
    assert_eq!(config.upstreams[0].max_tries, 1);
    let four = "backends: [{addr: '127.0.0.1:1'}, {addr: '127.0.0.1:2'}, \
                    {addr: '127.0.0.1:3'}, {addr: '127.0.0.1:4'}]";
    assert_eq!(accepts(&upstream(four)).upstreams[0].max_tries, 3);
    let two = "backends: [{addr: '127.0.0.1:1'}, {addr: '127.0.0.1:2'}], max_tries: 5";
    assert_eq!(accepts(&upstream(two)).upstreams[0].max_tries, 2);
    // A name's addresses count: twin.test is two backends.
    let twin = "backends: [{addr: 'twin.test:1'}], max_tries: 5";
    assert_eq!(accepts(&upstream(twin)).upstreams[0].max_tries, 2);
}

#[test]
fn with_discovery_tries_default_to_three_and_are_not_capped_by_static_backends() {
    let dns = "discovery: {dns: 'api.internal:8080'}";
    let config = accepts(&upstream(dns));
    assert!(config.upstreams[0].backends.is_empty());
    assert_eq!(config.upstreams[0].max_tries, 3);
    let config = accepts(&upstream(&format!("{dns}, {ONE}")));
    assert_eq!(config.upstreams[0].backends.len(), 1);
    assert_eq!(config.upstreams[0].max_tries, 3);
    let config = accepts(&upstream(&format!("{dns}, {ONE}, max_tries: 5")));
    assert_eq!(config.upstreams[0].max_tries, 5);
}
