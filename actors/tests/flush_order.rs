//! The order a flush syncs its files in: the idempotency journal before the segments, so a
//! crash between two fsyncs never leaves a synced idempotent batch without its journal entry
//! (a retry of its unacknowledged request would then append it a second time).

mod common;

use std::os::unix::fs::MetadataExt;

use common::{batch, small_config};
use rill_actors::compression::Compression;
use rill_actors::idempotency::{DigestKind, IdempotencyTag};
use rill_actors::log::{PartitionLog, SyncTargets};
use rill_actors::naming;

fn tag(n: u8) -> IdempotencyTag {
    IdempotencyTag {
        key_hash: [n; 16],
        body_digest: [n; 16],
        digest_kind: DigestKind::Xxh3,
        request_id: [0; 16],
        created_ms: 1_700_000_000_000,
    }
}

/// Inode numbers of the files a flush syncs, in its order.
fn inodes(targets: &SyncTargets) -> Vec<u64> {
    targets
        .files
        .iter()
        .map(|f| f.metadata().unwrap().ino())
        .collect()
}

#[test]
fn a_flush_syncs_the_journal_before_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    // 2 KiB segments: the appends below roll, so the flush also syncs a sealed segment.
    let mut log = PartitionLog::open(&path, small_config(2048)).unwrap();
    log.load_idempotency(0).unwrap();
    for n in 0..6 {
        log.append_tagged(
            &mut batch(n.into(), 4, 100, Compression::None),
            Some(&tag(n)),
        )
        .unwrap();
    }
    assert!(log.segment_count() > 1, "the appends rolled");
    let journal = std::fs::metadata(naming::idempotency_journal_file(&path))
        .unwrap()
        .ino();

    let targets = log.take_unsynced().unwrap();
    let order = inodes(&targets);
    assert!(
        order.len() > 2,
        "journal, segments and a sealed index: {order:?}"
    );
    assert_eq!(order[0], journal, "the journal is synced first");
    assert!(!order[1..].contains(&journal));
    targets.sync().unwrap();

    // The same for a flush without the journal written since: nothing to order.
    log.append(&mut batch(99, 4, 100, Compression::None))
        .unwrap();
    assert!(!inodes(&log.take_unsynced().unwrap()).contains(&journal));

    // And for the shutdown flush, which syncs everything.
    let everything = log.take_everything().unwrap();
    assert_eq!(inodes(&everything)[0], journal);
    everything.sync().unwrap();
}
