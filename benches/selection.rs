//! Nanoseconds per backend selection, for every algorithm, at 3, 100 and 1,000 backends,
//! single-threaded and with two threads contending.
//!
//! One iteration is what a request does to choose: read the group's current backends
//! (`UpstreamGroup::snapshot`: the thread's own reference to the snapshot, checked against
//! the group's generation), `Members::select`, and counting the request in flight and
//! un-counting it (the `InFlight` guard).
//!
//! Two more groups measure dynamic upstreams: `update` is the cost of one discovery update
//! of a 1,000-backend group (a new snapshot with every selector), and `select_while_updating`
//! is selection on one thread while another thread updates that group without pause (updates
//! take no lock that selection waits on, so the figure should stay near `select`'s).
//!
//! Run with `cargo bench --bench selection`; `-- --quick` for a fast pass.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fulcrum::balancer::stats::InFlight;
use fulcrum::balancer::{Pick, Source, UpstreamGroup};
use fulcrum::config::model::{
    Algorithm, Backend, Discovery, DiscoverySource, HashKey, SameSite, StickyCookie, Timeouts,
    Upstream,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn group(algorithm: Algorithm, n: usize) -> UpstreamGroup {
    UpstreamGroup::new(upstream(algorithm, n))
}

fn upstream(algorithm: Algorithm, n: usize) -> Upstream {
    let backends = (0..n)
        .map(|i| Backend {
            addr: format!("127.0.{}.{}:8080", i / 250, i % 250 + 1)
                .parse()
                .expect("address"),
            host: None,
            weight: (i % 5 + 1) as u32,
        })
        .collect();
    Upstream {
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
        protocol: Default::default(),
        max_tries: 3,
        max_try_duration: None,
        health_check: None,
        circuit_breaker: Default::default(),
        backend_limit: None,
        discovery: None,
        slow_start: None,
    }
}

/// One request's selection; `seq` varies the key for hashing algorithms.
fn select_once(g: &UpstreamGroup, seq: u32) -> usize {
    let key = seq.to_be_bytes();
    let pick = Pick {
        key: Some(&key),
        sticky: (g.config.algorithm == Algorithm::Cookie)
            .then(|| seq as usize % g.config.backends.len()),
    };
    let chosen = g
        .snapshot()
        .select(g.stats, pick, |_| false)
        .expect("a backend");
    let i = chosen.index;
    let guard = InFlight::start(g.stats, i, chosen.trial);
    black_box(&guard);
    i
}

/// The backends of `group(_, n)` with the last `drop` left out and `add` new ones in.
fn fleet(n: usize, drop: usize, add: usize) -> Vec<Backend> {
    (0..n - drop)
        .chain(n..n + add)
        .map(|i| Backend {
            addr: format!(
                "127.{}.{}.{}:8080",
                1 + i / 62500,
                i / 250 % 250,
                i % 250 + 1
            )
            .parse()
            .expect("address"),
            host: None,
            weight: 1,
        })
        .collect()
}

/// Dynamic upstreams: the cost of an update, and selection while updates run.
fn bench_updates(c: &mut Criterion) {
    let mut updates = c.benchmark_group("update");
    updates.warm_up_time(Duration::from_millis(300));
    updates.measurement_time(Duration::from_secs(2));
    updates.sample_size(20);
    for (name, algorithm) in [
        ("round_robin", Algorithm::RoundRobin),
        ("consistent", Algorithm::Consistent),
        ("least_connections", Algorithm::LeastConnections),
    ] {
        let g = empty_group(algorithm);
        let sets = [fleet(1000, 0, 0), fleet(1000, 10, 10)];
        let mut turn = 0usize;
        updates.bench_with_input(BenchmarkId::new(name, 1000), &1000, |b, _| {
            b.iter(|| {
                turn += 1;
                g.set_discovered(Source::Dns, sets[turn % 2].clone())
            })
        });
    }
    updates.finish();

    let mut during = c.benchmark_group("select_while_updating");
    during.warm_up_time(Duration::from_millis(300));
    during.measurement_time(Duration::from_secs(1));
    for (name, algorithm) in [
        ("round_robin", Algorithm::RoundRobin),
        ("consistent", Algorithm::Consistent),
        ("least_connections", Algorithm::LeastConnections),
    ] {
        let g: &'static UpstreamGroup = Box::leak(Box::new(empty_group(algorithm)));
        g.set_discovered(Source::Dns, fleet(1000, 0, 0));
        let stop = Arc::new(AtomicUsize::new(0));
        let updater = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let sets = [fleet(1000, 10, 10), fleet(1000, 0, 0)];
                let mut turn = 0usize;
                while stop.load(Ordering::Relaxed) == 0 {
                    turn += 1;
                    g.set_discovered(Source::Dns, sets[turn % 2].clone());
                }
                turn
            })
        };
        let mut seq = 0u32;
        during.bench_with_input(BenchmarkId::new(name, 1000), &1000, |b, _| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                select_once(g, seq)
            })
        });
        stop.store(1, Ordering::Relaxed);
        let updates = updater.join().expect("updater");
        eprintln!("select_while_updating/{name}: {updates} updates ran meanwhile");
    }
    during.finish();
}

/// A group with no static backends and room for discovered ones.
fn empty_group(algorithm: Algorithm) -> UpstreamGroup {
    let mut g = upstream(algorithm, 0);
    g.discovery = Some(Discovery {
        source: DiscoverySource::Dns {
            name: "bench.test".into(),
            port: 8080,
        },
        interval: Duration::from_secs(5),
        required: true,
        max_backends: 1100,
    });
    UpstreamGroup::new(g)
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

criterion_group!(benches, bench, bench_updates);
criterion_main!(benches);
