//! Route tables, Host headers and paths: `routing::Router` agrees with a brute-force reading of
//! the routing rules, and prefix matching and stripping keep to whole segments. Paths and hosts
//! are built partly from the routes' own paths and hosts, so matches are common. See
//! `tests/fuzz_checks`.

#![no_main]

use arbitrary::Arbitrary;
use fulcrum::config::model::HostMatch;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

#[derive(Arbitrary, Debug)]
enum Host {
    Any,
    Exact(String),
    Suffix(String),
}

#[derive(Arbitrary, Debug)]
enum Part {
    RoutePath(u8),
    RouteHost(u8),
    Slash,
    Dot,
    Port(u16),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<(Host, String)>,
    host: Option<Vec<Part>>,
    path: Vec<Part>,
}

fn build(parts: &[Part], table: &[(HostMatch, String)]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::RoutePath(i) if !table.is_empty() => {
                out.push_str(&table[*i as usize % table.len()].1)
            }
            Part::RouteHost(i) if !table.is_empty() => match &table[*i as usize % table.len()].0 {
                HostMatch::Any => {}
                HostMatch::Exact(h) => out.push_str(h),
                HostMatch::Suffix(s) => {
                    out.push('x');
                    out.push_str(s)
                }
            },
            Part::RoutePath(_) | Part::RouteHost(_) => {}
            Part::Slash => out.push('/'),
            Part::Dot => out.push('.'),
            Part::Port(p) => out.push_str(&format!(":{p}")),
            Part::Text(t) => out.push_str(t),
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let table: Vec<(HostMatch, String)> = input
        .routes
        .into_iter()
        .take(32)
        .map(|(h, p)| {
            let host = match h {
                Host::Any => HostMatch::Any,
                Host::Exact(h) => HostMatch::Exact(h),
                Host::Suffix(s) => HostMatch::Suffix(format!(".{s}")),
            };
            (host, p)
        })
        .collect();
    let host = input.host.as_deref().map(|parts| build(parts, &table));
    let path = build(&input.path, &table);
    checks::routes(&table, host.as_deref(), &path);
});
