//! Crash and corruption scenarios for a partition log, each named after what it proves. The
//! files are real segment files in a temporary directory, damaged the way crashes and bit rot
//! damage them.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::{batch, read_all, segment_files, small_config};
use rill_actors::compression::Compression;
use rill_actors::error::LogError;
use rill_actors::log::PartitionLog;
use rill_actors::naming;

#[test]
fn torn_tail_at_every_byte_of_the_last_batch_keeps_every_complete_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..20 {
        log.append(&mut batch(tag, 3, 40, Compression::None))
            .unwrap();
    }
    let before_last = log.size_bytes();
    log.append(&mut batch(99, 5, 40, Compression::None))
        .unwrap();
    let full = log.size_bytes();
    drop(log);
    let segment = naming::segment_file(&path, 0);
    let pristine = std::fs::read(&segment).unwrap();

    for cut in before_last..full {
        std::fs::write(&segment, &pristine[..cut as usize]).unwrap();
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.end_offset(), 60, "cut at {cut}: next offset");
        assert_eq!(log.size_bytes(), before_last, "cut at {cut}: tail cut off");
        let records = read_all(&mut log, 0);
        assert_eq!(records.len(), 60, "cut at {cut}");
        assert!(records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64));
        // The log takes appends at the right offset after recovery.
        let ack = log.append(&mut batch(7, 1, 10, Compression::None)).unwrap();
        assert_eq!(ack.base_offset, 60);
    }
}

#[test]
fn garbage_tail_and_zeroed_tail_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..10 {
        log.append(&mut batch(tag, 2, 30, Compression::Lz4))
            .unwrap();
    }
    let valid = log.size_bytes();
    drop(log);
    let segment = naming::segment_file(&path, 0);
    for tail in [
        vec![0u8; 4096],
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let file = OpenOptions::new().write(true).open(&segment).unwrap();
        file.set_len(valid).unwrap();
        file.write_all_at(&tail, valid).unwrap();
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.size_bytes(), valid);
        assert_eq!(log.end_offset(), 20);
        assert_eq!(read_all(&mut log, 0).len(), 20);
    }
}

#[test]
fn deleted_index_is_rebuilt_and_every_offset_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(8 * 1024);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..200 {
        log.append(&mut batch(tag, 2, 50, Compression::None))
            .unwrap();
    }
    assert!(log.segment_count() > 3, "the test needs several segments");
    drop(log);
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(log.end_offset(), 400);
    for offset in 0..400 {
        let bytes = log.read(offset, 1).unwrap();
        let (header, _) = rill_actors::record_batch::batches(&bytes)
            .next()
            .unwrap()
            .unwrap();
        assert!(header.base_offset <= offset && offset <= header.last_offset());
    }
}

#[test]
fn garbage_index_is_rebuilt_and_every_offset_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..300 {
        log.append(&mut batch(tag, 1, 60, Compression::None))
            .unwrap();
    }
    drop(log);
    let index = naming::index_file(&path, 0);
    assert!(
        std::fs::metadata(&index).unwrap().len() > 16,
        "index has entries"
    );
    for garbage in [vec![0xffu8; 64], vec![0u8; 64], vec![1, 2, 3]] {
        std::fs::write(&index, &garbage).unwrap();
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.end_offset(), 300);
        let records = read_all(&mut log, 0);
        assert_eq!(records.len(), 300);
        for offset in [0, 1, 150, 299] {
            let bytes = log.read(offset, 1).unwrap();
            let records = rill_actors::record_batch::decode_batch(&bytes).unwrap();
            assert_eq!(records[0].offset, offset);
        }
    }
}

#[test]
fn single_bit_flips_in_a_sealed_segment_are_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(2048);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..40 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    drop(log);
    let sealed = segment_files(&path)[0].clone();
    let pristine = std::fs::read(&sealed).unwrap();
    // Every bit of the first batch, including the base offset and leader epoch that the CRC
    // does not cover (reads check offset continuity and rill's fixed epoch for those).
    let first_len = rill_actors::record_batch::BatchHeader::parse(&pristine)
        .unwrap()
        .total_len();
    for byte in 0..first_len {
        for bit in 0..8 {
            let mut damaged = pristine.clone();
            damaged[byte] ^= 1 << bit;
            std::fs::write(&sealed, &damaged).unwrap();
            let mut log = PartitionLog::open(&path, config.clone()).unwrap();
            match log.read(0, 1 << 20) {
                Err(LogError::Corrupt { .. }) => {}
                Ok(bytes) => panic!("flip at byte {byte} bit {bit} served {} bytes", bytes.len()),
                Err(other) => panic!("flip at byte {byte} bit {bit}: unexpected {other}"),
            }
        }
    }
    std::fs::write(&sealed, &pristine).unwrap();
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(read_all(&mut log, 0).len(), 80);
}

#[test]
fn torn_sealed_segment_drops_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(2048);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..40 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    drop(log);
    let files = segment_files(&path);
    assert!(files.len() >= 3);
    let second = &files[1];
    let len = std::fs::metadata(second).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(second)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(log.segment_count(), 2);
    let records = read_all(&mut log, 0);
    assert_eq!(records.len() as i64, log.end_offset());
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
}

#[test]
fn retention_deletes_whole_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut config = small_config(2048);
    config.retention_bytes = Some(4096);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..60 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    let deleted = log.apply_retention(i64::MAX / 2).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 4096 + 2048);
    assert!(log.start_offset() > 0);
    assert!(matches!(
        log.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let start = log.start_offset();
    assert_eq!(
        read_all(&mut log, start).len() as i64,
        log.end_offset() - start
    );

    config.retention_bytes = None;
    config.retention_ms = Some(1000);
    log.set_config(config);
    // Record timestamps are ~1.7e12 ms: "now" far later expires every sealed segment.
    log.apply_retention(1_900_000_000_000).unwrap();
    assert_eq!(log.segment_count(), 1, "the active segment survives");
    assert_eq!(log.end_offset(), 120);
}
