//! The response cache: pingora-cache in front of a route's backends, in memory.
//!
//! A request's path through it, hook by hook (see `proxy`):
//! `request_cache_filter` turns the cache on for a caching route's GET or HEAD
//! ([`Cache::enable`], [`policy::request_eligible`]) -> `cache_key_callback` builds the key
//! ([`key::build`]) -> Pingora looks it up; on a miss the cache lock lets one request fetch
//! while the others wait -> `response_cache_filter` decides whether the backend's answer is
//! stored ([`policy::response_cacheable`]), `cache_vary_filter` which variant it is
//! ([`policy::variance`]) -> `response_filter` labels the answer `X-Cache-Status`
//! ([`status`]). The admin listener's `DELETE /cache` purges ([`purge`]).

pub mod key;
pub mod metrics;
pub mod policy;
pub mod purge;
pub mod status;
pub mod store;

use crate::config::model::CacheStore;
use pingora_cache::eviction::simple_lru::Manager;
use pingora_cache::eviction::EvictionManager;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::predictor::Predictor;
use pingora_cache::{CacheOptionOverrides, HttpCache};
use store::Store;

/// Shards of the memory of responses found uncacheable.
const PREDICTOR_SHARDS: usize = 16;
/// Keys remembered as uncacheable per shard.
const PREDICTOR_KEYS_PER_SHARD: usize = 1024;

/// The store, its eviction, the cache lock and the memory of uncacheable keys: one per
/// process, shared by every caching route (Pingora wants them `'static`).
pub struct Cache {
    /// The objects.
    pub store: &'static Store,
    /// Least-recently-used eviction past `cache.max_size`.
    pub eviction: &'static Manager,
    lock: &'static CacheKeyLockImpl,
    predictor: &'static Predictor<PREDICTOR_SHARDS>,
    /// `cache.max_object_size`.
    pub max_object_size: usize,
    lock_timeout: std::time::Duration,
    /// `cache.max_size`.
    pub max_size: u64,
}

impl Cache {
    /// The cache `settings` describe. Lives as long as the process (a reload starts a new
    /// process, with a new, empty cache).
    pub fn new(settings: &CacheStore) -> &'static Cache {
        let lock: &'static CacheLock = Box::leak(CacheLock::new_boxed(settings.lock_timeout));
        let cache = Cache {
            store: Box::leak(Box::new(Store::new(
                settings.max_object_size as usize,
                settings.max_size as usize,
            ))),
            eviction: Box::leak(Box::new(Manager::new(settings.max_size as usize))),
            lock,
            predictor: Box::leak(Box::new(Predictor::new(PREDICTOR_KEYS_PER_SHARD, None))),
            max_object_size: settings.max_object_size as usize,
            lock_timeout: settings.lock_timeout,
            max_size: settings.max_size,
        };
        Box::leak(Box::new(cache))
    }

    /// Turn the cache on for one request.
    pub fn enable(&'static self, cache: &mut HttpCache) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.lock_timeout);
        cache.enable(
            self.store,
            Some(self.eviction as &'static (dyn EvictionManager + Sync)),
            Some(self.predictor),
            Some(self.lock),
            Some(overrides),
        );
        // Pingora's own size limit would fail a chunked response that outgrows it; fulcrum
        // stops storing it instead and lets it through (`proxy::caching::on_fill_body`).
    }

    /// Objects held, bytes held (as the eviction manager counts them), and objects evicted
    /// so far.
    pub fn usage(&self) -> (usize, usize, usize) {
        (
            self.eviction.total_items(),
            self.eviction.total_size(),
            self.eviction.evicted_items(),
        )
    }
}
