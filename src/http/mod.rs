//! The HTTP front: one file per resource, each handler thin — parse, check, call the core —
//! and every failure an [`error::ApiError`] mapped to status and `error_code` in one place.

pub mod answer;
pub mod body;
pub mod error;
pub mod health;
pub mod produce;
pub mod records;
pub mod status;
pub mod topics;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web;
use bytes::Bytes;
use futures_util::Stream;

use crate::app::AppState;
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
                    JsonPayloadError::Payload(e) => body_error(e),
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

/// Message of the error [`guard_request`] puts in a body stream that ran out of time.
const BODY_DEADLINE_PASSED: &str = "request body not received within body_read_timeout_ms";

/// Middleware for every request:
///
/// - It marks the connection busy while the request is handled (see [`watch_connection`]).
/// - The body must arrive within `[server] body_read_timeout_ms` of the headers. actix-web
///   bounds the headers (`client_request_timeout`) and idle keep-alive, not a body trickled a
///   byte at a time; past the deadline the body stream fails and the handler answers 408 (see
///   [`body_error`]).
/// - A body the handler did not read to its end (refused as too large, timed out, or not
///   needed for an error answer) is never drained: the connection closes after the answer.
///   actix-web would otherwise go on reading — and discarding — a chunked body after the
///   answer, for as long as the client sends it. To stop that, the unread rest of the body is
///   kept (not read) until the answer has been written, which makes actix-web close the
///   connection instead of draining it.
pub async fn guard_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let _busy = req
        .request()
        .conn_data::<Rc<ConnectionWatch>>()
        .map(|watch| Busy::new(Rc::clone(watch)));
    let has_body =
        req.headers().contains_key(CONTENT_LENGTH) || req.headers().contains_key(TRANSFER_ENCODING);
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map(|state| Duration::from_millis(state.config.server.body_read_timeout_ms));
    let Some(timeout) = timeout.filter(|_| has_body) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let parked: Rc<RefCell<Option<actix_web::dev::Payload>>> = Rc::default();
    let (http, payload) = req.into_parts();
    let guarded = GuardedPayload {
        inner: Some(payload),
        deadline: Box::pin(tokio::time::sleep(timeout)),
        finished: false,
        parked: Rc::clone(&parked),
    };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(guarded);
    let req = ServiceRequest::from_parts(http, actix_web::dev::Payload::from(boxed));
    let res = next.call(req).await?;
    // The handler is done with the body (the extractors and the handler have returned).
    let unread = parked.borrow_mut().take();
    Ok(match unread {
        None => res.map_into_left_body(),
        Some(payload) => res.map_body(|_, body| {
            EitherBody::right(BoxBody::new(KeepsPayload {
                body: BoxBody::new(body),
                _payload: payload,
            }))
        }),
    })
}

/// One connection's state for [`watch_connection`]: a second handle on its socket, how many
/// requests are in progress on it, and since when it has had none.
pub struct ConnectionWatch {
    socket: socket2::Socket,
    active: Cell<u32>,
    idle_since: Cell<Instant>,
    /// Dropped with the watch (when the connection ends): stops its watchdog at once.
    _alive: tokio::sync::oneshot::Sender<()>,
}

/// Marks a connection busy for as long as it lives.
struct Busy(Rc<ConnectionWatch>);

impl Busy {
    fn new(watch: Rc<ConnectionWatch>) -> Self {
        watch.active.set(watch.active.get() + 1);
        Busy(watch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let watch = &self.0;
        watch.active.set(watch.active.get().saturating_sub(1));
        watch.idle_since.set(Instant::now());
    }
}

/// `on_connect` hook: watches the new connection and shuts it down once it has had no request
/// in progress for `limit` (`[server] connection_idle_timeout_ms`).
///
/// actix-web times out the headers of a connection's *first* request only; on a keep-alive
/// connection, the next request's headers may be trickled a byte at a time for ever (each
/// byte stops the keep-alive timer, and nothing else is running). The watchdog closes that
/// gap: whatever the client does, a connection without a request being handled lives at most
/// `limit`. The request middleware ([`guard_request`]) marks the connection busy.
pub fn watch_connection(
    io: &dyn std::any::Any,
    ext: &mut actix_web::dev::Extensions,
    limit: Duration,
) {
    use actix_web::rt::net::TcpStream;
    let tcp = if let Some(tcp) = io.downcast_ref::<TcpStream>() {
        tcp
    } else if let Some(tls) =
        io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
    {
        tls.get_ref().0
    } else {
        return;
    };
    // A duplicate of the socket (not just its number): the number could be reused by another
    // connection once this one is closed. The watch, and with it the duplicate, is dropped
    // with the connection.
    let Ok(socket) = socket2::SockRef::from(tcp).try_clone() else {
        return;
    };
    let (alive, ended) = tokio::sync::oneshot::channel();
    let watch = Rc::new(ConnectionWatch {
        socket,
        active: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
        _alive: alive,
    });
    actix_web::rt::spawn(watchdog(Rc::downgrade(&watch), ended, limit));
    ext.insert(watch);
}

async fn watchdog(
    watch: Weak<ConnectionWatch>,
    mut ended: tokio::sync::oneshot::Receiver<()>,
    limit: Duration,
) {
    loop {
        let wait = {
            let Some(watch) = watch.upgrade() else {
                return;
            };
            let idle = watch.idle_since.get().elapsed();
            if watch.active.get() > 0 {
                limit
            } else if idle >= limit {
                log::debug!(
                    "connection idle for {idle:?} without a complete request: shutting it down"
                );
                let _ = watch.socket.shutdown(std::net::Shutdown::Both);
                return;
            } else {
                limit - idle
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut ended => return,
        }
    }
}

/// A request body stream with a deadline, that parks what is left of the body when dropped
/// unfinished (see [`guard_request`]).
struct GuardedPayload {
    inner: Option<actix_web::dev::Payload>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The body ended (or failed): nothing left to park.
    finished: bool,
    parked: Rc<RefCell<Option<actix_web::dev::Payload>>>,
}

impl Stream for GuardedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        // The deadline first: a body that keeps arriving must still arrive in time.
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.finished = true;
            self.park();
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                BODY_DEADLINE_PASSED,
            )))));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = Pin::new(inner).poll_next(cx);
        if let Poll::Ready(None) = item {
            self.finished = true;
            self.inner = None;
        }
        item
    }
}

impl GuardedPayload {
    fn park(&mut self) {
        if let Some(inner) = self.inner.take() {
            *self.parked.borrow_mut() = Some(inner);
        }
    }
}

impl Drop for GuardedPayload {
    fn drop(&mut self) {
        self.park();
    }
}

/// A response body that keeps the request's unread body alive until it has been written, so
/// that actix-web closes the connection instead of draining the request body.
struct KeepsPayload {
    body: BoxBody,
    _payload: actix_web::dev::Payload,
}

impl MessageBody for KeepsPayload {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The API error for a failure while reading a request body.
pub fn body_error(e: PayloadError) -> ApiError {
    match &e {
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            ApiError::RequestTimeout(format!("{BODY_DEADLINE_PASSED}; the connection is closed"))
        }
        _ => ApiError::InvalidRequest(format!("reading body: {e}")),
    }
}

/// Answer for paths no route matches (and wrong methods on known paths).
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, template)| path_matches(template, req.path()))
        .map(|(method, _)| *method)
        .collect();
    if allowed.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method(),
            req.path()
        )));
    }
    // RFC 9110: a 405 names the methods the resource does allow.
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed(
        format!("{} is not allowed on {}", req.method(), req.path()),
    ));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    Ok(response)
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
