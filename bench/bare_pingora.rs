//! The floor for `bench/run`: the smallest useful Pingora 0.9 HTTP load balancer.
//!
//! A `ProxyHttp` whose `upstream_peer` asks a pingora-load-balancing
//! `LoadBalancer<RoundRobin>` for the next backend, and nothing else: no routing, no
//! forwarding headers, no health checks, no metrics, no logging per request. Whatever fulcrum
//! costs above this program is fulcrum's; whatever this program costs is Pingora's.
//!
//! ```sh
//! cargo build --release --example bare_pingora
//! target/release/examples/bare_pingora --listen 127.0.0.1:9003 --threads 1 127.0.0.1:9101 127.0.0.1:9102
//! ```

use async_trait::async_trait;
use clap::Parser;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};
use std::sync::Arc;

/// The allocator (the `mimalloc` feature, on by default): Pingora and the proxy allocate a few
/// small objects per request, which mimalloc serves faster than glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A bare Pingora round-robin HTTP proxy (the benchmark floor).
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9003")]
    listen: String,
    /// Pingora worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-connection L4 read buffer in bytes for accepted connections (Pingora's default:
    /// 64 KiB); for measuring what it costs in memory and CPU.
    #[arg(long)]
    l4_read_buffer: Option<usize>,
    /// Pingora's `work_stealing: false`: each worker thread runs its own single-threaded tokio
    /// runtime (Pingora's default is one multi-threaded, work-stealing runtime; fulcrum's
    /// default with one worker thread).
    #[arg(long)]
    no_work_stealing: bool,
    /// Pingora's `fast_timeout_to_tokio_threshold_seconds: 0`: timeouts of a second or more on
    /// tokio's timer instead of Pingora's own (fulcrum's default).
    #[arg(long)]
    tokio_timeouts: bool,
    /// Pingora's `upstream_keepalive_pool_size` (Pingora's default: 128; fulcrum's: 1024).
    #[arg(long)]
    keepalive_pool: Option<usize>,
    /// Backends, `IP:port`, at least one.
    #[arg(required = true)]
    backends: Vec<String>,
}

struct Bare(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Round robin ignores the key; 256 is the most backends tried when one is down.
        let backend = self
            .0
            .select(b"", 256)
            .expect("a static, non-empty backend list always yields a backend");
        Ok(Box::new(HttpPeer::new(backend, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let lb = LoadBalancer::<RoundRobin>::try_from_iter(args.backends.iter().map(String::as_str))
        .unwrap_or_else(|e| {
            eprintln!("bare_pingora: bad backend list: {e}");
            std::process::exit(2)
        });
    let port = args.listen.rsplit(':').next().unwrap_or("0");
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: !args.no_work_stealing,
        fast_timeout_to_tokio_threshold_seconds: if args.tokio_timeouts {
            Some(0)
        } else {
            ServerConf::default().fast_timeout_to_tokio_threshold_seconds
        },
        // Per-port files, so several instances (and fulcrum) never collide.
        pid_file: format!("/tmp/bare_pingora_{port}.pid"),
        upgrade_sock: format!("/tmp/bare_pingora_{port}_upgrade.sock"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: args
            .keepalive_pool
            .unwrap_or(ServerConf::default().upstream_keepalive_pool_size),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Bare(Arc::new(lb)));
    match args.l4_read_buffer {
        Some(read) => proxy.add_listener(
            ListenerConfig::tcp(args.listen.clone())
                .l4_buffer(L4BufferSettings::default().read(read)),
        ),
        None => proxy.add_tcp(&args.listen),
    }
    server.add_service(proxy);
    server.run_forever()
}
