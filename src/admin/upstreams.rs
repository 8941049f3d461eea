//! The runtime API under `/upstreams`: read a group, add, change and delete its backends.
//!
//! | Method and path                        | Body                          | Answer          |
//! |----------------------------------------|-------------------------------|-----------------|
//! | `GET /upstreams`                       |                               | 200 group names |
//! | `GET /upstreams/NAME`                  |                               | 200 the group   |
//! | `POST /upstreams/NAME/backends`        | `{"addr": IP:PORT, "weight"}` | 201 the backend |
//! | `GET /upstreams/NAME/backends/ADDR`    |                               | 200 the backend |
//! | `PATCH /upstreams/NAME/backends/ADDR`  | `{"state", "weight"}`         | 200 the backend |
//! | `DELETE /upstreams/NAME/backends/ADDR` |                               | 200 `{"deleted"}` |
//!
//! `ADDR` is `127.0.0.1:8080` or `[::1]:8080`, percent-decoded. `?force=true` on PATCH and
//! DELETE lets a change leave the group without an enabled backend. Errors are
//! `{"error": "..."}`: 400 bad body, address, weight, state or query; 404 unknown group or
//! backend; 405 wrong method (with `Allow`); 409 the backend exists, the change would leave no
//! enabled backend, or the group is full.
//!
//! This module parses and answers; [`super::AdminApp`] reads the body, checks the token and
//! saves the state file after a change.

use crate::balancer::stats::State;
use crate::balancer::{ChangeError, UpstreamGroup};
use crate::config::validate::MAX_WEIGHT;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a request under `/upstreams` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/upstreams`.
    List,
    /// `/upstreams/NAME`.
    Group(String),
    /// `/upstreams/NAME/backends`.
    Backends(String),
    /// `/upstreams/NAME/backends/ADDR`.
    Backend(String, SocketAddr),
}

impl Target {
    /// The methods this target takes, for `Allow`.
    pub fn allow(&self) -> &'static str {
        match self {
            Target::List | Target::Group(_) => "GET, HEAD",
            Target::Backends(_) => "POST",
            Target::Backend(..) => "GET, HEAD, PATCH, DELETE",
        }
    }

    /// Whether the target takes `method`.
    pub fn takes(&self, method: &Method) -> bool {
        match self {
            Target::List | Target::Group(_) => *method == Method::GET || *method == Method::HEAD,
            Target::Backends(_) => *method == Method::POST,
            Target::Backend(..) => {
                [Method::GET, Method::HEAD, Method::PATCH, Method::DELETE].contains(method)
            }
        }
    }
}

/// A runtime API error: its status, message and, for 405, the methods allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status to answer.
    pub status: StatusCode,
    /// The `error` text.
    pub message: String,
    /// `Allow` for 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ChangeError> for ApiError {
    /// 404 unknown backend; 409 exists, would leave no enabled backend, or full (the group's
    /// capacity is a conflict with its current contents, not a storage failure).
    fn from(e: ChangeError) -> Self {
        let status = match e {
            ChangeError::UnknownBackend(_) => StatusCode::NOT_FOUND,
            ChangeError::Exists(_) | ChangeError::WouldEmpty | ChangeError::Full(_) => {
                StatusCode::CONFLICT
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// Decode `%XX` escapes of one path segment; `None` for a bad escape or non-UTF-8 result.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A backend address: an IP literal and a port (`[v6]:port` for IPv6), nothing else; and
/// one that can be connected to (not port 0, not an unspecified, multicast or broadcast IP).
pub fn parse_addr(text: &str) -> Result<SocketAddr, ApiError> {
    let addr = text.parse::<SocketAddr>().map_err(|_| {
        ApiError::bad(format!(
            "expected IP:port like 10.0.0.5:8080 or [::1]:8080, found {text:?}"
        ))
    })?;
    if !crate::config::model::is_connectable(&addr) {
        return Err(ApiError::bad(format!(
            "{addr} cannot be a backend: it needs a port and a unicast, specified IP"
        )));
    }
    Ok(addr)
}

/// The target of a path under `/upstreams`; `Ok(None)` for any other path (today's answers
/// apply), 404 for a path under `/upstreams` that names nothing, 400 for a bad escape or
/// address.
pub fn parse_path(path: &str) -> Result<Option<Target>, ApiError> {
    let Some(rest) = path.strip_prefix("/upstreams") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Some(Target::List));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        // `/upstreamsX`: not the API.
        return Ok(None);
    };
    let raw: Vec<&str> = rest.split('/').collect();
    let mut parts = Vec::with_capacity(raw.len());
    for p in &raw {
        parts.push(percent_decode(p).ok_or_else(|| ApiError::bad(format!("bad escape in {p:?}")))?);
    }
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no such resource: {path}"));
    match parts.as_slice() {
        [name] if !name.is_empty() => Ok(Some(Target::Group(name.clone()))),
        [name, b] if !name.is_empty() && b == "backends" => {
            Ok(Some(Target::Backends(name.clone())))
        }
        [name, b, addr] if !name.is_empty() && b == "backends" => {
            Ok(Some(Target::Backend(name.clone(), parse_addr(addr)?)))
        }
        _ => Err(not_found()),
    }
}

/// `force` from the query: `force=true` (or `force=1`); `false`/`0` or absent is no force.
pub fn parse_force(query: Option<&str>) -> Result<bool, ApiError> {
    let mut force = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        match (k, v) {
            ("force", "true" | "1") => force = true,
            ("force", "false" | "0") => force = false,
            ("force", other) => {
                return Err(ApiError::bad(format!(
                    "force: expected true or false, found {other:?}"
                )))
            }
            (other, _) => return Err(ApiError::bad(format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(force)
}

/// `POST /upstreams/NAME/backends` body as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    addr: String,
    #[serde(default)]
    weight: Option<i64>,
}

/// `PATCH .../backends/ADDR` body as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    weight: Option<i64>,
}

/// A backend to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRequest {
    /// Its address.
    pub addr: SocketAddr,
    /// Its weight (1 unless given).
    pub weight: u32,
}

/// A change of a backend: at least one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchRequest {
    /// New state.
    pub state: Option<State>,
    /// New weight.
    pub weight: Option<u32>,
}

fn weight(w: i64) -> Result<u32, ApiError> {
    if (1..=MAX_WEIGHT).contains(&w) {
        Ok(w as u32)
    } else {
        Err(ApiError::bad(format!(
            "weight: expected 1 to {MAX_WEIGHT}, found {w}"
        )))
    }
}

fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("a JSON object body is required"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad JSON body: {e}")))
}

/// Parse a `POST .../backends` body.
pub fn parse_add(body: &[u8]) -> Result<AddRequest, ApiError> {
    let b: AddBody = json_body(body)?;
    Ok(AddRequest {
        addr: parse_addr(&b.addr)?,
        weight: b.weight.map(weight).transpose()?.unwrap_or(1),
    })
}

/// Parse a `PATCH .../backends/ADDR` body.
pub fn parse_patch(body: &[u8]) -> Result<PatchRequest, ApiError> {
    let b: PatchBody = json_body(body)?;
    if b.state.is_none() && b.weight.is_none() {
        return Err(ApiError::bad("give at least one of state and weight"));
    }
    let state = match b.state.as_deref() {
        None => None,
        Some(name) => Some(State::parse(name).ok_or_else(|| {
            ApiError::bad(format!(
                "state: expected enabled, drain or disabled, found {name:?}"
            ))
        })?),
    };
    Ok(PatchRequest {
        state,
        weight: b.weight.map(weight).transpose()?,
    })
}

/// One backend in the API's answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackendView {
    /// Address.
    pub addr: String,
    /// Weight now.
    pub weight: u32,
    /// `enabled`, `drain` or `disabled`.
    pub state: &'static str,
    /// `static`, `api`, `dns` or `file`.
    pub source: &'static str,
    /// The active health check passes.
    pub healthy: bool,
    /// May take traffic now.
    pub available: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// How far its slow start has come (0 to 1); absent at full weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<f64>,
}

/// One group in the API's answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// Its algorithm.
    pub algorithm: &'static str,
    /// Its backends, in slot order.
    pub backends: Vec<BackendView>,
}

/// The backend with `addr` in `group` now.
pub fn backend_view(group: &UpstreamGroup, addr: SocketAddr) -> Option<BackendView> {
    let members = group.members();
    let m = members.find(addr)?;
    let s = group.stats.get(m.slot())?;
    Some(BackendView {
        addr: m.backend.addr.to_string(),
        weight: m.backend.weight,
        state: s.state().name(),
        source: m.source.name(),
        healthy: s.is_healthy(),
        available: s.is_ready(),
        in_flight: group.stats.in_flight(m.slot()),
        slow_start: s.ramp(),
    })
}

/// `group` now.
pub fn group_view(group: &UpstreamGroup) -> GroupView {
    let members = group.members();
    GroupView {
        name: group.config.name.clone(),
        algorithm: group.config.algorithm.name(),
        backends: members
            .iter()
            .filter_map(|m| backend_view(group, m.backend.addr))
            .collect(),
    }
}

/// What an API request asks, once its target and method are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    /// The method.
    pub method: &'a Method,
    /// The target.
    pub target: Target,
    /// `?force=true`.
    pub force: bool,
}

/// An answer: status and JSON value; `changed` when the groups changed (save the state file).
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// JSON body.
    pub body: serde_json::Value,
    /// A group changed.
    pub changed: bool,
}

fn ok(status: StatusCode, body: impl Serialize, changed: bool) -> Answer {
    Answer {
        status,
        body: serde_json::to_value(body).unwrap_or_default(),
        changed,
    }
}

/// Answer one API call against `groups` with the request `body`.
pub fn handle(
    groups: &[Arc<UpstreamGroup>],
    call: &Call<'_>,
    body: &[u8],
) -> Result<Answer, ApiError> {
    if !call.target.takes(call.method) {
        return Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{} is not allowed here", call.method),
            allow: Some(call.target.allow()),
        });
    }
    let find = |name: &str| {
        groups
            .iter()
            .find(|g| g.config.name == name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no upstream {name}")))
    };
    let gone = |addr: SocketAddr| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no backend {addr} in this upstream"),
        )
    };
    match &call.target {
        Target::List => {
            let names: Vec<&str> = groups.iter().map(|g| g.config.name.as_str()).collect();
            Ok(ok(
                StatusCode::OK,
                serde_json::json!({ "upstreams": names }),
                false,
            ))
        }
        Target::Group(name) => Ok(ok(StatusCode::OK, group_view(find(name)?), false)),
        Target::Backends(name) => {
            let g = find(name)?;
            let add = parse_add(body)?;
            g.add(add.addr, add.weight)?;
            let view = backend_view(g, add.addr).ok_or_else(|| gone(add.addr))?;
            Ok(ok(StatusCode::CREATED, view, true))
        }
        Target::Backend(name, addr) => {
            let g = find(name)?;
            match *call.method {
                Method::PATCH => {
                    let p = parse_patch(body)?;
                    g.patch(*addr, p.state, p.weight, call.force)?;
                    let view = backend_view(g, *addr).ok_or_else(|| gone(*addr))?;
                    Ok(ok(StatusCode::OK, view, true))
                }
                Method::DELETE => {
                    g.delete(*addr, call.force)?;
                    Ok(ok(
                        StatusCode::OK,
                        serde_json::json!({ "deleted": addr.to_string() }),
                        true,
                    ))
                }
                _ => {
                    let view = backend_view(g, *addr).ok_or_else(|| gone(*addr))?;
                    Ok(ok(StatusCode::OK, view, false))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
