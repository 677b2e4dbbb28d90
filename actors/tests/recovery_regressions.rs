//! Inputs the fuzzer (fuzz/fuzz_targets/segment_recovery.rs) found, replayed as tests: each
//! file under tests/data is a fuzz input (mode byte, index length / 8, index bytes, segment
//! bytes, batches fixed up to checksum when mode & 1).

use std::path::Path;

use rill_actors::log::PartitionLog;
use rill_actors::record_batch::{BATCH_HEADER_LEN, LOG_OVERHEAD};
use rill_actors::types::{FlushPolicy, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 64,
        flush: FlushPolicy::Os,
        retention_ms: None,
        retention_bytes: None,
    }
}

fn fix_up(segment: &mut [u8]) {
    let mut at = 0;
    while segment.len() - at >= BATCH_HEADER_LEN {
        let rest = &mut segment[at..];
        let declared = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let max = (rest.len() - LOG_OVERHEAD) as i32;
        let len = declared.clamp((BATCH_HEADER_LEN - LOG_OVERHEAD) as i32, max);
        rest[8..12].copy_from_slice(&len.to_be_bytes());
        rest[16] = 2;
        let total = LOG_OVERHEAD + len as usize;
        let crc = crc32c::crc32c(&rest[21..total]);
        rest[17..21].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
}

/// Writes the fuzz input's files into `dir`.
fn write_input(dir: &Path, data: &[u8]) {
    let mode = data[0];
    let index_len = (usize::from(data[1]) * 8).min(data.len() - 2);
    let index = &data[2..2 + index_len];
    let mut segment = data[2 + index_len..].to_vec();
    if mode & 1 == 1 {
        fix_up(&mut segment);
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{:020}.log", 0)), &segment).unwrap();
    if mode & 2 == 2 {
        std::fs::write(dir.join(format!("{:020}.index", 0)), index).unwrap();
    }
}

#[test]
fn reopening_a_recovered_log_finds_the_same_log() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/recovery-not-idempotent.bin"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    write_input(&dir, &data);
    let first = {
        let log = PartitionLog::open(&dir, config()).unwrap();
        (log.start_offset(), log.end_offset(), log.size_bytes())
    };
    let second = {
        let log = PartitionLog::open(&dir, config()).unwrap();
        (log.start_offset(), log.end_offset(), log.size_bytes())
    };
    assert_eq!(first, second, "recovery is not idempotent");
    // The index's last entry (offset 15) points at an invalid batch, and so do entries
    // before it: the log is the valid prefix a full scan finds.
    assert_eq!(first, (0, 6, 249));
}
