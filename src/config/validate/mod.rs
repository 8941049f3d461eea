//! Turning the YAML schema into the validated model, with one clear error per problem.

use super::error::{ConfigError, ConfigErrorKind};
use super::model::*;
use super::runtime_files::RuntimeFiles;
use super::schema::*;
use super::units::{parse_duration, parse_positive_duration, parse_size};
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora_core::server::configuration::ServerConf;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Largest accepted backend weight.
pub const MAX_WEIGHT: i64 = 1000;

/// fulcrum's defaults for Pingora keys the user did not set. Pingora's own defaults (a 300 s
/// grace period, files named after pingora in /tmp) surprise in a demo or a test.
const PINGORA_DEFAULTS: &[(&str, PingoraDefault)] = &[
    ("grace_period_seconds", PingoraDefault::Int(5)),
    ("graceful_shutdown_timeout_seconds", PingoraDefault::Int(5)),
    // One pair of files per instance (config file or quick-mode address): see RuntimeFiles.
    ("pid_file", PingoraDefault::PidFile),
    ("upgrade_sock", PingoraDefault::UpgradeSock),
    ("threads", PingoraDefault::Cpus),
    ("work_stealing", PingoraDefault::WorkStealing),
    // Idle upstream connections kept for reuse, over all backends of a listener (Pingora: 128).
    // Fewer than the requests in flight, and every release past the limit closes a connection
    // that the next request opens again: at 256 concurrent clients, 128 made about one request
    // in ten open a new backend connection and cost fulcrum up to 40 % more CPU per request.
    ("upstream_keepalive_pool_size", PingoraDefault::Int(1024)),
    // Timeouts of a second or more on the runtime's own tokio timer rather than Pingora's
    // process-wide one (a lock, a map lookup and a `Notify` per timeout that has to wait):
    // about 1.5 % less CPU per request.
    (
        "fast_timeout_to_tokio_threshold_seconds",
        PingoraDefault::Int(0),
    ),
];

enum PingoraDefault {
    Int(u64),
    /// [`RuntimeFiles::pid_file`].
    PidFile,
    /// [`RuntimeFiles::upgrade_sock`].
    UpgradeSock,
    Cpus,
    /// With one worker thread, Pingora's single-threaded runtime (`false`): with tokio timers
    /// for timeouts, about 8 % less CPU per request than Pingora's defaults with one worker
    /// (bench/run, README "Performance"). With several, Pingora's default (`true`): without work stealing,
    /// Pingora's upstream connection pool starts each idle connection's watcher on a random
    /// thread, a wake-up across threads per request, and a connection picked up on another
    /// thread than its watcher's can fail to be reused ("failed to acquire reusable stream").
    WorkStealing,
}

type Result<T> = std::result::Result<T, ConfigError>;

/// Check a config given on the command line (quick mode) and build the model; the default
/// `pid_file` and `upgrade_sock` are named after its listening addresses.
pub fn validate(spec: &FileConfig) -> Result<Config> {
    let files = RuntimeFiles::for_listeners(spec.listeners.iter().map(|l| l.addr.as_str()));
    validate_with(spec, &files)
}

/// Check a parsed config and build the model, with `files` as the default `pid_file` and
/// `upgrade_sock`.
pub fn validate_with(spec: &FileConfig, files: &RuntimeFiles) -> Result<Config> {
    let server = pingora_conf(spec.pingora.as_ref(), files)?;
    let listeners = listeners(&spec.listeners)?;
    let demo_backends = demo_backends(&spec.demo_backends, &listeners)?;
    let (upstreams, names) = upstreams(&spec.upstreams)?;
    // Pingora makes at most pingora.max_retries attempts, whatever fulcrum asks for.
    if let Some(u) = upstreams.iter().find(|u| u.max_tries > server.max_retries) {
        return Err(ConfigError::invalid(
            format!("upstreams.{}.max_tries", u.name),
            format!(
                "{} tries need pingora.max_retries of at least {}, found {}",
                u.max_tries, u.max_tries, server.max_retries
            ),
        ));
    }
    let limits = limits(spec.limits.as_ref())?;
    let rate_limit = spec
        .rate_limit
        .as_ref()
        .map(|r| rate_limit("rate_limit", r))
        .transpose()?;
    let routes = routes(&spec.routes, &names, &limits)?;
    if let Some(i) = routes.iter().position(|r| r.redirect_to_https) {
        if !listeners.iter().any(|l| l.tls.is_some()) {
            return Err(ConfigError::invalid(
                format!("routes[{i}].redirect_to_https"),
                "there is no HTTPS listener (with `tls:`) to redirect to",
            ));
        }
    }
    let forwarding = forwarding(spec.forwarding.as_ref())?;
    let admin = spec
        .admin
        .as_ref()
        .map(|a| admin(a, &listeners, &demo_backends))
        .transpose()?;
    Ok(Config {
        server,
        listeners,
        demo_backends,
        upstreams,
        routes,
        forwarding,
        admin,
        limits,
        rate_limit,
    })
}

/// Most headers Pingora parses; it answers 400 to more, before fulcrum sees the request.
const PINGORA_MAX_HEADERS: i64 = 256;

fn limits(spec: Option<&LimitsSpec>) -> Result<Limits> {
    let mut out = Limits::default();
    let Some(spec) = spec else {
        return Ok(out);
    };
    if let Some(v) = &spec.max_header_bytes {
        let n = parse_size("limits.max_header_bytes", v)?;
        if !(1024..=1 << 20).contains(&n) {
            return Err(ConfigError::invalid(
                "limits.max_header_bytes",
                format!("expected a size from 1KiB to 1MiB, found {n} bytes"),
            ));
        }
        out.max_header_bytes = n as usize;
    }
    if let Some(n) = spec.max_headers {
        if !(1..=PINGORA_MAX_HEADERS).contains(&n) {
            return Err(ConfigError::invalid(
                "limits.max_headers",
                format!("expected an integer from 1 to {PINGORA_MAX_HEADERS}, found {n}"),
            ));
        }
        out.max_headers = n as usize;
    }
    if let Some(v) = &spec.max_body_bytes {
        out.max_body_bytes = body_limit("limits.max_body_bytes", v)?;
    }
    if let Some(t) = &spec.header_timeout {
        out.header_timeout = parse_positive_duration("limits.header_timeout", t)?;
    }
    if let Some(t) = &spec.body_timeout {
        out.body_timeout = parse_positive_duration("limits.body_timeout", t)?;
    }
    if let Some(t) = &spec.keepalive_timeout {
        let path = "limits.keepalive_timeout";
        let d = parse_positive_duration(path, t)?;
        if d.subsec_nanos() != 0 {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "expected whole seconds (Pingora counts keep-alive in seconds), found {t:?}"
                ),
            ));
        }
        out.keepalive_timeout_secs = d.as_secs();
    }
    if let Some(n) = spec.max_connections {
        if !(1..=10_000_000).contains(&n) {
            return Err(ConfigError::invalid(
                "limits.max_connections",
                format!("expected an integer from 1 to 10000000, found {n}"),
            ));
        }
        out.max_connections = n as usize;
    }
    Ok(out)
}

/// A body size limit; `0` means none.
fn body_limit(path: &str, value: &Value) -> Result<Option<u64>> {
    Ok(Some(parse_size(path, value)?).filter(|&n| n > 0))
}

fn rate_limit(base: &str, spec: &RateLimitSpec) -> Result<RateLimit> {
    let rps = spec.requests_per_second;
    if !(rps.is_finite() && rps > 0.0 && rps <= 1e9) {
        return Err(ConfigError::invalid(
            format!("{base}.requests_per_second"),
            format!("expected a number above 0 (e.g. 10 or 0.5), found {rps}"),
        ));
    }
    let burst = match spec.burst {
        None => rps.ceil().max(1.0) as u32,
        Some(b) if (1..=1_000_000).contains(&b) => b as u32,
        Some(b) => {
            return Err(ConfigError::invalid(
                format!("{base}.burst"),
                format!("expected an integer from 1 to 1000000, found {b}"),
            ))
        }
    };
    let max_clients = match spec.max_clients {
        None => 100_000,
        Some(n) if (1..=100_000_000).contains(&n) => n as usize,
        Some(n) => {
            return Err(ConfigError::invalid(
                format!("{base}.max_clients"),
                format!("expected an integer from 1 to 100000000, found {n}"),
            ))
        }
    };
    Ok(RateLimit {
        requests_per_second: rps,
        burst,
        max_clients,
    })
}

fn backend_limit(base: &str, spec: &UpstreamSpec) -> Result<Option<BackendLimit>> {
    let Some(max) = spec.max_connections else {
        if spec.queue.is_some() {
            return Err(ConfigError::invalid(
                format!("{base}.queue"),
                "only used with `max_connections`",
            ));
        }
        return Ok(None);
    };
    if !(1..=1_000_000).contains(&max) {
        return Err(ConfigError::invalid(
            format!("{base}.max_connections"),
            format!("expected an integer from 1 to 1000000, found {max}"),
        ));
    }
    let queue = spec.queue.clone().unwrap_or_default();
    let queue_size = match queue.size {
        None => 100,
        Some(n) if (0..=1_000_000).contains(&n) => n as usize,
        Some(n) => {
            return Err(ConfigError::invalid(
                format!("{base}.queue.size"),
                format!("expected an integer from 0 to 1000000, found {n}"),
            ))
        }
    };
    let queue_timeout = match &queue.timeout {
        Some(t) => parse_positive_duration(&format!("{base}.queue.timeout"), t)?,
        None => std::time::Duration::from_secs(5),
    };
    Ok(Some(BackendLimit {
        max_connections: max as u32,
        queue_size,
        queue_timeout,
    }))
}

/// Default admin address.
pub const ADMIN_ADDR: &str = "127.0.0.1:9900";

fn admin(spec: &AdminSpec, listeners: &[Listener], demo: &[DemoBackend]) -> Result<Admin> {
    let addr = socket_addr("admin.addr", spec.addr.as_deref().unwrap_or(ADMIN_ADDR))?;
    if listeners.iter().any(|l| l.addr == addr) || demo.iter().any(|d| d.addr == addr) {
        return Err(ConfigError::invalid(
            "admin.addr",
            format!("{addr} is already used by a listener or demo backend"),
        ));
    }
    let token = match &spec.token {
        Some(t) if t.len() < 16 || t.bytes().any(|b| !b.is_ascii_graphic()) => {
            return Err(ConfigError::invalid(
                "admin.token",
                "expected at least 16 printable characters without spaces",
            ))
        }
        t => t.clone(),
    };
    if !addr.ip().is_loopback() && token.is_none() && !spec.allow_public_without_token {
        return Err(ConfigError::invalid(
            "admin.addr",
            format!(
                "{addr} is reachable from other hosts; set admin.token, or \
                 allow_public_without_token: true if that is really intended"
            ),
        ));
    }
    Ok(Admin { addr, token })
}

/// The `pingora:` mapping with fulcrum's defaults filled in, as it will be used; `files` are
/// the instance's default `pid_file` and `upgrade_sock`.
pub fn pingora_with_defaults(raw: Option<&Mapping>, files: &RuntimeFiles) -> Mapping {
    let mut map = raw.cloned().unwrap_or_default();
    for (key, default) in PINGORA_DEFAULTS {
        let key = Value::String((*key).to_string());
        if map.contains_key(&key) {
            continue;
        }
        let value = match default {
            PingoraDefault::WorkStealing => {
                // `threads` is filled in before this key.
                let one = map.get("threads").and_then(Value::as_u64) == Some(1);
                if !one {
                    continue;
                }
                Value::Bool(false)
            }
            PingoraDefault::Int(n) => Value::Number((*n).into()),
            PingoraDefault::PidFile => Value::String(files.pid_file.clone()),
            PingoraDefault::UpgradeSock => Value::String(files.upgrade_sock.clone()),
            PingoraDefault::Cpus => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                Value::Number((n as u64).into())
            }
        };
        map.insert(key, value);
    }
    map
}

fn pingora_conf(raw: Option<&Mapping>, files: &RuntimeFiles) -> Result<ServerConf> {
    let map = pingora_with_defaults(raw, files);
    let mut unknown = Vec::new();
    let conf: ServerConf =
        serde_ignored::deserialize(Value::Mapping(map), |path| unknown.push(path.to_string()))
            .map_err(|e| ConfigError {
                file: None,
                path: "pingora".into(),
                kind: ConfigErrorKind::Syntax(e.to_string()),
            })?;
    if let Some(key) = unknown.first() {
        return Err(ConfigError::invalid(
            format!("pingora.{key}"),
            "unknown key (see Pingora's ServerConf for the keys this section takes)",
        ));
    }
    if conf.threads == 0 {
        return Err(ConfigError::invalid(
            "pingora.threads",
            "expected at least 1 thread, found 0",
        ));
    }
    conf.validate()
        .map_err(|e| ConfigError::invalid("pingora", e.to_string()))
}

fn socket_addr(path: &str, text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            format!("expected IP:port like 127.0.0.1:8080 or [::1]:8080, found {text:?}"),
        )
    })
}

/// A backend address: `IP:port`, or `host:port` resolved now.
fn resolve_addr(path: &str, text: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = |why: String| ConfigError::invalid(path, why);
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("expected host:port, found {text:?} (no port)")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad(format!("expected host:port, found {text:?}")));
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve {text:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| bad(format!("{text:?} resolves to no address")))
}

fn listeners(specs: &[ListenerSpec]) -> Result<Vec<Listener>> {
    if specs.is_empty() {
        return Err(ConfigError::invalid(
            "listeners",
            "at least one listener is required, e.g. `listeners: [{addr: 127.0.0.1:8080}]`",
        ));
    }
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let path = format!("listeners[{i}].addr");
        let addr = socket_addr(&path, &spec.addr)?;
        if let Some(first) = seen.insert(addr, i) {
            return Err(ConfigError::invalid(
                path,
                format!("{addr} is already used by listeners[{first}]"),
            ));
        }
        let tls = spec
            .tls
            .as_ref()
            .map(|t| listener_tls(&format!("listeners[{i}].tls"), t))
            .transpose()?;
        if spec.redirect_to_https && tls.is_some() {
            return Err(ConfigError::invalid(
                format!("listeners[{i}].redirect_to_https"),
                "this listener already serves HTTPS",
            ));
        }
        if spec.h2c && tls.is_some() {
            return Err(ConfigError::invalid(
                format!("listeners[{i}].h2c"),
                "h2c is plain-text HTTP/2; an HTTPS listener offers h2 through ALPN (tls.h2)",
            ));
        }
        out.push(Listener {
            addr,
            h2c: spec.h2c,
            tls,
            redirect_to_https: spec.redirect_to_https,
        });
    }
    if let Some(i) = specs.iter().position(|l| l.redirect_to_https) {
        if !out.iter().any(|l| l.tls.is_some()) {
            return Err(ConfigError::invalid(
                format!("listeners[{i}].redirect_to_https"),
                "there is no HTTPS listener (with `tls:`) to redirect to",
            ));
        }
    }
    Ok(out)
}

fn listener_tls(base: &str, spec: &ListenerTlsSpec) -> Result<ListenerTls> {
    if spec.certificates.is_empty() {
        return Err(ConfigError::invalid(
            format!("{base}.certificates"),
            "an HTTPS listener needs at least one certificate: `[{cert: FILE, key: FILE}]`",
        ));
    }
    let mut certs = Vec::with_capacity(spec.certificates.len());
    for (i, c) in spec.certificates.iter().enumerate() {
        let path = format!("{base}.certificates[{i}]");
        let (key, found) =
            crate::tls::load_cert_key(std::path::Path::new(&c.cert), std::path::Path::new(&c.key))
                .map_err(|e| ConfigError::invalid(&path, e.to_string()))?;
        let names = if c.names.is_empty() {
            found
        } else {
            c.names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        for (j, n) in names.iter().enumerate() {
            host_match(&format!("{path}.names[{j}]"), Some(n))?;
        }
        certs.push(ListenerCert {
            names,
            key,
            cert_path: c.cert.clone(),
        });
    }
    Ok(ListenerTls {
        certs,
        h2: spec.h2.unwrap_or(true),
    })
}

fn demo_backends(specs: &[DemoBackendSpec], listeners: &[Listener]) -> Result<Vec<DemoBackend>> {
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let base = format!("demo_backends[{i}]");
        if spec.name.is_empty() {
            return Err(ConfigError::invalid(
                format!("{base}.name"),
                "expected a non-empty name",
            ));
        }
        if !names.insert(spec.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{base}.name"),
                format!("duplicate name {:?}", spec.name),
            ));
        }
        let addr = socket_addr(&format!("{base}.addr"), &spec.addr)?;
        if !addrs.insert(addr) || listeners.iter().any(|l| l.addr == addr) {
            return Err(ConfigError::invalid(
                format!("{base}.addr"),
                format!("{addr} is already used by another listener or demo backend"),
            ));
        }
        let status = spec.status.unwrap_or(200);
        if !(100..=599).contains(&status) {
            return Err(ConfigError::invalid(
                format!("{base}.status"),
                format!("expected an HTTP status from 100 to 599, found {status}"),
            ));
        }
        let delay = spec
            .delay
            .as_deref()
            .map(|d| parse_duration(&format!("{base}.delay"), d))
            .transpose()?;
        out.push(DemoBackend {
            name: spec.name.clone(),
            addr,
            status,
            body: spec
                .body
                .clone()
                .unwrap_or_else(|| format!("{}\n", spec.name)),
            delay,
            headers: header_pairs(&format!("{base}.headers"), &spec.headers)?,
        });
    }
    Ok(out)
}

fn parse_algorithm(path: &str, name: &str) -> Result<Algorithm> {
    Algorithm::from_name(name).ok_or_else(|| {
        let known: Vec<_> = Algorithm::ALL.iter().map(|(n, _)| *n).collect();
        ConfigError::invalid(
            path,
            format!(
                "unknown algorithm {name:?}, expected one of: {}",
                known.join(", ")
            ),
        )
    })
}

fn hash_key(path: &str, text: &str) -> Result<HashKey> {
    let bad = || {
        ConfigError::invalid(
            path,
            format!(
                "expected client_ip, path, header:NAME, cookie:NAME or query:NAME, found {text:?}"
            ),
        )
    };
    match text.split_once(':') {
        None if text == "client_ip" => Ok(HashKey::ClientIp),
        None if text == "path" => Ok(HashKey::Path),
        Some((_, "")) => Err(bad()),
        Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| bad()),
        Some(("cookie", name)) => Ok(HashKey::Cookie(name.to_string())),
        Some(("query", name)) => Ok(HashKey::Query(name.to_string())),
        _ => Err(bad()),
    }
}

fn upstreams(
    specs: &BTreeMap<String, UpstreamSpec>,
) -> Result<(Vec<Upstream>, HashMap<String, usize>)> {
    let mut out = Vec::with_capacity(specs.len());
    let mut names = HashMap::new();
    for (name, spec) in specs {
        let base = format!("upstreams.{name}");
        if name.is_empty() {
            return Err(ConfigError::invalid(
                "upstreams",
                "an upstream name is empty",
            ));
        }
        names.insert(name.clone(), out.len());
        out.push(upstream(&base, name, spec)?);
    }
    Ok((out, names))
}

fn upstream(base: &str, name: &str, spec: &UpstreamSpec) -> Result<Upstream> {
    if spec.backends.is_empty() {
        return Err(ConfigError::invalid(
            format!("{base}.backends"),
            "an upstream needs at least one backend, e.g. `backends: [{addr: 127.0.0.1:3001}]`",
        ));
    }
    let algorithm = match &spec.algorithm {
        Some(a) => parse_algorithm(&format!("{base}.algorithm"), a)?,
        None => Algorithm::RoundRobin,
    };
    let hash_key = match (&spec.hash_key, algorithm) {
        (Some(k), Algorithm::Consistent) => hash_key(&format!("{base}.hash_key"), k)?,
        (Some(_), _) => {
            return Err(ConfigError::invalid(
                format!("{base}.hash_key"),
                "only used with `algorithm: consistent` (ip_hash always hashes the client IP;                  other algorithms use no key)",
            ))
        }
        (None, _) => HashKey::ClientIp,
    };
    let fallback = match &spec.fallback {
        Some(a) => {
            let path = format!("{base}.fallback");
            let fallback = parse_algorithm(&path, a)?;
            if fallback.is_keyed() {
                return Err(ConfigError::invalid(
                    path,
                    format!(
                        "the fallback must not need a key itself; pick round_robin, \
                         weighted_round_robin, random, p2c, least_connections or first, found {a:?}"
                    ),
                ));
            }
            fallback
        }
        None => Algorithm::RoundRobin,
    };
    let sticky = match (&spec.sticky, algorithm) {
        (Some(s), Algorithm::Cookie) => Some(sticky(&format!("{base}.sticky"), s)?),
        (None, Algorithm::Cookie) => Some(sticky(&format!("{base}.sticky"), &Default::default())?),
        (Some(_), _) => {
            return Err(ConfigError::invalid(
                format!("{base}.sticky"),
                "only used with `algorithm: cookie`",
            ))
        }
        (None, _) => None,
    };
    let mut backends = Vec::with_capacity(spec.backends.len());
    let mut seen = HashMap::new();
    for (i, b) in spec.backends.iter().enumerate() {
        let path = format!("{base}.backends[{i}]");
        let addr = resolve_addr(&format!("{path}.addr"), &b.addr)?;
        let host = b
            .addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
            .map(str::to_ascii_lowercase);
        let weight = b.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(ConfigError::invalid(
                format!("{path}.weight"),
                format!("expected an integer from 1 to {MAX_WEIGHT}, found {weight}"),
            ));
        }
        if let Some(first) = seen.insert(addr, i) {
            return Err(ConfigError::invalid(
                format!("{path}.addr"),
                format!("{addr} is already backends[{first}] of this upstream"),
            ));
        }
        backends.push(Backend {
            addr,
            host,
            weight: weight as u32,
        });
    }
    let timeouts = timeouts(&format!("{base}.timeouts"), spec.timeouts.as_ref())?;
    let tls = spec
        .tls
        .as_ref()
        .map(|t| upstream_tls(&format!("{base}.tls"), t))
        .transpose()?;
    let max_tries = match spec.max_tries {
        Some(0) => {
            return Err(ConfigError::invalid(
                format!("{base}.max_tries"),
                "expected at least 1 try, found 0",
            ))
        }
        Some(n) => n.min(backends.len()),
        None => backends.len().min(3),
    };
    let max_try_duration = spec
        .max_try_duration
        .as_deref()
        .map(|d| parse_duration(&format!("{base}.max_try_duration"), d))
        .transpose()?;
    let health_check = spec
        .health_check
        .as_ref()
        .map(|h| health_check(&format!("{base}.health_check"), h))
        .transpose()?;
    let circuit_breaker = circuit_breaker(
        &format!("{base}.circuit_breaker"),
        spec.circuit_breaker.as_ref(),
    )?;
    Ok(Upstream {
        name: name.to_string(),
        algorithm,
        hash_key,
        fallback,
        sticky,
        backends,
        timeouts,
        tls,
        max_tries,
        max_try_duration,
        health_check,
        circuit_breaker,
        backend_limit: backend_limit(base, spec)?,
    })
}

fn status_ranges(path: &str, values: &[Value]) -> Result<Vec<std::ops::RangeInclusive<u16>>> {
    if values.is_empty() {
        return Ok(vec![200..=399]);
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_ascii_lowercase(),
                _ => String::new(),
            };
            let bad = || {
                ConfigError::invalid(
                    format!("{path}[{i}]"),
                    format!("expected a status like 200, 2xx or 200-299, found {text:?}"),
                )
            };
            let code = |t: &str| t.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
            let range = if let Some(class) = text.strip_suffix("xx") {
                let c = class.parse::<u16>().ok().filter(|c| (1..=5).contains(c));
                c.map(|c| c * 100..=c * 100 + 99)
            } else if let Some((a, b)) = text.split_once('-') {
                match (code(a.trim()), code(b.trim())) {
                    (Some(a), Some(b)) if a <= b => Some(a..=b),
                    _ => None,
                }
            } else {
                code(&text).map(|c| c..=c)
            };
            range.ok_or_else(bad)
        })
        .collect()
}

fn health_check(base: &str, spec: &HealthCheckSpec) -> Result<HealthCheck> {
    let duration =
        |key: &str, text: &Option<String>, default: u64| -> Result<std::time::Duration> {
            match text {
                Some(t) => parse_positive_duration(&format!("{base}.{key}"), t),
                None => Ok(std::time::Duration::from_millis(default)),
            }
        };
    let interval = duration("interval", &spec.interval, 5_000)?;
    let timeout = duration("timeout", &spec.timeout, 2_000)?;
    let count = |key: &str, v: Option<u32>, default: u32| -> Result<u32> {
        match v.unwrap_or(default) {
            0 => Err(ConfigError::invalid(
                format!("{base}.{key}"),
                "expected at least 1",
            )),
            n => Ok(n),
        }
    };
    let rise = count("rise", spec.rise, 2)?;
    let fall = count("fall", spec.fall, 3)?;
    let http_only = |key: &str, present: bool| -> Result<()> {
        if present {
            Err(ConfigError::invalid(
                format!("{base}.{key}"),
                "only used with `type: http`",
            ))
        } else {
            Ok(())
        }
    };
    let kind = match spec.kind.as_deref().unwrap_or("http") {
        "tcp" => {
            http_only("path", spec.path.is_some())?;
            http_only("method", spec.method.is_some())?;
            http_only("host", spec.host.is_some())?;
            http_only("expect_status", !spec.expect_status.is_empty())?;
            http_only("expect_body", spec.expect_body.is_some())?;
            CheckKind::Tcp
        }
        "http" => {
            let path = spec.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(ConfigError::invalid(
                    format!("{base}.path"),
                    format!("expected a path starting with /, found {path:?}"),
                ));
            }
            let method = spec.method.as_deref().unwrap_or("GET");
            let method =
                http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ConfigError::invalid(
                        format!("{base}.method"),
                        format!("{method:?} is not an HTTP method"),
                    )
                })?;
            if let Some(h) = &spec.host {
                HeaderValue::from_str(h).map_err(|_| {
                    ConfigError::invalid(
                        format!("{base}.host"),
                        format!("{h:?} is not a valid host"),
                    )
                })?;
            }
            CheckKind::Http {
                method,
                path,
                host: spec.host.clone(),
                expect_status: status_ranges(
                    &format!("{base}.expect_status"),
                    &spec.expect_status,
                )?,
                expect_body: spec.expect_body.clone().filter(|b| !b.is_empty()),
            }
        }
        other => {
            return Err(ConfigError::invalid(
                format!("{base}.type"),
                format!("expected http or tcp, found {other:?}"),
            ))
        }
    };
    Ok(HealthCheck {
        kind,
        interval,
        timeout,
        rise,
        fall,
    })
}

fn circuit_breaker(base: &str, spec: Option<&CircuitBreakerSpec>) -> Result<CircuitBreaker> {
    let mut cb = CircuitBreaker::default();
    let Some(spec) = spec else { return Ok(cb) };
    cb.max_fails = spec.max_fails.unwrap_or(cb.max_fails);
    let positive = |key: &str, text: &str| parse_positive_duration(&format!("{base}.{key}"), text);
    if let Some(t) = &spec.cooldown {
        cb.cooldown = positive("cooldown", t)?;
    }
    if let Some(t) = &spec.max_cooldown {
        cb.max_cooldown = positive("max_cooldown", t)?;
    }
    if cb.max_cooldown < cb.cooldown {
        return Err(ConfigError::invalid(
            format!("{base}.max_cooldown"),
            "must not be shorter than cooldown",
        ));
    }
    cb.on_5xx = spec.on_5xx.unwrap_or(false);
    cb.slow_response = spec
        .slow_response
        .as_deref()
        .map(|t| positive("slow_response", t))
        .transpose()?;
    Ok(cb)
}

fn upstream_tls(base: &str, spec: &UpstreamTlsSpec) -> Result<UpstreamTls> {
    let ca = spec
        .ca_file
        .as_deref()
        .map(|f| {
            crate::tls::load_ca(std::path::Path::new(f))
                .map_err(|e| ConfigError::invalid(format!("{base}.ca_file"), e.to_string()))
        })
        .transpose()?;
    if let Some(sni) = &spec.sni {
        if sni.is_empty() || HeaderValue::from_str(sni).is_err() || sni.contains(['/', ' ']) {
            return Err(ConfigError::invalid(
                format!("{base}.sni"),
                format!("expected a host name, found {sni:?}"),
            ));
        }
    }
    Ok(UpstreamTls {
        sni: spec.sni.clone().unwrap_or_default(),
        ca,
        ca_file: spec.ca_file.clone(),
        insecure_skip_verify: spec.insecure_skip_verify,
    })
}

fn sticky(base: &str, spec: &StickySpec) -> Result<StickyCookie> {
    let name = spec
        .cookie
        .clone()
        .unwrap_or_else(|| "fulcrum_sticky".into());
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(&name) {
        return Err(ConfigError::invalid(
            format!("{base}.cookie"),
            format!("{name:?} is not a valid cookie name"),
        ));
    }
    let path = spec.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        return Err(ConfigError::invalid(
            format!("{base}.path"),
            format!("expected a cookie path starting with /, found {path:?}"),
        ));
    }
    let max_age = spec
        .max_age
        .as_deref()
        .map(|d| parse_duration(&format!("{base}.max_age"), d))
        .transpose()?;
    let same_site = match spec
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lax") => Some(SameSite::Lax),
        Some("strict") => Some(SameSite::Strict),
        Some("none") => Some(SameSite::None),
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{base}.same_site"),
                format!("expected strict, lax or none, found {other:?}"),
            ))
        }
    };
    let secret = match &spec.secret {
        Some(s) if s.len() < 16 => {
            return Err(ConfigError::invalid(
                format!("{base}.secret"),
                "expected at least 16 characters",
            ))
        }
        Some(s) => s.as_bytes().to_vec(),
        None => {
            use rand::RngCore;
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        }
    };
    Ok(StickyCookie {
        name,
        path,
        max_age,
        http_only: spec.http_only.unwrap_or(true),
        secure: spec.secure.unwrap_or(false),
        same_site,
        secret,
    })
}

fn timeouts(base: &str, spec: Option<&TimeoutsSpec>) -> Result<Timeouts> {
    let mut t = Timeouts::default();
    let Some(spec) = spec else { return Ok(t) };
    let fields = [
        ("connect", &spec.connect, &mut t.connect),
        ("read", &spec.read, &mut t.read),
        ("write", &spec.write, &mut t.write),
        ("idle", &spec.idle, &mut t.idle),
        ("tunnel", &spec.tunnel, &mut t.tunnel),
    ];
    for (key, text, slot) in fields {
        if let Some(text) = text {
            *slot = parse_positive_duration(&format!("{base}.{key}"), text)?;
        }
    }
    Ok(t)
}

fn host_match(path: &str, host: Option<&str>) -> Result<HostMatch> {
    let Some(host) = host else {
        return Ok(HostMatch::Any);
    };
    let lower = host.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with('.')
        && !name.ends_with('.');
    if !valid {
        return Err(ConfigError::invalid(
            path,
            format!("expected a host name like api.example.com or *.example.com, found {host:?}"),
        ));
    }
    Ok(if wild {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_string())
    })
}

fn routes(
    specs: &[RouteSpec],
    names: &HashMap<String, usize>,
    limits: &Limits,
) -> Result<Vec<Route>> {
    if specs.is_empty() {
        return Err(ConfigError::invalid(
            "routes",
            "at least one route is required, e.g. `routes: [{path: /, upstream: NAME}]`",
        ));
    }
    let mut seen: HashMap<(HostMatch, String), usize> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let base = format!("routes[{i}]");
        let host = host_match(&format!("{base}.host"), spec.host.as_deref())?;
        let path = spec.path.clone().unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(ConfigError::invalid(
                format!("{base}.path"),
                format!("expected a path prefix starting with / (no query), found {path:?}"),
            ));
        }
        let upstream = *names.get(&spec.upstream).ok_or_else(|| {
            let mut known: Vec<_> = names.keys().map(String::as_str).collect();
            known.sort_unstable();
            ConfigError::invalid(
                format!("{base}.upstream"),
                format!(
                    "no upstream named {:?} (defined: {})",
                    spec.upstream,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })?;
        if let Some(first) = seen.insert((host.clone(), path.clone()), i) {
            return Err(ConfigError::invalid(
                base,
                format!("same host and path as routes[{first}]"),
            ));
        }
        let (request_headers, response_headers) = match &spec.headers {
            Some(h) => (
                header_edits(&format!("{base}.headers.request"), h.request.as_ref())?,
                header_edits(&format!("{base}.headers.response"), h.response.as_ref())?,
            ),
            None => Default::default(),
        };
        let max_body_bytes = match &spec.max_body_bytes {
            Some(v) => body_limit(&format!("{base}.max_body_bytes"), v)?,
            None => limits.max_body_bytes,
        };
        let rate_limit = match &spec.rate_limit {
            None => RouteRateLimit::Inherit,
            Some(RouteRateLimitSpec::Switch(s)) if s == "off" => RouteRateLimit::Off,
            Some(RouteRateLimitSpec::Switch(s)) => {
                return Err(ConfigError::invalid(
                    format!("{base}.rate_limit"),
                    format!("expected `off` or a map with requests_per_second, found {s:?}"),
                ))
            }
            Some(RouteRateLimitSpec::Limit(r)) => {
                RouteRateLimit::Own(rate_limit(&format!("{base}.rate_limit"), r)?)
            }
        };
        out.push(Route {
            host,
            path,
            upstream,
            strip_prefix: spec.strip_prefix,
            redirect_to_https: spec.redirect_to_https,
            request_headers,
            response_headers,
            max_body_bytes,
            rate_limit,
        });
    }
    Ok(out)
}

fn header_name(path: &str, name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::invalid(path, format!("{name:?} is not a valid header name")))
}

fn header_pairs(
    base: &str,
    map: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>> {
    map.iter()
        .map(|(name, value)| {
            let path = format!("{base}.{name}");
            let n = header_name(&path, name)?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                ConfigError::invalid(&path, format!("{value:?} is not a valid header value"))
            })?;
            Ok((n, v))
        })
        .collect()
}

fn header_edits(base: &str, spec: Option<&HeaderEditsSpec>) -> Result<HeaderEdits> {
    let Some(spec) = spec else {
        return Ok(HeaderEdits::default());
    };
    let remove = spec
        .remove
        .iter()
        .enumerate()
        .map(|(i, n)| header_name(&format!("{base}.remove[{i}]"), n))
        .collect::<Result<_>>()?;
    Ok(HeaderEdits {
        remove,
        set: header_pairs(&format!("{base}.set"), &spec.set)?,
        add: header_pairs(&format!("{base}.add"), &spec.add)?,
    })
}

fn forwarding(spec: Option<&ForwardingSpec>) -> Result<Forwarding> {
    let mut f = Forwarding::default();
    let Some(spec) = spec else { return Ok(f) };
    for (i, text) in spec.trusted_proxies.iter().enumerate() {
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ConfigError::invalid(
                    format!("forwarding.trusted_proxies[{i}]"),
                    format!("expected a CIDR like 10.0.0.0/8 or an IP, found {text:?}"),
                )
            })?;
        f.trusted_proxies.push(net.trunc());
    }
    f.x_forwarded_for = spec.x_forwarded_for.unwrap_or(f.x_forwarded_for);
    f.x_forwarded_proto = spec.x_forwarded_proto.unwrap_or(f.x_forwarded_proto);
    f.x_forwarded_host = spec.x_forwarded_host.unwrap_or(f.x_forwarded_host);
    f.forwarded = spec.forwarded.unwrap_or(f.forwarded);
    f.via = spec.via.unwrap_or(f.via);
    f.preserve_header_case = spec.preserve_header_case.unwrap_or(f.preserve_header_case);
    f.served_by_header = spec
        .served_by_header
        .as_deref()
        .map(|n| header_name("forwarding.served_by_header", n))
        .transpose()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> RuntimeFiles {
        RuntimeFiles {
            pid_file: "/run/x.pid".into(),
            upgrade_sock: "/run/x.sock".into(),
        }
    }

    fn pingora(yaml: &str) -> ServerConf {
        let raw: Option<Mapping> = serde_yaml::from_str(yaml).ok();
        pingora_conf(raw.as_ref(), &files()).expect("valid pingora section")
    }

    #[test]
    fn instance_files_are_defaults_only() {
        let conf = pingora("threads: 1");
        assert_eq!(conf.pid_file, "/run/x.pid");
        assert_eq!(conf.upgrade_sock, "/run/x.sock");
        let conf = pingora("{pid_file: /a.pid, upgrade_sock: /a.sock}");
        assert_eq!(conf.pid_file, "/a.pid");
        assert_eq!(conf.upgrade_sock, "/a.sock");
    }

    #[test]
    fn runtime_defaults_unless_asked_otherwise() {
        let conf = pingora("threads: 1");
        assert!(!conf.work_stealing);
        assert_eq!(conf.fast_timeout_to_tokio_threshold_seconds, Some(0));
        // Several threads keep Pingora's default, the work-stealing runtime.
        assert!(ServerConf::default().work_stealing);
        assert!(pingora("threads: 2").work_stealing);
        let conf = pingora(
            "{threads: 1, work_stealing: true, fast_timeout_to_tokio_threshold_seconds: 900}",
        );
        assert!(conf.work_stealing);
        assert_eq!(conf.fast_timeout_to_tokio_threshold_seconds, Some(900));
        assert!(!pingora("{threads: 4, work_stealing: false}").work_stealing);
        assert_eq!(pingora("{}").upstream_keepalive_pool_size, 1024);
        assert_eq!(
            pingora("upstream_keepalive_pool_size: 8").upstream_keepalive_pool_size,
            8
        );
    }
}
