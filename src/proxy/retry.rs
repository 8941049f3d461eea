//! Retry rules: after a connect that failed or a connection that broke while proxying, whether
//! the request tries again, and whether the backend is charged with a failure.
//!
//! The rules are pure functions over [`Facts`] ([`after_connect_failure`],
//! [`after_proxy_error`]); [`on_connect_failure`] and [`on_proxy_error`] gather the facts for
//! Pingora's `fail_to_connect` and `error_while_proxy` hooks and apply the [`Decision`] to the
//! request's context. Setting `retry` on the error is the whole protocol with Pingora: it then
//! calls `upstream_peer` again, which skips the backends that failed.

use super::context::RequestCtx;
use super::outcome;
use super::state::ProxyState;
use crate::balancer::stats::Outcome;
use crate::balancer::UpstreamGroup;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::Session;

/// What the retry rules look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The error came from the backend's side (not the client's).
    pub upstream: bool,
    /// The request's method is idempotent (RFC 9110).
    pub idempotent: bool,
    /// The request body outgrew Pingora's retry buffer: it cannot be sent again.
    pub body_truncated: bool,
    /// A response head from this attempt already arrived.
    pub response_started: bool,
    /// The request is still within its group's `max_try_duration`.
    pub within_budget: bool,
    /// The broken upstream connection came from the keep-alive pool.
    pub reused: bool,
    /// A stale pooled connection was already retried once for this request.
    pub reuse_retried: bool,
    /// The error is what a pooled connection the backend closed looks like
    /// ([`stale_connection`]).
    pub stale: bool,
    /// The backend said it did not process the request (HTTP/2 `REFUSED_STREAM` or a graceful
    /// `GOAWAY` that left it out; see [`super::unprocessed`]).
    pub refused: bool,
    /// Attempts made so far, this one included.
    pub tries: usize,
    /// Attempts the group allows.
    pub max_tries: usize,
}

/// Whether and how the request tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// No: the error ends the request.
    No,
    /// Once, on any backend: a pooled connection was stale, which says nothing about the
    /// backend.
    Stale,
    /// On another backend.
    NextBackend,
    /// On another backend, whatever the method: the backend refused the request unprocessed.
    Refused,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Try again?
    pub retry: Retry,
    /// Count a failure against the backend (circuit breaker) and skip it from now on.
    pub charge: bool,
    /// End the attempt now: un-count it from the backend's in-flight requests and free its
    /// slot (otherwise the end of the request does).
    pub release: bool,
}

/// After a failed connect: the backend is charged; the request moves on to another backend
/// while tries and time remain and its body can be sent again. The backend never saw a byte,
/// so the method does not matter.
pub fn after_connect_failure(f: &Facts) -> Decision {
    let retry = f.tries < f.max_tries && f.within_budget && !f.body_truncated;
    Decision {
        retry: if retry { Retry::NextBackend } else { Retry::No },
        charge: true,
        release: true,
    }
}

/// After a connection broke while proxying: retry a stale pooled connection once without
/// charging the backend; otherwise charge the backend for an upstream failure and move a
/// replayable request on to another one within `max_tries`.
///
/// A request the backend refused unprocessed ([`Facts::refused`]) moves on to another backend
/// whatever its method (a gRPC call is a POST) while tries, time and its buffered body allow,
/// and the backend is not charged (a graceful `GOAWAY` is a restart, `REFUSED_STREAM` a full
/// stream limit).
pub fn after_proxy_error(f: &Facts) -> Decision {
    let resendable = f.upstream && !f.body_truncated && !f.response_started && f.within_budget;
    if f.refused && resendable && f.tries < f.max_tries {
        return Decision {
            retry: Retry::Refused,
            charge: false,
            release: true,
        };
    }
    // Replaying is safe only for an idempotent request whose body still fits Pingora's
    // retry buffer, and only while the client has seen nothing of the response.
    let replayable =
        f.upstream && f.idempotent && !f.body_truncated && !f.response_started && f.within_budget;
    if replayable && f.reused && !f.reuse_retried && f.stale {
        // A pooled connection the backend had closed: says nothing about the backend.
        // Retry, on any backend, once. (A timeout is not that: the backend is stuck.)
        return Decision {
            retry: Retry::Stale,
            charge: false,
            release: true,
        };
    }
    // A connection-level failure of the backend itself (or the client went away). Like
    // nginx's proxy_next_upstream error: an idempotent request that broke before any
    // response byte moves on to another backend.
    let next = replayable && f.tries < f.max_tries;
    Decision {
        retry: if next { Retry::NextBackend } else { Retry::No },
        charge: f.upstream,
        release: next,
    }
}

/// Whether a failure on a reused upstream connection is what a keep-alive connection that
/// the backend closed while it sat in the pool looks like: an end of stream or a reset on the
/// first read or write (as nginx treats an error on a cached connection). A timeout is never
/// that: the backend took the request and is stuck.
pub fn stale_connection(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    )
}

/// Whether the request may still try another backend, time-wise.
pub fn within_try_budget(ctx: &RequestCtx, group: &UpstreamGroup) -> bool {
    match (group.config.max_try_duration, ctx.started) {
        (Some(limit), Some(t)) => t.elapsed() < limit,
        _ => true,
    }
}

/// `fail_to_connect`: decide on a failed connect, and apply the decision.
pub fn on_connect_failure(
    state: &ProxyState,
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    state.metrics.observe_error(ctx.upstream, &e);
    let group = state.group(ctx);
    let facts = Facts {
        upstream: true,
        body_truncated: session.as_ref().retry_buffer_truncated(),
        within_budget: group.is_some_and(|g| within_try_budget(ctx, g)),
        tries: ctx.tries,
        // Without a route there is no group to try again in.
        max_tries: group.map_or(0, |g| g.config.max_tries),
        ..Facts::default()
    };
    if apply(state, ctx, after_connect_failure(&facts)) {
        e.set_retry(true);
    }
    e
}

/// `error_while_proxy`: decide on a connection to `peer` that broke while proxying; `reused`
/// says whether it came from the keep-alive pool. Pingora's own `retry` flag is replaced.
pub fn on_proxy_error(
    state: &ProxyState,
    peer: &HttpPeer,
    session: &Session,
    ctx: &mut RequestCtx,
    e: Box<Error>,
    reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    state.metrics.observe_error(ctx.upstream, &e);
    let group = state.group(ctx);
    let facts = Facts {
        upstream: matches!(e.esource(), ErrorSource::Upstream),
        idempotent: session.req_header().method.is_idempotent(),
        body_truncated: session.as_ref().retry_buffer_truncated(),
        response_started: ctx.response_started,
        within_budget: group.is_some_and(|g| within_try_budget(ctx, g)),
        reused,
        reuse_retried: ctx.reuse_retried,
        stale: stale_connection(&e),
        refused: super::unprocessed::refused_by_backend(&e),
        tries: ctx.tries,
        max_tries: group.map_or(1, |g| g.config.max_tries),
    };
    let retry = apply(state, ctx, after_proxy_error(&facts));
    e.set_retry(retry);
    e
}

/// Apply `d` to the request's context and its group's counters; true when the request
/// retries.
fn apply(state: &ProxyState, ctx: &mut RequestCtx, d: Decision) -> bool {
    if d.charge {
        if let Some(i) = ctx.backend {
            ctx.failed.push(i);
        }
        outcome::record(state, ctx, Outcome::Failure);
    }
    if d.retry == Retry::Stale {
        ctx.reuse_retried = true;
    }
    if d.retry == Retry::Refused {
        // Not a failure of the backend, but this request goes elsewhere.
        if let Some(i) = ctx.backend {
            ctx.failed.push(i);
        }
    }
    if d.release {
        ctx.in_flight = None;
        ctx.slot = None;
    }
    let retry = d.retry != Retry::No;
    if retry {
        if let Some(group) = state.group(ctx) {
            group.stats.record_retry();
        }
    }
    retry
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idempotent request that broke on a fresh connection, before any response, with
    /// tries and time left: the case where everything allows another backend.
    fn broke() -> Facts {
        Facts {
            upstream: true,
            idempotent: true,
            within_budget: true,
            tries: 1,
            max_tries: 3,
            ..Facts::default()
        }
    }

    const NEXT: Decision = Decision {
        retry: Retry::NextBackend,
        charge: true,
        release: true,
    };
    const STOP: Decision = Decision {
        retry: Retry::No,
        charge: true,
        release: false,
    };
    const STALE: Decision = Decision {
        retry: Retry::Stale,
        charge: false,
        release: true,
    };

    #[test]
    fn a_failed_connect_moves_on_while_tries_time_and_body_allow() {
        let ok = broke();
        assert_eq!(after_connect_failure(&ok), NEXT);
        // Any method: the backend never saw the request.
        let post = Facts {
            idempotent: false,
            ..ok
        };
        assert_eq!(after_connect_failure(&post), NEXT);
        let stop = Decision {
            release: true,
            ..STOP
        };
        for f in [
            Facts { tries: 3, ..ok },
            Facts {
                within_budget: false,
                ..ok
            },
            Facts {
                body_truncated: true,
                ..ok
            },
            // No route, no group: nothing to try again in.
            Facts { max_tries: 0, ..ok },
        ] {
            assert_eq!(after_connect_failure(&f), stop, "{f:?}");
        }
    }

    #[test]
    fn a_replayable_request_moves_on_to_another_backend() {
        assert_eq!(after_proxy_error(&broke()), NEXT);
        // A timeout on a reused connection is the backend's failure, not a stale connection.
        let timeout = Facts {
            reused: true,
            ..broke()
        };
        assert_eq!(after_proxy_error(&timeout), NEXT);
    }

    #[test]
    fn what_is_not_replayable_stops_and_charges_the_backend() {
        let ok = broke();
        for f in [
            Facts {
                idempotent: false,
                ..ok
            },
            Facts {
                body_truncated: true,
                ..ok
            },
            Facts {
                response_started: true,
                ..ok
            },
            Facts {
                within_budget: false,
                ..ok
            },
            Facts { tries: 3, ..ok },
        ] {
            assert_eq!(after_proxy_error(&f), STOP, "{f:?}");
        }
    }

    #[test]
    fn a_stale_pooled_connection_is_retried_once_without_charging_the_backend() {
        let stale = Facts {
            reused: true,
            stale: true,
            ..broke()
        };
        assert_eq!(after_proxy_error(&stale), STALE);
        // Even with no tries left: it was not the backend's attempt that failed.
        assert_eq!(after_proxy_error(&Facts { tries: 3, ..stale }), STALE);
        // Only once per request; then it is the backend's failure.
        let again = Facts {
            reuse_retried: true,
            ..stale
        };
        assert_eq!(after_proxy_error(&again), NEXT);
        // A fresh connection that closed is the backend's failure too.
        let fresh = Facts {
            reused: false,
            ..stale
        };
        assert_eq!(after_proxy_error(&fresh), NEXT);
        // A POST is never sent twice, stale connection or not.
        let post = Facts {
            idempotent: false,
            ..stale
        };
        assert_eq!(after_proxy_error(&post), STOP);
    }

    #[test]
    fn a_request_refused_unprocessed_moves_on_whatever_its_method() {
        let refused = Facts {
            refused: true,
            idempotent: false,
            ..broke()
        };
        let moved = Decision {
            retry: Retry::Refused,
            charge: false,
            release: true,
        };
        assert_eq!(after_proxy_error(&refused), moved);
        // Its body must still be there, and tries and time left.
        for f in [
            Facts {
                body_truncated: true,
                ..refused
            },
            Facts {
                within_budget: false,
                ..refused
            },
            Facts {
                tries: 3,
                ..refused
            },
        ] {
            assert_eq!(after_proxy_error(&f), STOP, "{f:?}");
        }
        // A gRPC call (a POST) that broke any other way is never sent twice.
        let broken_call = Facts {
            idempotent: false,
            ..broke()
        };
        assert_eq!(after_proxy_error(&broken_call), STOP);
    }

    #[test]
    fn a_client_side_error_neither_retries_nor_charges_the_backend() {
        let client = Facts {
            upstream: false,
            reused: true,
            stale: true,
            ..broke()
        };
        assert_eq!(
            after_proxy_error(&client),
            Decision {
                retry: Retry::No,
                charge: false,
                release: false,
            }
        );
    }

    #[test]
    fn only_an_end_of_stream_or_a_reset_is_a_stale_connection() {
        use ErrorType::*;
        for t in [ConnectionClosed, ReadError, WriteError] {
            assert!(stale_connection(&Error::new(t.clone())), "{t:?}");
        }
        for t in [
            ReadTimedout,
            WriteTimedout,
            ConnectTimedout,
            InvalidHTTPHeader,
            HTTPStatus(502),
        ] {
            assert!(!stale_connection(&Error::new(t.clone())), "{t:?}");
        }
    }
}
