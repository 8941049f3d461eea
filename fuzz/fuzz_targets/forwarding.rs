//! Forwarding policies, request headers and peers: `forwarding::client_ip` believes exactly the
//! trusted part of `X-Forwarded-For`, and `forwarding::apply` replaces what untrusted peers
//! send, extends what trusted ones send, and writes valid RFC 7239. See `tests/fuzz_checks`.

#![no_main]

use arbitrary::Arbitrary;
use fulcrum::config::model::Forwarding;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[allow(dead_code)]
#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

/// An address; `Pool` draws from a few, so peers, chains and trusted ranges meet often.
#[derive(Arbitrary, Debug)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
    Mapped([u8; 4]),
    Pool(u8),
}

impl Ip {
    fn get(&self) -> IpAddr {
        match self {
            Ip::V4(o) => IpAddr::V4(Ipv4Addr::from(*o)),
            Ip::V6(o) => IpAddr::V6(Ipv6Addr::from(*o)),
            Ip::Mapped(o) => IpAddr::V6(Ipv4Addr::from(*o).to_ipv6_mapped()),
            Ip::Pool(n) => {
                let x = n / 4 % 4;
                match n % 4 {
                    0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, x)),
                    1 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, x)),
                    2 => IpAddr::V6(Ipv4Addr::new(10, 0, 0, x).to_ipv6_mapped()),
                    _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x.into())),
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Item {
    Ip(Ip),
    Text(String),
}

const NAMES: &[&str] = &[
    "x-forwarded-for",
    "forwarded",
    "via",
    "x-forwarded-proto",
    "x-forwarded-host",
    "host",
    "x-real-ip",
];

#[derive(Arbitrary, Debug)]
enum Header {
    /// An `X-Forwarded-For` line from items and a separator.
    Xff(Vec<Item>, u8),
    /// Any bytes under one of [`NAMES`].
    Raw(u8, Vec<u8>),
    /// A `Host` line.
    Host(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    trusted: Vec<(Ip, u8)>,
    flags: u8,
    peer: Ip,
    headers: Vec<Header>,
    https: bool,
}

fuzz_target!(|input: Input| {
    let trusted_proxies = input
        .trusted
        .iter()
        .take(8)
        .map(|(ip, len)| {
            let ip = ip.get();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            ipnet::IpNet::new(ip, len % (max + 1)).expect("prefix length in range")
        })
        .collect();
    let f = input.flags;
    let fwd = Forwarding {
        trusted_proxies,
        x_forwarded_for: f & 1 != 0,
        x_forwarded_proto: f & 2 != 0,
        x_forwarded_host: f & 4 != 0,
        forwarded: f & 8 != 0,
        via: f & 16 != 0,
        served_by_header: None,
        preserve_header_case: false,
        trace_context: true,
    };
    let headers: Vec<(&str, Vec<u8>)> = input
        .headers
        .iter()
        .take(16)
        .map(|h| match h {
            Header::Xff(items, sep) => {
                let sep = [",", ", ", " , ", ",,"][*sep as usize % 4];
                let items: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Item::Ip(ip) => ip.get().to_string(),
                        Item::Text(t) => t.clone(),
                    })
                    .collect();
                ("x-forwarded-for", items.join(sep).into_bytes())
            }
            Header::Raw(n, v) => (NAMES[*n as usize % NAMES.len()], v.clone()),
            Header::Host(h) => ("host", h.clone().into_bytes()),
        })
        .collect();
    let proto = if input.https { "https" } else { "http" };
    checks::forwarding(&fwd, &headers, input.peer.get(), proto);
});
