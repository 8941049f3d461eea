//! The validated internal model: what the proxy trusts.
//!
//! Everything here was checked by [`crate::config::validate`]: addresses are parsed, names are
//! resolved to indexes, header names and values are valid, durations are durations. Code on the
//! request path reads these types and never re-checks them.

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora_core::server::configuration::ServerConf;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use super::algorithm::Algorithm;
pub use access_log::{AccessLog, AccessLogFormat};
pub use cache::{
    CacheKeyPart, CacheStore, Compression, RouteCache, DEFAULT_CACHE_LOCK_TIMEOUT,
    DEFAULT_CACHE_OBJECT_SIZE, DEFAULT_CACHE_SIZE, DEFAULT_COMPRESSION_MIN_SIZE,
};
pub use discovery::{
    Discovery, DiscoverySource, Resolver, API_HEADROOM, DEFAULT_MAX_DISCOVERED, MAX_DISCOVERED,
};
pub use route::{
    Destination, HostMatch, Matchers, Mirror, Rewrite, Route, Split, SplitSide, ValueMatch,
    DEFAULT_MIRROR_BODY, MAX_SPLIT_WEIGHT,
};

mod access_log;
mod cache;
mod discovery;
mod route;

/// A complete, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Pingora's server settings, with fulcrum's defaults applied.
    pub server: ServerConf,
    /// Addresses to accept client traffic on.
    pub listeners: Vec<Listener>,
    /// Fixed-response servers run in this process.
    pub demo_backends: Vec<DemoBackend>,
    /// Upstream groups; a route refers to one by its index here.
    pub upstreams: Vec<Upstream>,
    /// Routing rules, in config order.
    pub routes: Vec<Route>,
    /// Forwarding-header policy.
    pub forwarding: Forwarding,
    /// The admin listener, when enabled.
    pub admin: Option<Admin>,
    /// Limits on client requests and connections.
    pub limits: Limits,
    /// The per-client rate limit of routes without their own.
    pub rate_limit: Option<RateLimit>,
    /// Where discovery sends its DNS queries.
    pub resolver: Resolver,
    /// The in-memory response cache that routes with a `cache` policy share.
    pub cache: CacheStore,
    /// Where and how each request is logged.
    pub access_log: AccessLog,
}

/// Largest `request_buffering`: the body rides in Pingora's retry buffer, a fixed 64 KiB.
pub const MAX_REQUEST_BUFFERING: u64 = 64 * 1024;

/// Largest `limits.response_buffering`: it is memory per client connection.
pub const MAX_RESPONSE_BUFFERING: u64 = 16 << 20;

/// Limits on client requests and connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request head in bytes (431 above).
    pub max_header_bytes: usize,
    /// Most request headers (431 above).
    pub max_headers: usize,
    /// Largest request body in bytes (413 above); `None` for no limit.
    pub max_body_bytes: Option<u64>,
    /// Time to receive a whole request head (408 after).
    pub header_timeout: Duration,
    /// Longest wait between two reads of a request body.
    pub body_timeout: Duration,
    /// Longest wait for a client to take more response bytes (no progress writing).
    pub send_timeout: Duration,
    /// Largest request body (by `Content-Length`) read whole before choosing a backend; `0`
    /// streams every body. At most [`MAX_REQUEST_BUFFERING`].
    pub request_buffering: u64,
    /// Most bytes of a complete response held for an HTTP/1 client that is not reading;
    /// `0` for none. At most [`MAX_RESPONSE_BUFFERING`].
    pub response_buffering: u64,
    /// Idle keep-alive time of a client connection, in whole seconds (at least 1).
    pub keepalive_timeout_secs: u64,
    /// Most client connections open at once, over all listeners.
    pub max_connections: usize,
    /// Time a client of an HTTPS listener has to finish its TLS handshake, from accept
    /// (capped by `header_timeout`, which also covers the handshake).
    pub handshake_timeout: Duration,
    /// HTTP/2 client connections.
    pub h2: H2Limits,
}

/// What one HTTP/2 client connection may hold open and make fulcrum buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: request body bytes per stream before fulcrum reads.
    pub stream_window: u32,
    /// The connection's receive window (set by a `WINDOW_UPDATE` on stream 0).
    pub connection_window: u32,
    /// Response bytes buffered per stream for a client that does not read them.
    pub max_send_buffer: usize,
}

impl H2Limits {
    /// Largest flow-control window HTTP/2 allows (RFC 9113 6.9.1).
    pub const MAX_WINDOW: u32 = (1 << 31) - 1;
}

impl Default for H2Limits {
    fn default() -> Self {
        H2Limits {
            // nginx's http2_max_concurrent_streams.
            max_concurrent_streams: 128,
            stream_window: 64 * 1024,
            connection_window: 1024 * 1024,
            max_send_buffer: 64 * 1024,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: Some(10 * 1024 * 1024),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            request_buffering: MAX_REQUEST_BUFFERING,
            response_buffering: 64 * 1024,
            keepalive_timeout_secs: 60,
            max_connections: 20_000,
            h2: H2Limits::default(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A per-client-IP token bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub requests_per_second: f64,
    /// Requests allowed at once (>= 1).
    pub burst: u32,
    /// Most client IPs remembered at once.
    pub max_clients: usize,
}

/// Which rate limit a route applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RouteRateLimit {
    /// The top-level `rate_limit`, if any.
    #[default]
    Inherit,
    /// None.
    Off,
    /// The route's own, with its own buckets.
    Own(RateLimit),
}

/// Per-backend concurrency limit of an upstream group and its wait line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendLimit {
    /// Most requests in flight to one backend.
    pub max_connections: u32,
    /// Most requests waiting for a free backend.
    pub queue_size: usize,
    /// Longest wait for a free backend.
    pub queue_timeout: Duration,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Bearer token every request must carry, if set.
    pub token: Option<String>,
    /// Most admin connections open at once (503 above), counted apart from the proxy's.
    pub max_connections: usize,
    /// Time to receive a whole request head (408 after).
    pub header_timeout: Duration,
    /// Idle keep-alive time of an admin connection, in whole seconds (at least 1).
    pub idle_timeout: Duration,
    /// Where the runtime API keeps its changes across restarts and reloads
    /// (`admin.state_file`; default: the pid file's path with the extension `.state.json`).
    pub state_file: std::path::PathBuf,
}

impl Admin {
    /// Default `admin.max_connections`.
    pub const MAX_CONNECTIONS: usize = 64;
    /// Default `admin.header_timeout`.
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `admin.idle_timeout`.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Default `admin.state_file`: next to `pid_file`, with the same stem and the extension
    /// `.state.json` (`/tmp/fulcrum.pid` gives `/tmp/fulcrum.state.json`).
    pub fn default_state_file(pid_file: &str) -> std::path::PathBuf {
        std::path::Path::new(pid_file).with_extension("state.json")
    }
}

/// A listening address.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Accept prior-knowledge HTTP/2 over plain TCP.
    pub h2c: bool,
    /// HTTPS, when set.
    pub tls: Option<ListenerTls>,
    /// Redirect every request to HTTPS (plain listeners only).
    pub redirect_to_https: bool,
}

/// HTTPS settings of a listener, with certificates loaded and checked.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Certificates; the first is the default.
    pub certs: Vec<ListenerCert>,
    /// Offer h2 through ALPN.
    pub h2: bool,
    /// The session-ticket key source the listener resumes sessions with; `None`: no
    /// resumption (`session_tickets: false`).
    pub session_tickets: Option<std::sync::Arc<dyn rustls::server::ProducesTickets>>,
}

/// A loaded certificate and the names it serves.
#[derive(Debug, Clone)]
pub struct ListenerCert {
    /// Host names (lowercase; `*.` wildcards allowed).
    pub names: Vec<String>,
    /// Chain and key.
    pub key: std::sync::Arc<rustls::sign::CertifiedKey>,
}

/// A listener's certificates as (names, key) pairs, first the default: what
/// [`crate::tls::SniResolver::new`] takes.
impl<'a> IntoIterator for &'a ListenerTls {
    type Item = (&'a [String], &'a std::sync::Arc<rustls::sign::CertifiedKey>);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, ListenerCert>, fn(&'a ListenerCert) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.certs.iter().map(|c| (c.names.as_slice(), &c.key))
    }
}

/// A fixed-response HTTP server.
#[derive(Debug, Clone)]
pub struct DemoBackend {
    /// Name (for logs and the default body).
    pub name: String,
    /// Address to bind.
    pub addr: SocketAddr,
    /// Response status.
    pub status: u16,
    /// Response body.
    pub body: String,
    /// Delay before answering.
    pub delay: Option<Duration>,
    /// Extra response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `SameSite` attribute of the sticky cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

/// The sticky-session cookie of a `cookie` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookie {
    /// Cookie name.
    pub name: String,
    /// `Path` attribute.
    pub path: String,
    /// `Max-Age`; a session cookie when `None`.
    pub max_age: Option<Duration>,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `Secure` attribute.
    pub secure: bool,
    /// `SameSite` attribute.
    pub same_site: Option<SameSite>,
    /// Key of the HMAC that turns a backend address into the cookie value.
    pub secret: Vec<u8>,
}

/// What a `consistent` group hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client IP (the trusted forwarded one when the peer is a trusted proxy).
    ClientIp,
    /// The request path, without the query.
    Path,
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
}

/// Whether a backend address can be connected to: a port other than 0 and a unicast IP that
/// is specified (not `0.0.0.0` or `::`, which some DNS blocklists answer, nor multicast or
/// broadcast).
pub fn is_connectable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// A backend of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Resolved address.
    pub addr: SocketAddr,
    /// The host name it was written with, if not an IP (used as the TLS server name).
    pub host: Option<String>,
    /// Relative share, 1 to 1000.
    pub weight: u32,
}

/// Timeouts towards an upstream group's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// Each read.
    pub read: Duration,
    /// Each write.
    pub write: Duration,
    /// Idle keep-alive time in the connection pool.
    pub idle: Duration,
    /// Silence allowed in each direction of an upgraded connection (and for its 101).
    pub tunnel: Duration,
    /// Silence allowed between the messages of a gRPC call, in each direction.
    pub stream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            tunnel: Duration::from_secs(3600),
            stream_idle: Duration::from_secs(300),
        }
    }
}

/// TLS towards an upstream group's backends.
#[derive(Clone)]
pub struct UpstreamTls {
    /// SNI and expected certificate name; empty means the backend's host or IP.
    pub sni: String,
    /// CA certificates to verify with; `None` means the system's roots.
    pub ca: Option<std::sync::Arc<[pingora_core::utils::tls::WrappedX509]>>,
    /// Where `ca` came from.
    pub ca_file: Option<String>,
    /// Skip verification entirely.
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// An upstream group.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Name from the config.
    pub name: String,
    /// Selection algorithm.
    pub algorithm: Algorithm,
    /// Hash key for `consistent`.
    pub hash_key: HashKey,
    /// Algorithm used when a `consistent` request has no key or a `cookie` request no valid
    /// cookie (never a keyed algorithm).
    pub fallback: Algorithm,
    /// The sticky cookie, for `cookie` groups.
    pub sticky: Option<StickyCookie>,
    /// Static backends in config order (a host name stands for each of its addresses); empty
    /// only when the group has `discovery`.
    pub backends: Vec<Backend>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// TLS, when the backends speak HTTPS.
    pub tls: Option<UpstreamTls>,
    /// The HTTP version spoken to the backends, and HTTP/2's stream limit.
    pub protocol: crate::config::protocol::UpstreamProtocol,
    /// Backends one request may try (>= 1; static groups: <= backends.len()).
    pub max_tries: usize,
    /// No retry once a request has been trying for this long.
    pub max_try_duration: Option<Duration>,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// Passive failure tracking.
    pub circuit_breaker: CircuitBreaker,
    /// Per-backend concurrency limit, when set.
    pub backend_limit: Option<BackendLimit>,
    /// Backends found at run time (DNS, SRV or a file), besides the static ones.
    pub discovery: Option<Discovery>,
    /// A new or recovered backend's weight ramps up over this time (above zero); applies to
    /// choices made without a key.
    pub slow_start: Option<Duration>,
}

impl Upstream {
    /// Most backends the group can hold at once: static, discovered and added by the API.
    pub fn capacity(&self) -> usize {
        self.backends.len() + self.discovery.as_ref().map_or(0, |d| d.max_backends) + API_HEADROOM
    }
}

/// What an active health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP (TLS for TLS groups) connection must succeed.
    Tcp,
    /// An HTTP request must get an expected status (and body substring).
    Http {
        /// Request method.
        method: http::Method,
        /// Request path.
        path: String,
        /// Host header; `None` for the backend address.
        host: Option<String>,
        /// Accepted status ranges.
        expect_status: Vec<std::ops::RangeInclusive<u16>>,
        /// Required body substring.
        expect_body: Option<String>,
    },
    /// A `grpc.health.v1.Health/Check` call over HTTP/2 must answer `SERVING`.
    Grpc {
        /// The service asked about; empty for the server as a whole.
        service: String,
    },
}

/// Active health checks of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is checked.
    pub kind: CheckKind,
    /// Time between rounds.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Passing checks to become healthy.
    pub rise: u32,
    /// Failing checks to become unhealthy.
    pub fall: u32,
}

/// Passive failure tracking (a circuit breaker per backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failures that eject; 0 = never eject.
    pub max_fails: u32,
    /// First ejection length.
    pub cooldown: Duration,
    /// Longest ejection.
    pub max_cooldown: Duration,
    /// 5xx responses count as failures.
    pub on_5xx: bool,
    /// Responses slower than this count as failures.
    pub slow_response: Option<Duration>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            max_fails: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
            on_5xx: false,
            slow_response: None,
        }
    }
}

/// Header edits, applied in the order remove, set, add.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Headers to remove.
    pub remove: Vec<HeaderName>,
    /// Headers to replace.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to append.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

/// Forwarding-header policy.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Send `X-Forwarded-For`.
    pub x_forwarded_for: bool,
    /// Send `X-Forwarded-Proto`.
    pub x_forwarded_proto: bool,
    /// Send `X-Forwarded-Host`.
    pub x_forwarded_host: bool,
    /// Send RFC 7239 `Forwarded`.
    pub forwarded: bool,
    /// Add `Via`.
    pub via: bool,
    /// Response header naming the backend that answered.
    pub served_by_header: Option<HeaderName>,
    /// Keep the case header names were received in on forwarded requests and responses
    /// (see `proxy::head`).
    pub preserve_header_case: bool,
    /// Continue or start a W3C trace per request (see `proxy::trace_context`).
    pub trace_context: bool,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            trusted_proxies: Vec::new(),
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            forwarded: false,
            via: true,
            served_by_header: None,
            preserve_header_case: false,
            trace_context: true,
        }
    }
}

impl Forwarding {
    /// Whether forwarding headers from this peer are believed.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address as plain IPv4; other addresses unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
