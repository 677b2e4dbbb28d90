//! `rill-loadgen`: the HTTP/1.1 load generator for rill's produce benchmarks (issue 4).
//!
//! N keep-alive connections each send produce requests back to back (closed loop) for a fixed
//! time after a warm-up, and the run prints requests/s, records/s, MB/s, latency percentiles and
//! every non-2xx answer by status. Figures only count when `non2xx=0`, `io_errors=0` and
//! `record_errors=0`.
//!
//! ```sh
//! cargo build --release --bin rill-loadgen
//! target/release/rill-loadgen --url http://127.0.0.1:8080 --topic orders \
//!     --connections 16 --batch 100 --record-bytes 100 --keys --duration-secs 5
//! # against the ceiling server (same bodies, no broker):
//! target/release/rill-loadgen --url http://127.0.0.1:PORT --path /parse/x --batch 100 --keys
//! # async: produce with ?async=true, poll each status_url until completed
//! target/release/rill-loadgen --topic orders --batch 1000 --connections 8 --async
//! ```
//!
//! Output: one line of `key=value` pairs on stdout (or a JSON object with `--json`) for scripts
//! such as `bench/run.sh`, and one human-readable line on stderr.
//!
//! Design, all for keeping the generator cheap on a 2-core machine shared with the server:
//! - a minimal hand-written HTTP/1.1 client over tokio `TcpStream`s (pre-built request bytes
//!   in one `write_all`; the answer parsed for status line, `Content-Length` or chunked body,
//!   `Connection: close`) rather than hyper: nothing is allocated per request on the sync path;
//! - request bodies (`--bodies`, default 64 distinct ones) are built before the clock starts and
//!   cycled;
//! - a multi-threaded tokio runtime with `--threads` workers, default 1;
//! - latencies go into a per-connection log-linear histogram (HDR-style: exact below 256 µs,
//!   then 128 sub-buckets per power of two, so ≤ 0.8 % relative error), merged at the end.
//!
//! A request counts when its answer arrives inside the measured window (after `--warmup-secs`,
//! before the end of `--duration-secs`); answers still outstanding at the end are dropped.
//! `loadgen_cpu` is the CPU time (user + system, cores) this process used during the window, so
//! a run can show how much of the machine the generator itself took.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "rill-loadgen",
    about = "HTTP/1.1 keep-alive load generator for rill produce",
    // A later option wins over an earlier one, so scripts (bench/ab.sh) can append
    // overrides to their defaults.
    args_override_self = true
)]
struct Args {
    /// Server root URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Request path; default `/api/topics/<topic>/produce`. Use `/null/...` or `/parse/...`
    /// for the ceiling server.
    #[arg(long)]
    path: Option<String>,
    /// Topic, when `--path` is not given.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Records per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Bytes of each record value (JSON: an object padded to this many bytes of JSON text).
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Give each record a string key `user-<n>` (`key_format: string`); else no key.
    #[arg(long)]
    keys: bool,
    /// `value_format` of the records.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// `?compression=` to ask for; unset: the topic's codec.
    #[arg(long, value_enum)]
    compression: Option<Codec>,
    /// Produce with `?async=true`, poll each status URL until it is finished, and report
    /// completed records/s (and accepted requests/s).
    #[arg(long = "async")]
    is_async: bool,
    /// Async: produce requests each connection keeps accepted but not yet seen completed.
    #[arg(long, default_value_t = 4)]
    async_window: usize,
    /// Async: pause before polling again a status that was not finished, in milliseconds.
    #[arg(long, default_value_t = 1)]
    poll_interval_ms: u64,
    /// tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Distinct request bodies built up front and cycled.
    #[arg(long, default_value_t = 64)]
    bodies: usize,
    /// Seed of the body generator (keys and padding), for reproducible bodies.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the result as one JSON object instead of `key=value` pairs.
    #[arg(long)]
    json: bool,
    /// Send a unique `Idempotency-Key` with every produce request (the cost of safe retries).
    #[arg(long)]
    idempotency_keys: bool,
}

/// Length of the generated `Idempotency-Key`s: connection index and request counter in hex.
const IDEMPOTENCY_KEY_LEN: usize = 24;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    String,
    Binary,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == 0 || args.batch == 0 || args.threads == 0 || args.bodies == 0 {
        eprintln!("rill-loadgen: --connections, --batch, --threads and --bodies must be ≥ 1");
        return ExitCode::FAILURE;
    }
    if args.is_async && args.async_window == 0 {
        eprintln!("rill-loadgen: --async-window must be ≥ 1");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rill-loadgen: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every connection task shares (read-only).
struct Shared {
    /// Pre-built produce requests (head + body) and what each carries.
    requests: Vec<Request>,
    host: String,
    batch: u64,
    is_async: bool,
    async_window: usize,
    poll_interval: Duration,
    warm_end: Instant,
    end: Instant,
}

struct Request {
    bytes: Bytes,
    /// Where the `Idempotency-Key` value sits in `bytes`, to be filled in per request.
    key_at: Option<usize>,
    /// Sum of the record value sizes in bytes (the "payload" of MB/s).
    payload: u64,
}

async fn run(args: Args) -> Result<(), String> {
    let (hostport, base_path) = parse_url(&args.url)?;
    let addr: SocketAddr = tokio::net::lookup_host(&hostport)
        .await
        .map_err(|e| format!("resolving {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {hostport}: no address"))?;
    let path = request_path(&args, &base_path);

    // Everything below happens before the clock starts: bodies, requests, connections.
    let mut rng = Rng::new(args.seed);
    let requests: Vec<Request> = (0..args.bodies)
        .map(|_| {
            let (body, payload) = build_body(&args, &mut rng);
            let mut head = format!(
                "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n",
                body.len()
            )
            .into_bytes();
            let key_at = args.idempotency_keys.then(|| {
                head.extend_from_slice(b"Idempotency-Key: ");
                let at = head.len();
                head.extend_from_slice(&[b'0'; IDEMPOTENCY_KEY_LEN]);
                head.extend_from_slice(b"\r\n");
                at
            });
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(&body);
            Request {
                bytes: Bytes::from(head),
                key_at,
                payload,
            }
        })
        .collect();
    let wire_bytes_per_request =
        requests.iter().map(|r| r.bytes.len()).sum::<usize>() as f64 / requests.len() as f64;
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        conns.push(Conn::connect(addr).await?);
    }

    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup_secs);
    let end = warm_end + Duration::from_secs_f64(args.duration_secs);
    let shared = Arc::new(Shared {
        requests,
        host: hostport.clone(),
        batch: args.batch as u64,
        is_async: args.is_async,
        async_window: args.async_window,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        warm_end,
        end,
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(connection(Arc::clone(&shared), conn, addr, i)))
        .collect();
    sleep_until(warm_end).await;
    let cpu_start = process_cpu_secs();
    sleep_until(end).await;
    let cpu_end = process_cpu_secs();
    let mut stats = Stats::default();
    for task in tasks {
        let s = task.await.map_err(|e| format!("connection task: {e}"))?;
        stats.merge(&s);
    }
    let secs = args.duration_secs;
    let loadgen_cpu = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => (b - a) / secs,
        _ => f64::NAN,
    };
    report(
        &args,
        &path,
        &stats,
        secs,
        wire_bytes_per_request,
        loadgen_cpu,
    );
    Ok(())
}

/// `http://host:port/prefix` → ("host:port", "/prefix" without trailing slash).
fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return Err(format!("--url {url:?}: no host"));
    }
    let hostport = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((hostport, path.to_string()))
}

fn request_path(args: &Args, base: &str) -> String {
    let mut path = match &args.path {
        Some(p) => format!("{base}{p}"),
        None => format!("{base}/api/topics/{}/produce", args.topic),
    };
    let mut sep = if path.contains('?') { '&' } else { '?' };
    if let Some(codec) = args.compression {
        let _ = write!(path, "{sep}compression={}", codec.name());
        sep = '&';
    }
    if args.is_async {
        let _ = write!(path, "{sep}async=true");
    }
    path
}

/// xorshift64*: deterministic and dependency-free; quality is plenty for keys and padding.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Distinct keys drawn from: enough to spread evenly over partitions, like real user ids.
const KEY_SPACE: u64 = 100_000;

/// Padding alphabet: base-36 text, so compressors find some but not unrealistically much
/// redundancy (≈ 5.2 bits of entropy per byte).
const PAD: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn pad(rng: &mut Rng, out: &mut String, n: usize) {
    out.extend((0..n).map(|_| PAD[(rng.next() % PAD.len() as u64) as usize] as char));
}

/// One produce body and the sum of its record value sizes.
fn build_body(args: &Args, rng: &mut Rng) -> (Vec<u8>, u64) {
    let mut s = String::with_capacity(args.batch * (args.record_bytes * 4 / 3 + 48) + 64);
    s.push('{');
    if args.keys {
        s.push_str(r#""key_format":"string","#);
    }
    s.push_str(match args.format {
        Format::Json => r#""value_format":"json","records":["#,
        Format::String => r#""value_format":"string","records":["#,
        Format::Binary => r#""value_format":"binary","records":["#,
    });
    let mut payload = 0u64;
    for i in 0..args.batch {
        if i > 0 {
            s.push(',');
        }
        s.push('{');
        if args.keys {
            let _ = write!(s, r#""key":"user-{}","#, rng.next() % KEY_SPACE);
        }
        s.push_str(r#""value":"#);
        match args.format {
            Format::Json => {
                // `{"id":N,"pad":"…"}` whose JSON text is record_bytes long (or `{"id":N}`
                // when record_bytes is too small to pad).
                let head = format!(r#"{{"id":{},"pad":""#, rng.next() % 1_000_000_000);
                let fixed = head.len() + 2;
                if args.record_bytes >= fixed {
                    s.push_str(&head);
                    pad(rng, &mut s, args.record_bytes - fixed);
                    s.push_str("\"}");
                    payload += args.record_bytes as u64;
                } else {
                    let v = format!(r#"{{"id":{}}}"#, rng.next() % 1_000_000_000);
                    payload += v.len() as u64;
                    s.push_str(&v);
                }
            }
            Format::String => {
                s.push('"');
                pad(rng, &mut s, args.record_bytes);
                s.push('"');
                payload += args.record_bytes as u64;
            }
            Format::Binary => {
                let raw: Vec<u8> = (0..args.record_bytes).map(|_| rng.next() as u8).collect();
                s.push('"');
                s.push_str(&base64::engine::general_purpose::STANDARD.encode(&raw));
                s.push('"');
                payload += args.record_bytes as u64;
            }
        }
        s.push('}');
    }
    s.push_str("]}");
    (s.into_bytes(), payload)
}

/// Per-connection counters, merged at the end.
#[derive(Default)]
struct Stats {
    /// 2xx answers to produce requests (for async: accepted, 202).
    requests: u64,
    records: u64,
    payload: u64,
    latency: Histogram,
    /// Non-2xx answers (produce and status polls) by status code.
    non2xx: BTreeMap<u16, u64>,
    io_errors: u64,
    /// Records answered with an `error_code` inside a 2xx answer (partial success).
    record_errors: u64,
    // Async only.
    completed: u64,
    completed_records: u64,
    completed_payload: u64,
    completion: Histogram,
    async_failed: u64,
    polls: u64,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.requests += o.requests;
        self.records += o.records;
        self.payload += o.payload;
        self.latency.merge(&o.latency);
        for (k, v) in &o.non2xx {
            *self.non2xx.entry(*k).or_default() += v;
        }
        self.io_errors += o.io_errors;
        self.record_errors += o.record_errors;
        self.completed += o.completed;
        self.completed_records += o.completed_records;
        self.completed_payload += o.completed_payload;
        self.completion.merge(&o.completion);
        self.async_failed += o.async_failed;
        self.polls += o.polls;
    }
}

/// An accepted async request not yet seen finished.
struct Pending {
    poll: Bytes,
    sent: Instant,
    payload: u64,
}

/// One connection's closed loop. Returns its counters once the measured window is over.
async fn connection(shared: Arc<Shared>, mut conn: Conn, addr: SocketAddr, index: usize) -> Stats {
    let mut stats = Stats::default();
    // Connections start at different bodies so concurrent requests differ.
    let mut next = index * 7;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let end = shared.end;
    loop {
        if Instant::now() >= end {
            break;
        }
        let polling = shared.is_async && pending.len() >= shared.async_window;
        let (bytes, payload) = if polling {
            let p = pending.front().expect("window is full");
            (p.poll.clone(), p.payload)
        } else {
            let r = &shared.requests[next % shared.requests.len()];
            next += 1;
            match r.key_at {
                None => (r.bytes.clone(), r.payload),
                Some(at) => {
                    // A fresh key per request: every request is a first attempt.
                    let mut bytes = r.bytes.to_vec();
                    let key = format!("{index:08x}-{next:015x}");
                    bytes[at..at + IDEMPOTENCY_KEY_LEN].copy_from_slice(key.as_bytes());
                    (Bytes::from(bytes), r.payload)
                }
            }
        };
        let sent = Instant::now();
        // Answers arriving after the end would not count: stop waiting for them there.
        let status = match timeout_at(end, conn.exchange(&bytes)).await {
            Err(_) => break,
            Ok(Ok(status)) => status,
            Ok(Err(_)) => {
                if Instant::now() >= shared.warm_end {
                    stats.io_errors += 1;
                }
                // A poll lost with its connection is retried; the request itself is not lost.
                match timeout_at(end, reconnect(addr)).await {
                    Ok(Some(c)) => conn = c,
                    _ => break,
                }
                continue;
            }
        };
        let done = Instant::now();
        let counted = done >= shared.warm_end;
        if !(200..300).contains(&status) {
            if counted {
                *stats.non2xx.entry(status).or_default() += 1;
            }
            if polling {
                pending.pop_front();
            }
        } else if polling {
            if counted {
                stats.polls += 1;
            }
            match json_str_field(conn.body(), "status") {
                Some("completed") => {
                    let p = pending.pop_front().expect("polled one");
                    if counted {
                        stats.completed += 1;
                        stats.completed_records += shared.batch;
                        stats.completed_payload += p.payload;
                        stats.record_errors += count_record_errors(conn.body());
                        stats.completion.record(done - p.sent);
                    }
                }
                Some("pending" | "processing") => sleep(shared.poll_interval).await,
                _ => {
                    pending.pop_front();
                    if counted {
                        stats.async_failed += 1;
                    }
                }
            }
        } else {
            if counted {
                stats.requests += 1;
                stats.records += shared.batch;
                stats.payload += payload;
                stats.latency.record(done - sent);
            }
            if shared.is_async {
                match json_str_field(conn.body(), "status_url") {
                    Some(url) => pending.push_back(Pending {
                        poll: Bytes::from(format!(
                            "GET {url} HTTP/1.1\r\nHost: {}\r\n\r\n",
                            shared.host
                        )),
                        sent,
                        payload,
                    }),
                    None if counted => stats.async_failed += 1,
                    None => {}
                }
            } else if counted {
                stats.record_errors += count_record_errors(conn.body());
            }
        }
        if conn.closed {
            match timeout_at(end, reconnect(addr)).await {
                Ok(Some(c)) => conn = c,
                _ => break,
            }
        }
    }
    stats
}

async fn reconnect(addr: SocketAddr) -> Option<Conn> {
    loop {
        match Conn::connect(addr).await {
            Ok(c) => return Some(c),
            // Refused or reset: the server may be saturated; back off briefly and retry
            // (the caller bounds this by the end of the run).
            Err(_) => sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The string value of the first `"name":"…"` in a compact JSON answer (actix/serde_json
/// write no spaces). Enough for `status` and `status_url`, which hold no escapes.
fn json_str_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    let body = std::str::from_utf8(body).ok()?;
    let key = format!("\"{name}\":\"");
    let start = body.find(&key)? + key.len();
    let len = body[start..].find('"')?;
    Some(&body[start..start + len])
}

/// Records of a produce answer that carry an error (`"error_code":"…"` rather than `null`).
fn count_record_errors(body: &[u8]) -> u64 {
    match std::str::from_utf8(body) {
        Ok(s) => s.matches("\"error_code\":\"").count() as u64,
        Err(_) => 0,
    }
}

/// One keep-alive HTTP/1.1 connection: one request in flight at a time.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed; an answer's body is `buf[body_start..body_end]`.
    buf: Vec<u8>,
    /// Decoded body of a chunked answer.
    chunked: Vec<u8>,
    body_start: usize,
    body_end: usize,
    is_chunked: bool,
    /// Bytes of `buf` the last answer used (dropped before the next one is read).
    consumed: usize,
    /// The server said `Connection: close` (or sent a body delimited by closing).
    closed: bool,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        // Requests go out in one write; don't let Nagle hold the next one back.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            chunked: Vec::new(),
            body_start: 0,
            body_end: 0,
            is_chunked: false,
            consumed: 0,
            closed: false,
        })
    }

    fn body(&self) -> &[u8] {
        if self.is_chunked {
            &self.chunked
        } else {
            &self.buf[self.body_start..self.body_end]
        }
    }

    /// Sends one request and reads its answer; returns the status code.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.stream.write_all(request).await?;
        self.read_response().await
    }

    /// Reads more bytes into `buf`; EOF is an error (an answer was expected).
    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 8 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    async fn fill_to(&mut self, len: usize) -> io::Result<()> {
        while self.buf.len() < len {
            self.fill().await?;
        }
        Ok(())
    }

    /// Index just past the `\r\n` of the line starting at `from`, reading more as needed.
    async fn line_end(&mut self, from: usize) -> io::Result<usize> {
        let mut scanned = from;
        loop {
            if let Some(i) = self.buf[scanned..].windows(2).position(|w| w == b"\r\n") {
                return Ok(scanned + i + 2);
            }
            scanned = self.buf.len().saturating_sub(1).max(from);
            if self.buf.len() - from > 64 * 1024 {
                return Err(bad("line too long"));
            }
            self.fill().await?;
        }
    }

    async fn read_response(&mut self) -> io::Result<u16> {
        // Head: up to the empty line.
        let mut scanned = 0;
        let head_end = loop {
            if let Some(i) = self.buf[scanned..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                break scanned + i + 4;
            }
            scanned = self.buf.len().saturating_sub(3);
            if self.buf.len() > 64 * 1024 {
                return Err(bad("response head too long"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut content_length = None;
        let mut chunked = false;
        let mut close = status_line.starts_with("HTTP/1.0");
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse::<usize>().map_err(|_| bad("Content-Length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    close = true;
                } else if value.contains("keep-alive") {
                    close = false;
                }
            }
        }
        self.closed = close;
        self.is_chunked = false;
        if chunked {
            self.is_chunked = true;
            self.chunked.clear();
            let mut pos = head_end;
            loop {
                let end = self.line_end(pos).await?;
                let size_text =
                    std::str::from_utf8(&self.buf[pos..end - 2]).map_err(|_| bad("chunk size"))?;
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size"))?;
                pos = end;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let end = self.line_end(pos).await?;
                        let empty = end - pos == 2;
                        pos = end;
                        if empty {
                            break;
                        }
                    }
                    break;
                }
                self.fill_to(pos + size + 2).await?;
                self.chunked.extend_from_slice(&self.buf[pos..pos + size]);
                pos += size + 2;
            }
            self.consumed = pos;
        } else if let Some(len) = content_length {
            self.fill_to(head_end + len).await?;
            self.body_start = head_end;
            self.body_end = head_end + len;
            self.consumed = head_end + len;
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            self.body_start = head_end;
            self.body_end = head_end;
            self.consumed = head_end;
        } else {
            // Body delimited by the server closing the connection.
            loop {
                if self.buf.capacity() - self.buf.len() < 8 * 1024 {
                    self.buf.reserve(64 * 1024);
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    break;
                }
            }
            self.body_start = head_end;
            self.body_end = self.buf.len();
            self.consumed = self.buf.len();
            self.closed = true;
        }
        Ok(status)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad HTTP answer: {what}"),
    )
}

/// Log-linear latency histogram in microseconds (the HDR histogram's bucketing): values below
/// 2^EXACT_BITS µs are exact; above, each power of two is split into 2^SUB_BITS buckets.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const EXACT_BITS: u32 = SUB_BITS + 1;
/// Octaves above the exact range: up to 2^(EXACT_BITS + OCTAVES) µs ≈ 19 hours.
const OCTAVES: u32 = 28;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (1 << EXACT_BITS) + (OCTAVES << SUB_BITS) as usize],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < 1 << EXACT_BITS {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros(); // ≥ EXACT_BITS
        let octave = (exp - EXACT_BITS).min(OCTAVES - 1);
        let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        (1 << EXACT_BITS) + ((octave as usize) << SUB_BITS) + sub as usize
    }

    /// The middle of bucket `i`, in µs.
    fn value(i: usize) -> f64 {
        if i < 1 << EXACT_BITS {
            return i as f64;
        }
        let j = i - (1 << EXACT_BITS);
        let exp = (j >> SUB_BITS) as u32 + EXACT_BITS;
        let sub = (j & ((1 << SUB_BITS) - 1)) as u64;
        let width = 1u64 << (exp - SUB_BITS);
        ((1u64 << exp) + sub * width) as f64 + width as f64 / 2.0
    }

    fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.counts[Self::index(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }

    /// The `q` quantile (0..=1) in milliseconds; NaN when empty.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max as f64) / 1000.0;
            }
        }
        self.max as f64 / 1000.0
    }
}

/// User + system CPU seconds of this process so far, from /proc/self/stat (Linux, 100 Hz
/// clock ticks — USER_HZ is 100 on every Linux architecture rill runs on).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')').
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn report(
    args: &Args,
    path: &str,
    s: &Stats,
    secs: f64,
    wire_bytes_per_request: f64,
    loadgen_cpu: f64,
) {
    let rate = |n: u64| n as f64 / secs;
    let mb = |n: f64| n / secs / 1e6;
    let non2xx: u64 = s.non2xx.values().sum();
    let mut kv: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| kv.push((k.to_string(), v));
    put("mode", if args.is_async { "async" } else { "sync" }.into());
    put("url", args.url.clone());
    put("path", path.to_string());
    put("connections", args.connections.to_string());
    put("threads", args.threads.to_string());
    put("batch", args.batch.to_string());
    put("record_bytes", args.record_bytes.to_string());
    put("keys", args.keys.to_string());
    put("format", format!("{:?}", args.format).to_lowercase());
    put(
        "compression",
        args.compression.map_or("default", Codec::name).into(),
    );
    put("duration_s", format!("{secs}"));
    put("requests", s.requests.to_string());
    put("requests_per_s", format!("{:.0}", rate(s.requests)));
    let (records, payload) = if args.is_async {
        (s.completed_records, s.completed_payload)
    } else {
        (s.records, s.payload)
    };
    put("records", records.to_string());
    put("records_per_s", format!("{:.0}", rate(records)));
    put("mb_per_s", format!("{:.2}", mb(payload as f64)));
    put(
        "wire_mb_per_s",
        format!("{:.2}", mb(s.requests as f64 * wire_bytes_per_request)),
    );
    put("p50_ms", format!("{:.3}", s.latency.quantile_ms(0.50)));
    put("p99_ms", format!("{:.3}", s.latency.quantile_ms(0.99)));
    put("p999_ms", format!("{:.3}", s.latency.quantile_ms(0.999)));
    put("max_ms", format!("{:.3}", s.latency.max as f64 / 1000.0));
    if args.is_async {
        put("accepted_per_s", format!("{:.0}", rate(s.requests)));
        put("completed", s.completed.to_string());
        put("completed_per_s", format!("{:.0}", rate(s.completed)));
        put(
            "done_p50_ms",
            format!("{:.3}", s.completion.quantile_ms(0.50)),
        );
        put(
            "done_p99_ms",
            format!("{:.3}", s.completion.quantile_ms(0.99)),
        );
        put(
            "done_p999_ms",
            format!("{:.3}", s.completion.quantile_ms(0.999)),
        );
        put("polls", s.polls.to_string());
        put("async_failed", s.async_failed.to_string());
    }
    put("non2xx", non2xx.to_string());
    for (code, n) in &s.non2xx {
        put(&format!("non2xx_{code}"), n.to_string());
    }
    put("io_errors", s.io_errors.to_string());
    put("record_errors", s.record_errors.to_string());
    put("loadgen_cpu", format!("{loadgen_cpu:.2}"));

    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = kv
            .iter()
            .map(|(k, v)| {
                let value = if let Ok(n) = v.parse::<u64>() {
                    serde_json::json!(n)
                } else {
                    match v.parse::<f64>() {
                        Ok(n) if n.is_finite() => serde_json::json!(n),
                        _ => serde_json::Value::String(v.clone()),
                    }
                };
                (k.clone(), value)
            })
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        let line: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{}", line.join(" "));
    }

    let by_status: Vec<String> = s.non2xx.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let mut human = if args.is_async {
        format!(
            "{} {}: {:.0} completed records/s ({:.0} accepted req/s, {:.0} completed req/s), \
             {:.2} MB/s; accept p50 {:.2} ms p99 {:.2} ms; completion p50 {:.2} ms p99 {:.2} ms \
             p99.9 {:.2} ms",
            args.url,
            path,
            rate(records),
            rate(s.requests),
            rate(s.completed),
            mb(payload as f64),
            s.latency.quantile_ms(0.5),
            s.latency.quantile_ms(0.99),
            s.completion.quantile_ms(0.5),
            s.completion.quantile_ms(0.99),
            s.completion.quantile_ms(0.999),
        )
    } else {
        format!(
            "{} {}: {:.0} req/s, {:.0} records/s, {:.2} MB/s; p50 {:.2} ms p99 {:.2} ms \
             p99.9 {:.2} ms",
            args.url,
            path,
            rate(s.requests),
            rate(records),
            mb(payload as f64),
            s.latency.quantile_ms(0.5),
            s.latency.quantile_ms(0.99),
            s.latency.quantile_ms(0.999),
        )
    };
    let _ = write!(
        human,
        "; non-2xx {non2xx}{}; I/O errors {}; record errors {}; loadgen CPU {loadgen_cpu:.2} cores",
        if by_status.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_status.join(", "))
        },
        s.io_errors,
        s.record_errors,
    );
    eprintln!("{human}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for us in 1..=100_000u64 {
            h.record(Duration::from_micros(us));
        }
        for (q, want_ms) in [(0.5, 50.0), (0.99, 99.0), (0.999, 99.9)] {
            let got = h.quantile_ms(q);
            assert!(
                (got - want_ms).abs() / want_ms < 0.01,
                "q{q}: {got} vs {want_ms}"
            );
        }
        assert_eq!(Histogram::index(5), 5);
        assert!(Histogram::index(u64::MAX) < h.counts.len());
    }

    #[test]
    fn json_bodies_have_the_asked_size_and_parse() {
        let args = Args::parse_from(["rill-loadgen", "--batch", "3", "--keys"]);
        let (body, payload) = build_body(&args, &mut Rng::new(1));
        assert_eq!(payload, 300);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let records = v["records"].as_array().unwrap();
        assert_eq!(records.len(), 3);
        for r in records {
            assert_eq!(r["value"].to_string().len(), 100);
            assert!(r["key"].as_str().unwrap().starts_with("user-"));
        }
    }

    #[test]
    fn urls_and_fields() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/").unwrap(),
            ("127.0.0.1:8080".into(), String::new())
        );
        assert_eq!(
            parse_url("http://localhost").unwrap(),
            ("localhost:80".into(), String::new())
        );
        let body = br#"{"request_id":"x","status":"pending","status_url":"/api/produce/status/x"}"#;
        assert_eq!(json_str_field(body, "status"), Some("pending"));
        assert_eq!(
            json_str_field(body, "status_url"),
            Some("/api/produce/status/x")
        );
        assert_eq!(
            count_record_errors(br#"[{"error_code":null},{"error_code":"invalid_value"}]"#),
            1
        );
    }
}
