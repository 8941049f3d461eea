//! The share of clients a change moves: evaluated with the proxy's own selection code.
//!
//! - `consistent` and `ip_hash` groups: the old and the new group are built as the proxy builds
//!   them ([`UpstreamGroup::new`]) and [`SAMPLES`] synthetic keys are looked up in both; a key
//!   moves when the backends' addresses differ.
//! - `cookie` groups: [`SAMPLES`] sessions are placed by the old group's fallback, each gets the
//!   old group's `Set-Cookie`, and the new group reads that cookie back
//!   ([`StickyCookies::backend_for`](crate::balancer::sticky::StickyCookies::backend_for)); a
//!   session moves when its cookie no longer names the same backend address.
//! - `split` routes with `split_key`: each sample key's side under the old and the new weights
//!   ([`keyed_side`]), compared by the side's group name.
//!
//! Keys are `key-0`, `key-1`, ... or, where the key is the client IP, the IPv4 addresses
//! 10.0.0.0 upwards (4 bytes, as the proxy hashes them).

use crate::balancer::{Pick, UpstreamGroup};
use crate::config::model::{HashKey, Upstream};
use crate::routing::split::{keyed_side, side_seed};
use std::net::SocketAddr;

/// Number of sample keys (or sessions) evaluated.
pub const SAMPLES: usize = 100_000;

/// The share of keys a change moves.
#[derive(Debug, Clone, PartialEq)]
pub enum Shift {
    /// Evaluated over sample keys.
    Measured {
        /// Keys that map elsewhere after the change.
        moved: usize,
        /// Keys evaluated.
        samples: usize,
        /// What a sample is (`sample keys`, `sample client addresses`, `sample sessions`).
        unit: &'static str,
        /// Why keys move, when there is more to say (e.g. an unset cookie secret).
        note: Option<String>,
    },
    /// Not comparable: keys are hashed from another request field after the change, or are
    /// no longer (or only now) kept on one backend.
    Rekeyed(String),
}

impl Shift {
    /// The moved share in percent, when measured.
    pub fn percent(&self) -> Option<f64> {
        match self {
            Shift::Measured { moved, samples, .. } if *samples > 0 => {
                Some(*moved as f64 * 100.0 / *samples as f64)
            }
            Shift::Measured { .. } => Some(0.0),
            Shift::Rekeyed(_) => None,
        }
    }
}

/// The key a `split_key` or `hash_key` names, as a config writes it.
pub fn key_text(key: &HashKey) -> String {
    match key {
        HashKey::ClientIp => "client_ip".into(),
        HashKey::Path => "path".into(),
        HashKey::Header(h) => format!("header:{h}"),
        HashKey::Cookie(c) => format!("cookie:{c}"),
        HashKey::Query(q) => format!("query:{q}"),
    }
}

/// Sample key `i` for keys taken from `key`: an IPv4 address for the client IP, text otherwise.
pub fn sample_key(key: &HashKey, i: usize) -> Vec<u8> {
    match key {
        HashKey::ClientIp => (0x0A00_0000u32.wrapping_add(i as u32))
            .to_be_bytes()
            .to_vec(),
        _ => format!("key-{i}").into_bytes(),
    }
}

fn unit_for(key: &HashKey) -> &'static str {
    match key {
        HashKey::ClientIp => "sample client addresses",
        _ => "sample keys",
    }
}

/// What a group hashes, when its algorithm maps keys to backends (`consistent`: its
/// `hash_key`; `ip_hash`: the client IP).
pub fn hashed_key(u: &Upstream) -> Option<HashKey> {
    use crate::config::model::Algorithm;
    match u.algorithm {
        Algorithm::Consistent => Some(u.hash_key.clone()),
        Algorithm::IpHash => Some(HashKey::ClientIp),
        _ => None,
    }
}

/// The backend address `group` picks for `key` with every backend up.
fn pick(group: &UpstreamGroup, key: &[u8]) -> Option<SocketAddr> {
    let members = group.members();
    let pick = Pick {
        key: Some(key),
        sticky: None,
    };
    let chosen = members.select(group.stats, pick, |_| false)?;
    members.get(chosen.index).map(|m| m.backend.addr)
}

/// The share of keys of a hashing group (`consistent`, `ip_hash`) that change backend from
/// `old` to `new`; `None` when neither hashes keys.
pub fn hashed_shift(old: &Upstream, new: &Upstream) -> Option<Shift> {
    let (old_key, new_key) = match (hashed_key(old), hashed_key(new)) {
        (None, None) => return None,
        (Some(k), None) => {
            return Some(Shift::Rekeyed(format!(
                "keys ({}) no longer choose the backend: {} picks each request on its own",
                key_text(&k),
                new.algorithm.name()
            )))
        }
        (None, Some(k)) => {
            return Some(Shift::Rekeyed(format!(
                "clients are now kept on a backend by {} ({})",
                key_text(&k),
                new.algorithm.name()
            )))
        }
        (Some(a), Some(b)) => (a, b),
    };
    if old_key != new_key {
        return Some(Shift::Rekeyed(format!(
            "the hash input changes from {} to {}: every client is mapped anew",
            key_text(&old_key),
            key_text(&new_key)
        )));
    }
    let before = UpstreamGroup::new(old.clone());
    let after = UpstreamGroup::new(new.clone());
    let moved = (0..SAMPLES)
        .filter(|&i| {
            let key = sample_key(&old_key, i);
            pick(&before, &key) != pick(&after, &key)
        })
        .count();
    Some(Shift::Measured {
        moved,
        samples: SAMPLES,
        unit: unit_for(&old_key),
        note: None,
    })
}

/// The share of sticky sessions of a `cookie` group whose cookie no longer names the same
/// backend after the change. `secrets_set` says whether both configs set `sticky.secret`
/// (without one, each process makes a random secret and no cookie survives a reload).
pub fn sticky_shift(old: &Upstream, new: &Upstream, secrets_set: bool) -> Option<Shift> {
    if old.sticky.is_none() || new.sticky.is_none() {
        return (old.sticky.is_some() != new.sticky.is_some()).then(|| {
            Shift::Rekeyed(if old.sticky.is_some() {
                "sticky cookies are no longer read: every session is placed anew".into()
            } else {
                "sessions are now kept on a backend by a cookie".into()
            })
        });
    }
    let before = UpstreamGroup::new(old.clone());
    let after = UpstreamGroup::new(new.clone());
    let (old_members, new_members) = (before.members(), after.members());
    let (Some(old_cookies), Some(new_cookies)) = (old_members.sticky(), new_members.sticky())
    else {
        return None;
    };
    // Whether the cookie the old group gives the backend on `slot` still names it.
    let kept = |slot: usize| -> bool {
        let addr = old_members.get(slot).map(|m| m.backend.addr);
        let Some(pair) = old_cookies
            .set_cookie(slot)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
        else {
            return false;
        };
        let Ok(mut req) = pingora_http::RequestHeader::build("GET", b"/", None) else {
            return false;
        };
        if req.append_header("cookie", pair.trim()).is_err() {
            return false;
        }
        let named = new_cookies
            .backend_for(&req)
            .and_then(|s| new_members.get(s))
            .map(|m| m.backend.addr);
        named.is_some() && named == addr
    };
    let mut verdicts: std::collections::HashMap<usize, bool> = Default::default();
    let mut moved = 0;
    for _ in 0..SAMPLES {
        let Some(chosen) = old_members.select(before.stats, Pick::default(), |_| false) else {
            continue;
        };
        if !*verdicts
            .entry(chosen.index)
            .or_insert_with(|| kept(chosen.index))
        {
            moved += 1;
        }
    }
    let note = (!secrets_set).then(|| {
        "sticky.secret is not set, so each process makes a random one: \
         no session cookie survives a reload"
            .to_string()
    });
    Some(Shift::Measured {
        moved,
        samples: SAMPLES,
        unit: "sample sessions",
        note,
    })
}

/// A route's destination with groups named: one group, or weighted sides and a split key.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// One group.
    One(String),
    /// A split: (group, weight) sides in config order, and its `split_key`.
    Split(Vec<(String, u32)>, Option<HashKey>),
}

impl Target {
    /// The side (group name) a request with split key `key` goes to; `None` for a split
    /// without a key (each request is chosen on its own).
    fn side_of(&self, key: &[u8]) -> Option<&str> {
        match self {
            Target::One(name) => Some(name),
            Target::Split(sides, Some(_)) => {
                let seeds: Vec<u64> = sides.iter().map(|(n, _)| side_seed(n)).collect();
                let weights: Vec<u32> = sides.iter().map(|(_, w)| *w).collect();
                Some(&sides[keyed_side(&seeds, &weights, key)].0)
            }
            Target::Split(_, None) => None,
        }
    }

    fn key(&self) -> Option<&HashKey> {
        match self {
            Target::Split(_, key) => key.as_ref(),
            Target::One(_) => None,
        }
    }
}

/// The share of split keys that go to another side from `old` to `new`: computed when a keyed
/// split is involved and the other destination is a keyed split on the same key or one group.
pub fn split_shift(old: &Target, new: &Target) -> Option<Shift> {
    let key = match (old, new) {
        (Target::One(_), Target::One(_)) => return None,
        (Target::Split(_, None), Target::Split(_, None)) => return None,
        _ => match (old.key(), new.key()) {
            (Some(a), Some(b)) if a != b => {
                return Some(Shift::Rekeyed(format!(
                    "split_key changes from {} to {}: every client's side is chosen anew",
                    key_text(a),
                    key_text(b)
                )))
            }
            (Some(k), _) | (None, Some(k)) => k.clone(),
            (None, None) => return None,
        },
    };
    let unkeyed = |t: &Target| matches!(t, Target::Split(_, None));
    if unkeyed(old) || unkeyed(new) {
        return Some(Shift::Rekeyed(format!(
            "the split is {} keyed by {}",
            if unkeyed(new) { "no longer" } else { "now" },
            key_text(&key)
        )));
    }
    let moved = (0..SAMPLES)
        .filter(|&i| {
            let k = sample_key(&key, i);
            old.side_of(&k) != new.side_of(&k)
        })
        .count();
    Some(Shift::Measured {
        moved,
        samples: SAMPLES,
        unit: unit_for(&key),
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::test_upstream;
    use crate::config::model::{Algorithm, Backend, SameSite, StickyCookie};

    fn with_backends(mut u: Upstream, addrs: &[(&str, u32)]) -> Upstream {
        u.backends = addrs
            .iter()
            .map(|(a, w)| Backend {
                addr: a.parse().unwrap(),
                host: None,
                weight: *w,
            })
            .collect();
        u
    }

    fn four() -> Vec<(&'static str, u32)> {
        vec![
            ("10.0.0.1:80", 1),
            ("10.0.0.2:80", 1),
            ("10.0.0.3:80", 1),
            ("10.0.0.4:80", 1),
        ]
    }

    fn pct(s: &Shift) -> f64 {
        s.percent().unwrap()
    }

    #[test]
    fn same_backends_in_another_order_move_nothing() {
        let base = test_upstream(Algorithm::Consistent, &[]);
        let old = with_backends(base.clone(), &four());
        let mut reversed = four();
        reversed.reverse();
        let new = with_backends(base, &reversed);
        assert_eq!(pct(&hashed_shift(&old, &new).unwrap()), 0.0);
    }

    #[test]
    fn removing_one_of_four_ketama_backends_moves_about_a_quarter() {
        let base = test_upstream(Algorithm::Consistent, &[]);
        let old = with_backends(base.clone(), &four());
        let new = with_backends(base, &four()[..3]);
        let p = pct(&hashed_shift(&old, &new).unwrap());
        assert!((15.0..35.0).contains(&p), "{p}");
    }

    #[test]
    fn ip_hash_uses_client_addresses_and_a_weight_change_moves_keys() {
        let base = test_upstream(Algorithm::IpHash, &[]);
        let old = with_backends(base.clone(), &four());
        let mut heavier = four();
        heavier[0].1 = 3;
        let new = with_backends(base, &heavier);
        let s = hashed_shift(&old, &new).unwrap();
        let Shift::Measured { unit, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(*unit, "sample client addresses");
        assert!(pct(&s) > 10.0, "{s:?}");
    }

    #[test]
    fn a_changed_hash_key_is_not_comparable() {
        let old = with_backends(test_upstream(Algorithm::Consistent, &[]), &four());
        let mut new = old.clone();
        new.hash_key = HashKey::Path;
        assert!(matches!(hashed_shift(&old, &new), Some(Shift::Rekeyed(_))));
        let mut plain = old.clone();
        plain.algorithm = Algorithm::RoundRobin;
        assert!(matches!(
            hashed_shift(&old, &plain),
            Some(Shift::Rekeyed(_))
        ));
        assert_eq!(hashed_shift(&plain, &plain), None);
    }

    fn sticky(secret: &[u8]) -> StickyCookie {
        StickyCookie {
            name: "sid".into(),
            path: "/".into(),
            max_age: None,
            http_only: true,
            secure: false,
            same_site: Some(SameSite::Lax),
            secret: secret.to_vec(),
        }
    }

    #[test]
    fn sticky_sessions_move_only_off_removed_backends() {
        let mut base = test_upstream(Algorithm::Cookie, &[]);
        base.sticky = Some(sticky(b"0123456789abcdef"));
        let old = with_backends(base.clone(), &four());
        let new = with_backends(base.clone(), &four()[1..]);
        // Round robin places a quarter of the sessions on the removed backend.
        assert_eq!(pct(&sticky_shift(&old, &new, true).unwrap()), 25.0);
        let mut reweighted = four();
        reweighted[2].1 = 5;
        let new = with_backends(base.clone(), &reweighted);
        assert_eq!(pct(&sticky_shift(&old, &new, true).unwrap()), 0.0);
        let mut other_secret = new.clone();
        other_secret.sticky = Some(sticky(b"another secret of 16+"));
        assert_eq!(
            pct(&sticky_shift(&old, &other_secret, false).unwrap()),
            100.0
        );
    }

    #[test]
    fn split_weights_90_10_to_70_30_move_a_fifth() {
        let key = Some(HashKey::Header(http::HeaderName::from_static("x-user")));
        let old = Target::Split(vec![("v1".into(), 90), ("v2".into(), 10)], key.clone());
        let new = Target::Split(vec![("v1".into(), 70), ("v2".into(), 30)], key.clone());
        let p = pct(&split_shift(&old, &new).unwrap());
        assert!((p - 20.0).abs() < 0.6, "{p}");
        // Reordered sides are the same split.
        let reordered = Target::Split(vec![("v2".into(), 10), ("v1".into(), 90)], key.clone());
        assert_eq!(pct(&split_shift(&old, &reordered).unwrap()), 0.0);
        // From one group to a keyed split: the keys the new side takes.
        let one = Target::One("v1".into());
        let p = pct(&split_shift(&one, &new).unwrap());
        assert!((p - 30.0).abs() < 0.6, "{p}");
        let unkeyed = Target::Split(vec![("v1".into(), 70), ("v2".into(), 30)], None);
        assert!(matches!(
            split_shift(&old, &unkeyed),
            Some(Shift::Rekeyed(_))
        ));
        assert_eq!(split_shift(&one, &Target::One("v2".into())), None);
    }
}
