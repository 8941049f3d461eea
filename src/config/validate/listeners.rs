//! The `listeners:`, `demo_backends:` and `admin:` sections: the addresses fulcrum serves on.

use super::load::{read_pem, Load};
use super::values::{header_pairs, host_match, int_in, socket_addr, whole_seconds};
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use crate::config::units::{parse_duration, parse_positive_duration};
use crate::tls;
use std::collections::{HashMap, HashSet};

/// Default admin address.
const ADMIN_ADDR: &str = "127.0.0.1:9900";

pub(super) fn listeners(specs: &[ListenerSpec], io: &dyn Load) -> Result<Vec<Listener>> {
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
            .map(|t| listener_tls(&format!("listeners[{i}].tls"), t, io))
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

fn listener_tls(base: &str, spec: &ListenerTlsSpec, io: &dyn Load) -> Result<ListenerTls> {
    if spec.certificates.is_empty() {
        return Err(ConfigError::invalid(
            format!("{base}.certificates"),
            "an HTTPS listener needs at least one certificate: `[{cert: FILE, key: FILE}]`",
        ));
    }
    let mut certs = Vec::with_capacity(spec.certificates.len());
    for (i, c) in spec.certificates.iter().enumerate() {
        let path = format!("{base}.certificates[{i}]");
        let loaded = read_pem(io, &c.cert)
            .and_then(|pem| tls::server_chain(&pem, &c.cert))
            .and_then(|(chain, names)| {
                let key = read_pem(io, &c.key)?;
                Ok((tls::certified_key(chain, &c.cert, &key, &c.key)?, names))
            });
        let (key, found) = loaded.map_err(|e| ConfigError::invalid(&path, e.to_string()))?;
        let names = if c.names.is_empty() {
            found
        } else {
            c.names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        for (j, n) in names.iter().enumerate() {
            host_match(&format!("{path}.names[{j}]"), Some(n))?;
        }
        certs.push(ListenerCert { names, key });
    }
    let session_tickets = if spec.session_tickets.unwrap_or(true) {
        let ticketer = tls::session_ticketer()
            .map_err(|e| ConfigError::invalid(format!("{base}.session_tickets"), e.to_string()))?;
        Some(ticketer)
    } else {
        None
    };
    Ok(ListenerTls {
        certs,
        h2: spec.h2.unwrap_or(true),
        session_tickets,
    })
}

pub(super) fn demo_backends(
    specs: &[DemoBackendSpec],
    listeners: &[Listener],
) -> Result<Vec<DemoBackend>> {
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

pub(super) fn admin(
    spec: &AdminSpec,
    listeners: &[Listener],
    demo: &[DemoBackend],
    pid_file: &str,
) -> Result<Admin> {
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
    let max_connections = match spec.max_connections {
        Some(n) => int_in("admin.max_connections", n, 1..=100_000)? as usize,
        None => Admin::MAX_CONNECTIONS,
    };
    let header_timeout = match &spec.header_timeout {
        Some(t) => parse_positive_duration("admin.header_timeout", t)?,
        None => Admin::HEADER_TIMEOUT,
    };
    let idle_timeout = match &spec.idle_timeout {
        Some(t) => whole_seconds("admin.idle_timeout", t)?,
        None => Admin::IDLE_TIMEOUT,
    };
    let state_file = match spec.state_file.as_deref() {
        Some("") => {
            return Err(ConfigError::invalid(
                "admin.state_file",
                "expected a file path, e.g. /var/lib/fulcrum/state.json",
            ))
        }
        Some(path) => std::path::PathBuf::from(path),
        None => Admin::default_state_file(pid_file),
    };
    Ok(Admin {
        addr,
        token,
        max_connections,
        header_timeout,
        idle_timeout,
        state_file,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::rejects;

    #[test]
    fn listener_rules() {
        rejects(&[
            (
                "listeners: []",
                "listeners",
                "at least one listener is required, e.g. `listeners: [{addr: 127.0.0.1:8080}]`",
            ),
            (
                "listeners: [{addr: 'localhost:8080'}]",
                "listeners[0].addr",
                "expected IP:port like 127.0.0.1:8080 or [::1]:8080, found \"localhost:8080\"",
            ),
            (
                "listeners: [{addr: '127.0.0.1:8080'}, {addr: '127.0.0.1:8080'}]",
                "listeners[1].addr",
                "127.0.0.1:8080 is already used by listeners[0]",
            ),
            (
                "listeners: [{addr: '127.0.0.1:8080', redirect_to_https: true}]",
                "listeners[0].redirect_to_https",
                "there is no HTTPS listener (with `tls:`) to redirect to",
            ),
            (
                "listeners: [{addr: '127.0.0.1:8443', tls: {certificates: []}}]",
                "listeners[0].tls.certificates",
                "an HTTPS listener needs at least one certificate: `[{cert: FILE, key: FILE}]`",
            ),
            (
                "listeners: [{addr: '127.0.0.1:8443', tls: {certificates: [{cert: /no/a.crt, key: /no/a.key}]}}]",
                "listeners[0].tls.certificates[0]",
                "cannot read /no/a.crt: entity not found",
            ),
            (
                "listeners: [{addr: '127.0.0.1:8443', tls: {certificates: [{cert: /garbage.pem, key: /no/a.key}]}}]",
                "listeners[0].tls.certificates[0]",
                "/garbage.pem contains no PEM certificate",
            ),
        ]);
    }

    #[test]
    fn demo_backend_rules() {
        rejects(&[
            (
                "demo_backends: [{name: '', addr: '127.0.0.1:3001'}]",
                "demo_backends[0].name",
                "expected a non-empty name",
            ),
            (
                "demo_backends: [{name: a, addr: '127.0.0.1:3001'}, {name: a, addr: '127.0.0.1:3002'}]",
                "demo_backends[1].name",
                "duplicate name \"a\"",
            ),
            (
                "demo_backends: [{name: a, addr: '127.0.0.1:8080'}]",
                "demo_backends[0].addr",
                "127.0.0.1:8080 is already used by another listener or demo backend",
            ),
            (
                "demo_backends: [{name: a, addr: '127.0.0.1:3001', status: 99}]",
                "demo_backends[0].status",
                "expected an HTTP status from 100 to 599, found 99",
            ),
            (
                "demo_backends: [{name: a, addr: '127.0.0.1:3001', delay: soon}]",
                "demo_backends[0].delay",
                "expected a duration like 500ms, 5s, 2m or 1h, found \"soon\"",
            ),
        ]);
    }

    #[test]
    fn admin_rules() {
        rejects(&[
            (
                "admin: {addr: '127.0.0.1:8080'}",
                "admin.addr",
                "127.0.0.1:8080 is already used by a listener or demo backend",
            ),
            (
                "admin: {token: short}",
                "admin.token",
                "expected at least 16 printable characters without spaces",
            ),
            (
                "admin: {addr: '0.0.0.0:9900'}",
                "admin.addr",
                "0.0.0.0:9900 is reachable from other hosts; set admin.token, or \
                 allow_public_without_token: true if that is really intended",
            ),
            (
                "admin: {max_connections: 0}",
                "admin.max_connections",
                "expected an integer from 1 to 100000, found 0",
            ),
            (
                "admin: {header_timeout: 0s}",
                "admin.header_timeout",
                "expected a duration above zero",
            ),
            (
                "admin: {idle_timeout: 1500ms}",
                "admin.idle_timeout",
                "expected whole seconds (Pingora counts keep-alive in seconds), found \"1500ms\"",
            ),
            (
                "admin: {state_file: ''}",
                "admin.state_file",
                "expected a file path, e.g. /var/lib/fulcrum/state.json",
            ),
        ]);
    }

    #[test]
    fn the_state_file_sits_next_to_the_pid_file_unless_set() {
        use crate::config::validate::testing::accepts;
        let admin = accepts("admin: {}").admin.expect("admin");
        // The test pid file is /run/t.pid.
        assert_eq!(admin.state_file, std::path::Path::new("/run/t.state.json"));
        let admin = accepts("admin: {state_file: /var/lib/f/s.json}")
            .admin
            .expect("admin");
        assert_eq!(admin.state_file, std::path::Path::new("/var/lib/f/s.json"));
        assert_eq!(
            crate::config::model::Admin::default_state_file("/tmp/fulcrum"),
            std::path::Path::new("/tmp/fulcrum.state.json")
        );
    }
}
