//! Purging stored objects on an operator's request: everything, one route's objects, or a
//! route's objects by exact path or path prefix.

use super::store::Origin;
use super::Cache;
use pingora_cache::eviction::EvictionManager;
use pingora_cache::CacheEntryKeyRef;

/// Which objects a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every object.
    All,
    /// Objects of one route (by index).
    Route(usize),
    /// Objects of one route whose path is exactly this one (any host, query or variant).
    Path(usize, String),
    /// Objects of one route whose path starts with this prefix.
    Prefix(usize, String),
}

impl Selection {
    /// Whether an object stored from `origin` is selected.
    pub fn selects(&self, origin: &Origin) -> bool {
        match self {
            Selection::All => true,
            Selection::Route(r) => origin.route == *r,
            Selection::Path(r, p) => origin.route == *r && *origin.path == **p,
            Selection::Prefix(r, p) => origin.route == *r && origin.path.starts_with(p.as_str()),
        }
    }
}

/// Remove the selected objects; returns how many were removed.
pub fn purge(cache: &Cache, selection: &Selection) -> usize {
    let removed = cache.store.remove_where(|o| selection.selects(o));
    for key in &removed {
        // Objects here carry no entry id: the eviction manager tracks them by key alone.
        cache
            .eviction
            .remove(CacheEntryKeyRef::from_entry_id(key, None));
    }
    removed.len()
}
