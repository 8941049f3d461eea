//! Turning the YAML schema into the validated model, with one clear error per problem.
//!
//! One file per section of [`crate::config::schema`]; checks of single values that several
//! sections share are in [`values`]. The I/O validation does (reading certificate files,
//! resolving backend host names) goes through [`Load`].

mod access_log;
mod cache;
mod discovery;
mod forwarding;
mod health;
mod limits;
mod listeners;
mod load;
mod pingora;
mod protocol;
mod resolver;
mod routes;
mod sticky;
#[cfg(test)]
mod testing;
mod upstreams;
mod values;

pub use load::{Load, System};
pub use upstreams::MAX_WEIGHT;

use super::error::ConfigError;
use super::model::*;
use super::runtime_files::RuntimeFiles;
use super::schema::*;
use access_log::access_log;
use cache::cache_store;
use forwarding::forwarding;
use limits::{limits, rate_limit};
use listeners::{admin, demo_backends, listeners};
use pingora::pingora_conf;
use resolver::resolver;
use routes::routes;
use upstreams::upstreams;

type Result<T> = std::result::Result<T, ConfigError>;

/// Check a config given on the command line (quick mode) and build the model; the default
/// `pid_file` and `upgrade_sock` are named after its listening addresses.
pub fn validate(spec: &FileConfig) -> Result<Config> {
    let files = RuntimeFiles::for_listeners(spec.listeners.iter().map(|l| l.addr.as_str()));
    validate_with(spec, &files)
}

/// Check a parsed config and build the model, with `files` as the default `pid_file` and
/// `upgrade_sock`.
pub fn validate_with(spec: &FileConfig, files: &RuntimeFiles) -> Result<Config> {
    validate_using(spec, files, &System)
}

/// [`validate_with`], with `io` to read the files the config names and resolve backend host
/// names.
pub fn validate_using(spec: &FileConfig, files: &RuntimeFiles, io: &dyn Load) -> Result<Config> {
    let server = pingora_conf(spec.pingora.as_ref(), files)?;
    let listeners = listeners(&spec.listeners, io)?;
    let demo_backends = demo_backends(&spec.demo_backends, &listeners)?;
    let (upstreams, names) = upstreams(&spec.upstreams, io)?;
    // Pingora makes at most pingora.max_retries attempts, whatever fulcrum asks for.
    if let Some(u) = upstreams.iter().find(|u| u.max_tries > server.max_retries) {
        return Err(ConfigError::invalid(
            format!("upstreams.{}.max_tries", u.name),
            format!(
                "{} tries need pingora.max_retries of at least {}, found {}",
                u.max_tries, u.max_tries, server.max_retries
            ),
        ));
    }
    let limits = limits(spec.limits.as_ref())?;
    let rate_limit = spec
        .rate_limit
        .as_ref()
        .map(|r| rate_limit("rate_limit", r))
        .transpose()?;
    let routes = routes(&spec.routes, &names, &limits)?;
    if let Some(i) = routes.iter().position(|r| r.redirect_to_https) {
        if !listeners.iter().any(|l| l.tls.is_some()) {
            return Err(ConfigError::invalid(
                format!("routes[{i}].redirect_to_https"),
                "there is no HTTPS listener (with `tls:`) to redirect to",
            ));
        }
    }
    let forwarding = forwarding(spec.forwarding.as_ref())?;
    let resolver = resolver(spec.resolver.as_ref())?;
    let cache = cache_store(spec.cache.as_ref())?;
    let access_log = access_log(spec.access_log.as_ref())?;
    let admin = spec
        .admin
        .as_ref()
        .map(|a| admin(a, &listeners, &demo_backends, &server.pid_file))
        .transpose()?;
    Ok(Config {
        server,
        listeners,
        demo_backends,
        upstreams,
        routes,
        forwarding,
        admin,
        limits,
        rate_limit,
        resolver,
        cache,
        access_log,
    })
}
