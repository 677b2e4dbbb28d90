//! Preallocated segment space (`[storage] preallocate_bytes`): flushes reserve space ahead of
//! the active segment's end, files at rest end at their last batch, and a stop that left the
//! reserve behind (a crash) loses nothing and serves no zeros.

mod common;

use std::os::unix::fs::FileExt;

use common::{batch, read_all, segment_files, small_config};
use rill_actors::compression::Compression;
use rill_actors::log::PartitionLog;

const STEP: u64 = 4096;

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// A log with preallocation on, `batches` appended (3 records of 40 bytes each) and flushed.
fn flushed_log(dir: &std::path::Path, segment_bytes: u64, batches: u64) -> PartitionLog {
    let mut log = PartitionLog::open(dir, small_config(segment_bytes)).unwrap();
    log.set_preallocation(STEP);
    for tag in 0..batches {
        log.append(&mut batch(tag, 3, 40, Compression::None))
            .unwrap();
        log.take_unsynced().unwrap().sync().unwrap();
    }
    log
}

#[test]
fn a_flush_keeps_one_to_two_steps_reserved_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let log = flushed_log(&path, 1 << 20, 40);
    let end = log.size_bytes();
    let on_disk = file_len(&segment_files(&path)[0]);
    assert!(end > STEP, "enough appended to cross a step: {end}");
    assert_eq!(on_disk % STEP, 0, "whole steps: {on_disk}");
    assert!(
        on_disk >= end + STEP && on_disk <= end + 2 * STEP,
        "{on_disk} bytes on disk for {end} bytes of batches"
    );
}

#[test]
fn preallocation_stops_at_the_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    // 6 KiB segments: the reserve would reach 8 KiB but must stop at 6.
    let _log = flushed_log(&path, 6 * 1024, 10);
    for file in segment_files(&path) {
        assert!(file_len(&file) <= 6 * 1024, "{}", file.display());
    }
}

#[test]
fn a_roll_and_a_shutdown_flush_cut_the_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = flushed_log(&path, 16 * 1024, 200);
    let files = segment_files(&path);
    assert!(files.len() > 2, "rolled: {files:?}");
    let active = files.last().unwrap();
    assert!(file_len(active) > 0);
    // Every sealed segment ends at its last batch, as Kafka's tools expect.
    for sealed in &files[..files.len() - 1] {
        let bytes = std::fs::read(sealed).unwrap();
        assert!(
            bytes.len() < 16 * 1024 && !bytes.ends_with(&[0; 16]),
            "{} ends in reserved space",
            sealed.display()
        );
    }
    let in_active = log.size_bytes()
        - files[..files.len() - 1]
            .iter()
            .map(|f| file_len(f))
            .sum::<u64>();
    assert!(
        file_len(active) > in_active,
        "the active segment has a reserve"
    );

    log.take_everything().unwrap().sync().unwrap();
    assert_eq!(file_len(active), in_active, "the shutdown flush cut it");
    drop(log);
    let mut reopened = PartitionLog::open(&path, small_config(16 * 1024)).unwrap();
    assert_eq!(reopened.end_offset(), 600);
    assert_eq!(read_all(&mut reopened, 0).len(), 600);
}

#[test]
fn a_crash_with_space_reserved_keeps_every_batch_and_serves_no_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let log = flushed_log(&path, 1 << 20, 30);
    let end = log.size_bytes();
    let segment = segment_files(&path)[0].clone();
    // Dropped without a shutdown flush: the reserve stays, as after SIGKILL.
    drop(log);
    assert!(file_len(&segment) > end);

    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    assert_eq!(log.end_offset(), 90);
    assert_eq!(log.size_bytes(), end);
    assert_eq!(file_len(&segment), end, "the zeros were released");
    let records = read_all(&mut log, 0);
    assert_eq!(records.len(), 90);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
    let ack = log
        .append(&mut batch(1000, 2, 40, Compression::None))
        .unwrap();
    assert_eq!(ack.base_offset, 90);
}

#[test]
fn a_batch_torn_inside_the_reserve_is_cut_and_the_batches_before_it_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let log = flushed_log(&path, 1 << 20, 30);
    let end = log.size_bytes();
    drop(log);
    let segment = segment_files(&path)[0].clone();
    let reserved = file_len(&segment);
    // Half of a next batch landed in the reserved zeros before the crash.
    let next = batch(77, 3, 40, Compression::None);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&next[..next.len() / 2], end).unwrap();
    assert_eq!(file_len(&segment), reserved, "written inside the reserve");

    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    assert_eq!(log.end_offset(), 90);
    assert_eq!(file_len(&segment), end);
    assert_eq!(read_all(&mut log, 0).len(), 90);
}

#[test]
fn step_zero_never_reserves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    log.set_preallocation(0);
    for tag in 0..40 {
        log.append(&mut batch(tag, 3, 40, Compression::None))
            .unwrap();
        log.take_unsynced().unwrap().sync().unwrap();
    }
    assert_eq!(file_len(&segment_files(&path)[0]), log.size_bytes());
}

#[test]
fn a_sealed_segment_left_with_reserved_zeros_keeps_the_segments_after_it() {
    // A roll whose cut failed (or a crash before the cut reached the disk) leaves zeros after a
    // sealed segment's last batch: they are cut at start and nothing after them is dropped.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = flushed_log(&path, 16 * 1024, 200);
    log.take_everything().unwrap().sync().unwrap();
    drop(log);
    let files = segment_files(&path);
    assert!(files.len() > 2);
    let sealed = &files[1];
    let exact = file_len(sealed);
    std::fs::OpenOptions::new()
        .write(true)
        .open(sealed)
        .unwrap()
        .set_len(exact + 3 * STEP)
        .unwrap();

    let mut log = PartitionLog::open(&path, small_config(16 * 1024)).unwrap();
    assert_eq!(log.segment_count(), files.len(), "no segment dropped");
    assert_eq!(log.end_offset(), 600);
    assert_eq!(file_len(sealed), exact, "the zeros were cut");
    let records = read_all(&mut log, 0);
    assert_eq!(records.len(), 600);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
}
