//! Where a route sends requests: `upstream` or `split` (with `split_key`), and its `mirror`.

use super::super::upstreams::hash_key;
use super::super::Result;
use crate::config::error::ConfigError;
use crate::config::model::{
    Destination, Mirror, Split, SplitSide, DEFAULT_MIRROR_BODY, MAX_SPLIT_WEIGHT,
};
use crate::config::schema::{MirrorSpec, RouteSpec};
use crate::config::units::parse_size;
use std::collections::HashMap;

/// Largest request body a mirror may copy (copies are held in memory until sent).
pub const MAX_MIRROR_BODY: u64 = 1024 * 1024;

/// The index of the upstream `name` at `path`, or an error listing the defined ones.
pub(super) fn upstream_index(
    path: &str,
    name: &str,
    names: &HashMap<String, usize>,
) -> Result<usize> {
    names.get(name).copied().ok_or_else(|| {
        let mut known: Vec<_> = names.keys().map(String::as_str).collect();
        known.sort_unstable();
        ConfigError::invalid(
            path,
            format!(
                "no upstream named {name:?} (defined: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
    })
}

/// The destination of the route at `base`: exactly one of `upstream` and `split`.
pub(super) fn destination(
    base: &str,
    spec: &RouteSpec,
    names: &HashMap<String, usize>,
) -> Result<Destination> {
    let destination = match (&spec.upstream, spec.split.is_empty()) {
        (Some(_), false) => {
            return Err(ConfigError::invalid(
                base,
                "give either `upstream` or `split`, not both",
            ))
        }
        (None, true) => {
            return Err(ConfigError::invalid(
                format!("{base}.upstream"),
                "a route needs an `upstream` (or a `split` between several)",
            ))
        }
        (Some(name), true) => {
            Destination::Upstream(upstream_index(&format!("{base}.upstream"), name, names)?)
        }
        (None, false) => Destination::Split(split(base, spec, names)?),
    };
    if spec.split_key.is_some() && spec.split.is_empty() {
        return Err(ConfigError::invalid(
            format!("{base}.split_key"),
            "split_key needs a `split` to choose a side of",
        ));
    }
    Ok(destination)
}

fn split(base: &str, spec: &RouteSpec, names: &HashMap<String, usize>) -> Result<Split> {
    if spec.split.len() < 2 {
        return Err(ConfigError::invalid(
            format!("{base}.split"),
            "a split needs at least two sides (for one group, write `upstream:`)",
        ));
    }
    let mut sides: Vec<SplitSide> = Vec::with_capacity(spec.split.len());
    for (i, side) in spec.split.iter().enumerate() {
        let path = format!("{base}.split[{i}]");
        let upstream = upstream_index(&format!("{path}.upstream"), &side.upstream, names)?;
        if let Some(first) = sides.iter().position(|s| s.upstream == upstream) {
            return Err(ConfigError::invalid(
                format!("{path}.upstream"),
                format!("{:?} is already split[{first}]", side.upstream),
            ));
        }
        let weight = super::super::values::int_in(
            &format!("{path}.weight"),
            side.weight,
            0..=MAX_SPLIT_WEIGHT,
        )?;
        sides.push(SplitSide {
            upstream,
            weight: weight as u32,
        });
    }
    if sides.iter().all(|s| s.weight == 0) {
        return Err(ConfigError::invalid(
            format!("{base}.split"),
            "every weight is 0: at least one side must take traffic",
        ));
    }
    let key = match &spec.split_key {
        Some(text) => Some(hash_key(&format!("{base}.split_key"), text)?),
        None => None,
    };
    Ok(Split { sides, key })
}

/// The mirror at `base` (`routes[i].mirror`).
pub(super) fn mirror(
    base: &str,
    spec: &MirrorSpec,
    names: &HashMap<String, usize>,
) -> Result<Mirror> {
    let upstream = upstream_index(&format!("{base}.upstream"), &spec.upstream, names)?;
    let percent = spec.percent.unwrap_or(100.0);
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(ConfigError::invalid(
            format!("{base}.percent"),
            format!("expected a share above 0 and at most 100 (e.g. 10 or 0.5), found {percent}"),
        ));
    }
    let max_body_bytes = match &spec.max_body_bytes {
        None => DEFAULT_MIRROR_BODY,
        Some(v) => {
            let path = format!("{base}.max_body_bytes");
            let n = parse_size(&path, v)?;
            if n > MAX_MIRROR_BODY {
                return Err(ConfigError::invalid(
                    path,
                    format!(
                        "expected a size up to 1MiB (copies are held in memory until sent), \
                         found {n} bytes"
                    ),
                ));
            }
            n
        }
    };
    Ok(Mirror {
        upstream,
        percent,
        max_body_bytes,
    })
}
