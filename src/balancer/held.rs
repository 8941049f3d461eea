//! Each thread's own reference to the current snapshot of each group ([`borrow`]), so that a
//! request reads a group's backends without writing anything another thread also writes.
//!
//! Taking an `Arc` per request would write the snapshot's reference count twice per request
//! from every worker thread: a cache line that moves between cores on every request. Instead
//! each thread keeps one `Arc` per group (in `KEEP`) and, for the fast path, a plain pointer to
//! it with the generation it was published as (in `ENTRIES`, which needs no destructor and so
//! costs no lazy-initialization check). A request compares the group's published generation
//! with its thread's entry and borrows the snapshot; only the first request after an update
//! loads the new one.
//!
//! Soundness: an entry's pointer is valid while this thread's `KEEP` holds the `Arc` it came
//! from. `KEEP` is replaced only when no snapshot is borrowed on this thread (`DEPTH` counts
//! the live [`Snapshot`] guards; a borrow taken while another is alive gets an `Arc` of its
//! own when it needs a newer snapshot), a guard is not `Send` (it holds a raw pointer), and
//! dropping `KEEP` at thread exit clears every entry first.

use super::members::Members;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::sync::Arc;

/// Groups (by key) that take the fast path; the others load their snapshot per call.
pub const FAST_GROUPS: usize = 128;

#[derive(Clone, Copy)]
struct Entry {
    generation: u64,
    members: *const Members,
}

const EMPTY: Entry = Entry {
    generation: u64::MAX,
    members: std::ptr::null(),
};

/// The `Arc`s behind the entries; clears the entries when the thread exits.
struct Keep(Vec<Option<Arc<Members>>>);

impl Drop for Keep {
    fn drop(&mut self) {
        // ENTRIES has no destructor: it stays accessible while the thread's others run.
        let _ = ENTRIES.try_with(|e| {
            // SAFETY: only this thread touches its ENTRIES, and nothing borrows them here.
            unsafe { *e.get() = [EMPTY; FAST_GROUPS] }
        });
    }
}

thread_local! {
    static ENTRIES: UnsafeCell<[Entry; FAST_GROUPS]> =
        const { UnsafeCell::new([EMPTY; FAST_GROUPS]) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static KEEP: RefCell<Keep> = const { RefCell::new(Keep(Vec::new())) };
}

/// A borrowed snapshot: this thread's own reference (counted in `DEPTH` while it lives) or,
/// on the slow path, an `Arc` of its own. Not `Send`: it lives within one synchronous step.
pub struct Snapshot {
    members: *const Members,
    owned: Option<Arc<Members>>,
}

impl std::ops::Deref for Snapshot {
    type Target = Members;

    #[inline(always)]
    fn deref(&self) -> &Members {
        // SAFETY: either `owned` holds the snapshot, or it came from an entry whose `Arc` this
        // thread's KEEP holds, and KEEP cannot change while DEPTH counts this borrow.
        unsafe { &*self.members }
    }
}

impl Drop for Snapshot {
    #[inline(always)]
    fn drop(&mut self) {
        if self.owned.is_none() {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
}

/// The snapshot that group `key` published as `generation`: this thread's own reference when
/// it has that generation, otherwise `load()` (the group's current snapshot, that generation
/// or a newer one), kept for the next calls.
#[inline(always)]
pub fn borrow(key: usize, generation: u64, load: impl FnOnce() -> Arc<Members>) -> Snapshot {
    let entry = if key < FAST_GROUPS {
        // SAFETY: only this thread touches its ENTRIES; the copy is read, nothing borrowed.
        ENTRIES.with(|e| unsafe { (*e.get())[key] })
    } else {
        EMPTY
    };
    let members = if entry.generation == generation {
        entry.members
    } else {
        match refresh(key, generation, load) {
            Ok(members) => members,
            Err(loaded) => {
                return Snapshot {
                    members: Arc::as_ptr(&loaded),
                    owned: Some(loaded),
                };
            }
        }
    };
    DEPTH.with(|d| d.set(d.get() + 1));
    Snapshot {
        members,
        owned: None,
    }
}

/// Load the snapshot and make it this thread's entry for `key`; the loaded `Arc` itself
/// (`Err`) when a snapshot is borrowed on this thread right now.
#[cold]
fn refresh(
    key: usize,
    generation: u64,
    load: impl FnOnce() -> Arc<Members>,
) -> Result<*const Members, Arc<Members>> {
    let loaded = load();
    if key >= FAST_GROUPS || DEPTH.with(|d| d.get()) != 0 {
        return Err(loaded);
    }
    let members = Arc::as_ptr(&loaded);
    let kept = KEEP.try_with(|k| {
        let mut k = k.borrow_mut();
        if k.0.len() <= key {
            k.0.resize(key + 1, None);
        }
        // Drops the thread's previous snapshot of the group; nothing borrows it (DEPTH is 0).
        k.0[key] = Some(loaded.clone());
    });
    if kept.is_err() {
        // The thread is exiting.
        return Err(loaded);
    }
    // SAFETY: only this thread touches its ENTRIES, and nothing borrows them here.
    ENTRIES.with(|e| unsafe {
        (*e.get())[key] = Entry {
            generation,
            members,
        }
    });
    Ok(members)
}
