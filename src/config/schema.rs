//! The YAML schema: exactly what users write in a fulcrum config file.
//!
//! These types only describe shape. They are deserialized with unknown keys denied and then
//! checked and converted by [`crate::config::validate`] into the internal model
//! ([`crate::config::model`]), which is the only thing the proxy reads. They also serialize, so
//! quick mode (`--backends ...`) can print the file it would have needed (`--print-config`).

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

pub use access_log::AccessLogSpec;
pub use cache::{CacheSpec, CompressionSpec, RouteCacheSpec};
pub use discovery::{DiscoverySpec, ResolverSpec};
pub use route::{MatchSpec, MirrorSpec, RewriteSpec, RouteSpec, SplitSideSpec};

mod access_log;
mod cache;
mod discovery;
mod route;

/// Deserialize a map whose keys must be unique (YAML parsers keep the last duplicate silently).
fn unique_keys<'de, D, V>(de: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of names to definitions")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate name `{key}`: each name may be defined once"
                    )));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    de.deserialize_map(Unique(PhantomData))
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Pingora's own server settings (`threads`, `pid_file`, `upgrade_sock`, `error_log`,
    /// `grace_period_seconds`, ...), passed to Pingora's `ServerConf`. Kept as raw YAML here so
    /// every Pingora key works; unknown keys are rejected during validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pingora: Option<serde_yaml::Mapping>,
    /// Addresses fulcrum accepts client traffic on.
    #[serde(default)]
    pub listeners: Vec<ListenerSpec>,
    /// Small fixed-response HTTP servers run inside this process (demos and tests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demo_backends: Vec<DemoBackendSpec>,
    /// Named groups of backends.
    #[serde(default, deserialize_with = "unique_keys")]
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    /// Host + path-prefix rules that pick an upstream group.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Forwarding headers and which clients are believed when they send them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<ForwardingSpec>,
    /// The admin listener (status JSON, health, metrics); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// Limits on what clients may send and how long they may take; safe defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    /// Requests per second allowed per client IP, on every route that sets none of its own;
    /// off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// The DNS servers `discovery` asks; default: those of `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<ResolverSpec>,
    /// The in-memory response cache shared by routes with `cache:`; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Where and how each request is logged; text on stderr when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogSpec>,
}

/// Limits on client requests and connections.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest request head (request line and headers) as a size (`64KiB`); default 64 KiB.
    /// Larger heads are answered 431.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<Value>,
    /// Most request headers (1 to 256); default 100. More are answered 431.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<i64>,
    /// Largest request body (`10MiB`, or `0` for no limit); default 10 MiB. Larger bodies
    /// are answered 413. Routes may set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<Value>,
    /// Time a client has to send a whole request head, from its first byte (or from accepting
    /// the connection); default `10s`. Slower clients are answered 408 and closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<String>,
    /// Longest wait between two reads of a request body; default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_timeout: Option<String>,
    /// Longest wait for a client to accept more response bytes (nginx `send_timeout`);
    /// default `60s`. A client that reads nothing for that long is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<String>,
    /// Request bodies with a `Content-Length` up to this size (at most `64KiB`) are read
    /// whole before a backend is chosen (nginx `proxy_request_buffering`); `0` or `off`
    /// streams every body; default `64KiB`. Routes may set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_buffering: Option<Value>,
    /// Most bytes of a complete response fulcrum holds for an HTTP/1 client that is not
    /// reading, so the backend connection is released at once (`64KiB`, at most `16MiB`; `0`
    /// or `off` for none); default `64KiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_buffering: Option<Value>,
    /// How long an idle keep-alive client connection is kept open, in whole seconds
    /// (`75s`); default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_timeout: Option<String>,
    /// Most client connections open at once, over all listeners; default 20000. Connections
    /// beyond it are answered 503 and closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Time a client of an HTTPS listener has to finish its TLS handshake, from accepting the
    /// connection; default `10s`. `header_timeout` also counts from accept, so the handshake
    /// and the first request head together must fit in it. Late handshakes are closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<String>,
    /// HTTP/2 client connections (TLS with `h2`, and `h2c` listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2: Option<H2Spec>,
}

/// HTTP/2 settings fulcrum offers its clients: what one connection may hold open and buffer.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct H2Spec {
    /// Most streams (requests) open at once on one connection (1 to 10000); default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i64>,
    /// How much request body a client may send on one stream before fulcrum reads it (a size,
    /// 1KiB to 2GiB-1); default 64KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_window: Option<Value>,
    /// The same over all streams of a connection (64KiB to 2GiB-1); default 1MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_window: Option<Value>,
    /// Most response bytes fulcrum buffers per stream for a client that does not read them
    /// (1KiB to 16MiB); default 64KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_send_buffer: Option<Value>,
}

/// A per-client-IP request rate limit (a token bucket).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Sustained requests per second per client IP (may be fractional, e.g. `0.5`).
    pub requests_per_second: f64,
    /// Requests a client may make at once above the sustained rate; default: one second's
    /// worth (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<i64>,
    /// Most client IPs remembered at once; default 100000. When full, the clients that are
    /// back to a full bucket are forgotten first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<i64>,
}

/// A route's rate limit: its own, or `off`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RouteRateLimitSpec {
    /// `off`: no rate limit on this route, whatever the top-level one says.
    Switch(String),
    /// The route's own limit, with its own per-client buckets.
    Limit(RateLimitSpec),
}

/// The wait line of an upstream group whose backends are all at `max_connections`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Most requests waiting at once; default 100. Requests beyond it are answered 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Longest a request waits for a free backend; default `5s`, then 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The admin listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// `IP:port`; default `127.0.0.1:9900`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Bearer token required on every admin request; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Allow a non-loopback `addr` without a token; default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_public_without_token: bool,
    /// Most admin connections open at once; default 64. Connections beyond it are answered
    /// 503 and closed. Counted apart from the proxy listeners' `limits.max_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Time an admin client has to send a whole request head; default `5s`, then 408.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<String>,
    /// How long an idle keep-alive admin connection is kept open, in whole seconds; default
    /// `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// File where the runtime API's changes are kept across restarts and reloads; default:
    /// the pid file's path with the extension `.state.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
}

/// One listening address.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// `IP:port` to bind, e.g. `127.0.0.1:8080` or `[::1]:8080`.
    pub addr: String,
    /// Also accept HTTP/2 without TLS (prior knowledge h2c). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub h2c: bool,
    /// Serve HTTPS on this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsSpec>,
    /// Answer every request on this (plain HTTP) listener with a 308 redirect to the same URL
    /// on the first HTTPS listener. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirect_to_https: bool,
}

/// HTTPS on a listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSpec {
    /// Certificates; the one matching the client's SNI is served, the first when none does.
    pub certificates: Vec<CertificateSpec>,
    /// Offer HTTP/2 through ALPN (h2, then http/1.1). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2: Option<bool>,
    /// Resume TLS sessions with stateless session tickets (keys in memory, rotated every
    /// 6 hours); `false`: no resumption, every connection makes a full handshake. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tickets: Option<bool>,
}

/// One certificate of an HTTPS listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    /// PEM certificate chain, leaf first.
    pub cert: String,
    /// PEM private key.
    pub key: String,
    /// Host names it serves (`example.com`, `*.example.com`); default: the names in the
    /// certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// A fixed-response HTTP server that fulcrum runs itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoBackendSpec {
    /// Name, answered as the body by default.
    pub name: String,
    /// `IP:port` to bind.
    pub addr: String,
    /// Response body; default `"<name>\n"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Response status; default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Wait this long before answering (e.g. `250ms`, `2s`); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Extra response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A named group of backends and how to choose among them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Selection algorithm name; default `round_robin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// For `consistent`: what to hash (`client_ip`, `path`, `header:NAME`, `cookie:NAME`,
    /// `query:NAME`); default `client_ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// For `consistent` and `cookie`: the algorithm used when a request has no hash key or no
    /// valid sticky cookie; default `round_robin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// For `cookie`: the sticky cookie's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickySpec>,
    /// The static backends of the group; a `host:port` stands for every address the host
    /// resolves to at load. May be empty when `discovery` is set.
    #[serde(default)]
    pub backends: Vec<BackendSpec>,
    /// Backends found at run time (DNS, SRV records or a file), besides the static ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoverySpec>,
    /// A new or recovered backend's share of traffic ramps up over this time (`30s`);
    /// default none (full share at once). Any algorithm; it shapes the choices made without
    /// a key (a `consistent`, `ip_hash` or `cookie` request with a key goes where its key says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<String>,
    /// Timeouts towards these backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsSpec>,
    /// TLS towards these backends; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSpec>,
    /// The HTTP version spoken to the backends: `h1` (default), `h2c`, `h2` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Streams one HTTP/2 connection to a backend carries at once; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_h2_streams: Option<i64>,
    /// How many backends one request may try when connecting fails; default 3 (at most the
    /// number of static backends, unless the group has `discovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tries: Option<usize>,
    /// Stop retrying once a request has spent this long trying backends (`10s`); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_try_duration: Option<String>,
    /// Active health checks; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// Passive failure tracking (circuit breaker); default on with `max_fails: 3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    /// Most requests in flight to one backend at once; no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Where requests wait when every backend is at `max_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSpec>,
}

/// Active health checks of an upstream group.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// `http` (default), `tcp` or `grpc`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// gRPC: the service asked about (`grpc.health.v1`); default `""`, the whole server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Time between checks of a backend; default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time one check may take; default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// HTTP: request path; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP: request method; default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP: Host header; default the backend's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// HTTP: accepted statuses, as codes (`200`), classes (`2xx`) or ranges (`200-399`);
    /// default `[2xx, 3xx]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<serde_yaml::Value>,
    /// HTTP: a substring the response body must contain; default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// Consecutive passing checks that make an unhealthy backend healthy; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Consecutive failing checks that make a healthy backend unhealthy; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
}

/// Passive failure tracking of an upstream group's backends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSpec {
    /// Consecutive failed requests that eject a backend; 0 turns ejection off; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fails: Option<u32>,
    /// How long the first ejection lasts; default `10s`. Each failed trial doubles it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// The longest an ejection can grow to; default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cooldown: Option<String>,
    /// Count 5xx responses as failures; default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_5xx: Option<bool>,
    /// Count responses slower than this (time to response head) as failures; default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_response: Option<String>,
}

/// The sticky-session cookie of a `cookie` group.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickySpec {
    /// Cookie name; default `fulcrum_sticky`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// `Path`; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Max-Age` as a duration (`1h`); a session cookie when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// `HttpOnly`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// `Secure`; default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// `SameSite`: `strict`, `lax` or `none`; default `lax`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    /// HMAC key for cookie values; default: random at start-up (cookies then stop matching
    /// after a restart, and differ between instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One backend of an upstream group.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// `host:port`; a host name is resolved once, when the config is loaded, and each of its
    /// addresses becomes a backend (with this weight).
    pub addr: String,
    /// Relative share of traffic, 1 to 1000; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// Timeouts as duration strings (`500ms`, `5s`, `2m`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// TCP (and TLS) connect; default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// Each read from the backend, including waiting for the response head; default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// Each write to the backend; default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// How long an idle keep-alive connection to the backend is kept in the pool; default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    /// An upgraded (WebSocket) connection's silence limit, in each direction, instead of
    /// `read` and the client's `body_timeout`; default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// A gRPC call's silence limit between messages, in each direction, instead of `read`
    /// and the client's `body_timeout`; default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle: Option<String>,
}

/// TLS towards backends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// Server name sent in SNI and checked against the certificate; default: the backend's
    /// host name as written in `addr`, or its IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// PEM CA certificates to verify backends with; default: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Do not verify backend certificates at all. Default false; logged as a warning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// Header changes in both directions.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesSpec {
    /// Changes to the request sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderEditsSpec>,
    /// Changes to the response sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderEditsSpec>,
}

/// Header edits, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsSpec {
    /// Append these headers (keeping existing values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Replace these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Forwarding headers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingSpec {
    /// CIDRs (or bare IPs) of proxies in front of fulcrum whose forwarding headers are believed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Send `X-Forwarded-For`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_for: Option<bool>,
    /// Send `X-Forwarded-Proto`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_proto: Option<bool>,
    /// Send `X-Forwarded-Host`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_host: Option<bool>,
    /// Send RFC 7239 `Forwarded`; default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<bool>,
    /// Add `Via: 1.1 fulcrum` to requests and responses; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<bool>,
    /// Response header naming the backend that answered (e.g. `X-Served-By`); off by default
    /// because it reveals internal addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by_header: Option<String>,
    /// Write forwarded header names in the case they were received in (as nginx does);
    /// default false: names are written in lowercase, except a few Pingora title-cases, as
    /// HAProxy and Envoy do, which saves work on every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_header_case: Option<bool>,
    /// W3C Trace Context: continue or start a trace, send the backend a `traceparent` naming
    /// fulcrum's span, and log the trace id; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<bool>,
}
