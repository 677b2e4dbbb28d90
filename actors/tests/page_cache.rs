//! Synced segment bytes are handed back to the page cache's free pool: each flush advises the
//! kernel to drop what it made durable, except the active segment's newest 4 MiB, and what is
//! dropped still reads back whole (from disk).

mod common;

use std::ops::Range;
use std::path::Path;

use common::{batch, read_all, segment_files, small_config};
use rill_actors::compression::Compression;
use rill_actors::log::PartitionLog;
use rill_actors::segment::PageCacheRelease;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// A directory on the disk the tests build on: the system's temporary directory may be a
/// tmpfs, whose pages the advice cannot drop.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Appends batches of 100 records of 100 bytes, one flush each, until the log holds `bytes`.
/// Returns the ranges the flushes handed back, in order.
fn append_flushed(log: &mut PartitionLog, bytes: u64, tag: &mut u64) -> Vec<Range<u64>> {
    let mut released = Vec::new();
    while log.size_bytes() < bytes {
        log.append(&mut batch(*tag, 100, 100, Compression::None))
            .unwrap();
        *tag += 1;
        let mut targets = log.take_unsynced().unwrap();
        let page_cache = std::mem::take(&mut targets.page_cache);
        targets.sync().unwrap();
        released.extend(page_cache.iter().map(PageCacheRelease::range));
        page_cache.into_iter().for_each(PageCacheRelease::apply);
    }
    released
}

/// How many of the pages of `range` of the file at `path` the page cache holds, and of how
/// many.
fn resident_pages(path: &Path, range: Range<u64>) -> (usize, usize) {
    let file = std::fs::File::open(path).unwrap();
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let pages = (map.len() as u64).div_ceil(PAGE) as usize;
    let mut resident = vec![0u8; pages];
    // SAFETY: the map spans `pages` pages and the vector holds one byte for each.
    let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), resident.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    let wanted = &resident[(range.start / PAGE) as usize..(range.end / PAGE) as usize];
    (wanted.iter().filter(|b| *b & 1 == 1).count(), wanted.len())
}

#[test]
fn flushes_hand_back_synced_pages_in_steps_and_keep_the_newest_four_mib() {
    let dir = disk_dir();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(64 * MIB)).unwrap();
    let mut tag = 0;
    let released = append_flushed(&mut log, 12 * MIB, &mut tag);
    let end = log.size_bytes();

    assert!(!released.is_empty(), "12 MiB flushed, nothing handed back");
    let mut at = 0;
    for range in &released {
        assert_eq!(range.start, at, "ranges follow one another: {released:?}");
        assert!(
            range.end - range.start >= MIB,
            "one call per MiB: {range:?}"
        );
        assert_eq!(range.end % PAGE, 0, "whole pages: {range:?}");
        at = range.end;
    }
    assert!(
        at <= end - 4 * MIB && at > end - 5 * MIB - PAGE,
        "handed back up to {at} of {end}: the newest 4 MiB stay, at most a step more"
    );

    let segment = &segment_files(&path)[0];
    let (dropped_resident, dropped) = resident_pages(segment, 0..at);
    assert!(
        dropped_resident * 10 <= dropped,
        "{dropped_resident} of {dropped} handed-back pages still cached"
    );
    let kept = (end - 4 * MIB).next_multiple_of(PAGE)..end / PAGE * PAGE;
    let (kept_resident, kept_pages) = resident_pages(segment, kept);
    assert!(
        kept_resident * 10 >= kept_pages * 9,
        "only {kept_resident} of the newest {kept_pages} pages cached"
    );

    let records = read_all(&mut log, 0);
    assert_eq!(records.len() as u64, tag * 100, "every record reads back");
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
}

#[test]
fn a_sealed_segment_is_handed_back_whole_and_a_cut_log_hands_back_from_its_new_end() {
    let dir = disk_dir();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, small_config(8 * MIB)).unwrap();
    let mut tag = 0;
    append_flushed(&mut log, 7 * MIB, &mut tag);
    let cut_at = log.end_offset();
    let released = append_flushed(&mut log, 12 * MIB, &mut tag);

    let files = segment_files(&path);
    assert_eq!(files.len(), 2, "rolled once: {files:?}");
    let sealed_len = std::fs::metadata(&files[0]).unwrap().len();
    assert!(
        released.iter().any(|r| r.end == sealed_len / PAGE * PAGE),
        "the sealed segment ({sealed_len} bytes) handed back to its last whole page: {released:?}"
    );
    let (resident, pages) = resident_pages(&files[0], 0..sealed_len / PAGE * PAGE);
    assert!(
        resident * 10 <= pages,
        "{resident} of {pages} sealed pages cached"
    );

    // Cut back into what was handed back: handing back resumes at the new end, so the bytes
    // written again there are handed back too.
    log.truncate_to(cut_at).unwrap();
    assert_eq!(log.end_offset(), cut_at);
    let cut_len = log.size_bytes();
    assert!(
        cut_len < sealed_len,
        "the cut is inside the handed-back range"
    );
    let released = append_flushed(&mut log, 14 * MIB, &mut tag);
    let first = released.first().expect("a range after the cut");
    assert_eq!(first.start, cut_len, "resumes at the cut end: {released:?}");
    let records = read_all(&mut log, 0);
    assert_eq!(records.last().unwrap().offset + 1, log.end_offset());
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as i64));
}
