//! fulcrum's own CRC-32 and random draws against the crates' plain calls, on the inputs
//! selection gives them, in one run so that the machine's load weighs on both alike: the
//! reason each of them is kept (see their module docs). Run with `cargo bench --bench twins`.

use criterion::{criterion_group, criterion_main, Criterion};
use fulcrum::balancer::{crc32, fast_rng};
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("twins");
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    let keys: [&[u8]; 3] = [
        &[127, 0, 0, 1],
        b"127.0.0.1\x008080",
        b"/images/2024/cats/a-rather-long-name.png",
    ];
    for key in keys {
        let n = key.len();
        g.bench_function(format!("crc32_hand/{n}"), |b| {
            b.iter(|| crc32::hash(black_box(key)))
        });
        g.bench_function(format!("crc32fast/{n}"), |b| {
            b.iter(|| crc32fast::hash(black_box(key)))
        });
    }
    g.bench_function("fast_rng/below_1000", |b| {
        b.iter(|| fast_rng::below(black_box(1000)))
    });
    g.bench_function("fastrand/usize_1000", |b| {
        b.iter(|| fastrand::usize(..black_box(1000)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
