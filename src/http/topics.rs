//! Topic administration: list, create, describe, delete.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use rill_actors::compression::Compression;
use rill_actors::types::{FlushPolicy, TopicConfig, TopicName};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::backend::TopicDescription;
use crate::http::error::ApiError;
use crate::produce::JsonObject;

#[derive(Serialize)]
struct TopicSummary<'a> {
    name: &'a str,
    partitions: u32,
}

/// `GET /api/topics`: the topics this caller may use.
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let topics = state.backend.list().await?;
    let visible: Vec<TopicSummary> = topics
        .iter()
        .filter(|t| caller.allows(t.name.as_str()))
        .map(|t| TopicSummary {
            name: t.name.as_str(),
            partitions: t.partitions,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "topics": visible })))
}

/// A topic's settings as the API shows and accepts them (`-1` = unlimited, as in broker.toml).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
}

impl TopicSettings {
    fn of(config: &TopicConfig) -> Self {
        let (flush, interval) = match config.log.flush {
            FlushPolicy::Always => ("always", None),
            FlushPolicy::Interval { interval_ms } => ("interval", Some(interval_ms)),
            FlushPolicy::Os => ("os", None),
        };
        Self {
            partitions: Some(config.partitions),
            compression: Some(config.compression),
            retention_ms: Some(config.log.retention_ms.unwrap_or(-1)),
            retention_bytes: Some(config.log.retention_bytes.map_or(-1, |b| b as i64)),
            segment_bytes: Some(config.log.segment_bytes),
            flush: Some(flush.to_string()),
            flush_interval_ms: interval,
        }
    }

    /// Applies these settings over `base` (the broker's defaults), naming any bad field.
    fn apply(self, mut base: TopicConfig) -> Result<TopicConfig, ApiError> {
        let bad = |field: &str, why: &str| ApiError::InvalidRequest(format!("{field}: {why}"));
        if let Some(p) = self.partitions {
            base.partitions = p;
        }
        if let Some(c) = self.compression {
            base.compression = c;
        }
        if let Some(ms) = self.retention_ms {
            base.log.retention_ms = match ms {
                -1 => None,
                ms if ms > 0 => Some(ms),
                _ => return Err(bad("config.retention_ms", "must be positive or -1")),
            };
        }
        if let Some(bytes) = self.retention_bytes {
            base.log.retention_bytes = match bytes {
                -1 => None,
                b if b > 0 => Some(b as u64),
                _ => return Err(bad("config.retention_bytes", "must be positive or -1")),
            };
        }
        if let Some(bytes) = self.segment_bytes {
            base.log.segment_bytes = bytes;
        }
        let interval = self.flush_interval_ms.unwrap_or(1000);
        if interval == 0 {
            return Err(bad("config.flush_interval_ms", "must be positive"));
        }
        // The API documents an int64; u64 would take 2^63 and up.
        if interval > i64::MAX as u64 {
            return Err(bad(
                "config.flush_interval_ms",
                "must be at most 9223372036854775807",
            ));
        }
        match self.flush.as_deref() {
            None => {}
            Some("always") => base.log.flush = FlushPolicy::Always,
            Some("os") => base.log.flush = FlushPolicy::Os,
            Some("interval") => {
                base.log.flush = FlushPolicy::Interval {
                    interval_ms: interval,
                }
            }
            Some(_) => {
                return Err(bad(
                    "config.flush",
                    "must be one of \"always\", \"interval\", \"os\"",
                ))
            }
        }
        Ok(base)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    name: String,
    #[serde(default)]
    partitions: Option<u32>,
    #[serde(default)]
    config: JsonObject<TopicSettings>,
}

/// `POST /api/topics`.
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<JsonObject<CreateTopic>>,
) -> Result<HttpResponse, ApiError> {
    let JsonObject(body) = body.into_inner();
    let name = TopicName::new(body.name.clone())
        .map_err(|e| ApiError::InvalidRequest(format!("name: {e}")))?;
    caller.check(name.as_str())?;
    let JsonObject(mut settings) = body.config;
    if body.partitions.is_some() {
        // The shorthand wins, but a `config.partitions` out of range is still an error.
        if let Some(p) = settings.partitions {
            if !(1..=crate::config::MAX_PARTITIONS).contains(&p) {
                return Err(ApiError::InvalidRequest(format!(
                    "config.partitions: must be 1..={}, got {p}",
                    crate::config::MAX_PARTITIONS
                )));
            }
        }
        settings.partitions = body.partitions;
    }
    let config = settings.apply(state.config.default_topic_config())?;
    if state.config.backend.kind == crate::config::BackendKind::Local {
        check_open_file_headroom(config.partitions)?;
    }
    let created = state.backend.create(name, config).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/topics/{}", created.meta.name),
        ))
        .json(description_json(&created)))
}

/// Files each partition of the embedded log keeps open: its active segment and its index.
const FILES_PER_PARTITION: u64 = 2;

/// 507 if creating `partitions` partitions would take the process near its open-file limit.
///
/// Every partition holds files open for its whole life, so one request for 10,000 partitions
/// takes 20,000 descriptors: past the limit, the broker can no longer accept connections or
/// roll segments, for every client. A quarter of the limit (at least 1024) is kept for those.
fn check_open_file_headroom(partitions: u32) -> Result<(), ApiError> {
    let Some((limit, open)) = open_files() else {
        return Ok(());
    };
    let reserve = (limit / 4).max(1024);
    let needed = u64::from(partitions) * FILES_PER_PARTITION;
    if open + needed + reserve > limit {
        return Err(ApiError::InsufficientStorage(format!(
            "{partitions} partitions need {needed} open files; the broker has {open} of its limit of {limit} open and keeps {reserve} for connections: create fewer partitions or raise the open-file limit (ulimit -n)"
        )));
    }
    Ok(())
}

/// The soft open-file limit and the number of files open now, where /proc tells them.
fn open_files() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    // "Max open files            20000                20000                files"
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((soft, open))
}

fn description_json(topic: &TopicDescription) -> serde_json::Value {
    let partitions: Vec<_> = topic
        .partitions
        .iter()
        .map(|p| {
            serde_json::json!({
                "partition": p.partition,
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "bytes": p.bytes,
            })
        })
        .collect();
    serde_json::json!({
        "name": topic.meta.name,
        "partitions": partitions,
        "config": TopicSettings::of(&topic.config),
    })
}

/// `GET /api/topics/{topic}`.
pub async fn describe(
    state: web::Data<AppState>,
    caller: Caller,
    topic: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.check(&topic)?;
    let described = state.backend.describe(&topic).await?;
    Ok(HttpResponse::Ok().json(description_json(&described)))
}

/// `DELETE /api/topics/{topic}`.
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    topic: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.check(&topic)?;
    state.backend.delete(&topic).await?;
    state.idempotency.forget_topic(&topic);
    Ok(HttpResponse::NoContent().finish())
}
