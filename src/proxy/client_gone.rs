//! A client that closed its connection before the response was complete: not a failure of
//! fulcrum's or a backend's, so logged at INFO with the request, and kept out of Pingora's
//! ERROR lines (`suppress_error_log`; see also `crate::logging::levels`).

use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::Session;

/// Whether `e` is the client going away: a downstream connection closed, or a read or write
/// to the client that failed because the peer closed or reset it.
pub fn is_client_gone(e: &Error) -> bool {
    if !matches!(e.esource(), ErrorSource::Downstream) {
        return false;
    }
    match e.etype() {
        ErrorType::ConnectionClosed => true,
        ErrorType::ReadError | ErrorType::WriteError => {
            crate::logging::levels::is_client_gone(&e.to_string())
        }
        _ => false,
    }
}

/// Log the request the client abandoned, at INFO.
pub fn log(session: &Session, e: &Error) {
    let req = session.req_header();
    let client = session
        .client_addr()
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    log::info!(
        "client {client} closed the connection before the response was complete: {} {}: {e}",
        req.method,
        req.uri
    );
}
