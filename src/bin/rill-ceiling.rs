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
//! - `POST /durable/{pieces}` (with `--durable-dir`): the floor under rill's produce path,
//!   which fsyncs before it answers. It reads the body, cuts it into `pieces` (1 to `--durable-files`)
//!   and writes each into its own file (`pwrite`, as a partition's batch), then answers once
//!   an `fdatasync` of each file has covered its piece. Each file has a thread that syncs it
//!   again as soon as something was written since its last sync (group commit), and its
//!   space is reserved ahead with `fallocate` like rill's segments. It parses nothing, builds
//!   nothing and answers small: what it reaches is what making records durable the way rill
//!   does leaves on this machine before any broker work.
//! - `POST /parse-durable/{pieces}` (with `--durable-dir`): `/parse` then `/durable` in one
//!   request — the body parsed into `IgnoredAny`, then written and fsynced the same way.
//!   It measures what the floor and the strict parse leave together, where adding their
//!   separate costs is only an estimate (the floor alone leaves the cores partly idle).
//!
//! ```sh
//! cargo build --release --bin rill-ceiling
//! target/release/rill-ceiling --bind 127.0.0.1:0
//! # → rill-ceiling listening on http://127.0.0.1:PORT
//! target/release/rill-loadgen --url http://127.0.0.1:PORT --path /null/x --connections 64
//! target/release/rill-ceiling --bind 127.0.0.1:0 --durable-dir /tmp/floor
//! target/release/rill-loadgen --url http://127.0.0.1:PORT --path /durable/3 --batch 100
//! ```
//!
//! SIGINT/SIGTERM stop it (actix-web's default signal handling).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{error, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::BytesMut;
use clap::Parser;
use futures_util::StreamExt;
use rill::config::ServerConfig;
use serde::de::IgnoredAny;
use tokio::sync::watch;

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
    /// Directory for the `/durable` route's files (created; the files are replaced at start).
    /// Without it the route answers 404.
    #[arg(long)]
    durable_dir: Option<PathBuf>,
    /// Files the `/durable` route writes to, like a topic's partitions.
    #[arg(long, default_value_t = 3)]
    durable_files: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // Start from rill's own defaults so the ceiling follows them if they change.
    let mut server = ServerConfig::default();
    if args.workers.is_some() {
        server.workers = args.workers;
    }
    let floor = match &args.durable_dir {
        Some(dir) => Some(DurableFloor::create(dir, args.durable_files.max(1))?),
        None => None,
    };
    actix_rt::System::new().block_on(run(args.bind, server, floor))
}

async fn run(
    bind: String,
    config: ServerConfig,
    floor: Option<DurableFloor>,
) -> std::io::Result<()> {
    let limit = config.max_request_bytes;
    let floor = web::Data::new(floor);
    let http = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Limit(limit)))
            .app_data(floor.clone())
            .route("/null/{tail:.*}", web::post().to(null))
            .route("/durable/{pieces}", web::post().to(durable::<false>))
            .route("/parse-durable/{pieces}", web::post().to(durable::<true>))
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

/// `/durable` (`PARSE = false`) and `/parse-durable` (`PARSE = true`: the body is parsed
/// into `IgnoredAny` before it is written).
async fn durable<const PARSE: bool>(
    req: HttpRequest,
    limit: web::Data<Limit>,
    floor: web::Data<Option<DurableFloor>>,
    pieces: web::Path<usize>,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let Some(floor) = floor.as_ref() else {
        return Err(error::ErrorNotFound(
            "start rill-ceiling with --durable-dir",
        ));
    };
    let pieces = pieces.into_inner();
    if pieces == 0 || pieces > floor.files.len() {
        return Err(error::ErrorBadRequest(format!(
            "pieces: 1 to {}",
            floor.files.len()
        )));
    }
    let body = read_body(&req, payload, limit.0).await?;
    if PARSE {
        serde_json::from_slice::<IgnoredAny>(&body)
            .map_err(|e| error::ErrorBadRequest(format!("invalid JSON: {e}")))?;
    }
    // One piece goes to the next file in turn, as single keyed records spread over
    // partitions; more pieces go to that many files from the first.
    let first = if pieces == 1 {
        floor.next.fetch_add(1, Ordering::Relaxed) % floor.files.len()
    } else {
        0
    };
    let piece_len = body.len().div_ceil(pieces).max(1);
    let mut written = Vec::with_capacity(pieces);
    for (i, piece) in body.chunks(piece_len).enumerate() {
        let file = &floor.files[first + i];
        let sequence = file.write(piece).map_err(error::ErrorInternalServerError)?;
        written.push((file, sequence));
    }
    for (file, sequence) in written {
        file.synced_through(sequence).await;
    }
    Ok(answer())
}

/// The `/durable` route's files.
struct DurableFloor {
    files: Vec<Arc<DurableFile>>,
    /// The file the next one-piece request writes to.
    next: AtomicUsize,
}

/// Space each file's sync thread reserves ahead of what was written, like rill's flushes do
/// (`[storage] preallocate_bytes`) but in larger steps, so it rarely stops to.
const DURABLE_RESERVE_STEP: u64 = 64 << 20;

impl DurableFloor {
    fn create(dir: &std::path::Path, files: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let files = (0..files)
            .map(|i| {
                let path = dir.join(format!("floor-{i}.log"));
                let _ = std::fs::remove_file(&path);
                let file = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                reserve(&file, DURABLE_RESERVE_STEP)?;
                let (synced, _) = watch::channel(0);
                let file = Arc::new(DurableFile {
                    file,
                    end: AtomicU64::new(0),
                    written: Mutex::new(0),
                    wake: Condvar::new(),
                    synced,
                });
                let syncing = Arc::clone(&file);
                std::thread::Builder::new()
                    .name(format!("floor-sync-{i}"))
                    .spawn(move || syncing.sync_forever())?;
                Ok(file)
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            files,
            next: AtomicUsize::new(0),
        })
    }
}

struct DurableFile {
    file: File,
    /// Where the next piece goes.
    end: AtomicU64,
    /// Pieces written so far; the sync thread waits on `wake` for it to move.
    written: Mutex<u64>,
    wake: Condvar,
    /// Pieces the last finished `fdatasync` covered.
    synced: watch::Sender<u64>,
}

impl DurableFile {
    /// Writes `piece` at the end of the file; returns its sequence number for
    /// [`Self::synced_through`].
    fn write(&self, piece: &[u8]) -> std::io::Result<u64> {
        let at = self.end.fetch_add(piece.len() as u64, Ordering::Relaxed);
        self.file.write_all_at(piece, at)?;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        *written += 1;
        self.wake.notify_one();
        Ok(*written)
    }

    async fn synced_through(&self, sequence: u64) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as the file, so waiting only ends by reaching `sequence`.
        let _ = synced.wait_for(|&synced| synced >= sequence).await;
    }

    /// Syncs whenever pieces were written since the last sync: every write counted before
    /// an `fdatasync` starts is complete, so that sync covers it.
    fn sync_forever(&self) {
        let mut synced = 0;
        let mut released_to = 0;
        let mut reserved_to = DURABLE_RESERVE_STEP;
        loop {
            let target = {
                let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
                let written = self
                    .wake
                    .wait_while(written, |written| *written == synced)
                    .unwrap_or_else(PoisonError::into_inner);
                *written
            };
            let end = self.end.load(Ordering::Relaxed);
            if end + DURABLE_RESERVE_STEP / 2 > reserved_to {
                reserved_to = end + DURABLE_RESERVE_STEP;
                // Only speed is lost if this fails: the file then grows as written.
                let _ = reserve(&self.file, reserved_to);
            }
            if let Err(e) = rustix::fs::fdatasync(&self.file) {
                // A benchmark tool: a failed sync ends the measurement rather than lying.
                eprintln!("rill-ceiling: fdatasync failed: {e}");
                std::process::exit(1);
            }
            synced = target;
            self.synced.send_replace(synced);
            // As rill does after each flush: hand the synced pages back, so writes land in
            // recycled page-cache pages rather than fresh ones (costly on a VM whose free
            // memory went back to the host). The kernel drops only whole, clean pages of the
            // range: the partial pages at its edges and any still being written stay cached.
            if let Some(len) = std::num::NonZeroU64::new(end - released_to) {
                let advice = rustix::fs::Advice::DontNeed;
                let _ = rustix::fs::fadvise(&self.file, released_to, Some(len), advice);
                released_to = end;
            }
        }
    }
}

/// Reserves `[0, to)` of `file` (reads as zeros, the file size grows to `to`).
fn reserve(file: &File, to: u64) -> std::io::Result<()> {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, to)?;
    Ok(())
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
