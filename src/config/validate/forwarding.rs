//! The `forwarding:` section: which headers tell a backend about the client.

use super::values::header_name;
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use ipnet::IpNet;
use std::net::IpAddr;

pub(super) fn forwarding(spec: Option<&ForwardingSpec>) -> Result<Forwarding> {
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
    f.trace_context = spec.trace_context.unwrap_or(f.trace_context);
    f.served_by_header = spec
        .served_by_header
        .as_deref()
        .map(|n| header_name("forwarding.served_by_header", n))
        .transpose()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{accepts, rejects};

    #[test]
    fn rules() {
        rejects(&[
            (
                "forwarding: {trusted_proxies: [10.0.0.0/33]}",
                "forwarding.trusted_proxies[0]",
                "expected a CIDR like 10.0.0.0/8 or an IP, found \"10.0.0.0/33\"",
            ),
            (
                "forwarding: {served_by_header: 'x served'}",
                "forwarding.served_by_header",
                "\"x served\" is not a valid header name",
            ),
        ]);
    }

    #[test]
    fn trusted_proxies_are_networks() {
        let config = accepts("forwarding: {trusted_proxies: [10.1.2.3/8, 192.168.0.1]}");
        let nets: Vec<String> = config
            .forwarding
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.0.1/32"]);
    }
}
