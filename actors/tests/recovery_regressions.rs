//! Inputs the fuzzer (fuzz/fuzz_targets/segment_recovery.rs) found, replayed as tests: each
//! file under tests/data is a fuzz input, decoded as the fuzzer does (tests/support/recovery_input.rs).

use std::path::Path;

use rill_actors::log::PartitionLog;

#[path = "support/recovery_input.rs"]
mod recovery_input;
use recovery_input::{config, RecoveryInput};

#[test]
fn reopening_a_recovered_log_finds_the_same_log() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/recovery-not-idempotent.bin"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    RecoveryInput::parse(&data)
        .expect("a fuzz input")
        .write_to(&dir)
        .unwrap();
    let first = {
        let log = PartitionLog::open(&dir, config()).unwrap();
        (log.start_offset(), log.end_offset(), log.size_bytes())
    };
    let second = {
        let log = PartitionLog::open(&dir, config()).unwrap();
        (log.start_offset(), log.end_offset(), log.size_bytes())
    };
    assert_eq!(first, second, "recovery is not idempotent");
    // The index's last entry (offset 15) points at an invalid batch, and so do entries
    // before it: the log is the valid prefix a full scan finds.
    assert_eq!(first, (0, 6, 249));
}
