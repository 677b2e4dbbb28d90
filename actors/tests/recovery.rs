//! Crash and corruption scenarios for a partition log, each named after what it proves. The
//! files are real segment files in a temporary directory, damaged the way crashes and bit rot
//! damage them.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::{batch, read_all, segment_files, small_config};
use rill_actors::compression::Compression;
use rill_actors::error::LogError;
use rill_actors::log::PartitionLog;
use rill_actors::naming;

#[test]
fn torn_tail_at_every_byte_of_the_last_batch_keeps_every_complete_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..20 {
        log.append(&mut batch(tag, 3, 40, Compression::None))
            .unwrap();
    }
    let before_last = log.size_bytes();
    log.append(&mut batch(99, 5, 40, Compression::None))
        .unwrap();
    let full = log.size_bytes();
    drop(log);
    let segment = naming::segment_file(&path, 0);
    let pristine = std::fs::read(&segment).unwrap();

    for cut in before_last..full {
        std::fs::write(&segment, &pristine[..cut as usize]).unwrap();
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.end_offset(), 60, "cut at {cut}: next offset");
        assert_eq!(log.size_bytes(), before_last, "cut at {cut}: tail cut off");
        let records = read_all(&mut log, 0);
        assert_eq!(records.len(), 60, "cut at {cut}");
        assert!(records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64));
        // The log takes appends at the right offset after recovery.
        let ack = log.append(&mut batch(7, 1, 10, Compression::None)).unwrap();
        assert_eq!(ack.base_offset, 60);
    }
}

#[test]
fn garbage_tail_and_zeroed_tail_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..10 {
        log.append(&mut batch(tag, 2, 30, Compression::Lz4))
            .unwrap();
    }
    let valid = log.size_bytes();
    drop(log);
    let segment = naming::segment_file(&path, 0);
    for tail in [
        vec![0u8; 4096],
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let file = OpenOptions::new().write(true).open(&segment).unwrap();
        file.set_len(valid).unwrap();
        file.write_all_at(&tail, valid).unwrap();
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.size_bytes(), valid);
        assert_eq!(log.end_offset(), 20);
        assert_eq!(read_all(&mut log, 0).len(), 20);
    }
}

#[test]
fn deleted_index_is_rebuilt_and_every_offset_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(8 * 1024);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..200 {
        log.append(&mut batch(tag, 2, 50, Compression::None))
            .unwrap();
    }
    assert!(log.segment_count() > 3, "the test needs several segments");
    drop(log);
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(log.end_offset(), 400);
    assert_every_offset_resolves(&mut log, 400);
}

#[test]
fn garbage_index_is_rebuilt_and_every_offset_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..300 {
        log.append(&mut batch(tag, 1, 60, Compression::None))
            .unwrap();
    }
    drop(log);
    let index = naming::index_file(&path, 0);
    assert!(
        std::fs::metadata(&index).unwrap().len() > 16,
        "index has entries"
    );
    for garbage in [vec![0xffu8; 64], vec![0u8; 64], vec![1, 2, 3]] {
        std::fs::write(&index, &garbage).unwrap();
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.end_offset(), 300);
        let records = read_all(&mut log, 0);
        assert_eq!(records.len(), 300);
        for offset in [0, 1, 150, 299] {
            let bytes = log.read(offset, 1).unwrap();
            let records = rill_actors::record_batch::decode_batch(&bytes).unwrap();
            assert_eq!(records[0].offset, offset);
        }
    }
}

#[test]
fn single_bit_flips_in_a_sealed_segment_are_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(2048);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..40 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    drop(log);
    let sealed = segment_files(&path)[0].clone();
    let pristine = std::fs::read(&sealed).unwrap();
    // Every bit of the first batch, including the base offset and leader epoch that the CRC
    // does not cover (reads check offset continuity and rill's fixed epoch for those).
    let first_len = rill_actors::record_batch::BatchHeader::parse(&pristine)
        .unwrap()
        .total_len();
    for byte in 0..first_len {
        for bit in 0..8 {
            let mut damaged = pristine.clone();
            damaged[byte] ^= 1 << bit;
            std::fs::write(&sealed, &damaged).unwrap();
            let mut log = PartitionLog::open(&path, config.clone()).unwrap();
            match log.read(0, 1 << 20) {
                Err(LogError::Corrupt { .. }) => {}
                Ok(bytes) => panic!("flip at byte {byte} bit {bit} served {} bytes", bytes.len()),
                Err(other) => panic!("flip at byte {byte} bit {bit}: unexpected {other}"),
            }
        }
    }
    std::fs::write(&sealed, &pristine).unwrap();
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(read_all(&mut log, 0).len(), 80);
}

#[test]
fn torn_sealed_segment_drops_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(2048);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..40 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    drop(log);
    let files = segment_files(&path);
    assert!(files.len() >= 3);
    let second = &files[1];
    let len = std::fs::metadata(second).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(second)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(log.segment_count(), 2);
    let records = read_all(&mut log, 0);
    assert_eq!(records.len() as i64, log.end_offset());
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
}

#[test]
fn retention_deletes_whole_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut config = small_config(2048);
    config.retention_bytes = Some(4096);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..60 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    let deleted = log.apply_retention(i64::MAX / 2).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 4096 + 2048);
    assert!(log.start_offset() > 0);
    assert!(matches!(
        log.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let start = log.start_offset();
    assert_eq!(
        read_all(&mut log, start).len() as i64,
        log.end_offset() - start
    );

    config.retention_bytes = None;
    config.retention_ms = Some(1000);
    log.set_config(config);
    // Record timestamps are ~1.7e12 ms: "now" far later expires every sealed segment.
    log.apply_retention(1_900_000_000_000).unwrap();
    assert_eq!(log.segment_count(), 1, "the active segment survives");
    assert_eq!(log.end_offset(), 120);
}

/// splitmix64, so the random scenarios below are reproducible from the seed they print.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Self, u64) {
        let seed = std::env::var("RILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A batch that would be valid as the next one of a log ending at `next_offset`.
fn next_batch(tag: u64, next_offset: i64) -> Vec<u8> {
    let mut b = batch(tag, 3, 40, Compression::None);
    rill_actors::segment::stamp(&mut b, next_offset);
    b
}

/// A random tail that is not a valid continuation: random bytes, zeros, a header and no body,
/// a torn next batch, a next batch with one byte changed, an earlier batch replayed, a batch
/// with another leader epoch, a header claiming a huge length.
fn garbage_tail(rng: &mut Rng, next_offset: i64, replay: &[u8]) -> (Vec<u8>, &'static str) {
    match rng.below(8) {
        0 => {
            let n = 1 + rng.below(8192) as usize;
            (rng.bytes(n), "random bytes")
        }
        1 => (vec![0u8; 1 + rng.below(65536) as usize], "zeros"),
        2 => {
            let b = next_batch(rng.next(), next_offset);
            (b[..1 + rng.below(61) as usize].to_vec(), "header only")
        }
        3 => {
            let b = next_batch(rng.next(), next_offset);
            let cut = 61 + rng.below((b.len() - 61) as u64) as usize;
            (b[..cut].to_vec(), "torn next batch")
        }
        4 => {
            let mut b = next_batch(rng.next(), next_offset);
            let at = rng.below(b.len() as u64) as usize;
            b[at] ^= 1 + rng.below(255) as u8;
            let extra = rng.below(3) as usize;
            b.extend(rng.bytes(extra * 100));
            (b, "next batch with one byte changed")
        }
        5 => (replay.to_vec(), "earlier batch replayed"),
        6 => {
            let mut b = next_batch(rng.next(), next_offset);
            b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
            (b, "next batch with another leader epoch")
        }
        _ => {
            let mut b = next_batch(rng.next(), next_offset);
            b[8..12].copy_from_slice(&(0x7fff_0000u32 + rng.below(0xffff) as u32).to_be_bytes());
            let extra = rng.below(4096) as usize;
            b.extend(rng.bytes(extra));
            (b, "header claiming a huge length")
        }
    }
}

#[test]
fn random_garbage_tails_are_cut_and_the_log_takes_appends_again() {
    let (mut rng, seed) = Rng::seeded();
    eprintln!("seed {seed} (replay with RILL_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..30 {
        let compression = [Compression::None, Compression::Gzip, Compression::Zstd][tag % 3];
        log.append(&mut batch(tag as u64, 1 + tag % 4, 50, compression))
            .unwrap();
    }
    let (valid, end) = (log.size_bytes(), log.end_offset());
    drop(log);
    let segment = naming::segment_file(&path, 0);
    let index = naming::index_file(&path, 0);
    let pristine = std::fs::read(&segment).unwrap();
    let pristine_index = std::fs::read(&index).unwrap();
    let first_len = rill_actors::record_batch::BatchHeader::parse(&pristine)
        .unwrap()
        .total_len();
    let replay = pristine[..first_len].to_vec();

    let cases = 300;
    for case in 0..cases {
        let (tail, kind) = garbage_tail(&mut rng, end, &replay);
        let what = format!("seed {seed}, case {case}: {kind} ({} bytes)", tail.len());
        let mut damaged = pristine.clone();
        damaged.extend_from_slice(&tail);
        std::fs::write(&segment, &damaged).unwrap();
        std::fs::write(&index, &pristine_index).unwrap();

        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.size_bytes(), valid, "{what}: tail not cut");
        assert_eq!(log.end_offset(), end, "{what}: end offset");
        let records = read_all(&mut log, 0);
        assert_eq!(records.len() as i64, end, "{what}");
        assert!(
            records
                .iter()
                .enumerate()
                .all(|(i, r)| r.offset == i as i64),
            "{what}: offsets"
        );
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            valid,
            "{what}: the cut reached the file"
        );
        let ack = log
            .append(&mut batch(1000, 2, 10, Compression::None))
            .unwrap();
        assert_eq!(ack.base_offset, end, "{what}: append after recovery");
        drop(log);
        // Recovery is idempotent: the recovered log (plus the new batch) opens unchanged.
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        assert_eq!(log.end_offset(), end + 2, "{what}: reopen");
        assert_eq!(read_all(&mut log, 0).len() as i64, end + 2, "{what}");
    }
}

#[test]
fn random_tail_on_a_sealed_segment_is_cut_and_garbage_drops_every_later_segment() {
    let (mut rng, seed) = Rng::seeded();
    eprintln!("seed {seed} (replay with RILL_SEED={seed})");
    for case in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let config = small_config(2048);
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        for tag in 0..60 {
            log.append(&mut batch(tag, 2, 40, Compression::None))
                .unwrap();
        }
        drop(log);
        let files = segment_files(&path);
        assert!(files.len() >= 4, "the test needs several segments");
        // Any sealed segment: all but the last.
        let victim = rng.below(files.len() as u64 - 1) as usize;
        let victim_bytes = std::fs::read(&files[victim]).unwrap();
        let base: i64 =
            naming::parse_segment_file_name(files[victim].file_name().unwrap().to_str().unwrap())
                .unwrap();
        let next: i64 = naming::parse_segment_file_name(
            files[victim + 1].file_name().unwrap().to_str().unwrap(),
        )
        .unwrap();
        let (tail, kind) =
            garbage_tail(&mut rng, next, &victim_bytes[..20.min(victim_bytes.len())]);
        let what = format!("seed {seed}, case {case}: {kind} after segment {base}");
        let file = OpenOptions::new().write(true).open(&files[victim]).unwrap();
        file.write_all_at(&tail, victim_bytes.len() as u64).unwrap();
        drop(file);

        let mut log = PartitionLog::open(&path, config).unwrap();
        // Zeros are what preallocated space looks like when its cut at the roll did not
        // happen: they are cut and the later segments, which continue the offsets, stay.
        // Anything else after a sealed segment's last batch is damage: the later segments go.
        // (By content, not kind: a header cut within its base offset is zeros too.)
        let (segments, end) = if tail.iter().all(|&b| b == 0) {
            (files.len(), 120)
        } else {
            (victim + 1, next)
        };
        assert_eq!(log.segment_count(), segments, "{what}: segments kept");
        assert_eq!(log.end_offset(), end, "{what}: end offset");
        assert_eq!(segment_files(&path).len(), segments, "{what}: files left");
        assert_eq!(
            std::fs::metadata(&files[victim]).unwrap().len(),
            victim_bytes.len() as u64,
            "{what}: the tail was cut"
        );
        let records = read_all(&mut log, 0);
        assert_eq!(records.len() as i64, end, "{what}");
        assert!(records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64));
        let ack = log
            .append(&mut batch(999, 1, 10, Compression::None))
            .unwrap();
        assert_eq!(ack.base_offset, end, "{what}");
    }
}

/// Builds a log of several segments and returns (dir, path, config, segment files, base
/// offset of each segment, end offset).
fn several_segments() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    rill_actors::types::LogConfig,
    Vec<std::path::PathBuf>,
    Vec<i64>,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(2048);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..50 {
        log.append(&mut batch(tag, 2, 40, Compression::None))
            .unwrap();
    }
    let end = log.end_offset();
    drop(log);
    let files = segment_files(&path);
    assert!(files.len() >= 4, "the test needs several segments");
    let bases = files
        .iter()
        .map(|f| naming::parse_segment_file_name(f.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect();
    (dir, path, config, files, bases, end)
}

/// Overwrites a whole file with zeros, keeping its length (what a file extended but never
/// written looks like after a power loss).
fn zero_file(path: &std::path::Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::write(path, vec![0u8; len as usize]).unwrap();
}

#[test]
fn active_segment_of_zeros_recovers_to_its_base_offset() {
    let (_dir, path, config, files, bases, _) = several_segments();
    let active = files.len() - 1;
    zero_file(&files[active]);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    assert_eq!(log.segment_count(), files.len(), "sealed segments kept");
    assert_eq!(log.end_offset(), bases[active]);
    assert_eq!(
        std::fs::metadata(&files[active]).unwrap().len(),
        0,
        "zeros cut"
    );
    let records = read_all(&mut log, 0);
    assert_eq!(records.len() as i64, bases[active]);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
    let ack = log
        .append(&mut batch(77, 3, 10, Compression::None))
        .unwrap();
    assert_eq!(ack.base_offset, bases[active]);
    drop(log);
    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(log.end_offset(), bases[active] + 3);
    assert_eq!(read_all(&mut log, 0).len() as i64, bases[active] + 3);
}

#[test]
fn sealed_segment_of_zeros_ends_the_log_at_its_base_offset() {
    // The middle segment zeroed, with its index intact (entries now point at zeros) and with
    // its index zeroed too; and the very first segment zeroed.
    for (first, zero_index) in [(false, false), (false, true), (true, false)] {
        let (_dir, path, config, files, bases, _) = several_segments();
        let victim = if first { 0 } else { files.len() / 2 };
        zero_file(&files[victim]);
        let index = files[victim].with_extension("index");
        if zero_index {
            zero_file(&index);
        }
        let what = format!(
            "segment {victim} of {} zeroed, index zeroed: {zero_index}",
            files.len()
        );
        let mut log = PartitionLog::open(&path, config.clone()).unwrap();
        // The log is the longest valid prefix: everything before the zeroed segment.
        assert_eq!(log.end_offset(), bases[victim], "{what}");
        assert_eq!(log.segment_count(), victim + 1, "{what}");
        assert_eq!(
            segment_files(&path).len(),
            victim + 1,
            "{what}: later files deleted"
        );
        let records = read_all(&mut log, 0);
        assert_eq!(records.len() as i64, bases[victim], "{what}");
        assert!(records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64));
        // Nothing at or past the zeroed segment is served.
        assert!(
            log.read(bases[victim], 1 << 20).unwrap().is_empty(),
            "{what}"
        );
        let ack = log
            .append(&mut batch(88, 2, 10, Compression::None))
            .unwrap();
        assert_eq!(ack.base_offset, bases[victim], "{what}");
        drop(log);
        let mut log = PartitionLog::open(&path, config).unwrap();
        assert_eq!(log.end_offset(), bases[victim] + 2, "{what}: reopen");
        assert_eq!(read_all(&mut log, 0).len() as i64, bases[victim] + 2);
    }
}

#[test]
fn failed_roll_leaves_no_segment_behind_and_recovery_keeps_every_batch() {
    // A roll whose index cannot be created (here: a directory in its place; in production an
    // EIO or ENOSPC from open) fails the append. The log then moves on with batches that fit
    // the active segment; nothing left behind by the failed roll may make recovery drop them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(2048);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    let big = batch(500, 10, 100, Compression::None);
    let mut tag = 0;
    while log.size_bytes() + big.len() as u64 <= 2048 {
        log.append(&mut batch(tag, 1, 10, Compression::None))
            .unwrap();
        tag += 1;
    }
    let roll_at = log.end_offset();
    let blocker = naming::index_file(&path, roll_at);
    std::fs::create_dir(&blocker).unwrap();
    assert!(log.append(&mut big.clone()).is_err(), "the roll fails");
    assert_eq!(log.end_offset(), roll_at, "a failed roll appends nothing");
    assert_eq!(log.segment_count(), 1);
    assert!(
        !naming::segment_file(&path, roll_at).exists(),
        "the failed roll left an empty segment {roll_at} behind"
    );
    for _ in 0..3 {
        log.append(&mut batch(tag, 1, 10, Compression::None))
            .unwrap();
        tag += 1;
    }
    std::fs::remove_dir(&blocker).unwrap();
    let ack = log.append(&mut big.clone()).unwrap();
    assert_eq!(log.segment_count(), 2, "this roll worked");
    let end = ack.last_offset + 1;
    drop(log);

    let mut log = PartitionLog::open(&path, config).unwrap();
    assert_eq!(log.end_offset(), end, "recovery kept every batch");
    let records = read_all(&mut log, 0);
    assert_eq!(records.len() as i64, end);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
}

#[test]
fn index_entries_are_written_in_runs_and_a_crash_before_a_run_rebuilds_them() {
    use rill_actors::index::{INDEX_ENTRY_LEN, PENDING_LIMIT};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = small_config(1 << 20);
    let index_len = |path: &std::path::Path| {
        let file = segment_files(path)[0].with_extension("index");
        std::fs::metadata(file).unwrap().len()
    };
    // Each batch is past the 256-byte index interval: every batch after the first earns an entry.
    let batches = PENDING_LIMIT as u64 * 2 + 10;
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    for tag in 0..batches {
        log.append(&mut batch(tag, 2, 200, Compression::None))
            .unwrap();
        log.take_unsynced().unwrap().sync().unwrap();
    }
    let entries = batches - 1;
    // Two whole runs are in the file; the rest waits in memory (flushes do not write it).
    assert_eq!(
        index_len(&path),
        (entries - entries % PENDING_LIMIT as u64) * INDEX_ENTRY_LEN as u64
    );
    // Dropped without a shutdown flush, as after SIGKILL: start-up scans from the last entry on
    // disk and writes what it rebuilt.
    drop(log);
    let mut log = PartitionLog::open(&path, config.clone()).unwrap();
    assert_eq!(index_len(&path), entries * INDEX_ENTRY_LEN as u64);
    let records = read_all(&mut log, 0);
    assert_eq!(records.len() as u64, batches * 2);
    assert_every_offset_resolves(&mut log, batches as i64 * 2);
    // A roll writes the sealed segment's whole index; a shutdown the active one's.
    for tag in batches..batches + 5 {
        log.append(&mut batch(tag, 2, 200, Compression::None))
            .unwrap();
    }
    log.roll().unwrap();
    assert_eq!(index_len(&path), (entries + 5) * INDEX_ENTRY_LEN as u64);
    for tag in batches + 5..batches + 8 {
        log.append(&mut batch(tag, 2, 200, Compression::None))
            .unwrap();
    }
    log.take_everything().unwrap().sync().unwrap();
    let active_index = segment_files(&path)[1].with_extension("index");
    assert_eq!(
        std::fs::metadata(active_index).unwrap().len(),
        2 * INDEX_ENTRY_LEN as u64
    );
}

/// A read at each offset below `end` starts with the batch holding it: the index (whatever
/// state it was left in) leads every lookup to the right place.
fn assert_every_offset_resolves(log: &mut PartitionLog, end: i64) {
    for offset in 0..end {
        let bytes = log.read(offset, 1).unwrap();
        let (header, _) = rill_actors::record_batch::batches(&bytes)
            .next()
            .unwrap()
            .unwrap();
        assert!(
            header.base_offset <= offset && offset <= header.last_offset(),
            "offset {offset}"
        );
    }
}
