//! Routes and their policies as short text, shared by `fulcrum route` and `fulcrum -t`.

use crate::config::model::{
    Config, Destination, HashKey, HeaderEdits, HostMatch, Route, RouteRateLimit,
};

/// The hosts a route matches: `api.example.com`, `*.example.com` or `*` (any host).
pub fn host(h: &HostMatch) -> String {
    match h {
        HostMatch::Any => "*".into(),
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Suffix(s) => format!("*{s}"),
    }
}

/// A split key as written in the config (`cookie:user`, `client_ip`, ...).
pub fn hash_key(k: &HashKey) -> String {
    match k {
        HashKey::ClientIp => "client_ip".into(),
        HashKey::Path => "path".into(),
        HashKey::Header(h) => format!("header:{h}"),
        HashKey::Cookie(c) => format!("cookie:{c}"),
        HashKey::Query(q) => format!("query:{q}"),
    }
}

/// A share of a total in percent, without needless decimals (`95%`, `33.3%`).
pub fn percent(part: u64, total: u64) -> String {
    if total == 0 {
        return "0%".into();
    }
    let p = part as f64 * 100.0 / total as f64;
    let text = format!("{p:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A byte count in the largest binary unit that divides it (`64KiB`, `1MiB`, `1000B`).
pub fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

/// A route's `match:` conditions: `methods [GET, HEAD], header x-canary: "true", query beta:
/// present`; empty when it has none.
pub fn conditions(route: &Route) -> String {
    let m = &route.matchers;
    let mut parts = Vec::new();
    if !m.methods.is_empty() {
        let methods: Vec<&str> = m.methods.iter().map(http::Method::as_str).collect();
        parts.push(format!("methods [{}]", methods.join(", ")));
    }
    let value = |v: &crate::config::model::ValueMatch| match v {
        crate::config::model::ValueMatch::Present => "present".to_string(),
        crate::config::model::ValueMatch::Exact(x) => format!("{x:?}"),
        crate::config::model::ValueMatch::Regex(r) => format!("~{}", r.as_str()),
    };
    for (name, v) in &m.headers {
        parts.push(format!("header {name}: {}", value(v)));
    }
    for (name, v) in &m.query {
        parts.push(format!("query {name}: {}", value(v)));
    }
    parts.join(", ")
}

/// The shares of a split's sides: `95% api-v1, 5% api-v2`.
pub fn shares(config: &Config, sides: &[(usize, u32)]) -> String {
    let total: u64 = sides.iter().map(|(_, w)| u64::from(*w)).sum();
    sides
        .iter()
        .map(|(g, w)| {
            format!(
                "{} {}",
                percent(u64::from(*w), total),
                config.upstreams[*g].name
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a route sends requests: `api`, or `split 95% api-v1, 5% api-v2 by cookie:user`.
pub fn destination(config: &Config, route: &Route) -> String {
    match &route.destination {
        Destination::Upstream(g) => config.upstreams[*g].name.clone(),
        Destination::Split(s) => {
            let sides: Vec<(usize, u32)> = s.sides.iter().map(|x| (x.upstream, x.weight)).collect();
            let by = s
                .key
                .as_ref()
                .map_or(" (each request on its own)".to_string(), |k| {
                    format!(" by {}", hash_key(k))
                });
            format!("split {}{by}", shares(config, &sides))
        }
    }
}

/// The path changes of a route: `strip_prefix /api`, `rewrite ^/v1/(.*) -> /$1`; empty when
/// it forwards the path as it is.
pub fn path_changes(route: &Route) -> String {
    let mut parts = Vec::new();
    if route.strip_prefix {
        parts.push(format!("strip_prefix {}", route.path));
    }
    if let Some(r) = &route.rewrite {
        parts.push(format!("rewrite {} -> {}", r.regex.as_str(), r.to));
    }
    parts.join(", ")
}

/// A route's mirror: `shadow (10%)`, or `None` without one.
pub fn mirror(config: &Config, route: &Route) -> Option<String> {
    route.mirror.as_ref().map(|m| {
        format!(
            "{} ({}% of requests, bodies up to {})",
            config.upstreams[m.upstream].name,
            trim_float(m.percent),
            size(m.max_body_bytes)
        )
    })
}

/// A route's rate limit: `10 rps, burst 20 per client IP (route's own)`, or `off`.
pub fn rate_limit(config: &Config, route: &Route) -> String {
    let (limit, whose) = match &route.rate_limit {
        RouteRateLimit::Off => return "off (rate_limit: off)".into(),
        RouteRateLimit::Own(l) => (l, "the route's own"),
        RouteRateLimit::Inherit => match &config.rate_limit {
            Some(l) => (l, "top-level rate_limit, shared"),
            None => return "off (no rate_limit)".into(),
        },
    };
    format!(
        "{} rps, burst {} per client IP ({whose}; 429 above)",
        trim_float(limit.requests_per_second),
        limit.burst
    )
}

/// A route's body limit: `1MiB (413 above)` or `none`.
pub fn body_limit(route: &Route) -> String {
    match route.max_body_bytes {
        Some(n) => format!("{} (413 above)", size(n)),
        None => "none".into(),
    }
}

/// A route's request buffering: `16KiB read before choosing a backend` or `off (streamed)`.
pub fn buffering(route: &Route) -> String {
    match route.request_buffering {
        0 => "off (bodies are streamed)".into(),
        n => format!(
            "bodies up to {} read whole before a backend is chosen",
            size(n)
        ),
    }
}

/// Header edits: `set x-env: prod; add x-a: b; remove x-debug`, or `none`.
pub fn edits(e: &HeaderEdits) -> String {
    let value = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut parts = Vec::new();
    for n in &e.remove {
        parts.push(format!("remove {n}"));
    }
    for (n, v) in &e.set {
        parts.push(format!("set {n}: {}", value(v)));
    }
    for (n, v) in &e.add {
        parts.push(format!("add {n}: {}", value(v)));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

fn trim_float(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(percent(95, 100), "95%");
        assert_eq!(percent(1, 3), "33.33%");
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(size(64 * 1024), "64KiB");
        assert_eq!(size(3 << 20), "3MiB");
        assert_eq!(size(1000), "1000B");
        assert_eq!(trim_float(0.5), "0.5");
        assert_eq!(trim_float(10.0), "10");
    }
}
