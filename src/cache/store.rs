//! The in-memory object store behind the response cache: complete objects only, each a
//! response head and a body held as one [`Bytes`], so a hit hands out the body without
//! copying it. Objects are keyed by the cache key's combined hash and spread over shards so
//! concurrent hits rarely meet on one lock.
//!
//! Eviction is not decided here: Pingora's eviction manager, told each object's size when it
//! is stored, names the objects to drop and calls [`Storage::purge`] for them.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheEntryKey, CacheKey, CacheMeta};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Shards of the object table.
const SHARDS: usize = 16;

/// Bytes counted for an object beyond its body and head: the table entry, the key and the
/// bookkeeping of the eviction manager.
const OBJECT_OVERHEAD: usize = 256;

/// Where an object came from, for purges by route and path (carried in the cache key's
/// extensions; see `key::build`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The route's index in the config.
    pub route: usize,
    /// The normalized request path.
    pub path: Box<str>,
}

/// The freshness facts of a stored object, with its response head.
#[derive(Debug, Clone)]
struct StoredMeta {
    fresh_until: SystemTime,
    updated: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    variance: Option<HashBinary>,
    epoch_override: Option<SystemTime>,
    header: ResponseHeader,
}

impl StoredMeta {
    fn of(meta: &CacheMeta) -> Self {
        StoredMeta {
            fresh_until: meta.fresh_until(),
            updated: meta.updated(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            epoch_override: meta.epoch_override(),
            header: meta.response_header_copy(),
        }
    }

    fn to_meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.updated,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        );
        if let Some(v) = self.variance {
            meta.set_variance_key(v);
        }
        if let Some(e) = self.epoch_override {
            meta.set_epoch_override(e);
        }
        meta
    }

    /// Bytes the head takes, roughly: names, values and per-field overhead.
    fn weight(&self) -> usize {
        self.header
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum::<usize>()
            + 64
    }
}

/// One stored response.
#[derive(Debug)]
struct Object {
    meta: RwLock<StoredMeta>,
    body: Bytes,
    origin: Option<Origin>,
    key: CompactCacheKey,
    weight: usize,
}

/// The object table.
pub struct Store {
    shards: Vec<RwLock<HashMap<HashBinary, Arc<Object>>>>,
    max_body: usize,
    /// Bytes held by bodies being fetched, over all fills.
    filling: AtomicUsize,
    /// Most bytes fills may hold at once: past it, a fill stops (its response goes on).
    fill_budget: usize,
}

impl Store {
    /// An empty store of bodies up to `max_body` bytes, whose fills in flight hold at most
    /// `fill_budget` bytes together (so many concurrent misses for large objects cannot
    /// hold `max_connections` times `max_body`).
    pub fn new(max_body: usize, fill_budget: usize) -> Self {
        Store {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            max_body,
            filling: AtomicUsize::new(0),
            fill_budget,
        }
    }

    /// Take `bytes` of the fill budget; false when they do not fit.
    fn reserve(&self, bytes: usize) -> bool {
        self.filling
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|n| *n <= self.fill_budget)
            })
            .is_ok()
    }

    fn shard(&self, hash: &HashBinary) -> &RwLock<HashMap<HashBinary, Arc<Object>>> {
        &self.shards[hash[0] as usize % SHARDS]
    }

    fn get(&self, hash: &HashBinary) -> Option<Arc<Object>> {
        self.shard(hash).read().ok()?.get(hash).cloned()
    }

    fn insert(&self, hash: HashBinary, object: Object) {
        if let Ok(mut shard) = self.shard(&hash).write() {
            shard.insert(hash, Arc::new(object));
        }
    }

    fn remove(&self, hash: &HashBinary) -> bool {
        self.shard(hash)
            .write()
            .map(|mut s| s.remove(hash).is_some())
            .unwrap_or(false)
    }

    /// Remove every object whose origin `select` accepts; returns the removed objects' keys
    /// (for the eviction manager).
    pub fn remove_where(&self, select: impl Fn(&Origin) -> bool) -> Vec<CompactCacheKey> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            if let Ok(mut s) = shard.write() {
                s.retain(|_, object| {
                    let hit = object.origin.as_ref().is_some_and(&select);
                    if hit {
                        removed.push(object.key.clone());
                    }
                    !hit
                });
            }
        }
        removed
    }
}

/// Reads one stored body, whole or a byte range of it.
struct Hit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
    weight: usize,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        let end = end.unwrap_or(len).min(len);
        if start > end {
            return Error::e_explain(ErrorType::InternalError, "cache seek past the body");
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.weight
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A fill's share of the store's fill budget, given back when the fill ends, stored or not.
struct Reservation {
    store: &'static Store,
    bytes: usize,
}

impl Reservation {
    /// Grow the share to `total` bytes; false when the budget has no room.
    fn grow_to(&mut self, total: usize) -> bool {
        let more = total.saturating_sub(self.bytes);
        if more == 0 || self.store.reserve(more) {
            self.bytes = self.bytes.max(total);
            return true;
        }
        false
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.store.filling.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Collects a response body while it is proxied; stores it when the body is complete.
struct Fill {
    store: &'static Store,
    hash: HashBinary,
    meta: StoredMeta,
    origin: Option<Origin>,
    key: CompactCacheKey,
    body: BytesMut,
    reservation: Reservation,
}

#[async_trait]
impl HandleMiss for Fill {
    // Pingora finishes a fill only once the whole body arrived (a response cut by the backend
    // drops its fill unfinished), so `eof` needs no tracking here.
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        let total = self.body.len() + data.len();
        if total > self.store.max_body {
            // Pingora stops storing and goes on with the response.
            return Error::e_explain(
                ErrorType::InternalError,
                "response outgrew cache.max_object_size",
            );
        }
        if !self.reservation.grow_to(total) {
            return Error::e_explain(
                ErrorType::InternalError,
                "bodies being stored already hold cache.max_size",
            );
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let fill = *self;
        let mut meta = fill.meta;
        // The whole body is here, so its length is known even when the backend sent it
        // chunked: a hit states it (and a Range request on it gets its 206).
        let status = meta.header.status;
        if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED {
            meta.header.remove_header(&http::header::TRANSFER_ENCODING);
            let _ = meta
                .header
                .insert_header(http::header::CONTENT_LENGTH, fill.body.len());
        }
        let weight = fill.body.len() + meta.weight() + OBJECT_OVERHEAD;
        let object = Object {
            meta: RwLock::new(meta),
            body: fill.body.freeze(),
            origin: fill.origin,
            key: fill.key,
            weight,
        };
        fill.store.insert(fill.hash, object);
        // The body now counts against max_size, through the eviction manager.
        drop(fill.reservation);
        Ok(MissFinishType::Created(weight))
    }
}

#[async_trait]
impl Storage for Store {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(object) = self.get(&key.combined_bin()) else {
            return Ok(None);
        };
        let meta = match object.meta.read() {
            Ok(m) => m.to_meta(),
            Err(_) => return Ok(None),
        };
        let hit = Hit {
            body: object.body.clone(),
            start: 0,
            end: object.body.len(),
            done: false,
            weight: object.weight,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let stored = StoredMeta::of(meta);
        // A body of known length is collected in one allocation.
        let capacity = stored
            .header
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .filter(|n| *n <= self.max_body)
            .unwrap_or(0);
        let no_body = stored.header.status == StatusCode::NO_CONTENT;
        let mut reservation = Reservation {
            store: self,
            bytes: 0,
        };
        let capacity = if !no_body && reservation.grow_to(capacity) {
            capacity
        } else {
            0
        };
        Ok(Box::new(Fill {
            reservation,
            store: self,
            hash: key.combined_bin(),
            meta: stored,
            origin: key.extensions.get::<Origin>().cloned(),
            key: key.to_compact(),
            body: BytesMut::with_capacity(capacity),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            // Objects here carry no entry ids; an identified target is not one of them.
            return Ok(PurgeOutcome::NotFound);
        }
        if self.remove(&target.key().combined_bin()) {
            Ok(PurgeOutcome::Purged(None))
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let Some(object) = self.get(&key.combined_bin()) else {
            return Ok(false);
        };
        if let Ok(mut m) = object.meta.write() {
            *m = StoredMeta::of(meta);
        }
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
