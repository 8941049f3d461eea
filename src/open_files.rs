//! The open-files limit (`RLIMIT_NOFILE`), raised at start to cover `limits.max_connections`,
//! as nginx's `worker_rlimit_nofile` does.
//!
//! Every client connection is a file descriptor, and so is its connection to a backend (a
//! third one when the backend is a demo backend of this very process). A soft limit below
//! that (often 1024) makes `accept` fail with "too many open files" long before
//! `max_connections` is reached. At start fulcrum raises the soft limit to what the config
//! needs ([`needed`]), as far as the hard limit allows, and warns when the hard limit is lower
//! than the need. It never lowers a limit.

use crate::config::Config;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors for everything but connections: listeners, the admin listener, the upgrade
/// socket, log and pid files, and the runtime's own (epoll, event fds, pipes per thread).
pub const BASE: u64 = 256;

/// What the config needs open at once, counted from its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// `limits.max_connections`.
    pub max_connections: u64,
    /// Descriptors per client connection: 2 (client and backend), 3 with demo backends in
    /// this process (their side of the backend connection too).
    pub per_connection: u64,
    /// Idle backend connections Pingora keeps for reuse (`upstream_keepalive_pool_size`).
    pub upstream_pool: u64,
    /// Backends, each health-checked over at most one connection at a time.
    pub backends: u64,
}

impl Need {
    /// The need of a validated config.
    pub fn of(config: &Config) -> Self {
        Need {
            max_connections: config.limits.max_connections as u64,
            per_connection: if config.demo_backends.is_empty() {
                2
            } else {
                3
            },
            upstream_pool: config.server.upstream_keepalive_pool_size as u64,
            backends: config
                .upstreams
                .iter()
                .map(|u| {
                    (u.backends.len() + u.discovery.as_ref().map_or(0, |d| d.max_backends)) as u64
                })
                .sum(),
        }
    }
}

/// The open-files limit `need` asks for.
pub fn needed(need: &Need) -> u64 {
    need.max_connections
        .saturating_mul(need.per_connection)
        .saturating_add(need.upstream_pool)
        .saturating_add(need.backends)
        .saturating_add(BASE)
}

/// What to do with the soft limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The soft limit already covers the need.
    Keep,
    /// Raise the soft limit to the need.
    Raise(u64),
    /// The hard limit is below the need: raise the soft limit to the hard limit (when it is
    /// lower) and warn.
    Capped(u64),
}

/// The plan for a process whose limits are `soft` and `hard` and which needs `need`.
pub fn plan(soft: u64, hard: u64, need: u64) -> Plan {
    if soft >= need {
        Plan::Keep
    } else if hard >= need {
        Plan::Raise(need)
    } else {
        Plan::Capped(hard.max(soft))
    }
}

/// Raise this process's open-files soft limit for `config`, logging what was done: info when
/// raised, a warning naming the numbers when the hard limit is below the need or the limit
/// cannot be changed. Never fails: fulcrum still starts.
pub fn raise_for(config: &Config) {
    let need = Need::of(config);
    let want = needed(&need);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("open files: cannot read the limit (RLIMIT_NOFILE): {e}");
            return;
        }
    };
    let to = match plan(soft, hard, want) {
        Plan::Keep => return,
        Plan::Raise(to) => to,
        Plan::Capped(to) => {
            log::warn!(
                "open files: limits.max_connections {} needs {want} open files ({} per \
                 connection + {} for the backend pool, health checks, listeners and files), but \
                 the hard limit is {hard}: the soft limit is set to {to}, and accepting fails \
                 with \"too many open files\" before max_connections is reached; raise the hard \
                 limit (ulimit -Hn, systemd LimitNOFILE=) or lower limits.max_connections",
                need.max_connections,
                need.per_connection,
                want.saturating_sub(need.max_connections.saturating_mul(need.per_connection)),
            );
            to
        }
    };
    if to <= soft {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, to, hard) {
        Ok(()) => log::info!(
            "open files: raised the soft limit from {soft} to {to} for limits.max_connections {}",
            need.max_connections
        ),
        Err(e) => log::warn!("open files: cannot raise the soft limit from {soft} to {to}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(max_connections: u64) -> Need {
        Need {
            max_connections,
            per_connection: 2,
            upstream_pool: 128,
            backends: 4,
        }
    }

    #[test]
    fn two_per_connection_plus_the_margin() {
        assert_eq!(needed(&need(1000)), 2000 + 128 + 4 + BASE);
        let demo = Need {
            per_connection: 3,
            ..need(10)
        };
        assert_eq!(needed(&demo), 30 + 128 + 4 + BASE);
        assert_eq!(needed(&need(u64::MAX)), u64::MAX);
    }

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed_and_allowed() {
        assert_eq!(plan(1024, 4096, 1000), Plan::Keep);
        assert_eq!(plan(1024, 4096, 1024), Plan::Keep);
        assert_eq!(plan(256, 4096, 2388), Plan::Raise(2388));
        assert_eq!(plan(256, 512, 2388), Plan::Capped(512));
        assert_eq!(plan(512, 512, 2388), Plan::Capped(512));
        // An unlimited hard limit covers any need.
        assert_eq!(plan(1024, u64::MAX, 40_000), Plan::Raise(40_000));
    }
}
