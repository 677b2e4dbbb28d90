//! Liveness, readiness, metrics and the OpenAPI document — the routes that stay open when
//! auth is on — plus the middleware that counts every request for `/metrics`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};
use serde_json::json;

use crate::app::AppState;

/// `GET /healthz`: the process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while the broker takes produce requests; 503 once it is shutting down.
/// (The data dir is recovered before the server binds, so a listening broker is ready.)
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_shutting_down() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}))
    } else if !state.backend.is_ready().await {
        HttpResponse::ServiceUnavailable().json(json!({"status": "backend_unavailable"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    }
}

/// `GET /metrics`: Prometheus text format. Gauges of actor-owned state are read now.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some(counts) = state.status.counts().await {
        let gauge = &state.metrics.async_requests;
        gauge
            .with_label_values(&["unfinished"])
            .set(counts.unfinished as i64);
        gauge
            .with_label_values(&["finished"])
            .set(counts.finished as i64);
    }
    for topic in state.backend.list().await.unwrap_or_default() {
        let Ok(described) = state.backend.describe(topic.name.as_str()).await else {
            continue;
        };
        for p in &described.partitions {
            let labels = [topic.name.as_str(), &p.partition.to_string()];
            state
                .metrics
                .partition_end_offset
                .with_label_values(&labels)
                .set(p.end_offset);
            if let Some(bytes) = p.bytes {
                state
                    .metrics
                    .partition_bytes
                    .with_label_values(&labels)
                    .set(bytes as i64);
            }
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::http::OPENAPI_JSON)
}

/// Middleware: counts requests by method, route template (not raw path: bounded label
/// values) and status.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let result = next.call(req).await;
    if let Some(state) = state {
        let (route, status) = match &result {
            Ok(res) => (
                res.request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into()),
                res.status().as_u16(),
            ),
            Err(e) => (
                "unmatched".into(),
                e.as_response_error().status_code().as_u16(),
            ),
        };
        state
            .metrics
            .http_requests
            .with_label_values(&[method.as_str(), &route, &status.to_string()])
            .inc();
    }
    result
}
