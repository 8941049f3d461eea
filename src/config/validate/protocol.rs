//! An upstream group's `protocol` and `max_h2_streams`, checked against its `tls:`.

use super::values::int_in;
use super::Result;
use crate::config::error::ConfigError;
use crate::config::protocol::{Protocol, UpstreamProtocol, DEFAULT_MAX_H2_STREAMS, MAX_H2_STREAMS};
use crate::config::schema::UpstreamSpec;

/// The protocol settings of the group at `base` (`upstreams.NAME`); refuses combinations
/// that cannot work: `h2`/`auto` without `tls:`, `h2c` with it, `max_h2_streams` on `h1`.
pub(super) fn upstream_protocol(base: &str, spec: &UpstreamSpec) -> Result<UpstreamProtocol> {
    let path = format!("{base}.protocol");
    let protocol = match spec.protocol.as_deref() {
        None => Protocol::H1,
        Some(name) => Protocol::from_name(name).ok_or_else(|| {
            let known: Vec<_> = Protocol::ALL.iter().map(|(n, _)| *n).collect();
            ConfigError::invalid(
                &path,
                format!("expected one of {}, found {name:?}", known.join(", ")),
            )
        })?,
    };
    let tls = spec.tls.is_some();
    if protocol.needs_tls() && !tls {
        return Err(ConfigError::invalid(
            path,
            format!(
                "`{}` runs over TLS and needs `tls:` in the group (e.g. `tls: {{}}`); \
                 use `h2c` for HTTP/2 over plain TCP",
                protocol.name()
            ),
        ));
    }
    if protocol == Protocol::H2c && tls {
        return Err(ConfigError::invalid(
            path,
            "`h2c` is HTTP/2 over plain TCP but the group has `tls:`; use `h2` (or `auto`) \
             for HTTP/2 over TLS",
        ));
    }
    let max_h2_streams = match spec.max_h2_streams {
        None => DEFAULT_MAX_H2_STREAMS,
        Some(_) if !protocol.may_use_h2() => {
            return Err(ConfigError::invalid(
                format!("{base}.max_h2_streams"),
                "only used with `protocol: h2c`, `h2` or `auto`",
            ))
        }
        Some(n) => int_in(
            &format!("{base}.max_h2_streams"),
            n,
            1..=MAX_H2_STREAMS as i64,
        )? as usize,
    };
    Ok(UpstreamProtocol {
        protocol,
        max_h2_streams,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::protocol::Protocol;
    use crate::config::validate::testing::{accepts, rejected};

    fn upstream(fields: &str) -> String {
        format!("upstreams: {{api: {{backends: [{{addr: '127.0.0.1:3001'}}], {fields}}}}}")
    }

    #[test]
    fn impossible_combinations_name_the_key() {
        let cases = [
            ("protocol: h2", "upstreams.api.protocol", "needs `tls:`"),
            ("protocol: auto", "upstreams.api.protocol", "needs `tls:`"),
            (
                "protocol: h2c, tls: {}",
                "upstreams.api.protocol",
                "plain TCP",
            ),
            (
                "protocol: http2",
                "upstreams.api.protocol",
                "h1, h2c, h2, auto",
            ),
            (
                "max_h2_streams: 10",
                "upstreams.api.max_h2_streams",
                "only used",
            ),
            (
                "protocol: h2c, max_h2_streams: 0",
                "upstreams.api.max_h2_streams",
                "from 1 to 10000",
            ),
            (
                "protocol: h2c, max_h2_streams: 10001",
                "upstreams.api.max_h2_streams",
                "from 1 to 10000",
            ),
        ];
        for (fields, path, words) in cases {
            let e = rejected(&upstream(fields));
            assert_eq!(e.path, path, "{fields}");
            assert!(e.to_string().contains(words), "{fields}: {e}");
        }
    }

    #[test]
    fn working_combinations_are_kept() {
        let cases = [
            ("", Protocol::H1, 100),
            ("protocol: h1, tls: {}", Protocol::H1, 100),
            ("protocol: h2c", Protocol::H2c, 100),
            ("protocol: h2, tls: {}, max_h2_streams: 1", Protocol::H2, 1),
            (
                "protocol: auto, tls: {}, max_h2_streams: 10000",
                Protocol::Auto,
                10000,
            ),
        ];
        for (fields, protocol, streams) in cases {
            let config = accepts(&upstream(fields));
            let p = config.upstreams[0].protocol;
            assert_eq!(
                (p.protocol, p.max_h2_streams),
                (protocol, streams),
                "{fields}"
            );
        }
    }
}
