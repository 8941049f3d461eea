//! fulcrum: a load-balancing reverse proxy built on Cloudflare's Pingora.
//!
//! A request's life, module by module: [`config`] (YAML -> validated model) -> [`server`]
//! (Pingora services) -> [`proxy`] hooks: [`routing`] -> [`balancer`] (pick a backend) ->
//! connect, retry on failure -> rewrite headers -> proxy -> answer errors.

#![warn(missing_docs)]

pub mod admin;
pub mod balancer;
pub mod cache;
pub mod cli;
pub mod compress;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod explain;
pub mod health;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod open_files;
pub mod peer;
pub mod plan;
pub mod preflight;
pub mod probe;
pub mod procfs;
pub mod proxy;
pub mod reload;
pub mod request_fields;
pub mod routing;
pub mod server;
pub mod supervise;
pub mod tls;
