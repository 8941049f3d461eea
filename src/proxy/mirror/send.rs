//! Sending mirrored copies: each in its own task, through Pingora's HTTP client connector,
//! to one backend of the mirror group; the answer is read and discarded.
//!
//! Bounds, so that copies never cost the client anything:
//!
//! - at most [`MAX_IN_FLIGHT`] copies are in flight in the process; a copy above that is not
//!   sent (`dropped`);
//! - a copy has a total time of the group's `connect` plus `read` timeouts, at most
//!   [`MAX_TOTAL_TIME`] (`timeout`); each connect, read and write also has the group's own
//!   timeout, as for proxied requests;
//! - the backend is chosen without waiting: a group whose backends are all at
//!   `max_connections` drops the copy (`dropped`), one with no backend that may take
//!   traffic fails it (`error`).
//!
//! A copy counts in its backend's in-flight requests (so `least_connections` sees the load)
//! but its result never feeds the backend's circuit breaker or health.

use super::{copy, MirrorResult, RouteMirror};
use crate::balancer::stats::InFlight;
use crate::balancer::{Pick, UpstreamGroup};
use crate::config::model::Timeouts;
use crate::limits::slots::{BackendSlots, Slot};
use crate::proxy::state::ProxyState;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::ErrorType;
use pingora_http::RequestHeader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Most mirrored copies in flight at once in one process.
pub const MAX_IN_FLIGHT: usize = 256;

/// Longest total time of one copy, whatever the group's timeouts.
pub const MAX_TOTAL_TIME: Duration = Duration::from_secs(30);

/// Informational (1xx) answers skipped before the final one, at most.
const MAX_INTERIM: usize = 8;

/// Copies in flight now.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// A place among the [`MAX_IN_FLIGHT`] copies; given back when dropped.
struct Ticket;

impl Ticket {
    /// A place, if one is free.
    fn take() -> Option<Ticket> {
        IN_FLIGHT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| Ticket)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies in flight now in this process.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// The connector all copies share (its own connection pools, apart from the proxy's).
fn connector() -> &'static Connector {
    static C: OnceLock<Connector> = OnceLock::new();
    C.get_or_init(|| Connector::new(None))
}

/// The total time a copy to a group with these timeouts may take.
pub fn total_time(t: &Timeouts) -> Duration {
    (t.connect + t.read).min(MAX_TOTAL_TIME)
}

/// What a copy holds while in flight: its place, its backend's in-flight count and slot.
struct Held {
    _ticket: Ticket,
    _in_flight: InFlight,
    _slot: Option<Slot>,
}

/// Send a copy (`head` and its whole `body`) of a request of `route` in a task of its own;
/// returns at once. The copy's result is counted when it ends.
pub fn dispatch(
    state: &ProxyState,
    route: &Arc<RouteMirror>,
    head: Box<RequestHeader>,
    body: Bytes,
) {
    let Some(ticket) = Ticket::take() else {
        route.count(MirrorResult::Dropped);
        return;
    };
    let g = route.config.upstream;
    let group = Arc::clone(&state.groups[g]);
    let (peer, in_flight, slot) = match choose(&group, state.slots[g].as_ref()) {
        Ok(chosen) => chosen,
        Err(result) => {
            route.count(result);
            return;
        }
    };
    let held = Held {
        _ticket: ticket,
        _in_flight: in_flight,
        _slot: slot,
    };
    let route = Arc::clone(route);
    let total = total_time(&group.config.timeouts);
    tokio::spawn(async move {
        let result = match tokio::time::timeout(total, exchange(&peer, head, body)).await {
            Err(_) => MirrorResult::Timeout,
            Ok(Ok(())) => MirrorResult::Ok,
            Ok(Err(e)) if is_timeout(e.etype()) => MirrorResult::Timeout,
            Ok(Err(e)) => {
                log::debug!("mirror copy to {} failed: {e}", group.config.name);
                MirrorResult::Error
            }
        };
        drop(held);
        route.count(result);
    });
}

/// A backend for a copy, chosen as for a first attempt without a hash key or sticky cookie
/// (keyed groups use their fallback), with its peer, its in-flight count and, in groups with
/// `max_connections`, a slot taken without waiting.
fn choose(
    group: &UpstreamGroup,
    slots: Option<&Arc<BackendSlots>>,
) -> Result<(HttpPeer, InFlight, Option<Slot>), MirrorResult> {
    let full = |i: usize| slots.is_some_and(|s| s.is_full(i));
    group.with_members(|m| {
        let Some(c) = m.select(group.stats, Pick::default(), full) else {
            let ready = m.iter().any(|b| group.is_ready(b.slot()));
            return Err(match (slots.is_some(), ready) {
                (true, true) => MirrorResult::Dropped,
                _ => MirrorResult::Error,
            });
        };
        // Counted at once: whatever happens next, dropping it gives back what selection
        // admitted (a half-open trial included).
        let in_flight = InFlight::start(group.stats, c.index, c.trial);
        let slot = match slots {
            None => None,
            Some(s) => Some(s.try_acquire(c.index).ok_or(MirrorResult::Dropped)?),
        };
        let peer = m.get(c.index).ok_or(MirrorResult::Error)?.peer.clone();
        Ok((peer, in_flight, slot))
    })
}

/// Whether an error is one of Pingora's timeouts.
fn is_timeout(e: &ErrorType) -> bool {
    matches!(
        e,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// Send the copy on a pooled or new connection, read the answer to its end and give the
/// connection back for reuse.
async fn exchange(
    peer: &HttpPeer,
    mut head: Box<RequestHeader>,
    body: Bytes,
) -> pingora_core::Result<()> {
    let connector = connector();
    let (mut session, _reused) = connector.get_http_session(peer).await?;
    let h2 = matches!(session, HttpSession::H2(_));
    copy::frame(&mut head, body.len(), h2, peer.is_tls());
    session.set_read_timeout(peer.options.read_timeout);
    session.set_write_timeout(peer.options.write_timeout);
    session.write_request_header(head).await?;
    if !body.is_empty() {
        session.write_request_body(body, true).await?;
    }
    session.finish_request_body().await?;
    session.read_response_header().await?;
    // HTTP/1 shows interim answers (`100 Continue`, `103 Early Hints`) one by one.
    for _ in 0..MAX_INTERIM {
        let interim = session
            .response_header()
            .is_some_and(|r| r.status.is_informational());
        if !interim || h2 {
            break;
        }
        session.read_response_header().await?;
    }
    while session.read_response_body().await?.is_some() {}
    let idle = peer.options.idle_timeout;
    connector.release_http_session(session, peer, idle).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_time_is_connect_plus_read_capped() {
        let mut t = Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(2),
            ..Timeouts::default()
        };
        assert_eq!(total_time(&t), Duration::from_secs(3));
        t.read = Duration::from_secs(600);
        assert_eq!(total_time(&t), MAX_TOTAL_TIME);
    }

    #[test]
    fn tickets_stop_at_the_in_flight_bound_and_come_back() {
        let before = in_flight();
        let held: Vec<Ticket> = std::iter::from_fn(Ticket::take)
            .take(MAX_IN_FLIGHT + 1)
            .collect();
        assert_eq!(held.len(), MAX_IN_FLIGHT - before);
        assert!(Ticket::take().is_none());
        drop(held);
        assert!(Ticket::take().is_some());
    }
}
