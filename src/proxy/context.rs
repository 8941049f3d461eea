//! What fulcrum remembers about one request while Pingora walks it through the hooks.

use crate::balancer::stats::InFlight;
use crate::limits::slots::Slot;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Per-request state (Pingora's `CTX`).
#[derive(Debug, Default)]
pub struct RequestCtx {
    /// Index of the matched route.
    pub route: Option<usize>,
    /// The upstream group serving the request: the route's, or the side its split chose.
    pub upstream: Option<usize>,
    /// The path sent upstream when the route strips a prefix or rewrites (query excluded).
    pub upstream_path: Option<String>,
    /// Slot (in the group's `members`) of the backend chosen for the current attempt.
    pub backend: Option<usize>,
    /// The current attempt counted in its backend's in-flight requests; dropped (un-counted)
    /// when the attempt fails over, in the logging hook, or at the latest with the context.
    pub in_flight: Option<InFlight>,
    /// The current attempt's slot on its backend, for groups with `max_connections`.
    pub slot: Option<Slot>,
    /// Request body bytes received so far.
    pub body_bytes: u64,
    /// For `cookie` groups: the backend the request's sticky cookie named.
    pub sticky: Option<usize>,
    /// Backends that already failed for this request; selection skips them.
    pub failed: Vec<usize>,
    /// Backends tried so far.
    pub tries: usize,
    /// The client IP as fulcrum believes it (see `forwarding::client_ip`).
    pub client_ip: Option<IpAddr>,
    /// When fulcrum started on this request (after reading its head).
    pub started: Option<Instant>,
    /// When the current attempt started.
    pub attempt_started: Option<Instant>,
    /// The request was already retried once after a reused upstream connection broke.
    pub reuse_retried: bool,
    /// A response head arrived from the current attempt's backend.
    pub response_started: bool,
    /// The status of that head (for `fulcrum_upstream_requests_total`).
    pub upstream_status: Option<u16>,
    /// The request failed after part of the backend's response had gone to the client, so
    /// the client side was aborted instead of answered (see `fail_to_proxy`).
    pub aborted: bool,
    /// The request is a gRPC call (see `grpc::is_grpc`).
    pub grpc: bool,
    /// The `grpc-status` of the backend's response trailers, when they had one.
    pub grpc_status: Option<u16>,
    /// The request id (see `request_id`).
    pub request_id: Option<http::HeaderValue>,
    /// Address of the backend chosen for the current attempt (its slot may go to another
    /// backend once the attempt ends, so later looks check the address).
    pub backend_addr: Option<SocketAddr>,
    /// Where the request stands with its mirror copy (`mirror:` routes).
    pub mirror: super::mirror::Capture,
    /// On a caching route: fulcrum kept this request away from the cache (method,
    /// credentials, upgrade).
    pub cache_bypass: bool,
    /// On a caching route: what the cache did, once the response head is known.
    pub cache_status: Option<crate::cache::status::CacheStatus>,
    /// Response body bytes stored in the cache so far (while filling it).
    pub cache_fill_bytes: usize,
    /// The encoding the response body is compressed with (see `crate::compress`).
    pub compressed: Option<crate::compress::negotiate::Encoding>,
    /// What the walk over the request's fields found (see `survey`); `None` before it ran,
    /// which later steps read as "every field may be there".
    pub survey: Option<super::survey::Survey>,
    /// The request's W3C trace, when `forwarding.trace_context` is on (see `trace_context`).
    pub trace: Option<super::trace_context::Trace>,
}

impl RequestCtx {
    /// The surveyed fields the request has; all of them when it was not surveyed.
    pub fn present(&self) -> super::survey::Present {
        self.survey
            .map_or(super::survey::Present::ALL, |s| s.present)
    }

    /// Slot and address of the current attempt's backend.
    pub fn chosen(&self) -> Option<(usize, SocketAddr)> {
        Some((self.backend?, self.backend_addr?))
    }
}
