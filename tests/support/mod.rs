//! Shared helpers for fulcrum's integration tests, one file per role.
//!
//! Used from each test file with `mod support;` and `use support::*;`. Everything here talks
//! only to 127.0.0.1, and every wait or retry loop is bounded both in iterations and in time.
//!
//! * `ports`: [`free_port`] (a port nobody listens on yet) and readiness checks.
//! * `server`: the accept loop every test server shares.
//! * `request` and `http1`: the one HTTP/1.1 server core (request parsing and framing,
//!   recording, answering) behind both HTTP backends.
//! * `backend`: [`TestBackend`] (answers with its name, records requests) and
//!   [`RecordingBackend`] (records every byte and request as received).
//! * `h2_backend`: [`H2Backend`], an HTTP/2-only server (prior knowledge, or TLS with ALPN
//!   `h2` only) answering with its name and the request's protocol-relevant headers.
//! * `h2_drain`: [`DrainingH2Backend`], an h2c server that sends a graceful GOAWAY while a
//!   request is in flight, finishes that request, then closes the connection.
//! * `ws`: [`WsEchoBackend`], a WebSocket echo server.
//! * `content`: [`ContentBackend`], fixed answers by path (content type, headers, body bytes,
//!   chunked or not).
//! * `fulcrum`: [`Fulcrum`] runs the `fulcrum` binary on a YAML config (or quick-mode flags)
//!   and kills it on drop; [`fulcrum_cmd`] runs it to completion (`-t`, `--print-config`).
//! * `client`: reqwest helpers ([`client`], [`get`], [`get_host`], [`request`], ...).
//! * `raw`: raw TCP clients ([`raw_http`], [`raw_exchange`]) for bytes reqwest cannot send.
//! * `dns`: [`TestDns`], a small authoritative DNS server (UDP and TCP on one port) whose
//!   A, AAAA and SRV answers, failures and TTL the test changes while it runs; `dns_zone`
//!   holds its records and `dns_wire` reads and writes its RFC 1035 messages.
//! * `origin`: [`CountingOrigin`], an origin for cache tests answering per path as the test
//!   sets it ([`Reply`]), with `304` to conditional requests, counting requests per path.

mod backend;
mod client;
mod content;
mod dns;
mod dns_wire;
mod dns_zone;
mod fulcrum;
mod h2_backend;
mod h2_drain;
pub mod h2_frames;
mod http1;
mod origin;
mod ports;
mod raw;
mod request;
mod samples;
mod server;
mod ws;

pub use backend::*;
pub use client::*;
pub use content::*;
pub use dns::*;
pub use fulcrum::*;
pub use h2_backend::*;
pub use h2_drain::*;
pub use origin::*;
pub use ports::*;
pub use raw::*;
pub use request::{RawRequest, RecordedRequest};
pub use samples::*;
pub use ws::*;
