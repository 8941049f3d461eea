//! An attempt's outcome, for the circuit breaker: resolved once per attempt, at the first
//! moment it is known (a failed connect, a broken connection, a response head that proves
//! something, or the end of the request).

use super::context::RequestCtx;
use super::state::ProxyState;
use crate::balancer::stats::Outcome;
use pingora_core::{Error, ErrorSource};
use std::time::Instant;

/// Record the current attempt's outcome (only the first call per attempt counts), and log an
/// ejection.
pub fn record(state: &ProxyState, ctx: &mut RequestCtx, outcome: Outcome) {
    let Some(attempt) = ctx.in_flight.as_mut() else {
        return;
    };
    if let Some(cooldown) = attempt.resolve(outcome) {
        if let Some(group) = state.group(ctx) {
            if let Some(addr) = ctx.backend_addr {
                log::warn!(
                    "upstream {}: backend {} ejected for {:?} after failed requests",
                    group.config.name,
                    addr,
                    cooldown
                );
            }
        }
    }
}

/// Judge a response head with `status` from the current attempt's backend: a failure when the
/// breaker counts 5xx or slow answers and this is one, a success for a `101`, and nothing yet
/// otherwise (the body may still break).
pub fn judge_response(state: &ProxyState, ctx: &mut RequestCtx, status: u16) {
    if (100..200).contains(&status) && status != 101 {
        return;
    }
    let Some(group) = state.group(ctx) else {
        return;
    };
    let cb = &group.config.circuit_breaker;
    let slow = match (cb.slow_response, ctx.attempt_started) {
        (Some(limit), Some(t)) => t.elapsed() > limit,
        _ => false,
    };
    if (cb.on_5xx && status >= 500) || slow {
        record(state, ctx, Outcome::Failure);
    } else if status == 101 {
        // An upgraded connection may live for hours: the backend did its part.
        record(state, ctx, Outcome::Success);
    }
    // Otherwise the outcome waits for the end of the body (`settle`): a response cut by the
    // backend is its failure.
}

/// At the end of the request (`now`), ended by `e` if it failed: the last attempt's latency,
/// its outcome unless known already, and the release of its in-flight count and slot.
pub fn settle(state: &ProxyState, ctx: &mut RequestCtx, e: Option<&Error>, now: Instant) {
    if let (Some(attempt), Some(t), Some(group)) =
        (&ctx.in_flight, ctx.attempt_started, state.group(ctx))
    {
        if let Some(b) = group.stats.get(attempt.index()) {
            b.record_latency(now.saturating_duration_since(t));
        }
    }
    match e {
        None => record(state, ctx, Outcome::Success),
        Some(e) if matches!(e.esource(), ErrorSource::Upstream) => {
            record(state, ctx, Outcome::Failure)
        }
        // The client went away or sent garbage: nothing learned about the backend.
        Some(_) => {}
    }
    ctx.in_flight = None;
    ctx.slot = None;
}
