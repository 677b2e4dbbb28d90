//! `GET /api/produce/status/{request_id}`: the state of an async produce request.

use actix_web::{web, HttpResponse};
use rill_actors::status::GetStatus;

use crate::app::AppState;
use crate::auth::Caller;
use crate::http::answer;
use crate::http::error::ApiError;

pub async fn get_status(
    state: web::Data<AppState>,
    caller: Caller,
    request_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id.into_inner();
    let found = state
        .status
        .send(GetStatus {
            request_id: request_id.clone(),
        })
        .await
        .map_err(|_| ApiError::Unavailable("status actor stopped".into()))?;
    match found {
        // A key scoped to other topics learns nothing, not even that the id exists.
        Some(request) if caller.allows(request.topic.as_str()) => Ok(HttpResponse::Ok()
            .insert_header(actix_web::http::header::ContentType::json())
            .body(answer::status_answer(&request))),
        _ => Err(ApiError::RequestNotFound(request_id)),
    }
}
