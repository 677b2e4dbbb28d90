//! API-key authentication and topic scopes.
//!
//! Keys are never compared as strings: both the presented key and every configured key are
//! hashed with SHA-256 and the digests compared in constant time, across all configured keys
//! without an early exit, so neither timing nor key length leaks. Keys never reach logs: only
//! digests are kept, and error bodies never echo what was sent. Metrics, logs and quota answers
//! name a key by its configured `name` (see [`crate::quota::KeyMeter`]).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use crate::config::{ApiKey, TopicScope};
use crate::http::error::ApiError;
use crate::metrics::Metrics;
use crate::quota::{Admission, KeyMeter};

/// The configured keys, as digests with their scopes and meters. `None` when auth is off.
pub struct Authenticator {
    keys: Vec<([u8; 32], TopicScope, Arc<KeyMeter>)>,
}

/// Who is calling: attached to the request by the middleware, read by handlers.
#[derive(Clone, Debug)]
pub struct Caller {
    scope: TopicScope,
    /// The SHA-256 digest of the caller's API key (all zero when auth is off): what scopes
    /// per-key state such as idempotency keys. Never shown anywhere.
    id: [u8; 32],
    /// The key's meter; `None` when auth is off (nothing is metered then).
    key: Option<Arc<KeyMeter>>,
}

impl Caller {
    /// A caller when auth is off: every topic.
    pub fn anyone() -> Self {
        Self {
            scope: TopicScope::all(),
            id: [0; 32],
            key: None,
        }
    }

    /// The name of the key used, if any.
    pub fn key_name(&self) -> Option<&str> {
        self.key.as_deref().map(KeyMeter::name)
    }

    /// Lets a produce request in under the key's quota (429 if over), before its body is read.
    pub fn admit_produce(&self) -> Result<Admission, ApiError> {
        match &self.key {
            Some(meter) => meter.admit(),
            None => Ok(Admission::unmetered()),
        }
    }

    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    /// 403 unless this caller may use `topic`.
    pub fn check(&self, topic: &str) -> Result<(), ApiError> {
        if self.scope.allows(topic) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(topic.to_string()))
        }
    }

    pub fn allows(&self, topic: &str) -> bool {
        self.scope.allows(topic)
    }
}

impl Authenticator {
    /// Digests the keys and creates each one's metric series in `metrics`.
    pub fn new(keys: Vec<ApiKey>, metrics: &Metrics) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| {
                    let meter = KeyMeter::new(k.name, k.quota.as_ref(), metrics);
                    (
                        Sha256::digest(k.secret.as_bytes()).into(),
                        k.scope,
                        Arc::new(meter),
                    )
                })
                .collect(),
        }
    }

    /// The caller a presented key identifies, if any.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for (key, scope, meter) in &self.keys {
            if bool::from(key.ct_eq(&digest)) && found.is_none() {
                found = Some(Caller {
                    scope: scope.clone(),
                    id: *key,
                    key: Some(Arc::clone(meter)),
                });
            }
        }
        found
    }
}

/// The key a request presents: `X-API-Key: <key>` or `Authorization: Bearer <key>`.
fn presented_key(req: &ServiceRequest) -> Option<&[u8]> {
    if let Some(value) = req.headers().get("x-api-key") {
        return Some(value.as_bytes());
    }
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| &value[7..])
}

/// Middleware: every `/api/*` request must carry a valid key when auth is on; the resolved
/// [`Caller`] goes into the request's extensions. Runs before any body is read, so an
/// unauthenticated upload is refused without being received.
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let auth = req
        .app_data::<actix_web::web::Data<crate::app::AppState>>()
        .and_then(|state| state.auth.clone());
    let caller = match auth {
        None => Caller::anyone(),
        Some(_) if !req.path().starts_with("/api/") => Caller::anyone(),
        Some(auth) => match presented_key(&req).and_then(|key| auth.authenticate(key)) {
            Some(caller) => caller,
            None => return Err(ApiError::Unauthorized.into()),
        },
    };
    req.extensions_mut().insert(caller);
    next.call(req).await
}

impl actix_web::FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or(ApiError::Unauthorized),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicPattern;

    #[test]
    fn only_the_exact_key_authenticates_with_its_scope() {
        let auth = Authenticator::new(
            vec![
                ApiKey {
                    secret: "s3cret-ingest".into(),
                    scope: TopicScope::new(vec![TopicPattern::parse("logs-*").unwrap()]),
                    name: "ingest".into(),
                    quota: None,
                },
                ApiKey {
                    secret: "admin".into(),
                    scope: TopicScope::all(),
                    name: "admin".into(),
                    quota: None,
                },
            ],
            &Metrics::new(),
        );
        let caller = auth.authenticate(b"s3cret-ingest").expect("valid key");
        assert_eq!(caller.key_name(), Some("ingest"));
        assert!(caller.check("logs-web").is_ok());
        assert!(matches!(
            caller.check("orders"),
            Err(ApiError::Forbidden(_))
        ));
        for wrong in [
            &b""[..],
            b"s3cret",
            b"s3cret-ingest ",
            b"S3CRET-INGEST",
            b"s3cret-ingestx",
        ] {
            assert!(auth.authenticate(wrong).is_none(), "{wrong:?} accepted");
        }
        assert!(auth.authenticate(b"admin").unwrap().check("orders").is_ok());
    }
}
