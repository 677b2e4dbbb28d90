//! Async produce: 202 with a status URL, the life cycle to `completed` with the same
//! per-record offsets a sync answer has, the TTL sweep, and 429 at `max_pending`.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_broker, status_json, Broker};
use serde_json::{json, Value};

fn poll_until_finished(broker: &Broker, status_url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, b) = status_json(broker.get(status_url).send().unwrap());
        assert_eq!(s, 200, "{b}");
        let state = b["status"].as_str().unwrap().to_string();
        assert!(
            ["pending", "processing", "completed", "failed", "timeout"].contains(&state.as_str()),
            "{state}"
        );
        if !["pending", "processing"].contains(&state.as_str()) {
            return b;
        }
        assert!(Instant::now() < deadline, "still {state}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn async_request_completes_with_per_record_offsets_then_expires_after_its_ttl() {
    let broker = spawn_broker("[async]\nstatus_ttl_secs = 1\ncleanup_interval_secs = 1\n");
    broker.create_topic("a", 2);
    let body = json!({
        "value_format": "string",
        "records": [{"value": "one", "partition": 0}, {"value": 5}, {"value": "three", "partition": 1}]
    });
    let res = broker
        .post("/api/topics/a/produce?async=true")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let accepted: Value = res.json().unwrap();
    let id = accepted["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 26, "a ULID");
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["status_url"], format!("/api/produce/status/{id}"));
    assert_eq!(location, accepted["status_url"].as_str().unwrap());

    let done = poll_until_finished(&broker, &location);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_id"], id);
    assert_eq!(done["topic"], "a");
    assert_eq!(done["record_count"], 3);
    assert!(done["error"].is_null());
    assert!(done["created_at"].as_str().unwrap().ends_with('Z'));
    let offsets = done["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 3);
    assert_eq!(
        (
            offsets[0]["partition"].clone(),
            offsets[0]["offset"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(offsets[1]["error_code"], "invalid_value");
    assert_eq!(
        (
            offsets[2]["partition"].clone(),
            offsets[2]["offset"].clone()
        ),
        (json!(1), json!(0))
    );
    let (_, read) = broker.read("a", 1, "?value_format=string");
    assert_eq!(read["records"][0]["value"], "three");

    // TTL 1 s, sweep every 1 s: gone within ~2 s, and answered 404 like an id never issued.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = status_json(broker.get(&location).send().unwrap());
        if s == 404 {
            assert_eq!(b["error_code"], "request_not_found");
            break;
        }
        assert!(Instant::now() < deadline, "never swept");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn async_ids_are_unique_under_load() {
    let broker = spawn_broker("");
    broker.create_topic("ids", 1);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..200 {
        let (s, b) = broker.produce("ids", "?async=true", &json!({"records": [{"value": 1}]}));
        assert_eq!(s, 202);
        assert!(ids.insert(b["request_id"].as_str().unwrap().to_string()));
    }
}

#[test]
fn max_pending_async_requests_answers_429_with_retry_after() {
    let broker = spawn_broker("[async]\nmax_pending = 1\n");
    broker.create_topic("busy", 1);
    let records: Vec<Value> = (0..2000)
        .map(|i| json!({"value": {"i": i, "pad": "p".repeat(200)}}))
        .collect();
    let body = json!({"records": records});
    // Many clients at once against a budget of one unfinished request: some must be refused.
    let url = format!("{}/api/topics/busy/produce?async=true", broker.url);
    let mut seen_429 = false;
    for _round in 0..20 {
        let results: Vec<(u16, Option<String>, Value)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (url, body) = (&url, &body);
                    scope.spawn(move || {
                        let res = reqwest::blocking::Client::new()
                            .post(url)
                            .json(body)
                            .send()
                            .unwrap();
                        let retry = res
                            .headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap().to_string());
                        let (s, b) = status_json(res);
                        (s, retry, b)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (s, retry, b) in results {
            match s {
                202 => {}
                429 => {
                    assert_eq!(b["error_code"], "too_many_requests");
                    assert_eq!(retry.as_deref(), Some("1"));
                    seen_429 = true;
                }
                other => panic!("unexpected {other}: {b}"),
            }
        }
        if seen_429 {
            return;
        }
    }
    panic!("max_pending = 1 never refused a request");
}

/// Each HTTP worker keeps the states of the async requests it accepted (one status actor per
/// worker). A request accepted on one connection and polled on another — which the server
/// may hand to any worker — must still be found, and the metrics must count every worker's.
#[test]
fn async_requests_are_found_whichever_worker_takes_the_poll() {
    let broker = spawn_broker("[server]\nbind = \"127.0.0.1:0\"\nworkers = 3\n");
    broker.create_topic("spread", 1);
    let url = format!("{}/api/topics/spread/produce?async=true", broker.url);
    // No connection reuse: each request is a new connection, and new connections are
    // spread over the workers.
    let fresh = || {
        reqwest::blocking::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let mut accepted = Vec::new();
    for i in 0..30 {
        let res = fresh()
            .post(&url)
            .json(&json!({"records": [{"value": {"i": i}}]}))
            .send()
            .unwrap();
        let (s, b) = status_json(res);
        assert_eq!(s, 202, "{b}");
        accepted.push((i, b["status_url"].as_str().unwrap().to_string()));
    }
    // A request id's last byte names the worker's shard that holds it.
    let shards: std::collections::BTreeSet<u128> = accepted
        .iter()
        .map(|(_, url)| {
            let id = url.rsplit('/').next().unwrap();
            ulid::Ulid::from_string(id).unwrap().0 & 0xff
        })
        .collect();
    assert!(
        shards.len() >= 2 && shards.iter().all(|&s| s < 3),
        "shards {shards:?}"
    );

    let mut offsets = Vec::new();
    for (i, status_url) in &accepted {
        let deadline = Instant::now() + Duration::from_secs(20);
        let done = loop {
            let res = fresh()
                .get(format!("{}{status_url}", broker.url))
                .send()
                .unwrap();
            let (s, b) = status_json(res);
            assert_eq!(s, 200, "request {i}: {b}");
            if b["status"] == "completed" {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "request {i} still {}",
                b["status"]
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        offsets.push(done["offsets"][0]["offset"].as_i64().unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..30).collect::<Vec<i64>>());

    let metrics = broker.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("rill_async_requests{state=\"finished\"} 30"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rill_async_requests{state=\"unfinished\"} 0"),
        "{metrics}"
    );
}
