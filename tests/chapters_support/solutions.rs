//! Worked solutions to the chapters' code exercises. The chapters quote this file verbatim, and
//! the tests below compile and run it against the real Pingora and fulcrum APIs, so a solution
//! cannot go stale the way copied tutorial code does.

use async_trait::async_trait;
use fulcrum::balancer::smooth::{smooth_sequence, SmoothWeighted};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};
use std::collections::BTreeSet;

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

/// A Pingora `LoadBalancer` that picks with fulcrum's smooth weighted round robin.
pub fn pingora_lb_with_smooth_wrr(backends: &[(&str, usize)]) -> LoadBalancer<SmoothWeighted> {
    let mut set = BTreeSet::new();
    for (addr, weight) in backends {
        set.insert(Backend::new_with_weight(addr, *weight).expect("an IP:port"));
    }
    let lb = LoadBalancer::<SmoothWeighted>::from_backends(Backends::new(Static::new(set)));
    // Discovery runs once here; a static list never blocks.
    futures::executor::block_on(lb.update()).expect("static discovery");
    lb
}

/// The addresses of the next `n` picks (`select(key, max_iterations)`: two arguments).
pub fn picks(lb: &LoadBalancer<SmoothWeighted>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| lb.select(b"", 8).expect("a backend").addr.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
