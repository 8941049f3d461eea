//! The HTTP/2 settings fulcrum offers its clients (`limits.h2`).
//!
//! Pingora hands these to the `h2` crate at each HTTP/2 connection's handshake. The crate's
//! own default lets a stream buffer about 400 KiB of response for a client that does not read
//! it; fulcrum's defaults bound that to 64 KiB, allow 128 streams at once (nginx's
//! `http2_max_concurrent_streams`) and keep Pingora's 64 KiB limit on a decoded header list.

use crate::config::model::H2Limits;
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};

/// The handshake options for `limits`, on top of Pingora's bounded defaults.
pub fn options(limits: &H2Limits) -> H2Options {
    let mut options = default_h2_options();
    options
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window)
        .max_send_buffer_size(limits.max_send_buffer);
    options
}
