//! The names of the selection algorithms, as config files write them.

/// How an upstream group picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Pingora's `RoundRobin`: rotation in address order, a backend of weight w repeated w times.
    RoundRobin,
    /// Smooth weighted round robin (nginx): weights 5,1,1 give a a b a c a a.
    WeightedRoundRobin,
    /// Pingora's `Random`, weight-aware.
    Random,
    /// Power of two choices: two random backends, the one with fewer in-flight requests
    /// (relative to weight) wins.
    P2c,
    /// Fewest in-flight requests relative to weight; ties broken by rotation.
    LeastConnections,
    /// Pingora's FNV hash of the client IP over the backends.
    IpHash,
    /// Pingora's Ketama consistent hashing on a [`HashKey`](super::model::HashKey).
    Consistent,
    /// Sticky sessions: a cookie names the backend; the fallback picks when it can't.
    Cookie,
    /// The first healthy backend in config order (primary/backup).
    First,
}

impl Algorithm {
    /// Every algorithm with the name used in config files.
    pub const ALL: &'static [(&'static str, Algorithm)] = &[
        ("round_robin", Algorithm::RoundRobin),
        ("weighted_round_robin", Algorithm::WeightedRoundRobin),
        ("random", Algorithm::Random),
        ("p2c", Algorithm::P2c),
        ("least_connections", Algorithm::LeastConnections),
        ("ip_hash", Algorithm::IpHash),
        ("consistent", Algorithm::Consistent),
        ("cookie", Algorithm::Cookie),
        ("first", Algorithm::First),
    ];

    /// Accepted aliases (`weighted`, `ketama`, `least_conn`).
    const ALIASES: &'static [(&'static str, Algorithm)] = &[
        ("weighted", Algorithm::WeightedRoundRobin),
        ("ketama", Algorithm::Consistent),
        ("least_conn", Algorithm::LeastConnections),
    ];

    /// Parse a config name or alias.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Self::ALL
            .iter()
            .chain(Self::ALIASES)
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }

    /// The name used in config files.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }

    /// The config names of every algorithm, comma-separated (for `--help`).
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// Whether the algorithm needs something from the request (a key or a cookie) and so
    /// cannot serve as a fallback.
    pub fn is_keyed(self) -> bool {
        matches!(
            self,
            Algorithm::Consistent | Algorithm::Cookie | Algorithm::IpHash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse_and_print_back() {
        for (name, algorithm) in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(name), Some(*algorithm));
            assert_eq!(algorithm.name(), *name);
        }
        assert_eq!(Algorithm::from_name("ketama"), Some(Algorithm::Consistent));
        assert_eq!(
            Algorithm::from_name("weighted").map(Algorithm::name),
            Some("weighted_round_robin")
        );
        assert_eq!(Algorithm::from_name("Round_Robin"), None);
    }
}
