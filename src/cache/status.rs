//! What the cache did for a response: the `X-Cache-Status` header, the access log's `cache=`
//! field and the `status` label of `fulcrum_cache_requests_total`.

use pingora_cache::{CachePhase, HttpCache};

/// The response header naming the cache's part in a response.
pub const HEADER: &str = "X-Cache-Status";

/// What the cache did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// A fresh stored copy answered.
    Hit,
    /// Nothing usable was stored: the backend answered (stored or not).
    Miss,
    /// A stale copy was found and the backend sent a new one.
    Expired,
    /// A stale copy answered: while one request refreshes it (`stale_while_revalidate`), or
    /// because the backend failed (`stale_if_error`).
    Stale,
    /// A stale copy was confirmed by the backend (304) and answered.
    Revalidated,
    /// The request may not use the cache (method, credentials, upgrade).
    Bypass,
}

impl CacheStatus {
    /// The header value: `HIT`, `MISS`, ...
    pub fn as_header(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// The metric label: `hit`, `miss`, ...
    pub fn as_label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Expired => "expired",
            CacheStatus::Stale => "stale",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Bypass => "bypass",
        }
    }

    /// Every status, in label order.
    pub const ALL: [CacheStatus; 6] = [
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::Expired,
        CacheStatus::Stale,
        CacheStatus::Revalidated,
        CacheStatus::Bypass,
    ];

    /// The index of this status in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the cache did for a request whose cache state is `cache`, on a caching route;
/// `bypassed` when fulcrum kept the request away from the cache.
pub fn of(cache: &HttpCache, bypassed: bool) -> CacheStatus {
    if bypassed {
        return CacheStatus::Bypass;
    }
    from_phase(cache.phase())
}

/// The status a cache phase shows as. A key already known to be uncacheable skips the
/// lookup (Pingora's `Bypass` phase); it shows as a `MISS`, like any other answer that was
/// not stored.
pub fn from_phase(phase: CachePhase) -> CacheStatus {
    match phase {
        CachePhase::Hit => CacheStatus::Hit,
        CachePhase::Stale | CachePhase::StaleUpdating => CacheStatus::Stale,
        CachePhase::Expired => CacheStatus::Expired,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheStatus::Revalidated,
        CachePhase::Miss
        | CachePhase::Bypass
        | CachePhase::Disabled(_)
        | CachePhase::Uninit
        | CachePhase::CacheKey => CacheStatus::Miss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::NoCacheReason;

    #[test]
    fn phases_map_to_the_documented_statuses() {
        assert_eq!(from_phase(CachePhase::Hit), CacheStatus::Hit);
        assert_eq!(from_phase(CachePhase::StaleUpdating), CacheStatus::Stale);
        assert_eq!(from_phase(CachePhase::Expired), CacheStatus::Expired);
        assert_eq!(
            from_phase(CachePhase::RevalidatedNoCache(
                NoCacheReason::OriginNotCache
            )),
            CacheStatus::Revalidated
        );
        assert_eq!(
            from_phase(CachePhase::Disabled(NoCacheReason::OriginNotCache)),
            CacheStatus::Miss
        );
        for (i, s) in CacheStatus::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(s.as_label().to_ascii_uppercase(), s.as_header());
        }
    }
}
