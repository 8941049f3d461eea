//! Per-backend concurrency limits (`max_connections`) and the bounded queue in front of them,
//! like HAProxy's `maxconn`/`maxqueue`/`timeout queue`.
//!
//! Each backend has a number of slots; a request holds one from the moment its backend is
//! chosen until the attempt ends ([`Slot`] is released on drop). When every backend that may
//! serve is full, the request waits in the group's queue (at most `queue_size` waiting, each
//! at most `queue_timeout`) and is answered 503 when the queue is full or its wait runs out.
//! Waiters are woken one per released slot, in arrival order; while anyone waits, new
//! requests queue behind them instead of taking a freed slot first.

use crate::config::model::BackendLimit;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The slots of one upstream group's backends, and its queue.
#[derive(Debug)]
pub struct BackendSlots {
    limit: BackendLimit,
    used: Box<[AtomicU32]>,
    waiting: AtomicUsize,
    freed: Notify,
}

/// A slot on one backend, released when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<BackendSlots>,
    index: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.used[self.index].fetch_sub(1, Ordering::AcqRel);
        self.slots.freed.notify_one();
    }
}

/// Why a request could not wait for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// `queue_size` requests are already waiting.
    Full,
    /// The wait reached `queue_timeout`.
    TimedOut,
}

/// A place in the queue; leaving it (drop) makes room for another waiter.
#[derive(Debug)]
pub struct QueueTicket<'a> {
    slots: &'a BackendSlots,
    deadline: Instant,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.slots.waiting.fetch_sub(1, Ordering::AcqRel);
        // Pass on a wake-up this waiter may have consumed without using it.
        self.slots.freed.notify_one();
    }
}

impl BackendSlots {
    /// Slots for `backends` backends.
    pub fn new(limit: BackendLimit, backends: usize) -> Arc<Self> {
        Arc::new(BackendSlots {
            limit,
            used: (0..backends).map(|_| AtomicU32::new(0)).collect(),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// True when the backend has no free slot.
    pub fn is_full(&self, index: usize) -> bool {
        self.used[index].load(Ordering::Acquire) >= self.limit.max_connections
    }

    /// Slots in use on a backend.
    pub fn in_use(&self, index: usize) -> u32 {
        self.used[index].load(Ordering::Acquire)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Take a slot on the backend, unless it is full.
    pub fn try_acquire(self: &Arc<Self>, index: usize) -> Option<Slot> {
        let max = self.limit.max_connections;
        self.used[index]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                slots: Arc::clone(self),
                index,
            })
    }

    /// Join the queue, unless it is full.
    pub fn enqueue(&self) -> Result<QueueTicket<'_>, QueueError> {
        let size = self.limit.queue_size;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < size).then_some(n + 1)
            })
            .map_err(|_| QueueError::Full)?;
        Ok(QueueTicket {
            slots: self,
            deadline: Instant::now() + self.limit.queue_timeout,
        })
    }
}

impl QueueTicket<'_> {
    /// Wait until a slot is released somewhere in the group (then the caller selects again),
    /// or the ticket's deadline passes.
    pub async fn wait_for_release(&self) -> Result<(), QueueError> {
        tokio::time::timeout_at(self.deadline, self.slots.freed.notified())
            .await
            .map_err(|_| QueueError::TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slots(max: u32, queue: usize, timeout_ms: u64) -> Arc<BackendSlots> {
        BackendSlots::new(
            BackendLimit {
                max_connections: max,
                queue_size: queue,
                queue_timeout: Duration::from_millis(timeout_ms),
            },
            2,
        )
    }

    #[test]
    fn slots_are_counted_and_released() {
        let s = slots(2, 0, 10);
        let a = s.try_acquire(0).unwrap();
        let _b = s.try_acquire(0).unwrap();
        assert!(s.is_full(0) && s.try_acquire(0).is_none());
        assert!(!s.is_full(1));
        drop(a);
        assert_eq!(s.in_use(0), 1);
        assert!(s.try_acquire(0).is_some());
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_times_out() {
        let s = slots(1, 1, 50);
        let _held = s.try_acquire(0).unwrap();
        let ticket = s.enqueue().unwrap();
        assert_eq!(s.enqueue().unwrap_err(), QueueError::Full);
        assert_eq!(ticket.wait_for_release().await, Err(QueueError::TimedOut));
        drop(ticket);
        assert_eq!(s.waiting(), 0);
    }

    #[tokio::test]
    async fn a_release_wakes_a_waiter() {
        let s = slots(1, 4, 5_000);
        let held = s.try_acquire(0).unwrap();
        let s2 = Arc::clone(&s);
        let waiter = tokio::spawn(async move {
            let ticket = s2.enqueue().unwrap();
            ticket.wait_for_release().await.unwrap();
            s2.try_acquire(0).is_some()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
