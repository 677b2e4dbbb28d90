//! `GET /api/topics/{topic}/partitions/{partition}/records`: reading a partition back, each
//! key and value rendered in the asked format.

use actix_web::{web, HttpResponse};
use base64::Engine;
use rill_actors::messages::Read;
use rill_actors::record_batch::{self, Record};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::formats::{Format, RecordFormat, Rendered};
use crate::http::error::ApiError;

/// The most records one read returns.
pub const MAX_LIMIT: usize = 10_000;
/// Bytes asked of the partition per round trip.
const READ_CHUNK_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    #[serde(default)]
    offset: i64,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    key_format: Format,
    #[serde(default)]
    value_format: Format,
    #[serde(default)]
    key_schema: Option<String>,
    #[serde(default)]
    value_schema: Option<String>,
}

fn default_limit() -> usize {
    100
}

#[derive(Serialize)]
struct RecordsResponse<'a> {
    records: Vec<RecordOut<'a>>,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Rendered<'a>,
    value: Rendered<'a>,
    headers: Vec<HeaderOut<'a>>,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    key: &'a str,
    value: Option<HeaderValueOut>,
}

/// Header values render as strings when they are UTF-8, else as `{"base64": …}`.
#[derive(Serialize)]
#[serde(untagged)]
enum HeaderValueOut {
    Text(String),
    Bytes { base64: String },
}

pub async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let (topic_name, partition_text) = path.into_inner();
    caller.check(&topic_name)?;
    let topic = state
        .registry
        .get(&topic_name)
        .ok_or_else(|| ApiError::TopicNotFound(topic_name.clone()))?;
    let not_found = || ApiError::PartitionNotFound {
        topic: topic_name.clone(),
        partition: partition_text.clone(),
    };
    let partition: i32 = partition_text.parse().map_err(|_| not_found())?;
    let addr = topic.partition(partition).ok_or_else(not_found)?.clone();
    let query = query.into_inner();
    if query.limit == 0 || query.limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!(
            "limit: must be 1..={MAX_LIMIT}"
        )));
    }
    if query.offset < 0 {
        return Err(ApiError::InvalidRequest(
            "offset: must not be negative".into(),
        ));
    }
    let key_format = RecordFormat::new(
        query.key_format,
        query.key_schema.as_deref(),
        &state.schemas,
    )
    .map_err(|e| ApiError::InvalidRequest(format!("key_format: {e}")))?;
    let value_format = RecordFormat::new(
        query.value_format,
        query.value_schema.as_deref(),
        &state.schemas,
    )
    .map_err(|e| ApiError::InvalidRequest(format!("value_format: {e}")))?;

    let mut records: Vec<Record> = Vec::new();
    let mut next = query.offset;
    while records.len() < query.limit {
        let bytes = addr
            .send(Read {
                offset: next,
                max_bytes: READ_CHUNK_BYTES,
            })
            .await
            .map_err(|_| ApiError::Unavailable("partition stopped".into()))??;
        if bytes.is_empty() {
            break;
        }
        for batch in record_batch::batches(&bytes) {
            let (_, batch) =
                batch.map_err(|e| ApiError::Internal(format!("reading partition: {e}")))?;
            let decoded = record_batch::decode_batch(batch)
                .map_err(|e| ApiError::Internal(format!("decoding stored batch: {e}")))?;
            records.extend(decoded.into_iter().filter(|r| r.offset >= next));
        }
        match records.last() {
            Some(last) if last.offset >= next => next = last.offset + 1,
            _ => break,
        }
    }
    records.truncate(query.limit);

    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let key = key_format
            .render(r.key.as_deref())
            .map_err(|e| ApiError::UnrenderableRecord(format!("offset {} key: {e}", r.offset)))?;
        let value = value_format
            .render(r.value.as_deref())
            .map_err(|e| ApiError::UnrenderableRecord(format!("offset {} value: {e}", r.offset)))?;
        let headers = r
            .headers
            .iter()
            .map(|(key, value)| HeaderOut {
                key,
                value: value.as_ref().map(|v| match std::str::from_utf8(v) {
                    Ok(text) => HeaderValueOut::Text(text.to_string()),
                    Err(_) => HeaderValueOut::Bytes {
                        base64: base64::engine::general_purpose::STANDARD.encode(v),
                    },
                }),
            })
            .collect();
        out.push(RecordOut {
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(HttpResponse::Ok().json(RecordsResponse { records: out }))
}
