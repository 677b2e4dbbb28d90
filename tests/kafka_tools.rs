//! Kafka's own tools read rill's segment files: `kafka.tools.DumpLogSegments`, from the Apache
//! Kafka jars scripts/test fetches, checks every batch's CRC and prints its header and records.
//! The strongest proof that what rill stores is Kafka's RecordBatch v2, byte for byte —
//! compressed batches, idempotent requests' marked batches and the control batches carrying
//! their journal entries included (docs/FORMAT.md).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{spawn_broker, status_json, test_kafka_libs};
use serde_json::json;

#[test]
fn kafka_dump_log_segments_reads_every_batch_rill_writes() {
    let mut broker = spawn_broker("[[topics]]\nname = \"audit\"\npartitions = 1\n");
    let produce = |query: &str, key: Option<&str>, body: serde_json::Value| {
        let mut req = broker.post(&format!("/api/topics/audit/produce{query}"));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let (status, answer) = status_json(req.json(&body).send().unwrap());
        assert_eq!(status, 200, "{answer}");
    };
    produce("", None, json!({"records": [{"value": "plain"}]}));
    produce(
        "",
        Some("k-1"),
        json!({"records": [{"key": "x", "value": "kept-1"}, {"value": "kept-2"}]}),
    );
    produce(
        "?compression=lz4",
        None,
        json!({"records": [{"value": "squeezed"}]}),
    );
    produce(
        "?compression=zstd",
        Some("k-2"),
        json!({"records": [{"value": "both"}]}),
    );
    assert!(broker.terminate(Duration::from_secs(10)).success());

    let segment = broker
        .data_dir
        .join("audit-0")
        .join(format!("{:020}.log", 0));
    let out = Command::new("java")
        .arg("-cp")
        .arg(test_kafka_libs().join("*"))
        .args([
            "kafka.tools.DumpLogSegments",
            "--deep-iteration",
            "--print-data-log",
            "--files",
        ])
        .arg(&segment)
        .output()
        .expect("java runs (scripts/test needs it for Kafka)");
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{dump}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("baseOffset:"))
        .collect();
    assert_eq!(batches.len(), 6, "{dump}");
    assert!(
        batches.iter().all(|b| b.contains("isvalid: true")),
        "{dump}"
    );

    let field = |line: &str, name: &str| -> String {
        let at = line.find(&format!(" {name}: ")).map(|i| i + name.len() + 3);
        let rest = &line[at.unwrap_or_else(|| panic!("{name} in {line}"))..];
        rest.split(' ').next().unwrap().to_string()
    };
    let summary: Vec<(String, String, String, String, String)> = batches
        .iter()
        .map(|b| {
            (
                field(b, "lastOffset"),
                field(b, "producerEpoch"),
                field(b, "isControl"),
                field(b, "compresscodec"),
                field(b, "baseSequence"),
            )
        })
        .collect();
    let row = |last: &str, epoch: &str, control: &str, codec: &str, seq: &str| {
        (
            last.to_string(),
            epoch.to_string(),
            control.to_string(),
            codec.to_string(),
            seq.to_string(),
        )
    };
    assert_eq!(
        summary,
        vec![
            row("0", "-1", "false", "none", "-1"),
            row("2", "0", "false", "none", "0"),
            row("3", "0", "true", "none", "-1"),
            row("4", "-1", "false", "lz4", "-1"),
            row("5", "0", "false", "zstd", "0"),
            row("6", "0", "true", "none", "-1"),
        ],
        "{dump}"
    );
    // A marked batch and its carrier share the producer id.
    assert_eq!(
        field(batches[1], "producerId"),
        field(batches[2], "producerId")
    );
    assert_ne!(field(batches[1], "producerId"), "-1");
    assert!(batches[2].contains("isTransactional: true"), "{dump}");
    assert_eq!(
        dump.matches("controlType: UNKNOWN(29289)").count(),
        2,
        "{dump}"
    );
    for value in ["plain", "kept-1", "kept-2", "squeezed", "both"] {
        assert!(
            dump.contains(&format!("payload: \"{value}\"")),
            "{value} in {dump}"
        );
    }
}
