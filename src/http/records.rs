//! `GET /api/topics/{topic}/partitions/{partition}/records`: reading a partition back, each
//! key and value rendered in the asked format.

use actix_web::{web, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::formats::{Format, RecordFormat, Rendered};
use crate::http::error::ApiError;

/// The most records one read returns.
pub const MAX_LIMIT: usize = 10_000;

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
        .backend
        .topic(&topic_name)
        .await?
        .ok_or_else(|| ApiError::TopicNotFound(topic_name.clone()))?;
    let partition: i32 = partition_text
        .parse()
        .ok()
        .filter(|p| (0..topic.partitions as i32).contains(p))
        .ok_or_else(|| {
            ApiError::PartitionNotFound(format!(
                "partition {partition_text} of topic {topic_name} not found"
            ))
        })?;
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
    // A schema given with a format other than avro is ignored, as in a produce request.
    let schema_for = |format: Format, schema: Option<&str>| -> Option<String> {
        schema.filter(|_| format == Format::Avro).map(str::to_owned)
    };
    let key_format = RecordFormat::new(
        query.key_format,
        schema_for(query.key_format, query.key_schema.as_deref()).as_deref(),
        &state.schemas,
    )
    .map_err(|e| ApiError::InvalidRequest(format!("key_format: {e}")))?;
    let value_format = RecordFormat::new(
        query.value_format,
        schema_for(query.value_format, query.value_schema.as_deref()).as_deref(),
        &state.schemas,
    )
    .map_err(|e| ApiError::InvalidRequest(format!("value_format: {e}")))?;

    let records = state
        .backend
        .read(&topic_name, partition, query.offset, query.limit)
        .await?;

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
