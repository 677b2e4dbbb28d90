//! The idempotency journal across crashes. An idempotent request's batch carries a producerId
//! and is followed in the log by a control batch carrying its journal entry; the journal file
//! is only written by flushes (fsynced at marks), so a crash can leave it behind the log. At
//! start the entries it lacks are read from their carriers, and a marked batch whose carrier
//! is missing (a torn write: never acknowledged) is cut with everything after it. These tests
//! write real logs, drop them as a crash would, take away what the disk might not have kept,
//! and open them again.

mod common;

use common::{batch, idempotency_tag as tag, idempotent_batch, read_all, small_config};
use rill_actors::compression::Compression;
use rill_actors::error::LogError;
use rill_actors::idempotency::{IdempotencyTag, JournalEntry, ENTRY_BYTES};
use rill_actors::log::{PartitionLog, MARK_INTERVAL_BYTES};
use rill_actors::naming;
use rill_actors::record_batch;

fn append_idempotent(log: &mut PartitionLog, n: u8, count: usize) {
    let t = tag(n);
    log.append_tagged(
        &mut idempotent_batch(n.into(), count, 40, t.producer_id()),
        Some(&t),
    )
    .unwrap();
}

fn journal_entries(path: &std::path::Path) -> u64 {
    std::fs::metadata(naming::idempotency_journal_file(path))
        .unwrap()
        .len()
        / ENTRY_BYTES as u64
}

/// Cuts the journal to its first `entries` entries: what the disk kept of it.
fn lose_journal_tail(path: &std::path::Path, entries: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(naming::idempotency_journal_file(path))
        .unwrap();
    file.set_len(entries * ENTRY_BYTES as u64).unwrap();
}

fn reopen(path: &std::path::Path) -> (PartitionLog, Vec<JournalEntry>) {
    let mut log = PartitionLog::open(path, small_config(1 << 20)).unwrap();
    let entries = log.load_idempotency(0).unwrap();
    (log, entries)
}

/// A new empty log (segments of `segment_bytes`) in a temporary directory, its journal loaded.
fn fresh_log(segment_bytes: u64) -> (tempfile::TempDir, std::path::PathBuf, PartitionLog) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(segment_bytes)).unwrap();
    log.load_idempotency(0).unwrap();
    (dir, path, log)
}

/// Each entry's tag and base offset.
fn tags_at(entries: &[JournalEntry]) -> Vec<(IdempotencyTag, i64)> {
    entries.iter().map(|e| (e.tag, e.base_offset)).collect()
}

fn single_segment(path: &std::path::Path) -> std::path::PathBuf {
    let segments = common::segment_files(path);
    assert_eq!(segments.len(), 1);
    segments[0].clone()
}

#[test]
fn a_carrier_takes_one_offset_after_its_batch_and_holds_the_entry() {
    let (_dir, _, mut log) = fresh_log(1 << 20);
    append_idempotent(&mut log, 1, 3); // 0..3, carrier at 3
    log.append(&mut batch(2, 2, 40, Compression::None)).unwrap(); // 4..6
    assert_eq!(log.end_offset(), 6);

    let bytes = log.read(0, 1 << 20).unwrap();
    let headers: Vec<_> = record_batch::batches(&bytes)
        .map(|b| b.unwrap())
        .map(|(h, bytes)| {
            (
                h.base_offset,
                h.is_control(),
                JournalEntry::from_carrier(bytes),
            )
        })
        .collect();
    assert_eq!(headers.len(), 3);
    assert_eq!((headers[0].0, headers[0].1), (0, false));
    let (offset, control, carried) = headers[1];
    assert_eq!((offset, control), (3, true));
    let carried = carried.expect("the carrier holds an entry");
    assert_eq!(
        (carried.tag, carried.base_offset, carried.record_count),
        (tag(1), 0, 3)
    );
    assert_eq!((headers[2].0, headers[2].1), (4, false));

    // Consumers see the records only.
    let offsets: Vec<i64> = read_all(&mut log, 0).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 4, 5]);
}

#[test]
fn entries_the_journal_file_lost_are_read_back_from_their_carriers() {
    let (_dir, path, mut log) = fresh_log(1 << 20);
    log.append(&mut batch(1, 3, 40, Compression::None)).unwrap(); // 0..3
    append_idempotent(&mut log, 2, 3); // 3..6, carrier 6
    log.take_unsynced().unwrap().sync().unwrap();
    append_idempotent(&mut log, 3, 3); // 7..10, carrier 10
    log.append(&mut batch(4, 3, 40, Compression::None)).unwrap(); // 11..14
    log.take_unsynced().unwrap().sync().unwrap();
    // A crash: the file holds only its opening mark (entries wait for a mark, 1,024 of them,
    // or a clean shutdown).
    drop(log);
    assert_eq!(journal_entries(&path), 1);

    let (mut log, entries) = reopen(&path);
    assert_eq!(log.end_offset(), 14, "nothing cut");
    let found = tags_at(&entries);
    assert_eq!(found, vec![(tag(2), 3), (tag(3), 7)]);
    assert_eq!(read_all(&mut log, 0).len(), 12);
    assert_eq!(journal_entries(&path), 3, "written back into the file");
    drop(log);

    // A second start finds them in the file.
    let (log, entries) = reopen(&path);
    assert_eq!((log.end_offset(), entries.len()), (14, 2));
}

#[test]
fn a_journal_file_with_a_hole_is_read_to_the_hole_and_the_rest_comes_from_the_log() {
    // The kernel wrote a later page of the journal back but not an earlier one.
    let (_dir, path, mut log) = fresh_log(1 << 20);
    for n in 0..30u8 {
        append_idempotent(&mut log, n, 1);
    }
    log.take_everything().unwrap().sync().unwrap();
    drop(log);
    let journal = naming::idempotency_journal_file(&path);
    let mut bytes = std::fs::read(&journal).unwrap();
    // Entry 10 (after the opening mark) never reached the disk.
    bytes[11 * ENTRY_BYTES..12 * ENTRY_BYTES].fill(0);
    std::fs::write(&journal, &bytes).unwrap();

    let (log, entries) = reopen(&path);
    assert_eq!(log.end_offset(), 60);
    let found = tags_at(&entries);
    let expected: Vec<_> = (0..30u8).map(|n| (tag(n), 2 * i64::from(n))).collect();
    assert_eq!(found, expected);
}

#[test]
fn a_marked_batch_whose_carrier_was_torn_off_is_cut() {
    let (_dir, path, mut log) = fresh_log(1 << 20);
    log.append(&mut batch(1, 3, 40, Compression::None)).unwrap(); // 0..3
    append_idempotent(&mut log, 2, 3); // 3..6, carrier 6
    let log_bytes = log.size_bytes();
    let bytes = log.read(3, 1 << 20).unwrap();
    let batch_len = record_batch::BatchHeader::parse(&bytes)
        .unwrap()
        .total_len() as u64;
    let carrier_len = bytes.len() as u64 - batch_len;
    drop(log);
    lose_journal_tail(&path, 1);
    // The disk kept the batch and part of its carrier: a torn write, never acknowledged.
    let segment = single_segment(&path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(log_bytes - carrier_len / 2).unwrap();
    drop(file);

    let (mut log, entries) = reopen(&path);
    assert!(entries.is_empty());
    assert_eq!(log.end_offset(), 3, "cut at the batch without its carrier");
    assert_eq!(read_all(&mut log, 0).len(), 3);
    // The log goes on from the cut, and a second start finds nothing more to cut.
    append_idempotent(&mut log, 5, 2); // 3..5, carrier 5
    log.take_everything().unwrap().sync().unwrap();
    drop(log);
    let (log, entries) = reopen(&path);
    assert_eq!((log.end_offset(), entries.len()), (6, 1));
}

#[test]
fn carried_entries_are_read_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = || small_config(512);
    let mut log = PartitionLog::open(&path, config()).unwrap();
    log.load_idempotency(0).unwrap();
    // Every third batch is idempotent (2 records and a carrier).
    for n in 0..12u8 {
        if n % 3 == 0 {
            append_idempotent(&mut log, n, 2);
        } else {
            log.append(&mut batch(n.into(), 2, 40, Compression::None))
                .unwrap();
        }
    }
    let segments = log.segment_count();
    assert!(segments > 3, "{segments} segments");
    let end = log.end_offset();
    assert_eq!(end, 28);
    log.take_unsynced().unwrap().sync().unwrap();
    drop(log);

    let mut log = PartitionLog::open(&path, config()).unwrap();
    assert_eq!(log.load_idempotency(0).unwrap().len(), 4);
    drop(log);
    // Only the opening mark kept: all four come from the log, in every segment.
    lose_journal_tail(&path, 1);
    let mut log = PartitionLog::open(&path, config()).unwrap();
    let entries = log.load_idempotency(0).unwrap();
    let bases: Vec<i64> = entries.iter().map(|e| e.base_offset).collect();
    assert_eq!(bases, vec![0, 7, 14, 21]);
    assert_eq!((log.end_offset(), log.segment_count()), (end, segments));
    assert_eq!(read_all(&mut log, 0).len(), 24);
}

#[test]
fn the_log_takes_a_producer_id_exactly_on_idempotent_batches() {
    let (_dir, path, mut log) = fresh_log(1 << 20);
    let marked_untagged = log.append(&mut idempotent_batch(1, 2, 40, 7));
    assert!(
        matches!(marked_untagged, Err(LogError::InvalidBatch(_))),
        "{marked_untagged:?}"
    );
    let unmarked_tagged = log.append_tagged(&mut batch(2, 2, 40, Compression::None), Some(&tag(2)));
    assert!(
        matches!(unmarked_tagged, Err(LogError::InvalidBatch(_))),
        "{unmarked_tagged:?}"
    );
    assert_eq!(log.end_offset(), 0, "neither was written");
    assert!(
        !naming::idempotency_journal_file(&path).exists(),
        "no entry was written for the refused batch"
    );
}

#[test]
fn a_mark_after_every_interval_is_the_only_flush_that_writes_and_fsyncs_the_journal() {
    let (_dir, path, mut log) = fresh_log(256 << 20);
    let mut appended = 0;
    let mut with_journal = Vec::new();
    let mut flushes = 0;
    // Idempotent batches of about 256 KiB, each flushed, until past one mark interval.
    let mut n = 0u8;
    while appended <= MARK_INTERVAL_BYTES {
        let t = tag(n);
        let mut big = idempotent_batch(n.into(), 64, 4096, t.producer_id());
        appended += big.len() as u64;
        log.append_tagged(&mut big, Some(&t)).unwrap();
        let targets = log.take_unsynced().unwrap();
        if targets.journal.is_some() {
            with_journal.push(flushes);
        }
        flushes += 1;
        targets.sync().unwrap();
        n = n.wrapping_add(1);
    }
    assert_eq!(
        with_journal,
        vec![flushes - 1],
        "only the last of {flushes}"
    );
    let end = log.end_offset();
    drop(log);
    // The opening mark, an entry per batch, and the interval's mark at the log end.
    assert_eq!(journal_entries(&path), flushes + 2);
    let bytes = std::fs::read(naming::idempotency_journal_file(&path)).unwrap();
    let mark = JournalEntry::decode(&bytes[bytes.len() - ENTRY_BYTES..]).unwrap();
    assert!(mark.is_mark());
    assert_eq!(mark.base_offset, end);
}

#[test]
fn batches_appended_after_the_last_flush_keep_their_entries_through_their_carriers() {
    // Entries are written by the flush; a process killed before it leaves the batches and
    // their carriers in the page cache, and the entries are read back from them.
    let (_dir, path, mut log) = fresh_log(1 << 20);
    append_idempotent(&mut log, 1, 2); // 0..2, carrier 2
    log.take_unsynced().unwrap().sync().unwrap();
    log.append(&mut batch(2, 2, 40, Compression::None)).unwrap(); // 3..5
    append_idempotent(&mut log, 3, 2); // 5..7, carrier 7, not flushed
    log.append(&mut batch(4, 2, 40, Compression::None)).unwrap(); // 8..10
    drop(log);
    let (log, entries) = reopen(&path);
    assert_eq!(log.end_offset(), 10);
    let found = tags_at(&entries);
    assert_eq!(found, vec![(tag(1), 0), (tag(3), 5)]);
}

#[test]
fn entries_are_written_to_the_file_1024_at_a_time() {
    // Between marks, the file is written only when 1,024 entries wait in memory.
    let (_dir, path, mut log) = fresh_log(64 << 20);
    for n in 0..2000u32 {
        append_idempotent(&mut log, (n % 251) as u8, 1);
    }
    assert_eq!(
        journal_entries(&path),
        1 + 1024,
        "the opening mark and one run"
    );
    drop(log);
    let (log, entries) = reopen(&path);
    assert_eq!((log.end_offset(), entries.len()), (4000, 2000));
}
