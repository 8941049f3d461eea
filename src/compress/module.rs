//! [`BodyEncoder`], the downstream module that encodes a response body on its way to the
//! client.
//!
//! The decision is made in `response_filter` (see [`super::on_response_head`]), which hands
//! this module the encoder. The body is encoded here rather than in `response_body_filter`
//! because only downstream modules see a response's end in every case: a body served while
//! Pingora's cache is filling (and an HTTP/2 backend's body) can end with a bare "done" that
//! `response_body_filter` never hears of, and the encoder must write its last bytes there.

use super::encoder::Encoder;
use super::metrics::Tally;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_core::Result;
use std::any::Any;

/// A response body being encoded, with its counters.
struct Active {
    encoder: Encoder,
    tally: Tally,
}

/// Per request: the encoder of the response body, when there is one.
#[derive(Default)]
pub struct BodyEncoder {
    active: Option<Active>,
}

impl BodyEncoder {
    /// Encode the rest of the response body with `encoder`, counting into `tally`.
    pub fn start(&mut self, encoder: Encoder, tally: Tally) {
        tally.responses.inc();
        self.active = Some(Active { encoder, tally });
    }

    /// Whether a body is being encoded.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Encode `input`; with `end`, also the encoder's last bytes, after which nothing more is
    /// encoded. `None` when no body is being encoded.
    pub fn encode(&mut self, input: &[u8], end: bool) -> Result<Option<Bytes>> {
        let Some(active) = self.active.as_mut() else {
            return Ok(None);
        };
        let out = active.encoder.encode(input, end)?;
        active.tally.bytes_in.inc_by(input.len() as u64);
        active.tally.bytes_out.inc_by(out.len() as u64);
        if end {
            self.active = None;
        }
        Ok(Some(out))
    }
}

#[async_trait]
impl HttpModule for BodyEncoder {
    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let input = body.take().unwrap_or_default();
        if let Some(out) = self.encode(&input, end)? {
            // An empty piece would end an HTTP/1 chunked body early: send nothing instead.
            *body = (!out.is_empty()).then_some(out);
        }
        Ok(())
    }

    fn response_trailer_filter(
        &mut self,
        _trailers: &mut Option<Box<http::HeaderMap>>,
    ) -> Result<Option<Bytes>> {
        // The body ended with trailers: the encoder's last bytes go out in their place.
        // (Requests that say `TE: trailers` are never compressed; see `decide`.)
        self.encode(&[], true)
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        self.encode(&[], true)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Builds each request's [`BodyEncoder`] (added in `Proxy::init_downstream_modules`).
pub struct BodyEncoderBuilder;

impl HttpModuleBuilder for BodyEncoderBuilder {
    fn init(&self) -> Module {
        Box::new(BodyEncoder::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::encoder;
    use crate::compress::metrics::RouteTallies;
    use crate::compress::negotiate::Encoding;

    #[test]
    fn a_body_ending_with_done_gets_the_encoders_last_bytes() {
        let tallies = RouteTallies::new("module-test");
        let tally = tallies.of(Encoding::Gzip).clone();
        let mut m = BodyEncoder::default();
        let mut body = Some(Bytes::from_static(b"untouched"));
        m.response_body_filter(&mut body, false).unwrap();
        assert_eq!(body.as_deref(), Some(&b"untouched"[..]));

        m.start(encoder::new(Encoding::Gzip, 6).unwrap(), tally.clone());
        let mut out = Vec::new();
        let mut body = Some(Bytes::from(vec![b'a'; 10_000]));
        m.response_body_filter(&mut body, false).unwrap();
        out.extend_from_slice(body.as_deref().unwrap_or_default());
        let last = m.response_done_filter().unwrap().unwrap();
        out.extend_from_slice(&last);
        assert!(!m.is_active());
        assert_eq!(m.response_done_filter().unwrap(), None);

        let mut d = pingora_core::protocols::http::compression::Algorithm::Gzip
            .decompressor(true)
            .unwrap();
        assert_eq!(d.encode(&out, true).unwrap(), vec![b'a'; 10_000]);
        assert_eq!(tally.responses.get(), 1);
        assert_eq!(tally.bytes_in.get(), 10_000);
        assert_eq!(tally.bytes_out.get(), out.len() as u64);
    }
}
