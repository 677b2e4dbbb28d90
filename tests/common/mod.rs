//! The one way API tests start rill: the real binary, a fresh data dir, a config written for
//! the test, port chosen by the OS and read from the binary's stdout. Talk to it with a real
//! HTTP client (`reqwest`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{json, Value};

pub struct Broker {
    pub url: String,
    pub child: Child,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    /// Keeps the temporary directory alive as long as the broker.
    _dir: Option<tempfile::TempDir>,
    pub client: Client,
}

/// Starts rill with `extra` TOML appended to a minimal config (fresh data dir, port 0).
pub fn spawn_broker(extra: &str) -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config_path = dir.path().join("broker.toml");
    std::fs::write(&config_path, config_text(&data_dir, extra)).expect("config written");
    let mut broker = start(&config_path, &data_dir);
    broker._dir = Some(dir);
    broker
}

pub fn config_text(data_dir: &Path, extra: &str) -> String {
    // `extra` may carry its own [server]/[storage] tables; only add ours if it does not.
    let mut text = String::new();
    if !extra.contains("[server]") {
        text.push_str("[server]\nbind = \"127.0.0.1:0\"\n");
    }
    if !extra.contains("[storage]") {
        text.push_str(&format!("[storage]\ndata_dir = {:?}\n", data_dir));
    }
    text.push_str(extra);
    text
}

/// Starts the binary on an existing config (used to restart on the same data dir).
pub fn start(config_path: &Path, data_dir: &Path) -> Broker {
    start_wrapped(&[], config_path, data_dir)
}

/// The rill binary on `config_path` and `data_dir` (under `wrapper`, if any), logging at
/// `RUST_LOG` (default `warn`).
fn rill_command(wrapper: &[&str], config_path: &Path, data_dir: &Path) -> Command {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_rill"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_rill")),
    };
    command
        .arg("--config")
        .arg(config_path)
        .arg("--data-dir")
        .arg(data_dir)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    command
}

/// Starts the binary under a wrapper command, e.g. `fiu-run -x -c …` for fault injection.
pub fn start_wrapped(wrapper: &[&str], config_path: &Path, data_dir: &Path) -> Broker {
    let mut child = rill_command(wrapper, config_path, data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("rill binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("rill listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => {
                let status = child.wait().expect("wait");
                panic!("rill exited before listening: {status}");
            }
        }
    };
    // Keep draining stdout so the broker never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Broker {
        url,
        child,
        data_dir: data_dir.to_path_buf(),
        config_path: config_path.to_path_buf(),
        _dir: None,
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

impl Broker {
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(format!("{}{path}", self.url))
    }

    pub fn create_topic(&self, name: &str, partitions: u32) -> Value {
        let res = self
            .post("/api/topics")
            .json(&json!({"name": name, "partitions": partitions}))
            .send()
            .expect("create topic");
        assert_eq!(res.status().as_u16(), 201, "create {name}");
        res.json().expect("json")
    }

    /// POST a produce body; returns (status, JSON body).
    pub fn produce(&self, topic: &str, query: &str, body: &Value) -> (u16, Value) {
        let res = self
            .post(&format!("/api/topics/{topic}/produce{query}"))
            .json(body)
            .send()
            .expect("produce");
        status_json(res)
    }

    pub fn read(&self, topic: &str, partition: u32, query: &str) -> (u16, Value) {
        let res = self
            .get(&format!(
                "/api/topics/{topic}/partitions/{partition}/records{query}"
            ))
            .send()
            .expect("read");
        status_json(res)
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for exit (at most `within`). Returns the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rill did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts on the same config and data dir (after `kill` or `terminate`).
    pub fn restart(mut self) -> Broker {
        self.kill();
        let mut next = start(&self.config_path, &self.data_dir);
        next._dir = self._dir.take();
        next
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn status_json(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

// ---------------------------------------------------------------------------------------------
// Crash and fault suites (tests/crash_harness.rs, tests/faults.rs): a broker whose stderr is
// kept, a seeded RNG, random produce requests whose records carry a unique id, and the oracle
// that checks a restarted broker against what was acknowledged.
// ---------------------------------------------------------------------------------------------

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Everything a broker wrote to stderr (its log), collected by a background thread.
#[derive(Clone, Default)]
pub struct StderrLog(Arc<Mutex<String>>);

impl StderrLog {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// A temporary directory with a config for `extra` (see [`config_text`]) and a data dir
/// path inside it, nothing started yet.
pub fn prepare_dir(extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config_path = dir.path().join("broker.toml");
    std::fs::write(&config_path, config_text(&data_dir, extra)).expect("config written");
    (dir, config_path, data_dir)
}

/// Like [`start_wrapped`], but the broker's stderr (its log, at `RUST_LOG`, default `warn`)
/// is captured instead of inherited, so tests can look for warnings and panics.
pub fn start_logged(wrapper: &[&str], config_path: &Path, data_dir: &Path) -> (Broker, StderrLog) {
    start_logged_with(wrapper, config_path, data_dir, &[])
}

fn start_logged_with(
    wrapper: &[&str],
    config_path: &Path,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> (Broker, StderrLog) {
    let mut child = rill_command(wrapper, config_path, data_dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill binary starts");
    let log = StderrLog::default();
    let stderr = child.stderr.take().expect("stderr piped");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut text = sink.0.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("rill listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => {
                let status = child.wait().expect("wait");
                std::thread::sleep(Duration::from_millis(100));
                panic!("rill exited before listening: {status}\n{}", log.tail(20));
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let broker = Broker {
        url,
        child,
        data_dir: data_dir.to_path_buf(),
        config_path: config_path.to_path_buf(),
        _dir: None,
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    };
    (broker, log)
}

impl Broker {
    /// Makes the broker own `dir` (removed when the broker is dropped), like `spawn_broker`.
    pub fn keep_dir(&mut self, dir: tempfile::TempDir) {
        self._dir = Some(dir);
    }

    /// Hands the temporary directory to the caller (e.g. to start another broker on it).
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        self._dir.take()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not exited, not killed by a signal).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL (if still running), then starts again on the same config and data dir with
    /// the log captured. `wrapper` as in [`start_wrapped`] (`&[]` for none).
    pub fn restart_logged(mut self, wrapper: &[&str]) -> (Broker, StderrLog) {
        self.kill();
        let (mut next, log) = start_logged(wrapper, &self.config_path, &self.data_dir);
        next._dir = self._dir.take();
        (next, log)
    }

    /// `end_offset` of every partition of `topic`, from `GET /api/topics/{topic}`.
    pub fn end_offsets(&self, topic: &str) -> Vec<i64> {
        let (s, b) = status_json(self.get(&format!("/api/topics/{topic}")).send().unwrap());
        assert_eq!(s, 200, "describe {topic}: {b}");
        b["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["end_offset"].as_i64().expect("end_offset"))
            .collect()
    }

    /// Every record of one partition, from offset 0, keys and values as strings.
    pub fn read_everything(&self, topic: &str, partition: u32) -> Vec<Stored> {
        let mut out = Vec::new();
        self.for_each_stored(topic, partition, |r| out.push(r));
        out
    }

    /// Streams every stored record of a partition, in offset order, one page at a time: long
    /// runs hold tens of millions of records, more than fits in memory as `Stored`s at once.
    pub fn for_each_stored(&self, topic: &str, partition: u32, mut each: impl FnMut(Stored)) {
        let mut from = 0;
        loop {
            let (s, b) = self.read(
                topic,
                partition,
                &format!("?offset={from}&limit=10000&key_format=string&value_format=string"),
            );
            assert_eq!(s, 200, "read {topic}/{partition} from {from}: {b}");
            let records = b["records"].as_array().expect("records");
            if records.is_empty() {
                return;
            }
            for r in records {
                let offset = r["offset"].as_i64().expect("offset");
                from = offset + 1;
                each(Stored {
                    offset,
                    key: r["key"].as_str().map(str::to_string),
                    value: r["value"].as_str().expect("string value").to_string(),
                });
            }
        }
    }
}

/// One record as read back.
#[derive(Clone, Debug)]
pub struct Stored {
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
}

/// splitmix64: small, seedable, good enough to pick sizes, keys and moments.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// `RILL_SEED` if set, else the clock: printed by the tests so a failure can be replayed.
    pub fn seed_from_env() -> u64 {
        std::env::var("RILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next_u64() as usize % items.len()]
    }
}

/// 64-bit FNV-1a of a record's key and value: what the ack log stores per record.
pub fn record_hash(key: Option<&str>, value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let key_bytes = key.map_or(&[0xffu8][..], str::as_bytes);
    for b in key_bytes.iter().chain(&[0u8]).chain(value.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One produce request of the suites: every record's value starts with `<id>/<index>/`, so a
/// stored record names the request and position it came from.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: String,
    /// `(key, value)` in request order; keys are always present so the partition each record
    /// goes to is known in advance (Kafka's murmur2, as the broker computes it).
    pub records: Vec<(String, String)>,
    pub compression: &'static str,
    /// Every record sent to this partition explicitly (`"partition": p`), if set.
    pub partition: Option<u32>,
}

impl Request {
    /// `1..=max_records` records with random keys from `key_space` and random-length values.
    pub fn random(rng: &mut Rng, id: String, max_records: u64, key_space: u64) -> Request {
        let n = rng.range(1, max_records) as usize;
        let records = (0..n)
            .map(|i| {
                let key = format!("key-{}", rng.range(0, key_space - 1));
                let pad = rng.range(0, 60) as usize;
                let value = format!("{id}/{i}/{}", "x".repeat(pad));
                (key, value)
            })
            .collect();
        let compression = *rng.pick(&["none", "none", "gzip", "snappy", "lz4", "zstd"]);
        Request {
            id,
            records,
            compression,
            partition: None,
        }
    }

    /// The same request with every record sent to `partition`.
    pub fn for_partition(mut self, partition: u32) -> Request {
        self.partition = Some(partition);
        self
    }

    pub fn body(&self) -> Value {
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|(k, v)| match self.partition {
                None => json!({"key": k, "value": v}),
                Some(p) => json!({"key": k, "value": v, "partition": p}),
            })
            .collect();
        json!({"key_format": "string", "value_format": "string", "records": records})
    }

    /// The partition each record goes to.
    pub fn partitions(&self, partitions: u32) -> Vec<u32> {
        self.records
            .iter()
            .map(|(k, _)| {
                self.partition.unwrap_or_else(|| {
                    rill::partitioner::partition_for_key(k.as_bytes(), partitions)
                })
            })
            .collect()
    }
}

/// What became of a request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Acknowledged: `(partition, offset, record_hash)` per record, in request order (a sync
    /// 200, or an async status `completed` seen before the crash).
    Acked(Vec<(u32, i64, u64)>),
    /// An error answer: status, error_code and message. Nothing of it was acknowledged.
    Refused(u16, String, String),
    /// No answer (connection refused, reset or closed; broker killed; async never finished).
    NoAnswer(String),
}

/// A request and what became of it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub request: Request,
    pub outcome: Outcome,
    /// When it was sent, and how long the client waited for the outcome.
    pub at: Instant,
    pub took: Duration,
}

/// Sends `request` sync (`?compression=…`) and classifies the answer. Any answer other than
/// 200 or an error object is a test failure.
pub fn send_sync(client: &Client, url: &str, topic: &str, request: Request) -> Sent {
    let started = Instant::now();
    let res = client
        .post(format!(
            "{url}/api/topics/{topic}/produce?compression={}",
            request.compression
        ))
        .json(&request.body())
        .send();
    let outcome = match res {
        Err(e) => Outcome::NoAnswer(describe_send_error(&e)),
        Ok(res) => {
            let status = res.status().as_u16();
            match res.text() {
                Err(e) => Outcome::NoAnswer(format!("{status}, body lost: {e}")),
                Ok(text) => {
                    let body: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
                    if status == 200 {
                        Outcome::Acked(acks_of(&request, &body["offsets"]))
                    } else {
                        let code = body["error_code"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{status} without error_code: {body}"));
                        let message = body["message"].as_str().unwrap_or_default();
                        Outcome::Refused(status, code.to_string(), message.to_string())
                    }
                }
            }
        }
    };
    Sent {
        request,
        outcome,
        at: started,
        took: started.elapsed(),
    }
}

/// `connect: …` when the connection was refused (the request never left), else the error
/// with its causes (e.g. the connection closed before the answer).
pub fn describe_send_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "connect".to_string()
    } else if e.is_timeout() {
        "timeout".to_string()
    } else {
        "send".to_string()
    };
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The ack log entries of a 200 answer's (or completed status's) `offsets`.
pub fn acks_of(request: &Request, offsets: &Value) -> Vec<(u32, i64, u64)> {
    let offsets = offsets.as_array().expect("offsets array");
    assert_eq!(
        offsets.len(),
        request.records.len(),
        "one offset per record"
    );
    offsets
        .iter()
        .zip(&request.records)
        .map(|(o, (k, v))| {
            assert!(o["error_code"].is_null(), "record failed in a 200: {o}");
            (
                o["partition"].as_u64().expect("partition") as u32,
                o["offset"].as_i64().expect("offset"),
                record_hash(Some(k), v),
            )
        })
        .collect()
}

/// What requests that were not acknowledged may have left in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unacked {
    /// Each partition's share of the request entirely present (one contiguous batch, in
    /// request order) or entirely absent.
    AllOrNothing,
    /// Entirely absent: the broker never took the request in (e.g. refused while shutting down).
    Absent,
}

/// Figures of one oracle check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checked {
    /// Records in the log, all partitions.
    pub stored: usize,
    /// Acknowledged records found at their offsets with their hashes.
    pub acked_records: usize,
    /// Unacknowledged partition batches found whole / found absent.
    pub unacked_present: usize,
    pub unacked_absent: usize,
}

/// Reads every partition of `topic` and checks it against `sent`: offsets dense from 0 (no
/// gaps, no duplicates), every stored record belongs to a sent request at most once (no
/// duplicates, nothing invented), every acknowledged record at its acknowledged partition and
/// offset with the same hash, and unacknowledged requests as `unacked` says. Panics with
/// `context` (say, the seed and round) on the first kind of violation, listing a few.
pub fn check_log(
    broker: &Broker,
    topic: &str,
    partitions: u32,
    sent: &[Sent],
    unacked: Unacked,
    context: &str,
) -> Checked {
    let mut checked = Checked::default();
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|s| (s.request.id.as_str(), s)).collect();
    // (request id, record index) -> (partition, offset, hash)
    let mut found: HashMap<(&str, usize), (u32, i64, u64)> = HashMap::new();
    let mut problems: Vec<String> = Vec::new();
    let ends = broker.end_offsets(topic);
    for partition in 0..partitions {
        let records = broker.read_everything(topic, partition);
        checked.stored += records.len();
        if ends[partition as usize] != records.len() as i64 {
            problems.push(format!(
                "partition {partition}: end offset {} but {} records readable",
                ends[partition as usize],
                records.len()
            ));
        }
        for (i, r) in records.iter().enumerate() {
            if r.offset != i as i64 {
                problems.push(format!(
                    "partition {partition}: record #{i} has offset {} (gap or duplicate)",
                    r.offset
                ));
                break;
            }
            let mut parts = r.value.splitn(3, '/');
            let (Some(id), Some(index)) = (parts.next(), parts.next()) else {
                problems.push(format!(
                    "{partition}/{}: foreign value {:?}",
                    r.offset, r.value
                ));
                continue;
            };
            let Some((sent, index)) = by_id
                .get_key_value(id)
                .and_then(|(id, s)| Some(((*id, *s), index.parse::<usize>().ok()?)))
            else {
                problems.push(format!(
                    "{partition}/{}: unknown record {:?}",
                    r.offset, r.value
                ));
                continue;
            };
            let (id, sent) = sent;
            let hash = record_hash(r.key.as_deref(), &r.value);
            match sent.request.records.get(index) {
                Some((k, v)) if record_hash(Some(k), v) == hash => {}
                _ => problems.push(format!(
                    "{partition}/{}: record {id}/{index} stored with other bytes",
                    r.offset
                )),
            }
            if let Some(first) = found.insert((id, index), (partition, r.offset, hash)) {
                problems.push(format!(
                    "record {id}/{index} stored twice: {}/{} and {partition}/{}",
                    first.0, first.1, r.offset
                ));
            }
        }
    }
    for s in sent {
        let id = s.request.id.as_str();
        match &s.outcome {
            Outcome::Acked(acks) => {
                for (index, ack) in acks.iter().enumerate() {
                    match found.get(&(id, index)) {
                        Some(at) if at == ack => checked.acked_records += 1,
                        Some(at) => problems.push(format!(
                            "acknowledged {id}/{index} at {}/{} (hash {:x}) is at {}/{} (hash {:x})",
                            ack.0, ack.1, ack.2, at.0, at.1, at.2
                        )),
                        None => problems.push(format!(
                            "acknowledged {id}/{index} at {}/{} is lost",
                            ack.0, ack.1
                        )),
                    }
                }
            }
            Outcome::Refused(..) | Outcome::NoAnswer(_) => {
                let targets = s.request.partitions(partitions);
                let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                for (index, p) in targets.iter().enumerate() {
                    by_partition.entry(*p).or_default().push(index);
                }
                for (p, indexes) in by_partition {
                    let at: Vec<Option<&(u32, i64, u64)>> =
                        indexes.iter().map(|i| found.get(&(id, *i))).collect();
                    let present = at.iter().filter(|a| a.is_some()).count();
                    if present == 0 {
                        checked.unacked_absent += 1;
                        continue;
                    }
                    let whole_batch = present == indexes.len()
                        && at.iter().flatten().all(|a| a.0 == p)
                        && at
                            .windows(2)
                            .all(|w| w[1].unwrap().1 == w[0].unwrap().1 + 1);
                    if unacked == Unacked::Absent {
                        problems.push(format!(
                            "unacknowledged {id} ({:?}) has {present} of {} records in partition {p}",
                            s.outcome,
                            indexes.len()
                        ));
                    } else if !whole_batch {
                        problems.push(format!(
                            "unacknowledged {id} ({:?}): partition {p} holds {present} of its {} records, not one whole batch",
                            s.outcome,
                            indexes.len()
                        ));
                    } else {
                        checked.unacked_present += 1;
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        let shown: Vec<&String> = problems.iter().take(15).collect();
        panic!(
            "{context}: {} violation(s) of the log oracle, first ones:\n{}",
            problems.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    checked
}

/// The address of the Kafka broker scripts/test starts for the whole run (`RILL_TEST_KAFKA`).
/// Unset is a failure, never a skip: scripts/test always starts one (`.ci/kafka/kafka.sh`).
pub fn test_kafka() -> String {
    match std::env::var("RILL_TEST_KAFKA") {
        Ok(address) if !address.is_empty() => address,
        _ => panic!(
            "RILL_TEST_KAFKA is not set: run the tests with scripts/test, which starts a Kafka \
             broker, or start one with `.ci/kafka/kafka.sh start DIR` and export its address"
        ),
    }
}

/// The state directory of that broker (`RILL_TEST_KAFKA_DIR`); its logs are in `data/`.
pub fn test_kafka_dir() -> PathBuf {
    match std::env::var("RILL_TEST_KAFKA_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!("RILL_TEST_KAFKA_DIR is not set: run the tests with scripts/test"),
    }
}

/// The directory of Apache Kafka's jars scripts/test fetched (`RILL_TEST_KAFKA_LIBS`), for
/// running Kafka's own tools on rill's files.
pub fn test_kafka_libs() -> PathBuf {
    match std::env::var("RILL_TEST_KAFKA_LIBS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!("RILL_TEST_KAFKA_LIBS is not set: run the tests with scripts/test"),
    }
}

/// Starts rill as a gateway to the Kafka cluster at `bootstrap`; `extra` may add `[[topics]]`,
/// `[backend.kafka]` or other tables.
pub fn spawn_gateway(bootstrap: &str, extra: &str) -> Broker {
    spawn_broker(&format!(
        "{extra}\n[backend]\nkind = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\n"
    ))
}

/// A Kafka broker of the test's own (for tests that stop and restart it), started with
/// `.ci/kafka/kafka.sh` in a temporary directory; stopped when dropped.
pub struct KafkaNode {
    pub bootstrap: String,
    pub dir: tempfile::TempDir,
}

const KAFKA_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/kafka/kafka.sh");

impl KafkaNode {
    pub fn start() -> KafkaNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let bootstrap = kafka_script("start", dir.path());
        KafkaNode { bootstrap, dir }
    }

    /// SIGTERM and wait for the broker to exit.
    pub fn stop(&self) {
        kafka_script("stop", self.dir.path());
    }

    /// Starts it again on the same data and the same port.
    pub fn restart(&self) {
        let bootstrap = kafka_script("start", self.dir.path());
        assert_eq!(bootstrap, self.bootstrap, "restarted on another address");
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        let _ = Command::new(KAFKA_SCRIPT)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn kafka_script(verb: &str, dir: &Path) -> String {
    let out = Command::new(KAFKA_SCRIPT)
        .arg(verb)
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .expect(".ci/kafka/kafka.sh runs");
    assert!(out.status.success(), ".ci/kafka/kafka.sh {verb} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// Security suites (tests/auth.rs, tests/hostile_input.rs, tests/slow_clients.rs, tests/tls.rs)
// ---------------------------------------------------------------------------------------------

/// Like [`start_logged`] (no wrapper), with extra environment variables for the broker, e.g.
/// `RUST_LOG=debug` to check what the most verbose log level lets out.
pub fn start_logged_env(
    config_path: &Path,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> (Broker, StderrLog) {
    start_logged_with(&[], config_path, data_dir, env)
}

/// Every `(METHOD, path template)` the OpenAPI document (docs/openapi.json) describes.
pub fn openapi_routes() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .expect("docs/openapi.json");
    let doc: Value = serde_json::from_str(&text).expect("OpenAPI JSON");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes.sort();
    routes
}
