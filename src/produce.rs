//! The produce request: its JSON shape, and turning it into one compressed RecordBatch per
//! partition plus a per-record result table.
//!
//! This is the CPU-heavy part of a produce (parsing, serializing keys and values, murmur2,
//! building, compressing and checksumming batches). It runs on the HTTP worker that received
//! the request, so it spreads over all workers; the partition actors only stamp offsets and
//! copy bytes.
//!
//! The body is parsed borrowing from the request bytes: `json` values and plain `string`
//! values go into the batch straight from the body, without an intermediate copy.

use std::borrow::Cow;

use base64::Engine;
use rill_actors::compression::Compression;
use rill_actors::idempotency::IdempotencyTag;
use rill_actors::producer::PartitionBatch;
use rill_actors::record_batch::{BatchBuilder, RecordHeader};
use rill_actors::status::RecordResult;
use rill_actors::types::PartitionId;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backend::{BackendError, BatchOutcome, TopicMeta};
use crate::formats::{AvroSchemaCache, Format, RecordFormat};
use crate::http::error::ApiError;
use crate::partitioner::{partition_for_key, RoundRobin};

/// `POST /api/topics/{topic}/produce` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceBody<'a> {
    #[serde(default)]
    pub key_format: Option<Format>,
    #[serde(default)]
    pub value_format: Option<Format>,
    #[serde(default, borrow)]
    pub key_schema: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub value_schema: Option<Cow<'a, str>>,
    #[serde(default)]
    pub key_schema_id: Option<i64>,
    #[serde(default)]
    pub value_schema_id: Option<i64>,
    #[serde(borrow, deserialize_with = "bounded_vec")]
    pub records: Vec<JsonObject<RecordIn<'a>>>,
}

/// Most records and record headers, counted together, one produce request may hold.
///
/// Parsed, a record costs far more memory than its JSON: `{}` is 3 bytes of body and over
/// 200 bytes as a parsed record, a result and its line of the answer. Without a cap, a 64 MiB
/// body of empty records was 21 million records and gigabytes of memory. The count is checked
/// while parsing, so the vectors never grow past it.
pub const MAX_ITEMS_PER_REQUEST: usize = 200_000;

/// What a parsed record or header costs in memory beyond its share of the body (parsed
/// struct, result, answer, batch framing), for the in-flight budget.
pub const ITEM_OVERHEAD_BYTES: usize = 256;

thread_local! {
    /// Records and headers the body being parsed on this thread may still hold.
    static ITEMS_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Deserializes a sequence, counting its elements against [`MAX_ITEMS_PER_REQUEST`].
fn bounded_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                let left = ITEMS_LEFT.with(|left| {
                    let n = left.get();
                    left.set(n.saturating_sub(1));
                    n
                });
                if left == 0 {
                    return Err(serde::de::Error::custom(format_args!(
                        "more than {MAX_ITEMS_PER_REQUEST} records and headers in one request"
                    )));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded(std::marker::PhantomData))
}

/// Parses `text` as `T` with the record and header count starting afresh.
fn from_body<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    ITEMS_LEFT.with(|left| left.set(MAX_ITEMS_PER_REQUEST));
    let parsed = serde_json::from_str(text);
    ITEMS_LEFT.with(|left| left.set(usize::MAX));
    parsed
}

impl ProduceBody<'_> {
    /// Records plus headers: what [`MAX_ITEMS_PER_REQUEST`] counts.
    pub fn items(&self) -> usize {
        self.records.len() + self.records.iter().map(|r| r.headers.len()).sum::<usize>()
    }
}

/// A struct that must be given as a JSON object. serde's derived `Deserialize` also accepts a
/// struct as an array of its fields in declaration order, so `{"records": [[], []]}` would be
/// two empty records and `[[1, 2]]` a record with key 1 and value 2; the API's shape is
/// objects only. Derefs to the struct.
pub struct JsonObject<T>(pub T);

impl<T: Default> Default for JsonObject<T> {
    fn default() -> Self {
        JsonObject(T::default())
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = JsonObject<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(JsonObject)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// Deepest nesting of arrays and objects a record key, value or header value may have: the
/// limit serde_json itself applies to typed data. JSON text kept as is (`RawValue`) is not
/// depth-checked by the parser, and consumers of the stored bytes may recurse on it.
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether the JSON text `text` (already validated) nests arrays and objects deeper than
/// `max`. Scans only the brackets outside strings.
fn nested_deeper_than(text: &[u8], max: usize) -> bool {
    // Nesting deeper than `max` takes more than `max` opening and as many closing brackets:
    // shorter text (nearly every value) needs no scan.
    if text.len() <= 2 * max + 1 || !matches!(text.first(), Some(b'[' | b'{')) {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() {
                    match text[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// 400 if any key, value or header value nests deeper than [`MAX_JSON_DEPTH`].
fn check_depth(body: &ProduceBody<'_>) -> Result<(), ApiError> {
    let too_deep = |raw: Option<&RawValue>| {
        raw.is_some_and(|raw| nested_deeper_than(raw.get().as_bytes(), MAX_JSON_DEPTH))
    };
    for (i, record) in body.records.iter().enumerate() {
        let field = if too_deep(record.key) {
            "key".to_owned()
        } else if too_deep(record.value) {
            "value".to_owned()
        } else if let Some(j) = record.headers.iter().position(|h| too_deep(h.value)) {
            format!("headers[{j}].value")
        } else {
            continue;
        };
        return Err(ApiError::InvalidRequest(format!(
            "records[{i}].{field}: JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    Ok(())
}

/// One record of a produce body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn<'a> {
    #[serde(default, borrow)]
    pub key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub value: Option<&'a RawValue>,
    #[serde(default)]
    pub partition: Option<i64>,
    #[serde(default, borrow, deserialize_with = "bounded_vec")]
    pub headers: Vec<JsonObject<HeaderIn<'a>>>,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// A record header: a string key and a value that is a string, `{"base64": "…"}` or null.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderIn<'a> {
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    #[serde(default, borrow)]
    pub value: Option<&'a RawValue>,
}

/// A header value in the request: text, or raw bytes given as base64.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValueIn<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Bytes(#[serde(borrow)] JsonObject<Base64In<'a>>),
}

/// `{"base64": "…"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Base64In<'a> {
    #[serde(borrow)]
    base64: Cow<'a, str>,
}

/// Parses a produce body, telling syntax errors (`invalid_json`) from shape errors
/// (`invalid_request`, with the path of the offending field).
pub fn parse_body(bytes: &[u8]) -> Result<ProduceBody<'_>, ApiError> {
    // Hot path: plain serde_json. Tracking the field path costs ~12 % of a 1000-record
    // request (perf), so it is only paid on the error path, by parsing again.
    // UTF-8 is checked once over the whole body (word at a time for ASCII) rather than string
    // by string and raw value by raw value, as parsing from bytes does (~4 % of a
    // 1000-record request, perf).
    let text = std::str::from_utf8(bytes).map_err(|_| describe_error(bytes))?;
    let JsonObject(body) =
        from_body::<JsonObject<ProduceBody>>(text).map_err(|_| describe_error(bytes))?;
    if body.records.is_empty() {
        return Err(ApiError::InvalidRequest(
            "records: must not be empty".into(),
        ));
    }
    check_depth(&body)?;
    Ok(body)
}

/// Names what is wrong with a body that failed to parse, with the path of the field.
fn describe_error(bytes: &[u8]) -> ApiError {
    // serde reports some shape errors (an array where an object belongs) as syntax; only a
    // body that is not JSON at all is `invalid_json`.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return ApiError::InvalidJson(format!("request body is not valid JSON: {e}"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    ITEMS_LEFT.with(|left| left.set(MAX_ITEMS_PER_REQUEST));
    let described = serde_path_to_error::deserialize::<_, JsonObject<ProduceBody>>(&mut de);
    ITEMS_LEFT.with(|left| left.set(usize::MAX));
    match described {
        Ok(_) => ApiError::InvalidRequest("request body: invalid".into()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::InvalidRequest(format!("request body: {inner}"))
            } else {
                ApiError::InvalidRequest(format!("{path}: {inner}"))
            }
        }
    }
}

/// A produce request turned into batches, waiting for its acknowledgements.
pub struct PreparedProduce {
    pub batches: Vec<PartitionBatch>,
    /// For each batch, the input indices of its records in batch order.
    members: Vec<Vec<u32>>,
    /// One entry per input record; failed records are already filled in.
    results: Vec<RecordResult>,
    pub appended_records: usize,
    pub batch_bytes: usize,
}

/// What one request asks of the formats and codec, resolved once.
pub struct ProduceSettings {
    pub key: RecordFormat,
    pub value: RecordFormat,
    pub compression: Compression,
}

impl ProduceSettings {
    pub fn resolve<'a>(
        body: &'a ProduceBody<'_>,
        compression: Compression,
        schemas: &AvroSchemaCache,
    ) -> Result<Self, ApiError> {
        if body.key_schema_id.is_some() || body.value_schema_id.is_some() {
            return Err(ApiError::InvalidRequest(
                "key_schema_id/value_schema_id: rill has no schema registry yet; send the schema \
                 inline as key_schema/value_schema"
                    .into(),
            ));
        }
        // A schema sent with a non-avro format is ignored, as API.md's own example does.
        let schema_for =
            |format: Format, schema: Option<&'a str>| schema.filter(|_| format == Format::Avro);
        let key_format = body.key_format.unwrap_or_default();
        let value_format = body.value_format.unwrap_or_default();
        let key = RecordFormat::new(
            key_format,
            schema_for(key_format, body.key_schema.as_deref()),
            schemas,
        )
        .map_err(|e| ApiError::InvalidRequest(format!("key_format: {e}")))?;
        let value = RecordFormat::new(
            value_format,
            schema_for(value_format, body.value_schema.as_deref()),
            schemas,
        )
        .map_err(|e| ApiError::InvalidRequest(format!("value_format: {e}")))?;
        Ok(Self {
            key,
            value,
            compression,
        })
    }
}

/// Serializes every record, picks its partition and builds one batch per partition.
/// Records that cannot be serialized or name a missing partition get an error result and
/// stay out of the batches; the rest go on. An idempotent request's batches carry its `tag`
/// and its mark (see [`BatchBuilder::set_idempotent_producer`]): the log takes a batch only
/// with both or neither.
pub fn prepare(
    body: &ProduceBody<'_>,
    settings: &ProduceSettings,
    topic: &TopicMeta,
    round_robin: &RoundRobin,
    now_ms: i64,
    tag: Option<&IdempotencyTag>,
) -> Result<PreparedProduce, ApiError> {
    let partitions = topic.partitions;
    let mut results: Vec<RecordResult> = Vec::with_capacity(body.records.len());
    // partition -> index into `builders`, as a flat table (partition counts are bounded).
    let mut slot_of: Vec<u32> = vec![u32::MAX; partitions as usize];
    let mut builders: Vec<(PartitionId, BatchBuilder)> = Vec::new();
    // Each batch's buffer is sized up front from the records' JSON (which is larger than what
    // a record stores), as if they spread evenly over the partitions: growing a buffer by
    // doubling copied each batch about once more (memmove in the profile).
    let batch_capacity = {
        let raw_len = |raw: Option<&RawValue>| raw.map_or(0, |r| r.get().len());
        let json_bytes: usize = body
            .records
            .iter()
            .map(|r| raw_len(r.key) + raw_len(r.value) + 16)
            .sum();
        let spread = body.records.len().clamp(1, partitions.max(1) as usize);
        json_bytes / spread + json_bytes / spread / 4 + 64
    };
    let mut members: Vec<Vec<u32>> = Vec::new();
    // Reused across records: bytes of keys/values that cannot be borrowed from the body.
    let mut key_buf = Vec::new();
    let mut value_buf = Vec::new();
    let mut header_bufs: Vec<Vec<u8>> = Vec::new();
    // Per header of the current record: which `header_bufs` entry holds its value.
    let mut headers: Vec<Option<usize>> = Vec::new();

    for (i, record) in body.records.iter().enumerate() {
        key_buf.clear();
        value_buf.clear();
        // Everything that fails here fails the same way on every retry.
        let fail = |code: &str, message: String| RecordResult::failed(None, code, message, false);

        let key = match record
            .key
            .map(|raw| settings.key.serialize(raw, &mut key_buf))
        {
            None => None,
            Some(Ok(payload)) => Some(payload),
            Some(Err(e)) => {
                results.push(fail("invalid_key", format!("records[{i}].key: {e}")));
                continue;
            }
        };
        let value = match record
            .value
            .map(|raw| settings.value.serialize(raw, &mut value_buf))
        {
            None => None,
            Some(Ok(payload)) => Some(payload),
            Some(Err(e)) => {
                results.push(fail("invalid_value", format!("records[{i}].value: {e}")));
                continue;
            }
        };
        if let Err(message) = parse_headers(i, &record.headers, &mut header_bufs, &mut headers) {
            results.push(fail("invalid_header", message));
            continue;
        }
        if let Some(ts) = record.timestamp {
            if ts < 0 {
                results.push(fail(
                    "invalid_timestamp",
                    format!("records[{i}].timestamp: must be milliseconds since the epoch, not negative"),
                ));
                continue;
            }
        }
        let key_bytes = key.as_ref().and_then(|k| k.resolve(&key_buf));
        let partition: PartitionId = match record.partition {
            Some(p) if p < 0 || p >= i64::from(partitions) => {
                results.push(RecordResult::failed(
                    None,
                    "partition_not_found",
                    format!(
                        "records[{i}].partition: partition {p} does not exist (topic {} has {partitions})",
                        topic.name
                    ),
                    false,
                ));
                continue;
            }
            Some(p) => p as PartitionId,
            None => match key_bytes {
                Some(k) => partition_for_key(k, partitions) as PartitionId,
                None => round_robin.next(partitions) as PartitionId,
            },
        };
        let timestamp = record.timestamp.unwrap_or(now_ms);
        let slot = match slot_of[partition as usize] {
            u32::MAX => {
                let mut builder = BatchBuilder::with_capacity(settings.compression, batch_capacity);
                if let Some(tag) = tag {
                    builder.set_idempotent_producer(tag.producer_id());
                }
                builders.push((partition, builder));
                members.push(Vec::with_capacity(body.records.len()));
                slot_of[partition as usize] = (builders.len() - 1) as u32;
                builders.len() - 1
            }
            slot => slot as usize,
        };
        let record_headers: Vec<RecordHeader<'_>> = headers
            .iter()
            .zip(record.headers.iter())
            .map(|(value, header)| RecordHeader {
                key: header.key.as_ref(),
                value: value.map(|n| header_bufs[n].as_slice()),
            })
            .collect();
        let value_bytes = value.as_ref().and_then(|v| v.resolve(&value_buf));
        builders[slot]
            .1
            .push(timestamp, key_bytes, value_bytes, &record_headers);
        members[slot].push(i as u32);
        // Placeholder until the partition answers.
        results.push(RecordResult::ok(partition, -1, timestamp));
    }

    let mut batches = Vec::with_capacity(builders.len());
    let mut appended_records = 0;
    let mut batch_bytes = 0;
    for (partition, mut builder) in builders {
        appended_records += builder.len();
        let encoded = builder.finish().map_err(|e| {
            ApiError::Internal(format!("building batch for partition {partition}: {e}"))
        })?;
        batch_bytes += encoded.bytes.len();
        batches.push(PartitionBatch {
            partition,
            batch: encoded.bytes,
            tag: tag.copied(),
        });
    }
    Ok(PreparedProduce {
        batches,
        members,
        results,
        appended_records,
        batch_bytes,
    })
}

fn parse_headers(
    i: usize,
    input: &[JsonObject<HeaderIn<'_>>],
    bufs: &mut Vec<Vec<u8>>,
    out: &mut Vec<Option<usize>>,
) -> Result<(), String> {
    out.clear();
    let mut used = 0;
    for (j, header) in input.iter().enumerate() {
        let Some(raw) = header.value else {
            out.push(None);
            continue;
        };
        let parsed: HeaderValueIn = serde_json::from_str(raw.get()).map_err(|_| {
            format!("records[{i}].headers[{j}].value: expected a string, {{\"base64\": \"...\"}} or null")
        })?;
        if used == bufs.len() {
            bufs.push(Vec::new());
        }
        let buf = &mut bufs[used];
        buf.clear();
        match parsed {
            HeaderValueIn::Text(text) => buf.extend_from_slice(text.as_bytes()),
            HeaderValueIn::Bytes(JsonObject(Base64In { base64 })) => {
                base64::engine::general_purpose::STANDARD
                    .decode_vec(base64.as_bytes(), buf)
                    .map_err(|e| format!("records[{i}].headers[{j}].value: invalid base64: {e}"))?;
            }
        }
        out.push(Some(used));
        used += 1;
    }
    Ok(())
}

impl PreparedProduce {
    /// How many records batch `i` holds.
    pub fn batch_len(&self, i: usize) -> usize {
        self.members[i].len()
    }

    /// Fills in the offsets from the partitions' answers (one per batch, same order). A
    /// batch that failed as a whole fails the request: nothing of it may look acknowledged.
    /// Records a backend refused one by one get their own error entries.
    pub fn complete(
        mut self,
        outcomes: Vec<Result<BatchOutcome, BackendError>>,
    ) -> Result<Vec<RecordResult>, ApiError> {
        let mut failure: Option<BackendError> = None;
        for (members, outcome) in self.members.iter().zip(outcomes) {
            match outcome {
                Ok(BatchOutcome::Appended { base_offset }) => {
                    for (n, &i) in members.iter().enumerate() {
                        self.results[i as usize].offset = base_offset + n as i64;
                    }
                }
                Ok(BatchOutcome::PerRecord(offsets)) => {
                    for (&i, offset) in members.iter().zip(offsets) {
                        let result = &mut self.results[i as usize];
                        match offset {
                            Ok(offset) => result.offset = offset,
                            Err(e) => {
                                *result = RecordResult::failed(
                                    result.partition,
                                    e.record_error_code(),
                                    format!("records[{i}]: {e}"),
                                    e.is_retriable(),
                                )
                            }
                        }
                    }
                }
                Err(e) => {
                    // A full disk outranks other failures: it is the one the client can act on.
                    if failure.is_none() || e.is_disk_full() {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(self.results),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> String {
        match parse_body(body.as_bytes()) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => format!("{}: {e}", e.error_code()),
        }
    }

    #[test]
    fn structs_are_objects_never_arrays_of_their_fields() {
        // serde would take these as records with fields given by position.
        for body in [
            r#"{"records": [[]]}"#,
            r#"{"records": [[1, 2]]}"#,
            r#"{"records": [{"value": 1}, []]}"#,
            r#"[null, null, null, null, null, null, [{"value": 1}]]"#,
            r#"{"records": [{"value": 1, "headers": [["k", "v"]]}]}"#,
        ] {
            let message = error_of(body);
            assert!(
                message.starts_with("invalid_request: "),
                "{body}: {message}"
            );
            assert!(message.contains("a JSON object"), "{body}: {message}");
        }
        assert!(error_of(r#"{"records": [{"value": 1}, []]}"#).contains("records[1]"));
        let body = parse_body(br#"{"records": [{"value": 1, "headers": [{"key": "k"}]}]}"#)
            .expect("objects parse");
        assert_eq!(body.records.len(), 1);
        assert_eq!(body.records[0].headers[0].key, "k");
    }

    #[test]
    fn base64_header_values_are_objects_with_one_field() {
        let mut bufs = Vec::new();
        let mut out = Vec::new();
        for (value, ok) in [
            (r#"{"base64": "QQ=="}"#, true),
            (r#"["QQ=="]"#, false),
            (r#"{"base64": "QQ==", "extra": 1}"#, false),
        ] {
            let text = format!(
                r#"{{"records": [{{"value": 1, "headers": [{{"key": "k", "value": {value}}}]}}]}}"#
            );
            let body = parse_body(text.as_bytes()).expect("shape is valid");
            let parsed = parse_headers(0, &body.records[0].headers, &mut bufs, &mut out);
            assert_eq!(parsed.is_ok(), ok, "{value}: {parsed:?}");
        }
        assert_eq!(bufs[0], b"A");
    }

    #[test]
    fn records_and_headers_are_counted_while_parsing() {
        let records = |n: usize| format!(r#"{{"records": [{}]}}"#, vec!["{}"; n].join(","));
        let body = records(MAX_ITEMS_PER_REQUEST);
        let parsed = parse_body(body.as_bytes()).expect("at the limit");
        assert_eq!(parsed.items(), MAX_ITEMS_PER_REQUEST);
        let message = error_of(&records(MAX_ITEMS_PER_REQUEST + 1));
        assert!(
            message.starts_with(&format!(
                "invalid_request: records: more than {MAX_ITEMS_PER_REQUEST} records and headers in one request"
            )),
            "{message}"
        );
        // Headers count too, across records.
        let half = MAX_ITEMS_PER_REQUEST / 2;
        let headers = vec![r#"{"key": "h"}"#; half].join(",");
        let body =
            format!(r#"{{"records": [{{"headers": [{headers}]}}, {{"headers": [{headers}]}}]}}"#);
        let message = error_of(&body);
        assert!(message.contains("records[1].headers"), "{message}");
        assert!(message.contains("more than"), "{message}");
        // The count starts afresh for every body.
        assert!(parse_body(records(10).as_bytes()).is_ok());
    }

    #[test]
    fn values_nested_deeper_than_the_limit_are_refused() {
        let nest = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let ok = format!(r#"{{"records": [{{"value": {}}}]}}"#, nest(MAX_JSON_DEPTH));
        assert!(parse_body(ok.as_bytes()).is_ok());
        for (field, body) in [
            (
                "records[0].value",
                format!(r#"{{"records": [{{"value": {}}}]}}"#, nest(10_000)),
            ),
            (
                "records[1].key",
                format!(
                    r#"{{"records": [{{}}, {{"key": {}}}]}}"#,
                    nest(MAX_JSON_DEPTH + 1)
                ),
            ),
            (
                "records[0].headers[1].value",
                format!(
                    r#"{{"records": [{{"headers": [{{"key": "a"}}, {{"key": "b", "value": {}}}]}}]}}"#,
                    nest(200)
                ),
            ),
        ] {
            let message = error_of(&body);
            assert!(
                message.starts_with(&format!("invalid_request: {field}: JSON nested deeper")),
                "{message}"
            );
        }
        // Brackets inside strings do not count; escaped quotes do not end a string.
        let text = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(!nested_deeper_than(text.as_bytes(), MAX_JSON_DEPTH));
        assert!(nested_deeper_than(b"[[[1]]]", 2));
        assert!(!nested_deeper_than(b"[[1],[2],[3]]", 2));
        assert!(!nested_deeper_than(b"\"[[[[\"", 2));
    }
}
