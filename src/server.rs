//! Assembling the Pingora server from a validated config: proxy services, demo backends.

use crate::config::model::ListenerTls;
use crate::config::Config;
use crate::discovery::refresh::{BootstrapError, Refresher};
use crate::discovery::Resolver;
use crate::health::HealthService;
use crate::limits::connection::{ConnectionCount, Guarded};
use crate::limits::handshake::{handshake_window, TlsHandshake};
use crate::limits::head_guard::HeadLimits;
use crate::metrics::listeners::ListenerMetrics;
use crate::proxy::{ListenerInfo, Proxy, ProxyState};
use crate::tls::SniResolver;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use rustls::server::NoServerSessionStorage;
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;

/// Pingora's read buffer under each client connection: none. Pingora's default is held by
/// every open connection for its whole life, idle keep-alive ones included. Its HTTP/1 parser
/// reads heads and bodies into buffers of its own anyway, and fulcrum's head guard reads heads
/// through a small stack buffer (`limits::head_guard`), so the extra buffer only added a copy
/// and memory (docs/performance.md has the numbers).
const CLIENT_READ_BUFFER: usize = 0;

/// The TLS acceptor of an HTTPS listener: TLS 1.2 and 1.3, its certificates chosen by SNI, h2
/// offered through ALPN unless `h2: false`, and sessions resumed with stateless tickets unless
/// `session_tickets: false` (then not at all: no tickets and no session cache, every
/// connection makes a full handshake).
///
/// Built as a rustls `ServerConfig` of its own, as Pingora's `TlsSettings::build` would with a
/// cert resolver and no client certificates, because `TlsSettings` keeps rustls' defaults for
/// resumption: no ticketer, and a stateful cache of 256 sessions whose TLS 1.3 tickets are
/// single-use, so a busy listener resumes few sessions.
fn tls_acceptor(tls: &ListenerTls) -> Acceptor {
    pingora_core::tls::install_default_crypto_provider();
    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS12,
        &rustls::version::TLS13,
    ])
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(SniResolver::new(tls)));
    if tls.h2 {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    match &tls.session_tickets {
        Some(ticketer) => config.ticketer = Arc::clone(ticketer),
        None => {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
    }
    Acceptor::from_server_config(Arc::new(config))
}

/// Pingora's options for a listener's HTTP app: h2c when the listener allows it, and an idle
/// HTTP/2 connection (no stream open) closed after the keep-alive timeout, as an idle HTTP/1
/// connection is (nginx applies `keepalive_timeout` to HTTP/2 connections the same way).
fn server_options(h2c: bool, keepalive_secs: u64) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    options.h2_idle_timeout = Some(Duration::from_secs(keepalive_secs));
    options
}

/// Build a ready-to-run server. Binds nothing until `run_forever`.
pub fn build(config: Config, opt: Opt) -> Result<Server, BootstrapError> {
    build_saving(config, opt, None)
}

/// [`build`], with the copy of the config text the process keeps for
/// `--reload --dry-run` ([`crate::plan::saved`]): written once the process owns its sockets,
/// before the pid file.
pub fn build_saving(
    config: Config,
    opt: Opt,
    copy: Option<crate::plan::saved::SaveConfig>,
) -> Result<Server, BootstrapError> {
    let state = Arc::new(ProxyState::new(&config));
    // The runtime API's changes from the last run (restart or reload), before the first
    // discovery answer; a missing or corrupt file changes nothing.
    if let Some(admin) = &config.admin {
        crate::admin::state_file::restore_at_start(&admin.state_file, &state);
    }
    let resolver = Arc::new(Resolver::new(&config.resolver));
    let refreshers: Vec<Refresher> = state
        .groups
        .iter()
        .filter_map(|g| Refresher::new(Arc::clone(g), Arc::clone(&resolver)))
        .collect();
    crate::discovery::refresh::bootstrap(&refreshers)?;
    for u in config
        .upstreams
        .iter()
        .filter(|u| u.tls.as_ref().is_some_and(|t| t.insecure_skip_verify))
    {
        log::warn!(
            "upstream {}: insecure_skip_verify is on: backend certificates are NOT verified, \
             so anyone on the path to them can read and change this traffic",
            u.name
        );
    }
    let overview = crate::admin::overview::Overview::of(&config);
    let Config {
        server: server_conf,
        listeners,
        demo_backends,
        admin,
        ..
    } = config;
    crate::metrics::process::register();
    let facts = crate::metrics::info::StartFacts {
        upgrade: opt.upgrade,
    };
    crate::metrics::info::register(facts, &listeners);
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    // Bootstrap (taking over the sockets of a running fulcrum with -u) runs as a service, in
    // the serving process, after daemonizing; with daemon_wait_for_ready the launching process
    // exits only once it is done. Everything that serves waits for it.
    let bootstrap = server.bootstrap_as_a_service();
    let phases = server.watch_execution_phase();
    server.add_service(background_service(
        "drain watch",
        crate::lifecycle::DrainWatch::new(phases),
    ));
    let saved = copy.map(|copy| {
        let handle = server.add_service(background_service("config copy", copy));
        handle.add_dependency(&bootstrap);
        handle
    });
    if !server.configuration.daemon {
        let pid_file = crate::lifecycle::PidFile(server.configuration.pid_file.clone());
        let handle = server.add_service(background_service("pid file", pid_file));
        handle.add_dependency(&bootstrap);
        if let Some(saved) = &saved {
            handle.add_dependency(saved);
        }
    }

    // `/health` answers 503 until the proxy services start (after the first health-check
    // round), so a readiness probe never passes before the proxy serves.
    let serving = crate::admin::Serving::new();
    if let Some(admin) = &admin {
        server
            .add_service(crate::admin::service(
                admin,
                Arc::clone(&state),
                serving.clone(),
                overview,
            ))
            .add_dependency(&bootstrap);
    }

    let demo = (!demo_backends.is_empty()).then(|| {
        let handle = server.add_service(crate::demo::service(&demo_backends));
        handle.add_dependency(&bootstrap);
        handle
    });

    // Health checks report ready after their first round; the proxy waits for them.
    let health: Vec<_> = state
        .groups
        .iter()
        .filter_map(HealthService::for_group)
        .map(|svc| {
            let name = format!("health checks of {}", svc.upstream_name());
            let handle = server.add_service(background_service(&name, svc));
            // Demo backends listen before they are checked.
            if let Some(demo) = &demo {
                handle.add_dependency(demo);
            }
            handle
        })
        .collect();

    // Set after the first health-check round and before the proxy listeners start.
    let mark = server.add_service(background_service(
        "serving mark",
        crate::admin::MarkServing(serving, state.groups.clone()),
    ));
    mark.add_dependency(&bootstrap);
    mark.add_dependencies(&health);

    // Client connections are counted over all listeners together.
    let connections = ConnectionCount::new(state.limits.max_connections);
    // One proxy service per listener: each knows whether it is HTTPS and whether it redirects.
    for l in &listeners {
        // Plain listeners redirect to the first HTTPS listener's port.
        let info = ListenerInfo::of(l, &listeners);
        let name = format!("fulcrum proxy {}", l.addr);
        let mut app =
            pingora_proxy::http_proxy(&server.configuration, Proxy::new(Arc::clone(&state), info));
        // HTTP/2 connections (TLS with h2, or h2c) get fulcrum's settings.
        app.h2_options = Some(crate::limits::h2::options(&state.limits.h2));
        app.server_options = Some(server_options(l.h2c, state.limits.keepalive_timeout_secs));
        let head = HeadLimits {
            timeout: state.limits.header_timeout,
            max_bytes: state.limits.max_header_bytes,
            max_headers: state.limits.max_headers,
            idle: Duration::from_secs(state.limits.keepalive_timeout_secs),
            send_timeout: state.limits.send_timeout,
            response_buffering: state.limits.response_buffering as usize,
        };
        let addr = l.addr.to_string();
        let mut guarded = Guarded::new(app, Arc::clone(&connections), head, l.h2c)
            .with_metrics(ListenerMetrics::new(&addr));
        if let Some(tls) = &l.tls {
            // The handshake runs in `Guarded`, under the connection cap and a deadline; the
            // listener itself is plain TCP.
            let window = handshake_window(state.limits.handshake_timeout, head.timeout);
            guarded = guarded.with_tls(TlsHandshake::new(tls_acceptor(tls), window));
        }
        let mut svc = Service::new(name, guarded);
        let endpoint = ListenerConfig::tcp(addr)
            .l4_buffer(L4BufferSettings::default().read(CLIENT_READ_BUFFER));
        svc.add_listener(endpoint);
        let handle = server.add_service(svc);
        handle.add_dependency(&bootstrap);
        handle.add_dependencies(&health);
        handle.add_dependency(&mark);
    }
    for r in refreshers {
        let name = format!("discovery of {}", r.upstream_name());
        server
            .add_service(background_service(&name, r))
            .add_dependency(&mark);
    }
    Ok(server)
}
