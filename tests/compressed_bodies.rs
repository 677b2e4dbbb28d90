//! Compressed request bodies (`Content-Encoding: gzip | deflate | zstd | br`), the decoded
//! size held to `max_request_bytes` (a gzip bomb is 413 with memory bounded), and compressed
//! answers for clients that send `Accept-Encoding`.

mod common;

use std::io::{Read, Write};

use common::{spawn_broker, status_json, Broker};
use serde_json::{json, Value};

fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        "br" => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
            }
            out
        }
        other => panic!("no encoder for {other}"),
    }
}

fn post_encoded(broker: &Broker, coding: &str, body: Vec<u8>) -> (u16, Value) {
    status_json(
        broker
            .post("/api/topics/c/produce")
            .header("Content-Type", "application/json")
            .header("Content-Encoding", coding)
            .body(body)
            .send()
            .expect("produce"),
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn every_content_coding_is_decoded_and_stored_as_sent() {
    let broker = spawn_broker("[[topics]]\nname = \"c\"\npartitions = 1\n");
    let mut expected = Vec::new();
    for coding in ["gzip", "deflate", "zstd", "br", "identity"] {
        let values: Vec<String> = (0..50).map(|i| format!("{coding} record {i}")).collect();
        let body = json!({
            "value_format": "string",
            "records": values.iter().map(|v| json!({"value": v})).collect::<Vec<_>>(),
        });
        let raw = serde_json::to_vec(&body).unwrap();
        let sent = if coding == "identity" {
            raw.clone()
        } else {
            encode(coding, &raw)
        };
        if coding != "identity" {
            assert!(sent.len() < raw.len(), "{coding} compressed");
        }
        let (status, answer) = post_encoded(&broker, coding, sent);
        assert_eq!(status, 200, "{coding}: {answer}");
        assert_eq!(answer["offsets"].as_array().unwrap().len(), 50);
        expected.extend(values);
    }
    let (_, read) = broker.read("c", 0, "?limit=1000&value_format=string");
    let stored: Vec<&str> = read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(stored, expected);
}

#[test]
fn unknown_codings_and_corrupt_data_are_refused() {
    let broker = spawn_broker("[[topics]]\nname = \"c\"\npartitions = 1\n");
    let body = br#"{"records":[{"value":1}]}"#.to_vec();
    for coding in ["compress", "gzip, br", "lz4"] {
        let (status, answer) = post_encoded(&broker, coding, body.clone());
        assert_eq!(status, 415, "{coding}: {answer}");
        assert_eq!(answer["error_code"], "unsupported_media_type");
        assert!(answer["message"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding"));
    }
    for coding in ["gzip", "deflate", "zstd"] {
        let (status, answer) = post_encoded(&broker, coding, body.clone());
        assert_eq!(status, 400, "{coding}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(coding),
            "{coding}: {answer}"
        );
    }
    // Nothing was appended.
    let (_, read) = broker.read("c", 0, "");
    assert_eq!(read["records"].as_array().unwrap().len(), 0);
}

#[test]
fn a_gzip_bomb_is_413_with_bounded_memory() {
    let broker = spawn_broker(
        "[server]\nbind = \"127.0.0.1:0\"\nmax_request_bytes = 8388608\n[[topics]]\nname = \"c\"\npartitions = 1\n",
    );
    // One gzip member of 256 MiB of '[' (JSON that never ends), repeated to a 10 MB body
    // that would decode to ~10 GiB.
    let member = encode("gzip", &vec![b'['; 256 << 20]);
    let mut bomb = Vec::new();
    while bomb.len() < 10_000_000 {
        bomb.extend_from_slice(&member);
    }
    let pid = broker.child.id();
    let before = rss_kib(pid);
    for _ in 0..3 {
        let (status, answer) = post_encoded(&broker, "gzip", bomb.clone());
        assert_eq!(status, 413, "{answer}");
        assert_eq!(answer["error_code"], "payload_too_large");
    }
    let after = rss_kib(pid);
    eprintln!(
        "gzip bomb: {} bytes sent (decoding to {} GiB), limit 8 MiB: RSS {before} KiB -> {after} KiB",
        bomb.len(),
        (bomb.len() / member.len()) / 4
    );
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "RSS grew by {} KiB",
        after - before
    );
    // The broker still serves.
    let (status, _) = broker.produce("c", "", &json!({"records": [{"value": 1}]}));
    assert_eq!(status, 200);
}

#[test]
fn answers_are_compressed_when_the_client_asks() {
    let broker = spawn_broker("[[topics]]\nname = \"c\"\npartitions = 1\n");
    for (coding, decode) in [
        ("gzip", decode_gzip as fn(&[u8]) -> Vec<u8>),
        ("zstd", |b: &[u8]| zstd::decode_all(b).unwrap()),
        ("br", |b: &[u8]| {
            let mut out = Vec::new();
            brotli::Decompressor::new(b, 4096)
                .read_to_end(&mut out)
                .unwrap();
            out
        }),
    ] {
        let res = broker
            .get("/api/topics")
            .header("Accept-Encoding", coding)
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(
            res.headers()["content-encoding"].to_str().unwrap(),
            coding,
            "answer to Accept-Encoding: {coding}"
        );
        let bytes = res.bytes().unwrap();
        let listed: Value = serde_json::from_slice(&decode(&bytes)).unwrap();
        assert_eq!(listed["topics"][0]["name"], "c", "{listed}");
    }
    let res = broker.get("/api/topics").send().unwrap();
    assert!(res.headers().get("content-encoding").is_none());
}

fn decode_gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}
