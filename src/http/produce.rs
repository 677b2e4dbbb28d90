//! `POST /api/topics/{topic}/produce`: sync and async produce.
//!
//! Checks run cheapest first and before the body is read: auth (middleware), scope, topic,
//! content type, declared length, the in-flight byte budget. Then the body is read up to
//! `max_request_bytes`, parsed, turned into batches on this worker (see `produce.rs`), and
//! handed to this worker's producer actor.

use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rill_actors::compression::Compression;
use rill_actors::idempotency::{DigestKind, IdempotencyTag};
use rill_actors::partition::now_ms;
use rill_actors::producer::PartitionBatch;
use rill_actors::status::{
    Finish, MarkProcessing, PendingSlot, Register, RequestStatus, StatusActor,
};
use rill_actors::types::{Offset, PartitionId, TopicName};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

use crate::app::AppState;
use crate::auth::Caller;
use crate::backend::{BackendError, BatchOutcome, TopicMeta};
use crate::http::body::{read_body, ContentCoding};
use crate::http::error::ApiError;
use crate::http::{answer, status};
use crate::idempotency::{self, BatchRef, Begin};
use crate::partitioner::RoundRobin;
use crate::produce::{parse_body, prepare, PreparedProduce, ProduceSettings, ITEM_OVERHEAD_BYTES};
use crate::quota::{Admission, RateLimit};

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

    let idempotency_key = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => Some(
            idempotency::parse_key(value.as_bytes())
                .map_err(ApiError::InvalidRequest)?
                .to_string(),
        ),
    };

    let limit = state.config.server.max_request_bytes;
    let declared = declared_length(&req)?;
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let coding = ContentCoding::of(req.headers())?;
    let reserved = declared.unwrap_or(limit);
    let mut charge = InflightCharge {
        permit: reserve_inflight(&state, reserved)?,
        reserved,
    };
    // The key's byte quota counts bytes on the wire (compressed, if they are).
    if let Some(declared) = declared {
        admission.charge_bytes(declared);
    }
    let mut received = 0;
    let body = read_body(payload, coding, declared, limit, &mut received, |decoded| {
        charge.grow_to(&state, decoded)
    })
    .await?;
    if declared.is_none() {
        admission.charge_bytes(received);
    }

    let parsed = parse_body(&body)?;
    admission.charge_records(parsed.records.len());
    // Parsed records, the batches built from them and the per-record answers take memory
    // beyond the body's bytes: charge that to the budget too.
    let expansion = reserve_expansion(&state, charge.reserved, body.len(), parsed.items())?;
    let held = Held {
        _budget: (charge.permit, expansion),
        admission,
    };
    let settings = ProduceSettings::resolve(
        &parsed,
        state.backend.batch_compression(compression),
        &state.schemas,
    )?;
    let record_count = parsed.records.len();

    // With an Idempotency-Key, the request is entered in the table (or found there) before
    // anything is built: its arrival time and round-robin start must be the first attempt's.
    let idempotent = match idempotency_key {
        None => None,
        Some(key) => {
            let now = now_ms();
            // The body's digest made either way: new entries use XXH3, and the table asks for
            // the other kind only to check a retry against an entry journaled with it.
            let digest_as =
                |kind| idempotency::body_digest(kind, &body, compression.name(), is_async);
            let fresh = IdempotencyTag {
                key_hash: idempotency::key_hash(caller.id(), topic.name.as_str(), &key),
                body_digest: digest_as(DigestKind::Xxh3),
                digest_kind: DigestKind::Xxh3,
                request_id: if is_async {
                    status::new_request_id().to_bytes()
                } else {
                    [0; 16]
                },
                created_ms: now,
            };
            let begun = state
                .idempotency
                .begin(topic.name.as_str(), fresh, now, digest_as);
            let (tag, landed) = match begun {
                Begin::Fresh => (fresh, Vec::new()),
                Begin::Retry { tag, landed } => (tag, landed),
                Begin::InProgress => {
                    return Err(ApiError::IdempotencyKeyInProgress(format!(
                        "Idempotency-Key {key:?}: a request with this key is being handled; retry once it is answered"
                    )))
                }
                Begin::Reused => {
                    return Err(ApiError::IdempotencyKeyReused(format!(
                        "Idempotency-Key {key:?} was used for a request with another body or options"
                    )))
                }
            };
            let settle = Settle {
                state: state.clone(),
                key_hash: tag.key_hash,
                landed: Vec::new(),
            };
            Some((tag, landed, settle))
        }
    };
    let (mut prepared, idempotent) = match idempotent {
        None => (
            prepare(
                &parsed,
                &settings,
                &topic,
                &state.round_robin,
                now_ms(),
                None,
            )?,
            None,
        ),
        Some((tag, landed, settle)) => {
            let round_robin =
                RoundRobin::starting_at(idempotency::round_robin_start(&tag.key_hash));
            let prepared = prepare(
                &parsed,
                &settings,
                &topic,
                &round_robin,
                tag.created_ms,
                Some(&tag),
            )?;
            (prepared, Some((tag, landed, settle)))
        }
    };
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
    if let Some((tag, landed, settle)) = idempotent {
        return produce_idempotent(
            state,
            topic,
            compression,
            prepared,
            IdempotentRequest {
                tag,
                landed,
                settle,
                is_async,
                record_count,
            },
            remaining,
            arrived,
            held,
        )
        .await;
    }
    if is_async {
        let request_id = status::new_request_id().to_string();
        let job = AsyncJob {
            topic,
            compression,
            prepared,
            record_count,
        };
        return start_async(state, job, request_id, remaining, arrived, held, None).await;
    }
    let batches = std::mem::take(&mut prepared.batches);
    let results =
        match tokio::time::timeout(remaining, append(&state, &topic, compression, batches)).await {
            Err(_) => return Err(not_acknowledged(timeout)),
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
    Ok(
        with_rate_limit(HttpResponse::Ok(), held.admission.rate_limit())
            .insert_header(header::ContentType::json())
            .body(answer::sync_answer(topic.name.as_str(), &results)),
    )
}

fn not_acknowledged(timeout: Duration) -> ApiError {
    ApiError::Timeout(format!(
        "not acknowledged within timeout_ms ({} ms); the records may still be appended",
        timeout.as_millis()
    ))
}

/// Ends an idempotent request in the table when dropped — whichever way the request ends
/// (answered, failed, timed out, its task cancelled) — with the batches known to have landed.
struct Settle {
    state: web::Data<AppState>,
    key_hash: [u8; 16],
    landed: Vec<BatchRef>,
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.state.idempotency.settle(&self.key_hash, &self.landed);
    }
}

/// What the idempotent path needs beyond an ordinary request.
struct IdempotentRequest {
    tag: IdempotencyTag,
    /// The batches an earlier attempt already put in the log.
    landed: Vec<BatchRef>,
    settle: Settle,
    is_async: bool,
    record_count: usize,
}

/// A request with an `Idempotency-Key`. Batches an earlier attempt landed are answered from
/// the table; the rest are appended (all of them, the first time) by a task of their own, so
/// that the table learns where they landed even when this request times out.
// The request's parts, each handed over once; a struct for them would only rename them.
#[allow(clippy::too_many_arguments)]
async fn produce_idempotent(
    state: web::Data<AppState>,
    topic: TopicMeta,
    compression: Compression,
    mut prepared: PreparedProduce,
    request: IdempotentRequest,
    remaining: Duration,
    arrived: Instant,
    held: Held,
) -> Result<HttpResponse, ApiError> {
    let IdempotentRequest {
        tag,
        landed,
        mut settle,
        is_async,
        record_count,
    } = request;
    let original_id =
        (tag.request_id != [0; 16]).then(|| ulid::Ulid::from_bytes(tag.request_id).to_string());
    let first_attempt = landed.is_empty();
    if is_async && first_attempt {
        let request_id = original_id.expect("an async request has an id");
        let job = AsyncJob {
            topic,
            compression,
            prepared,
            record_count,
        };
        return start_async(
            state,
            job,
            request_id,
            remaining,
            arrived,
            held,
            Some(settle),
        )
        .await;
    }
    if let Some(request_id) = &original_id {
        // An async retry: the original's status, if the status actor still has it.
        let known = status::find(&state, request_id)
            .await
            .ok()
            .flatten()
            .is_some();
        if known {
            return Ok(accepted(request_id, held.admission.rate_limit()));
        }
    }

    // Which batches still have to be appended; the others are answered from the table.
    let mut outcomes: Vec<Option<Result<BatchOutcome, BackendError>>> =
        Vec::with_capacity(prepared.batches.len());
    let mut to_append = Vec::new();
    let mut append_index = Vec::new();
    for (i, batch) in std::mem::take(&mut prepared.batches)
        .into_iter()
        .enumerate()
    {
        match landed.iter().find(|b| b.partition == batch.partition) {
            Some(found) if found.record_count as usize != prepared.batch_len(i) => {
                return Err(ApiError::Internal(format!(
                    "idempotent retry: partition {} holds {} records of this request, it now has {}",
                    batch.partition,
                    found.record_count,
                    prepared.batch_len(i)
                )))
            }
            Some(found) => outcomes.push(Some(Ok(match &found.offsets {
                None => BatchOutcome::Appended {
                    base_offset: found.base_offset,
                },
                Some(offsets) => BatchOutcome::PerRecord(offsets.iter().map(|&o| Ok(o)).collect()),
            }))),
            None => {
                outcomes.push(None);
                append_index.push(i);
                to_append.push(batch);
            }
        }
    }
    settle.landed.extend(landed);
    let appended_now: Vec<(usize, Result<BatchOutcome, BackendError>)> = if to_append.is_empty() {
        drop(settle);
        Vec::new()
    } else {
        let sizes: Vec<u32> = append_index
            .iter()
            .map(|&i| prepared.batch_len(i) as u32)
            .collect();
        let partitions: Vec<PartitionId> = to_append.iter().map(|b| b.partition).collect();
        let task_state = state.clone();
        let task_topic = topic.clone();
        let task = actix_web::rt::spawn(async move {
            let result = append(&task_state, &task_topic, compression, to_append).await;
            if let Ok(outcomes) = &result {
                for ((outcome, &partition), &record_count) in
                    outcomes.iter().zip(&partitions).zip(&sizes)
                {
                    if let Some(batch) = landed_batch(partition, record_count, outcome) {
                        settle.landed.push(batch);
                    }
                }
            }
            drop(settle);
            result
        });
        match tokio::time::timeout(remaining, task).await {
            Err(_) => return Err(not_acknowledged(remaining)),
            Ok(Err(join)) => return Err(ApiError::Internal(format!("append task failed: {join}"))),
            Ok(Ok(result)) => append_index.into_iter().zip(result?).collect(),
        }
    };
    for (i, outcome) in appended_now {
        outcomes[i] = Some(outcome);
    }
    let outcomes: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.expect("every batch answered"))
        .collect();
    let (records, bytes) = (prepared.appended_records, prepared.batch_bytes);
    let results = prepared.complete(outcomes)?;
    if first_attempt {
        count_produced(&state, &topic.name, records, bytes);
    }
    let rate_limit = held.admission.rate_limit();
    drop(held);
    if let Some(request_id) = original_id {
        // An async request retried after its status was forgotten (a restart, or past
        // status_ttl_secs): its status is made anew under the same id.
        let (_slot, actor) = register_async(&state, &request_id, &topic, record_count)?;
        actor.do_send(Finish {
            request_id: request_id.clone(),
            status: RequestStatus::Completed,
            offsets: results,
            error: None,
        });
        return Ok(accepted(&request_id, rate_limit));
    }
    state
        .metrics
        .produce_latency
        .with_label_values(&["sync"])
        .observe(arrived.elapsed().as_secs_f64());
    Ok(with_rate_limit(HttpResponse::Ok(), rate_limit)
        .insert_header(header::ContentType::json())
        .body(answer::sync_answer(topic.name.as_str(), &results)))
}

/// Where a batch landed, if all of it did.
fn landed_batch(
    partition: PartitionId,
    record_count: u32,
    outcome: &Result<BatchOutcome, BackendError>,
) -> Option<BatchRef> {
    match outcome {
        Ok(BatchOutcome::Appended { base_offset }) => Some(BatchRef {
            partition,
            base_offset: *base_offset,
            record_count,
            offsets: None,
        }),
        Ok(BatchOutcome::PerRecord(offsets)) => {
            let offsets: Option<Vec<Offset>> =
                offsets.iter().map(|o| o.as_ref().ok().copied()).collect();
            // A batch some of whose records failed is not remembered: a retry sends it again.
            let offsets = offsets?;
            let base_offset = *offsets.first()?;
            let contiguous = offsets
                .iter()
                .enumerate()
                .all(|(n, &o)| o == base_offset + n as Offset);
            Some(BatchRef {
                partition,
                base_offset,
                record_count,
                offsets: (!contiguous).then(|| offsets.into()),
            })
        }
        Err(_) => None,
    }
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

/// Takes the request's place under `max_pending` (or answers 429) and enters it in the status
/// actor. Keep the slot until the request's final state is sent.
fn register_async(
    state: &AppState,
    request_id: &str,
    topic: &TopicMeta,
    record_count: usize,
) -> Result<(PendingSlot, Addr<StatusActor>), ApiError> {
    let actor = status::status_actor(state, request_id)
        .filter(Addr::connected)
        .ok_or_else(|| ApiError::Unavailable("status actor stopped".into()))?;
    let slot = state
        .pending_slots
        .try_take()
        .map_err(|full| ApiError::TooManyRequests {
            message: format!("{full}; retry later"),
            retry_after_secs: 1,
            rate_limit: None,
        })?;
    actor.do_send(Register {
        request_id: request_id.to_string(),
        topic: topic.name.clone(),
        record_count,
    });
    Ok((slot, actor))
}

/// What a request holds until its records are appended (for async ones, past the answer):
/// its share of the in-flight byte budget and its key's in-flight slot.
struct Held {
    _budget: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    admission: Admission,
}

/// `RateLimit-*` headers on a success, for a key with a rate limit.
fn with_rate_limit(
    mut response: actix_web::HttpResponseBuilder,
    rate_limit: Option<RateLimit>,
) -> actix_web::HttpResponseBuilder {
    if let Some(rate_limit) = rate_limit {
        rate_limit.insert_into(&mut response);
    }
    response
}

/// An async request's work: what to append where.
struct AsyncJob {
    topic: TopicMeta,
    compression: Compression,
    prepared: PreparedProduce,
    record_count: usize,
}

/// Registers an async request, then appends its batches in the background and reports the
/// outcome to the status actor (and, for an idempotent one, to the idempotency table).
/// Answers 202, or 429 at `max_pending`.
async fn start_async(
    state: web::Data<AppState>,
    job: AsyncJob,
    request_id: String,
    timeout: Duration,
    arrived: Instant,
    held: Held,
    mut settle: Option<Settle>,
) -> Result<HttpResponse, ApiError> {
    let AsyncJob {
        topic,
        compression,
        mut prepared,
        record_count,
    } = job;
    let (slot, actor) = register_async(&state, &request_id, &topic, record_count)?;
    let answer = accepted(&request_id, held.admission.rate_limit());
    actix_web::rt::spawn(async move {
        // The batches stay in memory until appended: so does their share of the budget.
        // The request counts against its key's max_inflight until then, too.
        let _held = held;
        actor.do_send(MarkProcessing {
            request_id: request_id.clone(),
        });
        let (records, bytes) = (prepared.appended_records, prepared.batch_bytes);
        let batches = std::mem::take(&mut prepared.batches);
        let partitions: Vec<(PartitionId, u32)> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| (b.partition, prepared.batch_len(i) as u32))
            .collect();
        let outcome =
            tokio::time::timeout(timeout, append(&state, &topic, compression, batches)).await;
        if let (Some(settle), Ok(Ok(outcomes))) = (&mut settle, &outcome) {
            for (outcome, &(partition, record_count)) in outcomes.iter().zip(&partitions) {
                if let Some(batch) = landed_batch(partition, record_count, outcome) {
                    settle.landed.push(batch);
                }
            }
        }
        drop(settle);
        let finish = match outcome {
            Err(_) => Finish {
                request_id,
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
                        request_id,
                        status: RequestStatus::Completed,
                        offsets: results,
                        error: None,
                    }
                }
                Err(e) => Finish {
                    request_id,
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
        actor.do_send(finish);
        drop(slot);
    });
    Ok(answer)
}

/// The 202 answer of an async request.
fn accepted(request_id: &str, rate_limit: Option<RateLimit>) -> HttpResponse {
    let status_url = format!("/api/produce/status/{request_id}");
    let mut response = HttpResponse::Accepted();
    if let Some(rate_limit) = rate_limit {
        rate_limit.insert_into(&mut response);
    }
    response
        .insert_header((header::LOCATION, status_url.clone()))
        .json(AsyncAccepted {
            request_id,
            status: RequestStatus::Pending,
            status_url: &status_url,
        })
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

/// The share of `max_inflight_bytes` a request holds for its body.
struct InflightCharge {
    permit: OwnedSemaphorePermit,
    reserved: usize,
}

impl InflightCharge {
    /// Takes more of the budget (in steps of 1 MiB) once a compressed body decodes to more
    /// than was reserved for it; 429 if the budget has no more.
    fn grow_to(&mut self, state: &AppState, bytes: usize) -> Result<(), ApiError> {
        const STEP: usize = 1 << 20;
        if bytes <= self.reserved {
            return Ok(());
        }
        let extra = (bytes - self.reserved).div_ceil(STEP) * STEP;
        let more = reserve_inflight(state, extra)?;
        self.permit.merge(more);
        self.reserved += extra;
        Ok(())
    }
}
