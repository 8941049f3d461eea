//! Selection: which backend serves the request's next attempt.
//!
//! [`next_attempt`] runs for every attempt (Pingora calls `upstream_peer` again after a
//! retry): it asks the route's group for a backend that may take traffic and has not failed
//! for this request yet, waits for a free slot where the group has `max_connections`, counts
//! the attempt in the request's context and returns the backend's prepared peer.

use super::context::RequestCtx;
use super::state::ProxyState;
use super::{hash_key, respond};
use crate::balancer::stats::InFlight;
use crate::balancer::{Chosen, Members, Pick, UpstreamGroup};
use crate::config::model::{Algorithm, HashKey};
use crate::limits::slots::{BackendSlots, QueueError, Slot};
use crate::metrics::rejections::{self, Reason};
use crate::peer;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Choose the backend of the request's next attempt, record the attempt in `ctx` (backend,
/// tries, in-flight count, slot) and return the backend's peer; `upgrade` asks for the
/// tunnel's timeouts. Fails with a 503 when no backend may serve, and with
/// [`respond::BACKENDS_BUSY`] when all are at `max_connections` and the queue did not help.
pub async fn next_attempt(
    state: &ProxyState,
    req: &RequestHeader,
    upgrade: bool,
    ctx: &mut RequestCtx,
) -> Result<Box<HttpPeer>> {
    let g = ctx
        .upstream
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "request has no route"))?;
    let group = &state.groups[g];
    let client = ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let key = match group.config.algorithm {
        Algorithm::Consistent => hash_key::extract(&group.config.hash_key, req, client),
        Algorithm::IpHash => hash_key::extract(&HashKey::ClientIp, req, client),
        _ => None,
    };
    if ctx.tries == 0 && group.config.sticky.is_some() {
        ctx.sticky = group.with_members(|m| m.sticky().and_then(|s| s.backend_for(req)));
    }
    let pick = Pick {
        key: key.as_ref().map(|k| k.as_bytes()),
        sticky: ctx.sticky,
    };
    let no_backend = || {
        Error::explain(
            ErrorType::HTTPStatus(503),
            format!("no healthy backend in upstream {}", group.config.name),
        )
    };
    let failed = &ctx.failed;
    let (picked, slot) = match &state.slots[g] {
        None => {
            let m = group.snapshot();
            let chosen = m.select(group.stats, pick, |i| failed.contains(&i));
            let picked = chosen.and_then(|c| Picked::of(&m, c));
            (picked.ok_or_else(no_backend)?, None)
        }
        Some(slots) => {
            let (picked, slot) =
                select_with_slot(group, slots, pick, failed)
                    .await
                    .map_err(|e| match e {
                        SlotError::NoBackend => no_backend(),
                        SlotError::Queue(q) => Error::explain(
                            respond::BACKENDS_BUSY,
                            format!(
                                "upstream {}: every backend is at max_connections ({})",
                                group.config.name,
                                match q {
                                    QueueError::Full => "queue full",
                                    QueueError::TimedOut => "queue timeout",
                                }
                            ),
                        ),
                    })?;
            (picked, Some(slot))
        }
    };
    let i = picked.chosen.index;
    ctx.backend = Some(i);
    ctx.backend_addr = Some(picked.addr);
    ctx.tries += 1;
    ctx.attempt_started = Some(Instant::now());
    ctx.response_started = false;
    ctx.upstream_status = None;
    // Counted in the same step as the snapshot was read (no await since): the backend's slot
    // is the request's while this count lasts, whatever the group does meanwhile. Replacing a
    // previous attempt's guard un-counts that attempt (and frees its slot).
    ctx.in_flight = Some(InFlight::start(group.stats, i, picked.chosen.trial));
    ctx.slot = slot;
    let mut peer = picked.peer;
    if upgrade {
        peer::for_tunnel(&mut peer, &group.config.timeouts);
    } else if ctx.grpc {
        peer::for_stream(&mut peer, &group.config.timeouts);
    }
    Ok(peer)
}

/// The backend an attempt chose, taken out of the snapshot it was chosen from.
struct Picked {
    chosen: Chosen,
    peer: Box<HttpPeer>,
    addr: SocketAddr,
}

impl Picked {
    fn of(members: &Members, chosen: Chosen) -> Option<Picked> {
        let m = members.get(chosen.index)?;
        Some(Picked {
            chosen,
            peer: Box::new(m.peer.clone()),
            addr: m.backend.addr,
        })
    }
}

/// Why no slot could be had.
enum SlotError {
    /// No backend may serve (all unhealthy, ejected or already failed).
    NoBackend,
    /// Backends could serve but all are full, and the queue did not help.
    Queue(QueueError),
}

/// Select a backend with a free slot, waiting in the group's queue while all are full. Every
/// try reads the group's current backends.
async fn select_with_slot(
    group: &UpstreamGroup,
    slots: &Arc<BackendSlots>,
    pick: Pick<'_>,
    failed: &[usize],
) -> std::result::Result<(Picked, Slot), SlotError> {
    let mut ticket = None;
    // When the request joined the queue: its wait is recorded however it ends.
    let mut queued: Option<Instant> = None;
    let waited = |since: Option<Instant>| {
        if let Some(t) = since {
            rejections::queue_waited(&group.config.name, t.elapsed());
        }
    };
    loop {
        // While others wait, a newcomer queues behind them rather than taking a freed slot.
        if ticket.is_some() || slots.waiting() == 0 {
            let got = group.with_members(|m| {
                let c = m.select(group.stats, pick, |i| {
                    failed.contains(&i) || slots.is_full(i)
                })?;
                match slots.try_acquire(c.index) {
                    Some(slot) => Some((Picked::of(m, c)?, slot)),
                    // Lost a race for the last slot: give back what selection admitted.
                    None => {
                        drop(InFlight::start(group.stats, c.index, c.trial));
                        None
                    }
                }
            });
            if let Some(got) = got {
                waited(queued);
                return Ok(got);
            }
        }
        // Nothing free: is anything able to serve at all?
        let able = group.with_members(|m| {
            m.iter()
                .any(|b| !failed.contains(&b.slot()) && group.is_ready(b.slot()))
        });
        if !able {
            waited(queued);
            return Err(SlotError::NoBackend);
        }
        if ticket.is_none() {
            ticket = Some(slots.enqueue().map_err(|e| {
                rejections::rejected(Reason::QueueFull);
                SlotError::Queue(e)
            })?);
            queued = Some(Instant::now());
        }
        if let Some(t) = &ticket {
            if let Err(e) = t.wait_for_release().await {
                waited(queued);
                rejections::rejected(Reason::QueueTimeout);
                return Err(SlotError::Queue(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state whose one route goes to `app`, an upstream with `backends` and `extra` keys.
    fn state(backends: &[&str], extra: &str) -> ProxyState {
        let list: String = backends
            .iter()
            .map(|b| format!("      - addr: {b}\n"))
            .collect();
        let yaml = format!(
            "listeners:\n  - addr: 127.0.0.1:8080\n\
             upstreams:\n  app:\n{extra}    backends:\n{list}\
             routes:\n  - {{path: /, upstream: app}}\n"
        );
        let spec = crate::config::parse_yaml(&yaml).expect("parses");
        ProxyState::new(&crate::config::validate::validate(&spec).expect("valid"))
    }

    fn routed() -> RequestCtx {
        RequestCtx {
            route: Some(0),
            upstream: Some(0),
            ..RequestCtx::default()
        }
    }

    fn get() -> RequestHeader {
        RequestHeader::build("GET", b"/", None).unwrap()
    }

    fn port(peer: &HttpPeer) -> u16 {
        peer._address.as_inet().expect("inet").port()
    }

    #[tokio::test]
    async fn an_attempt_is_counted_in_the_context() {
        let s = state(&["127.0.0.1:3001"], "");
        let mut ctx = routed();
        let peer = next_attempt(&s, &get(), false, &mut ctx).await.unwrap();
        assert_eq!(port(&peer), 3001);
        assert_eq!((ctx.backend, ctx.tries), (Some(0), 1));
        assert!(ctx.in_flight.is_some() && ctx.attempt_started.is_some());
        assert_eq!(s.groups[0].stats.in_flight(0), 1);
        ctx.in_flight = None;
        assert_eq!(s.groups[0].stats.in_flight(0), 0);
    }

    #[tokio::test]
    async fn a_retry_skips_the_backends_that_failed() {
        let s = state(&["127.0.0.1:3001", "127.0.0.1:3002"], "");
        for first in [0, 1] {
            let mut ctx = routed();
            ctx.failed.push(first);
            ctx.tries = 1;
            let peer = next_attempt(&s, &get(), false, &mut ctx).await.unwrap();
            assert_eq!(ctx.backend, Some(1 - first));
            assert_eq!(port(&peer), 3002 - first as u16);
            assert_eq!(ctx.tries, 2);
        }
        let mut ctx = routed();
        ctx.failed = vec![0, 1];
        let e = next_attempt(&s, &get(), false, &mut ctx).await.unwrap_err();
        assert_eq!(*e.etype(), ErrorType::HTTPStatus(503));
        assert!(
            e.to_string().contains("no healthy backend in upstream app"),
            "{e}"
        );
        assert_eq!(ctx.tries, 0);
    }

    #[tokio::test]
    async fn a_request_without_a_route_has_no_backend() {
        let s = state(&["127.0.0.1:3001"], "");
        let mut ctx = RequestCtx::default();
        let e = next_attempt(&s, &get(), false, &mut ctx).await.unwrap_err();
        assert_eq!(*e.etype(), ErrorType::InternalError);
    }

    #[tokio::test]
    async fn a_full_backend_without_a_queue_is_busy_and_its_slot_comes_back() {
        let s = state(
            &["127.0.0.1:3001"],
            "    max_connections: 1\n    queue: {size: 0}\n",
        );
        let mut first = routed();
        next_attempt(&s, &get(), false, &mut first).await.unwrap();
        assert!(first.slot.is_some());
        let mut second = routed();
        let e = next_attempt(&s, &get(), false, &mut second)
            .await
            .unwrap_err();
        assert_eq!(*e.etype(), respond::BACKENDS_BUSY);
        assert!(e.to_string().contains("(queue full)"), "{e}");
        first.slot = None;
        first.in_flight = None;
        next_attempt(&s, &get(), false, &mut second).await.unwrap();
        assert_eq!(second.backend, Some(0));
    }
}
