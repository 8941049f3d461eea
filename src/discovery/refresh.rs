//! Keeping a group's discovered backends current: the first look at start-up
//! ([`bootstrap`]), then a background service per group that looks again every `interval`
//! (sooner when the DNS answer's TTL runs out first, never more often than every second).
//!
//! A look that fails (timeout, SERVFAIL, NXDOMAIN, an empty answer, an unreadable file)
//! changes nothing: the group keeps its last good set. Each change between failing and
//! succeeding is logged once (WARN when looks start failing, INFO when they succeed again)
//! and every failure is counted in `fulcrum_discovery_failures_total`.
//!
//! A file source is read again only when its modification time, length or inode changed (or
//! the last read failed).

use super::dns::Resolver;
use super::source::{discover, file_stamp, Discovered, SourceError};
use crate::balancer::{Source, UpstreamGroup};
use crate::config::model::{Backend, Discovery, DiscoverySource};
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Shortest time between two looks, whatever the TTL says.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Start-up failed: a required source gave no backend.
#[derive(Debug)]
pub struct BootstrapError {
    /// The group.
    pub upstream: String,
    /// What the source said.
    pub reason: String,
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upstreams.{}.discovery: {} (set `required: false` to start with an empty group \
             that answers 503 until it resolves)",
            self.upstream, self.reason
        )
    }
}

impl std::error::Error for BootstrapError {}

/// What the source is, as a balancer sees it.
fn source_kind(source: &DiscoverySource) -> Source {
    match source {
        DiscoverySource::File { .. } => Source::File,
        _ => Source::Dns,
    }
}

/// A short description of the source for log lines.
fn describe(source: &DiscoverySource) -> String {
    match source {
        DiscoverySource::Dns { name, port } => format!("dns {name}:{port}"),
        DiscoverySource::DnsSrv { name } => format!("dns_srv {name}"),
        DiscoverySource::File { path } => format!("file {}", path.display()),
    }
}

/// Keeps one group's discovered backends current.
pub struct Refresher {
    group: Arc<UpstreamGroup>,
    discovery: Discovery,
    resolver: Arc<Resolver>,
    /// Whether the last look failed, and the file stamp of the last good read.
    last: Mutex<LastLook>,
}

#[derive(Debug, Default)]
struct LastLook {
    failing: bool,
    stamp: Option<(SystemTime, u64, u64)>,
}

impl Refresher {
    /// The refresher of `group`, which must have `discovery`.
    pub fn new(group: Arc<UpstreamGroup>, resolver: Arc<Resolver>) -> Option<Self> {
        let discovery = group.config.discovery.clone()?;
        Some(Refresher {
            group,
            discovery,
            resolver,
            last: Mutex::new(LastLook::default()),
        })
    }

    /// The group's name.
    pub fn upstream_name(&self) -> &str {
        &self.group.config.name
    }

    /// Look once and apply what was found; returns when to look next. `Err` carries the
    /// failure (the group kept its backends).
    pub async fn look(&self) -> Result<Duration, SourceError> {
        let source = &self.discovery.source;
        let stamp = match source {
            DiscoverySource::File { path } => file_stamp(path),
            _ => None,
        };
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if stamp.is_some() && stamp == last.stamp && !last.failing {
                return Ok(self.discovery.interval);
            }
        }
        let result = discover(source, &self.resolver, self.discovery.max_backends).await;
        let name = &self.group.config.name;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(found) => {
                if last.failing {
                    log::info!(
                        "upstream {name}: discovery ({}) answers again",
                        describe(source)
                    );
                }
                last.failing = false;
                last.stamp = stamp;
                drop(last);
                let next = self.apply(found);
                Ok(next)
            }
            Err(e) => {
                crate::metrics::discovery_failed(name);
                if !last.failing {
                    log::warn!(
                        "upstream {name}: discovery ({}) failed: {e}; keeping the last {} \
                         backends",
                        describe(source),
                        self.group.len()
                    );
                }
                last.failing = true;
                Err(e)
            }
        }
    }

    /// Put what a look found in the group; returns when to look next.
    fn apply(&self, found: Discovered) -> Duration {
        let name = &self.group.config.name;
        if found.truncated > 0 {
            log::warn!(
                "upstream {name}: discovery found {} more backends than max_backends ({}); \
                 they are left out",
                found.truncated,
                self.discovery.max_backends
            );
        }
        let backends: Vec<Backend> = found
            .backends
            .into_iter()
            .map(|f| Backend {
                addr: f.addr,
                host: f.host,
                weight: f.weight,
            })
            .collect();
        let changes = self
            .group
            .set_discovered(source_kind(&self.discovery.source), backends);
        crate::metrics::discovery_backends(name, self.group.len());
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            log::info!(
                "upstream {name}: discovery: {} backends joined ({}), {} left ({}); {} in all",
                changes.added.len(),
                list(&changes.added),
                changes.removed.len(),
                list(&changes.removed),
                self.group.len()
            );
        }
        match found.ttl {
            Some(ttl) => ttl.clamp(MIN_REFRESH, self.discovery.interval.max(MIN_REFRESH)),
            None => self.discovery.interval,
        }
    }
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = addrs.iter().take(SHOWN).map(|a| a.to_string()).collect();
    if addrs.len() > SHOWN {
        s.push(format!("and {} more", addrs.len() - SHOWN));
    }
    s.join(", ")
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next = self.discovery.interval;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(next) => {
                    next = self.look().await.unwrap_or(self.discovery.interval);
                }
            }
        }
    }
}

/// The first look of every group with discovery, before any port is bound: a required source
/// that gives no backend is an error; an optional one leaves its group empty (503) until a
/// later look succeeds.
pub fn bootstrap(refreshers: &[Refresher]) -> Result<(), BootstrapError> {
    if refreshers.is_empty() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BootstrapError {
            upstream: refreshers[0].upstream_name().to_string(),
            reason: format!("cannot start a runtime to resolve: {e}"),
        })?;
    runtime.block_on(async {
        let looks = refreshers.iter().map(|r| r.look());
        let results = futures::future::join_all(looks).await;
        for (r, result) in refreshers.iter().zip(results) {
            let reason = match result {
                Ok(_) if !r.group.is_empty() => continue,
                Ok(_) => "the source names no backend".to_string(),
                Err(e) => e.to_string(),
            };
            if r.discovery.required {
                return Err(BootstrapError {
                    upstream: r.upstream_name().to_string(),
                    reason,
                });
            }
            log::warn!(
                "upstream {}: discovery found no backend at start-up ({reason}); the group \
                 answers 503 until it does",
                r.upstream_name()
            );
        }
        Ok(())
    })
}
