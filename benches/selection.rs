//! Nanoseconds per backend selection, for every algorithm, at 3, 100 and 1,000 backends,
//! single-threaded and with two threads contending.
//!
//! One iteration is what a request does to choose: `UpstreamGroup::select` plus counting the
//! request in flight and un-counting it (the `InFlight` guard). Run with
//! `cargo bench --bench selection`; `-- --quick` for a fast pass.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fulcrum::balancer::stats::InFlight;
use fulcrum::balancer::{Pick, UpstreamGroup};
use fulcrum::config::model::{
    Algorithm, Backend, HashKey, SameSite, StickyCookie, Timeouts, Upstream,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn group(algorithm: Algorithm, n: usize) -> UpstreamGroup {
    let backends = (0..n)
        .map(|i| Backend {
            addr: format!("127.0.{}.{}:8080", i / 250, i % 250 + 1)
                .parse()
                .expect("address"),
            host: None,
            weight: (i % 5 + 1) as u32,
        })
        .collect();
    UpstreamGroup::new(Upstream {
        name: "bench".into(),
        algorithm,
        hash_key: HashKey::ClientIp,
        fallback: Algorithm::RoundRobin,
        sticky: (algorithm == Algorithm::Cookie).then(|| StickyCookie {
            name: "sid".into(),
            path: "/".into(),
            max_age: None,
            http_only: true,
            secure: false,
            same_site: Some(SameSite::Lax),
            secret: b"bench secret, 16+ bytes".to_vec(),
        }),
        backends,
        timeouts: Timeouts::default(),
        tls: None,
        max_tries: 3,
        max_try_duration: None,
        health_check: None,
        circuit_breaker: Default::default(),
        backend_limit: None,
        discovery: None,
        slow_start: None,
    })
}

/// One request's selection; `seq` varies the key for hashing algorithms.
fn select_once(g: &UpstreamGroup, seq: u32) -> usize {
    let key = seq.to_be_bytes();
    let pick = Pick {
        key: Some(&key),
        sticky: (g.config.algorithm == Algorithm::Cookie).then_some(seq as usize % g.len()),
    };
    let chosen = g.select(pick, |_| false).expect("a backend");
    let i = chosen.index;
    let guard = InFlight::start(g.stats, i, chosen.trial);
    black_box(&guard);
    i
}

fn bench(c: &mut Criterion) {
    let mut single = c.benchmark_group("select");
    single.warm_up_time(Duration::from_millis(300));
    single.measurement_time(Duration::from_secs(1));
    for (name, algorithm) in Algorithm::ALL {
        for n in [3usize, 100, 1000] {
            let g = group(*algorithm, n);
            let mut seq = 0u32;
            single.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    select_once(&g, seq)
                })
            });
        }
    }
    single.finish();

    let mut contended = c.benchmark_group("select_2_threads");
    contended.warm_up_time(Duration::from_millis(300));
    contended.measurement_time(Duration::from_secs(1));
    let workers = Workers::start();
    for (name, algorithm) in Algorithm::ALL {
        for n in [3usize, 1000] {
            let g: &'static UpstreamGroup = Box::leak(Box::new(group(*algorithm, n)));
            contended.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                // Both threads select `iters` times, starting together; report the mean, over
                // the two threads, of the time each took (not the time it takes to wake them).
                b.iter_custom(|iters| workers.run(g, iters))
            });
        }
    }
    contended.finish();
}

/// What a worker is told to do: select `iters` times from a group once both workers have
/// arrived at the start line.
type Order = (&'static UpstreamGroup, u64, Arc<AtomicUsize>);

/// Two threads that select on command, like a proxy's worker threads: the same two for every
/// group, so that, as in the proxy, selection sees a fixed set of threads.
struct Workers {
    go: Vec<mpsc::Sender<Order>>,
    done: mpsc::Receiver<Duration>,
}

impl Workers {
    fn start() -> Workers {
        let (done_tx, done) = mpsc::channel();
        let go = (0..2u32)
            .map(|t| {
                let (tx, rx) = mpsc::channel::<Order>();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    for (g, iters, start_line) in rx {
                        // Spin until the other worker is here too, so both run the whole time.
                        start_line.fetch_add(1, Ordering::SeqCst);
                        while start_line.load(Ordering::SeqCst) < 2 {
                            std::hint::spin_loop();
                        }
                        let start = Instant::now();
                        for s in 0..iters {
                            black_box(select_once(g, (s as u32) ^ (t << 31)));
                        }
                        let _ = done_tx.send(start.elapsed());
                    }
                });
                tx
            })
            .collect();
        Workers { go, done }
    }

    fn run(&self, g: &'static UpstreamGroup, iters: u64) -> Duration {
        let start_line = Arc::new(AtomicUsize::new(0));
        for tx in &self.go {
            tx.send((g, iters, Arc::clone(&start_line)))
                .expect("worker");
        }
        let took: Duration = self
            .go
            .iter()
            .map(|_| self.done.recv().expect("worker"))
            .sum();
        took / self.go.len() as u32
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
