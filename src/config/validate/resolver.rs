//! The `resolver:` section: the name servers discovery asks and how long it waits for each.

use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::Resolver;
use crate::config::schema::ResolverSpec;
use crate::config::units::parse_positive_duration;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The DNS port, for name servers written as a bare IP.
const DNS_PORT: u16 = 53;

/// The checked resolver; the default (no name servers: `/etc/resolv.conf`'s, read at run
/// time) when the section is absent.
pub(super) fn resolver(spec: Option<&ResolverSpec>) -> Result<Resolver> {
    let mut out = Resolver::default();
    let Some(spec) = spec else { return Ok(out) };
    for (i, text) in spec.nameservers.iter().enumerate() {
        let path = format!("resolver.nameservers[{i}]");
        let addr = nameserver(&path, text)?;
        if let Some(first) = out.nameservers.iter().position(|a| *a == addr) {
            return Err(ConfigError::invalid(
                path,
                format!("{addr} is already nameservers[{first}]"),
            ));
        }
        out.nameservers.push(addr);
    }
    if let Some(text) = &spec.timeout {
        out.timeout = parse_positive_duration("resolver.timeout", text)?;
    }
    Ok(out)
}

/// `IP:port`, or a bare IP for port 53 (an IPv6 one in brackets, as `::1:53` could mean
/// either).
fn nameserver(path: &str, text: &str) -> Result<SocketAddr> {
    let bad = |why: String| ConfigError::invalid(path, why);
    let bracketed = || {
        text.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<Ipv6Addr>().ok())
    };
    let addr = if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = text.parse::<Ipv4Addr>() {
        SocketAddr::new(ip.into(), DNS_PORT)
    } else if let Some(ip) = bracketed() {
        SocketAddr::new(ip.into(), DNS_PORT)
    } else if text.parse::<Ipv6Addr>().is_ok() {
        return Err(bad(format!(
            "write an IPv6 name server in brackets, as [::1]:53 or [::1], found {text:?}"
        )));
    } else {
        return Err(bad(format!(
            "expected a name server as IP:port like 127.0.0.1:53 or [::1]:53, or a bare IP \
             for port 53, found {text:?}"
        )));
    };
    if addr.port() == 0 {
        return Err(bad(format!(
            "expected a port from 1 to 65535, found {text:?}"
        )));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use crate::config::model::Resolver;
    use crate::config::validate::testing::{accepts, rejected, rejects};
    use std::time::Duration;

    fn resolver(section: &str) -> Resolver {
        accepts(&format!("resolver: {section}")).resolver
    }

    #[test]
    fn defaults_leave_the_name_servers_to_resolv_conf() {
        assert_eq!(accepts("{}").resolver, Resolver::default());
        assert!(Resolver::default().nameservers.is_empty());
        assert_eq!(Resolver::default().timeout, Duration::from_secs(2));
        assert_eq!(resolver("{}"), Resolver::default());
        assert_eq!(
            resolver("{timeout: 500ms}").timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn name_servers_are_ip_port_or_a_bare_ip_for_port_53() {
        let r = resolver(
            "{nameservers: ['127.0.0.1:5353', 10.0.0.2, '[::1]:53', '[::2]'], timeout: 1s}",
        );
        let got: Vec<_> = r.nameservers.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            ["127.0.0.1:5353", "10.0.0.2:53", "[::1]:53", "[::2]:53"]
        );
        assert_eq!(r.timeout, Duration::from_secs(1));
    }

    #[test]
    fn rules() {
        rejects(&[
            (
                "resolver: {nameservers: [dns.internal]}",
                "resolver.nameservers[0]",
                "expected a name server as IP:port like 127.0.0.1:53 or [::1]:53, or a bare IP \
                 for port 53, found \"dns.internal\"",
            ),
            (
                "resolver: {nameservers: ['127.0.0.1:53', '::1:53']}",
                "resolver.nameservers[1]",
                "write an IPv6 name server in brackets, as [::1]:53 or [::1], found \"::1:53\"",
            ),
            (
                "resolver: {nameservers: ['127.0.0.1:0']}",
                "resolver.nameservers[0]",
                "expected a port from 1 to 65535, found \"127.0.0.1:0\"",
            ),
            (
                "resolver: {nameservers: [127.0.0.1, '127.0.0.1:53']}",
                "resolver.nameservers[1]",
                "127.0.0.1:53 is already nameservers[0]",
            ),
            (
                "resolver: {timeout: 0s}",
                "resolver.timeout",
                "expected a duration above zero",
            ),
            (
                "resolver: {timeout: soon}",
                "resolver.timeout",
                "expected a duration like 500ms, 5s, 2m or 1h, found \"soon\"",
            ),
        ]);
    }

    #[test]
    fn unknown_keys_are_refused_at_their_path() {
        let e = rejected("resolver: {servers: ['127.0.0.1:53']}");
        assert_eq!(e.path, "resolver.servers");
        assert!(
            e.to_string()
                .contains("unknown key, expected `nameservers` or `timeout`"),
            "{e}"
        );
    }
}
