//! The runtime API under `/routes`: read the routes, and change the weights of a split.
//!
//! | Method and path            | Body                               | Answer         |
//! |----------------------------|------------------------------------|----------------|
//! | `GET /routes`              |                                    | 200 the routes |
//! | `GET /routes/ID`           |                                    | 200 the route  |
//! | `PATCH /routes/ID/split`   | `{"weights": {"GROUP": N, ...}}`   | 200 the route  |
//!
//! `ID` is the route's `name`, or its index in `routes:` (`0`, `1`, ...). A PATCH names some
//! or all sides of the split by group name; sides it does not name keep their weight; at
//! least one side must keep a weight above 0. Changed weights apply to the next request; with
//! `split_key`, only the keys that must move to honour the new weights move (see
//! `routing::split`). They are saved in the state file and come back at the next start or
//! reload unless the config's split changed since (see `state_file::splits`). Errors are `{"error": "..."}`: 400 bad body or weight, 404 unknown
//! route, or a route without a split, 405 wrong method.

use super::upstreams::{percent_decode, ApiError};
use crate::config::model::Destination;
use crate::config::model::MAX_SPLIT_WEIGHT as MAX_WEIGHT;
use crate::proxy::state::ProxyState;
use http::{Method, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Where a request under `/routes` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/routes`.
    List,
    /// `/routes/ID`.
    Route(String),
    /// `/routes/ID/split`.
    Split(String),
}

impl Target {
    /// The methods this target takes, for `Allow`.
    pub fn allow(&self) -> &'static str {
        match self {
            Target::List | Target::Route(_) => "GET, HEAD",
            Target::Split(_) => "PATCH",
        }
    }

    fn takes(&self, method: &Method) -> bool {
        match self {
            Target::List | Target::Route(_) => *method == Method::GET || *method == Method::HEAD,
            Target::Split(_) => *method == Method::PATCH,
        }
    }
}

/// The target of a path under `/routes`; `Ok(None)` for any other path.
pub fn parse_path(path: &str) -> Result<Option<Target>, ApiError> {
    let Some(rest) = path.strip_prefix("/routes") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Some(Target::List));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for p in rest.split('/') {
        let decoded = percent_decode(p).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("bad escape in {p:?}"))
        })?;
        parts.push(decoded);
    }
    match parts.as_slice() {
        [id] if !id.is_empty() => Ok(Some(Target::Route(id.clone()))),
        [id, s] if !id.is_empty() && s == "split" => Ok(Some(Target::Split(id.clone()))),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such resource: {path}"),
        )),
    }
}

/// `PATCH /routes/ID/split` body as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    weights: BTreeMap<String, i64>,
}

/// Answer a runtime API request under `/routes`: the status, the JSON body, and whether it
/// changed anything.
pub fn handle(
    state: &ProxyState,
    method: &Method,
    target: &Target,
    body: &[u8],
) -> Result<(StatusCode, serde_json::Value, bool), ApiError> {
    if !target.takes(method) {
        let mut e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        e.allow = Some(target.allow());
        return Err(e);
    }
    match target {
        Target::List => {
            let all: Vec<_> = (0..state.routes.len()).map(|i| view(state, i)).collect();
            Ok((StatusCode::OK, serde_json::json!({ "routes": all }), false))
        }
        Target::Route(id) => Ok((StatusCode::OK, view(state, find(state, id)?), false)),
        Target::Split(id) => {
            let index = find(state, id)?;
            set_weights(state, index, body)?;
            Ok((StatusCode::OK, view(state, index), true))
        }
    }
}

/// The index of the route an `ID` names: a route name, else an index.
pub fn route_index(state: &ProxyState, id: &str) -> Option<usize> {
    let by_name = state
        .routes
        .iter()
        .position(|r| r.name.as_deref() == Some(id));
    by_name.or_else(|| id.parse::<usize>().ok().filter(|&i| i < state.routes.len()))
}

/// The `ID` of route `index`: its name, else its index.
pub fn route_id(state: &ProxyState, index: usize) -> String {
    state.routes[index]
        .name
        .clone()
        .unwrap_or_else(|| index.to_string())
}

/// The route a path's `ID` names, or a 404.
fn find(state: &ProxyState, id: &str) -> Result<usize, ApiError> {
    route_index(state, id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route named {id:?} (nor with that index)"),
        )
    })
}

fn set_weights(state: &ProxyState, index: usize, body: &[u8]) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let (Destination::Split(split), Some(splitter)) =
        (&state.routes[index].destination, &state.splitters[index])
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("routes[{index}] has no split"),
        ));
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("a JSON object body is required".into()));
    }
    let b: SplitBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("bad JSON body: {e}")))?;
    let mut weights = splitter.weights();
    for (name, w) in &b.weights {
        let side = split
            .sides
            .iter()
            .position(|s| state.groups[s.upstream].config.name == *name)
            .ok_or_else(|| bad(format!("{name:?} is not a side of this split")))?;
        if !(0..=MAX_WEIGHT).contains(w) {
            return Err(bad(format!(
                "weights.{name}: expected 0 to {MAX_WEIGHT}, found {w}"
            )));
        }
        weights[side] = *w as u32;
    }
    if weights.iter().all(|&w| w == 0) {
        return Err(bad(
            "every weight would be 0: one side must take traffic".into()
        ));
    }
    splitter.set_weights(weights);
    Ok(())
}

/// A route in the API's answers.
fn view(state: &ProxyState, index: usize) -> serde_json::Value {
    let route = &state.routes[index];
    let name = |g: usize| state.groups[g].config.name.clone();
    let mut v = serde_json::json!({
        "index": index,
        "name": route.name,
        "path": route.path,
    });
    match (&route.destination, &state.splitters[index]) {
        (Destination::Split(split), Some(splitter)) => {
            let weights = splitter.weights();
            let sides: Vec<_> = split
                .sides
                .iter()
                .zip(weights)
                .map(|(s, w)| serde_json::json!({"upstream": name(s.upstream), "weight": w}))
                .collect();
            v["split"] = serde_json::Value::Array(sides);
        }
        _ => {
            let groups: Vec<String> = route.upstreams().map(name).collect();
            v["upstream"] = groups.first().cloned().into();
        }
    }
    v
}
