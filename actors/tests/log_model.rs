//! Model test: random sequences of append / read / roll / restart / truncate against a real
//! log on disk and a plain in-memory model of what the log must hold. Any divergence — an
//! offset, a value, what survives a restart — fails with the shrunk sequence.

mod common;

use common::{batch, read_all, record_value};
use proptest::prelude::*;
use rill_actors::compression::Compression;
use rill_actors::log::PartitionLog;
use rill_actors::types::{FlushPolicy, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: usize,
        value_len: usize,
        codec: u8,
    },
    Read {
        at: u16,
    },
    Roll,
    Restart,
    Truncate {
        at: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..20, 0usize..200, 0u8..5)
            .prop_map(|(count, value_len, codec)| Op::Append { count, value_len, codec }),
        3 => any::<u16>().prop_map(|at| Op::Read { at }),
        1 => Just(Op::Roll),
        1 => Just(Op::Restart),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
    ]
}

fn codec(n: u8) -> Compression {
    [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ][n as usize % 5]
}

/// The model: per offset, the (tag, index, value length) of the record stored there, and
/// which offsets begin a batch (truncation removes whole batches).
#[derive(Default)]
struct Model {
    records: Vec<(u64, usize, usize)>,
    batch_starts: Vec<i64>,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("RILL_MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_in_memory_model(ops in proptest::collection::vec(op(), 1..40), segment_kib in 5u64..32) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m-0");
        let config = LogConfig {
            segment_bytes: segment_kib * 1024,
            index_interval_bytes: 128,
            flush: FlushPolicy::Always,
            retention_ms: None,
            retention_bytes: None,
        };
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        let mut model = Model::default();
        for (tag, op) in ops.into_iter().enumerate() {
            let tag = tag as u64;
            match op {
                Op::Append { count, value_len, codec: c } => {
                    let ack = log.append(&mut batch(tag, count, value_len, codec(c))).unwrap();
                    prop_assert_eq!(ack.base_offset, model.records.len() as i64);
                    prop_assert_eq!(ack.last_offset, ack.base_offset + count as i64 - 1);
                    model.batch_starts.push(ack.base_offset);
                    model.records.extend((0..count).map(|i| (tag, i, value_len)));
                }
                Op::Read { at } => {
                    let end = model.records.len() as i64;
                    let from = if end == 0 { 0 } else { i64::from(at) % (end + 1) };
                    let records = read_all(&mut log, from);
                    prop_assert_eq!(records.len() as i64, end - from);
                    for r in &records {
                        let (tag, i, len) = model.records[r.offset as usize];
                        prop_assert_eq!(r.value.as_deref(), Some(&record_value(tag, i, len)[..]));
                    }
                }
                Op::Roll => log.roll().unwrap(),
                Op::Restart => {
                    drop(log);
                    log = PartitionLog::open(&path, config.clone()).unwrap();
                }
                Op::Truncate { at } => {
                    let end = model.records.len() as i64;
                    let target = if end == 0 { 0 } else { i64::from(at) % (end + 1) };
                    // Whole batches go: the cut moves back to the start of the batch holding it.
                    let cut = model
                        .batch_starts
                        .iter()
                        .rev()
                        .find(|&&s| s <= target)
                        .map_or(0, |&s| if s == target || target == end { target } else { s });
                    let next = log.truncate_to(target).unwrap();
                    prop_assert_eq!(next, cut);
                    model.records.truncate(cut as usize);
                    model.batch_starts.retain(|&s| s < cut);
                }
            }
            prop_assert_eq!(log.end_offset(), model.records.len() as i64);
        }
        drop(log);
        let mut log = PartitionLog::open(&path, config).unwrap();
        prop_assert_eq!(log.end_offset(), model.records.len() as i64);
        prop_assert_eq!(read_all(&mut log, 0).len(), model.records.len());
    }
}
