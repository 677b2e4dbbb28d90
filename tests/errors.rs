//! Every row of API.md's whole-request error table, over real HTTP: status, `error_code`, a
//! message naming what was wrong, and the headers that go with it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{spawn_broker, status_json};
use serde_json::{json, Value};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error_code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message missing: {body}"
    );
}

#[test]
fn bad_bodies_are_400_with_the_field_named() {
    let broker = spawn_broker("");
    broker.create_topic("t", 1);
    let send = |body: &str| {
        status_json(
            broker
                .post("/api/topics/t/produce")
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .unwrap(),
        )
    };
    let (s, b) = send("{\"records\": [");
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = send("[1, 2]");
    assert_error(s, &b, 400, "invalid_request");
    let (s, b) = send(r#"{"records": [{"value": 1, "partition": "two"}]}"#);
    assert_error(s, &b, 400, "invalid_request");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("records[0].partition"),
        "{b}"
    );
    let (s, b) = send(r#"{"records": [{"value": 1, "colour": "red"}]}"#);
    assert_error(s, &b, 400, "invalid_request");
    assert!(b["message"].as_str().unwrap().contains("colour"), "{b}");
    let (s, b) = send(r#"{"records": []}"#);
    assert_error(s, &b, 400, "invalid_request");
    let (s, b) = send(r#"{"value_format": "xml", "records": [{"value": 1}]}"#);
    assert_error(s, &b, 400, "invalid_request");
    assert!(
        b["message"].as_str().unwrap().starts_with("value_format"),
        "{b}"
    );
    let (s, b) = send(
        r#"{"value_format": "avro", "value_schema": "{\"type\": \"nope\"}", "records": [{"value": 1}]}"#,
    );
    assert_error(s, &b, 400, "invalid_request");
    let (s, b) = send(r#"{"value_format": "avro", "records": [{"value": 1}]}"#);
    assert_error(s, &b, 400, "invalid_request");

    let (s, b) = broker.produce(
        "t",
        "?compression=brotli",
        &json!({"records": [{"value": 1}]}),
    );
    assert_error(s, &b, 400, "invalid_request");
    assert!(
        b["message"].as_str().unwrap().starts_with("compression"),
        "{b}"
    );
    let (s, b) = broker.produce("t", "?async=maybe", &json!({"records": [{"value": 1}]}));
    assert_error(s, &b, 400, "invalid_request");
}

#[test]
fn unknown_topic_and_unknown_request_are_404() {
    let broker = spawn_broker("");
    let (s, b) = broker.produce("nope", "", &json!({"records": [{"value": 1}]}));
    assert_error(s, &b, 404, "topic_not_found");
    let (s, b) = status_json(
        broker
            .get("/api/produce/status/01JDQ8Z6S3N5J8Q4V3C2B1A0ZX")
            .send()
            .unwrap(),
    );
    assert_error(s, &b, 404, "request_not_found");
    let (s, b) = status_json(broker.get("/api/topics/nope").send().unwrap());
    assert_error(s, &b, 404, "topic_not_found");
    let (s, b) = status_json(broker.get("/no/such/route").send().unwrap());
    assert_error(s, &b, 404, "not_found");
    broker.create_topic("t", 1);
    let (s, b) = broker.read("t", 5, "");
    assert_error(s, &b, 404, "partition_not_found");
}

#[test]
fn non_json_content_type_is_415() {
    let broker = spawn_broker("");
    broker.create_topic("t", 1);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = broker
            .post("/api/topics/t/produce")
            .body(r#"{"records":[{"value":1}]}"#);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (s, b) = status_json(req.send().unwrap());
        assert_error(s, &b, 415, "unsupported_media_type");
    }
    let (s, _) = status_json(
        broker
            .post("/api/topics/t/produce")
            .header(
                "content-type",
                "application/vnd.kafka.json.v2+json; charset=utf-8",
            )
            .body(r#"{"records":[{"value":1}]}"#)
            .send()
            .unwrap(),
    );
    assert_eq!(s, 200);
}

/// Sends raw HTTP and returns the status line and body.
fn raw_request(url: &str, request: &[u8], then: impl FnOnce(&mut TcpStream)) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    then(&mut stream);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn oversized_bodies_are_413_without_reading_them() {
    let broker = spawn_broker("[server]\nbind = \"127.0.0.1:0\"\nmax_request_bytes = 65536\n");
    broker.create_topic("t", 1);
    // A declared length over the limit: refused from the headers alone.
    let head = "POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
    let answer = raw_request(&broker.url, head.as_bytes(), |_| {});
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");

    // A chunked body that never ends: refused once it passes the limit.
    let head = "POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let answer = raw_request(&broker.url, head.as_bytes(), |stream| {
        let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
        for _ in 0..64 {
            if stream.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
    });
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let (s, b) = broker.produce(
        "t",
        "",
        &json!({"records": [{"value": "x".repeat(70_000)}]}),
    );
    assert_error(s, &b, 413, "payload_too_large");
}

#[test]
fn in_flight_byte_budget_answers_429_with_retry_after() {
    let broker = spawn_broker(
        "[server]\nbind = \"127.0.0.1:0\"\nmax_request_bytes = 4096\n[producer]\nmax_inflight_bytes = 4096\n",
    );
    broker.create_topic("t", 1);
    // An upload still in progress holds 3000 bytes of the 4096-byte budget…
    let addr = broker.url.trim_start_matches("http://");
    let mut holder = TcpStream::connect(addr).unwrap();
    holder
        .write_all(b"POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3000\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // …so another 3000-byte request does not fit.
    let body = format!("{{\"records\": [{{\"value\": \"{}\"}}]}}", "x".repeat(2960));
    assert_eq!(body.len(), 2988);
    let res = broker
        .post("/api/topics/t/produce")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(
        res.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (s, b) = status_json(res);
    assert_error(s, &b, 429, "too_many_requests");
    drop(holder);
    // The budget comes back once the server has seen the holder's connection close, which on
    // a loaded machine can take longer than any fixed pause: ask again until it fits, for up
    // to 10 s. Only 429 may come before the 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (s, b) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let (s, b) = status_json(
            broker
                .post("/api/topics/t/produce")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .unwrap(),
        );
        if s != 429 || Instant::now() > deadline {
            break (s, b);
        }
    };
    assert_eq!(s, 200, "the budget is released with the request: {b}");
}

#[test]
fn sync_request_past_its_timeout_is_504() {
    let broker = spawn_broker("");
    broker.create_topic("t", 1);
    // Parsing and serializing this body alone takes well over 1 ms.
    let records: Vec<Value> = (0..20_000)
        .map(|i| json!({"key": format!("k{i}"), "value": {"n": i, "pad": "y".repeat(100)}}))
        .collect();
    let (s, b) = broker.produce(
        "t",
        "?timeout_ms=1",
        &json!({"key_format": "string", "records": records}),
    );
    assert_error(s, &b, 504, "timeout");
}

#[test]
fn disk_full_is_507_and_produce_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(dir.path().to_path_buf());
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();
    let config = dir.path().join("broker.toml");
    let data = dir.path().join("data");
    std::fs::write(&config, common::config_text(&data, "")).unwrap();
    let broker = common::start(&config, &data);
    broker.create_topic("t", 1);

    let body = json!({"records": (0..100).map(|i| json!({"value": format!("{i:0>200}")})).collect::<Vec<_>>()});
    let mut acked = 0;
    let mut full = None;
    for _ in 0..500 {
        let (s, b) = broker.produce("t", "", &body);
        match s {
            200 => acked += 100,
            507 => {
                full = Some(b);
                break;
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    let body_507 = full.expect("the disk filled up");
    assert_error(507, &body_507, 507, "insufficient_storage");
    let (_, described) = status_json(broker.get("/api/topics/t").send().unwrap());
    assert_eq!(
        described["partitions"][0]["end_offset"], acked,
        "nothing of the 507 request is in the log"
    );

    std::fs::remove_file(&filler).unwrap();
    let (s, b) = broker.produce("t", "", &body);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["offsets"][0]["offset"], acked);
}

#[test]
fn failed_flush_is_503_and_the_partition_refuses_writes_but_serves_reads() {
    // libfiu makes every fdatasync fail with EIO (failinfo 5) — what a dying disk does.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        common::config_text(&data, "[[topics]]\nname = \"t\"\npartitions = 1\n"),
    )
    .unwrap();
    let broker = common::start_wrapped(
        &[
            "fiu-run",
            "-x",
            "-c",
            "enable name=posix/io/sync/fdatasync,failinfo=5",
        ],
        &config,
        &data,
    );
    let body = json!({"records": [{"value": 1}]});
    let res = broker
        .post("/api/topics/t/produce")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(
        res.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (s, b) = status_json(res);
    assert_error(s, &b, 503, "unavailable");
    assert!(
        b["message"].as_str().unwrap().contains("fail-stopped"),
        "{b}"
    );
    let (s, b) = broker.produce("t", "", &body);
    assert_error(s, &b, 503, "unavailable");
    let (s, _) = broker.read("t", 0, "");
    assert_eq!(s, 200, "reads are still served");
}

#[test]
fn shutting_down_broker_never_acknowledges_on_open_connections() {
    let mut broker = spawn_broker("[server]\nbind = \"127.0.0.1:0\"\nshutdown_timeout_secs = 2\n");
    broker.create_topic("t", 1);
    // Hold the server in graceful shutdown with an upload that has not finished.
    let addr = broker.url.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"records\"").unwrap();
    // A second, idle keep-alive connection that will send a request during shutdown.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n";
    idle.write_all(request).unwrap();
    let mut first = [0u8; 1024];
    let n = idle.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    let pid = broker.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let produce = b"POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 25\r\n\r\n{\"records\":[{\"value\":1}]}";
    let answer = match idle.write_all(produce) {
        Ok(()) => {
            let mut buf = [0u8; 2048];
            let n = idle.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
        Err(_) => String::new(),
    };
    // Either the open connection is told 503 unavailable, or it was closed: never a 200.
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 503") && answer.contains("\"unavailable\"")),
        "{answer}"
    );
    drop(slow);
    let status = broker.terminate(Duration::from_secs(15));
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
