//! Worked solutions to the chapters' code exercises. The chapters quote this file verbatim, and
//! the tests below compile and run it against the real Pingora and fulcrum APIs, so a solution
//! cannot go stale the way copied tutorial code does.

use async_trait::async_trait;
use fulcrum::balancer::smooth::{smooth_sequence, SmoothWeighted};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use pingora_load_balancing::selection::consistent::KetamaHashing;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};
use std::collections::BTreeSet;
use std::sync::Arc;

// Chapter 01, exercise 3: the smallest Pingora proxy.

/// Sends every request to one backend.
pub struct OneBackend {
    /// `IP:port` of the backend.
    pub backend: String,
}

#[async_trait]
impl ProxyHttp for OneBackend {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.backend.as_str(),
            false,
            String::new(),
        )))
    }
}

/// A server with one proxy service on `listen` in front of `backend`; `run_forever()` runs it.
pub fn one_backend_server(listen: &str, backend: &str) -> Server {
    let mut server = Server::new(None).expect("a server with default settings");
    server.bootstrap();
    let proxy = OneBackend {
        backend: backend.to_string(),
    };
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(listen);
    server.add_service(service);
    server
}

// Chapter 04, exercise 1: the smooth sequence for other weights.

/// The first `n` picks of smooth weighted round robin, as letters (`a` = the first backend).
pub fn smooth_letters(weights: &[u64], n: usize) -> String {
    let sequence = smooth_sequence(weights);
    (0..n)
        .map(|i| (b'a' + sequence[i % sequence.len()] as u8) as char)
        .collect()
}

// Chapter 04, exercise 4: fulcrum's selector inside Pingora's own LoadBalancer.

/// fulcrum's smooth schedule as a Pingora selector, over the backends in Pingora's order (by
/// address).
pub struct SmoothWrr {
    backends: Vec<Backend>,
    schedule: SmoothWeighted,
}

impl BackendSelection for SmoothWrr {
    type Iter = ScheduledFirst;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        let weights: Vec<u64> = backends.iter().map(|b| b.weight as u64).collect();
        SmoothWrr {
            backends: backends.iter().cloned().collect(),
            schedule: SmoothWeighted::new(&weights),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> ScheduledFirst {
        ScheduledFirst {
            selector: Arc::clone(self),
            start: self.schedule.start(),
            step: 0,
        }
    }
}

/// The scheduled backend first, then every other one once, in order after it: what a retry
/// asks for is "another one", and every one is reachable.
pub struct ScheduledFirst {
    selector: Arc<SmoothWrr>,
    start: usize,
    step: usize,
}

impl BackendIter for ScheduledFirst {
    fn next(&mut self) -> Option<&Backend> {
        let backends = &self.selector.backends;
        if self.step >= backends.len() {
            return None;
        }
        let i = (self.start + self.step) % backends.len();
        self.step += 1;
        backends.get(i)
    }
}

/// A Pingora `LoadBalancer` that picks with fulcrum's smooth weighted round robin.
pub fn pingora_lb_with_smooth_wrr(backends: &[(&str, usize)]) -> LoadBalancer<SmoothWrr> {
    let mut set = BTreeSet::new();
    for (addr, weight) in backends {
        set.insert(Backend::new_with_weight(addr, *weight).expect("an IP:port"));
    }
    let lb = LoadBalancer::<SmoothWrr>::from_backends(Backends::new(Static::new(set)));
    // Discovery runs once here; a static list never blocks.
    futures::executor::block_on(lb.update()).expect("static discovery");
    lb
}

/// The addresses of the next `n` picks (`select(key, max_iterations)`: two arguments).
pub fn picks(lb: &LoadBalancer<SmoothWrr>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| lb.select(b"", 8).expect("a backend").addr.to_string())
        .collect()
}

// Chapter 05, exercise 3: Pingora's HTTP health check on its own.

/// Pingora's `HttpHealthCheck` for `GET path`, passing only on the statuses in `expect`: the
/// validator replaces Pingora's default rule, "200 and nothing else".
pub fn http_check(path: &str, expect: &'static [u16]) -> HttpHealthCheck {
    let mut check = HttpHealthCheck::new("localhost", false);
    check.req.set_uri(path.parse().expect("a path"));
    check.validator = Some(Box::new(move |resp: &ResponseHeader| {
        let status = resp.status.as_u16();
        if expect.contains(&status) {
            Ok(())
        } else {
            Error::e_explain(
                ErrorType::CustomCode("unexpected status", status),
                format!("health check got {status}"),
            )
        }
    }));
    check
}

/// Check one backend once: `Ok(())` when it passes.
pub async fn check_once(check: &HttpHealthCheck, addr: &str) -> Result<()> {
    let backend = Backend::new(addr)?;
    check.check(&backend).await
}

// Chapter 07, exercise 3: how many keys move when a backend leaves a Ketama ring.

/// The backend Pingora's Ketama ring proposes first for `key`.
fn ketama_first(ring: &Arc<KetamaHashing>, key: &[u8]) -> String {
    let mut candidates = ring.iter(key);
    candidates.next().expect("a backend").addr.to_string()
}

/// Hashes `keys` keys on a ring over `addrs` and on a ring without the last of them; returns
/// how many keys changed backend, and how many of those had been on the removed one.
pub fn ketama_moves(addrs: &[&str], keys: u32) -> (usize, usize) {
    let ring = |addrs: &[&str]| {
        let set: BTreeSet<Backend> = addrs
            .iter()
            .map(|a| Backend::new(a).expect("an IP:port"))
            .collect();
        Arc::new(KetamaHashing::build(&set))
    };
    let (all, fewer) = (ring(addrs), ring(&addrs[..addrs.len() - 1]));
    let removed = addrs[addrs.len() - 1];
    let (mut moved, mut from_removed) = (0, 0);
    for k in 0..keys {
        let key = k.to_be_bytes();
        let before = ketama_first(&all, &key);
        if before != ketama_first(&fewer, &key) {
            moved += 1;
            from_removed += usize::from(before == removed);
        }
    }
    (moved, from_removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on an ephemeral port that reads one request and writes `answer`.
    async fn answers_once(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn pingora_http_check_with_a_validator() {
        let check = http_check("/healthz", &[200, 204]);
        let ok = answers_once("HTTP/1.1 204 No Content\r\n\r\n").await;
        assert!(check_once(&check, &ok).await.is_ok());
        let busy =
            answers_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        let e = check_once(&check, &busy).await.unwrap_err();
        assert!(e.to_string().contains("health check got 503"), "{e}");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert!(check_once(&check, &closed).await.is_err());
    }

    #[test]
    fn the_smallest_proxy_builds_a_server() {
        let server = one_backend_server("127.0.0.1:0", "127.0.0.1:3011");
        drop(server);
    }

    #[test]
    fn smooth_sequences_of_the_exercise() {
        assert_eq!(smooth_letters(&[5, 1, 1], 7), "aabacaa");
        assert_eq!(smooth_letters(&[3, 2, 1], 6), "abacba");
        assert_eq!(smooth_letters(&[2, 2, 2], 6), "abcabc");
    }

    #[test]
    fn fulcrum_selector_in_pingora_load_balancer() {
        let lb = pingora_lb_with_smooth_wrr(&[
            ("127.0.0.1:3041", 5),
            ("127.0.0.1:3042", 1),
            ("127.0.0.1:3043", 1),
        ]);
        let short: Vec<String> = picks(&lb, 7)
            .iter()
            .map(|a| a.trim_start_matches("127.0.0.1:").to_string())
            .collect();
        assert_eq!(
            short,
            ["3041", "3041", "3042", "3041", "3043", "3041", "3041"]
        );
    }

    #[test]
    fn only_the_removed_backends_keys_move_on_a_ketama_ring() {
        let addrs = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"];
        let (moved, from_removed) = ketama_moves(&addrs, 10_000);
        assert_eq!(moved, from_removed, "a key that was not on 10.0.0.4 moved");
        assert!((1_500..3_500).contains(&moved), "{moved} of 10000 moved");
    }
}
