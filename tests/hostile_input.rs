//! Hostile input over real HTTP (issue 5, "Hostile input"): tens of thousands of generated and
//! mutated produce bodies, oversized and endless bodies, oversized headers, and topic names that
//! try to leave the data dir.
//!
//! Every body is generated from a seeded RNG (`RILL_SEED=<n>` replays a run; each test prints
//! its seed). Counts are CI-sized by default; `RILL_SOAK=1` runs the long mode.
//!
//! The promises checked, with the figures each test prints:
//! - a body that is malformed (not JSON, not UTF-8, too deep, wrong types, unknown fields,
//!   partitions that are not integers, …) is answered 4xx with an `error_code`: 100 %;
//! - a body valid in shape whose records are bad (a partition that does not exist, bad base64,
//!   a value that does not fit its format) is answered 4xx, or 200 with an `error_code` on each
//!   record that was not appended (partial success) — counted separately;
//! - 0 answers 5xx, 0 panics in the broker's log, RSS growth < 50 MB over the run;
//! - a 1 GiB `Content-Length` and an endless chunked body get 413 with the server having read
//!   at most `max_request_bytes` + 64 KiB from the socket;
//! - 1,000 headers or a 1 MiB header line: 431 or the connection closed;
//! - topic names with `..`, `/`, NUL, or over-long: 400 or 404, and no file outside the data
//!   dir is created, changed or removed.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{prepare_dir, start_logged, status_json, Broker, Rng, StderrLog};
use serde_json::{json, Value};

fn soak() -> bool {
    std::env::var("RILL_SOAK").is_ok_and(|v| v == "1")
}

fn assert_no_panic(log: &StderrLog) {
    let panics = log.lines_with("panicked");
    assert!(panics.is_empty(), "broker panicked:\n{}", log.tail(40));
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

// ---------------------------------------------------------------------------------------------
// Body generation
// ---------------------------------------------------------------------------------------------

/// What the answer to a body must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Malformed: 4xx with an `error_code`, nothing else.
    Reject,
    /// Valid in shape: 200 (each record appended or carrying its own `error_code`) or 4xx.
    Shape,
    /// A random mutation: `Reject` if it is no longer JSON, else `Shape`.
    Mutated,
}

struct Case {
    kind: &'static str,
    body: Vec<u8>,
    query: String,
    content_type: &'static str,
    expect: Expect,
}

impl Case {
    fn new(kind: &'static str, body: impl Into<Vec<u8>>, expect: Expect) -> Self {
        Case {
            kind,
            body: body.into(),
            query: String::new(),
            content_type: "application/json",
            expect,
        }
    }
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(rng: &mut Rng, bytes: usize) -> String {
    // Valid standard base64 of `bytes` random bytes (length a multiple of 4, padded).
    let mut out = String::new();
    let groups = bytes.div_ceil(3);
    for _ in 0..groups {
        for _ in 0..4 {
            out.push(*rng.pick(BASE64) as char);
        }
    }
    match bytes % 3 {
        1 => {
            out.truncate(out.len() - 2);
            out.push_str("==");
            // The last real character must carry no stray bits for strict decoders.
            let at = out.len() - 3;
            out.replace_range(at..at + 1, "A");
        }
        2 => {
            out.truncate(out.len() - 1);
            out.push('=');
            let at = out.len() - 2;
            out.replace_range(at..at + 1, "A");
        }
        _ => {}
    }
    out
}

fn text(rng: &mut Rng, max: u64) -> String {
    const ALPHABET: &[&str] = &[
        "a", "b", "z", "0", "9", " ", "-", "\"", "\\", "/", "é", "ß", "日", "🦀", "\n", "\t",
        "\u{0}", "\u{7f}", "{", "}", "[", "]", ":", ",",
    ];
    let len = rng.range(0, max);
    (0..len).map(|_| *rng.pick(ALPHABET)).collect()
}

/// A random JSON value, at most `depth` deep.
fn json_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.range(0, if depth == 0 { 3 } else { 5 }) {
        0 => Value::Null,
        1 => json!(rng.chance(0.5)),
        2 => json!(rng.next_u64() as i64 >> rng.range(0, 63)),
        3 => Value::String(text(rng, 24)),
        4 => Value::Array(
            (0..rng.range(0, 4))
                .map(|_| json_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.range(0, 4))
                .map(|_| (text(rng, 6), json_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A valid produce body for a topic of 3 partitions.
fn valid_body(rng: &mut Rng) -> Value {
    let key_format = *rng.pick(&["json", "string", "binary"]);
    let value_format = *rng.pick(&["json", "string", "binary"]);
    let datum = |rng: &mut Rng, format: &str| -> Value {
        match format {
            "string" => Value::String(text(rng, 40)),
            "binary" => {
                let n = rng.range(0, 40) as usize;
                Value::String(base64(rng, n))
            }
            _ => json_value(rng, 3),
        }
    };
    let records: Vec<Value> = (0..rng.range(1, 12))
        .map(|_| {
            let mut record = serde_json::Map::new();
            if rng.chance(0.7) {
                record.insert("key".into(), datum(rng, key_format));
            }
            if rng.chance(0.9) {
                record.insert("value".into(), datum(rng, value_format));
            }
            if rng.chance(0.2) {
                record.insert("partition".into(), json!(rng.range(0, 2)));
            }
            if rng.chance(0.2) {
                record.insert("timestamp".into(), json!(rng.range(0, 1 << 45)));
            }
            if rng.chance(0.3) {
                let headers: Vec<Value> = (0..rng.range(0, 4))
                    .map(|_| match rng.range(0, 2) {
                        0 => json!({"key": text(rng, 8), "value": text(rng, 8)}),
                        1 => json!({"key": text(rng, 8), "value": null}),
                        _ => json!({"key": text(rng, 8), "value": {"base64": base64(rng, 5)}}),
                    })
                    .collect();
                record.insert("headers".into(), Value::Array(headers));
            }
            Value::Object(record)
        })
        .collect();
    let mut body = json!({ "records": records });
    if key_format != "json" || rng.chance(0.3) {
        body["key_format"] = json!(key_format);
    }
    if value_format != "json" || rng.chance(0.3) {
        body["value_format"] = json!(value_format);
    }
    body
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    let mut s = String::with_capacity((open.len() + close.len()) * depth + inner.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

fn replace_first(body: &str, from: &str, to: &str) -> String {
    body.replacen(from, to, 1)
}

/// One hostile case of the given kind.
fn generate(rng: &mut Rng) -> Case {
    use Expect::*;
    let valid = valid_body(rng);
    let valid_text = valid.to_string();
    match rng.range(0, 29) {
        // Syntax: cut short, garbage, trailing bytes, not-quite-JSON.
        0 => {
            let cut = rng.range(0, valid_text.len() as u64 - 1) as usize;
            Case::new("truncated", &valid_text.as_bytes()[..cut], Reject)
        }
        1 => {
            let len = rng.range(0, 4096) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            Case::new("random_bytes", bytes, Reject)
        }
        2 => {
            let tail = *rng.pick(&["x", "}", ",", "{}", "[1]", "\"", "\u{0}", "// c"]);
            Case::new("trailing_garbage", format!("{valid_text}{tail}"), Reject)
        }
        3 => {
            let body = *rng.pick(&[
                "",
                " ",
                "\n\t",
                "null",
                "true",
                "0",
                "\"records\"",
                "[]",
                "{}",
                "{\"records\": null}",
                "{\"records\": []}",
                "{'records': [{'value': 1}]}",
                "{records: [{value: 1}]}",
                "{\"records\": [{\"value\": NaN}]}",
                "{\"records\": [{\"value\": Infinity}]}",
                "{\"records\": [{\"value\": 01}]}",
                "{\"records\": [{\"value\": 1,}]}",
                "{\"records\": [{\"value\": 1}],}",
                "{\"records\": [{\"value\": \"\\x41\"}]}",
                "{\"records\": [{\"value\": \"unterminated}]}",
                "{\"records\": [{\"value\": \"tab\there\"}]}",
                "{\"records\": [{\"value\": 1} /* comment */]}",
                "\u{feff}{\"records\": [{\"value\": 1}]}",
            ]);
            Case::new("not_json", body, Reject)
        }
        // Invalid UTF-8, inside strings and outside.
        4 => {
            let choices: &[&[u8]] = &[
                &[0xff][..],
                &[0xc0, 0x80],
                &[0xed, 0xa0, 0x80],
                &[0xf4, 0x90, 0x80, 0x80],
                &[0xe2, 0x82],
                &[0x80],
            ];
            let bad = choices[rng.next_u64() as usize % choices.len()];
            let doc = "{\"key_format\": \"string\", \"value_format\": \"string\", \"records\": [{\"key\": \"k@\", \"value\": \"v@\", \"headers\": [{\"key\": \"h@\", \"value\": \"x@\"}]}]}".to_string();
            let spots: Vec<usize> = doc.match_indices('@').map(|(i, _)| i).collect();
            let at = *rng.pick(&spots);
            let mut body = doc.into_bytes();
            body.splice(at..at + 1, bad.iter().copied());
            let body: Vec<u8> = body.into_iter().filter(|&b| b != b'@').collect::<Vec<u8>>();
            Case::new("invalid_utf8", body, Reject)
        }
        5 => {
            let mut body = valid_text.clone().into_bytes();
            let at = rng.range(0, body.len() as u64) as usize;
            body.insert(at, *rng.pick(&[0xffu8, 0xfe, 0xc3, 0x80]));
            Case::new("invalid_utf8_anywhere", body, Reject)
        }
        // 10,000-deep nesting in every position.
        6 => {
            let depth = 10_000;
            let (open, close) = *rng.pick(&[("[", "]"), ("{\"a\":", "}")]);
            let deep = nested(open, "1", close, depth);
            let body = match rng.range(0, 5) {
                0 => deep,
                1 => format!("{{\"records\": [{{\"value\": {deep}}}]}}"),
                2 => format!("{{\"records\": [{{\"key\": {deep}, \"value\": 1}}]}}"),
                3 => format!(
                    "{{\"records\": [{{\"value\": 1, \"headers\": [{{\"key\": \"h\", \"value\": {deep}}}]}}]}}"
                ),
                4 => format!("{{\"records\": {deep}}}"),
                _ => format!("{{\"records\": [{}]}}", nested("[", "", "]", depth)),
            };
            Case::new("deep_nesting", body, Reject)
        }
        // Huge arrays: of the wrong type, or one bad element at the far end.
        7 => {
            let n = rng.range(10_000, 50_000) as usize;
            let element = *rng.pick(&["1", "null", "\"r\"", "[]", "true"]);
            let body = format!("{{\"records\": [{}]}}", vec![element; n].join(","));
            Case::new("huge_array_wrong_type", body, Reject)
        }
        8 => {
            let n = rng.range(5_000, 20_000) as usize;
            let mut records = vec!["{\"value\":1}"; n];
            records.push("{\"value\": 1, \"partition\": \"0\"}");
            let body = format!("{{\"records\": [{}]}}", records.join(","));
            Case::new("huge_array_bad_tail", body, Reject)
        }
        // Wrong types anywhere in the shape.
        9 => {
            let (from, to) = *rng.pick(&[
                ("\"records\":[", "\"records\":{\"0\":[1],\"x\":["),
                ("\"records\":[{", "\"records\":[1,{"),
                ("\"records\":[{", "\"records\":[\"x\",{"),
                ("\"records\":[{", "\"records\":[[],{"),
                ("\"records\":[{", "\"records\":[null,{"),
            ]);
            let compact = valid.to_string();
            let body = replace_first(&compact, from, to);
            Case::new("wrong_type_records", body, Reject)
        }
        10 => {
            let field = *rng.pick(&["partition", "timestamp"]);
            let bad = *rng.pick(&[
                "\"1\"",
                "1.5",
                "true",
                "[]",
                "{}",
                "1e30",
                "-1e30",
                "1e400",
                "18446744073709551616",
                "-9223372036854775809",
                "0.0",
            ]);
            let body = format!("{{\"records\": [{{\"value\": 1, \"{field}\": {bad}}}]}}");
            Case::new("wrong_type_number", body, Reject)
        }
        11 => {
            let (field, bad) = *rng.pick(&[
                ("key_format", "1"),
                ("key_format", "\"xml\""),
                ("value_format", "\"JSON\""),
                ("value_format", "null"),
                ("value_format", "[\"json\"]"),
                ("key_schema", "1"),
                ("value_schema", "{}"),
                ("key_schema_id", "\"1\""),
                ("value_schema_id", "7"),
                ("key_schema_id", "1"),
            ]);
            let body = if bad == "null" {
                // null is "not set" for optional fields: still valid; use a clear wrong type.
                format!("{{\"{field}\": 3, \"records\": [{{\"value\": 1}}]}}")
            } else {
                format!("{{\"{field}\": {bad}, \"records\": [{{\"value\": 1}}]}}")
            };
            Case::new("wrong_type_top_level", body, Reject)
        }
        12 => {
            let bad = *rng.pick(&[
                "\"headers\": {}",
                "\"headers\": \"h\"",
                "\"headers\": [1]",
                "\"headers\": [{\"value\": \"v\"}]",
                "\"headers\": [{\"key\": 1, \"value\": \"v\"}]",
                "\"headers\": [{\"key\": null}]",
            ]);
            let body = format!("{{\"records\": [{{\"value\": 1, {bad}}}]}}");
            Case::new("wrong_type_headers", body, Reject)
        }
        // Unknown and duplicate fields.
        13 => {
            let name = *rng.pick(&["colour", "Records", "records ", "", "__proto__", "\u{0}"]);
            let name = serde_json::to_string(name).unwrap();
            let body = match rng.range(0, 2) {
                0 => replace_first(&valid_text, "{", &format!("{{{name}: 1,")),
                1 => replace_first(&valid_text, "\"records\":[{", &format!("\"records\":[{{{name}: 1,")),
                _ => format!(
                    "{{\"records\": [{{\"value\": 1, \"headers\": [{{\"key\": \"k\", \"value\": \"v\", {name}: 1}}]}}]}}"
                ),
            };
            Case::new("unknown_field", body, Reject)
        }
        14 => {
            let body = *rng.pick(&[
                "{\"records\": [{\"value\": 1}], \"records\": [{\"value\": 2}]}",
                "{\"records\": [{\"value\": 1, \"value\": 2}]}",
                "{\"records\": [{\"value\": 1, \"partition\": 0, \"partition\": 1}]}",
                "{\"key_format\": \"json\", \"key_format\": \"string\", \"records\": [{\"value\": 1}]}",
            ]);
            Case::new("duplicate_field", body, Reject)
        }
        // Partitions that are integers but do not exist: per-record errors.
        15 => {
            let p = *rng.pick(&[
                "-1",
                "-2147483648",
                "-9223372036854775808",
                "3",
                "2147483647",
                "2147483648",
                "9223372036854775807",
            ]);
            let body = format!(
                "{{\"records\": [{{\"value\": 1, \"partition\": {p}}}, {{\"value\": 2}}]}}"
            );
            Case::new("partition_out_of_range", body, Shape)
        }
        // Bad base64, in binary keys and values and in header values.
        16 => {
            let bad = *rng.pick(&[
                "!!!",
                "QQ",
                "QQ=",
                "Q===",
                "QUJD\u{0}",
                "QUJD ",
                "====",
                "QUJDRA=a",
                "\u{e9}",
            ]);
            let bad = serde_json::to_string(bad).unwrap();
            let body = match rng.range(0, 2) {
                0 => format!("{{\"value_format\": \"binary\", \"records\": [{{\"value\": {bad}}}]}}"),
                1 => format!("{{\"key_format\": \"binary\", \"records\": [{{\"key\": {bad}, \"value\": 1}}]}}"),
                _ => format!(
                    "{{\"records\": [{{\"value\": 1, \"headers\": [{{\"key\": \"k\", \"value\": {{\"base64\": {bad}}}}}]}}]}}"
                ),
            };
            Case::new("bad_base64", body, Shape)
        }
        // Values that do not fit their format; negative timestamps; odd header values.
        17 => {
            let body = *rng.pick(&[
                "{\"key_format\": \"string\", \"records\": [{\"key\": {\"a\": 1}, \"value\": 1}]}",
                "{\"value_format\": \"string\", \"records\": [{\"value\": 12}]}",
                "{\"value_format\": \"binary\", \"records\": [{\"value\": [1, 2]}]}",
                "{\"value_format\": \"string\", \"records\": [{\"value\": \"\\ud800\"}]}",
                "{\"value_format\": \"string\", \"records\": [{\"value\": \"\\udc00x\"}]}",
                "{\"records\": [{\"value\": 1, \"timestamp\": -1}]}",
                "{\"records\": [{\"value\": 1, \"timestamp\": -9223372036854775808}]}",
                "{\"records\": [{\"value\": 1, \"headers\": [{\"key\": \"k\", \"value\": 5}]}]}",
                "{\"records\": [{\"value\": 1, \"headers\": [{\"key\": \"k\", \"value\": {\"b64\": \"QQ==\"}}]}]}",
                "{\"records\": [{\"value\": 1, \"headers\": [{\"key\": \"k\", \"value\": [\"a\"]}]}]}",
                "{\"records\": [{\"value\": 1e400}]}",
                "{\"records\": [{\"value\": -0.0e-99999}]}",
                "{\"records\": [{\"value\": 1, \"timestamp\": 9223372036854775807}]}",
                "{\"records\": [{}]}",
                "{\"records\": [{\"key\": null, \"value\": null, \"headers\": []}]}",
            ]);
            Case::new("record_level_error", body, Shape)
        }
        // Hostile Avro schemas and data.
        18 => {
            let schema = *rng.pick(&[
                "{\"type\": \"record\", \"name\": \"r\", \"fields\": [{\"name\": \"n\", \"type\": \"r\"}]}",
                "{\"type\": \"fixed\", \"name\": \"f\", \"size\": 4294967295}",
                "{\"type\": \"fixed\", \"name\": \"f\", \"size\": -1}",
                "{\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": \"long\"}}}",
                "{\"type\": \"enum\", \"name\": \"e\", \"symbols\": []}",
                "{\"type\": \"record\", \"name\": \"r\", \"fields\": [{\"name\": \"a\", \"type\": \"undefined.Name\"}]}",
                "{\"type\": \"bytes\", \"logicalType\": \"decimal\", \"precision\": 0, \"scale\": 5}",
                "[\"null\", \"null\"]",
                "{\"type\": \"map\", \"values\": \"int\"}",
                "\"string\"",
                "{\"type\":",
            ]);
            let value = *rng.pick(&[
                "1",
                "\"x\"",
                "null",
                "[[[1]]]",
                "{\"n\": {\"n\": null}}",
                "{\"a\": 1}",
                "\"\\u0000\"",
                "9223372036854775807",
            ]);
            let body = format!(
                "{{\"value_format\": \"avro\", \"value_schema\": {}, \"records\": [{{\"value\": {value}}}]}}",
                serde_json::to_string(schema).unwrap()
            );
            Case::new("avro_hostile", body, Shape)
        }
        19 => {
            let body = format!(
                "{{\"value_format\": \"avro\", \"value_schema\": {}, \"records\": [{{\"value\": 1}}]}}",
                serde_json::to_string(&nested("{\"type\": \"array\", \"items\": ", "\"long\"", "}", 5000)).unwrap()
            );
            Case::new("avro_deep_schema", body, Shape)
        }
        // Query parameters and content types.
        20 => {
            let query = *rng.pick(&[
                "?compression=brotli",
                "?compression=",
                "?compression=GZIP%00",
                "?async=1",
                "?async=yes",
                "?async=true&async=false",
                "?timeout_ms=-1",
                "?timeout_ms=abc",
                "?timeout_ms=0",
                "?timeout_ms=184467440737095516160",
                "?unknown=1",
                "?%ff=1",
            ]);
            let mut case = Case::new("bad_query", valid_text.clone(), Reject);
            case.query = query.to_string();
            case
        }
        21 => {
            let mut case = Case::new("bad_content_type", valid_text.clone(), Reject);
            case.content_type = *rng.pick(&[
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/jsonx",
                "json",
                "application/octet-stream",
            ]);
            case
        }
        // Big but valid: long strings, many headers, many records.
        22 => {
            let len = rng.range(10_000, 300_000) as usize;
            let body = json!({"key_format": "string", "records": [{"key": "k".repeat(len), "value": "v".repeat(len / 2)}]});
            Case::new("big_valid_strings", body.to_string(), Shape)
        }
        23 => {
            let headers: Vec<Value> = (0..rng.range(500, 3_000))
                .map(|i| json!({"key": format!("h{i}"), "value": "x"}))
                .collect();
            Case::new(
                "many_headers",
                json!({"records": [{"value": 1, "headers": headers}]}).to_string(),
                Shape,
            )
        }
        24 => {
            let n = rng.range(500, 3_000);
            let records: Vec<Value> = (0..n).map(|i| json!({"value": i})).collect();
            Case::new(
                "many_records",
                json!({ "records": records }).to_string(),
                Shape,
            )
        }
        // Mutations of valid bodies.
        _ => {
            let mut body = valid_text.into_bytes();
            for _ in 0..rng.range(1, 8) {
                mutate(rng, &mut body);
            }
            Case::new("mutated", body, Mutated)
        }
    }
}

/// One AFL-style mutation.
fn mutate(rng: &mut Rng, body: &mut Vec<u8>) {
    if body.is_empty() {
        body.push(b'{');
        return;
    }
    let at = rng.range(0, body.len() as u64 - 1) as usize;
    match rng.range(0, 7) {
        0 => body[at] ^= 1 << rng.range(0, 7),
        1 => body[at] = rng.next_u64() as u8,
        2 => {
            body.remove(at);
        }
        3 => body.insert(
            at,
            *rng.pick(b"{}[],:\"\\0123456789-+.eE ntfaluers\x00\xff"),
        ),
        4 => {
            let end = (at + rng.range(1, 16) as usize).min(body.len());
            let chunk: Vec<u8> = body[at..end].to_vec();
            let to = rng.range(0, body.len() as u64) as usize;
            body.splice(to..to, chunk);
        }
        5 => {
            let choices: &[&[u8]] = &[
                &b"null"[..],
                b"-1",
                b"9223372036854775808",
                b"\"\\ud800\"",
                b"{}",
                b"[]",
                b"1e999",
                b"\"partition\"",
                b"\"value_format\":\"avro\",",
            ];
            let token = choices[rng.next_u64() as usize % choices.len()];
            body.splice(at..at, token.iter().copied());
        }
        _ => {
            let end = (at + rng.range(1, 32) as usize).min(body.len());
            body.drain(at..end);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The 10,000-body run
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    sent: u64,
    bytes: u64,
    rejected_4xx: u64,
    accepted_200: u64,
    partial_200: u64,
    by_status: BTreeMap<u16, u64>,
    by_kind: BTreeMap<&'static str, (u64, u64)>,
    failures: Vec<String>,
}

fn check_answer(case: &Case, status: u16, body: &Value, tally: &mut Tally) {
    tally.sent += 1;
    tally.bytes += case.body.len() as u64;
    *tally.by_status.entry(status).or_default() += 1;
    let entry = tally.by_kind.entry(case.kind).or_default();
    entry.0 += 1;
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&case.body).is_ok();
    let expect = match case.expect {
        Expect::Mutated if !is_json => Expect::Reject,
        Expect::Mutated => Expect::Shape,
        other => other,
    };
    let mut fail = |why: String| {
        if tally.failures.len() < 20 {
            let shown =
                String::from_utf8_lossy(&case.body[..case.body.len().min(300)]).into_owned();
            tally.failures.push(format!(
                "{} (query {:?}, content-type {:?}): {why}; body starts {shown:?}",
                case.kind, case.query, case.content_type
            ));
        } else {
            tally.failures.push(String::new());
        }
    };
    if (400..500).contains(&status) {
        tally.rejected_4xx += 1;
        entry.1 += 1;
        if body["error_code"].as_str().is_none_or(str::is_empty) {
            fail(format!("{status} without an error_code: {body}"));
        }
        if body["message"].as_str().is_none_or(str::is_empty) {
            fail(format!("{status} without a message: {body}"));
        }
        return;
    }
    if expect == Expect::Reject {
        fail(format!("malformed body answered {status}: {body}"));
        return;
    }
    if status != 200 {
        fail(format!("answered {status}: {body}"));
        return;
    }
    let Some(offsets) = body["offsets"].as_array() else {
        fail(format!("200 without offsets: {body}"));
        return;
    };
    let mut partial = false;
    for entry in offsets {
        let ok = entry["offset"].as_i64().is_some_and(|o| o >= 0) && entry["error_code"].is_null();
        let failed = entry["error_code"].as_str().is_some_and(|c| !c.is_empty())
            && entry["offset"].as_i64().is_none_or(|o| o < 0);
        if failed {
            partial = true;
        } else if !ok {
            fail(format!("a record neither appended nor failed: {entry}"));
        }
    }
    if partial {
        tally.partial_200 += 1;
    } else {
        tally.accepted_200 += 1;
    }
}

fn send_case(broker: &Broker, topic: &str, case: &Case) -> (u16, Value) {
    let res = broker
        .post(&format!("/api/topics/{topic}/produce{}", case.query))
        .header("content-type", case.content_type)
        .body(case.body.clone())
        .send()
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.kind));
    status_json(res)
}

#[test]
fn ten_thousand_hostile_bodies_are_4xx_never_5xx() {
    let seed = Rng::seed_from_env();
    let count: u64 = if soak() { 100_000 } else { 10_000 };
    eprintln!("hostile bodies: seed {seed} (RILL_SEED={seed} replays), {count} bodies");
    let mut rng = Rng::new(seed);
    // flush = "os": this is a parser test, not a disk test.
    let (dir, config, data) =
        prepare_dir("[storage]\nflush = \"os\"\n[[topics]]\nname = \"t\"\npartitions = 3\n");
    let (mut broker, log) = start_logged(&[], &config, &data);
    broker.keep_dir(dir);
    let pid = broker.pid();

    let mut tally = Tally::default();
    // Warm up (allocator arenas, caches, the first big bodies) before the RSS baseline.
    let warmup = 500;
    let mut rss_before = 0;
    let mut rss_samples = Vec::new();
    let started = Instant::now();
    for i in 0..count + warmup {
        if i == warmup {
            rss_before = rss_kib(pid);
            tally = Tally::default();
        }
        let case = generate(&mut rng);
        let (status, body) = send_case(&broker, "t", &case);
        check_answer(&case, status, &body, &mut tally);
        if i >= warmup && (i - warmup) % (count / 10) == 0 {
            rss_samples.push(rss_kib(pid));
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rss_kib(pid);
    assert!(broker.is_running(), "the broker died");
    let (s, b) = status_json(broker.get("/healthz").send().unwrap());
    assert_eq!(s, 200, "{b}");

    eprintln!(
        "hostile bodies: {} sent ({} MiB) in {:.1} s; {} answered 4xx, {} 200 (all appended), {} 200 partial (per-record error_code); statuses {:?}",
        tally.sent,
        tally.bytes >> 20,
        elapsed.as_secs_f64(),
        tally.rejected_4xx,
        tally.accepted_200,
        tally.partial_200,
        tally.by_status
    );
    eprintln!("hostile bodies by kind (sent, 4xx): {:?}", tally.by_kind);
    eprintln!(
        "hostile bodies: RSS {} KiB before, {} KiB after ({:+} KiB); every {} bodies: {:?}",
        rss_before,
        rss_after,
        rss_after as i64 - rss_before as i64,
        count / 10,
        rss_samples
    );
    assert!(tally.sent >= 10_000);
    assert!(
        tally.failures.is_empty(),
        "{} of {} answers broke the rules (seed {seed}):\n{}",
        tally.failures.len(),
        tally.sent,
        tally
            .failures
            .iter()
            .filter(|f| !f.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        tally.by_status.range(500..).map(|(_, n)| n).sum::<u64>(),
        0,
        "5xx answers"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 50 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB (seed {seed})"
    );
    assert_no_panic(&log);
}

// ---------------------------------------------------------------------------------------------
// Oversized bodies and headers
// ---------------------------------------------------------------------------------------------

/// Send and receive queue lengths of the TCP socket `local` → `remote` (both on 127.0.0.1),
/// from /proc/net/tcp; `None` once the socket is gone.
fn tcp_queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let want_local = format!("0100007F:{local:04X}");
    let want_remote = format!("0100007F:{remote:04X}");
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 4 && fields[1] == want_local && fields[2] == want_remote {
            let (tx, rx) = fields[4].split_once(':')?;
            return Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ));
        }
    }
    None
}

/// What happened to an upload sent in lock-step.
struct Upload {
    /// Body bytes the server had read from its socket when it stopped reading: it read at
    /// least `consumed` and at most `consumed + STEP`.
    consumed: u64,
    /// The answer, if one came.
    answer: String,
    /// Whether the server closed the connection afterwards, how soon, and how many more bytes
    /// we could write until then (into socket buffers, or read and discarded by the server).
    closed: bool,
    closed_after: Duration,
    written_after: u64,
}

const STEP: usize = 4 * 1024;

/// Sends `head`, then body chunks (`chunk(n)` gives the bytes of the n-th) one `STEP` at a
/// time, each only once the server has read everything before it (the server's receive queue
/// and our send queue are empty). So when the server stops reading, we know to within `STEP`
/// how much of the body it took from the socket. Stops when the server stops reading (for
/// 2 s), closes, or answers; or after `max_body` bytes.
///
/// The first `fast` bytes go at full speed (lock-step is slow, and only the end matters).
fn upload_lock_step(
    url: &str,
    head: &str,
    fast: u64,
    max_body: u64,
    chunk: impl Fn(u64) -> Vec<u8>,
) -> Upload {
    let addr = url.trim_start_matches("http://");
    let server_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let local_port = stream.local_addr().unwrap().port();
    stream.set_nodelay(true).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut consumed = 0u64;
    let mut sent = 0u64;
    let mut n = 0;
    while sent < fast {
        let bytes: Vec<u8> = (0..64).flat_map(|i| chunk(n + i)).collect();
        n += 64;
        if stream.write_all(&bytes).is_err() {
            break;
        }
        sent += bytes.len() as u64;
    }
    stream.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    'outer: while sent < max_body {
        // Wait until the server has read everything sent so far.
        let since = Instant::now();
        loop {
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf) {
                Ok(0) => break 'outer,
                Ok(k) => {
                    answer.extend_from_slice(&buf[..k]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break 'outer;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break 'outer,
            }
            let ours = tcp_queues(local_port, server_port);
            let theirs = tcp_queues(server_port, local_port);
            match (ours, theirs) {
                (Some((0, _)), Some((_, 0))) => break,
                (None, _) | (_, None) => break 'outer,
                _ => {}
            }
            if since.elapsed() > Duration::from_secs(2) {
                break 'outer;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        consumed = sent;
        let bytes = chunk(n);
        n += 1;
        let mut written = 0;
        while written < bytes.len() {
            match stream.write(&bytes[written..]) {
                Ok(k) => written += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(_) => break 'outer,
            }
        }
        sent += bytes.len() as u64;
    }
    // Collect the answer, going on sending the body as a hostile client would: the server
    // must close the connection (after at most `client_disconnect_timeout_ms` of lingering),
    // not keep reading — draining — what may be an endless upload.
    let mut buf = [0u8; 4096];
    let since = Instant::now();
    let bytes = chunk(n);
    let mut written_after = 0u64;
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(k) => answer.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break true,
        }
        match stream.write(&bytes) {
            Ok(k) => written_after += k as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => break true,
        }
        if since.elapsed() > Duration::from_secs(5) {
            break false;
        }
    };
    Upload {
        consumed,
        answer: String::from_utf8_lossy(&answer).into_owned(),
        closed,
        closed_after: since.elapsed(),
        written_after,
    }
}

#[test]
fn a_1_gib_content_length_and_an_endless_chunked_body_stop_at_the_limit() {
    let limit: u64 = 64 << 20;
    let (dir, config, data) = prepare_dir("[[topics]]\nname = \"t\"\npartitions = 1\n");
    let (mut broker, log) = start_logged(&[], &config, &data);
    broker.keep_dir(dir);
    let margin = 64 * 1024;

    // 1 GiB declared: refused from the headers alone.
    let head = "POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
    let upload = upload_lock_step(&broker.url, head, 0, 1 << 30, |_| vec![b' '; STEP]);
    eprintln!(
        "1 GiB Content-Length: server read {}..{} body bytes; answer {:?}; closed {} after {} ms ({} bytes written meanwhile)",
        upload.consumed,
        upload.consumed + STEP as u64,
        upload.answer.lines().next(),
        upload.closed,
        upload.closed_after.as_millis(),
        upload.written_after,
    );
    assert!(
        upload.answer.starts_with("HTTP/1.1 413"),
        "{}",
        upload.answer
    );
    assert!(upload.closed, "connection left open after a refused body");
    assert!(upload.consumed + STEP as u64 <= limit + margin);

    // An endless chunked body: read up to the limit, then 413 and closed.
    let head = "POST /api/topics/t/produce HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let payload = format!("{:x}\r\n{}\r\n", STEP - 7, " ".repeat(STEP - 7)).into_bytes();
    assert_eq!(payload.len(), STEP);
    let started = Instant::now();
    let fast = limit - (1 << 20);
    let upload = upload_lock_step(&broker.url, head, fast, 4 * limit, |_| payload.clone());
    // Bytes of body, without the chunk framing (7 bytes per chunk).
    let body_read = |socket: u64| socket / STEP as u64 * (STEP as u64 - 7);
    eprintln!(
        "endless chunked body: server read {}..{} bytes from the socket, {}..{} of body (limit {limit} + {}..{}) in {:.1} s; answer {:?}; closed {} {} ms later ({} bytes written meanwhile)",
        upload.consumed,
        upload.consumed + STEP as u64,
        body_read(upload.consumed),
        body_read(upload.consumed + STEP as u64),
        body_read(upload.consumed) as i64 - limit as i64,
        body_read(upload.consumed + STEP as u64) as i64 - limit as i64,
        started.elapsed().as_secs_f64(),
        upload.answer.lines().next(),
        upload.closed,
        upload.closed_after.as_millis(),
        upload.written_after,
    );
    assert!(
        upload.answer.starts_with("HTTP/1.1 413"),
        "{}",
        upload.answer
    );
    assert!(
        upload.answer.contains("\"payload_too_large\""),
        "{}",
        upload.answer
    );
    assert!(
        upload.closed,
        "connection left open (draining?) after a refused body"
    );
    assert!(
        body_read(upload.consumed + STEP as u64) > limit,
        "refused before the limit: {}",
        upload.consumed
    );
    assert!(
        body_read(upload.consumed + STEP as u64) <= limit + margin,
        "read {} bytes past a limit of {limit}",
        upload.consumed
    );
    assert!(broker.is_running());
    assert_no_panic(&log);
}

/// Sends raw bytes and returns what came back (status line and all) or "" if the connection
/// was closed or reset without an answer.
fn raw_exchange(url: &str, request: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Status and JSON body of a raw HTTP/1.1 answer (status 0 if there was none).
fn parse_answer(answer: &str) -> (u16, Value) {
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

#[test]
fn a_thousand_headers_or_a_1_mib_header_line_is_431_or_closed() {
    let (dir, config, data) = prepare_dir("[[topics]]\nname = \"t\"\npartitions = 1\n");
    let (mut broker, log) = start_logged(&[], &config, &data);
    broker.keep_dir(dir);

    let mut many = String::from("GET /api/topics HTTP/1.1\r\nhost: x\r\n");
    for i in 0..1000 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let long_line = format!(
        "GET /api/topics HTTP/1.1\r\nhost: x\r\nx-long: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let long_target = format!(
        "GET /api/topics?{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let long_name = format!(
        "GET /api/topics HTTP/1.1\r\nhost: x\r\n{}: v\r\n\r\n",
        "n".repeat(1 << 20)
    );
    for (what, request) in [
        ("1,000 headers", many),
        ("a 1 MiB header value", long_line),
        ("a 1 MiB request target", long_target),
        ("a 1 MiB header name", long_name),
    ] {
        let answer = raw_exchange(&broker.url, request.as_bytes());
        eprintln!("{what}: {:?}", answer.lines().next().unwrap_or("(closed)"));
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{what}: {answer}"
        );
    }
    // The server is fine afterwards.
    let (s, _) = status_json(broker.get("/api/topics").send().unwrap());
    assert_eq!(s, 200);
    assert_no_panic(&log);
}

// ---------------------------------------------------------------------------------------------
// Topic names that try to leave the data dir
// ---------------------------------------------------------------------------------------------

type Snapshot = BTreeMap<PathBuf, (u64, Option<std::time::SystemTime>)>;

/// Every path under `root` with its size and modification time.
fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, (meta.len(), meta.modified().ok()));
        }
    }
    out
}

#[test]
fn topic_names_that_escape_the_data_dir_are_400_or_404_and_touch_nothing() {
    // outer/ holds the data dir, a sentinel file and a victim directory the names aim at.
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir_all(outer.path().join("victim")).unwrap();
    std::fs::write(outer.path().join("sentinel"), b"keep").unwrap();
    std::fs::write(outer.path().join("victim/file"), b"keep").unwrap();
    let config = outer.path().join("broker.toml");
    std::fs::write(
        &config,
        common::config_text(&data, "[[topics]]\nname = \"t\"\npartitions = 1\n"),
    )
    .unwrap();
    let (broker, log) = start_logged(&[], &config, &data);
    let marker = "rill-escape-marker";
    let tmp_before: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(marker))
        .collect();
    let outside = |snap: &Snapshot| -> Snapshot {
        snap.iter()
            .filter(|(p, _)| !p.starts_with(&data))
            .map(|(p, v)| (p.clone(), *v))
            .collect()
    };
    let before = snapshot(outer.path());
    let listing = |dir: &Path| -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        names
    };
    let data_before = listing(&data);
    // Give mtimes a chance to differ if anything were written.
    std::thread::sleep(Duration::from_millis(20));

    let long = "a".repeat(250);
    let longer = "b".repeat(10_000);
    let names: Vec<String> = vec![
        "..".into(),
        ".".into(),
        "../victim".into(),
        "../sentinel".into(),
        format!("../{marker}"),
        format!("../../../../../../../../tmp/{marker}"),
        "victim/../../sentinel".into(),
        "/etc/passwd".into(),
        format!("/tmp/{marker}"),
        "a/b".into(),
        "a\\b".into(),
        "..\\victim".into(),
        "t\0".into(),
        "\0".into(),
        "t\0/../../sentinel".into(),
        long.clone(),
        longer.clone(),
        "".into(),
        " ".into(),
        "t ".into(),
        "é".into(),
        "t\n".into(),
        "%2e%2e".into(),
        "..%2fvictim".into(),
    ];
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let mut answers = 0;
    let mut check = |what: String, status: u16, body: &Value| {
        answers += 1;
        assert!(
            status == 400 || status == 404,
            "{what}: answered {status}: {body}"
        );
        assert!(body["error_code"].is_string(), "{what}: {body}");
    };
    let produce_body = json!({"records": [{"value": 1}]});
    for name in &names {
        // Created by name in the body.
        let (s, b) = status_json(
            broker
                .post("/api/topics")
                .json(&json!({"name": name, "partitions": 1}))
                .send()
                .unwrap(),
        );
        check(format!("create {name:?}"), s, &b);
        assert_eq!(s, 400, "create {name:?}: {b}");

        // Named in the path, percent-encoded (and as is where the bytes allow it), sent raw
        // so that no client library normalizes `.` or `..` segments away.
        let mut paths = vec![encode(name)];
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
            paths.push(name.clone());
        }
        for p in paths {
            for (method, path) in [
                ("GET", format!("/api/topics/{p}")),
                ("DELETE", format!("/api/topics/{p}")),
                ("POST", format!("/api/topics/{p}/produce")),
                ("GET", format!("/api/topics/{p}/partitions/0/records")),
            ] {
                let body = if method == "POST" {
                    produce_body.to_string()
                } else {
                    String::new()
                };
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let (s, b) = parse_answer(&raw_exchange(&broker.url, request.as_bytes()));
                check(format!("{method} {path}"), s, &b);
            }
        }
    }
    // Also raw, so no client normalizes `..` segments or backslashes away.
    for raw in [
        "/api/topics/../../sentinel",
        "/api/topics/%2e%2e/produce",
        "/api/topics/%2E%2E%2F%2E%2E%2Fsentinel/produce",
        "/api/topics/t%00/produce",
        "/api/topics/..%5c..%5csentinel/produce",
        "/api/topics/%252e%252e/produce",
    ] {
        let request = format!(
            "POST {raw} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{produce_body}",
            produce_body.to_string().len()
        );
        let (s, b) = parse_answer(&raw_exchange(&broker.url, request.as_bytes()));
        check(format!("POST {raw}"), s, &b);
    }

    let after = snapshot(outer.path());
    assert_eq!(
        outside(&before),
        outside(&after),
        "files outside the data dir changed"
    );
    let data_after = listing(&data);
    assert_eq!(
        data_before, data_after,
        "the data dir gained or lost entries"
    );
    let tmp_after: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(marker))
        .collect();
    assert_eq!(
        tmp_before, tmp_after,
        "a file named after the marker appeared in /tmp"
    );
    for path in ["/etc/passwd", "/tmp"] {
        assert!(Path::new(path).exists());
    }
    let (s, b) = status_json(broker.get("/api/topics").send().unwrap());
    assert_eq!(s, 200);
    assert_eq!(b["topics"], json!([{"name": "t", "partitions": 1}]));
    eprintln!(
        "escaping topic names: {} requests, all 400/404, nothing outside the data dir touched",
        answers
    );
    assert_no_panic(&log);
}

// ---------------------------------------------------------------------------------------------
// Partitions cost open files
// ---------------------------------------------------------------------------------------------

#[test]
fn topics_that_would_exhaust_open_files_are_507_and_the_broker_keeps_serving() {
    // Found by schemathesis: each partition keeps 2 files open, so a few large topics took the
    // broker past its open-file limit, after which it could not accept connections. Run under
    // a 4096-descriptor limit so the test does not depend on the machine's.
    let (dir, config, data) = prepare_dir("[[topics]]\nname = \"t\"\npartitions = 1\n");
    let (mut broker, log) = start_logged(&["prlimit", "--nofile=4096:4096", "--"], &config, &data);
    broker.keep_dir(dir);
    let create = |name: &str, partitions: u32| {
        status_json(
            broker
                .post("/api/topics")
                .json(&json!({"name": name, "partitions": partitions}))
                .send()
                .unwrap(),
        )
    };
    let (s, b) = create("huge", 10_000);
    assert_eq!(s, 507, "{b}");
    assert_eq!(b["error_code"], "insufficient_storage");
    assert!(b["message"].as_str().unwrap().contains("open files"), "{b}");
    let (s, b) = create("big", 1000);
    assert_eq!(s, 201, "{b}");
    let (s, b) = create("bigger", 1000);
    assert_eq!(s, 507, "{b}");
    let mut created = 0;
    for i in 0..100 {
        let (s, b) = create(&format!("small-{i}"), 50);
        match s {
            201 => created += 1,
            507 => break,
            other => panic!("{other}: {b}"),
        }
    }
    eprintln!("open-file headroom: 10000 and a second 1000 partitions refused 507; then {created} topics of 50 before 507");
    // Connections and produce still work: the reserve is intact.
    let clients: Vec<_> = (0..200)
        .map(|_| TcpStream::connect(broker.url.trim_start_matches("http://")).unwrap())
        .collect();
    let (s, b) = status_json(
        broker
            .post("/api/topics/big/produce")
            .json(&json!({"records": [{"value": 1, "partition": 999}]}))
            .send()
            .unwrap(),
    );
    assert_eq!(s, 200, "{b}");
    drop(clients);
    assert!(broker.is_running());
    assert_no_panic(&log);
}
