//! Assembling the Pingora server from a validated config: proxy services, demo backends.

use crate::config::Config;
use crate::health::HealthService;
use crate::proxy::{Proxy, ProxyState};
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use std::sync::Arc;

/// Build a ready-to-run server. Binds nothing until `run_forever`.
pub fn build(config: Config, opt: Opt) -> Server {
    let state = Arc::new(ProxyState::new(&config));
    let Config {
        server: server_conf,
        listeners,
        demo_backends,
        admin,
        ..
    } = config;
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    if let Some(admin) = &admin {
        server.add_service(crate::admin::service(admin, Arc::clone(&state)));
    }

    if !demo_backends.is_empty() {
        server.add_service(crate::demo::service(&demo_backends));
    }

    // Health checks report ready after their first round; the proxy waits for them.
    let health: Vec<_> = state
        .groups
        .iter()
        .filter_map(HealthService::for_group)
        .map(|svc| {
            let name = format!("health checks of {}", svc.upstream_name());
            server.add_service(background_service(&name, svc))
        })
        .collect();

    // One proxy service per h2c setting: Pingora sets HTTP options per service.
    for h2c in [false, true] {
        let addrs: Vec<_> = listeners.iter().filter(|l| l.h2c == h2c).collect();
        if addrs.is_empty() {
            continue;
        }
        let name = if h2c {
            "fulcrum proxy (h2c)"
        } else {
            "fulcrum proxy"
        };
        let mut svc = pingora_proxy::http_proxy_service_with_name(
            &server.configuration,
            Proxy::new(Arc::clone(&state)),
            name,
        );
        if h2c {
            if let Some(app) = svc.app_logic_mut() {
                let mut options = HttpServerOptions::default();
                options.h2c = true;
                app.server_options = Some(options);
            }
        }
        for l in addrs {
            svc.add_tcp(&l.addr.to_string());
        }
        let handle = server.add_service(svc);
        handle.add_dependencies(&health);
    }
    server
}
