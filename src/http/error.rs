//! [`ApiError`]: every way an HTTP request can fail, and — in exactly one place — the status
//! code and `error_code` each maps to. Core errors (log, topics) are converted here; they know
//! nothing of HTTP themselves.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use rill_actors::error::{LogError, TopicError};

use crate::backend::BackendError;
use crate::quota::RateLimit;
use serde::Serialize;

/// The JSON body of every error answer.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error_code: &'a str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// The body is JSON but not the expected shape, or a parameter is invalid.
    #[error("{0}")]
    InvalidRequest(String),
    /// Auth is on and the key is missing or wrong.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The key may not use this topic.
    #[error("this API key may not use topic {0}")]
    Forbidden(String),
    #[error("topic {0} not found")]
    TopicNotFound(String),
    #[error("{0}")]
    PartitionNotFound(String),
    #[error("request {0} not found")]
    RequestNotFound(String),
    /// No route has this path.
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// The client did not send the whole body within `[server] body_read_timeout_ms`.
    #[error("{0}")]
    RequestTimeout(String),
    /// The body is over `max_request_bytes`; it was not read past the limit.
    #[error("request body is larger than max_request_bytes ({limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A read below the log start.
    #[error("{0}")]
    OffsetOutOfRange(String),
    /// Stored bytes cannot be shown in the asked format.
    #[error("{0}")]
    UnrenderableRecord(String),
    /// The `Idempotency-Key` was used before, with another body or options.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// A request with the same `Idempotency-Key` is being handled; retry after it.
    #[error("{0}")]
    IdempotencyKeyInProgress(String),
    /// A queue, budget or the key's quota is full; the client should retry after
    /// `retry_after_secs`. `rate_limit` is the key's rate limit, answered as `RateLimit-*`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
        rate_limit: Option<RateLimit>,
    },
    /// Shutting down, or storage failed.
    #[error("{0}")]
    Unavailable(String),
    /// A sync request passed its `timeout_ms`.
    #[error("{0}")]
    Timeout(String),
    /// Disk full: nothing of the request was acknowledged.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A bug or an unexpected failure; the message says what.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn error_code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TopicNotFound(_) => "topic_not_found",
            ApiError::PartitionNotFound(_) => "partition_not_found",
            ApiError::RequestNotFound(_) => "request_not_found",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TopicAlreadyExists(_) => "topic_already_exists",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::OffsetOutOfRange(_) => "offset_out_of_range",
            ApiError::UnrenderableRecord(_) => "unrenderable_record",
            ApiError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            ApiError::IdempotencyKeyInProgress(_) => "idempotency_key_in_progress",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TopicNotFound(_)
            | ApiError::PartitionNotFound(_)
            | ApiError::RequestNotFound(_)
            | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TopicAlreadyExists(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::OffsetOutOfRange(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::UnrenderableRecord(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyInProgress(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::TooManyRequests {
                retry_after_secs,
                rate_limit,
                ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                if let Some(rate_limit) = rate_limit {
                    rate_limit.insert_into(&mut response);
                }
            }
            ApiError::Unavailable(_) | ApiError::IdempotencyKeyInProgress(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            // The rest of the body was never read: close the connection rather than read
            // (or drain) what may be an endless upload.
            ApiError::PayloadTooLarge { .. } | ApiError::RequestTimeout(_) => {
                response.force_close();
            }
            _ => {}
        }
        response.json(ErrorBody {
            error_code: self.error_code(),
            message: self.to_string(),
        })
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::DiskFull { .. } => ApiError::InsufficientStorage(format!(
                "{e}; nothing of this request was acknowledged"
            )),
            LogError::OffsetOutOfRange { .. } => ApiError::OffsetOutOfRange(e.to_string()),
            LogError::FailStopped { .. } | LogError::Io { .. } | LogError::ShutDown => {
                ApiError::Unavailable(e.to_string())
            }
            LogError::Corrupt { .. } => ApiError::Internal(e.to_string()),
            LogError::InvalidBatch(_) | LogError::BatchTooLarge { .. } => {
                ApiError::InvalidRequest(e.to_string())
            }
        }
    }
}

impl From<TopicError> for ApiError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::AlreadyExists(name) => ApiError::TopicAlreadyExists(name),
            TopicError::NotFound(name) => ApiError::TopicNotFound(name),
            TopicError::InvalidConfig(message) => ApiError::InvalidRequest(message),
            TopicError::Log(log) => log.into(),
            TopicError::Metadata { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::TopicNotFound(name) => ApiError::TopicNotFound(name),
            BackendError::Log(e) => e.into(),
            BackendError::Topic(e) => e.into(),
            BackendError::Unavailable(message) => ApiError::Unavailable(message),
            BackendError::Rejected {
                code,
                message,
                retriable,
            } => match code {
                "partition_not_found" => ApiError::PartitionNotFound(message),
                "offset_out_of_range" => ApiError::OffsetOutOfRange(message),
                "topic_already_exists" => ApiError::TopicAlreadyExists(message),
                "invalid_config" => ApiError::InvalidRequest(message),
                _ if retriable => ApiError::Unavailable(message),
                _ => ApiError::Internal(message),
            },
        }
    }
}
