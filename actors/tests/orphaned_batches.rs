//! Idempotent batches whose journal entries a crash lost. An idempotent request's batches
//! carry a producerId; its journal entry is written before the batch and becomes durable
//! with it. A marked batch the journal has no entry for was never acknowledged (nor was
//! anything after it), and kept, a retry of its request would append it again: recovery
//! cuts the log there. These tests write real logs, drop them as a crash would, take the lost
//! entries out of the journal file, and open them again.

mod common;

use common::{batch, idempotency_tag as tag, idempotent_batch, read_all, small_config};
use rill_actors::compression::Compression;
use rill_actors::error::LogError;
use rill_actors::idempotency::ENTRY_BYTES;
use rill_actors::log::{PartitionLog, MARK_INTERVAL_BYTES};
use rill_actors::naming;

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

fn reopen(path: &std::path::Path) -> (PartitionLog, usize) {
    let mut log = PartitionLog::open(path, small_config(1 << 20)).unwrap();
    let entries = log.load_idempotency(0).unwrap().len();
    (log, entries)
}

#[test]
fn a_marked_batch_whose_entry_was_lost_is_cut_with_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    log.load_idempotency(0).unwrap();
    log.append(&mut batch(1, 3, 40, Compression::None)).unwrap(); // 0..3
    append_idempotent(&mut log, 2, 3); // 3..6
    log.take_unsynced().unwrap().sync().unwrap();
    // Offsets 6..9, whose entry is lost below, then 9..12. The flush writes everything;
    // the power cut comes before its cache flush completes.
    append_idempotent(&mut log, 3, 3);
    log.append(&mut batch(4, 3, 40, Compression::None)).unwrap();
    log.take_unsynced().unwrap().sync().unwrap();
    drop(log);
    // The journal holds its opening mark and the entries of batches 2 and 3.
    assert_eq!(journal_entries(&path), 3);
    lose_journal_tail(&path, 2);

    let (mut log, entries) = reopen(&path);
    assert_eq!(entries, 1, "batch 2's entry");
    assert_eq!(log.end_offset(), 6, "cut at the orphaned batch");
    let records = read_all(&mut log, 0);
    assert_eq!(records.len(), 6);
    assert_eq!(records.last().unwrap().offset, 5);

    // The log goes on from the cut, and a second start finds nothing more to cut.
    append_idempotent(&mut log, 5, 2);
    log.take_everything().unwrap().sync().unwrap();
    drop(log);
    let (log, entries) = reopen(&path);
    assert_eq!((log.end_offset(), entries), (8, 2));
}

#[test]
fn a_lost_first_entry_cuts_back_to_the_journals_opening_mark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    log.load_idempotency(0).unwrap();
    log.append(&mut batch(1, 4, 40, Compression::None)).unwrap(); // 0..4
    log.take_unsynced().unwrap().sync().unwrap();
    append_idempotent(&mut log, 2, 2); // 4..6: creates the journal with a mark at 4
    drop(log);
    lose_journal_tail(&path, 1);

    let (log, entries) = reopen(&path);
    assert_eq!((log.end_offset(), entries), (4, 0));
}

#[test]
fn batches_with_entries_stay_and_the_search_for_a_lost_one_crosses_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = || small_config(512);
    let mut log = PartitionLog::open(&path, config()).unwrap();
    log.load_idempotency(0).unwrap();
    // Batch n holds offsets 2n and 2n + 1; every third is idempotent.
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
    log.take_unsynced().unwrap().sync().unwrap();
    drop(log);

    let mut log = PartitionLog::open(&path, config()).unwrap();
    assert_eq!(log.load_idempotency(0).unwrap().len(), 4);
    assert_eq!(log.end_offset(), 24, "nothing cut");
    assert_eq!(read_all(&mut log, 0).len(), 24);
    drop(log);

    // The entries of batches 6 and 9 lost: cut at batch 6, segments after it deleted.
    lose_journal_tail(&path, 3);
    let mut log = PartitionLog::open(&path, config()).unwrap();
    assert_eq!(log.load_idempotency(0).unwrap().len(), 2);
    assert_eq!(log.end_offset(), 12);
    assert!(log.segment_count() < segments);
    assert_eq!(read_all(&mut log, 0).len(), 12);
}

#[test]
fn the_log_takes_a_producer_id_exactly_on_idempotent_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    log.load_idempotency(0).unwrap();
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
fn a_long_run_without_idempotent_batches_gets_a_mark_that_bounds_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(256 << 20)).unwrap();
    log.load_idempotency(0).unwrap();
    append_idempotent(&mut log, 1, 1);
    log.take_unsynced().unwrap().sync().unwrap();
    assert_eq!(journal_entries(&path), 2);
    // About 1 MiB per batch, until more than a mark interval follows the last entry.
    let mut appended = 0;
    while appended <= MARK_INTERVAL_BYTES {
        let mut big = batch(2, 256, 4096, Compression::None);
        appended += big.len() as u64;
        log.append(&mut big).unwrap();
    }
    let end = log.end_offset();
    log.take_unsynced().unwrap().sync().unwrap();
    assert_eq!(journal_entries(&path), 3, "a mark was written");
    drop(log);
    let bytes = std::fs::read(naming::idempotency_journal_file(&path)).unwrap();
    let mark = rill_actors::idempotency::JournalEntry::decode(&bytes[2 * ENTRY_BYTES..]).unwrap();
    assert!(mark.is_mark());
    assert_eq!(mark.base_offset, end);
}

#[test]
fn batches_appended_after_the_last_flush_lose_their_unwritten_entries_and_are_cut() {
    // Entries are written by the flush; a process killed before it leaves the batches (in
    // the page cache) without them. None of them was acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(1 << 20)).unwrap();
    log.load_idempotency(0).unwrap();
    append_idempotent(&mut log, 1, 2); // 0..2
    log.take_unsynced().unwrap().sync().unwrap();
    log.append(&mut batch(2, 2, 40, Compression::None)).unwrap(); // 2..4
    append_idempotent(&mut log, 3, 2); // 4..6, not flushed
    log.append(&mut batch(4, 2, 40, Compression::None)).unwrap(); // 6..8
    drop(log);
    let (log, entries) = reopen(&path);
    assert_eq!((log.end_offset(), entries), (4, 1));
}
