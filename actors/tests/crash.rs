//! SIGKILL while concurrent appenders run with `flush = "always"`: every batch the process
//! acknowledged must be in the log after recovery, at the offsets it was acknowledged with,
//! with its bytes intact. The appending process is the real `rill-append-bench` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::read_all;
use rill_actors::log::PartitionLog;
use rill_actors::types::LogConfig;

struct Ack {
    base: i64,
    last: i64,
    tag: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some(Ack {
        base: parts.next()?.parse().ok()?,
        last: parts.next()?.parse().ok()?,
        tag: parts.next()?.parse().ok()?,
    })
}

#[test]
fn every_acknowledged_batch_survives_sigkill_of_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("crash-0");
    let rounds = std::env::var("RILL_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5u32);
    let mut total_acked = 0usize;
    for round in 0..rounds {
        let batch_records = [1, 7, 50, 200][round as usize % 4];
        let kill_after = 20 + (round as usize * 37) % 150;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rill-append-bench"))
            .args(["--dir", log_dir.to_str().unwrap(), "--appenders", "8"])
            .args(["--batch-records", &batch_records.to_string()])
            .args(["--record-bytes", "64", "--seconds", "120", "--print-acks"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("bench binary starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acks = Vec::new();
        let started = Instant::now();
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(ack) = parse_ack(&line) {
                acks.push(ack);
            }
            if acks.len() >= kill_after || started.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(
            acks.len() >= kill_after,
            "round {round}: only {} acks",
            acks.len()
        );

        let mut log = PartitionLog::open(&log_dir, LogConfig::default()).unwrap();
        let records = read_all(&mut log, 0);
        assert_eq!(
            records.len() as i64,
            log.end_offset(),
            "no gaps, no duplicates"
        );
        for ack in &acks {
            for (i, offset) in (ack.base..=ack.last).enumerate() {
                let record = records
                    .get(offset as usize)
                    .unwrap_or_else(|| panic!("round {round}: acked offset {offset} lost"));
                let want = format!("{}:{i}:", ack.tag);
                assert!(
                    record
                        .value
                        .as_deref()
                        .is_some_and(|v| v.starts_with(want.as_bytes())),
                    "round {round}: offset {offset} holds the wrong record"
                );
            }
        }
        total_acked += acks.len();
    }
    assert!(total_acked > 0);
}
