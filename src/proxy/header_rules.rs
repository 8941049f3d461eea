//! Applying a route's header edits to requests and responses.

use super::head::Head;
use crate::config::model::HeaderEdits;

/// Apply edits to a request going upstream or a response going downstream: remove, then set,
/// then add.
pub fn edit(edits: &HeaderEdits, head: &mut dyn Head) {
    for name in &edits.remove {
        head.remove(name);
    }
    for (name, value) in &edits.set {
        head.set(name, value.clone());
    }
    for (name, value) in &edits.add {
        head.add(name, value.clone());
    }
}
