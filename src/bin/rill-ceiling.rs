//! `rill-ceiling`: the ceiling server for produce benchmarks (issue 4).
//!
//! An actix-web server with exactly rill's HTTP settings (workers, backlog, max connections,
//! keep-alive, client request and disconnect timeouts, body limit — taken from rill's own `[server]` defaults)
//! and rill's allocator (mimalloc), but no broker behind it, so a benchmark can show how close rill gets to what this machine's
//! HTTP stack alone allows:
//!
//! - `POST /null/*`: reads the whole body (the way rill's produce handler does) and answers
//!   `{"ok":true}`.
//! - `POST /parse/*`: reads the body, also parses it as JSON (`serde_json` into `IgnoredAny`)
//!   and discards it, then answers the same. Nothing is built: the cheapest parse there is,
//!   and the ceiling the benchmark's targets are measured against.
//! - `POST /tree/*`: reads the body and parses it into a document tree (`serde_json::Value`,
//!   what "parse the JSON" means in most servers), for context next to the strict ceiling.
//!
//! ```sh
//! cargo build --release --bin rill-ceiling
//! target/release/rill-ceiling --bind 127.0.0.1:0
//! # → rill-ceiling listening on http://127.0.0.1:PORT
//! target/release/rill-loadgen --url http://127.0.0.1:PORT --path /null/x --connections 64
//! ```
//!
//! SIGINT/SIGTERM stop it (actix-web's default signal handling).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{error, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::BytesMut;
use clap::Parser;
use futures_util::StreamExt;
use rill::config::ServerConfig;
use serde::de::IgnoredAny;

// The same allocator as the `rill` binary, so the ceiling is not lower than rill could reach.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// rill's accept backlog (hard-coded in `src/app.rs`, not a config key).
const BACKLOG: u32 = 2048;

/// The fixed answer of both routes: small, like a single-record produce answer is small.
const ANSWER: &str = r#"{"ok":true}"#;

#[derive(Parser, Debug)]
#[command(
    name = "rill-ceiling",
    about = "actix-web ceiling server for rill benchmarks"
)]
struct Args {
    /// Address to listen on; port 0 lets the OS choose (the chosen URL is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// Worker threads; default as rill: one per CPU.
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // Start from rill's own defaults so the ceiling follows them if they change.
    let mut server = ServerConfig::default();
    if args.workers.is_some() {
        server.workers = args.workers;
    }
    actix_rt::System::new().block_on(run(args.bind, server))
}

async fn run(bind: String, config: ServerConfig) -> std::io::Result<()> {
    let limit = config.max_request_bytes;
    let http = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Limit(limit)))
            .route("/null/{tail:.*}", web::post().to(null))
            .route("/parse/{tail:.*}", web::post().to(parse::<IgnoredAny>))
            .route(
                "/tree/{tail:.*}",
                web::post().to(parse::<serde_json::Value>),
            )
    })
    .workers(config.workers())
    .backlog(BACKLOG)
    .max_connections(config.max_connections)
    .keep_alive(Duration::from_secs(config.keep_alive_secs))
    .client_request_timeout(Duration::from_millis(config.client_request_timeout_ms))
    .client_disconnect_timeout(Duration::from_millis(config.client_disconnect_timeout_ms))
    .shutdown_timeout(config.shutdown_timeout_secs)
    .bind(&bind)?;
    for addr in http.addrs() {
        // On stdout, like rill, so scripts can learn a port chosen by the OS.
        println!("rill-ceiling listening on http://{addr}");
    }
    http.run().await
}

/// `max_request_bytes`, shared with the handlers.
struct Limit(usize);

async fn null(
    req: HttpRequest,
    limit: web::Data<Limit>,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let body = read_body(&req, payload, limit.0).await?;
    drop(body);
    Ok(answer())
}

/// `/parse` with `T = IgnoredAny`, `/tree` with `T = serde_json::Value`.
async fn parse<T: serde::de::DeserializeOwned>(
    req: HttpRequest,
    limit: web::Data<Limit>,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let body = read_body(&req, payload, limit.0).await?;
    let parsed = serde_json::from_slice::<T>(&body)
        .map_err(|e| error::ErrorBadRequest(format!("invalid JSON: {e}")))?;
    drop(parsed);
    Ok(answer())
}

fn answer() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(ANSWER)
}

/// Reads the body as rill's produce handler does (`src/http/produce.rs`): a buffer sized from
/// Content-Length, chunks appended, refused past `limit`.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> actix_web::Result<BytesMut> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(error::ErrorPayloadTooLarge("body over max_request_bytes"));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(8192).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(error::ErrorPayloadTooLarge("body over max_request_bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
