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

/// Starts the binary under a wrapper command, e.g. `fiu-run -x -c …` for fault injection.
pub fn start_wrapped(wrapper: &[&str], config_path: &Path, data_dir: &Path) -> Broker {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_rill"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_rill")),
    };
    let mut child = command
        .arg("--config")
        .arg(config_path)
        .arg("--data-dir")
        .arg(data_dir)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
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
