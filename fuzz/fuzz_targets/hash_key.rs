//! Hash-key extraction (`proxy::hash_key`: client IP, path, header, cookie, query parameter)
//! and sticky cookies (`balancer::sticky`): keys are what the request carries, cookie and query
//! lookups find the first pair named so, and a sticky value decodes to its backend while
//! tampered ones decode to none. See `tests/fuzz_checks`.

#![no_main]

use arbitrary::Arbitrary;
use fulcrum::config::model::HashKey;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[allow(dead_code)]
#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

const NAMES: &[&str] = &["cookie", "x-user", "host", "x-forwarded-for"];

#[derive(Arbitrary, Debug)]
enum Key {
    ClientIp,
    Path,
    Header(u8),
    Cookie(String),
    Query(String),
}

/// A name to look up: one of the pairs' own names (index), or any text.
#[derive(Arbitrary, Debug)]
enum Wanted {
    Listed(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    uri: Vec<u8>,
    headers: Vec<(u8, Vec<u8>)>,
    key: Key,
    v6: bool,
    client: [u8; 16],
    pairs: Vec<(String, String, bool)>,
    pad: u8,
    wanted: Wanted,
    params: Vec<(String, Option<String>)>,
    param: Wanted,
    secret: Vec<u8>,
    foreign_secret: Vec<u8>,
    backends: Vec<([u8; 4], u16)>,
    cookie_name: String,
    tamper: (usize, u8),
    other_cookie: Vec<u8>,
}

fn pick<'a>(w: &'a Wanted, names: &[&'a str]) -> &'a str {
    match w {
        Wanted::Listed(i) if !names.is_empty() => names[*i as usize % names.len()].trim_ascii(),
        Wanted::Listed(_) => "",
        Wanted::Text(t) => t,
    }
}

fuzz_target!(|input: Input| {
    let client = if input.v6 {
        IpAddr::V6(Ipv6Addr::from(input.client))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            input.client[0],
            input.client[1],
            input.client[2],
            input.client[3],
        ))
    };
    let headers: Vec<(&str, Vec<u8>)> = input
        .headers
        .iter()
        .take(16)
        .map(|(n, v)| (NAMES[*n as usize % NAMES.len()], v.clone()))
        .collect();
    let key = match &input.key {
        Key::ClientIp => HashKey::ClientIp,
        Key::Path => HashKey::Path,
        Key::Header(n) => HashKey::Header(NAMES[*n as usize % NAMES.len()].parse().expect("valid")),
        Key::Cookie(c) => HashKey::Cookie(c.clone()),
        Key::Query(q) => HashKey::Query(q.clone()),
    };
    checks::hash_key_request(&input.uri, &headers, &key, client);

    let names: Vec<&str> = input.pairs.iter().map(|(n, _, _)| n.as_str()).collect();
    let pad = ["", " ", "\t", "  "][input.pad as usize % 4];
    checks::cookie_pairs(&input.pairs, pad, pick(&input.wanted, &names));

    let names: Vec<&str> = input.params.iter().map(|(n, _)| n.as_str()).collect();
    checks::query_pairs(&input.params, pick(&input.param, &names));

    let addrs: Vec<SocketAddr> = input
        .backends
        .iter()
        .take(8)
        .map(|(ip, port)| SocketAddr::from((*ip, *port)))
        .collect();
    let name = if checks::is_cookie_name(&input.cookie_name) {
        input.cookie_name.as_str()
    } else {
        "fulcrum_sticky"
    };
    checks::sticky(
        &input.secret,
        &input.foreign_secret,
        &addrs,
        name,
        input.tamper,
        &input.other_cookie,
    );
});
