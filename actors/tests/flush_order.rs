//! What a flush hands `SyncTargets::sync`: the directory when files came or went, the
//! segments (a sealed one's index too) as `files`, and the idempotency journal as `journal`
//! only at a mark or shutdown (its entries are durable in the segments, in their carriers).

mod common;

use std::os::unix::fs::MetadataExt;

use common::{batch, idempotency_tag as tag, idempotent_batch, small_config};
use rill_actors::compression::Compression;
use rill_actors::idempotency::ENTRY_BYTES;
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
fn a_flush_takes_the_directory_and_the_segments_and_the_journal_waits_for_a_mark() {
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

    let journal_len = || {
        std::fs::metadata(naming::idempotency_journal_file(&path))
            .unwrap()
            .len()
    };

    // The entries' carriers are in the segments; the journal file waits for a mark.
    let targets = log.take_unsynced().unwrap();
    assert!(targets.journal.is_none());
    assert!(targets.dir.is_some(), "the rolled segments' names too");
    let later = later_files(&targets);
    assert!(later.len() > 1, "segments and a sealed index: {later:?}");
    targets.sync().unwrap();
    assert_eq!(journal_len(), ENTRY_BYTES as u64, "the opening mark only");

    // The shutdown flush, which syncs everything, writes and fsyncs the journal too.
    log.append(&mut batch(99, 4, 100, Compression::None))
        .unwrap();
    let everything = log.take_everything().unwrap();
    assert_eq!(
        everything.journal.as_ref().map(|j| inode(j.file())),
        Some(journal)
    );
    assert!(!later_files(&everything).contains(&journal));
    everything.sync().unwrap();
    assert_eq!(
        journal_len(),
        7 * ENTRY_BYTES as u64,
        "the mark and six entries"
    );
}
