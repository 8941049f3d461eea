//! Where dynamic groups find their backends: the resolver and each group's discovery source.

use std::net::SocketAddr;
use std::time::Duration;

/// The DNS resolver that discovery uses (`resolver:`). Static backends written as host names
/// are resolved once at load by the system resolver (`/etc/hosts`, then DNS), as nginx does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// Name servers to ask, in order (`IP:port`); empty when not configured, for those of
    /// `/etc/resolv.conf` (read at run time).
    pub nameservers: Vec<SocketAddr>,
    /// Time one query may take on one name server before the next is asked.
    pub timeout: Duration,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Where a group's discovered backends come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySource {
    /// `dns: NAME:PORT`: every A and AAAA answer for `name` is a backend on `port`.
    Dns {
        /// The name to resolve (lowercase, no trailing dot).
        name: String,
        /// The port of every backend.
        port: u16,
    },
    /// `dns_srv: NAME`: targets, ports and weights from the SRV records of `name` (the lowest
    /// priority present), each target resolved to its A and AAAA addresses.
    DnsSrv {
        /// The SRV name (lowercase, no trailing dot), e.g. `_grpc._tcp.svc.internal`.
        name: String,
    },
    /// `file: PATH`: a YAML list of `{addr, weight}`, re-read when it changes.
    File {
        /// The file, as written in the config.
        path: std::path::PathBuf,
    },
}

/// Discovery of a group's backends (`upstreams.NAME.discovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Where the backends come from.
    pub source: DiscoverySource,
    /// Re-resolve (or re-read) at least this often (at least 1 s); DNS answers are also
    /// refreshed when their TTL runs out, if sooner (never more often than every second).
    pub interval: Duration,
    /// At start-up, a source that gives no backend is an error (`true`, default) or an
    /// empty set that answers 503 until it resolves (`false`).
    pub required: bool,
    /// Most backends the source may contribute, 1 to [`MAX_DISCOVERED`] (answers beyond are
    /// ignored, with a warning).
    pub max_backends: usize,
}

/// Default `discovery.max_backends`.
pub const DEFAULT_MAX_DISCOVERED: usize = 1024;
/// Largest `discovery.max_backends`.
pub const MAX_DISCOVERED: usize = 4096;
/// Backends the runtime API may add to a group beyond its static and discovered ones.
pub const API_HEADROOM: usize = 64;
