//! Idempotent produce (`Idempotency-Key`): a retry returns the first answer and appends
//! nothing — in the same process, after SIGKILL and restart, sync and async; a reused key with
//! another body is 422; keys are scoped to the API key and the topic.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_broker, status_json, Broker};
use serde_json::{json, Value};

const AUTH: &str = "[auth]\nenabled = true\napi_keys = [{ key = \"alpha\" }, { key = \"beta\" }]\n\
    [[topics]]\nname = \"orders\"\npartitions = 3\n[[topics]]\nname = \"audit\"\npartitions = 1\n";

/// Records with and without keys (unkeyed ones go round-robin: a retry must put them where
/// the first attempt did), one with an explicit partition, and one that fails on its own.
fn body(tag: &str) -> Value {
    let mut records: Vec<Value> = (0..12)
        .map(|i| {
            if i % 3 == 0 {
                json!({"value": format!("{tag}-{i}")})
            } else {
                json!({"key": format!("k{i}"), "value": format!("{tag}-{i}")})
            }
        })
        .collect();
    records.push(json!({"partition": 2, "value": format!("{tag}-p2")}));
    records.push(json!({"value": 5}));
    json!({"key_format": "string", "value_format": "string", "records": records})
}

fn produce(broker: &Broker, api_key: &str, topic: &str, key: &str, body: &Value) -> (u16, Value) {
    produce_query(broker, api_key, topic, "", key, body)
}

fn produce_query(
    broker: &Broker,
    api_key: &str,
    topic: &str,
    query: &str,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let res = broker
        .post(&format!("/api/topics/{topic}/produce{query}"))
        .header("X-API-Key", api_key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .expect("produce");
    status_json(res)
}

fn end_offsets(broker: &Broker, topic: &str) -> Vec<i64> {
    let (status, described) = status_json(
        broker
            .get(&format!("/api/topics/{topic}"))
            .header("X-API-Key", "alpha")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{described}");
    described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_i64().unwrap())
        .collect()
}

/// Records stored in every partition of `topic`, read back through the API. Not the end
/// offsets' sum: an idempotent request's batch is followed by a control batch (its journal
/// entry) that takes an offset but is no record.
fn stored_records(broker: &Broker, topic: &str) -> usize {
    (0..end_offsets(broker, topic).len() as u32)
        .map(|p| read_values(broker, topic, p).len())
        .sum()
}

#[test]
fn a_retry_returns_the_first_answer_and_appends_nothing() {
    let broker = spawn_broker(AUTH);
    let (status, first) = produce(&broker, "alpha", "orders", "order-1", &body("a"));
    assert_eq!(status, 200, "{first}");
    let offsets = first["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 14);
    assert_eq!(offsets[13]["error_code"], "invalid_value");
    let after_first = end_offsets(&broker, "orders");
    assert_eq!(stored_records(&broker, "orders"), 13);
    assert_eq!(
        after_first.iter().sum::<i64>(),
        13 + 3,
        "and a control batch per partition"
    );

    for _ in 0..3 {
        let (status, again) = produce(&broker, "alpha", "orders", "order-1", &body("a"));
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            again, first,
            "a retry answers exactly what the first attempt did"
        );
    }
    assert_eq!(
        end_offsets(&broker, "orders"),
        after_first,
        "nothing appended"
    );

    // The same key with another body (or other options) is refused.
    let (status, reused) = produce(&broker, "alpha", "orders", "order-1", &body("b"));
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["error_code"], "idempotency_key_reused");
    assert!(reused["message"].as_str().unwrap().contains("order-1"));
    let (status, reused) = produce_query(
        &broker,
        "alpha",
        "orders",
        "?compression=gzip",
        "order-1",
        &body("a"),
    );
    assert_eq!(status, 422, "{reused}");

    // Scoped to the API key and to the topic: the same key is new there.
    let (status, other_key) = produce(&broker, "beta", "orders", "order-1", &body("a"));
    assert_eq!(status, 200, "{other_key}");
    assert_ne!(other_key, first);
    let (status, other_topic) = produce(&broker, "alpha", "audit", "order-1", &body("a"));
    assert_eq!(status, 200, "{other_topic}");
    assert_eq!(
        stored_records(&broker, "orders"),
        26,
        "beta's request appended once more"
    );

    // Without a key, the same body is appended again.
    let res = broker
        .post("/api/topics/orders/produce")
        .header("X-API-Key", "alpha")
        .json(&body("a"))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(stored_records(&broker, "orders"), 39);

    for bad in ["", &"x".repeat(256), "has space", "tab\there"] {
        let res = broker
            .post("/api/topics/orders/produce")
            .header("X-API-Key", "alpha")
            .header("Idempotency-Key", bad)
            .json(&body("a"))
            .send();
        let Ok(res) = res else { continue }; // reqwest refuses some header values itself
        let (status, answer) = status_json(res);
        assert_eq!(status, 400, "{bad:?}: {answer}");
        assert!(answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Idempotency-Key"));
    }
    // 255 characters is the longest key.
    let (status, _) = produce(&broker, "alpha", "orders", &"x".repeat(255), &body("c"));
    assert_eq!(status, 200);
}

#[test]
fn a_retry_after_sigkill_gets_the_same_offsets_and_the_log_holds_one_copy() {
    let broker = spawn_broker(AUTH);
    let mut answers = Vec::new();
    for n in 0..5 {
        let (status, answer) = produce(
            &broker,
            "alpha",
            "orders",
            &format!("k{n}"),
            &body(&format!("r{n}")),
        );
        assert_eq!(status, 200, "{answer}");
        answers.push(answer);
    }
    let before = end_offsets(&broker, "orders");
    let mut broker = broker;
    broker.kill();
    let broker = broker.restart();
    for (n, first) in answers.iter().enumerate() {
        let (status, again) = produce(
            &broker,
            "alpha",
            "orders",
            &format!("k{n}"),
            &body(&format!("r{n}")),
        );
        assert_eq!(status, 200, "{again}");
        assert_eq!(&again, first, "request {n} after restart");
    }
    assert_eq!(
        end_offsets(&broker, "orders"),
        before,
        "nothing appended twice"
    );
    // Every value is in the log exactly once.
    let mut values: Vec<String> = (0..3)
        .flat_map(|p| read_values(&broker, "orders", p))
        .collect();
    values.sort();
    let unique = values.len();
    values.dedup();
    assert_eq!(values.len(), unique, "no record stored twice");
    assert_eq!(unique, 5 * 13);

    // Reused with another body after the restart: still refused.
    let (status, _) = produce(&broker, "alpha", "orders", "k0", &body("other"));
    assert_eq!(status, 422);
    // A clean restart keeps the window too.
    let mut broker = broker;
    assert!(broker.terminate(Duration::from_secs(10)).success());
    let broker = broker.restart();
    let (status, again) = produce(&broker, "alpha", "orders", "k3", &body("r3"));
    assert_eq!(status, 200);
    assert_eq!(again, answers[3]);
    assert_eq!(end_offsets(&broker, "orders"), before);
}

fn read_values(broker: &Broker, topic: &str, partition: u32) -> Vec<String> {
    let (status, read) = status_json(
        broker
            .get(&format!(
                "/api/topics/{topic}/partitions/{partition}/records?limit=10000&key_format=string&value_format=string"
            ))
            .header("X-API-Key", "alpha")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{read}");
    read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect()
}

fn wait_completed(broker: &Broker, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, state) = status_json(
            broker
                .get(&format!("/api/produce/status/{id}"))
                .header("X-API-Key", "alpha")
                .send()
                .unwrap(),
        );
        assert_eq!(status, 200, "{state}");
        if state["status"] == "completed" {
            return state;
        }
        assert!(Instant::now() < deadline, "not completed: {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_async_retry_gets_the_same_request_id_before_and_after_a_restart() {
    let broker = spawn_broker(AUTH);
    let (status, accepted) = produce_query(
        &broker,
        "alpha",
        "orders",
        "?async=true",
        "job-1",
        &body("j"),
    );
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["request_id"].as_str().unwrap().to_string();
    let done = wait_completed(&broker, &id);
    let (status, again) = produce_query(
        &broker,
        "alpha",
        "orders",
        "?async=true",
        "job-1",
        &body("j"),
    );
    assert_eq!(status, 202);
    assert_eq!(again["request_id"], id.as_str());
    let before = end_offsets(&broker, "orders");

    let mut broker = broker;
    broker.kill();
    let broker = broker.restart();
    let (status, again) = produce_query(
        &broker,
        "alpha",
        "orders",
        "?async=true",
        "job-1",
        &body("j"),
    );
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        again["request_id"],
        id.as_str(),
        "the same request id after a restart"
    );
    let after = wait_completed(&broker, &id);
    assert_eq!(after["offsets"], done["offsets"], "the same offsets");
    assert_eq!(end_offsets(&broker, "orders"), before);
    // The async key is not the sync one: the same body sync is another request.
    let (status, _) = produce(&broker, "alpha", "orders", "job-1", &body("j"));
    assert_eq!(status, 422);
}

#[test]
fn deleting_a_topic_forgets_its_keys() {
    let broker = spawn_broker("");
    broker.create_topic("temp", 2);
    let send = |b: &Broker| {
        status_json(
            b.post("/api/topics/temp/produce")
                .header("Idempotency-Key", "once")
                .json(&body("t"))
                .send()
                .unwrap(),
        )
    };
    let (status, first) = send(&broker);
    assert_eq!(status, 200, "{first}");
    let res = broker.delete("/api/topics/temp").send().unwrap();
    assert!(res.status().is_success());
    broker.create_topic("temp", 2);
    let (status, second) = send(&broker);
    assert_eq!(status, 200);
    let total: i64 = second["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["offset"].as_i64())
        .filter(|&o| o >= 0)
        .count() as i64;
    // 2 partitions: the record for partition 2 fails.
    assert_eq!(total, 12, "appended to the new topic");
    assert_eq!(stored_records(&broker, "temp"), 12);
}

#[test]
fn retrying_every_request_after_sigkill_mid_flight_stores_each_record_exactly_once() {
    let mut broker = spawn_broker(
        "[[topics]]\nname = \"x\"\npartitions = 3\n[storage]\nsegment_bytes = 65536\n",
    );
    let url = broker.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each producer sends requests until stopped; it returns every request it sent (the last
    // may have been cut off by the kill) with the answers it got.
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut sent: Vec<(String, Value, Option<Value>)> = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("p{p}-n{n}");
                    let records: Vec<Value> = (0..40)
                        .map(|i| {
                            if i % 2 == 0 {
                                json!({"key": format!("{key}-{i}"), "value": format!("{key}/{i}")})
                            } else {
                                json!({"value": format!("{key}/{i}")})
                            }
                        })
                        .collect();
                    let body = json!({"key_format": "string", "value_format": "string", "records": records});
                    let answer = client
                        .post(format!("{url}/api/topics/x/produce"))
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .ok()
                        .filter(|r| r.status().as_u16() == 200)
                        .and_then(|r| r.json::<Value>().ok());
                    let failed = answer.is_none();
                    sent.push((key, body, answer));
                    if failed {
                        break;
                    }
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    broker.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: Vec<(String, Value, Option<Value>)> = producers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let broker = broker.restart();
    let acknowledged = sent.iter().filter(|s| s.2.is_some()).count();
    let mut records = 0;
    for (key, body, first) in &sent {
        let (status, again) = status_json(
            broker
                .post("/api/topics/x/produce")
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .unwrap(),
        );
        assert_eq!(status, 200, "{key}: {again}");
        if let Some(first) = first {
            assert_eq!(&again, first, "{key}: the acknowledged answer");
        }
        records += 40;
    }
    let mut values: Vec<String> = Vec::new();
    for p in 0..3 {
        let stored = broker.read_everything("x", p);
        values.extend(stored.into_iter().map(|r| r.value));
    }
    let total = values.len();
    values.sort();
    values.dedup();
    eprintln!(
        "idempotent retries after SIGKILL: {} requests sent, {acknowledged} acknowledged before the kill, {} unanswered; {total} records stored, {} distinct",
        sent.len(),
        sent.len() - acknowledged,
        values.len()
    );
    assert_eq!(values.len(), total, "no record stored twice");
    assert_eq!(total, records, "every record of every request stored once");
}

/// The producerId, epoch, base sequence and control flag of the batches in `topic`-0's first
/// segment, in order.
fn stored_batches(broker: &Broker, topic: &str) -> Vec<(i64, i16, i32, bool)> {
    let bytes = std::fs::read(first_segment(broker, topic)).expect("segment file");
    rill_actors::record_batch::batches(&bytes)
        .map_while(Result::ok)
        .map(|(header, _)| {
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.is_control(),
            )
        })
        .collect()
}

fn first_segment(broker: &Broker, topic: &str) -> std::path::PathBuf {
    broker
        .data_dir
        .join(format!("{topic}-0"))
        .join(format!("{:020}.log", 0))
}

#[test]
fn an_idempotent_requests_batch_carries_a_producer_id_and_is_followed_by_its_entry() {
    let mut broker = spawn_broker(AUTH);
    let one = json!({"records": [{"value": "a"}, {"value": "b"}]});
    let plain = |broker: &Broker| {
        let res = broker
            .post("/api/topics/audit/produce")
            .header("X-API-Key", "alpha")
            .json(&one)
            .send()
            .expect("produce");
        assert_eq!(res.status().as_u16(), 200);
    };
    plain(&broker);
    let (status, answer) = produce(&broker, "alpha", "audit", "k-1", &one);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offsets"][0]["offset"], 2);
    assert_eq!(answer["offsets"][1]["offset"], 3);
    plain(&broker);
    broker.terminate(Duration::from_secs(10));
    let batches = stored_batches(&broker, "audit");
    assert_eq!(batches.len(), 4, "{batches:?}");
    assert_eq!(batches[0], (-1, -1, -1, false));
    let producer_id = batches[1].0;
    assert!(producer_id >= 0, "{batches:?}");
    assert_eq!(batches[1], (producer_id, 0, 0, false));
    assert_eq!(
        batches[2],
        (producer_id, 0, -1, true),
        "the entry's carrier"
    );
    assert_eq!(batches[3], (-1, -1, -1, false));
    // The carrier took offset 4; readers see the records only.
    let broker = broker.restart();
    assert_eq!(end_offsets(&broker, "audit"), vec![7]);
    let values = read_values(&broker, "audit", 0);
    assert_eq!(values, ["\"a\"", "\"b\""].repeat(3), "JSON values, as sent");
}

#[test]
fn after_a_crash_the_journal_is_caught_up_from_the_log_and_a_torn_batch_is_retried_once() {
    let mut broker = spawn_broker(AUTH);
    let first = json!({"records": [{"value": "first"}]});
    let second = json!({"records": [{"value": "second-a"}, {"value": "second-b"}]});
    let (status, first_answer) = produce(&broker, "alpha", "audit", "k-first", &first);
    assert_eq!(status, 200, "{first_answer}");
    let (status, answer) = produce(&broker, "alpha", "audit", "k-second", &second);
    assert_eq!(status, 200, "{answer}");
    broker.kill();
    // A power cut: the journal file kept only its opening mark (it is fsynced only at marks),
    // and the second request's batch reached the disk without all of its carrier (so that
    // request was never answered).
    let journal = broker.data_dir.join("audit-0").join("idempotency.journal");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(72).unwrap();
    drop(file);
    let segment = first_segment(&broker, "audit");
    let bytes = std::fs::read(&segment).unwrap();
    let mut batches = rill_actors::record_batch::batches(&bytes);
    for _ in 0..3 {
        batches.next().unwrap().unwrap();
    }
    let torn_at = batches.position() + 30;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(torn_at as u64).unwrap();
    drop(file);

    let broker = broker.restart();
    assert_eq!(
        end_offsets(&broker, "audit"),
        vec![2],
        "the first request and its carrier stay; the torn batch was cut"
    );
    // The first request, acknowledged, is still found by its key: its entry came from its
    // carrier.
    let (status, retried) = produce(&broker, "alpha", "audit", "k-first", &first);
    assert_eq!((status, &retried), (200, &first_answer));
    // The client of the second, never answered, retries: the batch is appended once.
    let (status, answer) = produce(&broker, "alpha", "audit", "k-second", &second);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offsets"][0]["offset"], 2);
    let (status, again) = produce(&broker, "alpha", "audit", "k-second", &second);
    assert_eq!((status, &again), (200, &answer));
    assert_eq!(end_offsets(&broker, "audit"), vec![5]);
    assert_eq!(
        read_values(&broker, "audit", 0),
        ["\"first\"", "\"second-a\"", "\"second-b\""]
    );
}

#[test]
fn with_flush_os_acknowledged_keyed_records_survive_a_process_crash() {
    // flush = "os" acknowledges from the page cache, which a SIGKILL keeps: so must the
    // idempotency state be kept. (Before entries were carried in the log, they waited in
    // memory for a flush that "os" never runs, and the next start cut these batches.)
    let mut broker =
        spawn_broker("[storage]\nflush = \"os\"\n[[topics]]\nname = \"audit\"\npartitions = 1\n");
    let mut answers = Vec::new();
    for n in 0..3 {
        let body = json!({"records": [{"value": format!("v{n}")}]});
        let res = broker
            .post("/api/topics/audit/produce")
            .header("Idempotency-Key", format!("k{n}"))
            .json(&body)
            .send()
            .unwrap();
        let (status, answer) = status_json(res);
        assert_eq!(status, 200, "{answer}");
        answers.push((body, answer));
    }
    broker.kill();
    let broker = broker.restart();
    assert_eq!(
        read_values(&broker, "audit", 0),
        ["\"v0\"", "\"v1\"", "\"v2\""]
    );
    for (n, (body, first)) in answers.iter().enumerate() {
        let res = broker
            .post("/api/topics/audit/produce")
            .header("Idempotency-Key", format!("k{n}"))
            .json(body)
            .send()
            .unwrap();
        let (status, again) = status_json(res);
        assert_eq!((status, &again), (200, first), "request {n}, retried");
    }
    assert_eq!(
        read_values(&broker, "audit", 0).len(),
        3,
        "nothing appended twice"
    );
}
