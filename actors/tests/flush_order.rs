//! The order a flush syncs its files in: the idempotency journal first, then the directory,
//! then the segments — so a crash between two fsyncs never
//! leaves a synced idempotent batch without its journal entry (a retry of its unacknowledged
//! request would then append it a second time). `SyncTargets::sync` syncs `journal`, then
//! `dir`, then `files`; these tests hold that the journal is handed to it as `journal`.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{batch, idempotency_tag as tag, idempotent_batch, small_config};
use rill_actors::compression::Compression;
use rill_actors::log::{PartitionLog, SyncTargets};
use rill_actors::naming;

fn inode(file: &std::fs::File) -> u64 {
    file.metadata().unwrap().ino()
}

/// Inode numbers of the files synced after the journal and the directory.
fn later_files(targets: &SyncTargets) -> Vec<u64> {
    targets.files.iter().map(|f| inode(f)).collect()
}

#[test]
fn a_flush_syncs_the_journal_and_its_directory_before_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    // 2 KiB segments: the appends below roll, so the flush also syncs a sealed segment.
    let mut log = PartitionLog::open(&path, small_config(2048)).unwrap();
    log.load_idempotency(0).unwrap();
    for n in 0..6 {
        log.append_tagged(
            &mut idempotent_batch(n.into(), 4, 100, tag(n).producer_id()),
            Some(&tag(n)),
        )
        .unwrap();
    }
    assert!(log.segment_count() > 1, "the appends rolled");
    let journal = std::fs::metadata(naming::idempotency_journal_file(&path))
        .unwrap()
        .ino();

    let targets = log.take_unsynced().unwrap();
    assert_eq!(
        targets.journal.as_ref().map(|j| inode(j.file())),
        Some(journal)
    );
    assert!(targets.dir.is_some(), "the rolled segments' names too");
    let later = later_files(&targets);
    assert!(later.len() > 1, "segments and a sealed index: {later:?}");
    assert!(
        !later.contains(&journal),
        "the journal is not synced after the segments"
    );
    targets.sync().unwrap();

    // A flush with no journal entry since the last one does not sync the journal.
    log.append(&mut batch(99, 4, 100, Compression::None))
        .unwrap();
    assert!(log.take_unsynced().unwrap().journal.is_none());

    // The shutdown flush, which syncs everything, orders it the same way.
    let everything = log.take_everything().unwrap();
    assert_eq!(
        everything.journal.as_ref().map(|j| inode(j.file())),
        Some(journal)
    );
    assert!(!later_files(&everything).contains(&journal));
    everything.sync().unwrap();
}

#[test]
fn entries_written_into_synced_zeros_are_written_back_and_the_rest_fdatasynced() {
    use rill_actors::idempotency::{write_back_ok, ENTRY_BYTES, JOURNAL_STEP};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(1 << 30)).unwrap();
    log.set_preallocation(1 << 20);
    log.load_idempotency(0).unwrap();
    let sound = write_back_ok(&std::fs::File::open(dir.path()).unwrap());
    let mut kinds = Vec::new();
    // Past two steps of entries, one flush each.
    let entries = 2 * JOURNAL_STEP / ENTRY_BYTES as u64 + 10;
    for n in 0..entries {
        let t = tag((n % 251) as u8);
        log.append_tagged(&mut idempotent_batch(n, 1, 10, t.producer_id()), Some(&t))
            .unwrap();
        let targets = log.take_unsynced().unwrap();
        kinds.push(match &targets.journal {
            Some(journal) if journal.is_write_back() => 'W',
            Some(_) => 'F',
            None => '-',
        });
        if n < 3 {
            targets.sync().unwrap();
        }
    }
    let fsyncs: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == 'F')
        .map(|(i, _)| i)
        .collect();
    if sound {
        // The first entry extends the new journal (and zeros are written for two steps);
        // the next fsync comes when entries pass the zeros that one made durable.
        assert_eq!(fsyncs.len(), 2, "fsyncs at {fsyncs:?}");
        assert_eq!(fsyncs[0], 0);
        assert!(kinds.iter().all(|k| *k != '-'));
    } else {
        assert_eq!(
            fsyncs.len(),
            kinds.len(),
            "no write-back on this file system"
        );
    }
    // The shutdown flush always fdatasyncs the journal.
    let shutdown = log.take_everything().unwrap().journal.unwrap();
    assert!(!shutdown.is_write_back());
}
