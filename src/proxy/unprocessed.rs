//! Whether an error proves that the backend never processed the request, so that sending it
//! again (even a POST, even a gRPC call) cannot do anything twice.
//!
//! Only HTTP/2 gives such proof (RFC 9113 8.7): a stream reset with `REFUSED_STREAM`, or a
//! graceful `GOAWAY` (`NO_ERROR`) whose last processed stream is below ours, which the h2
//! library reports on our stream only in that case. A failed connect is proof too, but it
//! has its own hook (`fail_to_connect`).

use pingora_core::Error;

/// Whether `e` (an error while proxying, before any response head) carries an HTTP/2 error
/// the backend sent to say it did not process this stream.
pub fn refused_by_backend(e: &Error) -> bool {
    e.root_cause()
        .downcast_ref::<h2::Error>()
        .is_some_and(refused)
}

/// The h2 errors that mean "not processed": a remote `REFUSED_STREAM` reset, or a remote
/// graceful `GOAWAY` that left this stream out.
fn refused(e: &h2::Error) -> bool {
    let reason = e.reason();
    e.is_remote()
        && ((e.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM))
            || (e.is_go_away() && reason == Some(h2::Reason::NO_ERROR)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::ErrorType;

    fn wrapped(h2: h2::Error) -> Box<Error> {
        Error::because(ErrorType::H2Error, "while reading h2 header", h2)
    }

    #[test]
    fn locally_raised_h2_errors_and_other_errors_are_not_refusals() {
        // `h2::Error::from(Reason)` is a locally raised reset: the backend said nothing.
        for reason in [
            h2::Reason::REFUSED_STREAM,
            h2::Reason::NO_ERROR,
            h2::Reason::CANCEL,
        ] {
            assert!(!refused_by_backend(&wrapped(reason.into())), "{reason:?}");
        }
        let plain = Error::new(ErrorType::ReadError);
        assert!(!refused_by_backend(&plain));
    }
}
