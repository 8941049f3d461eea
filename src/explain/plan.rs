//! The routing plan `fulcrum -t` prints: every route, table by table in the order the router
//! tries them, with its conditions, its destination and its path changes.

use super::describe;
use crate::config::model::Config;
use crate::routing::Router;
use std::fmt::Write;

/// The routing plan of a valid config, as text (one block per host table).
pub fn render(config: &Config) -> String {
    let router = Router::new(&config.routes);
    let mut out = String::from(
        "routing plan: a request tries its exact host's routes, then wildcard hosts' (longest \
         first), then any host's;\nin each table in this order (longest path, most conditions, \
         config order); the first that matches serves it:\n",
    );
    for (tier, routes) in router.tiers() {
        let _ = writeln!(out, "  {tier}");
        let w = routes
            .iter()
            .map(|&i| crate::metrics::route_label(config, i).chars().count())
            .max()
            .unwrap_or(0);
        let w_path = routes
            .iter()
            .map(|&i| config.routes[i].path.chars().count())
            .max()
            .unwrap_or(0);
        for (n, &i) in routes.iter().enumerate() {
            let route = &config.routes[i];
            let label = crate::metrics::route_label(config, i);
            let mut line = format!("    {:>2}. {label:<w$}  {:<w_path$}", n + 1, route.path);
            let conditions = describe::conditions(route);
            if !conditions.is_empty() {
                let _ = write!(line, "  if {conditions}");
            }
            let _ = write!(line, "  -> {}", describe::destination(config, route));
            let changes = describe::path_changes(route);
            if !changes.is_empty() {
                let _ = write!(line, "  [{changes}]");
            }
            if let Some(m) = describe::mirror(config, route) {
                let _ = write!(line, "  mirror {m}");
            }
            if route.redirect_to_https {
                let _ = write!(line, "  (plain HTTP: 308 to HTTPS)");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if config.routes.is_empty() {
        out.push_str("  (no routes: every request is answered 404)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_in_router_order_with_destinations() {
        let yaml = "listeners:\n  - addr: 127.0.0.1:8080\n\
             upstreams:\n  a:\n    backends:\n      - addr: 127.0.0.1:3000\n  \
             b:\n    backends:\n      - addr: 127.0.0.1:3001\n\
             routes:\n\
             \x20 - {path: /, upstream: a}\n\
             \x20 - {name: api, host: api.example.com, path: /api, upstream: b, strip_prefix: true}\n\
             \x20 - {name: canary, host: api.example.com, path: /api, match: {headers: {x-canary: 'true'}}, \
             split: [{upstream: a, weight: 95}, {upstream: b, weight: 5}], split_key: 'cookie:user'}\n\
             \x20 - {host: '*.example.com', path: /, upstream: a, mirror: {upstream: b, percent: 10}}\n";
        let spec = crate::config::parse_yaml(yaml).expect("parses");
        let config = crate::config::validate::validate(&spec).expect("valid");
        let plan = render(&config);
        let lines: Vec<&str> = plan.lines().skip(2).map(str::trim_end).collect();
        assert_eq!(lines[0], "  host api.example.com");
        assert!(lines[1].starts_with("     1. canary  /api  if header x-canary: \"true\"  -> split 95% a, 5% b by cookie:user"), "{plan}");
        assert!(
            lines[2].starts_with("     2. api     /api  -> b  [strip_prefix /api]"),
            "{plan}"
        );
        assert_eq!(lines[3], "  host *.example.com");
        assert!(
            lines[4].contains("-> a  mirror b (10% of requests"),
            "{plan}"
        );
        assert_eq!(lines[5], "  any host");
        assert!(lines[6].starts_with("     1. /  /  -> a"), "{plan}");
    }
}
