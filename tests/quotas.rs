//! Per-API-key quotas over real HTTP: a key over its records or bytes rate gets 429 with
//! `Retry-After` and `RateLimit-*` headers and passes again once it has waited; a key at its
//! `max_inflight` gets 429 at once; a key without a quota is never refused; `/metrics` counts
//! per key name and never shows a secret.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{prepare_dir, start_logged_env, status_json, Broker, StderrLog};
use reqwest::blocking::{Body, Response};
use serde_json::{json, Value};

const RECORDS_KEY: &str = "records-secret-5f2a9c";
const BYTES_KEY: &str = "bytes-secret-81d7e3";
const INFLIGHT_KEY: &str = "inflight-secret-c04b16";
const FREE_KEY: &str = "free-secret-77aa02";
const SECRETS: [&str; 4] = [RECORDS_KEY, BYTES_KEY, INFLIGHT_KEY, FREE_KEY];

const TOPIC: &str = "events";

fn config() -> String {
    format!(
        r#"
[auth]
enabled = true
api_keys = [
  {{ key = "{RECORDS_KEY}", name = "records", quota = {{ records_per_sec = 100 }} }},
  {{ key = "{BYTES_KEY}", name = "bytes", quota = {{ bytes_per_sec = 4000 }} }},
  {{ key = "{INFLIGHT_KEY}", name = "inflight", quota = {{ max_inflight = 1 }} }},
  {{ key = "{FREE_KEY}", name = "free" }},
]

[[topics]]
name = "{TOPIC}"
partitions = 1
"#
    )
}

/// A broker logging at debug, so the test can check that no secret reaches even that level.
fn start() -> (tempfile::TempDir, Broker, StderrLog) {
    let (dir, config_path, data_dir) = prepare_dir(&config());
    let (broker, log) = start_logged_env(&config_path, &data_dir, &[("RUST_LOG", "debug")]);
    (dir, broker, log)
}

fn records(count: usize) -> Value {
    json!({ "records": (0..count).map(|i| json!({ "value": i })).collect::<Vec<_>>() })
}

/// One record whose body is about `bytes` long.
fn bulky(bytes: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({ "records": [{ "value": "x".repeat(bytes) }] })).unwrap()
}

fn produce(broker: &Broker, key: &str, body: &Value) -> Response {
    broker
        .post(&format!("/api/topics/{TOPIC}/produce"))
        .header("x-api-key", key)
        .json(body)
        .send()
        .expect("produce")
}

fn produce_bytes(broker: &Broker, key: &str, body: Body) -> Response {
    broker
        .post(&format!("/api/topics/{TOPIC}/produce"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("produce")
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

fn number(res: &Response, name: &str) -> u64 {
    let value = header(res, name).unwrap_or_else(|| panic!("no {name} header"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {value:?} is not a number"))
}

/// Checks a quota refusal and returns its `Retry-After`.
fn assert_refused(res: Response, quota: &str, limit: u64, key_name: &str) -> Duration {
    assert_eq!(res.status().as_u16(), 429);
    let retry_after = number(&res, "retry-after");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    if quota != "max_inflight" {
        assert_eq!(number(&res, "ratelimit-limit"), limit);
        assert_eq!(number(&res, "ratelimit-remaining"), 0);
        assert!(number(&res, "ratelimit-reset") >= retry_after);
        assert_eq!(
            header(&res, "ratelimit-policy").as_deref(),
            Some(format!("{limit};w=1").as_str())
        );
    }
    let (_, body) = status_json(res);
    assert_eq!(body["error_code"], "too_many_requests", "{body}");
    let message = body["message"].as_str().expect("message");
    let unit = if quota == "max_inflight" {
        " concurrent produce requests"
    } else {
        "/s"
    };
    let expected =
        format!("quota exceeded for {quota} ({limit}{unit}) of API key \"{key_name}\"; retry after {retry_after} s");
    assert_eq!(message, expected);
    Duration::from_secs(retry_after)
}

/// The topic's end offset, asked with the key that has no quota so as not to disturb one.
fn end_offset(broker: &Broker) -> i64 {
    let res = broker
        .get(&format!("/api/topics/{TOPIC}"))
        .header("x-api-key", FREE_KEY)
        .send()
        .expect("describe");
    let (status, body) = status_json(res);
    assert_eq!(status, 200, "{body}");
    body["partitions"][0]["end_offset"]
        .as_i64()
        .expect("end_offset")
}

/// A produce request of the `inflight` key whose head and first body bytes are sent; it holds
/// the key's one in-flight slot until the rest arrives.
fn send_head(addr: &str, body_len: usize, head_of_body: &[u8]) -> TcpStream {
    let mut slow = TcpStream::connect(addr).expect("connect");
    write!(
        slow,
        "POST /api/topics/{TOPIC}/produce HTTP/1.1\r\nhost: rill\r\nx-api-key: {INFLIGHT_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {body_len}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    slow.write_all(head_of_body).unwrap();
    slow.flush().unwrap();
    slow
}

/// Sends requests of the same key until one is refused, or `None` if the slow request was
/// answered first (it lost the slot to one of them, and must have been refused).
fn refuse_while_held(broker: &Broker, slow: &TcpStream) -> Option<Response> {
    slow.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut peeked = [0u8; 12];
    for _ in 0..200 {
        let res = produce(broker, INFLIGHT_KEY, &records(1));
        match res.status().as_u16() {
            429 => return Some(res),
            200 => {}
            other => panic!("unexpected {other}: {:?}", res.text()),
        }
        match slow.peek(&mut peeked) {
            Ok(n) if n > 0 => {
                assert_eq!(&peeked[..n], &b"HTTP/1.1 429"[..n], "slow request answered");
                return None;
            }
            Ok(_) => panic!("slow request's connection closed unanswered"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
    }
    panic!("neither request was refused")
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

#[test]
fn records_over_the_rate_are_refused_until_the_window_has_paid_them_back() {
    let (_dir, broker, log) = start();
    // 250 records against 100/s: the full bucket lets the first request through whole and
    // leaves 150 records of debt, 1.5 s during which every request is refused.
    let body = records(250);

    let first = produce(&broker, RECORDS_KEY, &body);
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(number(&first, "ratelimit-limit"), 100);
    assert_eq!(number(&first, "ratelimit-remaining"), 0);
    assert_eq!(
        header(&first, "ratelimit-policy").as_deref(),
        Some("100;w=1")
    );

    let mut retry_after = Duration::ZERO;
    for _ in 0..2 {
        retry_after = assert_refused(
            produce(&broker, RECORDS_KEY, &body),
            "records_per_sec",
            100,
            "records",
        );
    }
    std::thread::sleep(retry_after);
    let after_wait = produce(&broker, RECORDS_KEY, &body);
    assert_eq!(after_wait.status().as_u16(), 200);

    // Refused requests appended nothing.
    assert_eq!(end_offset(&broker), 500);

    // A key without a quota is neither refused nor told about limits.
    for _ in 0..5 {
        let free = produce(&broker, FREE_KEY, &body);
        assert_eq!(free.status().as_u16(), 200);
        assert_eq!(header(&free, "ratelimit-limit"), None);
    }

    let (status, metrics) = status_json(broker.get("/metrics").send().unwrap());
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text").to_string();
    assert_eq!(
        metric(&metrics, "rill_key_records_total{key=\"records\"}"),
        500
    );
    assert_eq!(
        metric(&metrics, "rill_key_records_total{key=\"free\"}"),
        1250
    );
    assert_eq!(
        metric(
            &metrics,
            "rill_quota_refused_total{key=\"records\",quota=\"records_per_sec\"}"
        ),
        2
    );
    assert_eq!(
        metric(&metrics, "rill_key_records_total{key=\"inflight\"}"),
        0
    );
    assert!(
        !metrics.contains("rill_quota_refused_total{key=\"free\""),
        "{metrics}"
    );
    assert_no_secret(&metrics, "/metrics");
    assert_no_secret(&log.text(), "the log");
}

#[test]
fn bytes_over_the_rate_are_refused_with_or_without_a_content_length() {
    let (_dir, broker, log) = start();
    // About 10 000 bytes against 4000/s: 6000 bytes of debt, 1.5 s refused.
    let body = bulky(10_000);
    let sent = u64::try_from(body.len()).unwrap();

    let first = produce_bytes(&broker, BYTES_KEY, Body::from(body.clone()));
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(number(&first, "ratelimit-limit"), 4000);
    assert_eq!(number(&first, "ratelimit-remaining"), 0);
    let retry_after = assert_refused(
        produce_bytes(&broker, BYTES_KEY, Body::from(body.clone())),
        "bytes_per_sec",
        4000,
        "bytes",
    );
    std::thread::sleep(retry_after);

    // Chunked: no Content-Length, so the bytes are charged once read; the debt still refuses
    // the request after it.
    let chunked = Body::new(std::io::Cursor::new(body.clone()));
    let second = produce_bytes(&broker, BYTES_KEY, chunked);
    assert_eq!(second.status().as_u16(), 200);
    assert_refused(
        produce_bytes(&broker, BYTES_KEY, Body::from(body.clone())),
        "bytes_per_sec",
        4000,
        "bytes",
    );
    assert_eq!(end_offset(&broker), 2);

    let metrics = broker.get("/metrics").send().unwrap().text().unwrap();
    assert_eq!(
        metric(&metrics, "rill_key_bytes_total{key=\"bytes\"}"),
        2 * sent
    );
    assert_eq!(metric(&metrics, "rill_key_records_total{key=\"bytes\"}"), 2);
    assert_eq!(
        metric(
            &metrics,
            "rill_quota_refused_total{key=\"bytes\",quota=\"bytes_per_sec\"}"
        ),
        2
    );
    assert_no_secret(&metrics, "/metrics");
    assert_no_secret(&log.text(), "the log");
}

#[test]
fn a_second_concurrent_request_past_max_inflight_is_refused_at_once() {
    let (_dir, broker, log) = start();
    let body = serde_json::to_vec(&records(3)).unwrap();
    let (head_of_body, rest_of_body) = body.split_at(body.len() / 2);

    let addr = broker.url.strip_prefix("http://").expect("plain HTTP");

    // The slow request is admitted once its head is parsed, at a moment the test cannot see:
    // a concurrent request sent about then may take the slot first, and the slow one is the
    // one refused. Then it starts over on a new connection.
    let mut attempt = 0u64;
    let (mut slow, refused) = loop {
        attempt += 1;
        assert!(attempt <= 20, "the slow request never held the slot");
        let slow = send_head(addr, body.len(), head_of_body);
        if let Some(refused) = refuse_while_held(&broker, &slow) {
            break (slow, refused);
        }
    };
    assert_eq!(header(&refused, "ratelimit-limit"), None);
    let retry_after = assert_refused(refused, "max_inflight", 1, "inflight");
    assert_eq!(retry_after, Duration::from_secs(1));

    // Another key is not held back by this one's slot.
    let free = produce(&broker, FREE_KEY, &records(1));
    assert_eq!(free.status().as_u16(), 200);

    slow.write_all(rest_of_body).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer)
        .expect("slow request answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The slot came back with the answer.
    let after = produce(&broker, INFLIGHT_KEY, &records(1));
    assert_eq!(after.status().as_u16(), 200);

    let metrics = broker.get("/metrics").send().unwrap().text().unwrap();
    assert_eq!(
        metric(
            &metrics,
            "rill_quota_refused_total{key=\"inflight\",quota=\"max_inflight\"}"
        ),
        // One refusal per slow request that lost the race, and the one asserted above.
        attempt
    );
    assert_no_secret(&metrics, "/metrics");
    assert_no_secret(&log.text(), "the log");
}
