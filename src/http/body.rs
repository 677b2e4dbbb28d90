//! Reading a request body: at most `max_request_bytes`, and decoded on the way in when it is
//! sent with `Content-Encoding: gzip | deflate | zstd | br`.
//!
//! Decoding is a stream: each chunk read from the socket is fed to the decoder, whose output
//! goes into a buffer that refuses to grow past the limit. So the limit holds for the
//! *decoded* size and a zip bomb costs at most `max_request_bytes` of memory before its 413,
//! however far it would expand. (actix-web's own decoder expands a whole chunk at once,
//! which for a 64 KiB chunk of a bomb can be ~64 MiB; this one stops at the limit.)

use std::io::Write;

use actix_web::http::header::{HeaderMap, CONTENT_ENCODING};
use actix_web::web;
use bytes::BytesMut;
use futures_util::StreamExt;

use super::error::ApiError;

/// The content codings a produce body may be sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCoding {
    Identity,
    Gzip,
    /// `deflate` is the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
    Zstd,
    Brotli,
}

impl ContentCoding {
    /// The coding `Content-Encoding` names; 415 for one rill cannot decode (or a list of
    /// several: no client needs to stack codings on a JSON body).
    pub fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(CONTENT_ENCODING) else {
            return Ok(Self::Identity);
        };
        let name = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
        match name.as_str() {
            "" | "identity" => Ok(Self::Identity),
            "gzip" | "x-gzip" => Ok(Self::Gzip),
            "deflate" => Ok(Self::Deflate),
            "zstd" => Ok(Self::Zstd),
            "br" => Ok(Self::Brotli),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding: {:?} is not supported; send identity, gzip, deflate, zstd or br",
                value.to_str().unwrap_or("(not text)")
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Zstd => "zstd",
            Self::Brotli => "br",
        }
    }
}

/// Decoded bytes, refused past `limit`.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("decoded body over max_request_bytes"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Bounded>),
    Deflate(flate2::write::ZlibDecoder<Bounded>),
    Zstd(zstd::stream::write::Decoder<'static, Bounded>),
    Brotli(Box<brotli::DecompressorWriter<Bounded>>),
}

impl Decoder {
    fn new(coding: ContentCoding, limit: usize) -> Result<Self, ApiError> {
        let out = Bounded {
            buf: Vec::with_capacity(limit.min(64 * 1024)),
            limit,
            overflowed: false,
        };
        Ok(match coding {
            ContentCoding::Identity => unreachable!("identity bodies are not decoded"),
            ContentCoding::Gzip => Self::Gzip(flate2::write::MultiGzDecoder::new(out)),
            ContentCoding::Deflate => Self::Deflate(flate2::write::ZlibDecoder::new(out)),
            ContentCoding::Zstd => Self::Zstd(
                zstd::stream::write::Decoder::new(out)
                    .map_err(|e| ApiError::Internal(format!("zstd decoder: {e}")))?,
            ),
            ContentCoding::Brotli => {
                Self::Brotli(Box::new(brotli::DecompressorWriter::new(out, 16 * 1024)))
            }
        })
    }

    fn output(&self) -> &Bounded {
        match self {
            Self::Gzip(d) => d.get_ref(),
            Self::Deflate(d) => d.get_ref(),
            Self::Zstd(d) => d.get_ref(),
            Self::Brotli(d) => d.get_ref(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Gzip(d) => d.write_all(chunk),
            Self::Deflate(d) => d.write_all(chunk),
            Self::Zstd(d) => d.write_all(chunk),
            Self::Brotli(d) => d.write_all(chunk),
        }
    }

    /// Decodes what the decoder still holds and checks the stream is complete.
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Self::Gzip(d) => d.try_finish(),
            Self::Deflate(d) => d.try_finish(),
            Self::Zstd(d) => d.flush(),
            Self::Brotli(d) => d.close(),
        }
    }

    /// The decoded body, once [`Decoder::finish`] succeeded.
    fn into_output(self) -> std::io::Result<Vec<u8>> {
        Ok(match self {
            Self::Gzip(d) => d.finish()?.buf,
            Self::Deflate(d) => d.finish()?.buf,
            Self::Zstd(d) => d.into_inner().buf,
            Self::Brotli(d) => {
                d.into_inner()
                    .map_err(|_| std::io::Error::other("truncated brotli stream"))?
                    .buf
            }
        })
    }
}

/// Reads the body, refusing it as soon as it — decoded — passes `limit` (the rest is never
/// read). `grow` is told each time the decoded size passes what was reserved for it, so the
/// in-flight budget follows the memory a compressed body really takes; `received` counts the
/// bytes as sent.
pub async fn read_body(
    mut payload: web::Payload,
    coding: ContentCoding,
    declared: Option<usize>,
    limit: usize,
    received: &mut usize,
    mut grow: impl FnMut(usize) -> Result<(), ApiError>,
) -> Result<BytesMut, ApiError> {
    if coding == ContentCoding::Identity {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(8192).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(super::body_error)?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        *received = body.len();
        return Ok(body);
    }
    let mut decoder = Decoder::new(coding, limit)?;
    let invalid = |e: std::io::Error| {
        ApiError::InvalidRequest(format!(
            "request body: not valid {} data: {e}",
            coding.name()
        ))
    };
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(super::body_error)?;
        *received += chunk.len();
        if *received > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if let Err(e) = decoder.feed(&chunk) {
            return Err(if decoder.output().overflowed {
                ApiError::PayloadTooLarge { limit }
            } else {
                invalid(e)
            });
        }
        grow(decoder.output().buf.len())?;
    }
    if let Err(e) = decoder.finish() {
        return Err(if decoder.output().overflowed {
            ApiError::PayloadTooLarge { limit }
        } else {
            invalid(e)
        });
    }
    let body = decoder.into_output().map_err(invalid)?;
    grow(body.len())?;
    Ok(BytesMut::from(&body[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(coding: ContentCoding, data: &[u8], limit: usize) -> Result<Vec<u8>, bool> {
        let mut decoder = Decoder::new(coding, limit).map_err(|_| false)?;
        for chunk in data.chunks(1000) {
            if decoder.feed(chunk).is_err() {
                return Err(decoder.output().overflowed);
            }
        }
        if decoder.finish().is_err() {
            return Err(decoder.output().overflowed);
        }
        decoder.into_output().map_err(|_| false)
    }

    fn encode(coding: ContentCoding, data: &[u8]) -> Vec<u8> {
        match coding {
            ContentCoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            ContentCoding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            ContentCoding::Zstd => zstd::encode_all(data, 3).unwrap(),
            ContentCoding::Brotli => {
                let mut out = Vec::new();
                {
                    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    e.write_all(data).unwrap();
                }
                out
            }
            ContentCoding::Identity => data.to_vec(),
        }
    }

    const CODINGS: [ContentCoding; 4] = [
        ContentCoding::Gzip,
        ContentCoding::Deflate,
        ContentCoding::Zstd,
        ContentCoding::Brotli,
    ];

    #[test]
    fn every_coding_decodes_and_stops_at_the_limit() {
        let body = br#"{"records":[{"value":"hello"}]}"#.repeat(1000);
        for coding in CODINGS {
            let encoded = encode(coding, &body);
            assert_eq!(
                decode(coding, &encoded, body.len()),
                Ok(body.clone()),
                "{coding:?}"
            );
            assert_eq!(
                decode(coding, &encoded, body.len() - 1),
                Err(true),
                "{coding:?} one byte over the limit"
            );
        }
    }

    #[test]
    fn a_bomb_is_refused_with_memory_bounded_by_the_limit() {
        let zeros = vec![0u8; 64 << 20];
        for coding in CODINGS {
            let bomb = encode(coding, &zeros);
            assert!(bomb.len() < 1 << 20, "{coding:?}: {} bytes", bomb.len());
            assert_eq!(decode(coding, &bomb, 1 << 20), Err(true), "{coding:?}");
        }
    }

    #[test]
    fn garbage_is_invalid_not_too_large() {
        for coding in [
            ContentCoding::Gzip,
            ContentCoding::Deflate,
            ContentCoding::Zstd,
        ] {
            assert_eq!(
                decode(coding, b"this is not compressed", 1 << 20),
                Err(false),
                "{coding:?}"
            );
        }
    }
}
