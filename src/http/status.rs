//! `GET /api/produce/status/{request_id}`: the state of an async produce request.

use actix::Addr;
use actix_web::{web, HttpResponse};
use rill_actors::status::{GetStatus, RequestState, StatusActor, StatusShards};

use crate::app::AppState;
use crate::auth::Caller;
use crate::http::answer;
use crate::http::error::ApiError;

/// A new async request id: a ULID (unguessable: 72 of its 80 random bits stay random) whose
/// last byte is the index of the calling worker's status shard, so the request's state is
/// kept on the thread that handles it.
pub fn new_request_id() -> ulid::Ulid {
    ulid::Ulid(StatusShards::mark_local(ulid::Ulid::new().0))
}

/// The status actor that holds `request_id`'s state. An id that is no ULID names no request;
/// it is sent to shard 0, which does not know it either.
pub fn status_actor(state: &AppState, request_id: &str) -> Option<Addr<StatusActor>> {
    let shard = ulid::Ulid::from_string(request_id).map_or(0, |id| StatusShards::index_in(id.0));
    state.status.shard(shard)
}

/// Asks the status actor holding `request_id` for its state.
pub async fn find(state: &AppState, request_id: &str) -> Result<Option<RequestState>, ApiError> {
    let stopped = || ApiError::Unavailable("status actor stopped".into());
    status_actor(state, request_id)
        .ok_or_else(stopped)?
        .send(GetStatus {
            request_id: request_id.to_string(),
        })
        .await
        .map_err(|_| stopped())
}

pub async fn get_status(
    state: web::Data<AppState>,
    caller: Caller,
    request_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id.into_inner();
    match find(&state, &request_id).await? {
        // A key scoped to other topics learns nothing, not even that the id exists.
        Some(request) if caller.allows(request.topic.as_str()) => Ok(HttpResponse::Ok()
            .insert_header(actix_web::http::header::ContentType::json())
            .body(answer::status_answer(&request))),
        _ => Err(ApiError::RequestNotFound(request_id)),
    }
}
