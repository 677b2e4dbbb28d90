//! Builds and runs the broker: opens the data dir (recovering every partition), starts the
//! HTTP server (each worker starts its status actor), and on SIGTERM/SIGINT shuts down in
//! order — stop accepting, finish in-flight requests, flush every partition, exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use rill_actors::status::{PendingSlots, StatusActor, StatusShards};
use rill_actors::topics::{BrokerOptions, TopicRegistry};
use tokio::sync::Semaphore;

use crate::auth::{require_api_key, Authenticator};
use crate::backend::{Backend, KafkaBackend, LocalBackend};
use crate::config::{BackendKind, Config};
use crate::formats::AvroSchemaCache;
use crate::idempotency::IdempotencyTable;
use crate::metrics::Metrics;
use crate::partitioner::RoundRobin;

/// How many distinct Avro schemas are kept parsed, and the longest schema text cached.
const AVRO_CACHE_ENTRIES: usize = 1024;
const AVRO_CACHE_MAX_TEXT: usize = 1 << 20;

/// Everything handlers share. One per process; each worker also has its own producer actor.
pub struct AppState {
    pub config: Config,
    pub backend: Backend,
    /// Async request states: one status actor per HTTP worker, started by the app factory.
    pub status: StatusShards,
    /// `[async] max_pending`: unfinished async requests, counted without asking the actor.
    pub pending_slots: Arc<PendingSlots>,
    pub metrics: Metrics,
    pub schemas: AvroSchemaCache,
    pub round_robin: RoundRobin,
    /// `Idempotency-Key`s of the dedup window.
    pub idempotency: IdempotencyTable,
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
    // The TLS config and the listening sockets first: a bad certificate or a port in use
    // stops start-up before any data is opened or any actor started.
    let tls = config.server.tls.as_ref().map(rustls_config).transpose()?;
    let listeners = bind_listeners(&config.server.bind)
        .map_err(|e| format!("binding {}: {e}", config.server.bind))?;
    let metrics = Metrics::new();
    let api_keys = if config.auth.enabled {
        Some(Arc::new(Authenticator::new(
            config.api_keys().map_err(|e| e.to_string())?,
            &metrics,
        )))
    } else {
        None
    };
    let backend = open_backend(&config).await?;
    let idempotency = IdempotencyTable::new(
        config.producer.idempotency_window(),
        config.producer.idempotency_max_keys,
    );
    backend.recover_idempotency(&idempotency);
    let status = {
        let (ttl, cleanup) = (
            config.async_requests.status_ttl(),
            config.async_requests.cleanup_interval(),
        );
        let finished_per_shard = config
            .async_requests
            .max_finished_records
            .div_ceil(config.server.workers());
        StatusShards::new(move || {
            StatusActor::new(ttl, cleanup).with_max_finished_records(finished_per_shard)
        })
    };
    let inflight = config
        .producer
        .max_inflight_bytes
        .min(Semaphore::MAX_PERMITS as u64) as usize;
    let state = web::Data::new(AppState {
        backend,
        status,
        pending_slots: PendingSlots::new(config.async_requests.max_pending),
        metrics,
        schemas: AvroSchemaCache::new(AVRO_CACHE_ENTRIES, AVRO_CACHE_MAX_TEXT),
        round_robin: RoundRobin::new(),
        idempotency,
        auth: api_keys,
        inflight_bytes: Arc::new(Semaphore::new(inflight)),
        shutting_down: AtomicBool::new(false),
        config,
    });

    let server_config = &state.config.server;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        // The factory runs on each worker's thread: its status actor starts there.
        app_state.status.start_here();
        App::new()
            .app_data(app_state.clone())
            // Answers are compressed as the client's Accept-Encoding asks.
            .wrap(actix_web::middleware::Compress::default())
            .wrap(from_fn(crate::http::guard_request))
            .wrap(from_fn(require_api_key))
            .wrap(from_fn(crate::http::health::count_requests))
            .configure(crate::http::configure)
            .default_service(web::to(crate::http::not_found))
    })
    .workers(server_config.workers())
    .backlog(BACKLOG)
    .max_connections(server_config.max_connections)
    .keep_alive(Duration::from_secs(server_config.keep_alive_secs))
    .client_request_timeout(Duration::from_millis(
        server_config.client_request_timeout_ms,
    ))
    .client_disconnect_timeout(Duration::from_millis(
        server_config.client_disconnect_timeout_ms,
    ))
    .on_connect({
        let idle = server_config.connection_idle_timeout();
        move |io, ext| crate::http::watch_connection(io, ext, idle)
    })
    .shutdown_timeout(server_config.shutdown_timeout_secs)
    .disable_signals();
    let mut server = server;
    if let Some(tls) = &server_config.tls {
        server = server.tls_handshake_timeout(Duration::from_millis(tls.handshake_timeout_ms));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    for listener in listeners {
        server = match &tls {
            None => server.listen(listener),
            Some(tls) => server.listen_rustls_0_23(listener, tls.clone()),
        }
        .map_err(|e| format!("listening on {}: {e}", server_config.bind))?;
    }
    let addrs: Vec<SocketAddr> = server.addrs();
    let server = server.run();
    for addr in &addrs {
        // On stdout, so scripts and tests can learn a port chosen by the OS (`--bind :0`).
        println!("rill listening on {scheme}://{addr}");
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

/// Accept backlog of the listening sockets.
const BACKLOG: u32 = 2048;

/// Listening sockets for every address `bind` resolves to, as actix-web's own `bind` makes
/// them (SO_REUSEADDR, a backlog of [`BACKLOG`]); an error only if none could be bound.
fn bind_listeners(bind: &str) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in bind.to_socket_addrs()? {
        let listener = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .and_then(|socket| {
                socket.set_reuse_address(true)?;
                socket.bind(&addr.into())?;
                socket.listen(BACKLOG as i32)?;
                Ok(std::net::TcpListener::from(socket))
            });
        match listener {
            Ok(listener) => listeners.push(listener),
            Err(e) => last_error = Some(e),
        }
    }
    match (listeners.is_empty(), last_error) {
        (false, _) => Ok(listeners),
        (true, Some(e)) => Err(e),
        (true, None) => Err(std::io::Error::other("the address resolves to nothing")),
    }
}

/// The rustls server config of `[server.tls]`: TLS 1.3 and 1.2 only, ring's cipher suites
/// (rustls offers no CBC, RC4, 3DES, export or NULL suites), no client certificates.
fn rustls_config(tls: &crate::config::TlsConfig) -> Result<rustls::ServerConfig, String> {
    let (certs, key) = tls.load().map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("server.tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: certificate and key do not fit together: {e}"))
}

/// The backend `[backend] kind` names: the data dir opened (every partition recovered), or the
/// Kafka cluster's clients created. In Kafka mode `[storage]` is not used and `[[topics]]` are
/// created in the cluster when absent.
async fn open_backend(config: &Config) -> Result<Backend, String> {
    let declared = config.configured_topics().map_err(|e| e.to_string())?;
    match config.backend.kind {
        BackendKind::Local => {
            let mut options = BrokerOptions::new(&config.storage.data_dir);
            options.retention_check_interval =
                Duration::from_millis(config.storage.retention_check_interval_ms);
            options.min_free_bytes = config.storage.min_free_bytes;
            options.preallocate_bytes = config.storage.preallocate_bytes;
            options.idempotency_window = config.producer.idempotency_window();
            options.arbiters = config.storage.partition_threads();
            let started = std::time::Instant::now();
            let registry =
                Arc::new(TopicRegistry::open(options, declared).map_err(|e| e.to_string())?);
            log::info!(
                "data dir {} opened in {} ms: {} topic(s)",
                config.storage.data_dir.display(),
                started.elapsed().as_millis(),
                registry.list().len()
            );
            Ok(Backend::Local(LocalBackend::new(registry)))
        }
        BackendKind::Kafka => {
            let properties = config
                .backend
                .kafka_client_properties()
                .map_err(|problems| {
                    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    format!("[backend]: {}", lines.join("; "))
                })?;
            let backend = KafkaBackend::connect(
                properties,
                config.backend.kafka.clone(),
                config.producer.request_timeout(),
                declared,
            )
            .await?;
            log::info!(
                "Kafka backend: gateway to {}",
                config.backend.bootstrap_servers.as_deref().unwrap_or("")
            );
            Ok(Backend::Kafka(backend))
        }
    }
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
