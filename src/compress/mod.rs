//! Response compression (a route's `compression:`): gzip, Brotli and zstd, chosen per request
//! from `Accept-Encoding`, applied on the way to the client.
//!
//! `response_filter` calls [`on_response_head`], which decides from the request and the
//! response head ([`decide`]), edits the head ([`apply`]) and hands the encoder to the
//! [`module::BodyEncoder`] downstream module, which encodes the body. Responses served from
//! Pingora's cache pass the same way, so one identity copy is stored and compressed for each
//! client that asks.
//!
//! * [`negotiate`]: `Accept-Encoding` weights and the choice of encoding.
//! * [`types`]: which media types are compressed.
//! * [`fields`]: `Vary`, `ETag` and `Cache-Control: no-transform`.
//! * [`encoder`]: the encoders.
//! * [`module`]: the body encoding.
//! * [`metrics`]: the counters.

pub mod encoder;
pub mod fields;
pub mod metrics;
pub mod module;
pub mod negotiate;
pub mod types;

use crate::config::model::{Compression, Config};
use crate::proxy::context::RequestCtx;
use crate::proxy::head::{self, Head};
use crate::proxy::ProxyState;
use http::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TE, TRANSFER_ENCODING,
};
use http::{HeaderValue, Method, Version};
use metrics::RouteTallies;
use module::BodyEncoder;
use negotiate::Encoding;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// A route's compression as the proxy uses it: the settings and the route's counters.
pub struct RouteCompressor {
    /// The route's `compression:`.
    pub settings: Compression,
    /// Its counters, by encoding.
    tallies: RouteTallies,
}

impl RouteCompressor {
    /// One entry per route of `config`: its compressor, if it compresses.
    pub fn for_routes(config: &Config) -> Vec<Option<RouteCompressor>> {
        config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let settings = r.compression.clone()?;
                let label = crate::metrics::route_label(config, i);
                Some(RouteCompressor {
                    settings,
                    tallies: RouteTallies::new(&label),
                })
            })
            .collect()
    }
}

/// What happens to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Left as it is: not a compressible response.
    Untouched,
    /// Not compressed for this client, but it would be for another: `Vary: Accept-Encoding`.
    VaryOnly,
    /// Compressed with this encoding.
    Encode(Encoding),
    /// A `HEAD` answer: the head a `GET` would get compressed with this encoding, no body.
    HeadOnly(Encoding),
}

/// Whether a response with this status is compressed: success and error answers with a body
/// (2xx but 204 and 206, 4xx, 5xx). Informational answers, redirects and 304 are not.
fn compressible_status(status: u16) -> bool {
    matches!(status, 200..=299 | 400..=599) && status != 204 && status != 206
}

/// The response's `Content-Length`, when it has one that parses.
fn content_length(resp: &ResponseHeader) -> Option<u64> {
    resp.headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the response itself could be compressed for some client: a compressible status and
/// media type, not already encoded, not `no-transform`, and not known to be under `min_size`.
fn response_qualifies(settings: &Compression, resp: &ResponseHeader) -> bool {
    if !compressible_status(resp.status.as_u16()) || resp.headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let Some(media) = resp
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(types::media_type)
    else {
        return false;
    };
    if !types::compressible(&media, &settings.types) || fields::no_transform(&resp.headers) {
        return false;
    }
    content_length(resp).is_none_or(|n| n > 0 && n >= settings.min_size)
}

/// Whether the request's client can take a compressed answer at all: HTTP/1.1 or later (an
/// HTTP/1.0 client cannot read the chunked body a compressed answer needs, as nginx's
/// `gzip_http_version 1.1`), and not asking for trailers (`TE: trailers`, gRPC and the
/// like), which a compressed body's end would displace.
fn client_qualifies(req: &RequestHeader) -> bool {
    if matches!(req.version, Version::HTTP_09 | Version::HTTP_10) {
        return false;
    }
    !req.headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// What `settings` does with the response `resp` to the request `req`.
pub fn decide(settings: &Compression, req: &RequestHeader, resp: &ResponseHeader) -> Decision {
    if !response_qualifies(settings, resp) {
        return Decision::Untouched;
    }
    if !client_qualifies(req) {
        return Decision::VaryOnly;
    }
    match negotiate::choose(&req.headers, settings) {
        None => Decision::VaryOnly,
        Some(e) if req.method == Method::HEAD => Decision::HeadOnly(e),
        Some(e) => Decision::Encode(e),
    }
}

/// Edit the response head for `decision`: `Vary`, and when compressed `Content-Encoding`, no
/// `Content-Length` or `Accept-Ranges`, a weak `ETag`, and (with a body) chunked framing on
/// HTTP/1 (Pingora drops `Transfer-Encoding` for HTTP/2 clients).
pub fn apply(decision: Decision, h: &mut dyn Head) {
    let (encoding, body) = match decision {
        Decision::Untouched => return,
        Decision::VaryOnly => {
            fields::add_vary(h);
            return;
        }
        Decision::Encode(e) => (e, true),
        Decision::HeadOnly(e) => (e, false),
    };
    fields::add_vary(h);
    h.set(
        &CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    h.remove(&CONTENT_LENGTH);
    h.remove(&ACCEPT_RANGES);
    fields::weaken_etag(h);
    if body && !h.fields().contains_key(TRANSFER_ENCODING) {
        h.set(&TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

/// `response_filter`'s step: decide, edit the head and start the body's encoder.
pub fn on_response_head(
    state: &ProxyState,
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) {
    let Some(rc) = ctx
        .route
        .and_then(|i| state.compression.get(i))
        .and_then(Option::as_ref)
    else {
        return;
    };
    let mut decision = decide(&rc.settings, session.req_header(), resp);
    if let Decision::Encode(e) = decision {
        let encoder = encoder::new(e, e.level(&rc.settings));
        let module = session.downstream_modules_ctx.get_mut::<BodyEncoder>();
        match (encoder, module) {
            (Some(encoder), Some(module)) => {
                module.start(encoder, rc.tallies.of(e).clone());
                ctx.compressed = Some(e);
                // Chunked framing needs HTTP/1.1 (an HTTP/1.0 backend's answer says 1.0).
                resp.set_version(Version::HTTP_11);
            }
            // No encoder after all: the body goes as it is.
            _ => decision = Decision::VaryOnly,
        }
    }
    if decision != Decision::Untouched {
        let preserve_case = state.forwarding.preserve_header_case;
        head::edit_response(resp, preserve_case, |h| apply(decision, h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Compression {
        Compression {
            gzip: 6,
            brotli: 4,
            zstd: 0,
            min_size: 1024,
            types: Vec::new(),
        }
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn html(len: &str) -> ResponseHeader {
        resp(
            200,
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("content-length", len),
            ],
        )
    }

    const GZIP: &[(&str, &str)] = &[("accept-encoding", "gzip")];

    #[test]
    fn a_compressible_response_is_encoded_with_the_negotiated_encoding() {
        let s = settings();
        assert_eq!(
            decide(&s, &req("GET", GZIP), &html("5000")),
            Decision::Encode(Encoding::Gzip)
        );
        let both = req("GET", &[("accept-encoding", "gzip, br")]);
        assert_eq!(
            decide(&s, &both, &html("5000")),
            Decision::Encode(Encoding::Brotli)
        );
        let chunked = resp(200, &[("content-type", "application/json")]);
        assert_eq!(
            decide(&s, &both, &chunked),
            Decision::Encode(Encoding::Brotli)
        );
        let not_found = resp(404, &[("content-type", "text/html")]);
        assert_eq!(
            decide(&s, &both, &not_found),
            Decision::Encode(Encoding::Brotli)
        );
    }

    #[test]
    fn responses_that_cannot_be_compressed_are_untouched() {
        let s = settings();
        let r = req("GET", GZIP);
        let cases = [
            html("100"),
            html("0"),
            resp(200, &[("content-type", "image/png")]),
            resp(200, &[]),
            resp(
                200,
                &[("content-type", "text/html"), ("content-encoding", "gzip")],
            ),
            resp(
                200,
                &[
                    ("content-type", "text/html"),
                    ("cache-control", "no-transform"),
                ],
            ),
            resp(200, &[("content-type", "application/grpc")]),
            resp(204, &[("content-type", "text/html")]),
            resp(206, &[("content-type", "text/html")]),
            resp(304, &[("content-type", "text/html")]),
            resp(301, &[("content-type", "text/html")]),
            resp(101, &[("content-type", "text/html")]),
        ];
        for c in &cases {
            assert_eq!(decide(&s, &r, c), Decision::Untouched, "{c:?}");
        }
    }

    #[test]
    fn clients_that_do_not_get_it_still_see_vary() {
        let s = settings();
        let body = html("5000");
        assert_eq!(decide(&s, &req("GET", &[]), &body), Decision::VaryOnly);
        let zstd_only = req("GET", &[("accept-encoding", "zstd")]);
        assert_eq!(decide(&s, &zstd_only, &body), Decision::VaryOnly);
        let mut old = req("GET", GZIP);
        old.set_version(Version::HTTP_10);
        assert_eq!(decide(&s, &old, &body), Decision::VaryOnly);
        let trailers = req("GET", &[("accept-encoding", "gzip"), ("te", "trailers")]);
        assert_eq!(decide(&s, &trailers, &body), Decision::VaryOnly);
        assert_eq!(
            decide(&s, &req("HEAD", GZIP), &body),
            Decision::HeadOnly(Encoding::Gzip)
        );
    }

    fn applied(decision: Decision, r: &mut ResponseHeader) {
        apply(decision, r);
    }

    #[test]
    fn the_head_is_edited_for_the_encoding() {
        let mut r = html("5000");
        r.append_header("etag", "\"v1\"").unwrap();
        r.append_header("accept-ranges", "bytes").unwrap();
        r.append_header("vary", "Origin").unwrap();
        applied(Decision::Encode(Encoding::Brotli), &mut r);
        let h = &r.headers;
        assert_eq!(h["content-encoding"], "br");
        assert_eq!(h["transfer-encoding"], "chunked");
        assert_eq!(h["etag"], "W/\"v1\"");
        assert_eq!(h["vary"], "Origin, Accept-Encoding");
        assert!(h.get("content-length").is_none());
        assert!(h.get("accept-ranges").is_none());

        let mut head = html("5000");
        applied(Decision::HeadOnly(Encoding::Gzip), &mut head);
        assert_eq!(head.headers["content-encoding"], "gzip");
        assert!(head.headers.get("transfer-encoding").is_none());
        assert!(head.headers.get("content-length").is_none());

        let mut vary = html("5000");
        applied(Decision::VaryOnly, &mut vary);
        assert_eq!(vary.headers["vary"], "Accept-Encoding");
        assert_eq!(vary.headers["content-length"], "5000");
    }
}
