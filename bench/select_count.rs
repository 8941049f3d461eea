//! Selections in a loop, for `valgrind --tool=callgrind` to count instructions where timing is
//! too noisy (see `bench/select-instructions`): `select_count ALGORITHM BACKENDS ITERATIONS`.
//!
//! One iteration is what a request does to choose: `UpstreamGroup::select` on a group built
//! from a config (backends 127.0.x.y:8080, weights 1-5), then counting the request in flight
//! and un-counting it. Run it with 0 iterations and with N: the difference over N is the
//! instructions per selection, setup left out.

use fulcrum::balancer::stats::InFlight;
use fulcrum::balancer::{Pick, UpstreamGroup};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: select_count ALGORITHM BACKENDS ITERATIONS");
        std::process::exit(2);
    }
    let algorithm = args[1].as_str();
    let n: usize = args[2].parse().expect("BACKENDS is a number");
    let iterations: u32 = args[3].parse().expect("ITERATIONS is a number");
    let mut yaml = format!(
        "listeners:\n  - addr: 127.0.0.1:8080\nupstreams:\n  app:\n    algorithm: {algorithm}\n    backends:\n"
    );
    for i in 0..n {
        yaml += &format!(
            "      - {{addr: \"127.0.{}.{}:8080\", weight: {}}}\n",
            i / 250,
            i % 250 + 1,
            i % 5 + 1
        );
    }
    if algorithm == "cookie" {
        yaml += "    sticky: {cookie: sid, secret: \"bench secret, 16+ bytes\"}\n";
    }
    yaml += "routes:\n  - {path: /, upstream: app}\n";
    let spec = fulcrum::config::parse_yaml(&yaml).expect("the config parses");
    let config = fulcrum::config::validate::validate(&spec).expect("the config is valid");
    let g = UpstreamGroup::new(config.upstreams[0].clone());
    let mut sum = 0usize;
    for seq in 0..iterations {
        let key = seq.to_be_bytes();
        let pick = Pick {
            key: Some(&key),
            sticky: (algorithm == "cookie").then(|| seq as usize % n),
        };
        let chosen = g.select(pick, |_| false).expect("a backend");
        let guard = InFlight::start(g.stats, chosen.index, chosen.trial);
        black_box(&guard);
        sum += chosen.index;
    }
    println!("{sum}");
}
