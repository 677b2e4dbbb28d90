//! Produce end to end over real HTTP: API.md's examples, formats × codecs read back through
//! the records endpoint and straight from the segment files with an independent decoder
//! (kafka-protocol), partial success, and Kafka's partitioner.

mod common;
#[path = "../actors/tests/support/kafka.rs"]
mod kafka_support;

use std::collections::HashSet;

use base64::Engine;
use common::spawn_broker;
use kafka_support::decode_segment_with_kafka;
use serde_json::{json, Value};

const ORDER_SCHEMA: &str =
    r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;

#[test]
fn api_md_produce_example_appends_and_answers_offsets_in_input_order() {
    let broker = spawn_broker("[[topics]]\nname = \"orders\"\npartitions = 3\n");
    let body = json!({
      "key_format": "string",
      "value_format": "json",
      "value_schema": ORDER_SCHEMA,
      "records": [
        {"key": "user-1", "value": {"id": 7}},
        {"key": "user-2", "value": {"id": 8}, "partition": 2,
         "headers": [{"key": "trace-id", "value": "abc"}], "timestamp": 1732838400000u64}
      ]
    });
    let repeated = json!({"records": [{"value": 1, "partition": 0, "headers": [
        {"key": "k", "value": "1"}, {"key": "k", "value": null}, {"key": "k", "value": "3"}]}]});
    let (status, answer) = broker.produce("orders", "", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["topic"], "orders");
    let offsets = answer["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 2);
    assert_eq!(offsets[1]["partition"], 2);
    assert_eq!(offsets[1]["timestamp"], 1732838400000u64);
    for entry in offsets {
        assert!(entry["offset"].as_i64().unwrap() >= 0);
        assert!(entry["error_code"].is_null() && entry["error"].is_null());
    }
    let p1 = offsets[0]["partition"].as_u64().unwrap() as u32;
    let (status, read) = broker.read("orders", p1, "?key_format=string");
    assert_eq!(status, 200);
    assert_eq!(read["records"][0]["key"], "user-1");
    assert_eq!(read["records"][0]["value"], json!({"id": 7}));

    let (_, read) = broker.read("orders", 2, "?key_format=string");
    let stored = read["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "user-2")
        .expect("record in partition 2")
        .clone();
    assert_eq!(
        stored["headers"],
        json!([{"key": "trace-id", "value": "abc"}])
    );
    assert_eq!(stored["timestamp"], 1732838400000u64);

    // Repeated header keys (and a null value) keep their order.
    let (status, answer) = broker.produce("orders", "", &repeated);
    assert_eq!(status, 200);
    let offset = answer["offsets"][0]["offset"].as_i64().unwrap();
    let (_, read) = broker.read("orders", 0, &format!("?offset={offset}&limit=1"));
    assert_eq!(
        read["records"][0]["headers"],
        json!([{"key": "k", "value": "1"}, {"key": "k", "value": null}, {"key": "k", "value": "3"}])
    );
}

/// One value per format, with how it must come back.
fn format_cases() -> Vec<(&'static str, Option<&'static str>, Value, Vec<u8>)> {
    vec![
        (
            "json",
            None,
            json!({"a": [1, 2.5, "x"], "b": null}),
            br#"{"a": [1, 2.5, "x"], "b": null}"#.to_vec(),
        ),
        (
            "string",
            None,
            json!("héllo wörld"),
            "héllo wörld".as_bytes().to_vec(),
        ),
        ("binary", None, json!("AAEC/w=="), vec![0, 1, 2, 255]),
        // Avro binary of {"id": 7}: zigzag varint 14.
        ("avro", Some(ORDER_SCHEMA), json!({"id": 7}), vec![14]),
    ]
}

#[test]
fn every_format_and_codec_reads_back_through_the_api_and_from_the_segment_files() {
    let mut broker = spawn_broker("");
    broker.create_topic("matrix", 1);
    let mut expected_batches = 0;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        for (format, schema, value, stored) in format_cases() {
            let mut body = json!({
                "key_format": "string",
                "value_format": format,
                "records": [
                    {"key": format!("{codec}-{format}"), "value": value.clone(),
                     "headers": [{"key": "h", "value": {"base64": "AP8="}}, {"key": "g", "value": "again"}]},
                    {"key": null, "value": null}
                ]
            });
            if let Some(schema) = schema {
                body["value_schema"] = json!(schema);
            }
            // The json body must be sent with the exact bytes of `stored` for the json case.
            let text = serde_json::to_string(&body).unwrap().replace(
                &serde_json::to_string(&value).unwrap(),
                std::str::from_utf8(&stored).unwrap_or("null"),
            );
            let text = if format == "json" {
                text
            } else {
                serde_json::to_string(&body).unwrap()
            };
            let res = broker
                .post(&format!("/api/topics/matrix/produce?compression={codec}"))
                .header("content-type", "application/json")
                .body(text)
                .send()
                .unwrap();
            let (status, answer) = common::status_json(res);
            assert_eq!(status, 200, "{codec}/{format}: {answer}");
            let offset = answer["offsets"][0]["offset"].as_i64().unwrap();
            expected_batches += 1;

            let mut query =
                format!("?offset={offset}&limit=2&key_format=string&value_format={format}");
            if let Some(schema) = schema {
                query.push_str(&format!("&value_schema={}", urlencode(schema)));
            }
            let (status, read) = broker.read("matrix", 0, &query);
            assert_eq!(status, 200, "{codec}/{format}: {read}");
            let records = read["records"].as_array().unwrap();
            assert_eq!(records[0]["key"], format!("{codec}-{format}"));
            assert_eq!(records[0]["value"], value, "{codec}/{format}");
            assert_eq!(
                records[0]["headers"],
                json!([{"key": "h", "value": {"base64": "AP8="}}, {"key": "g", "value": "again"}])
            );
            assert!(records[1]["key"].is_null() && records[1]["value"].is_null());
        }
    }

    // The same records, decoded from the segment file by kafka-protocol — after a clean stop,
    // which cuts the active segment's preallocated space, as an operator running Kafka's tools
    // on a stopped broker's data dir would find it.
    let status = broker.terminate(std::time::Duration::from_secs(10));
    assert!(status.success(), "exit after SIGTERM: {status}");
    let segment = broker
        .data_dir
        .join("matrix-0")
        .join("00000000000000000000.log");
    let records = decode_segment_with_kafka(&std::fs::read(&segment).unwrap());
    let mut seen = 0;
    let cases = format_cases();
    for (offset, record) in records.iter().enumerate() {
        assert_eq!(record.offset, offset as i64);
        if let Some(key) = &record.key {
            let key = std::str::from_utf8(key).unwrap();
            let (_, format) = key.split_once('-').unwrap();
            let (_, _, _, stored) = cases.iter().find(|c| c.0 == format).unwrap();
            assert_eq!(record.value.as_deref(), Some(&stored[..]), "{key}");
            assert_eq!(record.headers.len(), 2);
            seen += 1;
        } else {
            assert!(record.value.is_none());
        }
    }
    assert_eq!(seen, expected_batches);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn partial_success_appends_the_good_records_and_names_the_bad_field() {
    let broker = spawn_broker("");
    broker.create_topic("partial", 2);
    let body = json!({
        "value_format": "binary",
        "records": [
            {"value": "AAE="},
            {"value": "not base64!"},
            {"value": 5},
            {"value": "AAI=", "partition": 7},
            {"value": "AAM=", "headers": [{"key": "x", "value": {"base64": "%%"}}]},
            {"value": "AAQ=", "partition": 1}
        ]
    });
    let (status, answer) = broker.produce("partial", "", &body);
    assert_eq!(status, 200, "{answer}");
    let offsets = answer["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 6);
    assert!(offsets[0]["error"].is_null());
    assert_eq!(offsets[1]["error_code"], "invalid_value");
    assert!(offsets[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("records[1].value: invalid base64"));
    assert_eq!(
        offsets[2]["error"],
        "records[2].value: expected a base64 string"
    );
    assert_eq!(offsets[3]["error_code"], "partition_not_found");
    assert!(offsets[3]["error"]
        .as_str()
        .unwrap()
        .starts_with("records[3].partition"));
    assert_eq!(offsets[4]["error_code"], "invalid_header");
    assert!(offsets[4]["error"]
        .as_str()
        .unwrap()
        .starts_with("records[4].headers[0].value"));
    for bad in &offsets[1..5] {
        assert_eq!(bad["offset"], -1);
        assert!(bad["partition"].is_null());
        assert_eq!(bad["retriable"], false, "a bad record fails again on retry");
    }
    assert!(
        offsets[0]["retriable"].is_null(),
        "only failures say whether to retry"
    );
    assert_eq!(offsets[5]["partition"], 1);
    let (_, read) = broker.read("partial", 1, "?value_format=binary");
    let values: Vec<&Value> = read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert!(values.contains(&&json!("AAQ=")));
    assert!(!values.contains(&&json!("AAI=")));
}

/// Kafka's `Utils.murmur2` test vectors (UtilsTest.testMurmur2), as the partition a Java
/// producer picks: `toPositive(murmur2(key)) % partitions`.
#[test]
fn keyed_records_land_where_the_java_client_puts_them() {
    let vectors: [(&str, i32); 6] = [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ];
    let broker = spawn_broker("");
    broker.create_topic("keyed", 7);
    let records: Vec<Value> = vectors
        .iter()
        .map(|(key, _)| json!({"key": key, "value": 1}))
        .collect();
    let (status, answer) = broker.produce(
        "keyed",
        "",
        &json!({"key_format": "string", "records": records}),
    );
    assert_eq!(status, 200);
    for ((key, hash), entry) in vectors.iter().zip(answer["offsets"].as_array().unwrap()) {
        let expected = (*hash as u32 & 0x7fff_ffff) % 7;
        assert_eq!(entry["partition"], expected, "key {key}");
    }
}

#[test]
fn unkeyed_records_spread_round_robin_over_partitions() {
    let broker = spawn_broker("");
    broker.create_topic("spread", 3);
    let records: Vec<Value> = (0..30).map(|i| json!({"value": i})).collect();
    let (_, answer) = broker.produce("spread", "", &json!({"records": records}));
    let partitions: HashSet<u64> = answer["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(partitions.len(), 3);
}

#[test]
fn binary_keys_partition_on_their_decoded_bytes() {
    let broker = spawn_broker("");
    broker.create_topic("binkeys", 7);
    let key = base64::engine::general_purpose::STANDARD.encode("foobar");
    let (_, answer) = broker.produce(
        "binkeys",
        "",
        &json!({"key_format": "binary", "records": [{"key": key, "value": 1}]}),
    );
    assert_eq!(
        answer["offsets"][0]["partition"],
        (-790332482i32 as u32 & 0x7fff_ffff) % 7
    );
}
