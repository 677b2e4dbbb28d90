//! `POST /api/topics/{topic}/produce`: sync and async produce.
//!
//! Checks run cheapest first and before the body is read: auth (middleware), scope, the key's
//! quota (see `quota.rs`), topic, content type, declared length, the in-flight byte budget.
//! Then the body is read up to `max_request_bytes`, parsed, turned into batches on this worker
//! (see `produce.rs`), and handed to this worker's producer actor. The key's quota is charged
//! the body's bytes before it is read and its records once parsed.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use rill_actors::compression::Compression;
use rill_actors::partition::now_ms;
use rill_actors::producer::PartitionBatch;
use rill_actors::status::{Finish, MarkProcessing, RecordResult, Register, RequestStatus};
use rill_actors::types::TopicName;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

use crate::app::AppState;
use crate::auth::Caller;
use crate::backend::{BackendError, BatchOutcome, TopicMeta};
use crate::http::error::ApiError;
use crate::produce::{parse_body, prepare, PreparedProduce, ProduceSettings, ITEM_OVERHEAD_BYTES};
use crate::quota::Admission;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceQuery {
    #[serde(default)]
    compression: Option<String>,
    #[serde(default, rename = "async")]
    is_async: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The sync answer: one entry per input record, in input order.
#[derive(Serialize)]
struct ProduceResponse<'a> {
    topic: &'a str,
    offsets: &'a [RecordResult],
}

#[derive(Serialize)]
struct AsyncAccepted<'a> {
    request_id: &'a str,
    status: RequestStatus,
    status_url: &'a str,
}

pub async fn produce(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    topic: web::Path<String>,
    query: web::Query<ProduceQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let arrived = Instant::now();
    if state.is_shutting_down() {
        return Err(ApiError::Unavailable("broker is shutting down".into()));
    }
    caller.check(&topic)?;
    let admission = caller.admit_produce()?;
    let topic = state
        .backend
        .topic(&topic)
        .await?
        .ok_or_else(|| ApiError::TopicNotFound(topic.into_inner()))?;
    check_content_type(&req)?;
    let query = query.into_inner();
    let compression = match query.compression.as_deref() {
        None => topic.compression,
        Some(name) => name
            .parse::<Compression>()
            .map_err(|e| ApiError::InvalidRequest(format!("compression: {e}")))?,
    };
    let is_async = match query.is_async.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "async: expected true or false, got {other:?}"
            )))
        }
    };
    let timeout = query.timeout_ms.map_or(
        state.config.producer.request_timeout(),
        Duration::from_millis,
    );
    if timeout.is_zero() {
        return Err(ApiError::InvalidRequest(
            "timeout_ms: must be positive".into(),
        ));
    }

    let limit = state.config.server.max_request_bytes;
    let declared = declared_length(&req)?;
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let reserved = declared.unwrap_or(limit);
    let permit = reserve_inflight(&state, reserved)?;
    if let Some(declared) = declared {
        admission.charge_bytes(declared);
    }
    let body = read_body(payload, declared, limit).await?;
    if declared.is_none() {
        admission.charge_bytes(body.len());
    }

    let parsed = parse_body(&body)?;
    admission.charge_records(parsed.records.len());
    // Parsed records, the batches built from them and the per-record answers take memory
    // beyond the body's bytes: charge that to the budget too.
    let expansion = reserve_expansion(&state, reserved, body.len(), parsed.items())?;
    let held = Held {
        _budget: (permit, expansion),
        admission,
    };
    let settings = ProduceSettings::resolve(
        &parsed,
        state.backend.batch_compression(compression),
        &state.schemas,
    )?;
    let record_count = parsed.records.len();
    let mut prepared = prepare(&parsed, &settings, &topic, &state.round_robin, now_ms())?;
    drop(parsed);
    drop(body);

    // `timeout_ms` is a deadline for the whole request, parsing included.
    let remaining = timeout.saturating_sub(arrived.elapsed());
    if remaining.is_zero() {
        return Err(ApiError::Timeout(format!(
            "timeout_ms ({} ms) passed before the records were appended; nothing was appended",
            timeout.as_millis()
        )));
    }
    if is_async {
        return accept_async(
            state,
            topic,
            compression,
            prepared,
            record_count,
            remaining,
            arrived,
            held,
        )
        .await;
    }
    let batches = std::mem::take(&mut prepared.batches);
    let results =
        match tokio::time::timeout(remaining, append(&state, &topic, compression, batches)).await {
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "not acknowledged within timeout_ms ({} ms); the records may still be appended",
                    timeout.as_millis()
                )))
            }
            Ok(acks) => {
                let (records, bytes) = (prepared.appended_records, prepared.batch_bytes);
                let results = prepared.complete(acks?)?;
                count_produced(&state, &topic.name, records, bytes);
                results
            }
        };
    state
        .metrics
        .produce_latency
        .with_label_values(&["sync"])
        .observe(arrived.elapsed().as_secs_f64());
    let mut response = HttpResponse::Ok();
    if let Some(rate_limit) = held.admission.rate_limit() {
        rate_limit.insert_into(&mut response);
    }
    Ok(response.json(ProduceResponse {
        topic: topic.name.as_str(),
        offsets: &results,
    }))
}

/// What a request holds until its records are appended (for async ones, past the answer):
/// its share of the in-flight byte budget and its key's in-flight slot.
struct Held {
    _budget: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    admission: Admission,
}

/// Hands the batches to the backend. `Err` only if the whole request failed.
async fn append(
    state: &AppState,
    topic: &TopicMeta,
    compression: Compression,
    batches: Vec<PartitionBatch>,
) -> Result<Vec<Result<BatchOutcome, BackendError>>, ApiError> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    Ok(state.backend.produce(topic, compression, batches).await?)
}

// The request's parts, each handed over once; a struct for them would only rename them.
#[allow(clippy::too_many_arguments)]
async fn accept_async(
    state: web::Data<AppState>,
    topic: TopicMeta,
    compression: Compression,
    mut prepared: PreparedProduce,
    record_count: usize,
    timeout: Duration,
    arrived: Instant,
    held: Held,
) -> Result<HttpResponse, ApiError> {
    let request_id = ulid::Ulid::new().to_string();
    state
        .status
        .send(Register {
            request_id: request_id.clone(),
            topic: topic.name.clone(),
            record_count,
        })
        .await
        .map_err(|_| ApiError::Unavailable("status actor stopped".into()))?
        .map_err(|full| ApiError::TooManyRequests {
            message: format!("{full}; retry later"),
            retry_after_secs: 1,
            rate_limit: None,
        })?;
    let rate_limit = held.admission.rate_limit();
    let id = request_id.clone();
    let task_state = state.clone();
    actix_web::rt::spawn(async move {
        // The batches stay in memory until appended: so does their share of the budget, and
        // the request counts against its key's max_inflight until then.
        let _held = held;
        let state = task_state;
        state.status.do_send(MarkProcessing {
            request_id: id.clone(),
        });
        let (records, bytes) = (prepared.appended_records, prepared.batch_bytes);
        let batches = std::mem::take(&mut prepared.batches);
        let outcome =
            tokio::time::timeout(timeout, append(&state, &topic, compression, batches)).await;
        let finish = match outcome {
            Err(_) => Finish {
                request_id: id,
                status: RequestStatus::Timeout,
                offsets: Vec::new(),
                error: Some(format!(
                    "not acknowledged within timeout_ms ({} ms)",
                    timeout.as_millis()
                )),
            },
            Ok(acks) => match acks.and_then(|acks| prepared.complete(acks)) {
                Ok(results) => {
                    count_produced(&state, &topic.name, records, bytes);
                    Finish {
                        request_id: id,
                        status: RequestStatus::Completed,
                        offsets: results,
                        error: None,
                    }
                }
                Err(e) => Finish {
                    request_id: id,
                    status: RequestStatus::Failed,
                    offsets: Vec::new(),
                    error: Some(format!("{}: {e}", e.error_code())),
                },
            },
        };
        state
            .metrics
            .produce_latency
            .with_label_values(&["async"])
            .observe(arrived.elapsed().as_secs_f64());
        state.status.do_send(finish);
    });
    let status_url = format!("/api/produce/status/{request_id}");
    let mut response = HttpResponse::Accepted();
    if let Some(rate_limit) = rate_limit {
        rate_limit.insert_into(&mut response);
    }
    Ok(response
        .insert_header((header::LOCATION, status_url.clone()))
        .json(AsyncAccepted {
            request_id: &request_id,
            status: RequestStatus::Pending,
            status_url: &status_url,
        }))
}

fn count_produced(state: &AppState, topic: &TopicName, records: usize, bytes: usize) {
    let labels = [topic.as_str()];
    state
        .metrics
        .records_produced
        .with_label_values(&labels)
        .inc_by(records as u64);
    state
        .metrics
        .bytes_produced
        .with_label_values(&labels)
        .inc_by(bytes as u64);
}

/// JSON only: `application/json` or any `application/*+json`, charset allowed.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, got {:?}",
            if value.is_empty() { "none" } else { value }
        )))
    }
}

fn declared_length(req: &HttpRequest) -> Result<Option<usize>, ApiError> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .ok_or_else(|| ApiError::InvalidRequest("Content-Length: not a number".into())),
    }
}

/// Takes `bytes` from the in-flight budget for the life of the request, or answers 429.
fn reserve_inflight(state: &AppState, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
    let permits = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    state
        .inflight_bytes
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| ApiError::TooManyRequests {
            message: "in-flight request bytes are at max_inflight_bytes; retry later".into(),
            retry_after_secs: 1,
            rate_limit: None,
        })
}

/// Takes from the in-flight budget what a parsed request needs beyond the `reserved` bytes
/// already taken for its body: about the body again (the batches are built while the body is
/// still held) plus [`ITEM_OVERHEAD_BYTES`] per record and header. Never more than the whole
/// budget minus `reserved`, so a request that fits `max_request_bytes` can always run alone.
fn reserve_expansion(
    state: &AppState,
    reserved: usize,
    body_len: usize,
    items: usize,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let budget = usize::try_from(state.config.producer.max_inflight_bytes).unwrap_or(usize::MAX);
    let needed = body_len
        .saturating_mul(2)
        .saturating_add(items.saturating_mul(ITEM_OVERHEAD_BYTES));
    let extra = needed
        .saturating_sub(reserved)
        .min(budget.saturating_sub(reserved));
    if extra == 0 {
        return Ok(None);
    }
    reserve_inflight(state, extra).map(Some)
}

/// Reads the body, refusing it as soon as it passes `limit` (the rest is never read).
async fn read_body(
    mut payload: web::Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::with_capacity(declared.unwrap_or(8192).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(super::body_error)?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
