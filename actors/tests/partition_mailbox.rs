//! A partition actor's mailbox under more appends than it holds: `partition::append` first
//! offers each batch without waiting, and waits for room only when the mailbox refused it.
//! Every append must still be answered (under `flush = "always"`, after its flush), with offsets
//! that tile the log.

use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use rill_actors::compression::Compression;
use rill_actors::log::PartitionLog;
use rill_actors::messages::GetStats;
use rill_actors::partition::{self, PartitionActor};
use rill_actors::record_batch::BatchBuilder;
use rill_actors::types::{FlushPolicy, LogConfig, TopicName, Topition};

fn batch(records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        builder.push(
            1_700_000_000_000,
            Some(b"key"),
            Some(format!("value {i}").as_bytes()),
            &[],
        );
    }
    builder.finish().expect("batch encodes").bytes
}

#[test]
fn appends_beyond_a_full_mailbox_are_all_answered_and_tile_the_log() {
    const APPENDS: usize = 700;
    const RECORDS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let system = System::new();
    system.block_on(async {
        let config = LogConfig {
            flush: FlushPolicy::Always,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path(), config).unwrap();
        let topition = Topition {
            topic: TopicName::new("mailbox").unwrap(),
            partition: 0,
        };
        // Started on this thread: the actor cannot drain its mailbox until the appends below
        // have all been offered, so more than its capacity (256) pile up at once and one
        // sender is turned away and has to wait for room.
        let addr = PartitionActor::new(topition, log, Duration::from_secs(3600)).start();
        let answers =
            join_all((0..APPENDS).map(|_| partition::append(&addr, batch(RECORDS), None))).await;

        let mut acks: Vec<_> = answers
            .into_iter()
            .map(|answer| answer.expect("append answered"))
            .collect();
        acks.sort_by_key(|ack| ack.base_offset);
        for (i, ack) in acks.iter().enumerate() {
            assert_eq!(ack.base_offset, (i * RECORDS) as i64, "append {i}");
            assert_eq!(
                ack.last_offset,
                ((i + 1) * RECORDS - 1) as i64,
                "append {i}"
            );
        }
        let stats = addr.send(GetStats).await.unwrap();
        assert_eq!(stats.end_offset, (APPENDS * RECORDS) as i64);
    });
}
