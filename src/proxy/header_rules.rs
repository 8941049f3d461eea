//! Applying a route's header edits to requests and responses.

use crate::config::model::HeaderEdits;
use pingora_http::{RequestHeader, ResponseHeader};

/// Apply edits to an upstream request: remove, then set, then add.
pub fn edit_request(edits: &HeaderEdits, req: &mut RequestHeader) {
    for name in &edits.remove {
        req.remove_header(name);
    }
    for (name, value) in &edits.set {
        let _ = req.insert_header(name.clone(), value.clone());
    }
    for (name, value) in &edits.add {
        let _ = req.append_header(name.clone(), value.clone());
    }
}

/// Apply edits to a downstream response: remove, then set, then add.
pub fn edit_response(edits: &HeaderEdits, resp: &mut ResponseHeader) {
    for name in &edits.remove {
        resp.remove_header(name);
    }
    for (name, value) in &edits.set {
        let _ = resp.insert_header(name.clone(), value.clone());
    }
    for (name, value) in &edits.add {
        let _ = resp.append_header(name.clone(), value.clone());
    }
}
