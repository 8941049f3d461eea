//! `upstreams.NAME.discovery`: where a group finds backends at run time (DNS names, SRV
//! records or a file), how often it looks again, and how many it may take.

use super::values::int_in;
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::{Discovery, DiscoverySource, DEFAULT_MAX_DISCOVERED, MAX_DISCOVERED};
use crate::config::schema::DiscoverySpec;
use crate::config::units::parse_duration;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default `discovery.interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest `discovery.interval`.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest DNS name, without the trailing dot (RFC 1035 2.3.4).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// The checked `discovery` of the group at `base` (`upstreams.NAME`).
pub(super) fn discovery(base: &str, spec: &DiscoverySpec) -> Result<Discovery> {
    let base = format!("{base}.discovery");
    let given: Vec<&str> = [
        ("dns", spec.dns.is_some()),
        ("dns_srv", spec.dns_srv.is_some()),
        ("file", spec.file.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    let source = match (&spec.dns, &spec.dns_srv, &spec.file) {
        (Some(dns), None, None) => dns_source(&format!("{base}.dns"), dns)?,
        (None, Some(srv), None) => srv_source(&format!("{base}.dns_srv"), srv)?,
        (None, None, Some(file)) => file_source(&format!("{base}.file"), file)?,
        (None, None, None) => {
            return Err(ConfigError::invalid(
                base,
                "expected one source: `dns: NAME:PORT`, `dns_srv: NAME` or `file: PATH`",
            ))
        }
        _ => {
            let found: Vec<String> = given.iter().map(|k| format!("`{k}`")).collect();
            return Err(ConfigError::invalid(
                base,
                format!(
                    "expected exactly one of `dns`, `dns_srv` or `file`, found {}",
                    found.join(" and ")
                ),
            ));
        }
    };
    let interval = match &spec.interval {
        None => DEFAULT_INTERVAL,
        Some(text) => {
            let path = format!("{base}.interval");
            let d = parse_duration(&path, text)?;
            if d < MIN_INTERVAL {
                return Err(ConfigError::invalid(
                    path,
                    format!("expected a duration of at least 1s, found {text:?}"),
                ));
            }
            d
        }
    };
    let max_backends = match spec.max_backends {
        None => DEFAULT_MAX_DISCOVERED,
        Some(n) => int_in(
            &format!("{base}.max_backends"),
            n,
            1..=MAX_DISCOVERED as i64,
        )? as usize,
    };
    Ok(Discovery {
        source,
        interval,
        required: spec.required.unwrap_or(true),
        max_backends,
    })
}

/// `dns: NAME:PORT`.
fn dns_source(path: &str, text: &str) -> Result<DiscoverySource> {
    let bad = |why: String| ConfigError::invalid(path, why);
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad(format!(
            "expected NAME:PORT like api.internal:8080, found {text:?} (no port)"
        )));
    };
    if is_ip(host) {
        return Err(bad(format!(
            "{host:?} is an IP address, not a name to resolve; list it under `backends:` instead"
        )));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(bad(format!(
                "expected a port from 1 to 65535 after the name, found {port:?}"
            )))
        }
    };
    Ok(DiscoverySource::Dns {
        name: dns_name(path, host)?,
        port,
    })
}

/// `dns_srv: NAME`.
fn srv_source(path: &str, text: &str) -> Result<DiscoverySource> {
    if text.contains(':') || is_ip(text) {
        return Err(ConfigError::invalid(
            path,
            format!(
                "expected an SRV name like _grpc._tcp.svc.internal (ports come from the SRV \
                 records), found {text:?}"
            ),
        ));
    }
    Ok(DiscoverySource::DnsSrv {
        name: dns_name(path, text)?,
    })
}

/// `file: PATH`; the file need not exist yet (the runtime reads it).
fn file_source(path: &str, text: &str) -> Result<DiscoverySource> {
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(
            path,
            "expected the path of a file listing backends, found an empty string",
        ));
    }
    Ok(DiscoverySource::File {
        path: PathBuf::from(text),
    })
}

/// An IP literal, with or without brackets.
fn is_ip(text: &str) -> bool {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().is_ok()
}

/// A DNS name, lowercased and without its trailing dot: labels of 1 to 63 letters, digits,
/// `-` or `_`, at most 253 characters in all.
pub(super) fn dns_name(path: &str, text: &str) -> Result<String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.len() > MAX_NAME {
        return Err(ConfigError::invalid(
            path,
            format!(
                "expected a DNS name of at most {MAX_NAME} characters, found {} characters",
                name.len()
            ),
        ));
    }
    let label_ok = |l: &str| {
        (1..=MAX_LABEL).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(ConfigError::invalid(
            path,
            format!(
                "expected a DNS name (dot-separated labels of 1 to 63 letters, digits, `-` or \
                 `_`), found {text:?}"
            ),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use crate::config::model::{Discovery, DiscoverySource, DEFAULT_MAX_DISCOVERED};
    use crate::config::validate::testing::{accepts, rejected, rejects};
    use std::time::Duration;

    fn discovery(fields: &str) -> String {
        format!("upstreams: {{api: {{discovery: {{{fields}}}}}}}")
    }

    fn accepted(fields: &str) -> Discovery {
        let config = accepts(&discovery(fields));
        config.upstreams[0].discovery.clone().expect("discovery")
    }

    fn dns(name: &str, port: u16) -> DiscoverySource {
        DiscoverySource::Dns {
            name: name.into(),
            port,
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(
            accepted("dns: 'api.internal:8080'"),
            Discovery {
                source: dns("api.internal", 8080),
                interval: Duration::from_secs(5),
                required: true,
                max_backends: DEFAULT_MAX_DISCOVERED,
            }
        );
        let config = accepts("{}");
        assert_eq!(config.upstreams[0].discovery, None);
    }

    #[test]
    fn valid_forms() {
        let d =
            accepted("dns: 'API.Internal.:443', interval: 1s, required: false, max_backends: 4096");
        assert_eq!(d.source, dns("api.internal", 443));
        assert_eq!(d.interval, Duration::from_secs(1));
        assert!(!d.required);
        assert_eq!(d.max_backends, 4096);
        assert_eq!(
            accepted("dns: 'a_b-1.x:1', max_backends: 1").max_backends,
            1
        );
        assert_eq!(accepted("dns: 'a_b-1.x:1'").source, dns("a_b-1.x", 1));
        assert_eq!(accepted("dns: 'single:65535'").source, dns("single", 65535));
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long.len(), 253);
        assert_eq!(
            accepted(&format!("dns: '{long}.:80'")).source,
            dns(&long, 80)
        );
        assert_eq!(
            accepted("dns_srv: _grpc._tcp.SVC.internal., interval: 2m").source,
            DiscoverySource::DnsSrv {
                name: "_grpc._tcp.svc.internal".into()
            }
        );
        assert_eq!(
            accepted("file: conf/backends/files.yaml, interval: 2s").source,
            DiscoverySource::File {
                path: "conf/backends/files.yaml".into()
            }
        );
    }

    #[test]
    fn rules() {
        let long_label = format!("dns: '{}.internal:80'", "a".repeat(64));
        let long_name = format!(
            "dns: '{}.{}.{}.{}:80'",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        let cases = [
            (
                discovery(""),
                "upstreams.api.discovery",
                "expected one source: `dns: NAME:PORT`, `dns_srv: NAME` or `file: PATH`",
            ),
            (
                discovery("interval: 5s"),
                "upstreams.api.discovery",
                "expected one source: `dns: NAME:PORT`, `dns_srv: NAME` or `file: PATH`",
            ),
            (
                discovery("dns: 'a.internal:80', file: b.yaml"),
                "upstreams.api.discovery",
                "expected exactly one of `dns`, `dns_srv` or `file`, found `dns` and `file`",
            ),
            (
                discovery("dns: 'a.internal:80', dns_srv: _a._tcp.internal, file: b.yaml"),
                "upstreams.api.discovery",
                "expected exactly one of `dns`, `dns_srv` or `file`, found `dns` and `dns_srv` \
                 and `file`",
            ),
            (
                discovery("dns: api.internal"),
                "upstreams.api.discovery.dns",
                "expected NAME:PORT like api.internal:8080, found \"api.internal\" (no port)",
            ),
            (
                discovery("dns: 'api.internal:0'"),
                "upstreams.api.discovery.dns",
                "expected a port from 1 to 65535 after the name, found \"0\"",
            ),
            (
                discovery("dns: 'api.internal:65536'"),
                "upstreams.api.discovery.dns",
                "expected a port from 1 to 65535 after the name, found \"65536\"",
            ),
            (
                discovery("dns: 'api.internal:http'"),
                "upstreams.api.discovery.dns",
                "expected a port from 1 to 65535 after the name, found \"http\"",
            ),
            (
                discovery("dns: '10.0.0.1:80'"),
                "upstreams.api.discovery.dns",
                "\"10.0.0.1\" is an IP address, not a name to resolve; list it under `backends:` \
                 instead",
            ),
            (
                discovery("dns: '[::1]:80'"),
                "upstreams.api.discovery.dns",
                "\"[::1]\" is an IP address, not a name to resolve; list it under `backends:` \
                 instead",
            ),
            (
                discovery("dns: 'a..b:80'"),
                "upstreams.api.discovery.dns",
                "expected a DNS name (dot-separated labels of 1 to 63 letters, digits, `-` or \
                 `_`), found \"a..b\"",
            ),
            (
                discovery("dns: ':80'"),
                "upstreams.api.discovery.dns",
                "expected a DNS name (dot-separated labels of 1 to 63 letters, digits, `-` or \
                 `_`), found \"\"",
            ),
            (
                discovery("dns: 'api internal:80'"),
                "upstreams.api.discovery.dns",
                "expected a DNS name (dot-separated labels of 1 to 63 letters, digits, `-` or \
                 `_`), found \"api internal\"",
            ),
            (
                discovery(&long_label),
                "upstreams.api.discovery.dns",
                &format!(
                    "expected a DNS name (dot-separated labels of 1 to 63 letters, digits, `-` or \
                     `_`), found \"{}.internal\"",
                    "a".repeat(64)
                ),
            ),
            (
                discovery(&long_name),
                "upstreams.api.discovery.dns",
                "expected a DNS name of at most 253 characters, found 254 characters",
            ),
            (
                discovery("dns_srv: '_grpc._tcp.svc.internal:50051'"),
                "upstreams.api.discovery.dns_srv",
                "expected an SRV name like _grpc._tcp.svc.internal (ports come from the SRV \
                 records), found \"_grpc._tcp.svc.internal:50051\"",
            ),
            (
                discovery("dns_srv: 10.0.0.1"),
                "upstreams.api.discovery.dns_srv",
                "expected an SRV name like _grpc._tcp.svc.internal (ports come from the SRV \
                 records), found \"10.0.0.1\"",
            ),
            (
                discovery("dns_srv: '_grpc/tcp'"),
                "upstreams.api.discovery.dns_srv",
                "expected a DNS name (dot-separated labels of 1 to 63 letters, digits, `-` or \
                 `_`), found \"_grpc/tcp\"",
            ),
            (
                discovery("file: ''"),
                "upstreams.api.discovery.file",
                "expected the path of a file listing backends, found an empty string",
            ),
            (
                discovery("dns: 'a.internal:80', interval: 500ms"),
                "upstreams.api.discovery.interval",
                "expected a duration of at least 1s, found \"500ms\"",
            ),
            (
                discovery("dns: 'a.internal:80', interval: 0s"),
                "upstreams.api.discovery.interval",
                "expected a duration of at least 1s, found \"0s\"",
            ),
            (
                discovery("dns: 'a.internal:80', interval: often"),
                "upstreams.api.discovery.interval",
                "expected a duration like 500ms, 5s, 2m or 1h, found \"often\"",
            ),
            (
                discovery("dns: 'a.internal:80', max_backends: 0"),
                "upstreams.api.discovery.max_backends",
                "expected an integer from 1 to 4096, found 0",
            ),
            (
                discovery("dns: 'a.internal:80', max_backends: 4097"),
                "upstreams.api.discovery.max_backends",
                "expected an integer from 1 to 4096, found 4097",
            ),
        ];
        let cases: Vec<_> = cases.iter().map(|(y, p, m)| (y.as_str(), *p, *m)).collect();
        rejects(&cases);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_at_their_path() {
        let e = rejected(&discovery("dns: 'a.internal:80', srv: x"));
        assert_eq!(e.path, "upstreams.api.discovery.srv");
        assert!(e.to_string().contains("unknown key, expected one of `dns`, `dns_srv`, `file`, `interval`, `required`, `max_backends`"), "{e}");
        let e = rejected(&discovery("dns: 'a.internal:80', required: maybe"));
        assert_eq!(e.path, "upstreams.api.discovery.required");
        assert!(e.to_string().contains("expected a boolean"), "{e}");
        let e = rejected("upstreams: {api: {discovery: {dns: 'a.internal:80'}, slow_start: [1s]}}");
        assert_eq!(e.path, "upstreams.api.slow_start");
    }

    #[test]
    fn the_documented_example_parses_unquoted() {
        let config = accepts(
            "
resolver:
  nameservers: [127.0.0.1:53, 10.0.0.1]
  timeout: 2s
upstreams:
  api:
    discovery:
      dns: api.internal:8080
      interval: 5s
      required: true
      max_backends: 1024
    slow_start: 30s
  grpc:
    discovery: {dns_srv: _grpc._tcp.svc.internal, interval: 5s}
  files:
    discovery: {file: conf/backends/files.yaml, interval: 2s}
",
        );
        assert_eq!(config.resolver.nameservers.len(), 2);
        let sources: Vec<_> = config
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.discovery.clone().map(|d| d.source)))
            .collect();
        assert_eq!(
            sources,
            [
                ("api", Some(dns("api.internal", 8080))),
                (
                    "files",
                    Some(DiscoverySource::File {
                        path: "conf/backends/files.yaml".into()
                    })
                ),
                (
                    "grpc",
                    Some(DiscoverySource::DnsSrv {
                        name: "_grpc._tcp.svc.internal".into()
                    })
                ),
            ]
        );
        assert_eq!(
            config.upstreams[0].slow_start,
            Some(Duration::from_secs(30))
        );
    }
}
