//! Limits that keep one client (or many) from taking the proxy down.
//!
//! | limit | where | answer |
//! | --- | --- | --- |
//! | client connections open at once | [`connection::Guarded`], before any byte is read | 503, close |
//! | request head time and size | [`head_guard::HeadGuard`], under Pingora's HTTP/1 parser | 408 / 431, close |
//! | header count, head size (HTTP/2) | `request_filter` | 431 |
//! | body size | `request_filter` (Content-Length), `request_body_filter` (streamed) | 413 |
//! | body read timeout, keep-alive idle timeout | Pingora's session settings, per request | close |
//! | requests per second per client IP | [`rate::RateLimiter`] in `request_filter` | 429 + `Retry-After` |
//! | requests in flight per backend | [`slots::BackendSlots`] in `upstream_peer`, with a bounded queue | 503 |

pub mod connection;
pub mod head_guard;
pub mod rate;
pub mod slots;
