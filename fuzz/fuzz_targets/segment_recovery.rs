//! Segment recovery over arbitrary bytes.
//!
//! The input is split into an index file and a segment file (the first two bytes give the
//! index length), written into a fresh partition directory, and opened with
//! `PartitionLog::open` — index check, `recovery::scan`, truncation — then every record is
//! read back and decoded. `recovery::scan` is also run on the raw bytes. Properties: no panic;
//! the kept prefix re-scans to the same end; opening the recovered log again cuts nothing and
//! finds the same offsets; everything read back verifies and decodes.
//!
//! The input format (and the batch "fix-up" that lets the fuzzer build valid segments) lives in
//! actors/tests/support/recovery_input.rs, shared with the tests that replay what it found.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rill_actors::log::PartitionLog;
use rill_actors::record_batch::{batches, decode_batch, verify, BATCH_HEADER_LEN};
use rill_actors::recovery::scan;

#[path = "../../actors/tests/support/recovery_input.rs"]
mod recovery_input;
use recovery_input::{config, RecoveryInput};

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // tmpfs when there is one: every input writes two files.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("rill-fuzz-recovery-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = RecoveryInput::parse(data) else {
        return;
    };
    let segment = &input.segment;

    // The scan alone: bounded, idempotent on its own output, and only whole valid batches.
    let outcome = scan(segment, 0, 0, 64, |_, _| Ok(())).expect("scan with a no-op index");
    assert!(outcome.valid_len as usize <= segment.len());
    let kept = &segment[..outcome.valid_len as usize];
    let again = scan(kept, 0, 0, 64, |_, _| Ok(())).expect("rescan");
    assert_eq!(again, outcome);
    let mut next = 0i64;
    for item in batches(kept) {
        let (header, batch) = item.expect("kept bytes frame");
        assert_eq!(header.base_offset, next);
        verify(batch).expect("kept batches verify");
        next = header.last_offset() + 1;
    }
    assert_eq!(next, outcome.next_offset);

    // The whole open path on real files.
    let dir = scratch().join("t-0");
    let _ = std::fs::remove_dir_all(&dir);
    input.write_to(&dir).expect("partition files written");
    let log = match PartitionLog::open(&dir, config()) {
        Ok(log) => log,
        // An I/O problem is a legitimate answer; a panic is not.
        Err(_) => return,
    };
    let (start, end, size) = (log.start_offset(), log.end_offset(), log.size_bytes());
    assert_eq!(start, 0);
    // With an index file, recovery trusts the bytes before its last entry (as Kafka does)
    // and only scans after it, so the two may differ; without one they must agree.
    let with_index = input.writes_index && !input.index.is_empty();
    if !with_index {
        assert_eq!(
            end, outcome.next_offset,
            "open and scan disagree on the end"
        );
        assert_eq!(size, outcome.valid_len);
    }
    drop(log);

    let mut log = PartitionLog::open(&dir, config()).expect("reopening the recovered log");
    assert_eq!(
        (log.start_offset(), log.end_offset(), log.size_bytes()),
        (start, end, size),
        "recovery is not idempotent"
    );
    let mut offset = start;
    let mut rounds = 0;
    while offset < end {
        rounds += 1;
        if rounds > 1 + size as usize / BATCH_HEADER_LEN {
            assert!(with_index, "read makes no progress at {offset}");
            break;
        }
        let chunk = match log.read(offset, 4096) {
            Ok(chunk) => chunk,
            // A trusted index over garbage: reads report corruption instead of serving it.
            Err(_) if with_index => break,
            Err(e) => panic!("reading the recovered log at {offset}: {e}"),
        };
        assert!(!chunk.is_empty(), "nothing read at {offset} < end {end}");
        for item in batches(&chunk) {
            let (header, batch) = item.expect("read returns whole batches");
            verify(batch).expect("read batches verify");
            let _ = decode_batch(batch);
            offset = offset.max(header.last_offset() + 1);
        }
    }
    assert!(
        with_index || offset == end,
        "read stopped at {offset} before {end}"
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
});
