//! The `upstreams:` section: groups of backends, how one is picked, and how it is reached.

use super::discovery::discovery;
use super::health::{circuit_breaker, health_check};
use super::load::{read_pem, Load};
use super::protocol::upstream_protocol;
use super::sticky::sticky;
use super::values::int_in;
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use crate::config::units::{parse_duration, parse_positive_duration};
use crate::tls;
use http::{HeaderName, HeaderValue};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

/// Largest accepted backend weight.
pub const MAX_WEIGHT: i64 = 1000;

/// Default `max_tries` (static groups: at most their backend count).
const DEFAULT_MAX_TRIES: usize = 3;

pub(super) fn upstreams(
    specs: &BTreeMap<String, UpstreamSpec>,
    io: &dyn Load,
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
        out.push(upstream(&base, name, spec, io)?);
    }
    Ok((out, names))
}

fn upstream(base: &str, name: &str, spec: &UpstreamSpec, io: &dyn Load) -> Result<Upstream> {
    if spec.backends.is_empty() && spec.discovery.is_none() {
        return Err(ConfigError::invalid(
            format!("{base}.backends"),
            "an upstream needs `backends` or `discovery` (or both), e.g. \
             `backends: [{addr: 127.0.0.1:3001}]` or `discovery: {dns: api.internal:8080}`",
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
                "only used with `algorithm: consistent` (ip_hash always hashes the client IP; \
                 other algorithms use no key)",
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
    let backends = static_backends(base, &spec.backends, io)?;
    let discovery = spec
        .discovery
        .as_ref()
        .map(|d| discovery(base, d))
        .transpose()?;
    let slow_start = spec
        .slow_start
        .as_deref()
        .map(|d| parse_positive_duration(&format!("{base}.slow_start"), d))
        .transpose()?;
    let timeouts = timeouts(&format!("{base}.timeouts"), spec.timeouts.as_ref())?;
    let tls = spec
        .tls
        .as_ref()
        .map(|t| upstream_tls(&format!("{base}.tls"), t, io))
        .transpose()?;
    let protocol = upstream_protocol(base, spec)?;
    let max_tries = match spec.max_tries {
        Some(0) => {
            return Err(ConfigError::invalid(
                format!("{base}.max_tries"),
                "expected at least 1 try, found 0",
            ))
        }
        // Discovered backends come and go at run time: the static count is no bound.
        Some(n) if discovery.is_some() => n,
        None if discovery.is_some() => DEFAULT_MAX_TRIES,
        Some(n) => n.min(backends.len()),
        None => backends.len().min(DEFAULT_MAX_TRIES),
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
        protocol,
        max_tries,
        max_try_duration,
        health_check,
        circuit_breaker,
        backend_limit: backend_limit(base, spec)?,
        discovery,
        slow_start,
    })
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

pub(super) fn hash_key(path: &str, text: &str) -> Result<HashKey> {
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

/// The static backends at `base.backends`: one per address, a host name standing for each of
/// the addresses it resolves to (as in nginx), all with the entry's weight. An address met
/// twice is an error at the entry that brings it the second time.
fn static_backends(base: &str, specs: &[BackendSpec], io: &dyn Load) -> Result<Vec<Backend>> {
    let mut backends = Vec::with_capacity(specs.len());
    let mut seen = HashMap::new();
    for (i, b) in specs.iter().enumerate() {
        let path = format!("{base}.backends[{i}]");
        let addrs = resolve_addr(&format!("{path}.addr"), &b.addr, io)?;
        let host = b
            .addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
            .map(str::to_ascii_lowercase);
        let weight = int_in(
            &format!("{path}.weight"),
            b.weight.unwrap_or(1),
            1..=MAX_WEIGHT,
        )?;
        for addr in addrs {
            if let Some(first) = seen.insert(addr, i) {
                return Err(ConfigError::invalid(
                    format!("{path}.addr"),
                    format!("{addr} is already backends[{first}] of this upstream"),
                ));
            }
            backends.push(Backend {
                addr,
                host: host.clone(),
                weight: weight as u32,
            });
        }
    }
    Ok(backends)
}

/// A backend address: `IP:port`, or `host:port` resolved now to all its addresses (without
/// repeats, in the resolver's order).
fn resolve_addr(path: &str, text: &str, io: &dyn Load) -> Result<Vec<SocketAddr>> {
    let bad = |why: String| ConfigError::invalid(path, why);
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if !crate::config::model::is_connectable(&addr) {
            return Err(bad(format!(
                "{addr} cannot be a backend: it needs a port and a unicast, specified IP"
            )));
        }
        return Ok(vec![addr]);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("expected host:port, found {text:?} (no port)")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad(format!("expected host:port, found {text:?}")));
    }
    let mut addrs = io
        .resolve(text)
        .map_err(|e| bad(format!("cannot resolve {text:?}: {e}")))?;
    let mut kept = HashSet::new();
    addrs.retain(|a| kept.insert(*a) && crate::config::model::is_connectable(a));
    if addrs.is_empty() {
        return Err(bad(format!("{text:?} resolves to no address")));
    }
    Ok(addrs)
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
    let max = int_in(&format!("{base}.max_connections"), max, 1..=1_000_000)?;
    let queue = spec.queue.clone().unwrap_or_default();
    let queue_size = match queue.size {
        None => 100,
        Some(n) => int_in(&format!("{base}.queue.size"), n, 0..=1_000_000)? as usize,
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

fn timeouts(base: &str, spec: Option<&TimeoutsSpec>) -> Result<Timeouts> {
    let mut t = Timeouts::default();
    let Some(spec) = spec else { return Ok(t) };
    let fields = [
        ("connect", &spec.connect, &mut t.connect),
        ("read", &spec.read, &mut t.read),
        ("write", &spec.write, &mut t.write),
        ("idle", &spec.idle, &mut t.idle),
        ("tunnel", &spec.tunnel, &mut t.tunnel),
        ("stream_idle", &spec.stream_idle, &mut t.stream_idle),
    ];
    for (key, text, slot) in fields {
        if let Some(text) = text {
            *slot = parse_positive_duration(&format!("{base}.{key}"), text)?;
        }
    }
    Ok(t)
}

fn upstream_tls(base: &str, spec: &UpstreamTlsSpec, io: &dyn Load) -> Result<UpstreamTls> {
    let ca = spec
        .ca_file
        .as_deref()
        .map(|f| {
            read_pem(io, f)
                .and_then(|pem| tls::ca_list(&pem, f))
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

#[cfg(test)]
mod tests;
