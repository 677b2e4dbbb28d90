//! The `string` format: a JSON string, stored as its UTF-8 text (without quotes or escapes).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::{FormatError, Payload, RenderError};

/// Stores the string. A string without escapes is borrowed from the body; one with escapes is
/// unescaped into `out`.
pub(super) fn serialize<'r>(
    raw: &'r RawValue,
    out: &mut Vec<u8>,
) -> Result<Payload<'r>, FormatError> {
    // The body parser has already checked the string (UTF-8, no raw control characters), so
    // without a backslash its text is what stands between the quotes: no second parse.
    let plain = raw
        .get()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'));
    if let Some(text) = plain.filter(|t| !t.contains('\\')) {
        return Ok(Payload::Borrowed(text.as_bytes()));
    }
    let start = out.len();
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match UnescapeInto(out).deserialize(&mut de) {
        Ok(Some(borrowed)) => Ok(Payload::Borrowed(borrowed.as_bytes())),
        Ok(None) => Ok(Payload::Appended(start..out.len())),
        Err(e) => Err(string_error(raw, e, FormatError::ExpectedString)),
    }
}

/// Stored bytes as a JSON string.
pub(super) fn render(bytes: &[u8]) -> Result<Box<RawValue>, RenderError> {
    let text = std::str::from_utf8(bytes)?;
    serde_json::value::to_raw_value(text).map_err(RenderError::Encode)
}

/// `not_a_string` when the JSON is some other type; otherwise the string itself is bad (the
/// body parser accepts escapes such as a lone surrogate that do not make text).
pub(super) fn string_error(
    raw: &RawValue,
    e: serde_json::Error,
    not_a_string: FormatError,
) -> FormatError {
    if raw.get().starts_with('"') {
        FormatError::InvalidString(e.to_string())
    } else {
        not_a_string
    }
}

/// Deserializes a JSON string without allocating: `Some(text)` borrowed from the input when it
/// has no escapes, else `None` after appending the unescaped text to the buffer.
struct UnescapeInto<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for UnescapeInto<'_> {
    type Value = Option<&'de str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for UnescapeInto<'_> {
    type Value = Option<&'de str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Some(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        self.0.extend_from_slice(text.as_bytes());
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw;
    use super::*;

    fn stored(text: &str) -> Result<Vec<u8>, FormatError> {
        let value = raw(text);
        let mut out = Vec::new();
        let payload = serialize(&value, &mut out)?;
        Ok(payload.resolve(&out).unwrap_or_default().to_vec())
    }

    #[test]
    fn strings_are_stored_as_utf8_without_quotes() {
        assert_eq!(stored("\"user-1\""), Ok(b"user-1".to_vec()));
        assert_eq!(stored("\"\""), Ok(Vec::new()));
        assert_eq!(
            stored("\"caf\u{e9} \u{1f600}\""),
            Ok("caf\u{e9} \u{1f600}".as_bytes().to_vec())
        );
    }

    #[test]
    fn escapes_are_decoded_into_the_buffer() {
        let value = raw(r#""a\"b\\c\n\u00e9\ud83d\ude00""#);
        let mut out = b"x".to_vec();
        let payload = serialize(&value, &mut out);
        assert_eq!(payload, Ok(Payload::Appended(1..out.len())));
        assert_eq!(&out[1..], "a\"b\\c\n\u{e9}\u{1f600}".as_bytes());
    }

    #[test]
    fn other_json_types_are_refused() {
        for text in ["5", "true", "{\"s\": \"x\"}", "[\"x\"]"] {
            assert_eq!(stored(text), Err(FormatError::ExpectedString), "{text}");
            assert_eq!(
                FormatError::ExpectedString.to_string(),
                "expected a JSON string"
            );
        }
    }

    #[test]
    fn a_lone_surrogate_is_an_invalid_string() {
        let err = stored(r#""\ud800""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("invalid JSON string: "), "{err}");
    }

    #[test]
    fn utf8_renders_as_a_json_string_and_other_bytes_do_not() {
        let rendered = render("say \"hi\"\n".as_bytes()).map(|r| r.get().to_owned());
        assert_eq!(rendered.ok().as_deref(), Some(r#""say \"hi\"\n""#));
        let err = render(b"\xff\x00")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("not valid UTF-8: "), "{err}");
    }
}
