//! The `binary` format: raw bytes, sent and rendered as base64 (standard alphabet, padded:
//! RFC 4648 section 4, what Confluent REST Proxy's `binary` format uses).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::string::string_error;
use super::{FormatError, RenderError};

/// Decodes the base64 string into `out`. On error `out` may hold a partial decode; the caller
/// truncates it.
pub(super) fn serialize(raw: &RawValue, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match DecodeInto(out).deserialize(&mut de) {
        Ok(decoded) => decoded.map_err(FormatError::InvalidBase64),
        Err(e) => Err(string_error(raw, e, FormatError::ExpectedBase64)),
    }
}

/// Stored bytes as a base64 JSON string.
pub(super) fn render(bytes: &[u8]) -> Result<Box<RawValue>, RenderError> {
    serde_json::value::to_raw_value(&STANDARD.encode(bytes)).map_err(RenderError::Encode)
}

/// Decodes a JSON string as base64 straight into the buffer, from the body's text when it has
/// no escapes (the usual case) or from the unescaped text otherwise (some encoders write `/`
/// as `\/`).
struct DecodeInto<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for DecodeInto<'_> {
    type Value = Result<(), base64::DecodeError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for DecodeInto<'_> {
    type Value = Result<(), base64::DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(STANDARD.decode_vec(text, self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{raw, RecordFormat};
    use super::*;

    fn stored(text: &str) -> Result<Vec<u8>, FormatError> {
        let value = raw(text);
        let mut out = Vec::new();
        let payload = RecordFormat::Binary.serialize(&value, &mut out)?;
        Ok(payload.resolve(&out).unwrap_or_default().to_vec())
    }

    #[test]
    fn base64_is_stored_decoded() {
        assert_eq!(stored("\"aGVsbG8=\""), Ok(b"hello".to_vec()));
        assert_eq!(stored("\"\""), Ok(Vec::new()));
        assert_eq!(stored("\"/+8=\""), Ok(vec![0xff, 0xef]));
        assert_eq!(stored(r#""\/+8=""#), Ok(vec![0xff, 0xef]));
    }

    #[test]
    fn non_strings_are_refused() {
        for text in ["5", "[1,2]", "{\"base64\": \"AA==\"}", "false"] {
            assert_eq!(stored(text), Err(FormatError::ExpectedBase64), "{text}");
        }
        assert_eq!(
            FormatError::ExpectedBase64.to_string(),
            "expected a base64 string"
        );
    }

    #[test]
    fn invalid_base64_is_refused_with_the_reason() {
        for text in [
            "\"aGVsbG8\"",
            "\"a*==\"",
            "\"aGVsbG8=\\n\"",
            "\"-_8=\"",
            "\"aGVsbG8==\"",
        ] {
            let err = stored(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("invalid base64: "), "{text}: {err}");
        }
    }

    #[test]
    fn bytes_render_as_padded_base64() {
        let rendered = render(b"hello\xff").map(|r| r.get().to_owned());
        assert_eq!(rendered.ok().as_deref(), Some("\"aGVsbG//\""));
        let rendered = render(b"").map(|r| r.get().to_owned());
        assert_eq!(rendered.ok().as_deref(), Some("\"\""));
    }
}
