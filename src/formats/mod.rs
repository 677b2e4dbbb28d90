//! Record formats: how the JSON a producer sends as a key or value becomes the bytes stored in
//! the log, and how stored bytes are rendered back as JSON by the read API.
//!
//! | format   | request JSON                  | stored bytes                      | rendered as          |
//! |----------|-------------------------------|-----------------------------------|----------------------|
//! | `json`   | any JSON value                | its JSON text exactly as sent     | that JSON value      |
//! | `string` | a JSON string                 | the string's UTF-8                | a JSON string        |
//! | `binary` | base64 (standard, padded)     | the decoded bytes                 | base64               |
//! | `avro`   | a datum in Avro JSON encoding | Avro binary encoding, bare datum  | Avro JSON encoding   |
//!
//! JSON `null` is a Kafka null in every format: no bytes at all, which is not the same as zero
//! bytes (for values it is a tombstone). So an Avro `null` datum cannot be stored at the top
//! level; inside records and unions it can.
//!
//! A request names a [`Format`] (and, for avro, a schema); [`RecordFormat::new`] binds the two
//! once per request, parsing the schema through the shared [`AvroSchemaCache`]. Errors come in
//! three kinds, each its own type because each goes to a different place:
//! [`FormatSpecError`] (the request's format or schema is wrong: 400 for the whole request),
//! [`FormatError`] (one record's key or value does not fit: that record fails, the others go
//! on), [`RenderError`] (stored bytes cannot be shown in the asked format: 422 on read). Their
//! messages are the part after the field path; the caller writes
//! `records[3].value: invalid base64: …`.
//!
//! Hot path: `json` values, and `string` values without escapes, are borrowed from the request
//! body ([`Payload::Borrowed`]): no copy and no allocation per record. Other formats append to
//! a buffer the caller reuses across records ([`Payload::Appended`]).

pub mod avro;
mod binary;
mod json;
mod string;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

pub use avro::{AvroSchema, AvroSchemaCache};

/// A format name as a request or a query string gives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    String,
    Binary,
    Avro,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Json, Format::String, Format::Binary, Format::Avro];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::String => "string",
            Format::Binary => "binary",
            Format::Avro => "avro",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = FormatSpecError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| FormatSpecError::UnknownFormat(name.to_owned()))
    }
}

/// The request's choice of format is unusable; the whole request is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatSpecError {
    /// A format name other than json, string, binary, avro.
    #[error("unknown format \"{0}\": expected one of json, string, binary, avro")]
    UnknownFormat(String),
    /// The avro format without a schema.
    #[error("the avro format needs a schema")]
    MissingSchema,
    /// A schema given with a format that has no use for one.
    #[error("a schema is only used with the avro format, not with {0}")]
    UnexpectedSchema(Format),
    /// The schema text is not JSON or not a valid Avro schema.
    #[error("invalid Avro schema: {0}")]
    InvalidSchema(String),
}

/// One key or value cannot be stored in its format. Only that record fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `string` format, and the JSON value is not a string.
    #[error("expected a JSON string")]
    ExpectedString,
    /// `binary` format, and the JSON value is not a string.
    #[error("expected a base64 string")]
    ExpectedBase64,
    /// A JSON string whose escapes do not make text (e.g. a lone UTF-16 surrogate `\ud800`).
    #[error("invalid JSON string: {0}")]
    InvalidString(String),
    /// `binary` format: the string is not standard-alphabet, padded base64.
    #[error("invalid base64: {0}")]
    InvalidBase64(#[from] base64::DecodeError),
    /// `avro` format: the datum does not fit the schema. `at` is the path inside the datum
    /// (`items[2].id`), empty for the datum itself.
    #[error("does not match the Avro schema: {}{reason}", if at.is_empty() { String::new() } else { format!("{at}: ") })]
    AvroMismatch { at: String, reason: String },
    /// `avro` format: the Avro encoder refused a datum that passed rill's own schema check.
    /// Means rill and apache-avro disagree about the schema; reported rather than panicking.
    #[error("could not be Avro-encoded: {0}")]
    AvroEncode(String),
}

/// Stored bytes cannot be shown in the asked format (422 `unrenderable_record` on read).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `json` format: the bytes are not one JSON value.
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// `string` format: the bytes are not UTF-8.
    #[error("not valid UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// `avro` format: the bytes are not a datum of the schema (truncated, trailing bytes, an
    /// index or length out of range, nesting or item counts past rill's limits).
    #[error("does not decode with the Avro schema: {0}")]
    NotAvro(String),
    /// The rendered value could not be written as JSON (not expected to happen).
    #[error("cannot be written as JSON: {0}")]
    Encode(serde_json::Error),
}

/// Where the stored bytes of one serialized key or value are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload<'r> {
    /// JSON `null`: a Kafka null (no bytes, not zero bytes).
    Null,
    /// A slice of the request body (`json`, and `string` without escapes).
    Borrowed(&'r [u8]),
    /// The bytes were appended to the caller's buffer at this range.
    Appended(Range<usize>),
}

impl<'r> Payload<'r> {
    pub fn is_null(&self) -> bool {
        matches!(self, Payload::Null)
    }

    /// Number of stored bytes; `None` for a Kafka null.
    pub fn byte_len(&self) -> Option<usize> {
        match self {
            Payload::Null => None,
            Payload::Borrowed(bytes) => Some(bytes.len()),
            Payload::Appended(range) => Some(range.len()),
        }
    }

    /// The stored bytes, given the buffer that was passed to [`RecordFormat::serialize`].
    /// A range outside `out` (a different buffer) yields an empty slice rather than a panic.
    pub fn resolve<'a>(&'a self, out: &'a [u8]) -> Option<&'a [u8]>
    where
        'r: 'a,
    {
        match self {
            Payload::Null => None,
            Payload::Borrowed(bytes) => Some(bytes),
            Payload::Appended(range) => Some(out.get(range.clone()).unwrap_or_default()),
        }
    }
}

/// A key or value rendered for the read API: JSON, borrowed from the stored bytes when they
/// already are the JSON to send (`json` format, and `null`).
#[derive(Debug)]
pub enum Rendered<'b> {
    Borrowed(&'b RawValue),
    Owned(Box<RawValue>),
}

impl Rendered<'_> {
    /// The JSON text.
    pub fn get(&self) -> &str {
        match self {
            Rendered::Borrowed(raw) => raw.get(),
            Rendered::Owned(raw) => raw.get(),
        }
    }

    pub fn into_owned(self) -> Box<RawValue> {
        match self {
            Rendered::Borrowed(raw) => raw.to_owned(),
            Rendered::Owned(raw) => raw,
        }
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::Borrowed(raw) => raw.serialize(serializer),
            Rendered::Owned(raw) => raw.serialize(serializer),
        }
    }
}

/// A format bound to its schema: what a request's keys (or values) are serialized with, and
/// what stored bytes are rendered with. Cheap to clone.
#[derive(Clone, Debug)]
pub enum RecordFormat {
    Json,
    String,
    Binary,
    Avro(Arc<AvroSchema>),
}

impl RecordFormat {
    /// Binds `format` to `schema` (the schema's JSON text), parsing it through `cache`.
    pub fn new(
        format: Format,
        schema: Option<&str>,
        cache: &AvroSchemaCache,
    ) -> Result<Self, FormatSpecError> {
        match (format, schema) {
            (Format::Avro, Some(text)) => cache.get_or_parse(text).map(RecordFormat::Avro),
            (Format::Avro, None) => Err(FormatSpecError::MissingSchema),
            (other, Some(_)) => Err(FormatSpecError::UnexpectedSchema(other)),
            (Format::Json, None) => Ok(RecordFormat::Json),
            (Format::String, None) => Ok(RecordFormat::String),
            (Format::Binary, None) => Ok(RecordFormat::Binary),
        }
    }

    pub fn format(&self) -> Format {
        match self {
            RecordFormat::Json => Format::Json,
            RecordFormat::String => Format::String,
            RecordFormat::Binary => Format::Binary,
            RecordFormat::Avro(_) => Format::Avro,
        }
    }

    /// Serializes one key or value. Bytes that cannot be borrowed from `raw` are appended to
    /// `out`, which the caller reuses across records. On error `out` is as it was.
    pub fn serialize<'r>(
        &self,
        raw: &'r RawValue,
        out: &mut Vec<u8>,
    ) -> Result<Payload<'r>, FormatError> {
        if raw.get() == "null" {
            return Ok(Payload::Null);
        }
        let start = out.len();
        let result = match self {
            RecordFormat::Json => Ok(Payload::Borrowed(json::serialize(raw))),
            RecordFormat::String => string::serialize(raw, out),
            RecordFormat::Binary => {
                binary::serialize(raw, out).map(|()| Payload::Appended(start..out.len()))
            }
            RecordFormat::Avro(schema) => schema
                .serialize(raw, out)
                .map(|()| Payload::Appended(start..out.len())),
        };
        if result.is_err() {
            // Decoders may have written part of their output before failing.
            out.truncate(start);
        }
        result
    }

    /// Renders stored bytes (`None`: a Kafka null, rendered as JSON `null`).
    pub fn render<'b>(&self, bytes: Option<&'b [u8]>) -> Result<Rendered<'b>, RenderError> {
        let Some(bytes) = bytes else {
            return Ok(Rendered::Borrowed(RawValue::NULL));
        };
        match self {
            RecordFormat::Json => json::render(bytes).map(Rendered::Borrowed),
            RecordFormat::String => string::render(bytes).map(Rendered::Owned),
            RecordFormat::Binary => binary::render(bytes).map(Rendered::Owned),
            RecordFormat::Avro(schema) => schema.render(bytes).map(Rendered::Owned),
        }
    }
}

/// Test helper shared by the format modules: `text` as a `RawValue`, as the body parser
/// would hand it over.
#[cfg(test)]
fn raw(text: &str) -> Box<RawValue> {
    match RawValue::from_string(text.to_owned()) {
        Ok(raw) => raw,
        Err(e) => panic!("test JSON {text:?} is invalid: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(format: &RecordFormat, text: &str) -> Result<Option<Vec<u8>>, FormatError> {
        let value = raw(text);
        let mut out = b"previous".to_vec();
        let payload = format.serialize(&value, &mut out)?;
        Ok(payload.resolve(&out).map(<[u8]>::to_vec))
    }

    #[test]
    fn format_names_parse_and_unknown_ones_list_the_valid_ones() {
        for format in Format::ALL {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        let err = "xml".parse::<Format>().err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("unknown format \"xml\": expected one of json, string, binary, avro")
        );
        assert_eq!(
            serde_json::from_str::<Format>("\"binary\"").ok(),
            Some(Format::Binary)
        );
        assert_eq!(Format::default(), Format::Json);
    }

    #[test]
    fn formats_bind_to_schemas_only_where_they_need_one() {
        let cache = AvroSchemaCache::default();
        assert!(matches!(
            RecordFormat::new(Format::Json, None, &cache),
            Ok(RecordFormat::Json)
        ));
        assert_eq!(
            RecordFormat::new(Format::Avro, None, &cache).err(),
            Some(FormatSpecError::MissingSchema)
        );
        assert_eq!(
            RecordFormat::new(Format::String, Some("\"int\""), &cache)
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("a schema is only used with the avro format, not with string")
        );
        let bound = RecordFormat::new(Format::Avro, Some("\"int\""), &cache);
        assert_eq!(bound.map(|f| f.format()).ok(), Some(Format::Avro));
        let bad = RecordFormat::new(Format::Avro, Some("{\"type\": \"nope\"}"), &cache);
        assert!(
            matches!(bad, Err(FormatSpecError::InvalidSchema(_))),
            "{bad:?}"
        );
    }

    #[test]
    fn null_is_a_kafka_null_in_every_format() {
        let cache = AvroSchemaCache::default();
        let formats = [
            RecordFormat::Json,
            RecordFormat::String,
            RecordFormat::Binary,
            RecordFormat::new(Format::Avro, Some("[\"null\", \"int\"]"), &cache)
                .expect("valid schema"),
        ];
        for format in &formats {
            let mut out = Vec::new();
            let null = raw("null");
            let payload = format.serialize(&null, &mut out);
            assert_eq!(payload, Ok(Payload::Null), "{format:?}");
            assert!(out.is_empty());
            let rendered = format.render(None).map(|r| r.get().to_owned());
            assert_eq!(rendered.ok().as_deref(), Some("null"), "{format:?}");
        }
    }

    #[test]
    fn errors_leave_the_buffer_as_it_was() {
        let mut out = b"kept".to_vec();
        let value = raw("\"QUJD!!\"");
        assert!(RecordFormat::Binary.serialize(&value, &mut out).is_err());
        assert_eq!(out, b"kept");
    }

    #[test]
    fn payloads_point_into_the_body_or_the_buffer() {
        assert_eq!(
            serialize(&RecordFormat::Json, "{\"a\": [1, 2.50]}"),
            Ok(Some(b"{\"a\": [1, 2.50]}".to_vec()))
        );
        assert_eq!(
            serialize(&RecordFormat::Binary, "\"AAEC\""),
            Ok(Some(vec![0, 1, 2]))
        );
        let value = raw("\"plain\"");
        let mut out = Vec::new();
        let payload = RecordFormat::String.serialize(&value, &mut out);
        assert!(matches!(payload, Ok(Payload::Borrowed(b"plain"))));
        assert_eq!(payload.ok().and_then(|p| p.byte_len()), Some(5));
        assert!(out.is_empty());
        assert_eq!(Payload::Appended(0..9).resolve(b"abc"), Some(&b""[..]));
    }

    #[test]
    fn rendered_values_serialize_as_json_not_as_strings() {
        let stored = b"{\"id\":7}";
        #[derive(Serialize)]
        struct Record<'a> {
            value: Rendered<'a>,
        }
        let rendered = RecordFormat::Json.render(Some(stored)).expect("renders");
        let body = serde_json::to_string(&Record { value: rendered }).expect("serializes");
        assert_eq!(body, r#"{"value":{"id":7}}"#);
        let owned = RecordFormat::Binary
            .render(Some(b"\x00"))
            .expect("renders")
            .into_owned();
        assert_eq!(owned.get(), "\"AA==\"");
    }
}
