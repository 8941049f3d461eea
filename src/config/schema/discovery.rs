//! The YAML shape of `resolver:` and of a group's `discovery:`.

use serde::{Deserialize, Serialize};

/// The DNS resolver of `discovery` (static `backends` use the system's resolver instead).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverSpec {
    /// Name servers as `IP:port` (`127.0.0.1:53`, `[::1]:53`; a bare IP means port 53), asked
    /// in order; default: the `nameserver` lines of `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Time one query may take on one name server before the next is asked; default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Where an upstream group finds backends at run time, and how often it looks again. Exactly
/// one of `dns`, `dns_srv` and `file`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySpec {
    /// `NAME:PORT`: every A and AAAA address of `NAME` is a backend on `PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// An SRV name (`_grpc._tcp.svc.internal`): its records give targets, ports and weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_srv: Option<String>,
    /// A YAML file listing `{addr, weight}` entries, re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Look again at least this often (at least `1s`); default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Refuse to start when the source gives no backend at start-up; default true. When
    /// false, the group starts empty (503) and fills once the source answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Most backends taken from the source (1 to 4096); default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backends: Option<i64>,
}
