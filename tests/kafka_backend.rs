//! rill as a gateway to Kafka (`[backend] kind = "kafka"`), end to end: the real rill binary
//! over HTTP in front of a real Apache Kafka broker (one KRaft node on loopback, started by
//! scripts/test and named by `RILL_TEST_KAFKA`), checked by an independent Kafka client (an
//! rdkafka consumer in this file) and by the batches in Kafka's own log files. No mocks.
//!
//! The outage test starts a Kafka broker of its own, so stopping it cannot disturb the tests
//! that share the main one.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{spawn_gateway, test_kafka, test_kafka_dir, Broker, KafkaNode};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use rill_actors::compression::Compression;
use rill_actors::record_batch;
use serde_json::{json, Value};

/// A topic name no other test (or earlier run against the same broker) uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A record as an independent Kafka consumer reads it.
#[derive(Debug, Clone, PartialEq)]
struct Consumed {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Every record of every partition of `topic`, read with rdkafka (assign from the beginning,
/// up to each partition's high watermark), keyed by (partition, offset).
fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<(i32, i64), Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rill-test-checker")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = |out: &BTreeMap<(i32, i64), Consumed>| {
        ends.iter()
            .all(|(p, high)| *high == 0 || out.contains_key(&(*p, high - 1)))
    };
    while !done(&out) {
        assert!(
            Instant::now() < deadline,
            "consumed only {} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consumer: {e}"),
            Some(Ok(m)) => {
                let record = Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().expect("timestamp"),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                out.insert((record.partition, record.offset), record);
            }
        }
    }
    out
}

/// The codec of the Kafka batch holding each offset, from the broker's own segment files
/// (Kafka's log is RecordBatch v2, the format rill's log uses too).
fn stored_codecs(kafka_dir: &Path, topic: &str, partition: i32) -> BTreeMap<i64, Compression> {
    let dir = kafka_dir.join("data").join(format!("{topic}-{partition}"));
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("partition dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("segment");
        for batch in record_batch::batches(&bytes) {
            let Ok((header, _)) = batch else { break };
            let codec = header.compression().expect("known codec");
            for offset in header.base_offset..=header.last_offset() {
                out.insert(offset, codec);
            }
        }
    }
    out
}

/// Avro's zigzag varint of a long.
fn avro_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn avro_string(s: &str, out: &mut Vec<u8>) {
    avro_long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

fn create(gateway: &Broker, name: &str, body: Value) -> Value {
    let res = gateway
        .post("/api/topics")
        .json(&body)
        .send()
        .expect("create");
    let (status, json) = common::status_json(res);
    assert_eq!(status, 201, "create {name}: {json}");
    json
}

/// Expected key and value bytes of one record.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One produce case: the request's records and the bytes Kafka must end up holding.
struct Case {
    format: &'static str,
    body: Value,
    /// Per record: expected key and value bytes.
    expected: Vec<KeyValue>,
}

fn case(format: &'static str, n: usize) -> Case {
    // Long, repetitive text: librdkafka sends a batch uncompressed when compressing would not
    // make it smaller, and the test checks that the codec was applied.
    let text = "the quick brown fox jumps over the lazy dog; ".repeat(8);
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for i in 0..n {
        let key_text = format!("user-{i}");
        let (key, value, key_bytes, value_bytes) = match format {
            "json" => {
                let value = format!("{{\"n\":{i},\"text\":\"{text}\"}}");
                let key = format!("{{\"id\":{i}}}");
                (
                    serde_json::from_str::<Value>(&key).expect("json"),
                    serde_json::from_str::<Value>(&value).expect("json"),
                    key.into_bytes(),
                    value.into_bytes(),
                )
            }
            "string" => {
                let value = format!("{i}: {text}");
                (
                    json!(key_text),
                    json!(value),
                    key_text.into_bytes(),
                    value.into_bytes(),
                )
            }
            "binary" => {
                let bytes: Vec<u8> = (0..400).map(|b| (b % 7) as u8 + i as u8).collect();
                let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
                let key_bytes = vec![0xff, 0x00, i as u8];
                (json!(b64(&key_bytes)), json!(b64(&bytes)), key_bytes, bytes)
            }
            "avro" => {
                let mut key_bytes = Vec::new();
                avro_string(&key_text, &mut key_bytes);
                let mut value_bytes = Vec::new();
                avro_long(i as i64 * 1000 - 7, &mut value_bytes);
                avro_string(&text, &mut value_bytes);
                (
                    json!(key_text),
                    json!({"id": i as i64 * 1000 - 7, "text": text}),
                    key_bytes,
                    value_bytes,
                )
            }
            other => panic!("no format {other}"),
        };
        let mut record = json!({
            "key": key,
            "value": value,
            "timestamp": 1_732_838_400_000i64 + i as i64,
            "headers": [
                {"key": "trace-id", "value": format!("t-{i}")},
                {"key": "raw", "value": {"base64": "AAEC/w=="}},
                {"key": "nil", "value": null},
                {"key": "trace-id", "value": "repeated"},
            ],
        });
        if i % 3 == 2 {
            record["partition"] = json!(1);
        }
        records.push(record);
        expected.push((Some(key_bytes), Some(value_bytes)));
    }
    // One record with a null key and a tombstone value.
    records.push(json!({"key": null, "value": null, "timestamp": 1_732_838_500_000i64}));
    expected.push((None, None));
    let mut body = json!({"key_format": format, "value_format": format, "records": records});
    if format == "avro" {
        body["key_schema"] = json!("\"string\"");
        body["value_schema"] = json!(
            "{\"type\":\"record\",\"name\":\"V\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"text\",\"type\":\"string\"}]}"
        );
    }
    Case {
        format,
        body,
        expected,
    }
}

#[test]
fn every_format_and_codec_reaches_kafka_as_sent() {
    let bootstrap = test_kafka();
    let gateway = spawn_gateway(&bootstrap, "");
    let topic = unique("formats");
    create(&gateway, &topic, json!({"name": topic, "partitions": 3}));

    // (codec, format, response offsets, expected bytes, timestamps)
    let mut sent = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        for format in ["json", "string", "binary", "avro"] {
            let case = case(format, 6);
            let (status, body) =
                gateway.produce(&topic, &format!("?compression={codec}"), &case.body);
            assert_eq!(status, 200, "{codec}/{}: {body}", case.format);
            let offsets = body["offsets"].as_array().expect("offsets").clone();
            assert_eq!(offsets.len(), case.expected.len());
            sent.push((codec, case, offsets));
        }
    }

    let consumed = consume_all(&bootstrap, &topic, 3);
    let headers = |i: usize| -> Vec<(String, Option<Vec<u8>>)> {
        vec![
            ("trace-id".into(), Some(format!("t-{i}").into_bytes())),
            ("raw".into(), Some(vec![0, 1, 2, 0xff])),
            ("nil".into(), None),
            ("trace-id".into(), Some(b"repeated".to_vec())),
        ]
    };
    let mut codecs = BTreeMap::new();
    for p in 0..3 {
        codecs.insert(p, stored_codecs(&test_kafka_dir(), &topic, p));
    }
    let mut total = 0;
    for (codec, case, offsets) in &sent {
        let records = case.body["records"].as_array().expect("records");
        for (i, entry) in offsets.iter().enumerate() {
            assert!(
                entry["error_code"].is_null(),
                "{codec}/{}: {entry}",
                case.format
            );
            let partition = entry["partition"].as_i64().expect("partition") as i32;
            let offset = entry["offset"].as_i64().expect("offset");
            if let Some(p) = records[i].get("partition") {
                assert_eq!(Some(i64::from(partition)), p.as_i64());
            }
            let got = consumed.get(&(partition, offset)).unwrap_or_else(|| {
                panic!("{codec}/{}: no record at {partition}/{offset}", case.format)
            });
            let (key, value) = &case.expected[i];
            assert_eq!(&got.key, key, "{codec}/{} record {i} key", case.format);
            assert_eq!(
                &got.value, value,
                "{codec}/{} record {i} value",
                case.format
            );
            assert_eq!(Some(got.timestamp), entry["timestamp"].as_i64());
            assert_eq!(Some(got.timestamp), records[i]["timestamp"].as_i64());
            let want_headers = if records[i]["headers"].is_array() {
                headers(i)
            } else {
                Vec::new()
            };
            assert_eq!(
                got.headers, want_headers,
                "{codec}/{} record {i}",
                case.format
            );
            // A batch holding only the tombstone is too small to gain from compression, so
            // librdkafka sends it as it is.
            if got.value.is_none() {
                total += 1;
                continue;
            }
            let stored = codecs[&partition].get(&offset).copied();
            assert_eq!(
                stored.map(|c| c.name()),
                Some(*codec),
                "{}/{partition}/{offset} stored with another codec",
                case.format
            );
            total += 1;
        }
    }
    assert_eq!(consumed.len(), total, "Kafka holds records nobody sent");

    // Reading back through the gateway renders what the consumer saw.
    let p0: Vec<&Consumed> = consumed.values().filter(|r| r.partition == 0).collect();
    let (status, body) = gateway.read(
        &topic,
        0,
        "?offset=0&limit=5&key_format=binary&value_format=binary",
    );
    assert_eq!(status, 200, "{body}");
    let read = body["records"].as_array().expect("records");
    assert_eq!(read.len(), 5.min(p0.len()));
    let b64 = |v: &Option<Vec<u8>>| {
        v.as_ref()
            .map(|b| json!(base64::engine::general_purpose::STANDARD.encode(b)))
            .unwrap_or(Value::Null)
    };
    for (got, want) in read.iter().zip(&p0) {
        assert_eq!(got["offset"].as_i64(), Some(want.offset));
        assert_eq!(got["timestamp"].as_i64(), Some(want.timestamp));
        assert_eq!(got["key"], b64(&want.key));
        assert_eq!(got["value"], b64(&want.value));
        assert_eq!(
            got["headers"].as_array().map(Vec::len),
            Some(want.headers.len())
        );
    }
    let end = p0.last().map_or(0, |r| r.offset + 1);
    let (status, body) = gateway.read(&topic, 0, &format!("?offset={end}"));
    assert_eq!((status, body), (200, json!({"records": []})));
    let (status, body) = gateway.read(&topic, 3, "?offset=0");
    assert_eq!(status, 404, "{body}");
}

/// Kafka's own test vectors (`UtilsTest.testMurmur2`): the hash a Java client computes.
const JAVA_MURMUR2: [(&str, i32); 6] = [
    ("21", -973_932_308),
    ("foobar", -790_332_482),
    ("a-little-bit-long-string", -985_981_536),
    ("a-little-bit-longer-string", -1_486_304_829),
    (
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        -58_897_971,
    ),
    ("abc", 479_470_107),
];

#[test]
fn keys_land_in_the_partition_a_java_client_picks() {
    let bootstrap = test_kafka();
    let gateway = spawn_gateway(&bootstrap, "");
    let topic = unique("murmur2");
    let partitions = 7;
    create(
        &gateway,
        &topic,
        json!({"name": topic, "partitions": partitions}),
    );
    let records: Vec<Value> = JAVA_MURMUR2
        .iter()
        .map(|(key, _)| json!({"key": key, "value": {"k": key}}))
        .collect();
    let (status, body) = gateway.produce(
        &topic,
        "",
        &json!({"key_format": "string", "records": records}),
    );
    assert_eq!(status, 200, "{body}");
    let consumed = consume_all(&bootstrap, &topic, partitions);
    for ((key, hash), entry) in JAVA_MURMUR2
        .iter()
        .zip(body["offsets"].as_array().expect("offsets"))
    {
        let java = ((*hash as u32) & 0x7fff_ffff) % partitions as u32;
        assert_eq!(
            entry["partition"].as_u64(),
            Some(u64::from(java)),
            "key {key}"
        );
        let stored = &consumed[&(java as i32, entry["offset"].as_i64().expect("offset"))];
        assert_eq!(stored.key.as_deref(), Some(key.as_bytes()));
    }
}

#[test]
fn async_produce_completes_with_the_offsets_kafka_assigned() {
    let bootstrap = test_kafka();
    let gateway = spawn_gateway(&bootstrap, "");
    let topic = unique("async");
    create(&gateway, &topic, json!({"name": topic, "partitions": 2}));
    let records: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    let body = json!({"key_format": "string", "records": records});
    let (status, accepted) = gateway.produce(&topic, "?async=true&compression=zstd", &body);
    assert_eq!(status, 202, "{accepted}");
    let url = accepted["status_url"]
        .as_str()
        .expect("status_url")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (status, state) = common::status_json(gateway.get(&url).send().expect("status"));
        assert_eq!(status, 200, "{state}");
        match state["status"].as_str() {
            Some("completed") => break state,
            Some("pending" | "processing") => {}
            other => panic!("status {other:?}: {state}"),
        }
        assert!(Instant::now() < deadline, "not completed: {state}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(done["record_count"], 20);
    let consumed = consume_all(&bootstrap, &topic, 2);
    assert_eq!(consumed.len(), 20);
    for (i, entry) in done["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .enumerate()
    {
        let at = (
            entry["partition"].as_i64().expect("partition") as i32,
            entry["offset"].as_i64().expect("offset"),
        );
        assert_eq!(consumed[&at].value, Some(i.to_string().into_bytes()));
    }
}

#[test]
fn topics_are_administered_in_the_cluster_and_unknown_ones_are_a_fast_404() {
    let bootstrap = test_kafka();
    let gateway = spawn_gateway(&bootstrap, "");
    let topic = unique("admin");
    let body = json!({"records": [{"value": 1}]});

    for round in 0..2 {
        let started = Instant::now();
        let (status, error) = gateway.produce(&topic, "", &body);
        assert_eq!(
            (status, error["error_code"].as_str()),
            (404, Some("topic_not_found")),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "404 took {:?} (round {round})",
            started.elapsed()
        );
    }
    let (status, _) = gateway.read(&topic, 0, "");
    assert_eq!(status, 404);
    let res = gateway
        .get(&format!("/api/topics/{topic}"))
        .send()
        .expect("describe");
    assert_eq!(res.status().as_u16(), 404);

    // Created right after a 404 (the name is remembered as missing): usable at once.
    let created = create(
        &gateway,
        &topic,
        json!({"name": topic, "partitions": 2, "config": {"compression": "gzip", "retention_ms": 3_600_000}}),
    );
    assert_eq!(created["partitions"].as_array().map(Vec::len), Some(2));
    assert_eq!(created["config"]["compression"], "gzip");
    assert_eq!(created["config"]["retention_ms"], 3_600_000);
    let (status, answer) = gateway.produce(
        &topic,
        "",
        &json!({"records": [{"value": "x".repeat(500), "partition": 0}]}),
    );
    assert_eq!(status, 200, "{answer}");
    // No ?compression: the topic's codec (its compression.type) applies.
    let codecs = stored_codecs(&test_kafka_dir(), &topic, 0);
    assert_eq!(codecs.get(&0), Some(&Compression::Gzip));

    let res = gateway
        .post("/api/topics")
        .json(&json!({"name": topic, "partitions": 1}))
        .send()
        .expect("create again");
    assert_eq!(res.status().as_u16(), 409);
    let (status, listed) = common::status_json(gateway.get("/api/topics").send().expect("list"));
    assert_eq!(status, 200);
    assert!(
        listed["topics"]
            .as_array()
            .expect("topics")
            .contains(&json!({"name": topic, "partitions": 2})),
        "{listed}"
    );
    let (_, described) = common::status_json(
        gateway
            .get(&format!("/api/topics/{topic}"))
            .send()
            .expect("describe"),
    );
    assert_eq!(described["partitions"][0]["end_offset"], 1, "{described}");
    assert_eq!(described["partitions"][1]["end_offset"], 0, "{described}");

    let res = gateway
        .delete(&format!("/api/topics/{topic}"))
        .send()
        .expect("delete");
    assert_eq!(res.status().as_u16(), 204);
    let (status, _) = gateway.produce(&topic, "", &body);
    assert_eq!(status, 404);
    let res = gateway
        .delete(&format!("/api/topics/{topic}"))
        .send()
        .expect("delete");
    assert_eq!(res.status().as_u16(), 404);
}

#[test]
fn declared_topics_are_created_in_the_cluster_at_start() {
    let bootstrap = test_kafka();
    let topic = unique("declared");
    let gateway = spawn_gateway(
        &bootstrap,
        &format!("[[topics]]\nname = \"{topic}\"\npartitions = 4\ncompression = \"lz4\"\n"),
    );
    let (status, described) = common::status_json(
        gateway
            .get(&format!("/api/topics/{topic}"))
            .send()
            .expect("describe"),
    );
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(4));
    assert_eq!(described["config"]["compression"], "lz4");
    let (status, answer) = gateway.produce(
        &topic,
        "",
        &json!({"records": [{"value": "y".repeat(500), "partition": 3}]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        stored_codecs(&test_kafka_dir(), &topic, 3).get(&0),
        Some(&Compression::Lz4)
    );
    // A second gateway with the same declaration finds the topic there and keeps it.
    let again = spawn_gateway(
        &bootstrap,
        &format!("[[topics]]\nname = \"{topic}\"\npartitions = 1\n"),
    );
    let (_, described) = common::status_json(
        again
            .get(&format!("/api/topics/{topic}"))
            .send()
            .expect("describe"),
    );
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(4));
}

#[test]
fn a_record_kafka_refuses_fails_alone_with_a_clear_code() {
    let bootstrap = test_kafka();
    let gateway = spawn_gateway(&bootstrap, "");
    let topic = unique("refused");
    create(&gateway, &topic, json!({"name": topic, "partitions": 1}));
    // Over librdkafka's message.max.bytes (1 MB): refused before it leaves the gateway.
    let big = "z".repeat(1_500_000);
    let body = json!({"key_format": "string", "value_format": "string",
        "records": [{"value": "small-1"}, {"value": big}, {"value": "small-2"}]});
    let (status, answer) = gateway.produce(&topic, "", &body);
    assert_eq!(status, 200, "{answer}");
    let offsets = answer["offsets"].as_array().expect("offsets");
    assert_eq!(
        offsets[1]["error_code"], "kafka_message_too_large",
        "{answer}"
    );
    assert_eq!(offsets[1]["offset"], -1);
    let message = offsets[1]["error"].as_str().expect("error");
    assert!(
        message.starts_with("records[1]: Kafka: ") && message.contains("will fail again"),
        "{message}"
    );
    assert_eq!(
        (offsets[0]["offset"].as_i64(), offsets[2]["offset"].as_i64()),
        (Some(0), Some(1))
    );
    let consumed = consume_all(&bootstrap, &topic, 1);
    let values: Vec<_> = consumed.values().map(|r| r.value.clone()).collect();
    assert_eq!(
        values,
        [Some(b"small-1".to_vec()), Some(b"small-2".to_vec())]
    );
}

#[test]
fn a_cluster_that_is_down_answers_503_fast_and_recovers() {
    let kafka = KafkaNode::start();
    let topic = unique("outage");
    let gateway = spawn_gateway(
        &kafka.bootstrap,
        &format!("[[topics]]\nname = \"{topic}\"\npartitions = 2\n"),
    );
    let body = json!({"records": [{"value": 1}, {"value": 2}]});
    let (status, answer) = gateway.produce(&topic, "", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        gateway
            .get("/readyz")
            .send()
            .expect("readyz")
            .status()
            .as_u16(),
        200
    );

    kafka.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    while gateway
        .get("/readyz")
        .send()
        .expect("readyz")
        .status()
        .as_u16()
        != 503
    {
        assert!(
            Instant::now() < deadline,
            "still ready 15 s after Kafka stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for request in [
        gateway
            .post(&format!("/api/topics/{topic}/produce"))
            .json(&body),
        gateway
            .post(&format!("/api/topics/{topic}/produce?async=true"))
            .json(&body),
        gateway.get("/api/topics"),
        gateway.get(&format!("/api/topics/{topic}")),
        gateway.get(&format!("/api/topics/{topic}/partitions/0/records")),
        gateway
            .post("/api/topics")
            .json(&json!({"name": unique("never")})),
        gateway
            .post(&format!("/api/topics/{}/produce", unique("unknown")))
            .json(&body),
    ] {
        let started = Instant::now();
        let (status, error) = common::status_json(request.send().expect("request"));
        assert_eq!(
            (status, error["error_code"].as_str()),
            (503, Some("unavailable")),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "503 took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        gateway
            .get("/healthz")
            .send()
            .expect("healthz")
            .status()
            .as_u16(),
        200
    );

    kafka.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway
        .get("/readyz")
        .send()
        .expect("readyz")
        .status()
        .as_u16()
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after Kafka came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, answer) = gateway.produce(&topic, "", &body);
    assert_eq!(status, 200, "{answer}");
    for entry in answer["offsets"].as_array().expect("offsets") {
        assert!(entry["error_code"].is_null(), "{answer}");
    }
    assert_eq!(consume_all(&kafka.bootstrap, &topic, 2).len(), 4);
}

#[test]
fn a_gateway_starts_unready_when_the_cluster_is_unreachable() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let started = Instant::now();
    let gateway = spawn_gateway(
        &format!("127.0.0.1:{port}"),
        "[[topics]]\nname = \"later\"\n[backend.kafka]\nmetadata_timeout_ms = 300\n",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start took {:?}",
        started.elapsed()
    );
    assert_eq!(
        gateway
            .get("/healthz")
            .send()
            .expect("healthz")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        gateway
            .get("/readyz")
            .send()
            .expect("readyz")
            .status()
            .as_u16(),
        503
    );
    let (status, error) = gateway.produce("later", "", &json!({"records": [{"value": 1}]}));
    assert_eq!(status, 503, "{error}");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("Kafka cluster unreachable"),
        "{error}"
    );
}

#[test]
fn two_gateways_share_one_cluster() {
    let bootstrap = test_kafka();
    let topic = unique("shared");
    let first = spawn_gateway(&bootstrap, "");
    create(&first, &topic, json!({"name": topic, "partitions": 3}));
    let second = spawn_gateway(&bootstrap, "");
    let (requests, per_request) = (20, 25);
    let results: Vec<(usize, Vec<Value>)> = std::thread::scope(|s| {
        let handles: Vec<_> = [&first, &second]
            .into_iter()
            .enumerate()
            .map(|(g, gateway)| {
                let topic = &topic;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for r in 0..requests {
                        let records: Vec<Value> = (0..per_request)
                            .map(|i| json!({"key": format!("g{g}-r{r}-{i}"), "value": {"g": g}}))
                            .collect();
                        let (status, body) = gateway.produce(
                            topic,
                            "",
                            &json!({"key_format": "string", "records": records}),
                        );
                        assert_eq!(status, 200, "{body}");
                        out.extend(body["offsets"].as_array().expect("offsets").clone());
                    }
                    (g, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("gateway thread"))
            .collect()
    });
    let mut seen = HashSet::new();
    for (_, offsets) in &results {
        for entry in offsets {
            assert!(entry["error_code"].is_null(), "{entry}");
            let at = (
                entry["partition"].as_i64().expect("p"),
                entry["offset"].as_i64().expect("o"),
            );
            assert!(seen.insert(at), "offset {at:?} given twice");
        }
    }
    let total = 2 * requests * per_request;
    assert_eq!(seen.len(), total);
    let consumed = consume_all(&bootstrap, &topic, 3);
    assert_eq!(consumed.len(), total);
    for (partition, offset) in &seen {
        assert!(consumed.contains_key(&(*partition as i32, *offset)));
    }
}

#[test]
fn an_idempotent_retry_returns_the_offsets_kafka_assigned_and_sends_nothing_again() {
    let bootstrap = test_kafka();
    let gateway = spawn_gateway(&bootstrap, "");
    let topic = unique("idem");
    create(&gateway, &topic, json!({"name": topic, "partitions": 3}));
    let records: Vec<Value> = (0..30)
        .map(|i| {
            if i % 2 == 0 {
                json!({"key": format!("k{i}"), "value": i})
            } else {
                json!({"value": i})
            }
        })
        .collect();
    let body = json!({"key_format": "string", "records": records});
    let send = |body: &Value| {
        common::status_json(
            gateway
                .post(&format!("/api/topics/{topic}/produce"))
                .header("Idempotency-Key", "kafka-retry-1")
                .json(body)
                .send()
                .expect("produce"),
        )
    };
    let (status, first) = send(&body);
    assert_eq!(status, 200, "{first}");
    for _ in 0..2 {
        let (status, again) = send(&body);
        assert_eq!(status, 200, "{again}");
        assert_eq!(again, first);
    }
    let (status, reused) = send(&json!({"records": [{"value": 1}]}));
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["error_code"], "idempotency_key_reused");
    let consumed = consume_all(&bootstrap, &topic, 3);
    assert_eq!(consumed.len(), 30, "Kafka holds one copy");
    for (i, entry) in first["offsets"].as_array().unwrap().iter().enumerate() {
        let at = (
            entry["partition"].as_i64().unwrap() as i32,
            entry["offset"].as_i64().unwrap(),
        );
        assert_eq!(consumed[&at].value, Some(i.to_string().into_bytes()));
    }
}
