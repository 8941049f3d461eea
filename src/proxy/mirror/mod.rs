//! Request mirroring (`mirror:` on a route): a copy of a share of the route's requests goes to
//! another upstream group, and whatever happens to it never reaches the client.
//!
//! Per request, in the proxy's hooks:
//!
//! 1. `upstream_request_filter` ([`on_upstream_request`]), on the first attempt: the route's
//!    [`Sampler`] decides whether this request is copied; a declared `Content-Length` above
//!    the mirror's `max_body_bytes` ends it there (`too_large`). The copy's head is taken
//!    from the request as it goes upstream (path and query after `strip_prefix` / `rewrite`,
//!    forwarding headers, request id, the route's header rules; see [`copy`]). A request
//!    without a body is sent at once.
//! 2. `request_body_filter` ([`on_body`]): body pieces are copied into a [`BodyBuffer`]
//!    bounded by `max_body_bytes` (a body that grows past it is not mirrored: `too_large`);
//!    when the client's body is complete, the copy is sent.
//!
//! Sending ([`send`]) happens in a spawned task with its own bounds (in-flight cap, total
//! timeout); the client's request never waits for it.

pub mod copy;
pub mod send;

use super::context::RequestCtx;
use super::state::ProxyState;
use crate::config::model::{Config, Mirror};
use bytes::{Bytes, BytesMut};
use pingora_http::RequestHeader;
use pingora_prometheus::prometheus::IntCounter;
use pingora_proxy::Session;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a mirrored copy ended: the `result` label of `fulcrum_mirror_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorResult {
    /// The mirror answered (any status); the answer was read and discarded.
    Ok,
    /// Connecting, writing or reading failed, or no backend of the group could take it.
    Error,
    /// The copy took longer than its total time.
    Timeout,
    /// The request body was larger than `max_body_bytes`: no copy was sent.
    TooLarge,
    /// Too many copies were in flight (or the group's backends were all at
    /// `max_connections`): no copy was sent.
    Dropped,
}

impl MirrorResult {
    /// Every result, in label order.
    pub const ALL: [MirrorResult; 5] = [
        MirrorResult::Ok,
        MirrorResult::Error,
        MirrorResult::Timeout,
        MirrorResult::TooLarge,
        MirrorResult::Dropped,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            MirrorResult::Ok => "ok",
            MirrorResult::Error => "error",
            MirrorResult::Timeout => "timeout",
            MirrorResult::TooLarge => "too_large",
            MirrorResult::Dropped => "dropped",
        }
    }
}

/// Which of a route's requests are copied: request `n` (counted from 0 in arrival order) is
/// copied when `floor((n + 1) * p / 100) > floor(n * p / 100)`, so `percent: 10` copies
/// exactly one request in ten, evenly spread.
#[derive(Debug)]
pub struct Sampler {
    percent: f64,
    next: AtomicU64,
}

impl Sampler {
    /// A sampler copying `percent` (above 0, at most 100) of the requests.
    pub fn new(percent: f64) -> Self {
        Sampler {
            percent,
            next: AtomicU64::new(0),
        }
    }

    /// Count one request; whether it is copied.
    pub fn take(&self) -> bool {
        selected(self.next.fetch_add(1, Ordering::Relaxed), self.percent)
    }
}

/// Whether request `n` is copied at `percent`.
fn selected(n: u64, percent: f64) -> bool {
    let share = |k: u64| (k as f64 * percent / 100.0).floor();
    share(n + 1) > share(n)
}

/// A request body being copied, held to at most `max` bytes.
#[derive(Debug)]
pub struct BodyBuffer {
    buf: BytesMut,
    max: u64,
}

/// The body grew past the mirror's `max_body_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl BodyBuffer {
    /// An empty buffer for at most `max` bytes.
    pub fn new(max: u64) -> Self {
        BodyBuffer {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Append a piece; fails (keeping nothing more) when the body would exceed the bound.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), TooLarge> {
        if self.buf.len() as u64 + piece.len() as u64 > self.max {
            return Err(TooLarge);
        }
        self.buf.extend_from_slice(piece);
        Ok(())
    }

    /// Forget what was copied (an attempt starts over with Pingora's buffered body).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The body copied.
    pub fn take(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Where a request stands with its mirror copy (part of [`RequestCtx`]).
#[derive(Debug, Default)]
pub enum Capture {
    /// Not decided yet (no attempt reached a backend).
    #[default]
    Undecided,
    /// Not copied: the route has no mirror, the sampler skipped it, it is an upgrade, or its
    /// body is too large.
    Off,
    /// Copied: the head is kept, the body is being collected.
    Collecting {
        /// The copy's head.
        head: Box<RequestHeader>,
        /// The body so far.
        body: BodyBuffer,
    },
    /// The copy was handed to the sender.
    Sent,
}

/// A route's mirror, as the proxy uses it: the setting, its sampler and its counters.
pub struct RouteMirror {
    /// The route's `mirror:` setting.
    pub config: Mirror,
    /// Which requests are copied.
    pub sampler: Sampler,
    /// `fulcrum_mirror_requests_total` of the route and mirror group, by [`MirrorResult`].
    counters: [IntCounter; 5],
}

impl RouteMirror {
    /// One entry per route of `config`: its mirror, if it has one.
    pub fn for_routes(config: &Config) -> Vec<Option<Arc<RouteMirror>>> {
        config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let m = r.mirror.as_ref()?;
                let route = crate::metrics::route_label(config, i);
                let upstream = &config.upstreams[m.upstream].name;
                let counters = MirrorResult::ALL
                    .map(|res| crate::metrics::mirror_counter(&route, upstream, res.label()));
                Some(Arc::new(RouteMirror {
                    config: m.clone(),
                    sampler: Sampler::new(m.percent),
                    counters,
                }))
            })
            .collect()
    }

    /// Count a copy that ended with `result`.
    pub fn count(&self, result: MirrorResult) {
        let i = MirrorResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.counters[i].inc();
    }
}

/// In `upstream_request_filter`, after the head was rewritten: on the request's first
/// attempt decide whether it is copied and keep the copy's head (sending it at once when the
/// request has no body); on a later attempt start the body over, as Pingora sends its
/// buffered body again.
pub fn on_upstream_request(
    state: &ProxyState,
    session: &mut Session,
    upstream_request: &RequestHeader,
    ctx: &mut RequestCtx,
) {
    match &mut ctx.mirror {
        Capture::Undecided => {}
        Capture::Collecting { body, .. } => {
            body.clear();
            return;
        }
        Capture::Off | Capture::Sent => return,
    }
    ctx.mirror = Capture::Off;
    let Some(route) = ctx.route.and_then(|r| state.mirrors.get(r)?.clone()) else {
        return;
    };
    if session.is_upgrade_req() || !route.sampler.take() {
        return;
    }
    let max = route.config.max_body_bytes;
    if super::content_length::of(upstream_request).is_some_and(|n| n > max) {
        route.count(MirrorResult::TooLarge);
        return;
    }
    let head = copy::head(upstream_request);
    if session.as_downstream_mut().is_body_empty() {
        send::dispatch(state, &route, head, Bytes::new());
        ctx.mirror = Capture::Sent;
    } else {
        ctx.mirror = Capture::Collecting {
            head,
            body: BodyBuffer::new(max),
        };
    }
}

/// In `request_body_filter`: copy `piece` of the client's body, and send the copy once the
/// body is complete (`end`). A body that grows past the mirror's bound is not mirrored.
pub fn on_body(state: &ProxyState, ctx: &mut RequestCtx, piece: Option<&Bytes>, end: bool) {
    let Capture::Collecting { body, .. } = &mut ctx.mirror else {
        return;
    };
    let Some(route) = ctx.route.and_then(|r| state.mirrors.get(r)?.clone()) else {
        return;
    };
    if let Some(piece) = piece {
        if body.push(piece).is_err() {
            route.count(MirrorResult::TooLarge);
            ctx.mirror = Capture::Off;
            return;
        }
    }
    if !end {
        return;
    }
    if let Capture::Collecting { head, body } = std::mem::replace(&mut ctx.mirror, Capture::Sent) {
        send::dispatch(state, &route, head, body.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(percent: f64, requests: u64) -> Vec<u64> {
        let s = Sampler::new(percent);
        (0..requests).filter(|_| s.take()).collect::<Vec<_>>()
    }

    #[test]
    fn ten_percent_copies_exactly_one_request_in_ten() {
        let picked = copied(10.0, 200);
        assert_eq!(picked.len(), 20);
        assert_eq!(picked[..3], [9, 19, 29]);
    }

    #[test]
    fn a_hundred_percent_copies_every_request_and_shares_spread_evenly() {
        assert_eq!(copied(100.0, 50).len(), 50);
        assert_eq!(copied(50.0, 100).len(), 50);
        assert_eq!(copied(25.0, 8), vec![3, 7]);
        assert_eq!(copied(1.0, 1000).len(), 10);
        // A fraction: 2.5 % of 400 is 10.
        assert_eq!(copied(2.5, 400).len(), 10);
    }

    #[test]
    fn the_body_buffer_holds_up_to_its_bound_and_no_more() {
        let mut b = BodyBuffer::new(10);
        assert_eq!(b.push(b"hello"), Ok(()));
        assert_eq!(b.push(b"world"), Ok(()));
        assert_eq!(b.push(b"!"), Err(TooLarge));
        assert_eq!(&b.take()[..], b"helloworld");

        let mut b = BodyBuffer::new(4);
        assert_eq!(b.push(b"hello"), Err(TooLarge));
        b.clear();
        assert_eq!(b.push(b"hey"), Ok(()));
        b.clear();
        assert_eq!(b.push(b"four"), Ok(()));
        assert_eq!(&b.take()[..], b"four");
    }

    #[test]
    fn results_have_their_labels() {
        let labels = MirrorResult::ALL.map(MirrorResult::label);
        assert_eq!(labels, ["ok", "error", "timeout", "too_large", "dropped"]);
    }
}
