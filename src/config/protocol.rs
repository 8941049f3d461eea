//! The HTTP version fulcrum speaks to an upstream group's backends (`protocol`,
//! `max_h2_streams`), as the validated model holds it.

/// Default `max_h2_streams`: streams one HTTP/2 connection to a backend carries at once.
pub const DEFAULT_MAX_H2_STREAMS: usize = 100;

/// Largest accepted `max_h2_streams`.
pub const MAX_H2_STREAMS: usize = 10_000;

/// How requests reach a group's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1 (over TLS when the group has `tls:`).
    #[default]
    H1,
    /// HTTP/2 over plain TCP with prior knowledge (no upgrade, no ALPN).
    H2c,
    /// HTTP/2 over TLS; ALPN offers `h2` only.
    H2,
    /// TLS; ALPN offers `h2`, then `http/1.1`, and the backend picks.
    Auto,
}

impl Protocol {
    /// Every accepted name, in the order the docs list them.
    pub const ALL: [(&'static str, Protocol); 4] = [
        ("h1", Protocol::H1),
        ("h2c", Protocol::H2c),
        ("h2", Protocol::H2),
        ("auto", Protocol::Auto),
    ];

    /// The protocol a config name stands for.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    /// The config name of this protocol.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("h1", |(n, _)| n)
    }

    /// Whether this protocol runs over TLS (and so needs the group's `tls:`).
    pub fn needs_tls(self) -> bool {
        matches!(self, Protocol::H2 | Protocol::Auto)
    }

    /// Whether requests may travel as HTTP/2 streams.
    pub fn may_use_h2(self) -> bool {
        self != Protocol::H1
    }
}

/// A group's protocol settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamProtocol {
    /// The HTTP version spoken.
    pub protocol: Protocol,
    /// Streams one HTTP/2 connection carries at once (1 to [`MAX_H2_STREAMS`]).
    pub max_h2_streams: usize,
}

impl Default for UpstreamProtocol {
    fn default() -> Self {
        UpstreamProtocol {
            protocol: Protocol::H1,
            max_h2_streams: DEFAULT_MAX_H2_STREAMS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, p) in Protocol::ALL {
            assert_eq!(Protocol::from_name(name), Some(p));
            assert_eq!(p.name(), name);
        }
        assert_eq!(Protocol::from_name("http2"), None);
    }
}
