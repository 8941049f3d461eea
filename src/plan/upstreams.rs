//! Upstream groups added, removed and changed between two configs, by group name; backends
//! by address.

use super::movement::{hashed_shift, key_text, sticky_shift, Shift};
use crate::config::model::{Algorithm, Upstream};
use crate::config::{Config, FileConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What happened to one upstream group.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamChange {
    /// Only in the new config.
    Added {
        /// Group name.
        name: String,
        /// Algorithm and backends, briefly.
        summary: String,
    },
    /// Only in the old config.
    Removed {
        /// Group name.
        name: String,
        /// Algorithm and backends, briefly.
        summary: String,
    },
    /// In both, with differences.
    Changed(Box<GroupChange>),
}

/// The differences of a group present in both configs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupChange {
    /// Group name.
    pub name: String,
    /// Old and new algorithm, when it changes.
    pub algorithm: Option<(Algorithm, Algorithm)>,
    /// Backends only in the new config: address and weight.
    pub added: Vec<(SocketAddr, u32)>,
    /// Backends only in the old config: address and weight.
    pub removed: Vec<(SocketAddr, u32)>,
    /// Backends in both whose weight changes: address, old and new weight.
    pub reweighted: Vec<(SocketAddr, u32, u32)>,
    /// Other settings that change, by key name.
    pub other: Vec<String>,
    /// The share of keys (or sessions) that go to another backend, for keyed groups.
    pub shift: Option<Shift>,
}

/// `consistent, 4 backends`.
fn summary(u: &Upstream) -> String {
    let n = u.backends.len();
    let mut s = format!(
        "{}, {n} backend{}",
        u.algorithm.name(),
        if n == 1 { "" } else { "s" }
    );
    if u.discovery.is_some() {
        s.push_str(" + discovery");
    }
    s
}

/// Whether the config file sets `upstreams.NAME.sticky.secret`.
fn sets_secret(spec: &FileConfig, name: &str) -> bool {
    spec.upstreams
        .get(name)
        .and_then(|u| u.sticky.as_ref())
        .is_some_and(|s| s.secret.is_some())
}

/// Whether the config file sets `upstreams.NAME.max_tries` (its default follows the number
/// of backends, which is reported by itself).
fn sets_max_tries(spec: &FileConfig, name: &str) -> bool {
    spec.upstreams
        .get(name)
        .is_some_and(|u| u.max_tries.is_some())
}

/// Settings besides algorithm and backends that differ, by key name. Compared in their
/// validated form through `Debug` (regexes and TLS material have no equality of their own).
/// `max_tries_set`: either file sets `max_tries` (else a change of its default is left out).
fn other_changes(
    o: &Upstream,
    n: &Upstream,
    secrets_set: bool,
    max_tries_set: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, a: String, b: String| {
        if a != b {
            out.push(what.to_string());
        }
    };
    let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
    if o.algorithm == Algorithm::Consistent && n.algorithm == Algorithm::Consistent {
        check("hash_key", key_text(&o.hash_key), key_text(&n.hash_key));
    }
    check("fallback", debug(&o.fallback), debug(&n.fallback));
    // The secret is random per process when unset: compare it only when both set it.
    let cookie = |u: &Upstream| {
        u.sticky.as_ref().map(|s| {
            let mut s = s.clone();
            if !secrets_set {
                s.secret.clear();
            }
            s
        })
    };
    check("sticky", debug(&cookie(o)), debug(&cookie(n)));
    check("timeouts", debug(&o.timeouts), debug(&n.timeouts));
    check("tls", debug(&o.tls), debug(&n.tls));
    check("protocol", debug(&o.protocol), debug(&n.protocol));
    if max_tries_set {
        check("max_tries", debug(&o.max_tries), debug(&n.max_tries));
    }
    check(
        "max_try_duration",
        debug(&o.max_try_duration),
        debug(&n.max_try_duration),
    );
    check(
        "health_check",
        debug(&o.health_check),
        debug(&n.health_check),
    );
    check(
        "circuit_breaker",
        debug(&o.circuit_breaker),
        debug(&n.circuit_breaker),
    );
    check(
        "backend_limit",
        debug(&o.backend_limit),
        debug(&n.backend_limit),
    );
    check("discovery", debug(&o.discovery), debug(&n.discovery));
    check("slow_start", debug(&o.slow_start), debug(&n.slow_start));
    // The host name a backend address was written with (its TLS server name), for
    // addresses in both.
    let hosts = |u: &Upstream, other: &Upstream| -> Vec<(SocketAddr, Option<String>)> {
        let mut v: Vec<_> = u
            .backends
            .iter()
            .filter(|b| other.backends.iter().any(|x| x.addr == b.addr))
            .map(|b| (b.addr, b.host.clone()))
            .collect();
        v.sort();
        v
    };
    check(
        "backend host names",
        debug(&hosts(o, n)),
        debug(&hosts(n, o)),
    );
    out
}

/// The differences of group `o` (old) and `n` (new), `None` when there are none.
fn group_change(
    o: &Upstream,
    n: &Upstream,
    secrets_set: bool,
    max_tries_set: bool,
) -> Option<GroupChange> {
    let weights = |u: &Upstream| -> BTreeMap<SocketAddr, u32> {
        u.backends.iter().map(|b| (b.addr, b.weight)).collect()
    };
    let (before, after) = (weights(o), weights(n));
    let mut change = GroupChange {
        name: o.name.clone(),
        algorithm: (o.algorithm != n.algorithm).then_some((o.algorithm, n.algorithm)),
        ..Default::default()
    };
    for (addr, w) in &before {
        match after.get(addr) {
            None => change.removed.push((*addr, *w)),
            Some(nw) if nw != w => change.reweighted.push((*addr, *w, *nw)),
            Some(_) => {}
        }
    }
    for (addr, w) in &after {
        if !before.contains_key(addr) {
            change.added.push((*addr, *w));
        }
    }
    change.other = other_changes(o, n, secrets_set, max_tries_set);
    let selection_changes = change.algorithm.is_some()
        || before != after
        || change
            .other
            .iter()
            .any(|o| o == "hash_key" || o == "sticky");
    if selection_changes {
        change.shift = match (o.algorithm, n.algorithm) {
            (Algorithm::Cookie, _) | (_, Algorithm::Cookie) => sticky_shift(o, n, secrets_set),
            _ => hashed_shift(o, n),
        };
    }
    let empty = change.algorithm.is_none()
        && change.added.is_empty()
        && change.removed.is_empty()
        && change.reweighted.is_empty()
        && change.other.is_empty();
    (!empty).then_some(change)
}

/// The group changes from `old` to `new` (removed, added, changed; each by name), and notes
/// on unchanged groups that still lose their clients on a reload (a cookie group without a
/// secret).
pub fn diff(
    old: (&FileConfig, &Config),
    new: (&FileConfig, &Config),
) -> (Vec<UpstreamChange>, Vec<String>) {
    let by_name = |c: &Config| -> BTreeMap<String, usize> {
        c.upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.clone(), i))
            .collect()
    };
    let (before, after) = (by_name(old.1), by_name(new.1));
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (name, &i) in &before {
        if !after.contains_key(name) {
            out.push(UpstreamChange::Removed {
                name: name.clone(),
                summary: summary(&old.1.upstreams[i]),
            });
        }
    }
    for (name, &i) in &after {
        if !before.contains_key(name) {
            out.push(UpstreamChange::Added {
                name: name.clone(),
                summary: summary(&new.1.upstreams[i]),
            });
        }
    }
    for (name, &i) in &before {
        let Some(&j) = after.get(name) else { continue };
        let (o, n) = (&old.1.upstreams[i], &new.1.upstreams[j]);
        let secrets_set = sets_secret(old.0, name) && sets_secret(new.0, name);
        let max_tries_set = sets_max_tries(old.0, name) || sets_max_tries(new.0, name);
        let change = group_change(o, n, secrets_set, max_tries_set);
        let shift_told = change.as_ref().is_some_and(|c| c.shift.is_some());
        if n.algorithm == Algorithm::Cookie && !secrets_set && !shift_told {
            notes.push(format!(
                "upstream {name}: sticky.secret is not set, so each process makes a random one: \
                 a reload ends every sticky session"
            ));
        }
        if let Some(change) = change {
            out.push(UpstreamChange::Changed(Box::new(change)));
        }
        if n.discovery.is_some() {
            notes.push(format!(
                "upstream {name}: only its static backends are compared; discovered ones are \
                 found at run time"
            ));
        }
    }
    (out, notes)
}
