//! SIGKILL after sync acknowledgements, then restart: every acknowledged record is at its
//! offset with its value. And SIGTERM: in-flight requests answered, exit 0, restart clean.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::spawn_broker;
use serde_json::{json, Value};

#[test]
fn every_acknowledged_record_survives_sigkill_and_restart() {
    let broker = spawn_broker("[[topics]]\nname = \"d\"\npartitions = 3\n");
    let url = broker.url.clone();
    // Concurrent producers; each remembers what it was acknowledged.
    let acked: Vec<(u64, i64, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|producer| {
                let url = url.clone();
                scope.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    let mut acked = Vec::new();
                    for round in 0..25 {
                        let values: Vec<String> =
                            (0..20).map(|i| format!("p{producer}-r{round}-{i}")).collect();
                        let records: Vec<Value> = values
                            .iter()
                            .map(|v| json!({"key": v, "value": v}))
                            .collect();
                        let res = client
                            .post(format!("{url}/api/topics/d/produce"))
                            .json(&json!({"key_format": "string", "value_format": "string", "records": records}))
                            .send()
                            .unwrap();
                        assert_eq!(res.status().as_u16(), 200);
                        let answer: Value = res.json().unwrap();
                        for (v, entry) in values.iter().zip(answer["offsets"].as_array().unwrap()) {
                            acked.push((
                                entry["partition"].as_u64().unwrap(),
                                entry["offset"].as_i64().unwrap(),
                                v.clone(),
                            ));
                        }
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut broker = broker;
    broker.kill();
    let broker = broker.restart();

    let mut stored: HashMap<(u64, i64), String> = HashMap::new();
    for partition in 0..3u32 {
        let (s, read) = broker.read(
            "d",
            partition,
            "?limit=10000&key_format=string&value_format=string",
        );
        assert_eq!(s, 200);
        for r in read["records"].as_array().unwrap() {
            stored.insert(
                (u64::from(partition), r["offset"].as_i64().unwrap()),
                r["value"].as_str().unwrap().to_string(),
            );
        }
    }
    assert_eq!(acked.len(), 4 * 25 * 20);
    for (partition, offset, value) in &acked {
        assert_eq!(
            stored.get(&(*partition, *offset)),
            Some(value),
            "acked record {partition}/{offset} lost or changed"
        );
    }
}

#[test]
fn sigterm_finishes_cleanly_and_restart_serves_everything() {
    let mut broker = spawn_broker("[[topics]]\nname = \"s\"\npartitions = 1\n");
    let (s, b) = broker.produce("s", "", &json!({"records": [{"value": 1}, {"value": 2}]}));
    assert_eq!(s, 200, "{b}");
    let status = broker.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let broker = broker.restart();
    let (_, read) = broker.read("s", 0, "");
    assert_eq!(read["records"].as_array().unwrap().len(), 2);
    let (s, b) = broker.produce("s", "", &json!({"records": [{"value": 3}]}));
    assert_eq!(s, 200);
    assert_eq!(b["offsets"][0]["offset"], 2);
}
