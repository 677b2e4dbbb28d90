//! The HTTP front: one file per resource, each handler thin — parse, check, call the core —
//! and every failure an [`error::ApiError`] mapped to status and `error_code` in one place.

pub mod error;
pub mod health;
pub mod produce;
pub mod records;
pub mod status;
pub mod topics;

use actix_web::web;

use error::ApiError;

/// Every route the server answers, as `(method, path template)`. The OpenAPI document
/// (docs/openapi.json) must describe exactly these; a test keeps the two equal.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/topics/{topic}/produce"),
    ("GET", "/api/produce/status/{request_id}"),
    ("GET", "/api/topics"),
    ("POST", "/api/topics"),
    ("GET", "/api/topics/{topic}"),
    ("DELETE", "/api/topics/{topic}"),
    ("GET", "/api/topics/{topic}/partitions/{partition}/records"),
    ("GET", "/api/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The OpenAPI 3 document, served as checked in.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// Registers every route of [`ROUTES`] and makes extractor failures JSON errors too.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default().error_handler(|err, _| {
            ApiError::InvalidRequest(format!("query string: {err}")).into()
        }),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::InvalidRequest(format!("path: {err}")).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .limit(1 << 20)
            .error_handler(|err, _| {
                use actix_web::error::JsonPayloadError;
                match err {
                    JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
                        "Content-Type must be application/json".into(),
                    ),
                    JsonPayloadError::Overflow { limit }
                    | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                        ApiError::PayloadTooLarge { limit }
                    }
                    JsonPayloadError::Deserialize(e) if e.is_data() => {
                        ApiError::InvalidRequest(format!("request body: {e}"))
                    }
                    other => {
                        ApiError::InvalidJson(format!("request body is not valid JSON: {other}"))
                    }
                }
                .into()
            }),
    )
    .route(
        "/api/topics/{topic}/produce",
        web::post().to(produce::produce),
    )
    .route(
        "/api/produce/status/{request_id}",
        web::get().to(status::get_status),
    )
    .route("/api/topics", web::get().to(topics::list))
    .route("/api/topics", web::post().to(topics::create))
    .route("/api/topics/{topic}", web::get().to(topics::describe))
    .route("/api/topics/{topic}", web::delete().to(topics::delete))
    .route(
        "/api/topics/{topic}/partitions/{partition}/records",
        web::get().to(records::read),
    )
    .route("/api/openapi.json", web::get().to(health::openapi))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics));
}

/// Answer for paths no route matches (and wrong methods on known paths).
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let known_path = ROUTES
        .iter()
        .any(|(_, template)| path_matches(template, req.path()));
    Err(if known_path {
        ApiError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.path()))
    } else {
        ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))
    })
}

/// Whether `path` fits `template` (`{name}` matches one non-empty segment).
fn path_matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[test]
    fn path_templates_match_one_segment_per_parameter() {
        assert!(path_matches("/api/topics/{topic}", "/api/topics/orders"));
        assert!(!path_matches("/api/topics/{topic}", "/api/topics/"));
        assert!(!path_matches("/api/topics/{topic}", "/api/topics/a/b"));
        assert!(path_matches("/healthz", "/healthz"));
    }
}
