//! broker.toml and the command line: the one place that knows every setting, its default and its
//! bounds.
//!
//! `rill --config broker.toml` reads the file, applies `--bind` / `--data-dir` on top, then
//! [`Config::validate`] checks everything at once, so an operator fixes every mistake in one
//! round instead of one per restart. Parsing and checking are separate steps:
//!
//! - parsing (serde + toml) rejects what cannot even be represented — syntax errors, unknown
//!   keys (every section is `deny_unknown_fields`: a misspelt key is an error, never a silently
//!   ignored setting), wrong types — and names the key path, file, line and column;
//! - [`Config::validate`] rejects values out of bounds or contradicting each other and reports
//!   each as `key.path: what is wrong`.
//!
//! Defaults live in the `Default` impls and nowhere else; broker.toml in the repo root shows
//! and comments every key.
//!
//! API key secrets come from the file, an environment variable or a key file; they are never
//! printed: the types holding them have `Debug` impls that redact.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use rill_actors::compression::Compression;
use rill_actors::types::{FlushPolicy, LogConfig, TopicConfig, TopicName, TopicNameError};
use serde::Deserialize;

/// Smallest segment size accepted: below this every append would roll a segment.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// Largest segment size: index entries hold 32-bit file positions, as in Kafka.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Most partitions one topic may have: each is an actor with open files.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Smallest `max_request_bytes`: a body must at least hold a small produce request.
pub const MIN_REQUEST_BYTES: usize = 1024;

/// The command line. Flags override the file.
#[derive(Clone, Debug, PartialEq, Eq, Parser)]
#[command(
    name = "rill",
    version,
    about = "A message broker whose front door is an HTTP Producer API"
)]
pub struct Cli {
    /// The broker configuration file.
    #[arg(long, value_name = "FILE", default_value = "broker.toml")]
    pub config: PathBuf,
    /// Listen on ADDR (host:port) instead of `[server] bind`.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Keep topic data in DIR instead of `[storage] data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: missing, unreadable, or not UTF-8.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML, or holds a key rill does not know, or a value of the wrong type.
    /// `message` names the key path and the line.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// The file parsed, but values are out of bounds or contradict each other (or name an
    /// environment variable or key file that is missing). Holds every problem found.
    #[error("{origin}: {} problem{}:\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with one key, e.g. `storage.segment_bytes: must be at least 1024, got 10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, with `[i]` for array entries: `topics[1].name`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Collects problems so that validation goes on past the first one.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn into_result(self, origin: &str) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems: self.0,
            })
        }
    }
}

/// The whole of broker.toml.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub producer: ProducerConfig,
    /// The `[async]` section (`async` is a Rust keyword).
    #[serde(rename = "async")]
    pub async_requests: AsyncConfig,
    pub auth: AuthConfig,
    /// Topics created at start (if missing) with these settings.
    pub topics: Vec<TopicEntry>,
    pub backend: BackendConfig,
    /// The file this came from, for messages; `None` when built in code.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[server]`: the HTTP front door.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` to listen on. Default `127.0.0.1:8080` (loopback only).
    pub bind: String,
    /// Largest request body; a bigger one is refused with 413 before it is buffered.
    /// Default 64 MiB; at least [`MIN_REQUEST_BYTES`].
    pub max_request_bytes: usize,
    /// actix-web worker threads; default (unset) one per CPU. At least 1.
    pub workers: Option<usize>,
    /// Most open connections per worker; more wait in the accept backlog. Default 25000.
    pub max_connections: usize,
    /// How long an idle keep-alive connection stays open. Default 30 s; 0 disables keep-alive.
    pub keep_alive_secs: u64,
    /// How long a client may take to send a request's headers before it is answered 408 and
    /// closed (slow clients must not hold connections). Default 5000 ms; at least 1.
    pub client_request_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests may take to finish before connections are
    /// closed. Default 10 s.
    pub shutdown_timeout_secs: u64,
    /// How long a client may take to send a whole request body, from the end of its headers.
    /// Past it the request is answered 408 and the connection closed, so a slow upload cannot
    /// hold a connection and its share of `max_inflight_bytes` for ever. Default 60000 ms; at
    /// least 1.
    pub body_read_timeout_ms: u64,
    /// After a response that closes the connection (a refused or timed-out body), how long
    /// rill lingers — reading and discarding what the client still sends, so that the client
    /// gets the answer rather than a reset — before it drops the connection. Default 1000 ms;
    /// 0 drops it at once.
    pub client_disconnect_timeout_ms: u64,
    /// The longest a connection may go with no request in progress: after its last answer
    /// (or its connect), the next request's headers must have arrived within this, or rill
    /// shuts the connection. It covers what `client_request_timeout_ms` does not — the
    /// headers of the second and later requests on a keep-alive connection (a slowloris
    /// client can otherwise trickle them for ever) — and a client that does not take its
    /// answer. Unset (the default): `keep_alive_secs` + `client_request_timeout_ms`. At least
    /// `client_request_timeout_ms` and `keep_alive_secs`.
    pub connection_idle_timeout_ms: Option<u64>,
    /// `[server.tls]`: serve HTTPS instead of plain HTTP. Unset (the default): plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: HTTPS via rustls, TLS 1.2 and 1.3 only (no SSL 3, TLS 1.0 or 1.1).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, then any intermediates (leaf first).
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1/RSA or SEC1/EC).
    pub key: PathBuf,
    /// How long a client may take to complete the TLS handshake. Default 3000 ms; at least 1.
    #[serde(default = "default_tls_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_tls_handshake_timeout_ms() -> u64 {
    3000
}

impl TlsConfig {
    /// Reads the certificate chain and private key; each problem names its key.
    pub fn load(
        &self,
    ) -> Result<
        (
            Vec<rustls::pki_types::CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        ),
        Vec<Problem>,
    > {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut problems = Problems::default();
        let certs = match std::fs::read(&self.cert) {
            Err(e) => {
                problems.push(
                    "server.tls.cert",
                    format!("{}: cannot read: {e}", self.cert.display()),
                );
                Vec::new()
            }
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if !certs.is_empty() => certs,
                Ok(_) => {
                    problems.push(
                        "server.tls.cert",
                        format!("{}: no PEM certificate in the file", self.cert.display()),
                    );
                    Vec::new()
                }
                Err(e) => {
                    problems.push(
                        "server.tls.cert",
                        format!("{}: not a PEM certificate chain: {e}", self.cert.display()),
                    );
                    Vec::new()
                }
            },
        };
        // The key's bytes are never part of a message, only the file name.
        let key = match std::fs::read(&self.key) {
            Err(e) => {
                problems.push(
                    "server.tls.key",
                    format!("{}: cannot read: {e}", self.key.display()),
                );
                None
            }
            Ok(pem) => match PrivateKeyDer::from_pem_slice(&pem) {
                Ok(key) => Some(key),
                Err(_) => {
                    problems.push(
                        "server.tls.key",
                        format!(
                            "{}: no PEM private key (PKCS#8, RSA or EC) in the file",
                            self.key.display()
                        ),
                    );
                    None
                }
            },
        };
        if self.handshake_timeout_ms == 0 {
            problems.push("server.tls.handshake_timeout_ms", "must be at least 1");
        }
        match key {
            Some(key) if problems.0.is_empty() => Ok((certs, key)),
            _ => Err(problems.0),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            max_request_bytes: 64 * 1024 * 1024,
            workers: None,
            max_connections: 25_000,
            keep_alive_secs: 30,
            client_request_timeout_ms: 5000,
            shutdown_timeout_secs: 10,
            body_read_timeout_ms: 60_000,
            client_disconnect_timeout_ms: 1000,
            connection_idle_timeout_ms: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// The worker count to start: the configured one, else one per CPU.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// See [`ServerConfig::connection_idle_timeout_ms`].
    pub fn connection_idle_timeout(&self) -> Duration {
        Duration::from_millis(
            self.connection_idle_timeout_ms.unwrap_or(
                self.keep_alive_secs.saturating_mul(1000) + self.client_request_timeout_ms,
            ),
        )
    }

    fn check(&self, problems: &mut Problems) {
        match self.bind.to_socket_addrs() {
            Ok(mut addrs) => {
                if addrs.next().is_none() {
                    problems.push(
                        "server.bind",
                        format!("\"{}\" resolves to no address", self.bind),
                    );
                }
            }
            Err(e) => problems.push(
                "server.bind",
                format!("\"{}\" is not a socket address (host:port): {e}", self.bind),
            ),
        }
        if self.max_request_bytes < MIN_REQUEST_BYTES {
            problems.push(
                "server.max_request_bytes",
                format!(
                    "must be at least {MIN_REQUEST_BYTES}, got {}",
                    self.max_request_bytes
                ),
            );
        }
        if self.workers == Some(0) {
            problems.push(
                "server.workers",
                "must be at least 1 (or unset: one per CPU)",
            );
        }
        if self.max_connections == 0 {
            problems.push("server.max_connections", "must be at least 1");
        }
        if self.client_request_timeout_ms == 0 {
            problems.push("server.client_request_timeout_ms", "must be at least 1");
        }
        if self.body_read_timeout_ms == 0 {
            problems.push("server.body_read_timeout_ms", "must be at least 1");
        }
        if let Some(idle) = self.connection_idle_timeout_ms {
            let floor = self
                .client_request_timeout_ms
                .max(self.keep_alive_secs.saturating_mul(1000));
            if idle < floor {
                problems.push(
                    "server.connection_idle_timeout_ms",
                    format!(
                        "must be at least client_request_timeout_ms and keep_alive_secs ({floor} ms), got {idle}"
                    ),
                );
            }
        }
        if let Some(tls) = &self.tls {
            if let Err(found) = tls.load() {
                problems.0.extend(found);
            }
        }
    }
}

/// When a partition forces appended bytes to disk, as written in broker.toml.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// fsync before acknowledging (group commit). Nothing acknowledged is lost on power loss.
    #[default]
    Always,
    /// fsync every `flush_interval_ms`; a power loss may lose that window of acknowledged data.
    Interval,
    /// Leave it to the kernel; a power loss may lose whatever it had not written back.
    Os,
}

impl FlushMode {
    fn policy(self, interval_ms: u64) -> FlushPolicy {
        match self {
            FlushMode::Always => FlushPolicy::Always,
            FlushMode::Interval => FlushPolicy::Interval { interval_ms },
            FlushMode::Os => FlushPolicy::Os,
        }
    }
}

/// `[storage]`: where logs live and how they are laid out; also the defaults every topic
/// inherits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Root of all topic directories. Default `./data`.
    pub data_dir: PathBuf,
    /// A segment rolls at this size. Default 1 GiB;
    /// [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`].
    pub segment_bytes: u64,
    /// Default `always`.
    pub flush: FlushMode,
    /// Period of `flush = "interval"`. Default 1000; at least 1.
    pub flush_interval_ms: u64,
    /// One sparse index entry per this many bytes of batches. Default 4096.
    pub index_interval_bytes: u32,
    /// How often each partition deletes segments past retention. Default 300000 (5 min);
    /// at least 1.
    pub retention_check_interval_ms: u64,
    /// Free bytes appends must leave on the data dir's file system; an append that would
    /// leave less is answered 507. Default 0: no reserve.
    pub min_free_bytes: u64,
    /// Flushes reserve disk space ahead of each active segment's end in steps of this many
    /// bytes (fallocate), so most fsyncs write data only. Default 1 MiB; 0 turns it off.
    pub preallocate_bytes: u64,
    /// Threads the partition actors are spread over. Default: half the CPUs, at least 1.
    pub partition_threads: Option<usize>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            data_dir: PathBuf::from("./data"),
            segment_bytes: log.segment_bytes,
            flush: FlushMode::Always,
            flush_interval_ms: 1000,
            index_interval_bytes: log.index_interval_bytes,
            retention_check_interval_ms: 300_000,
            min_free_bytes: 0,
            preallocate_bytes: rill_actors::topics::DEFAULT_PREALLOCATE_BYTES,
            partition_threads: None,
        }
    }
}

impl StorageConfig {
    /// The partition thread count to start: the configured one, else half the CPUs. A
    /// partition actor only stamps offsets and copies bytes, so it needs far less CPU than
    /// the HTTP workers that parse; on a 2-core machine one thread for all partitions was
    /// 16 % faster at 100-record requests than two (bench/RESULTS.md), because appends that
    /// meet on one busy thread need no cross-thread wake-ups.
    pub fn partition_threads(&self) -> usize {
        self.partition_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        })
    }

    fn check(&self, problems: &mut Problems) {
        if self.data_dir.as_os_str().is_empty() {
            problems.push("storage.data_dir", "must not be empty");
        }
        check_segment_bytes("storage.segment_bytes", self.segment_bytes, problems);
        if self.partition_threads == Some(0) {
            problems.push("storage.partition_threads", "must be at least 1");
        }
        if self.flush_interval_ms == 0 {
            problems.push("storage.flush_interval_ms", "must be at least 1");
        }
        if self.retention_check_interval_ms == 0 {
            problems.push("storage.retention_check_interval_ms", "must be at least 1");
        }
    }
}

fn check_segment_bytes(key: &str, value: u64, problems: &mut Problems) {
    if value < MIN_SEGMENT_BYTES {
        problems.push(
            key,
            format!("must be at least {MIN_SEGMENT_BYTES}, got {value}"),
        );
    } else if value > MAX_SEGMENT_BYTES {
        problems.push(
            key,
            format!(
                "must be at most {MAX_SEGMENT_BYTES} (index positions are 32-bit), got {value}"
            ),
        );
    }
}

/// `[producer]`: limits on produce requests.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// Deadline of a request that names no `timeout_ms`. Default 30000; at least 1.
    pub request_timeout_ms: u64,
    /// Budget of request bytes being processed at once; a request that would exceed it gets
    /// 429. Default 256 MiB; at least `server.max_request_bytes`.
    pub max_inflight_bytes: u64,
    /// How long an `Idempotency-Key` is remembered, from its first request. Default 86400
    /// (24 h); at least 1.
    pub idempotency_window_secs: u64,
    /// At most this many idempotency keys are remembered (about 200 bytes each); past it the
    /// oldest are forgotten first. Default 100000; at least 1.
    pub idempotency_max_keys: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            max_inflight_bytes: 256 * 1024 * 1024,
            idempotency_window_secs: 24 * 3600,
            idempotency_max_keys: 100_000,
        }
    }
}

impl ProducerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn idempotency_window(&self) -> Duration {
        Duration::from_secs(self.idempotency_window_secs)
    }

    fn check(&self, server: &ServerConfig, problems: &mut Problems) {
        if self.request_timeout_ms == 0 {
            problems.push("producer.request_timeout_ms", "must be at least 1");
        }
        if self.idempotency_window_secs == 0 {
            problems.push("producer.idempotency_window_secs", "must be at least 1");
        }
        if self.idempotency_max_keys == 0 {
            problems.push("producer.idempotency_max_keys", "must be at least 1");
        }
        // A smaller budget than the largest request would turn every large request into a 429
        // that no retry can ever get through.
        if self.max_inflight_bytes < server.max_request_bytes as u64 {
            problems.push(
                "producer.max_inflight_bytes",
                format!(
                    "must be at least server.max_request_bytes ({}), got {}",
                    server.max_request_bytes, self.max_inflight_bytes
                ),
            );
        }
    }
}

/// `[async]`: requests answered with 202 and tracked by the status actors (one per worker).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsyncConfig {
    /// How long a finished request's status is kept. Default 1800; at least 1.
    pub status_ttl_secs: u64,
    /// How often expired statuses are swept. Default 300; at least 1.
    pub cleanup_interval_secs: u64,
    /// Most async requests not yet finished; beyond it, 429. Default 10000; at least 1.
    pub max_pending: usize,
    /// Most per-record results kept by finished requests (40 bytes each, more for a failed
    /// record's message); past it the oldest finished statuses are dropped before their TTL
    /// (their id then answers 404).
    /// Split evenly over the workers' status actors. Default 1000000 (≈ 40 MB); at least 1.
    pub max_finished_records: usize,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            status_ttl_secs: 1800,
            cleanup_interval_secs: 300,
            max_pending: 10_000,
            max_finished_records: 1_000_000,
        }
    }
}

impl AsyncConfig {
    pub fn status_ttl(&self) -> Duration {
        Duration::from_secs(self.status_ttl_secs)
    }

    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_secs(self.cleanup_interval_secs)
    }

    fn check(&self, problems: &mut Problems) {
        if self.status_ttl_secs == 0 {
            problems.push("async.status_ttl_secs", "must be at least 1");
        }
        if self.cleanup_interval_secs == 0 {
            problems.push("async.cleanup_interval_secs", "must be at least 1");
        }
        if self.max_pending == 0 {
            problems.push("async.max_pending", "must be at least 1");
        }
        if self.max_finished_records == 0 {
            problems.push("async.max_finished_records", "must be at least 1");
        }
    }
}

/// `[auth]`: API keys for `/api/*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Default false: every request is allowed.
    pub enabled: bool,
    pub api_keys: Vec<ApiKeyEntry>,
}

/// One `api_keys` entry as written: where the secret comes from and what it may reach.
/// Exactly one of `key`, `key_env`, `key_file` is set.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The secret itself, inline.
    pub key: Option<String>,
    /// Name of an environment variable holding the secret.
    pub key_env: Option<String>,
    /// A file holding the secret (surrounding whitespace, e.g. a final newline, is trimmed).
    pub key_file: Option<PathBuf>,
    /// Topic names or prefixes ending in `*`; empty means every topic.
    pub topics: Vec<String>,
    /// The label naming this key in metrics and logs (never the secret). Default `key-<index>`;
    /// 1..=64 of `[A-Za-z0-9._-]`, unique among the keys.
    pub name: Option<String>,
    /// Limits on what this key may send through produce. Default: none.
    pub quota: Option<QuotaConfig>,
}

/// `quota = { records_per_sec, bytes_per_sec, max_inflight }` of one API key. Each limit is
/// optional and at least 1 when set; see `src/quota.rs` for how they are enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Records per second, with bursts of one second's worth.
    pub records_per_sec: Option<u64>,
    /// Request body bytes per second, with bursts of one second's worth.
    pub bytes_per_sec: Option<u64>,
    /// Produce requests of this key processed at once (async ones until appended).
    pub max_inflight: Option<u64>,
}

impl QuotaConfig {
    /// Whether any limit is set: an empty `quota = {}` meters nothing.
    pub fn limits_anything(&self) -> bool {
        self.records_per_sec.is_some()
            || self.bytes_per_sec.is_some()
            || self.max_inflight.is_some()
    }

    fn check(&self, at: &str, problems: &mut Problems) {
        for (field, value) in [
            ("records_per_sec", self.records_per_sec),
            ("bytes_per_sec", self.bytes_per_sec),
            ("max_inflight", self.max_inflight),
        ] {
            if value == Some(0) {
                problems.push(format!("{at}.quota.{field}"), "must be at least 1");
            }
        }
    }
}

/// Longest API key name: it is a metric label value and appears in log lines.
pub const MAX_KEY_NAME_CHARS: usize = 64;

impl fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyEntry")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_env", &self.key_env)
            .field("key_file", &self.key_file)
            .field("topics", &self.topics)
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish()
    }
}

/// A usable API key: the secret, the topics it may produce to and read, the name it goes by in
/// metrics and logs, and its quota (`None`: unlimited).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub secret: String,
    pub scope: TopicScope,
    pub name: String,
    pub quota: Option<QuotaConfig>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish()
    }
}

/// The topics one key may reach. No patterns means every topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicScope {
    patterns: Vec<TopicPattern>,
}

/// One `topics` entry of an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicPattern {
    /// Exactly this topic.
    Exact(TopicName),
    /// Every topic whose name starts with this (written `prefix*`; `*` alone is every topic).
    Prefix(String),
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.contains('*') {
            return TopicName::new(pattern)
                .map(TopicPattern::Exact)
                .map_err(|e| format!("\"{pattern}\" is not a topic name: {e}"));
        }
        match pattern.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => {
                let valid = prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if valid {
                    Ok(TopicPattern::Prefix(prefix.to_owned()))
                } else {
                    Err(format!(
                        "\"{pattern}\" is neither a topic name nor a prefix of one followed by a single final '*'"
                    ))
                }
            }
            _ => Err(format!(
                "\"{pattern}\" is neither a topic name nor a prefix of one followed by a single final '*'"
            )),
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(name) => name.as_str() == topic,
            TopicPattern::Prefix(prefix) => topic.starts_with(prefix.as_str()),
        }
    }
}

impl TopicScope {
    /// Every topic.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn new(patterns: Vec<TopicPattern>) -> Self {
        Self { patterns }
    }

    /// Whether a key with this scope may reach `topic`.
    pub fn allows(&self, topic: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(topic))
    }
}

impl AuthConfig {
    /// Resolves every entry (reading environment variables and key files only when auth is
    /// enabled) and records what is wrong. Returns the keys that resolved.
    fn resolve(&self, problems: &mut Problems) -> Vec<ApiKey> {
        if self.enabled && self.api_keys.is_empty() {
            problems.push(
                "auth.api_keys",
                "auth is enabled but no keys are configured: every request would be refused",
            );
        }
        let mut keys = Vec::with_capacity(self.api_keys.len());
        // Secret -> index of the entry that defined it first, to catch one secret with two
        // scopes (which one would win is not obvious).
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut secrets = Vec::with_capacity(self.api_keys.len());
        // Name -> index of the entry that took it first: metrics of two keys must not merge.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, entry) in self.api_keys.iter().enumerate() {
            let at = format!("auth.api_keys[{i}]");
            let mut patterns = Vec::with_capacity(entry.topics.len());
            for (j, pattern) in entry.topics.iter().enumerate() {
                match TopicPattern::parse(pattern) {
                    Ok(p) => patterns.push(p),
                    Err(e) => problems.push(format!("{at}.topics[{j}]"), e),
                }
            }
            let name = entry.name.clone().unwrap_or_else(|| format!("key-{i}"));
            if let Err(e) = check_key_name(&name) {
                problems.push(format!("{at}.name"), e);
            }
            match names.entry(name.clone()) {
                Entry::Occupied(first) => problems.push(
                    format!("{at}.name"),
                    format!(
                        "\"{name}\" is already the name of auth.api_keys[{}]",
                        first.get()
                    ),
                ),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            if let Some(quota) = &entry.quota {
                quota.check(&at, problems);
            }
            let quota = entry.quota.filter(QuotaConfig::limits_anything);
            let secret = entry.secret(&at, self.enabled, problems);
            if secret.as_deref() == Some(name.as_str()) {
                // The name is shown in metrics and logs; the secret must not be.
                problems.push(format!("{at}.name"), "must not be the key itself");
            }
            secrets.push(secret.map(|secret| ApiKey {
                secret,
                scope: TopicScope::new(patterns),
                name,
                quota,
            }));
        }
        for (i, resolved) in secrets.iter().enumerate() {
            if let Some(ApiKey { secret, .. }) = resolved {
                match seen.entry(secret.as_str()) {
                    Entry::Occupied(first) => problems.push(
                        format!("auth.api_keys[{i}]"),
                        format!("same key as auth.api_keys[{}]", first.get()),
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                }
            }
        }
        keys.extend(secrets.into_iter().flatten());
        keys
    }
}

/// A key name must be a safe, short metric label and log word.
fn check_key_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_KEY_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        // Not echoed: a mistyped name may be a pasted secret.
        Err(format!(
            "must be 1..={MAX_KEY_NAME_CHARS} characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

impl ApiKeyEntry {
    /// The secret, if the entry names exactly one source and (when `resolve`) that source
    /// yields a non-empty secret.
    fn secret(&self, at: &str, resolve: bool, problems: &mut Problems) -> Option<String> {
        let sources = [
            self.key.is_some(),
            self.key_env.is_some(),
            self.key_file.is_some(),
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            problems.push(at, "exactly one of key, key_env, key_file must be set");
            return None;
        }
        if let Some(key) = &self.key {
            if key.is_empty() {
                problems.push(format!("{at}.key"), "must not be empty");
                return None;
            }
            return Some(key.clone());
        }
        if let Some(var) = &self.key_env {
            if var.is_empty() {
                problems.push(format!("{at}.key_env"), "must name an environment variable");
                return None;
            }
            if !resolve {
                return None;
            }
            return match std::env::var(var) {
                Ok(secret) if secret.is_empty() => {
                    problems.push(
                        format!("{at}.key_env"),
                        format!("environment variable {var} is empty"),
                    );
                    None
                }
                Ok(secret) => Some(secret),
                Err(std::env::VarError::NotPresent) => {
                    problems.push(
                        format!("{at}.key_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    problems.push(
                        format!("{at}.key_env"),
                        format!("environment variable {var} is not valid UTF-8"),
                    );
                    None
                }
            };
        }
        if let Some(path) = &self.key_file {
            if !resolve {
                return None;
            }
            return match std::fs::read_to_string(path) {
                Ok(text) if text.trim().is_empty() => {
                    problems.push(
                        format!("{at}.key_file"),
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) => {
                    problems.push(
                        format!("{at}.key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            };
        }
        None
    }
}

/// One `[[topics]]` entry: a topic created at start if it does not exist yet. Unset optional
/// settings inherit `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicEntry {
    /// Required: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Default 1; 1..=[`MAX_PARTITIONS`]. Fixed once the topic exists.
    pub partitions: u32,
    /// Codec for requests that name none. Default `none`.
    pub compression: Compression,
    /// Delete segments older than this; -1 keeps forever. Default 604800000 (7 days).
    pub retention_ms: i64,
    /// Delete oldest segments while the partition is larger; -1: no limit. Default -1.
    pub retention_bytes: i64,
    /// Overrides `storage.segment_bytes`.
    pub segment_bytes: Option<u64>,
    /// Overrides `storage.flush`.
    pub flush: Option<FlushMode>,
    /// Overrides `storage.flush_interval_ms`.
    pub flush_interval_ms: Option<u64>,
}

impl Default for TopicEntry {
    fn default() -> Self {
        Self {
            name: String::new(),
            partitions: 1,
            compression: Compression::None,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: None,
            flush: None,
            flush_interval_ms: None,
        }
    }
}

impl TopicEntry {
    /// The topic this entry describes, its unset settings taken from `storage`.
    pub fn to_topic(
        &self,
        storage: &StorageConfig,
    ) -> Result<(TopicName, TopicConfig), TopicNameError> {
        let name = TopicName::new(self.name.as_str())?;
        let flush = self.flush.unwrap_or(storage.flush);
        let interval_ms = self.flush_interval_ms.unwrap_or(storage.flush_interval_ms);
        let config = TopicConfig {
            partitions: self.partitions,
            compression: self.compression,
            log: LogConfig {
                segment_bytes: self.segment_bytes.unwrap_or(storage.segment_bytes),
                index_interval_bytes: storage.index_interval_bytes,
                flush: flush.policy(interval_ms),
                // Negative means "no limit"; validate() allows only -1 there.
                retention_ms: (self.retention_ms >= 0).then_some(self.retention_ms),
                retention_bytes: u64::try_from(self.retention_bytes).ok(),
            },
        };
        Ok((name, config))
    }

    fn check(&self, i: usize, storage: &StorageConfig, problems: &mut Problems) {
        let at = format!("topics[{i}]");
        if self.name.is_empty() {
            problems.push(
                format!("{at}.name"),
                "missing: every [[topics]] entry needs a name",
            );
        } else if let Err(e) = TopicName::new(self.name.as_str()) {
            problems.push(
                format!("{at}.name"),
                format!("\"{}\" is invalid: {e}", self.name),
            );
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            problems.push(
                format!("{at}.partitions"),
                format!("must be 1..={MAX_PARTITIONS}, got {}", self.partitions),
            );
        }
        if self.retention_ms != -1 && self.retention_ms < 1 {
            problems.push(
                format!("{at}.retention_ms"),
                format!(
                    "must be -1 (keep forever) or positive, got {}",
                    self.retention_ms
                ),
            );
        }
        if self.retention_bytes != -1 && self.retention_bytes < 1 {
            problems.push(
                format!("{at}.retention_bytes"),
                format!(
                    "must be -1 (no limit) or positive, got {}",
                    self.retention_bytes
                ),
            );
        }
        if let Some(bytes) = self.segment_bytes {
            check_segment_bytes(&format!("{at}.segment_bytes"), bytes, problems);
        }
        if let Some(interval) = self.flush_interval_ms {
            if interval == 0 {
                problems.push(format!("{at}.flush_interval_ms"), "must be at least 1");
            } else if self.flush.unwrap_or(storage.flush) != FlushMode::Interval {
                problems.push(
                    format!("{at}.flush_interval_ms"),
                    "is only used with flush = \"interval\" (set on the topic or in [storage])",
                );
            }
        }
    }
}

/// Where appends go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// rill's own on-disk logs.
    #[default]
    Local,
    /// An Apache Kafka cluster (or any Kafka-protocol cluster); rill is then a stateless
    /// gateway: `[storage]` is not used, `[[topics]]` are created in the cluster if absent.
    Kafka,
}

/// `security_protocol` values librdkafka knows.
const SECURITY_PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
/// `sasl_mechanism` values this build supports (no GSSAPI: that would need Cyrus SASL).
const SASL_MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// librdkafka properties `[backend.kafka.properties]` may not set, and why: rill sets them
/// itself, from a typed key or from a guarantee it gives.
const RESERVED_PROPERTIES: [(&str, &str); 19] = [
    ("bootstrap.servers", "set backend.bootstrap_servers instead"),
    (
        "metadata.broker.list",
        "set backend.bootstrap_servers instead",
    ),
    ("security.protocol", "set backend.security_protocol instead"),
    ("sasl.mechanism", "set backend.sasl_mechanism instead"),
    ("sasl.mechanisms", "set backend.sasl_mechanism instead"),
    ("sasl.username", "set backend.sasl_username instead"),
    (
        "sasl.password",
        "set backend.sasl_password or backend.sasl_password_env instead",
    ),
    ("ssl.ca.location", "set backend.ssl_ca_location instead"),
    (
        "ssl.certificate.location",
        "set backend.ssl_certificate_location instead",
    ),
    ("ssl.key.location", "set backend.ssl_key_location instead"),
    (
        "ssl.key.password",
        "set backend.ssl_key_password_env instead",
    ),
    ("acks", "rill always produces with acks=all"),
    (
        "request.required.acks",
        "rill always produces with acks=all",
    ),
    (
        "enable.idempotence",
        "rill always produces with idempotence on",
    ),
    (
        "compression.type",
        "each produce request chooses its codec (?compression=)",
    ),
    (
        "compression.codec",
        "each produce request chooses its codec (?compression=)",
    ),
    (
        "partitioner",
        "rill's murmur2 partitioner chooses every record's partition",
    ),
    ("transactional.id", "rill's producer is not transactional"),
    (
        "group.id",
        "rill reads by assigning partitions, in no consumer group it shares",
    ),
];

/// `[backend]`: where records live. With `kind = "kafka"`, how to reach the cluster; the
/// security keys are passed to librdkafka as the properties of the same name with `.`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// Default `local`.
    pub kind: BackendKind,
    /// `host:port,…` of the Kafka cluster. Required with kind = "kafka".
    pub bootstrap_servers: Option<String>,
    /// `plaintext` (librdkafka's default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`; needs a `sasl_*` protocol.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// The SASL password inline; or name an environment variable with `sasl_password_env`.
    pub sasl_password: Option<String>,
    pub sasl_password_env: Option<String>,
    /// PEM file of the CA(s) that sign the brokers' certificates; unset: the system's store.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key (PEM), for clusters that authenticate clients by TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    /// Environment variable holding the client key's password, if it has one.
    pub ssl_key_password_env: Option<String>,
    /// `[backend.kafka]`: the gateway's own tuning, and raw librdkafka properties.
    pub kafka: KafkaSettings,
}

impl fmt::Debug for BackendConfig {
    // Secrets never reach a log: the password is redacted, and of the raw properties (which
    // may hold secrets, e.g. `sasl.oauthbearer.client.secret`) only the names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("kind", &self.kind)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("sasl_password_env", &self.sasl_password_env)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password_env", &self.ssl_key_password_env)
            .field("kafka", &self.kafka)
            .finish()
    }
}

/// `[backend.kafka]`: how the Kafka gateway behaves, and librdkafka properties passed through.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Replication factor of the topics rill creates (`[[topics]]` at start, `POST
    /// /api/topics`). Unset: the cluster's `default.replication.factor`. At least 1.
    pub replication_factor: Option<i32>,
    /// Bound on every metadata, admin and offset-lookup call to the cluster: an unknown topic
    /// is answered 404 and an unreachable cluster 503 within about this. Default 2000 ms; at
    /// least 1.
    pub metadata_timeout_ms: u64,
    /// How often the topic list and partition counts are re-read from the cluster (topics
    /// created or grown elsewhere become visible). Default 10000 ms; at least 100.
    pub metadata_refresh_ms: u64,
    /// How long a topic found missing stays answered 404 without asking the cluster again.
    /// Default 1000 ms; 0 asks every time.
    pub unknown_topic_ttl_ms: u64,
    /// The most a read (`GET …/records`) waits for records. Default 5000 ms; at least 1.
    pub read_timeout_ms: u64,
    /// Any librdkafka property (`"linger.ms" = "20"`), applied to every client rill creates,
    /// after rill's own settings. Names librdkafka does not know are refused at start.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            replication_factor: None,
            metadata_timeout_ms: 2000,
            metadata_refresh_ms: 10_000,
            unknown_topic_ttl_ms: 1000,
            read_timeout_ms: 5000,
            properties: std::collections::BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("replication_factor", &self.replication_factor)
            .field("metadata_timeout_ms", &self.metadata_timeout_ms)
            .field("metadata_refresh_ms", &self.metadata_refresh_ms)
            .field("unknown_topic_ttl_ms", &self.unknown_topic_ttl_ms)
            .field("read_timeout_ms", &self.read_timeout_ms)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaSettings {
    pub fn metadata_timeout(&self) -> Duration {
        Duration::from_millis(self.metadata_timeout_ms)
    }

    pub fn metadata_refresh(&self) -> Duration {
        Duration::from_millis(self.metadata_refresh_ms)
    }

    pub fn unknown_topic_ttl(&self) -> Duration {
        Duration::from_millis(self.unknown_topic_ttl_ms)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }
}

/// Reads a secret from the environment variable `var`; problems go under `key`.
fn secret_from_env(var: &str, key: &str, problems: &mut Problems) -> Option<String> {
    if var.is_empty() {
        problems.push(key, "must name an environment variable");
        return None;
    }
    match std::env::var(var) {
        Ok(secret) if secret.is_empty() => {
            problems.push(key, format!("environment variable {var} is empty"));
            None
        }
        Ok(secret) => Some(secret),
        Err(std::env::VarError::NotPresent) => {
            problems.push(key, format!("environment variable {var} is not set"));
            None
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            problems.push(
                key,
                format!("environment variable {var} is not valid UTF-8"),
            );
            None
        }
    }
}

impl BackendConfig {
    fn check(&self, problems: &mut Problems) {
        // Kafka keys under kind = "local" are left alone: an operator may fill them in before
        // switching the kind.
        if self.kind == BackendKind::Kafka {
            self.resolve_kafka(problems);
        }
    }

    /// The librdkafka properties every client of the Kafka backend starts from (see
    /// [`BackendConfig::resolve_kafka`]), or every problem found.
    pub fn kafka_client_properties(&self) -> Result<Vec<(String, String)>, Vec<Problem>> {
        let mut problems = Problems::default();
        let properties = self.resolve_kafka(&mut problems);
        if problems.0.is_empty() {
            Ok(properties)
        } else {
            Err(problems.0)
        }
    }

    /// The librdkafka properties every client of the Kafka backend starts from: cluster
    /// address, security (secrets read from the environment now) and the raw properties,
    /// in that order. Records a problem, naming the key, for everything wrong.
    fn resolve_kafka(&self, problems: &mut Problems) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        match self.bootstrap_servers.as_deref().map(str::trim) {
            None | Some("") => problems.push(
                "backend.bootstrap_servers",
                "required with kind = \"kafka\": \"host:port,…\" of the Kafka cluster",
            ),
            Some(servers) => {
                for server in servers.split(',').map(str::trim) {
                    let port = server
                        .rsplit_once(':')
                        .filter(|(host, _)| !host.is_empty())
                        .and_then(|(_, port)| port.parse::<u16>().ok())
                        .filter(|port| *port != 0);
                    if port.is_none() {
                        problems.push(
                            "backend.bootstrap_servers",
                            format!("\"{server}\" is not host:port"),
                        );
                    }
                }
                out.push(("bootstrap.servers".into(), servers.to_owned()));
            }
        }

        let protocol = self
            .security_protocol
            .as_deref()
            .map(str::to_ascii_lowercase);
        if let Some(protocol) = &protocol {
            if SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
                out.push(("security.protocol".into(), protocol.clone()));
            } else {
                problems.push(
                    "backend.security_protocol",
                    format!("must be one of {SECURITY_PROTOCOLS:?}, got \"{protocol}\""),
                );
            }
        }
        let protocol = protocol.as_deref().unwrap_or("plaintext");
        let sasl = protocol.starts_with("sasl_");
        let tls = matches!(protocol, "ssl" | "sasl_ssl");

        let mechanism = self.sasl_mechanism.as_deref().map(str::to_ascii_uppercase);
        match (&mechanism, sasl) {
            (None, true) => problems.push(
                "backend.sasl_mechanism",
                format!("required with security_protocol = \"{protocol}\""),
            ),
            (Some(m), true) if !SASL_MECHANISMS.contains(&m.as_str()) => problems.push(
                "backend.sasl_mechanism",
                format!("must be one of {SASL_MECHANISMS:?}, got \"{m}\""),
            ),
            (Some(m), true) => out.push(("sasl.mechanism".into(), m.clone())),
            (_, false) => {}
        }
        let sasl_keys = [
            ("sasl_mechanism", self.sasl_mechanism.is_some()),
            ("sasl_username", self.sasl_username.is_some()),
            ("sasl_password", self.sasl_password.is_some()),
            ("sasl_password_env", self.sasl_password_env.is_some()),
        ];
        for (key, set) in sasl_keys {
            if set && !sasl {
                problems.push(
                    format!("backend.{key}"),
                    "needs security_protocol = \"sasl_plaintext\" or \"sasl_ssl\"",
                );
            }
        }
        // PLAIN and SCRAM log in with a user name and password; OAUTHBEARER takes its settings
        // from raw `sasl.oauthbearer.*` properties.
        let password_login = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
        if sasl
            && mechanism
                .as_deref()
                .is_some_and(|m| password_login.contains(&m))
        {
            match &self.sasl_username {
                Some(user) if !user.is_empty() => out.push(("sasl.username".into(), user.clone())),
                _ => problems.push(
                    "backend.sasl_username",
                    "required with sasl_mechanism PLAIN or SCRAM-*",
                ),
            }
            let password = match (&self.sasl_password, &self.sasl_password_env) {
                (Some(_), Some(_)) | (None, None) => {
                    problems.push(
                        "backend.sasl_password",
                        "exactly one of sasl_password, sasl_password_env must be set",
                    );
                    None
                }
                (Some(inline), None) => Some(inline.clone()),
                (None, Some(var)) => secret_from_env(var, "backend.sasl_password_env", problems),
            };
            if let Some(password) = password {
                out.push(("sasl.password".into(), password));
            }
        }

        let files = [
            ("ssl_ca_location", "ssl.ca.location", &self.ssl_ca_location),
            (
                "ssl_certificate_location",
                "ssl.certificate.location",
                &self.ssl_certificate_location,
            ),
            (
                "ssl_key_location",
                "ssl.key.location",
                &self.ssl_key_location,
            ),
        ];
        for (key, property, path) in files {
            let Some(path) = path else { continue };
            if !tls {
                problems.push(
                    format!("backend.{key}"),
                    "needs security_protocol = \"ssl\" or \"sasl_ssl\"",
                );
            } else if let Err(e) = std::fs::File::open(path) {
                problems.push(
                    format!("backend.{key}"),
                    format!("cannot read {}: {e}", path.display()),
                );
            } else {
                out.push((property.into(), path.display().to_string()));
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            problems.push(
                "backend.ssl_key_location",
                "ssl_certificate_location and ssl_key_location go together",
            );
        }
        if let Some(var) = &self.ssl_key_password_env {
            if !tls {
                problems.push(
                    "backend.ssl_key_password_env",
                    "needs security_protocol = \"ssl\" or \"sasl_ssl\"",
                );
            } else if let Some(password) =
                secret_from_env(var, "backend.ssl_key_password_env", problems)
            {
                out.push(("ssl.key.password".into(), password));
            }
        }

        let k = &self.kafka;
        if k.replication_factor.is_some_and(|rf| rf < 1) {
            problems.push("backend.kafka.replication_factor", "must be at least 1");
        }
        if k.metadata_timeout_ms == 0 {
            problems.push("backend.kafka.metadata_timeout_ms", "must be at least 1");
        }
        if k.metadata_refresh_ms < 100 {
            problems.push(
                "backend.kafka.metadata_refresh_ms",
                format!("must be at least 100, got {}", k.metadata_refresh_ms),
            );
        }
        if k.read_timeout_ms == 0 {
            problems.push("backend.kafka.read_timeout_ms", "must be at least 1");
        }
        for (name, value) in &k.properties {
            let key = format!("backend.kafka.properties.\"{name}\"");
            if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(n, _)| n == name) {
                problems.push(key, format!("cannot be set here: {why}"));
                continue;
            }
            // librdkafka itself knows its property names and value syntax; ask it now rather
            // than fail at the first connection.
            let mut probe = rdkafka::ClientConfig::new();
            probe.set(name.as_str(), value.as_str());
            if let Err(e) = probe.create_native_config() {
                problems.push(key, e.to_string());
                continue;
            }
            out.push((name.clone(), value.clone()));
        }
        out
    }
}

impl Config {
    /// Parses broker.toml text. `origin` (usually the file name) starts every message. Does
    /// not validate: see [`Config::validate`].
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| {
            ConfigError::Parse {
                origin: origin.to_owned(),
                message: describe_parse_error(text, &err),
            }
        })
    }

    /// Applies the command-line overrides.
    pub fn apply_cli(&mut self, cli: &Cli) {
        if let Some(bind) = &cli.bind {
            self.server.bind.clone_from(bind);
        }
        if let Some(dir) = &cli.data_dir {
            self.storage.data_dir.clone_from(dir);
        }
    }

    /// Checks every bound and cross-key rule, and that API key sources resolve; reports all
    /// problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.server.check(&mut problems);
        self.storage.check(&mut problems);
        self.producer.check(&self.server, &mut problems);
        self.async_requests.check(&mut problems);
        self.auth.resolve(&mut problems);
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, topic) in self.topics.iter().enumerate() {
            topic.check(i, &self.storage, &mut problems);
            if topic.name.is_empty() {
                continue;
            }
            if let Some(first) = names.get(topic.name.as_str()) {
                problems.push(
                    format!("topics[{i}].name"),
                    format!("\"{}\" is already defined by topics[{first}]", topic.name),
                );
            } else {
                names.insert(topic.name.as_str(), i);
            }
        }
        self.backend.check(&mut problems);
        problems.into_result(&self.origin())
    }

    /// The topics to create at start, from `[[topics]]`.
    pub fn configured_topics(&self) -> Result<Vec<(TopicName, TopicConfig)>, ConfigError> {
        let mut problems = Problems::default();
        let mut topics = Vec::with_capacity(self.topics.len());
        for (i, entry) in self.topics.iter().enumerate() {
            match entry.to_topic(&self.storage) {
                Ok(topic) => topics.push(topic),
                Err(e) => problems.push(format!("topics[{i}].name"), e.to_string()),
            }
        }
        problems.into_result(&self.origin()).map(|()| topics)
    }

    /// The config of a topic created at run time (`POST /api/topics` without settings):
    /// `[storage]` defaults, one partition, no compression, the default retention.
    pub fn default_topic_config(&self) -> TopicConfig {
        let defaults = TopicEntry::default();
        let log = LogConfig {
            segment_bytes: self.storage.segment_bytes,
            index_interval_bytes: self.storage.index_interval_bytes,
            flush: self.storage.flush.policy(self.storage.flush_interval_ms),
            retention_ms: Some(defaults.retention_ms),
            retention_bytes: None,
        };
        TopicConfig {
            partitions: defaults.partitions,
            compression: defaults.compression,
            log,
        }
    }

    /// The API keys, secrets read from the environment and key files. Empty when auth is
    /// disabled.
    pub fn api_keys(&self) -> Result<Vec<ApiKey>, ConfigError> {
        if !self.auth.enabled {
            return Ok(Vec::new());
        }
        let mut problems = Problems::default();
        let keys = self.auth.resolve(&mut problems);
        problems.into_result(&self.origin()).map(|()| keys)
    }

    fn origin(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => "configuration".to_owned(),
        }
    }
}

/// Reads the file named on the command line, applies the flags and validates.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config = load_file(&cli.config)?;
    config.apply_cli(cli);
    config.validate()?;
    Ok(config)
}

fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = Config::from_toml(&text, &path.display().to_string())?;
    config.source = Some(path.to_owned());
    Ok(config)
}

/// Turns a toml/serde error into one line naming the key: ``unknown field `x` in [storage],
/// expected … (line 5, column 1)`` or ``topics[1].partitions: invalid value … (line 9, column
/// 14)``.
fn describe_parse_error(text: &str, err: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let inner = err.inner();
    // toml's messages may span lines ("invalid table header\nexpected ..."); keep one line.
    let message = inner
        .message()
        .trim_end()
        .replace('\n', ", ")
        .replace(", , ", ", ");
    let segments: Vec<String> = err
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(format!(".{key}")),
            serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
            serde_path_to_error::Segment::Enum { variant } => Some(format!(".{variant}")),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect();
    let join = |segments: &[String]| segments.concat().trim_start_matches('.').to_owned();
    let described = if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path ends with the unknown key itself; name the table that holds it.
        let table = match segments.split_last() {
            Some((_, parent)) if !parent.is_empty() => {
                let parent = join(parent);
                if parent.contains('[') {
                    parent
                } else {
                    format!("[{parent}]")
                }
            }
            _ => "the top level".to_owned(),
        };
        match rest.split_once('`') {
            Some((field, expected)) => format!("unknown field `{field}` in {table}{expected}"),
            None => message.clone(),
        }
    } else if segments.is_empty() {
        message
    } else {
        format!("{}: {message}", join(&segments))
    };
    match inner.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("{described} (line {line}, column {column})")
        }
        None => described,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        match Config::from_toml(text, "broker.toml") {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_error(text: &str) -> String {
        match Config::from_toml(text, "broker.toml") {
            Ok(config) => panic!("parsed: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn problems(config: &Config) -> Vec<String> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let config = parse("");
        assert_eq!(config, Config::default());
        assert_eq!(config.server.bind, "127.0.0.1:8080");
        assert_eq!(config.server.max_request_bytes, 67_108_864);
        assert_eq!(config.server.workers, None);
        assert!(config.server.workers() >= 1);
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(config.storage.segment_bytes, 1_073_741_824);
        assert_eq!(config.storage.flush, FlushMode::Always);
        assert_eq!(config.storage.flush_interval_ms, 1000);
        assert_eq!(config.storage.index_interval_bytes, 4096);
        assert_eq!(config.storage.min_free_bytes, 0);
        assert_eq!(config.storage.preallocate_bytes, 1 << 20);
        assert!(config.storage.partition_threads() >= 1);
        assert_eq!(config.producer.request_timeout_ms, 30_000);
        assert_eq!(config.producer.request_timeout(), Duration::from_secs(30));
        assert_eq!(config.producer.max_inflight_bytes, 268_435_456);
        assert_eq!(config.async_requests.status_ttl_secs, 1800);
        assert_eq!(config.async_requests.cleanup_interval_secs, 300);
        assert_eq!(config.async_requests.max_pending, 10_000);
        assert!(!config.auth.enabled);
        assert!(config.auth.api_keys.is_empty());
        assert!(config.topics.is_empty());
        assert_eq!(config.backend.kind, BackendKind::Local);
        assert_eq!(config.validate().ok(), Some(()));
    }

    #[test]
    fn every_key_can_be_set() {
        let config = parse(
            r#"
            [server]
            bind = "0.0.0.0:9090"
            max_request_bytes = 2048
            workers = 3
            [storage]
            data_dir = "/var/lib/rill"
            segment_bytes = 4096
            flush = "interval"
            flush_interval_ms = 250
            index_interval_bytes = 512
            preallocate_bytes = 65536
            partition_threads = 3
            [producer]
            request_timeout_ms = 5000
            max_inflight_bytes = 4096
            [async]
            status_ttl_secs = 60
            cleanup_interval_secs = 10
            max_pending = 5
            [auth]
            enabled = true
            api_keys = [{ key = "s3cret", topics = ["orders", "logs-*"] }]
            [[topics]]
            name = "orders"
            partitions = 3
            compression = "zstd"
            retention_ms = -1
            retention_bytes = 1000000
            segment_bytes = 8192
            flush = "os"
            [[topics]]
            name = "audit"
            flush = "interval"
            flush_interval_ms = 10
            [backend]
            kind = "local"
            bootstrap_servers = "k1:9092"
            "#,
        );
        assert_eq!(config.server.bind, "0.0.0.0:9090");
        assert_eq!(config.server.max_request_bytes, 2048);
        assert_eq!(config.server.workers(), 3);
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/rill"));
        assert_eq!(config.storage.segment_bytes, 4096);
        assert_eq!(config.storage.flush, FlushMode::Interval);
        assert_eq!(config.storage.flush_interval_ms, 250);
        assert_eq!(config.storage.index_interval_bytes, 512);
        assert_eq!(config.storage.preallocate_bytes, 65536);
        assert_eq!(config.storage.partition_threads(), 3);
        assert_eq!(config.producer.request_timeout_ms, 5000);
        assert_eq!(config.producer.max_inflight_bytes, 4096);
        assert_eq!(config.async_requests.status_ttl(), Duration::from_secs(60));
        assert_eq!(
            config.async_requests.cleanup_interval(),
            Duration::from_secs(10)
        );
        assert_eq!(config.async_requests.max_pending, 5);
        assert!(config.auth.enabled);
        assert_eq!(config.backend.bootstrap_servers.as_deref(), Some("k1:9092"));
        assert_eq!(problems(&config), Vec::<String>::new());

        let topics = config.configured_topics().expect("valid topics");
        let (name, orders) = &topics[0];
        assert_eq!(name.as_str(), "orders");
        assert_eq!(orders.partitions, 3);
        assert_eq!(orders.compression, Compression::Zstd);
        assert_eq!(orders.log.segment_bytes, 8192);
        assert_eq!(orders.log.index_interval_bytes, 512);
        assert_eq!(orders.log.flush, FlushPolicy::Os);
        assert_eq!(orders.log.retention_ms, None);
        assert_eq!(orders.log.retention_bytes, Some(1_000_000));
        let (_, audit) = &topics[1];
        assert_eq!(audit.partitions, 1);
        assert_eq!(audit.compression, Compression::None);
        assert_eq!(audit.log.segment_bytes, 4096);
        assert_eq!(audit.log.flush, FlushPolicy::Interval { interval_ms: 10 });
        assert_eq!(audit.log.retention_ms, Some(604_800_000));
        assert_eq!(audit.log.retention_bytes, None);

        let keys = config.api_keys().expect("keys resolve");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].secret, "s3cret");
        assert!(keys[0].scope.allows("orders"));
        assert!(keys[0].scope.allows("logs-web"));
        assert!(!keys[0].scope.allows("payments"));
    }

    #[test]
    fn topics_inherit_storage_defaults() {
        let config = parse(
            "[storage]\nflush = \"interval\"\nflush_interval_ms = 50\n[[topics]]\nname = \"t\"\n",
        );
        let topics = config.configured_topics().expect("valid");
        assert_eq!(
            topics[0].1.log.flush,
            FlushPolicy::Interval { interval_ms: 50 }
        );
        assert_eq!(topics[0].1.log.segment_bytes, 1 << 30);
    }

    #[test]
    fn runtime_topics_get_storage_defaults_and_one_partition() {
        let config = parse("[storage]\nsegment_bytes = 2048\nflush = \"os\"\n");
        let topic = config.default_topic_config();
        assert_eq!(topic.partitions, 1);
        assert_eq!(topic.compression, Compression::None);
        assert_eq!(topic.log.segment_bytes, 2048);
        assert_eq!(topic.log.flush, FlushPolicy::Os);
        assert_eq!(topic.log.retention_ms, Some(604_800_000));
        assert_eq!(topic.log.retention_bytes, None);
        assert_eq!(
            Config::default().default_topic_config(),
            TopicConfig::default()
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_table_and_line() {
        let message =
            parse_error("[server]\nbind = \"127.0.0.1:1\"\n\n[storage]\nsegmnet_bytes = 1\n");
        assert!(
            message
                .starts_with("broker.toml: unknown field `segmnet_bytes` in [storage], expected"),
            "{message}"
        );
        assert!(message.contains("`segment_bytes`"), "{message}");
        assert!(message.ends_with("(line 5, column 1)"), "{message}");

        let message =
            parse_error("[[topics]]\nname = \"a\"\n[[topics]]\nname = \"b\"\nparitions = 2\n");
        assert!(
            message.contains("unknown field `paritions` in topics[1]"),
            "{message}"
        );
        let message = parse_error("[auth]\napi_keys = [{ key = \"k\", topic = [] }]\n");
        assert!(
            message.contains("unknown field `topic` in auth.api_keys[0]"),
            "{message}"
        );
        let message = parse_error("verbose = true\n");
        assert!(
            message.contains("unknown field `verbose` in the top level"),
            "{message}"
        );
        let message = parse_error("[logging]\n");
        assert!(message.contains("unknown field `logging`"), "{message}");
    }

    #[test]
    fn a_wrong_type_or_value_names_the_key_path() {
        let message =
            parse_error("[[topics]]\nname = \"a\"\n[[topics]]\nname = \"b\"\npartitions = -1\n");
        assert!(
            message.starts_with("broker.toml: topics[1].partitions: invalid value"),
            "{message}"
        );
        let message = parse_error("[storage]\nflush = \"sometimes\"\n");
        assert!(
            message.contains("storage.flush: unknown variant `sometimes`"),
            "{message}"
        );
        let message = parse_error("[[topics]]\nname = \"a\"\ncompression = \"lz5\"\n");
        assert!(
            message.contains("topics[0].compression: unknown variant `lz5`"),
            "{message}"
        );
        let message = parse_error("[storage\n");
        assert!(
            message.starts_with("broker.toml: invalid table header"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let config = parse(
            r#"
            [server]
            bind = "not an address"
            max_request_bytes = 10
            workers = 0
            [storage]
            segment_bytes = 100
            flush_interval_ms = 0
            partition_threads = 0
            [producer]
            request_timeout_ms = 0
            [async]
            status_ttl_secs = 0
            cleanup_interval_secs = 0
            max_pending = 0
            [auth]
            enabled = true
            api_keys = [{ key = "a", key_env = "B" }, { topics = ["a*b"] }]
            [[topics]]
            name = "ok"
            [[topics]]
            name = "bad/name"
            partitions = 0
            retention_ms = -5
            retention_bytes = 0
            segment_bytes = 4294967296
            flush_interval_ms = 5
            [[topics]]
            name = "ok"
            [[topics]]
            partitions = 10001
            [backend]
            kind = "kafka"
            "#,
        );
        let found = problems(&config);
        let expected = [
            "server.bind: \"not an address\" is not a socket address",
            "server.max_request_bytes: must be at least 1024, got 10",
            "server.workers: must be at least 1",
            "storage.segment_bytes: must be at least 1024, got 100",
            "storage.partition_threads: must be at least 1",
            "storage.flush_interval_ms: must be at least 1",
            "producer.request_timeout_ms: must be at least 1",
            "async.status_ttl_secs: must be at least 1",
            "async.cleanup_interval_secs: must be at least 1",
            "async.max_pending: must be at least 1",
            "auth.api_keys[0]: exactly one of key, key_env, key_file",
            "auth.api_keys[1].topics[0]: \"a*b\" is neither a topic name nor a prefix",
            "auth.api_keys[1]: exactly one of key, key_env, key_file",
            "topics[1].name: \"bad/name\" is invalid",
            "topics[1].partitions: must be 1..=10000, got 0",
            "topics[1].retention_ms: must be -1 (keep forever) or positive, got -5",
            "topics[1].retention_bytes: must be -1 (no limit) or positive, got 0",
            "topics[1].segment_bytes: must be at most 2147483647",
            "topics[1].flush_interval_ms: is only used with flush = \"interval\"",
            "topics[2].name: \"ok\" is already defined by topics[0]",
            "topics[3].name: missing",
            "topics[3].partitions: must be 1..=10000, got 10001",
            "backend.bootstrap_servers: required with kind = \"kafka\"",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        let message = config.validate().map_err(|e| e.to_string()).err();
        let message = message.unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "configuration: {} problems:\n  server.bind",
                expected.len()
            )),
            "{message}"
        );
    }

    #[test]
    fn inflight_budget_must_hold_the_largest_request() {
        let config =
            parse("[server]\nmax_request_bytes = 4096\n[producer]\nmax_inflight_bytes = 4095\n");
        assert_eq!(
            problems(&config),
            ["producer.max_inflight_bytes: must be at least server.max_request_bytes (4096), got 4095"]
        );
    }

    #[test]
    fn auth_enabled_without_keys_is_refused() {
        let config = parse("[auth]\nenabled = true\n");
        assert_eq!(
            problems(&config),
            ["auth.api_keys: auth is enabled but no keys are configured: every request would be refused"]
        );
    }

    #[test]
    fn key_env_resolves_from_the_environment() {
        let var = "RILL_TEST_CONFIG_KEY_ENV_SET";
        std::env::set_var(var, "from-env");
        let config = parse(&format!(
            "[auth]\nenabled = true\napi_keys = [{{ key_env = \"{var}\", topics = [\"orders\"] }}]\n"
        ));
        assert_eq!(problems(&config), Vec::<String>::new());
        let keys = config.api_keys().expect("resolves");
        assert_eq!(keys[0].secret, "from-env");
        assert!(keys[0].scope.allows("orders"));
        assert!(!keys[0].scope.allows("orders2"));
    }

    #[test]
    fn an_unset_key_env_is_a_problem_only_when_auth_is_on() {
        let var = "RILL_TEST_CONFIG_KEY_ENV_UNSET";
        std::env::remove_var(var);
        let text = format!("[auth]\nenabled = ENABLED\napi_keys = [{{ key_env = \"{var}\" }}]\n");
        let on = parse(&text.replace("ENABLED", "true"));
        assert_eq!(
            problems(&on),
            [format!(
                "auth.api_keys[0].key_env: environment variable {var} is not set"
            )]
        );
        assert!(on.api_keys().is_err());
        let off = parse(&text.replace("ENABLED", "false"));
        assert_eq!(problems(&off), Vec::<String>::new());
        assert_eq!(off.api_keys().ok(), Some(Vec::new()));
    }

    #[test]
    fn key_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ingest.key");
        std::fs::write(&path, "file-secret\n").expect("write key");
        let missing = dir.path().join("missing.key");
        let config = parse(&format!(
            "[auth]\nenabled = true\napi_keys = [{{ key_file = {:?} }}, {{ key_file = {:?} }}]\n",
            path.display().to_string(),
            missing.display().to_string()
        ));
        let found = problems(&config);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("auth.api_keys[1].key_file: cannot read"),
            "{found:?}"
        );
        let mut problems = Problems::default();
        let keys = config.auth.resolve(&mut problems);
        assert_eq!(keys[0].secret, "file-secret");
    }

    #[test]
    fn one_secret_with_two_scopes_is_refused() {
        let config = parse(
            "[auth]\nenabled = true\napi_keys = [{ key = \"k\", topics = [\"a\"] }, { key = \"k\", topics = [\"b\"] }]\n",
        );
        assert_eq!(
            problems(&config),
            ["auth.api_keys[1]: same key as auth.api_keys[0]"]
        );
    }

    #[test]
    fn keys_carry_their_name_and_quota() {
        let config = parse(
            r#"
[auth]
enabled = true
api_keys = [
  { key = "k0", name = "ingest", quota = { records_per_sec = 1000, bytes_per_sec = 1048576, max_inflight = 4 } },
  { key = "k1", quota = { max_inflight = 1 } },
  { key = "k2", quota = {} },
]
"#,
        );
        assert_eq!(problems(&config), Vec::<String>::new());
        let keys = config.api_keys().expect("resolves");
        let named: Vec<(&str, Option<QuotaConfig>)> =
            keys.iter().map(|k| (k.name.as_str(), k.quota)).collect();
        assert_eq!(
            named,
            [
                (
                    "ingest",
                    Some(QuotaConfig {
                        records_per_sec: Some(1000),
                        bytes_per_sec: Some(1_048_576),
                        max_inflight: Some(4),
                    })
                ),
                (
                    "key-1",
                    Some(QuotaConfig {
                        max_inflight: Some(1),
                        ..QuotaConfig::default()
                    })
                ),
                ("key-2", None),
            ]
        );
    }

    #[test]
    fn quota_limits_of_zero_and_clashing_or_unsafe_names_are_reported_by_key_path() {
        let config = parse(
            r#"
[auth]
enabled = true
api_keys = [
  { key = "k0", name = "key-1" },
  { key = "k1" },
  { key = "k2", quota = { records_per_sec = 0, bytes_per_sec = 0, max_inflight = 0 } },
  { key = "k3", name = "has space" },
  { key = "k4", name = "" },
  { key = "same-as-name", name = "same-as-name" },
]
"#,
        );
        assert_eq!(
            problems(&config),
            [
                "auth.api_keys[1].name: \"key-1\" is already the name of auth.api_keys[0]",
                "auth.api_keys[2].quota.records_per_sec: must be at least 1",
                "auth.api_keys[2].quota.bytes_per_sec: must be at least 1",
                "auth.api_keys[2].quota.max_inflight: must be at least 1",
                "auth.api_keys[3].name: must be 1..=64 characters of A-Z a-z 0-9 . _ -",
                "auth.api_keys[4].name: must be 1..=64 characters of A-Z a-z 0-9 . _ -",
                "auth.api_keys[5].name: must not be the key itself",
            ]
        );
        let long = "n".repeat(MAX_KEY_NAME_CHARS + 1);
        let config = parse(&format!(
            "[auth]\nenabled = true\napi_keys = [{{ key = \"k\", name = \"{long}\" }}]\n"
        ));
        assert_eq!(problems(&config).len(), 1);
    }

    #[test]
    fn a_misspelt_quota_key_is_a_parse_error() {
        let message = parse_error(
            "[auth]\nenabled = true\napi_keys = [{ key = \"k\", quota = { record_per_sec = 5 } }]\n",
        );
        assert!(message.contains("record_per_sec"), "{message}");
        let message = parse_error(
            "[auth]\nenabled = true\napi_keys = [{ key = \"k\", quota = { max_inflight = -1 } }]\n",
        );
        assert!(message.contains("max_inflight"), "{message}");
    }

    #[test]
    fn scopes_match_exact_names_and_prefixes() {
        let parse_all = |patterns: &[&str]| {
            TopicScope::new(
                patterns
                    .iter()
                    .map(|p| TopicPattern::parse(p).expect("valid pattern"))
                    .collect(),
            )
        };
        let scope = parse_all(&["orders", "logs-*"]);
        assert!(scope.allows("orders"));
        assert!(!scope.allows("orders-eu"));
        assert!(!scope.allows("order"));
        assert!(scope.allows("logs-"));
        assert!(scope.allows("logs-web"));
        assert!(!scope.allows("logs"));
        assert!(parse_all(&["*"]).allows("anything"));
        assert!(TopicScope::all().allows("anything"));
        for bad in ["a*b", "**", "a/b*", "", "a b"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config =
            parse("[auth]\nenabled = true\napi_keys = [{ key = \"hunter2-very-secret\" }]\n");
        let keys = config.api_keys().expect("resolves");
        let printed = format!("{config:?} {keys:?} {:#?}", keys[0]);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn command_line_flags_override_the_file() {
        let cli = Cli::try_parse_from(["rill"]).expect("no flags");
        assert_eq!(cli.config, PathBuf::from("broker.toml"));
        assert_eq!(cli.bind, None);

        let cli = Cli::try_parse_from([
            "rill",
            "--config",
            "other.toml",
            "--bind",
            "0.0.0.0:9000",
            "--data-dir",
            "/tmp/rill-data",
        ])
        .expect("flags parse");
        assert_eq!(cli.config, PathBuf::from("other.toml"));
        let mut config = parse("[server]\nbind = \"127.0.0.1:1\"\n[storage]\ndata_dir = \"x\"\n");
        config.apply_cli(&cli);
        assert_eq!(config.server.bind, "0.0.0.0:9000");
        assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/rill-data"));
        assert!(Cli::try_parse_from(["rill", "--bogus"]).is_err());
    }

    #[test]
    fn load_reads_applies_flags_and_validates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, "[storage]\nsegment_bytes = 10\n").expect("write");
        let cli = Cli {
            config: path.clone(),
            bind: Some("nonsense".to_owned()),
            data_dir: None,
        };
        let message = load(&cli).map(|_| ()).map_err(|e| e.to_string()).err();
        let message = message.unwrap_or_default();
        assert!(
            message.starts_with(&format!("{}: 2 problems:", path.display())),
            "{message}"
        );
        assert!(message.contains("server.bind"), "{message}");
        assert!(message.contains("storage.segment_bytes"), "{message}");

        let missing = Cli {
            config: dir.path().join("nope.toml"),
            bind: None,
            data_dir: None,
        };
        let message = load(&missing).map(|_| ()).map_err(|e| e.to_string()).err();
        assert!(
            message
                .unwrap_or_default()
                .contains("nope.toml: cannot read"),
            "missing file not reported"
        );
    }

    #[test]
    fn server_timeouts_and_tls_are_read_and_checked() {
        let config =
            parse("[server]\nbody_read_timeout_ms = 250\nclient_disconnect_timeout_ms = 0\n");
        assert_eq!(config.server.body_read_timeout_ms, 250);
        assert_eq!(config.server.client_disconnect_timeout_ms, 0);
        assert_eq!(config.server.tls, None);
        assert_eq!(problems(&config), Vec::<String>::new());
        assert_eq!(
            config.server.connection_idle_timeout(),
            Duration::from_millis(35_000),
            "keep_alive_secs + client_request_timeout_ms"
        );
        let config = parse("[server]\nconnection_idle_timeout_ms = 40000\n");
        assert_eq!(
            config.server.connection_idle_timeout(),
            Duration::from_secs(40)
        );
        let config = parse("[server]\nkeep_alive_secs = 60\nconnection_idle_timeout_ms = 6000\n");
        assert_eq!(
            problems(&config),
            ["server.connection_idle_timeout_ms: must be at least client_request_timeout_ms and keep_alive_secs (60000 ms), got 6000"]
        );
        let config = parse("[server]\nbody_read_timeout_ms = 0\n");
        assert_eq!(
            problems(&config),
            ["server.body_read_timeout_ms: must be at least 1"]
        );

        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        let text = format!("[server.tls]\ncert = {cert:?}\nkey = {key:?}\n");
        let config = parse(&text);
        let tls = config.server.tls.as_ref().expect("tls set");
        assert_eq!(tls.handshake_timeout_ms, 3000);
        assert_eq!(problems(&config), Vec::<String>::new());
        let (chain, _key) = tls.load().expect("cert and key load");
        assert_eq!(chain.len(), 1);

        // Swapped files, a missing file, an unknown key: each named.
        let swapped = parse(&format!(
            "[server.tls]\ncert = {key:?}\nkey = {cert:?}\nhandshake_timeout_ms = 0\n"
        ));
        let found = problems(&swapped);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("server.tls.cert: "), "{found:?}");
        assert!(found[1].starts_with("server.tls.key: "), "{found:?}");
        assert_eq!(
            found[2],
            "server.tls.handshake_timeout_ms: must be at least 1"
        );
        assert!(
            !found.iter().any(|p| p.contains("PRIVATE KEY-----")),
            "key material in a message: {found:?}"
        );
        let missing =
            parse("[server.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n");
        let found = problems(&missing);
        assert!(
            found[0].contains("/nonexistent/c.pem: cannot read"),
            "{found:?}"
        );
        assert!(
            found[1].contains("/nonexistent/k.pem: cannot read"),
            "{found:?}"
        );
        let message =
            parse_error("[server.tls]\ncert = \"c\"\nkey = \"k\"\nmin_version = \"1.0\"\n");
        assert!(message.contains("unknown field `min_version`"), "{message}");
        let message = parse_error("[server.tls]\ncert = \"c\"\n");
        assert!(message.contains("key"), "{message}");
    }

    #[test]
    fn kafka_backend_needs_its_cluster_address() {
        let config =
            parse("[backend]\nkind = \"kafka\"\nbootstrap_servers = \"k1:9092, k2:9093\"\n");
        assert_eq!(config.backend.kind, BackendKind::Kafka);
        assert_eq!(problems(&config), Vec::<String>::new());
        let properties = config.backend.kafka_client_properties().expect("resolves");
        assert_eq!(
            properties,
            [(
                "bootstrap.servers".to_string(),
                "k1:9092, k2:9093".to_string()
            )]
        );
        let k = &config.backend.kafka;
        assert_eq!(k.replication_factor, None);
        assert_eq!(k.metadata_timeout(), Duration::from_secs(2));
        assert_eq!(k.metadata_refresh(), Duration::from_secs(10));
        assert_eq!(k.unknown_topic_ttl(), Duration::from_secs(1));
        assert_eq!(k.read_timeout(), Duration::from_secs(5));

        let config =
            parse("[backend]\nkind = \"kafka\"\nbootstrap_servers = \"k1,:9092,k2:0,k3:x\"\n");
        assert_eq!(
            problems(&config),
            [
                "backend.bootstrap_servers: \"k1\" is not host:port",
                "backend.bootstrap_servers: \":9092\" is not host:port",
                "backend.bootstrap_servers: \"k2:0\" is not host:port",
                "backend.bootstrap_servers: \"k3:x\" is not host:port",
            ]
        );
    }

    #[test]
    fn kafka_security_keys_become_librdkafka_properties() {
        let var = "RILL_TEST_CONFIG_SASL_PASSWORD";
        std::env::set_var(var, "pw-from-env");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let config = parse(&format!(
            r#"
            [backend]
            kind = "kafka"
            bootstrap_servers = "k1:9093"
            security_protocol = "SASL_SSL"
            sasl_mechanism = "scram-sha-512"
            sasl_username = "rill"
            sasl_password_env = "{var}"
            ssl_ca_location = {ca:?}
            [backend.kafka]
            replication_factor = 3
            metadata_timeout_ms = 500
            [backend.kafka.properties]
            "linger.ms" = "20"
            "client.id" = "gateway-1"
            "#
        ));
        assert_eq!(problems(&config), Vec::<String>::new());
        let properties = config.backend.kafka_client_properties().expect("resolves");
        let get = |name: &str| {
            properties
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username"), Some("rill"));
        assert_eq!(get("sasl.password"), Some("pw-from-env"));
        assert_eq!(
            get("ssl.ca.location"),
            Some(ca.display().to_string().as_str())
        );
        assert_eq!(get("linger.ms"), Some("20"));
        assert_eq!(get("client.id"), Some("gateway-1"));
        assert_eq!(config.backend.kafka.replication_factor, Some(3));
        // Secrets never show in Debug output, nor do raw property values.
        let inline = parse(
            "[backend]\nkind = \"kafka\"\nbootstrap_servers = \"k:1\"\nsecurity_protocol = \"sasl_plaintext\"\n\
             sasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password = \"hunter2\"\n\
             [backend.kafka.properties]\n\"sasl.oauthbearer.client.secret\" = \"s3cret\"\n",
        );
        let debug = format!("{:?}", inline.backend);
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(debug.contains("sasl.oauthbearer.client.secret"), "{debug}");
    }

    #[test]
    fn kafka_backend_problems_each_name_their_key() {
        let config = parse(
            r#"
            [backend]
            kind = "kafka"
            bootstrap_servers = "k1:9092"
            security_protocol = "tls"
            sasl_username = "u"
            ssl_ca_location = "/nonexistent/ca.pem"
            ssl_key_password_env = "RILL_TEST_CONFIG_NOT_SET"
            [backend.kafka]
            replication_factor = 0
            metadata_timeout_ms = 0
            metadata_refresh_ms = 10
            read_timeout_ms = 0
            [backend.kafka.properties]
            "acks" = "1"
            "bootstrap.servers" = "x:1"
            "linger.mss" = "5"
            "linger.ms" = "soon"
            "#,
        );
        let found = problems(&config);
        let expected = [
            "backend.security_protocol: must be one of",
            "backend.sasl_username: needs security_protocol = \"sasl_plaintext\" or \"sasl_ssl\"",
            "backend.ssl_ca_location: needs security_protocol = \"ssl\" or \"sasl_ssl\"",
            "backend.ssl_key_password_env: needs security_protocol",
            "backend.kafka.replication_factor: must be at least 1",
            "backend.kafka.metadata_timeout_ms: must be at least 1",
            "backend.kafka.metadata_refresh_ms: must be at least 100, got 10",
            "backend.kafka.read_timeout_ms: must be at least 1",
            "backend.kafka.properties.\"acks\": cannot be set here: rill always produces with acks=all",
            "backend.kafka.properties.\"bootstrap.servers\": cannot be set here: set backend.bootstrap_servers",
            "backend.kafka.properties.\"linger.ms\": ",
            "backend.kafka.properties.\"linger.mss\": ",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");

        let sasl = parse(
            "[backend]\nkind = \"kafka\"\nbootstrap_servers = \"k:1\"\nsecurity_protocol = \"sasl_ssl\"\n\
             sasl_mechanism = \"GSSAPI\"\nssl_ca_location = \"/nonexistent/ca.pem\"\n",
        );
        let found = problems(&sasl);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("backend.sasl_mechanism: must be one of"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("backend.ssl_ca_location: cannot read /nonexistent/ca.pem"),
            "{found:?}"
        );
        let plain = parse(
            "[backend]\nkind = \"kafka\"\nbootstrap_servers = \"k:1\"\nsecurity_protocol = \"sasl_plaintext\"\n\
             sasl_mechanism = \"PLAIN\"\nsasl_password_env = \"RILL_TEST_CONFIG_NOT_SET\"\n",
        );
        assert_eq!(
            problems(&plain),
            [
                "backend.sasl_username: required with sasl_mechanism PLAIN or SCRAM-*",
                "backend.sasl_password_env: environment variable RILL_TEST_CONFIG_NOT_SET is not set",
            ]
        );
        let message = parse_error("[backend]\nkind = \"kafka\"\nbootstrap = \"k:1\"\n");
        assert!(
            message.contains("unknown field `bootstrap` in [backend]"),
            "{message}"
        );
        let message = parse_error("[backend.kafka]\nlinger_ms = 5\n");
        assert!(
            message.contains("unknown field `linger_ms` in [backend.kafka]"),
            "{message}"
        );
        let message = parse_error("[backend.kafka.properties]\n\"linger.ms\" = 5\n");
        assert!(message.contains("backend.kafka.properties"), "{message}");
    }

    #[test]
    fn the_shipped_broker_toml_is_valid() {
        let config = parse(include_str!("../broker.toml"));
        assert_eq!(problems(&config), Vec::<String>::new());
        let topics = config.configured_topics().expect("valid topics");
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].0.as_str(), "orders");
        assert_eq!(topics[0].1.partitions, 3);
        assert_eq!(config.server.bind, "127.0.0.1:8080");
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
    }
}
