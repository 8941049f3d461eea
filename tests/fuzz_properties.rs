//! Property tests of the parsers a client or an operator can feed anything: the config loader,
//! the route matcher, the forwarding headers, hash keys and sticky cookies. The properties live
//! in `fuzz_checks/` and are shared with the cargo-fuzz targets in `fuzz/` (see
//! `fuzz/README.md`); here proptest drives them with generated inputs it shrinks on failure,
//! bounded to a few seconds of `cargo test --release`. Inputs the fuzzers (or proptest) once
//! failed on are replayed at the end, one test each.
//!
//! The random seed is fixed, so `cargo test` is repeatable and a CI run fails only on a change.
//! To explore new inputs: `PROPTEST_RNG_SEED=$RANDOM PROPTEST_CASES=20000 cargo test --release
//! --test fuzz_properties`.

mod fuzz_checks;

use fulcrum::config::model::{Forwarding, HashKey, HostMatch};
use fuzz_checks as checks;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// `cases` cases from a fixed seed, unless `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0xf01c_2026);
    }
    config
}

// ---------------------------------------------------------------------------------------------
// Config loader
// ---------------------------------------------------------------------------------------------

/// Every YAML file the repository ships (conf/ and the tutorial chapters, good and bad ones):
/// the starting points the config properties mutate.
fn seed_configs() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml") {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    out.push(text);
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join("conf"), &mut out);
    walk(&root.join("chapters"), &mut out);
    assert!(out.len() >= 3, "seed configs not found under {root:?}");
    out
}

/// Snippets that tend to matter to a YAML config loader: its keys, edge values, YAML syntax.
const SNIPPETS: &[&str] = &[
    "listeners",
    "upstreams",
    "routes",
    "backends",
    "addr",
    "weight",
    "algorithm",
    "hash_key",
    "fallback",
    "sticky",
    "cookie",
    "secret",
    "max_tries",
    "max_try_duration",
    "timeouts",
    "health_check",
    "circuit_breaker",
    "forwarding",
    "trusted_proxies",
    "admin",
    "token",
    "pingora",
    "threads",
    "demo_backends",
    "tls",
    "certificates",
    "path",
    "host",
    "headers",
    "expect_status",
    "interval",
    "max_age",
    "same_site",
    ": ",
    "\n",
    "\n  ",
    "\n- ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!tag ",
    "~",
    "null",
    "0",
    "-1",
    "1000",
    "1001",
    "65536",
    "18446744073709551616",
    "1e400",
    ".nan",
    "0x10",
    "true",
    "0ms",
    "1s",
    "18446744073709551615h",
    "9999999999999999m",
    "127.0.0.1:0",
    "[::1]:80",
    "localhost",
    "*.",
    "*.example.com",
    "/",
    "//",
    "?",
    "#",
    "\\0",
    "\u{0}",
    "\u{feff}",
    "é",
    "header:",
    "cookie:",
    "query:",
    "client_ip",
    "consistent",
    "round_robin",
    "200-299",
    "999",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "\t",
];

/// A shipped config with a few random edits: deletions, insertions of [`SNIPPETS`], swapped
/// lines. Most stay close enough to valid YAML to reach validation.
fn mutated_config() -> impl Strategy<Value = String> {
    let seeds = seed_configs();
    let n = seeds.len();
    (
        0..n,
        prop::collection::vec(
            (any::<prop::sample::Index>(), 0u8..4, 0..SNIPPETS.len()),
            1..6,
        ),
    )
        .prop_map(move |(seed, edits)| {
            let mut text = seeds[seed].clone();
            for (at, op, snippet) in edits {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                match op {
                    0 => {
                        let mut end = (i + 1 + snippet).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(i..end, "");
                    }
                    1 | 2 => text.insert_str(i, SNIPPETS[snippet]),
                    _ => {
                        let mut lines: Vec<&str> = text.lines().collect();
                        if lines.len() > 1 {
                            let a = at.index(lines.len());
                            let b = snippet % lines.len();
                            lines.swap(a, b);
                        }
                        text = lines.join("\n");
                    }
                }
            }
            text
        })
}

proptest! {
    #![proptest_config(config(1000))]

    /// Shipped configs with random edits load or give an error; never a panic.
    #[test]
    fn edited_configs_load_or_fail_cleanly(text in mutated_config()) {
        checks::config_text(&text);
    }

    /// Text assembled from config keys, values and YAML syntax loads or gives an error.
    #[test]
    fn snippet_soup_loads_or_fails_cleanly(parts in prop::collection::vec(select(SNIPPETS), 0..40)) {
        checks::config_text(&parts.concat());
    }

    /// Any text at all loads or gives an error.
    #[test]
    fn any_text_loads_or_fails_cleanly(text in any::<String>()) {
        checks::config_text(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// Route matcher
// ---------------------------------------------------------------------------------------------

fn host_match() -> impl Strategy<Value = HostMatch> {
    prop_oneof![
        Just(HostMatch::Any),
        select(&["a.com", "b.a.com", "c.b.a.com", "x", "a.co"][..])
            .prop_map(|h| HostMatch::Exact(h.to_string())),
        select(&[".a.com", ".b.a.com", ".com", ".x"][..])
            .prop_map(|s| HostMatch::Suffix(s.to_string())),
    ]
}

/// Paths over a small alphabet, so prefixes of each other are common.
const PATH: &str = "/([ab]{0,2}/?){0,4}";

fn host_header() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        (
            select(
                &[
                    "a.com",
                    "b.a.com",
                    "B.A.Com",
                    "c.b.a.com",
                    "x",
                    "a.co",
                    "com",
                    ".com"
                ][..]
            ),
            select(&["", ".", ":8080", ".:80", ":"][..]),
        )
            .prop_map(|(h, tail)| format!("{h}{tail}")),
        select(&["[::1]:8080", "[::1]", "::1", "[", "]", ""][..]).prop_map(String::from),
        "[ -~]{0,12}",
    ])
}

proptest! {
    #![proptest_config(config(2000))]

    /// The router picks what the routing rules say (checked by brute force), on whole segments;
    /// stripping the picked prefix keeps the rest of the path.
    #[test]
    fn router_follows_the_rules(
        table in prop::collection::vec((host_match(), PATH), 0..12),
        host in host_header(),
        path in prop_oneof![4 => PATH, 1 => "[ -~]{0,12}", 1 => any::<String>()],
    ) {
        checks::routes(&table, host.as_deref(), &path);
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarding headers
// ---------------------------------------------------------------------------------------------

const ADDRS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.1.2.3",
    "192.0.2.7",
    "198.51.100.1",
    "::1",
    "2001:db8::1",
    "2001:db8::2",
    "::ffff:10.0.0.1",
    "::ffff:192.0.2.7",
];

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => select(ADDRS).prop_map(|a| a.parse().unwrap()),
        1 => any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        1 => any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn forwarding_policy() -> impl Strategy<Value = Forwarding> {
    let nets = select(
        &[
            "10.0.0.0/8",
            "10.0.0.1/32",
            "192.0.2.0/24",
            "::1/128",
            "2001:db8::/32",
            "0.0.0.0/0",
            "::/0",
            "::ffff:10.0.0.0/104",
        ][..],
    );
    (prop::collection::vec(nets, 0..4), any::<[bool; 5]>()).prop_map(|(nets, f)| Forwarding {
        trusted_proxies: nets.iter().map(|n| n.parse().unwrap()).collect(),
        x_forwarded_for: f[0],
        x_forwarded_proto: f[1],
        x_forwarded_host: f[2],
        forwarded: f[3],
        via: f[4],
        served_by_header: None,
        preserve_header_case: false,
        trace_context: true,
    })
}

/// An `X-Forwarded-For` value: addresses (plain, bracketed, with ports) and some garbage.
fn xff_value() -> impl Strategy<Value = Vec<u8>> {
    let item = prop_oneof![
        6 => addr().prop_map(|a| a.to_string()),
        1 => select(&["", " ", "unknown", "[::1]", "1.2.3.4:80", "_hidden", "1.2.3"][..])
            .prop_map(String::from),
    ];
    (
        prop::collection::vec(item, 0..5),
        select(&[",", ", ", " ,", ",,"][..]),
    )
        .prop_map(|(items, sep)| items.join(sep).into_bytes())
}

fn header() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let names = select(
        &[
            "forwarded",
            "via",
            "x-forwarded-proto",
            "x-forwarded-host",
            "host",
        ][..],
    );
    prop_oneof![
        3 => xff_value().prop_map(|v| ("x-forwarded-for", v)),
        1 => (Just("host"), "[a-z.:\\\\\"\t ]{0,10}".prop_map(String::into_bytes)),
        2 => (names.clone(), "[ -~]{0,16}".prop_map(String::into_bytes)),
        1 => (names, prop::collection::vec(any::<u8>(), 0..12)),
        1 => (Just("x-forwarded-for"), prop::collection::vec(any::<u8>(), 0..12)),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    /// The client address is the peer or the believed part of the chain; untrusted peers'
    /// headers are replaced, trusted ones' extended; `Forwarded` is valid RFC 7239.
    #[test]
    fn forwarding_believes_only_trusted_peers(
        fwd in forwarding_policy(),
        headers in prop::collection::vec(header(), 0..6),
        peer in addr(),
        https in any::<bool>(),
    ) {
        let proto = if https { "https" } else { "http" };
        checks::forwarding(&fwd, &headers, peer, proto);
    }
}

// ---------------------------------------------------------------------------------------------
// Hash keys and sticky cookies
// ---------------------------------------------------------------------------------------------

fn hash_key() -> impl Strategy<Value = HashKey> {
    prop_oneof![
        Just(HashKey::ClientIp),
        Just(HashKey::Path),
        select(&["cookie", "x-user", "host"][..]).prop_map(|h| HashKey::Header(h.parse().unwrap())),
        "[a-c= ]{0,3}".prop_map(HashKey::Cookie),
        "[a-c=]{0,3}".prop_map(HashKey::Query),
    ]
}

fn uri() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "/[a-c/]{0,4}(\\?[a-c=&]{0,10})?".prop_map(String::into_bytes),
        1 => "[ -~]{0,16}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn request_header() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    (
        select(&["cookie", "x-user", "host"][..]),
        prop_oneof![
            3 => "[a-c=; \t]{0,16}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..16),
        ],
    )
}

proptest! {
    #![proptest_config(config(2000))]

    /// A hash key is never empty and is exactly what the request carries for it.
    #[test]
    fn hash_keys_come_from_the_request(
        uri in uri(),
        headers in prop::collection::vec(request_header(), 0..4),
        key in hash_key(),
        client in addr(),
    ) {
        checks::hash_key_request(&uri, &headers, &key, client);
    }

    /// A cookie lookup finds the first pair with that name, whatever the padding and lines.
    #[test]
    fn cookie_lookup_finds_the_first_pair(
        pairs in prop::collection::vec(("[a-c]{0,2}", "[a-c=\"]{0,3}", any::<bool>()), 0..6),
        pad in select(&["", " ", "\t", " \t "][..]),
        wanted in "[a-c]{0,2}",
    ) {
        checks::cookie_pairs(&pairs, pad, &wanted);
    }

    /// A query lookup finds the raw value of the first parameter with that name.
    #[test]
    fn query_lookup_finds_the_first_parameter(
        params in prop::collection::vec(("[a-c%]{0,2}", prop::option::of("[a-c=%]{0,3}")), 0..6),
        wanted in "[a-c]{0,2}",
    ) {
        checks::query_pairs(&params, &wanted);
    }

    /// A sticky cookie for backend i decodes to i; tampered or foreign values to nothing.
    #[test]
    fn sticky_cookies_decode_to_their_backend(
        secret in "[ -~]{16,40}",
        foreign in "[ -~]{16,40}",
        addrs in prop::collection::vec(
            prop_oneof![
                select(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:81", "[::1]:80"][..])
                    .prop_map(|a| a.parse::<SocketAddr>().unwrap()),
                any::<([u8; 4], u16)>().prop_map(SocketAddr::from),
            ],
            1..6,
        ),
        name in "[a-zA-Z0-9_.-]{1,12}",
        tamper in any::<(usize, u8)>(),
        other in prop_oneof!["[a-z_=; ]{0,24}".prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..24)],
    ) {
        checks::sticky(secret.as_bytes(), foreign.as_bytes(), &addrs, &name, tamper, &other);
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs the fuzzers found (fuzz/regressions/), replayed as they were.
// ---------------------------------------------------------------------------------------------

/// fuzz/regressions/routes/strip-prefix-trailing-slash-then-empty-segment: a prefix ending in
/// `/` took the path's own next `/` with it when stripped (`/api/` stripped `/api//x` to `/x`,
/// `/api` to `//x`); fixed in `routing::strip_prefix`.
#[test]
fn regression_strip_prefix_trailing_slash_then_empty_segment() {
    checks::routes(&[(HostMatch::Any, "\0d/".into())], None, "\0d//\0d/");
    checks::routes(&[(HostMatch::Any, "/api/".into())], None, "/api//x");
}

/// fuzz/regressions/hash_key/sticky-cookie-named-a: a sticky cookie named `a` among the
/// property's own neighbour cookie `a=1` (a fault of the property, which now names its
/// neighbours after the sticky cookie so they never collide).
#[test]
fn regression_sticky_cookie_named_like_a_neighbour() {
    let addr: SocketAddr = "68.57.66.55:17460".parse().unwrap();
    checks::sticky(b"", b"", &[addr], "a", (8646630909086206217, 0), b"");
}

/// fuzz/regressions/forwarding/forwarded-host-backslash: a Host of `\` made the `Forwarded`
/// element `for=...;host="\";proto=http`, whose quoted-string never closes; fixed in
/// `forwarding::apply`, which leaves such a host out as it did hosts with `"`.
#[test]
fn regression_forwarded_host_backslash() {
    let fwd = Forwarding {
        trusted_proxies: Vec::new(),
        x_forwarded_for: false,
        x_forwarded_proto: true,
        x_forwarded_host: false,
        forwarded: true,
        via: false,
        served_by_header: None,
        preserve_header_case: false,
        trace_context: true,
    };
    let headers = [
        ("host", b"\\".to_vec()),
        ("x-real-ip", Vec::new()),
        ("x-forwarded-for", Vec::new()),
    ];
    checks::forwarding(&fwd, &headers, "249.91.213.109".parse().unwrap(), "http");
    checks::forwarding(
        &fwd,
        &[("host", b"a\\b".to_vec())],
        "::1".parse().unwrap(),
        "https",
    );
}

/// Found by proptest: `Cookie: b\t=` names cookie `b` (names are trimmed); the property's
/// check that the header names the cookie did not allow the padding (a fault of the property).
#[test]
fn regression_cookie_name_padded_before_equals() {
    let headers = [("cookie", b"b\t=".to_vec())];
    let client: IpAddr = "10.0.0.1".parse().unwrap();
    checks::hash_key_request(b"/", &headers, &HashKey::Cookie("b".into()), client);
    let headers = [("cookie", b"b \t= x ; c=1".to_vec())];
    checks::hash_key_request(b"/", &headers, &HashKey::Cookie("b".into()), client);
}
