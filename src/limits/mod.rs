//! Limits that keep one client (or many) from taking the proxy down.
//!
//! | limit | where | answer |
//! | --- | --- | --- |
//! | client connections open at once | [`connection::Guarded`], before any byte is read | 503, close (TLS: close) |
//! | TLS handshake time | [`handshake::TlsHandshake`], in `Guarded`, from accept | close |
//! | request head time and size | [`head_guard::HeadGuard`], under Pingora's HTTP/1 parser | 408 / 431, close |
//! | header count, head size (HTTP/2) | `request_filter` | 431 |
//! | body size | `request_filter` (Content-Length), `request_body_filter` (streamed) | 413 |
//! | body read timeout, keep-alive idle timeout | Pingora's session settings, per request | close |
//! | requests per second per client IP | [`rate::RateLimiter`] in `request_filter` | 429 + `Retry-After` |
//! | requests in flight per backend | [`slots::BackendSlots`] in `upstream_peer`, with a bounded queue | 503 |
//! | HTTP/2 streams, windows and send buffers per connection | [`h2::options`], Pingora's h2 handshake | `REFUSED_STREAM`, flow control |

pub mod connection;
pub mod h2;
pub mod handshake;
pub mod head_guard;
pub mod preface;
pub mod rate;
pub mod slots;

/// A complete HTTP/1.1 answer written straight to a client stream (before or instead of
/// Pingora's parser), with `Connection: close`.
pub(crate) fn raw_answer(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         {extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_answers_frame_their_body() {
        let a = super::raw_answer("431 Too Large", "Retry-After: 1\r\n", "too large\n");
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Too Large\r\n"));
        assert!(text.contains("Content-Length: 10\r\nRetry-After: 1\r\nConnection: close"));
        assert!(text.ends_with("\r\n\r\ntoo large\n"));
    }
}
