//! What a flush hands `SyncTargets::sync`: the idempotency journal's new entries as `journal`
//! (written, and fsynced only at a mark), the directory when files came or went, and the
//! segments (a sealed one's index too) as `files`.

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
fn a_flush_takes_the_journals_entries_the_directory_and_the_segments() {
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
    assert!(!later.contains(&journal), "the journal is not a segment");
    assert!(
        !targets.journal.as_ref().unwrap().is_fsync(),
        "entries are written, not fsynced: their carriers in the segments make them durable"
    );
    targets.sync().unwrap();

    // A flush with no journal entry since the last one does not sync the journal.
    log.append(&mut batch(99, 4, 100, Compression::None))
        .unwrap();
    assert!(log.take_unsynced().unwrap().journal.is_none());

    // The shutdown flush, which syncs everything, fsyncs the journal too.
    let everything = log.take_everything().unwrap();
    assert_eq!(
        everything.journal.as_ref().map(|j| inode(j.file())),
        Some(journal)
    );
    assert!(!later_files(&everything).contains(&journal));
    assert!(everything.journal.as_ref().unwrap().is_fsync());
    everything.sync().unwrap();
}
