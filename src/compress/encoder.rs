//! The encoders: Pingora's gzip and zstd compressors, and a Brotli one that finishes its
//! stream.
//!
//! Pingora 0.9's Brotli compressor only flushes at the end of the body and never writes the
//! stream's last meta-block (cloudflare/pingora#1013): lenient decoders (curl, browsers)
//! accept the result, strict ones (the `brotli` CLI, Python's `brotli`, Node's zlib) reject it.
//! [`BrotliEncoder`] finishes the stream instead, behind the same [`Encode`] trait.

use super::negotiate::Encoding;
use bytes::Bytes;
use pingora_core::protocols::http::compression::{Algorithm, Encode, COMPRESSION_ERROR};
use pingora_core::{OrErr, Result};
use std::io::Write;
use std::time::{Duration, Instant};

/// An encoder of one response body.
pub type Encoder = Box<dyn Encode + Send + Sync>;

/// A fresh encoder for `encoding` at `level` (above 0).
pub fn new(encoding: Encoding, level: u32) -> Option<Encoder> {
    match encoding {
        Encoding::Gzip => Algorithm::Gzip.compressor(level),
        Encoding::Zstd => Algorithm::Zstd.compressor(level),
        Encoding::Brotli => (level > 0).then(|| Box::new(BrotliEncoder::new(level)) as Encoder),
    }
}

/// Brotli's window: 2^19 bytes, as Pingora's own compressor uses (512 KiB per response).
const BROTLI_WINDOW_BITS: u32 = 19;

/// Brotli's internal buffer size.
const BROTLI_BUFFER: usize = 4096;

/// A Brotli encoder whose last call ends the stream properly.
pub struct BrotliEncoder {
    /// The stream; `None` once finished.
    writer: Option<brotli::CompressorWriter<Vec<u8>>>,
    total_in: usize,
    total_out: usize,
    spent: Duration,
}

impl BrotliEncoder {
    /// An encoder at quality `level` (1 to 11).
    pub fn new(level: u32) -> Self {
        BrotliEncoder {
            writer: Some(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                BROTLI_WINDOW_BITS,
            )),
            total_in: 0,
            total_out: 0,
            spent: Duration::ZERO,
        }
    }
}

impl Encode for BrotliEncoder {
    fn encode(&mut self, input: &[u8], end: bool) -> Result<Bytes> {
        let start = Instant::now();
        let Some(writer) = self.writer.as_mut() else {
            return Ok(Bytes::new());
        };
        self.total_in += input.len();
        writer
            .write_all(input)
            .or_err(COMPRESSION_ERROR, "while compressing with Brotli")?;
        let out = if end {
            // `into_inner` runs BROTLI_OPERATION_FINISH: the stream's last meta-block.
            self.writer
                .take()
                .map(|w| w.into_inner())
                .unwrap_or_default()
        } else {
            std::mem::take(writer.get_mut())
        };
        self.total_out += out.len();
        self.spent += start.elapsed();
        Ok(out.into())
    }

    fn stat(&self) -> (&'static str, usize, usize, Duration) {
        ("br", self.total_in, self.total_out, self.spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn body() -> Vec<u8> {
        (0..2000)
            .map(|i| format!("line {i} of a compressible body\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// Feed `input` in three pieces, the last one with `end`.
    fn encode_all(encoding: Encoding, input: &[u8]) -> Vec<u8> {
        let mut e = new(encoding, 5).unwrap();
        let third = input.len() / 3;
        let mut out = Vec::new();
        out.extend_from_slice(&e.encode(&input[..third], false).unwrap());
        out.extend_from_slice(&e.encode(&input[third..2 * third], false).unwrap());
        out.extend_from_slice(&e.encode(&input[2 * third..], false).unwrap());
        out.extend_from_slice(&e.encode(&[], true).unwrap());
        out
    }

    #[test]
    fn brotli_streams_are_finished() {
        let input = body();
        let encoded = encode_all(Encoding::Brotli, &input);
        assert!(encoded.len() < input.len() / 4);
        // The strict decoder: reading to the end fails on a stream without its last block.
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&encoded[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, input);
        let mut again = new(Encoding::Brotli, 5).unwrap();
        again.encode(b"x", true).unwrap();
        assert!(again.encode(b"", true).unwrap().is_empty());
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        let input = body();
        let gz = encode_all(Encoding::Gzip, &input);
        let mut decoded = Vec::new();
        flate2_decode(&gz, &mut decoded);
        assert_eq!(decoded, input);
        let zs = encode_all(Encoding::Zstd, &input);
        assert!(zstd_frame(&zs));
        assert!(zs.len() < input.len() / 4);
    }

    fn flate2_decode(data: &[u8], out: &mut Vec<u8>) {
        // Pingora's own gzip decompressor, a separate implementation path from the encoder.
        let mut d = Algorithm::Gzip.decompressor(true).unwrap();
        out.extend_from_slice(&d.encode(data, true).unwrap());
    }

    /// zstd has no decoder in the tree: the frame's magic number is checked here and the
    /// round trip in tests/compression.rs (Python's `zstandard`).
    fn zstd_frame(data: &[u8]) -> bool {
        data.len() > 8 && data[..4] == [0x28, 0xb5, 0x2f, 0xfd]
    }

    #[test]
    fn level_zero_is_no_encoder() {
        for e in Encoding::PREFERENCE {
            assert!(new(e, 0).is_none());
        }
    }
}
