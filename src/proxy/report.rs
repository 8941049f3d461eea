//! The end of every request, answered by a backend or by fulcrum: the attempt's outcome, the
//! request metrics and the access-log line.

use super::context::RequestCtx;
use super::state::ProxyState;
use super::{access_log, outcome};
use crate::metrics::codes::CLIENT_CLOSED;
use crate::metrics::Finished;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::Session;
use std::time::Instant;

/// The code of a response the backend broke after its head went out.
const BROKEN: u16 = 502;

/// Settle the request's last attempt, count the request and log it; `e` is the error that
/// ended it, if any.
pub fn request_done(
    state: &ProxyState,
    session: &Session,
    e: Option<&Error>,
    ctx: &mut RequestCtx,
) {
    // One clock read for the attempt's latency and the request's duration.
    let now = Instant::now();
    outcome::settle(state, ctx, e, now);
    super::caching::observe(state, session, ctx);

    // A response the backend broke after its head went out was never complete: it counts
    // as a 502 (the backend's failure), not as the status its head carried. An upgraded
    // connection that went quiet for the tunnel timeout ended normally. A client that left
    // (or stopped taking the response for `send_timeout`) before the response was complete
    // counts as 499, nginx's "client closed request": the backend is not charged.
    let stalled = e.is_some_and(client_stopped_reading);
    let broken = ctx.aborted
        && e.is_some_and(|e| {
            matches!(e.esource(), ErrorSource::Upstream)
                && !(session.was_upgraded() && is_timeout(e))
        });
    let cut = broken || (stalled && session.response_written().is_some());
    let sent = session
        .as_downstream()
        .response_written()
        .map_or(0, |r| r.status.as_u16());
    let seconds = ctx
        .started
        .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
    let code = counted_code(sent, e, broken);
    let grpc_status = grpc_status(session, ctx, cut);
    if let (Some(code), Some(route)) = (grpc_status, ctx.route) {
        state.metrics.observe_grpc(route, ctx.upstream, code);
    }
    let downstream = session.as_downstream();
    state.metrics.observe(&Finished {
        route: ctx.route,
        upstream: ctx.upstream,
        backend: ctx.chosen(),
        code,
        upstream_code: ctx.upstream_status.map(|s| if broken { BROKEN } else { s }),
        seconds,
        bytes_in: downstream.body_bytes_read() as u64,
        bytes_out: downstream.body_bytes_sent() as u64,
    });
    // The access log shows what the client got: 499 when it left first.
    let sent = if code == CLIENT_CLOSED { code } else { sent };
    if access_log::enabled() {
        write_access_log(state, session, e, ctx, sent, seconds, cut);
    }
}

/// The status code a finished request is counted under: 499 when the client left before its
/// response was complete, 502 when the backend broke the response (`broken`) or fulcrum could
/// not answer a backend's failure, else the status `sent` to the client.
fn counted_code(sent: u16, e: Option<&Error>, broken: bool) -> u16 {
    if e.is_some_and(client_left) {
        return CLIENT_CLOSED;
    }
    if broken {
        return BROKEN;
    }
    match (sent, e) {
        (0, Some(e)) if matches!(e.esource(), ErrorSource::Upstream) => BROKEN,
        (0, _) => CLIENT_CLOSED,
        (sent, _) => sent,
    }
}

/// Whether `e` says the client went away (closed or reset its connection, or stopped reading
/// for `send_timeout`) before the response was complete.
fn client_left(e: &Error) -> bool {
    matches!(e.esource(), ErrorSource::Downstream)
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed
                | ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::WriteTimedout
        )
}

/// A gRPC call's status: from the backend's trailers, else from the response head (a
/// trailers-only answer, the backend's or fulcrum's own); none for a call cut short.
fn grpc_status(session: &Session, ctx: &RequestCtx, cut: bool) -> Option<u16> {
    if !ctx.grpc || cut {
        return None;
    }
    ctx.grpc_status.or_else(|| {
        let head = session.as_downstream().response_written()?;
        super::grpc::status_in(&head.headers)
    })
}

/// Whether the client took no response bytes for `send_timeout`.
fn client_stopped_reading(e: &Error) -> bool {
    matches!(e.esource(), ErrorSource::Downstream) && matches!(e.etype(), ErrorType::WriteTimedout)
}

/// Whether an error is a timeout (on either side).
fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    )
}

fn write_access_log(
    state: &ProxyState,
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    status: u16,
    seconds: f64,
    cut_after_head: bool,
) {
    let grpc = ctx.grpc.then(|| {
        grpc_status(session, ctx, cut_after_head).map_or_else(|| "-".to_string(), |c| c.to_string())
    });
    let req = session.req_header();
    let client = session
        .client_addr()
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let group = state.group(ctx);
    let backend = ctx.backend_addr.map(|a| a.to_string());
    let version = match req.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    };
    let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let trace = ctx.trace.map(|t| (t.trace_id_hex(), t.span_id_hex()));
    fn hex(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("-")
    }
    let ids = trace.as_ref().map(|(t, s)| (hex(t), hex(s)));
    access_log::write(&access_log::Entry {
        client: &client,
        method: req.method.as_str(),
        uri,
        version,
        status,
        grpc_status: grpc.as_deref(),
        cache: super::caching::log_field(ctx),
        bytes: session.as_downstream().body_bytes_sent(),
        seconds,
        upstream: group.map_or("-", |g| g.config.name.as_str()),
        backend: backend.as_deref().unwrap_or("-"),
        tries: ctx.tries,
        request_id: ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        trace_id: ids.map(|i| i.0),
        span_id: ids.map(|i| i.1),
        error: e.map(|e| match cut_after_head {
            true if client_stopped_reading(e) => {
                format!("client stopped reading the response (send_timeout): {e}")
            }
            true => format!("response cut after its head was sent: {e}"),
            false => e.to_string(),
        }),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: ErrorType, source: ErrorSource) -> Box<Error> {
        let mut e = Error::new(t);
        e.esource = source;
        e
    }

    #[test]
    fn a_client_that_left_is_499_whatever_was_sent() {
        let gone = err(ErrorType::ConnectionClosed, ErrorSource::Downstream);
        assert_eq!(counted_code(0, Some(&gone), false), 499);
        assert_eq!(counted_code(200, Some(&gone), false), 499);
        let reset = err(ErrorType::WriteError, ErrorSource::Downstream);
        assert_eq!(counted_code(200, Some(&reset), false), 499);
        let stalled = err(ErrorType::WriteTimedout, ErrorSource::Downstream);
        assert_eq!(counted_code(200, Some(&stalled), false), 499);
    }

    #[test]
    fn a_broken_response_is_502_and_answers_keep_their_status() {
        let broke = err(ErrorType::ConnectionClosed, ErrorSource::Upstream);
        assert_eq!(counted_code(200, Some(&broke), true), 502);
        assert_eq!(counted_code(0, Some(&broke), false), 502);
        assert_eq!(counted_code(504, Some(&broke), false), 504);
        let slow_body = err(ErrorType::ReadTimedout, ErrorSource::Downstream);
        assert_eq!(counted_code(408, Some(&slow_body), false), 408);
        assert_eq!(counted_code(200, None, false), 200);
        assert_eq!(counted_code(404, None, false), 404);
    }
}
