//! The `json` format: the value's JSON text, stored exactly as the producer sent it.
//!
//! The body parser has already validated the text (it is a `RawValue`), so storing it is a
//! borrow: no re-encoding, which would cost time and could change the bytes (number spelling,
//! key order, escapes) that consumers hash or compare.

use serde_json::value::RawValue;

use super::RenderError;

/// The stored bytes: the JSON text itself.
pub(super) fn serialize(raw: &RawValue) -> &[u8] {
    raw.get().as_bytes()
}

/// Stored bytes as the JSON value they hold, borrowed. Bytes written by other clients may be
/// anything, so they are parsed (not trusted) before being embedded in a response.
pub(super) fn render(bytes: &[u8]) -> Result<&RawValue, RenderError> {
    serde_json::from_slice(bytes).map_err(RenderError::NotJson)
}

#[cfg(test)]
mod tests {
    use super::super::{raw, RecordFormat};
    use super::*;

    #[test]
    fn values_are_stored_byte_for_byte() {
        for text in [
            "{\"b\":1,\"a\":2}",
            "[1, 2.50, 1e3]",
            "\"caf\\u00e9\"",
            "12345678901234567890123",
            "true",
        ] {
            let value = raw(text);
            assert_eq!(serialize(&value), text.as_bytes());
        }
    }

    #[test]
    fn stored_json_renders_as_the_same_value() {
        let rendered = render(b" {\"id\": 7} ").map(RawValue::get);
        assert_eq!(rendered.ok(), Some("{\"id\": 7}"));
        let rendered = RecordFormat::Json.render(Some(b"[1,2]"));
        assert_eq!(
            rendered.ok().map(|r| r.get().to_owned()).as_deref(),
            Some("[1,2]")
        );
    }

    #[test]
    fn bytes_that_are_not_json_do_not_render() {
        for bytes in [&b"{\"id\": "[..], b"plain text", b"\xff\xfe", b"1 2", b""] {
            let err = render(bytes)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("not valid JSON: "), "{bytes:?}: {err}");
        }
    }
}
