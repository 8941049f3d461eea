//! Split weights in the state file: what `PATCH /routes/ID/split` changed, kept across
//! restarts and reloads as long as the config's split stays what it was.
//!
//! An entry records the config's weights at the time of the change next to the runtime
//! weights. At start the runtime weights come back only if the route (by the API's `ID`: its
//! name, else its index) still splits between the same groups with the same config weights:
//! a config that changed the split since is the newer decision, and wins (logged).

use crate::admin::routes::{route_id, route_index};
use crate::config::model::{Destination, MAX_SPLIT_WEIGHT};
use crate::proxy::state::ProxyState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One split's runtime weights, by group name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitState {
    /// The config's weights when the runtime weights were set.
    pub config: BTreeMap<String, u32>,
    /// The weights in use.
    pub weights: BTreeMap<String, u32>,
}

/// The config's weights and the weights in use of route `index`, by group name, if it splits.
fn weights_of(
    state: &ProxyState,
    index: usize,
) -> Option<(BTreeMap<String, u32>, BTreeMap<String, u32>)> {
    let Destination::Split(split) = &state.routes[index].destination else {
        return None;
    };
    let splitter = state.splitters[index].as_ref()?;
    let name = |g: usize| state.groups[g].config.name.clone();
    let config = split
        .sides
        .iter()
        .map(|s| (name(s.upstream), s.weight))
        .collect();
    let now = split
        .sides
        .iter()
        .zip(splitter.weights())
        .map(|(s, w)| (name(s.upstream), w))
        .collect();
    Some((config, now))
}

/// The splits whose weights differ from the config's now, by route ID.
pub fn of(state: &ProxyState) -> BTreeMap<String, SplitState> {
    (0..state.routes.len())
        .filter_map(|i| {
            let (config, weights) = weights_of(state, i)?;
            (config != weights).then(|| (route_id(state, i), SplitState { config, weights }))
        })
        .collect()
}

/// Give each split its runtime weights back where the config still matches; the reasons the
/// others are dropped are returned, one per entry.
pub fn restore(state: &ProxyState, splits: &BTreeMap<String, SplitState>) -> Vec<String> {
    let mut dropped = Vec::new();
    for (id, saved) in splits {
        let index = route_index(state, id);
        let Some((index, (config, _))) = index.and_then(|i| Some((i, weights_of(state, i)?)))
        else {
            dropped.push(format!("route {id}: no longer a split route"));
            continue;
        };
        if config != saved.config {
            dropped.push(format!(
                "route {id}: the config's split changed since (the config wins)"
            ));
            continue;
        }
        let valid = saved.weights.keys().eq(config.keys())
            && saved
                .weights
                .values()
                .all(|&w| i64::from(w) <= MAX_SPLIT_WEIGHT)
            && saved.weights.values().any(|&w| w > 0);
        if !valid {
            dropped.push(format!("route {id}: bad weights {:?}", saved.weights));
            continue;
        }
        let (Destination::Split(split), Some(splitter)) =
            (&state.routes[index].destination, &state.splitters[index])
        else {
            continue;
        };
        let weights = split
            .sides
            .iter()
            .map(|s| saved.weights[&state.groups[s.upstream].config.name])
            .collect();
        splitter.set_weights(weights);
        log::info!("route {id}: split weights {:?} restored", saved.weights);
    }
    dropped
}
