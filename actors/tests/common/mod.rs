//! Helpers shared by the log's integration tests: building batches and reading a whole log
//! back as records.
#![allow(dead_code)]

use std::path::Path;

use rill_actors::compression::Compression;
use rill_actors::idempotency::{DigestKind, IdempotencyTag};
use rill_actors::log::PartitionLog;
use rill_actors::record_batch::{self, BatchBuilder, Record};
use rill_actors::types::{FlushPolicy, LogConfig};

/// A log config small enough that tests roll and index often.
pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        flush: FlushPolicy::Always,
        retention_ms: None,
        retention_bytes: None,
    }
}

/// One batch of `count` records whose values encode `(tag, i)` so every record is unique.
pub fn batch(tag: u64, count: usize, value_len: usize, compression: Compression) -> Vec<u8> {
    build(tag, count, value_len, BatchBuilder::new(compression))
}

/// A sync request's idempotency tag, distinct per `n`.
pub fn idempotency_tag(n: u8) -> IdempotencyTag {
    IdempotencyTag {
        key_hash: [n; 16],
        body_digest: [n; 16],
        digest_kind: DigestKind::Xxh3,
        request_id: [0; 16],
        created_ms: 1_700_000_000_000,
    }
}

/// [`batch`] marked as an idempotent request's (the log refuses a tagged batch without it).
#[allow(dead_code)] // not every test binary appends idempotent batches
pub fn idempotent_batch(tag: u64, count: usize, value_len: usize, producer_id: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.set_idempotent_producer(producer_id);
    build(tag, count, value_len, builder)
}

fn build(tag: u64, count: usize, value_len: usize, mut builder: BatchBuilder) -> Vec<u8> {
    for i in 0..count {
        let key = format!("k{tag}-{i}");
        let value = record_value(tag, i, value_len);
        builder.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    builder.finish().expect("batch encodes").bytes
}

pub fn record_value(tag: u64, i: usize, value_len: usize) -> Vec<u8> {
    let mut value = format!("v{tag}-{i}:").into_bytes();
    value.resize(value_len.max(value.len()), b'x');
    value
}

/// Every record from `from` to the end of the log, decoded and CRC-checked. Control batches
/// (idempotency entries' carriers) are checked too but hold no records, as for a consumer.
pub fn read_all(log: &mut PartitionLog, from: i64) -> Vec<Record> {
    let mut records = Vec::new();
    let mut offset = from;
    loop {
        let bytes = log.read(offset, 64 * 1024).expect("read succeeds");
        if bytes.is_empty() {
            return records;
        }
        let mut next = offset;
        for batch in record_batch::batches(&bytes) {
            let (header, batch) = batch.expect("whole batch");
            let decoded = record_batch::decode_batch(batch).expect("batch decodes");
            next = next.max(header.last_offset() + 1);
            if header.is_control() {
                continue;
            }
            records.extend(decoded.into_iter().filter(|r| r.offset >= offset));
        }
        offset = next;
    }
}

pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}
