//! A full disk is an error returned to the appender — never a SIGBUS, never a half-written
//! batch — and once space is freed, appends succeed again without reopening anything.
//!
//! Needs root to mount a small tmpfs (CI runs as root); the test fails loudly otherwise.

mod common;

use std::process::Command;

use common::{batch, idempotency_tag, idempotent_batch, read_all, small_config};
use rill_actors::compression::Compression;
use rill_actors::error::LogError;
use rill_actors::log::PartitionLog;

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs .ci/run as root)"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A 512 KiB tmpfs with 300 KiB of it taken by a file, and where a log goes on it. Fields
/// drop in order: the tmpfs is unmounted before its directory is removed.
struct FullDisk {
    _tmpfs: Tmpfs,
    _dir: tempfile::TempDir,
    filler: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl FullDisk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tmpfs = Tmpfs::mount(dir.path(), "512k");
        let filler = dir.path().join("filler");
        std::fs::write(&filler, vec![7u8; 300 * 1024]).unwrap();
        Self {
            _tmpfs: tmpfs,
            filler,
            path: dir.path().join("full-0"),
            _dir: dir,
        }
    }
}

/// Calls `append(n)` for n = 0, 1, … until the disk has refused four times; returns the base
/// offsets acknowledged. Any other error fails the test.
fn append_until_full(mut append: impl FnMut(u64) -> Result<i64, LogError>) -> Vec<i64> {
    let mut acked = Vec::new();
    let mut full_errors = 0;
    for n in 0..10_000 {
        match append(n) {
            Ok(base_offset) => acked.push(base_offset),
            Err(LogError::DiskFull { .. }) => {
                full_errors += 1;
                if full_errors > 3 {
                    break;
                }
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(full_errors > 0, "the disk never filled");
    assert!(!acked.is_empty());
    acked
}

#[test]
fn disk_full_is_an_error_and_appends_resume_after_space_is_freed() {
    let disk = FullDisk::new();
    let (filler, path) = (&disk.filler, &disk.path);
    let config = small_config(16 << 20);
    let mut log = PartitionLog::open(path, config.clone()).unwrap();
    let bases = append_until_full(|n| {
        log.append(&mut batch(n, 10, 100, Compression::None))
            .map(|ack| ack.base_offset)
    });
    let expected: Vec<i64> = (0..bases.len() as i64).map(|i| i * 10).collect();
    assert_eq!(bases, expected);
    let acked = bases.len() as i64 * 10;
    assert_eq!(
        log.end_offset(),
        acked,
        "failed appends left no offsets behind"
    );
    assert_eq!(read_all(&mut log, 0).len() as i64, acked);

    std::fs::remove_file(filler).unwrap();
    let ack = log
        .append(&mut batch(1 << 40, 10, 100, Compression::None))
        .expect("append succeeds once space is free");
    assert_eq!(ack.base_offset, acked);
    drop(log);

    let mut log = PartitionLog::open(path, config).unwrap();
    assert_eq!(log.end_offset(), acked + 10);
    assert_eq!(read_all(&mut log, 0).len() as i64, acked + 10);
}

#[test]
fn a_full_disk_never_keeps_an_idempotent_batch_without_its_carrier() {
    // A batch and the carrier of its journal entry go in one write: on a full disk either
    // both are kept or neither (a short write is cut back), so every acknowledged entry is
    // found again at the next start and nothing is cut as torn.
    let disk = FullDisk::new();
    let (filler, path) = (&disk.filler, &disk.path);
    let config = small_config(16 << 20);
    let mut log = PartitionLog::open(path, config.clone()).unwrap();
    log.load_idempotency(0).unwrap();
    let acked = append_until_full(|n| {
        let t = idempotency_tag((n % 251) as u8);
        log.append_tagged(&mut idempotent_batch(n, 10, 100, t.producer_id()), Some(&t))
            .map(|ack| ack.base_offset)
    });
    let expected: Vec<i64> = (0..acked.len() as i64).map(|i| i * 11).collect();
    assert_eq!(acked, expected, "each batch and its carrier: 11 offsets");
    assert_eq!(log.end_offset(), acked.len() as i64 * 11);
    drop(log);

    std::fs::remove_file(filler).unwrap();
    let mut log = PartitionLog::open(path, config).unwrap();
    let entries = log.load_idempotency(0).unwrap();
    let bases: Vec<i64> = entries.iter().map(|e| e.base_offset).collect();
    assert_eq!(bases, acked, "every entry, from the carriers");
    assert_eq!(log.end_offset(), acked.len() as i64 * 11, "nothing cut");
    assert_eq!(read_all(&mut log, 0).len(), acked.len() * 10);
}
