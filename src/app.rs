//! Builds and runs the broker: opens the data dir (recovering every partition), starts the
//! status actor and the HTTP server, and on SIGTERM/SIGINT shuts down in order — stop
//! accepting, finish in-flight requests, flush every partition, exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use rill_actors::status::StatusActor;
use rill_actors::topics::{BrokerOptions, TopicRegistry};
use tokio::sync::Semaphore;

use crate::auth::{require_api_key, Authenticator};
use crate::backend::{Backend, LocalBackend};
use crate::config::Config;
use crate::formats::AvroSchemaCache;
use crate::metrics::Metrics;
use crate::partitioner::RoundRobin;

/// How many distinct Avro schemas are kept parsed, and the longest schema text cached.
const AVRO_CACHE_ENTRIES: usize = 1024;
const AVRO_CACHE_MAX_TEXT: usize = 1 << 20;

/// Everything handlers share. One per process; each worker also has its own producer actor.
pub struct AppState {
    pub config: Config,
    pub backend: Backend,
    pub status: Addr<StatusActor>,
    pub metrics: Metrics,
    pub schemas: AvroSchemaCache,
    pub round_robin: RoundRobin,
    /// `None` when `[auth] enabled = false`.
    pub auth: Option<Arc<Authenticator>>,
    /// Request bytes being processed, bounded by `[producer] max_inflight_bytes`.
    pub inflight_bytes: Arc<Semaphore>,
    /// Set on SIGTERM: new requests on open connections get 503 while in-flight ones finish.
    pub shutting_down: AtomicBool,
}

impl AppState {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// Runs the broker until a shutdown signal, then stops cleanly. Must run inside an actix
/// `System` (see `main`).
pub async fn run(config: Config) -> Result<(), String> {
    let api_keys = if config.auth.enabled {
        Some(Arc::new(Authenticator::new(
            config.api_keys().map_err(|e| e.to_string())?,
        )))
    } else {
        None
    };
    let declared = config.configured_topics().map_err(|e| e.to_string())?;
    let mut options = BrokerOptions::new(&config.storage.data_dir);
    options.retention_check_interval =
        Duration::from_millis(config.storage.retention_check_interval_ms);
    let started = std::time::Instant::now();
    let registry = Arc::new(TopicRegistry::open(options, declared).map_err(|e| e.to_string())?);
    log::info!(
        "data dir {} opened in {} ms: {} topic(s)",
        config.storage.data_dir.display(),
        started.elapsed().as_millis(),
        registry.list().len()
    );
    let status = StatusActor::new(
        config.async_requests.status_ttl(),
        config.async_requests.cleanup_interval(),
        config.async_requests.max_pending,
    )
    .start();
    let inflight = config
        .producer
        .max_inflight_bytes
        .min(Semaphore::MAX_PERMITS as u64) as usize;
    let state = web::Data::new(AppState {
        backend: Backend::Local(LocalBackend::new(Arc::clone(&registry))),
        status,
        metrics: Metrics::new(),
        schemas: AvroSchemaCache::new(AVRO_CACHE_ENTRIES, AVRO_CACHE_MAX_TEXT),
        round_robin: RoundRobin::new(),
        auth: api_keys,
        inflight_bytes: Arc::new(Semaphore::new(inflight)),
        shutting_down: AtomicBool::new(false),
        config,
    });

    let server_config = &state.config.server;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(from_fn(require_api_key))
            .wrap(from_fn(crate::http::health::count_requests))
            .configure(crate::http::configure)
            .default_service(web::to(crate::http::not_found))
    })
    .workers(server_config.workers())
    .backlog(2048)
    .max_connections(server_config.max_connections)
    .keep_alive(Duration::from_secs(server_config.keep_alive_secs))
    .client_request_timeout(Duration::from_millis(
        server_config.client_request_timeout_ms,
    ))
    .shutdown_timeout(server_config.shutdown_timeout_secs)
    .disable_signals()
    .bind(&server_config.bind)
    .map_err(|e| format!("binding {}: {e}", server_config.bind))?;
    let addrs: Vec<SocketAddr> = server.addrs();
    let server = server.run();
    for addr in &addrs {
        // On stdout, so scripts and tests can learn a port chosen by the OS (`--bind :0`).
        println!("rill listening on http://{addr}");
    }
    log::info!("listening on {addrs:?}");

    let handle = server.handle();
    let signal_state = state.clone();
    actix_rt::spawn(async move {
        wait_for_shutdown_signal().await;
        log::info!("shutdown signal: finishing in-flight requests");
        signal_state.shutting_down.store(true, Ordering::Relaxed);
        handle.stop(true).await;
    });
    server.await.map_err(|e| format!("server: {e}"))?;
    log::info!("HTTP server stopped; flushing partitions");
    state.backend.shutdown().await;
    log::info!("shutdown complete");
    Ok(())
}

async fn wait_for_shutdown_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
