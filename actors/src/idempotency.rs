//! The idempotency journal: per partition, which idempotent produce requests (by the hash of
//! their `Idempotency-Key`) put a batch where. It lives beside the segments; an entry is made
//! by the partition actor with the batch it describes, and written and made durable by the
//! flush that makes the batch durable — so an acknowledged request's journal entry survives
//! whatever the batch survives, and a retry after a crash finds the batch instead of appending
//! it again.
//!
//! The batches themselves carry a mark (a producerId, [`IdempotencyTag::producer_id`]), so
//! recovery can find a batch whose entry a crash lost, and cut it: such a batch was never
//! acknowledged. Entries with no batch (record count 0, [`JournalEntry::mark`]) bound that
//! search: the journal opens with one, and a long run of other batches gets one.
//!
//! File `idempotency.journal` in the partition directory: fixed 72-byte entries, each
//!
//! ```text
//! crc32c u32 (over the 68 bytes after it) | key_hash [16] | body_digest [16] |
//! request_id [16] (all zero: none) | created_ms i64 | base_offset i64 |
//! xxh3 flag (1 bit) + record_count (31 bits) u32
//! ```
//!
//! The top bit of the last field says how `body_digest` was made: set, XXH3-128; clear,
//! SHA-256 (entries written before rill switched, which a retry is still checked against).
//!
//! big-endian, appended in offset order. At start the journal is read up to its first
//! invalid entry (a torn tail is cut), and entries are dropped that are out of the window,
//! below the log start (retention) or at or past the log end (the batch was cut by recovery:
//! it was never acknowledged). When dropped entries outnumber kept ones, the file is
//! rewritten (temporary file, fsync, rename).
//!
//! Like the active segment, the journal keeps space reserved past its last entry (fallocate,
//! [`JOURNAL_STEP`]) when preallocation is on: an entry written inside the file's size needs
//! no inode write at the flush's fdatasync, and the journal's fsync is the whole extra I/O of
//! an idempotent request. The reserve reads as zeros, which are never a valid entry, so a
//! stop that leaves it behind is cut at the next start like a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::LogError;
use crate::naming;
use crate::types::Offset;

/// Bytes of one journal entry.
pub const ENTRY_BYTES: usize = 72;

/// How far the journal's reserved space grows at a time: 1,024 entries. A flush keeps one to
/// two steps reserved, so a fallocate comes once per ~1,000 idempotent batches.
pub const JOURNAL_STEP: u64 = 1024 * ENTRY_BYTES as u64;

/// How a tag's body digest was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DigestKind {
    /// XXH3-128: what rill makes now. The digest only has to tell one body of the same
    /// caller's key from another, which needs no cryptographic hash, and SHA-256 of a large
    /// body was most of the CPU an idempotency key cost.
    #[default]
    Xxh3,
    /// The first 16 bytes of SHA-256: journal entries written before the switch.
    Sha256,
}

/// Top bit of an entry's last field: its digest is XXH3-128.
const XXH3_FLAG: u32 = 1 << 31;

/// What identifies an idempotent request; carried by every batch of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyTag {
    /// Hash of (API key, topic, `Idempotency-Key`).
    pub key_hash: [u8; 16],
    /// Hash of what the request asked for (body and options): a reused key with another
    /// body is refused.
    pub body_digest: [u8; 16],
    pub digest_kind: DigestKind,
    /// The async request id (a ULID's 16 bytes); all zero for a sync request.
    pub request_id: [u8; 16],
    /// When the request first arrived (ms since the epoch): the dedup window counts from it,
    /// and records without a timestamp got it.
    pub created_ms: i64,
}

impl IdempotencyTag {
    /// The producerId that marks this request's batches in the log: the key hash's first 8
    /// bytes without the sign bit (so never Kafka's -1, and the same for every retry).
    pub fn producer_id(&self) -> i64 {
        let first: [u8; 8] = self.key_hash[..8].try_into().expect("8 bytes");
        i64::from_be_bytes(first) & i64::MAX
    }
}

/// One batch of an idempotent request: its tag and where it landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub tag: IdempotencyTag,
    pub base_offset: Offset,
    pub record_count: u32,
}

impl JournalEntry {
    /// A mark: an entry without a batch (record count 0) at the log end offset. It tells
    /// recovery that every marked batch below `log_end` has its entry before the mark, so the
    /// search for a marked batch whose entry was lost starts there (see [`JournalLoad`]).
    pub fn mark(log_end: Offset) -> Self {
        Self {
            tag: IdempotencyTag {
                key_hash: [0; 16],
                body_digest: [0; 16],
                digest_kind: DigestKind::Xxh3,
                request_id: [0; 16],
                created_ms: 0,
            },
            base_offset: log_end,
            record_count: 0,
        }
    }

    pub fn is_mark(&self) -> bool {
        self.record_count == 0
    }

    /// The offset after this entry's batch (a mark's own offset).
    pub fn end_offset(&self) -> Offset {
        self.base_offset + Offset::from(self.record_count)
    }

    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[4..20].copy_from_slice(&self.tag.key_hash);
        out[20..36].copy_from_slice(&self.tag.body_digest);
        out[36..52].copy_from_slice(&self.tag.request_id);
        out[52..60].copy_from_slice(&self.tag.created_ms.to_be_bytes());
        out[60..68].copy_from_slice(&self.base_offset.to_be_bytes());
        let flag = match self.tag.digest_kind {
            DigestKind::Xxh3 => XXH3_FLAG,
            DigestKind::Sha256 => 0,
        };
        out[68..72].copy_from_slice(&(self.record_count | flag).to_be_bytes());
        let crc = crc32c::crc32c(&out[4..]);
        out[..4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// `None` if the bytes are not a whole entry with a valid checksum.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ENTRY_BYTES] = bytes.try_into().ok()?;
        let crc = u32::from_be_bytes(bytes[..4].try_into().ok()?);
        if crc != crc32c::crc32c(&bytes[4..]) {
            return None;
        }
        let array = |range: std::ops::Range<usize>| -> [u8; 16] {
            bytes[range].try_into().expect("16 bytes")
        };
        let last = u32::from_be_bytes(bytes[68..72].try_into().ok()?);
        Some(Self {
            tag: IdempotencyTag {
                key_hash: array(4..20),
                body_digest: array(20..36),
                digest_kind: if last & XXH3_FLAG != 0 {
                    DigestKind::Xxh3
                } else {
                    DigestKind::Sha256
                },
                request_id: array(36..52),
                created_ms: i64::from_be_bytes(bytes[52..60].try_into().ok()?),
            },
            base_offset: i64::from_be_bytes(bytes[60..68].try_into().ok()?),
            record_count: last & !XXH3_FLAG,
        })
    }
}

/// Which entries a log still vouches for.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    pub log_start: Offset,
    pub log_end: Offset,
    /// Entries created before this (ms since the epoch) are out of the window.
    pub oldest_ms: i64,
}

impl Liveness {
    fn keeps(&self, entry: &JournalEntry) -> bool {
        !entry.is_mark()
            && entry.tag.created_ms >= self.oldest_ms
            && entry.base_offset >= self.log_start
            && entry.base_offset < self.log_end
    }
}

/// What [`IdempotencyJournal::load`] found.
#[derive(Debug)]
pub struct JournalLoad {
    /// The journal open for appends; `None` if the partition has none yet.
    pub journal: Option<IdempotencyJournal>,
    /// The entries the log still vouches for, in offset order (no marks).
    pub entries: Vec<JournalEntry>,
    /// Where recovery must look for marked batches whose entries were lost: every marked
    /// batch from here on has no entry (an entry is written before its batch, and the
    /// journal's valid entries are a prefix). `None` without a journal: it is created, and
    /// made durable, before the partition's first marked batch is written.
    pub orphans_from: Option<Offset>,
}

/// A partition's open journal file.
#[derive(Debug)]
pub struct IdempotencyJournal {
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of entries, those in `unwritten` included.
    len: u64,
    /// Entries appended since the last flush took them: the last `unwritten.len()` bytes
    /// of `len`, in memory until the flush writes them.
    unwritten: Vec<u8>,
    /// The file's size: `len` plus space reserved for entries to come (written zeros).
    reserved_to: u64,
    /// Bytes `0..durable_blocks_to` are written blocks (entries or zeros, never holes or
    /// unwritten extents) inside a file size, all made durable by an fdatasync of the journal:
    /// an entry written there changes no metadata a crash could lose.
    durable_blocks_to: u64,
    /// Whether a [`JournalSync`] write-back is sound on this file system.
    write_back_ok: bool,
}

/// What a flush does with the journal, before it fdatasyncs the segments: write the entries
/// appended since the last flush, then make them durable in one of two ways.
#[derive(Debug)]
pub struct JournalSync {
    file: Arc<File>,
    /// The entries to write and the file position they go to. Written by the flush (one
    /// `pwrite` per flush, not one per batch on the partition's thread): a crash before
    /// that loses them with their batches' acknowledgements, and recovery cuts the batches.
    unwritten: Option<(u64, Vec<u8>)>,
    /// `sync_file_range` (write the dirty pages, wait until the device has them), no cache
    /// flush of its own: the segment's `fdatasync` that follows flushes the device's write
    /// cache, and a flush makes every write completed before it durable. Sound for pure
    /// overwrites of written, synced blocks (no metadata to commit) on ext4 and XFS, whose
    /// `fdatasync` always ends in a cache flush when the device has a volatile cache. Saves
    /// the journal its own cache flush: an idempotent request's fsync cost was that flush.
    /// Otherwise `fdatasync`: an entry lies past [`IdempotencyJournal`]'s durable blocks (its
    /// write needs metadata committed: a larger size, allocated blocks), or the file system
    /// is not one where the write-back is sound.
    write_back: bool,
}

impl JournalSync {
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn is_write_back(&self) -> bool {
        self.write_back
    }

    /// Blocking. A write-back must be followed by an `fdatasync` of another file on the
    /// same file system before what it wrote counts as durable.
    pub fn sync(self) -> std::io::Result<()> {
        if let Some((at, bytes)) = &self.unwritten {
            self.file.write_all_at(bytes, *at)?;
        }
        if self.write_back {
            write_back_and_wait(&self.file)
        } else {
            self.file.sync_data()
        }
    }
}

/// Starts writeback of every dirty page of `file` and waits for all of it (and for
/// writeback already running) to complete; reports writeback errors like `fdatasync`.
fn write_back_and_wait(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain system call on a descriptor `file` keeps open; offset 0 with length 0
    // means the whole file.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the file system holding `file` (or directory) makes a [`JournalSync`] write-back
/// sound: ext4 and XFS (a data=journal ext4 commits the entries with the segment's fsync
/// instead, also sound). Others (btrfs copies on write, so no write is an overwrite; tmpfs;
/// network file systems) get an fdatasync per flush.
// `f_type` is i64 here but narrower on some architectures.
#[allow(clippy::useless_conversion)]
pub fn write_back_ok(file: &File) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    rustix::fs::fstatfs(file)
        .is_ok_and(|fs| matches!(i64::from(fs.f_type), EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC))
}

impl IdempotencyJournal {
    /// Reads the journal in `dir` (if any): the entries `live` keeps, the journal open for
    /// appends, and where recovery's search for orphaned marked batches starts. Cuts a torn
    /// tail. Entries past the log end (their batches were cut by recovery) are removed from
    /// the file, so that they never stand in for the entries of batches that take their
    /// offsets later; the file is rewritten then, and when most of it is dead.
    pub fn load(dir: &Path, live: Liveness) -> Result<JournalLoad, LogError> {
        let path = naming::idempotency_journal_file(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(JournalLoad {
                    journal: None,
                    entries: Vec::new(),
                    orphans_from: None,
                })
            }
            Err(e) => return Err(LogError::io("reading idempotency journal", path, e)),
        };
        let valid: Vec<JournalEntry> = bytes
            .chunks(ENTRY_BYTES)
            .map_while(JournalEntry::decode)
            .collect();
        let fresh: Vec<JournalEntry> = valid
            .iter()
            .filter(|e| e.end_offset() <= live.log_end)
            .copied()
            .collect();
        // No valid entry at all (a journal from before marks, or damaged): the whole log.
        let orphans_from = fresh
            .last()
            .map_or(live.log_start, JournalEntry::end_offset);
        let kept: Vec<JournalEntry> = fresh.iter().filter(|e| live.keeps(e)).copied().collect();
        let valid_len = (valid.len() * ENTRY_BYTES) as u64;
        let journal = if fresh.len() < valid.len() || kept.len() * 2 < valid.len() {
            if fresh.len() < valid.len() {
                log::warn!(
                    "{}: dropped {} entries whose batches recovery cut",
                    path.display(),
                    valid.len() - fresh.len()
                );
            }
            Self::rewrite(&path, &kept, orphans_from)?
        } else {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io("opening idempotency journal", &path, e))?;
            if valid_len != bytes.len() as u64 {
                let tail = &bytes[valid_len as usize..];
                if tail.iter().all(|&b| b == 0) {
                    log::info!(
                        "{}: cut {} bytes of reserved space a stop left behind",
                        path.display(),
                        tail.len()
                    );
                } else {
                    log::warn!("{}: cut {} bytes of torn tail", path.display(), tail.len());
                }
                file.set_len(valid_len)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| LogError::io("cutting idempotency journal", &path, e))?;
            }
            Self {
                path,
                write_back_ok: write_back_ok(&file),
                file: Arc::new(file),
                len: valid_len,
                unwritten: Vec::new(),
                reserved_to: valid_len,
                // Nothing known durable: the first flush fdatasyncs.
                durable_blocks_to: 0,
            }
        };
        Ok(JournalLoad {
            journal: Some(journal),
            entries: kept,
            orphans_from: Some(orphans_from),
        })
    }

    /// Creates the journal of `dir` holding one mark at `log_end`, durably (temporary file,
    /// fsync, rename, directory fsync), before the partition's first marked batch: so a
    /// partition without a journal file has no marked batch, and recovery need not search
    /// one without a bound. Once per partition.
    pub fn create(dir: &Path, log_end: Offset) -> Result<Self, LogError> {
        Self::rewrite(&naming::idempotency_journal_file(dir), &[], log_end)
    }

    /// Replaces the file with `entries` and a mark at `bound` after them (unless the last
    /// entry ends there), atomically.
    fn rewrite(path: &Path, entries: &[JournalEntry], bound: Offset) -> Result<Self, LogError> {
        let tmp = path.with_extension(format!("journal{}", naming::TMP_SUFFIX));
        let mut bytes = Vec::with_capacity((entries.len() + 1) * ENTRY_BYTES);
        for entry in entries {
            bytes.extend_from_slice(&entry.encode());
        }
        if entries.last().map(JournalEntry::end_offset) != Some(bound) {
            bytes.extend_from_slice(&JournalEntry::mark(bound).encode());
        }
        let write = || -> std::io::Result<File> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_data()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().read(true).write(true).open(path)
        };
        let file = write().map_err(|e| LogError::io("writing idempotency journal", path, e))?;
        let len = bytes.len() as u64;
        Ok(Self {
            path: path.to_path_buf(),
            write_back_ok: write_back_ok(&file),
            file: Arc::new(file),
            len,
            unwritten: Vec::new(),
            reserved_to: len,
            durable_blocks_to: len,
        })
    }

    /// Adds one entry at the end, in memory: the partition's next flush writes and syncs it
    /// ([`IdempotencyJournal::sync_for_flush`]) before it syncs the batch's segment.
    pub fn append(&mut self, entry: &JournalEntry) {
        self.unwritten.extend_from_slice(&entry.encode());
        self.len += ENTRY_BYTES as u64;
        self.reserved_to = self.reserved_to.max(self.len);
    }

    /// The entries still in memory and the file position they go to, for a flush to write.
    fn take_unwritten(&mut self) -> Option<(u64, Vec<u8>)> {
        (!self.unwritten.is_empty()).then(|| {
            let at = self.len - self.unwritten.len() as u64;
            (at, std::mem::take(&mut self.unwritten))
        })
    }

    /// How many bytes [`IdempotencyJournal::reserve`] would add now: enough to keep one to
    /// two [`JOURNAL_STEP`]s reserved past the last entry; 0 while one step is left.
    pub fn reserve_needed(&self) -> u64 {
        if self.reserved_to >= self.len + JOURNAL_STEP {
            return 0;
        }
        (self.len / JOURNAL_STEP + 2) * JOURNAL_STEP - self.reserved_to
    }

    /// Reserves `bytes` more past the reserved end (what [`IdempotencyJournal::reserve_needed`]
    /// asked for) by writing zeros, not with `fallocate`: an entry written into an unwritten
    /// extent would need the extent's conversion committed, which only the journal's own
    /// fdatasync guarantees (a [`JournalSync`] write-back needs written blocks). A failure only
    /// costs speed (entries then grow the file as without a reserve), so it is logged; the
    /// next try comes a step later.
    pub fn reserve(&mut self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let zeros = vec![0u8; bytes as usize];
        match self.file.write_all_at(&zeros, self.reserved_to) {
            Ok(()) => self.reserved_to += bytes,
            Err(e) => {
                log::debug!("{}: reserving space: {e}", self.path.display());
                // Whatever part was written goes again; if that fails too, the next start
                // cuts the zeros like any reserve a stop left behind.
                let _ = self.file.set_len(self.reserved_to);
            }
        }
    }

    /// How the flush about to run must sync the entries written since the last one.
    /// `segment_fsync_follows`: the flush fdatasyncs a segment after the journal (a
    /// [`JournalSync`] write-back relies on its cache flush). Blocks reserved by now count
    /// as durable once an `Fsync` returns (a failed flush stops the partition).
    pub fn sync_for_flush(&mut self, segment_fsync_follows: bool) -> JournalSync {
        let write_back =
            self.write_back_ok && segment_fsync_follows && self.len <= self.durable_blocks_to;
        if !write_back {
            self.durable_blocks_to = self.reserved_to;
        }
        JournalSync {
            file: Arc::clone(&self.file),
            unwritten: self.take_unwritten(),
            write_back,
        }
    }

    /// The shutdown's flush: the reserved space cut, every entry written, an fdatasync.
    pub fn sync_for_shutdown(&mut self) -> JournalSync {
        self.release_reserve();
        JournalSync {
            file: Arc::clone(&self.file),
            unwritten: self.take_unwritten(),
            write_back: false,
        }
    }

    /// Cuts the reserved space, so a cleanly stopped journal ends at its last entry. Failing
    /// costs disk space, not entries (the next start cuts the zeros), so it is logged.
    fn release_reserve(&mut self) {
        if self.reserved_to > self.len {
            if let Err(e) = self.file.set_len(self.len) {
                log::warn!("{}: cutting reserved space: {e}", self.path.display());
            }
            self.reserved_to = self.len;
            self.durable_blocks_to = self.durable_blocks_to.min(self.len);
        }
    }

    /// Takes the last entry back (its batch could not be written). An error means the file
    /// may still hold it: the caller must fail-stop.
    pub fn remove_last(&mut self) -> Result<(), LogError> {
        if self.unwritten.len() >= ENTRY_BYTES {
            // Still in memory (always, right after an append): nothing to cut in the file.
            self.unwritten.truncate(self.unwritten.len() - ENTRY_BYTES);
            self.len -= ENTRY_BYTES as u64;
            return Ok(());
        }
        let len = self.len.saturating_sub(ENTRY_BYTES as u64);
        self.file
            .set_len(len)
            .map_err(|e| LogError::io("cutting idempotency journal", &self.path, e))?;
        self.len = len;
        self.reserved_to = len;
        // The cut is not durable until an fdatasync: an entry written at `len` now extends
        // the file, so the next flush fdatasyncs.
        self.durable_blocks_to = self.durable_blocks_to.min(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, base_offset: Offset, created_ms: i64) -> JournalEntry {
        JournalEntry {
            tag: IdempotencyTag {
                key_hash: [n; 16],
                body_digest: [n ^ 0xff; 16],
                digest_kind: if n.is_multiple_of(2) {
                    DigestKind::Xxh3
                } else {
                    DigestKind::Sha256
                },
                request_id: [0; 16],
                created_ms,
            },
            base_offset,
            record_count: 3,
        }
    }

    #[test]
    fn an_entry_written_before_the_digest_switch_reads_as_sha256() {
        // The layout entries had before the flag existed: record_count alone in the last field.
        let mut bytes = [0u8; ENTRY_BYTES];
        bytes[4..20].copy_from_slice(&[1; 16]);
        bytes[20..36].copy_from_slice(&[2; 16]);
        bytes[52..60].copy_from_slice(&5i64.to_be_bytes());
        bytes[60..68].copy_from_slice(&40i64.to_be_bytes());
        bytes[68..72].copy_from_slice(&7u32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[4..]);
        bytes[..4].copy_from_slice(&crc.to_be_bytes());
        let entry = JournalEntry::decode(&bytes).expect("a valid entry");
        assert_eq!(entry.tag.digest_kind, DigestKind::Sha256);
        assert_eq!(entry.tag.body_digest, [2; 16]);
        assert_eq!((entry.base_offset, entry.record_count), (40, 7));
        assert_eq!(
            entry.encode(),
            bytes,
            "a SHA-256 entry is written as before"
        );
    }

    #[test]
    fn entries_round_trip_and_any_flipped_bit_is_detected() {
        let e = entry(7, 42, 1_700_000_000_000);
        let bytes = e.encode();
        assert_eq!(JournalEntry::decode(&bytes), Some(e));
        for bit in 0..ENTRY_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(JournalEntry::decode(&damaged), None, "bit {bit}");
        }
    }

    fn live(log_start: Offset, log_end: Offset, oldest_ms: i64) -> Liveness {
        Liveness {
            log_start,
            log_end,
            oldest_ms,
        }
    }

    fn file_len(dir: &Path) -> u64 {
        std::fs::metadata(naming::idempotency_journal_file(dir))
            .unwrap()
            .len()
    }

    #[test]
    fn a_new_journal_is_one_mark_at_the_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let journal = IdempotencyJournal::create(dir.path(), 42).unwrap();
        drop(journal);
        let bytes = std::fs::read(naming::idempotency_journal_file(dir.path())).unwrap();
        let mark = JournalEntry::decode(&bytes).expect("one whole entry");
        assert!(mark.is_mark());
        assert_eq!((mark.base_offset, mark.end_offset()), (42, 42));
        let load = IdempotencyJournal::load(dir.path(), live(0, 50, 0)).unwrap();
        assert!(load.entries.is_empty(), "a mark is not a request's entry");
        assert_eq!(load.orphans_from, Some(42));
    }

    #[test]
    fn load_cuts_a_torn_tail_and_entries_past_the_log_end_and_drops_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = IdempotencyJournal::create(dir.path(), 5).unwrap();
        // Retained away, out of the window, live, live, its batch cut by recovery.
        for e in [
            entry(2, 5, 1000),
            entry(1, 17, 10),
            entry(3, 20, 1000),
            entry(4, 23, 1000),
            entry(5, 26, 1000),
        ] {
            journal.append(&e);
        }
        journal.sync_for_shutdown().sync().unwrap();
        drop(journal);
        let path = naming::idempotency_journal_file(dir.path());
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&entry(6, 29, 1000).encode()[..30]).unwrap();
        drop(file);

        let load = IdempotencyJournal::load(dir.path(), live(10, 26, 500)).unwrap();
        assert_eq!(load.entries, vec![entry(3, 20, 1000), entry(4, 23, 1000)]);
        // Recovery looks for orphans after the last entry whose batch is still there.
        assert_eq!(load.orphans_from, Some(26));
        // Rewritten with the live entries; the last one ends at the bound, so no mark.
        assert_eq!(file_len(dir.path()), 2 * ENTRY_BYTES as u64);

        // The entry cut at 26 is gone from the file, so a new batch at 26 gets its own.
        let mut journal = load.journal.unwrap();
        journal.append(&entry(7, 26, 2000));
        journal.sync_for_shutdown().sync().unwrap();
        drop(journal);
        let load = IdempotencyJournal::load(dir.path(), live(10, 29, 500)).unwrap();
        assert_eq!(load.entries.len(), 3);
        assert_eq!(load.entries[2], entry(7, 26, 2000));
        assert_eq!(load.orphans_from, Some(29));
    }

    #[test]
    fn a_rewrite_keeps_the_bound_as_a_mark_when_its_last_entry_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = IdempotencyJournal::create(dir.path(), 0).unwrap();
        for e in [
            entry(1, 0, 10),
            entry(2, 3, 10),
            entry(3, 6, 1000),
            entry(4, 9, 10),
        ] {
            journal.append(&e);
        }
        journal.sync_for_shutdown().sync().unwrap();
        drop(journal);
        let load = IdempotencyJournal::load(dir.path(), live(0, 12, 500)).unwrap();
        assert_eq!(load.entries, vec![entry(3, 6, 1000)]);
        assert_eq!(load.orphans_from, Some(12));
        assert_eq!(
            file_len(dir.path()),
            2 * ENTRY_BYTES as u64,
            "entry 3 and a mark"
        );
        let load = IdempotencyJournal::load(dir.path(), live(0, 12, 500)).unwrap();
        assert_eq!(load.entries, vec![entry(3, 6, 1000)]);
        assert_eq!(
            load.orphans_from,
            Some(12),
            "the mark still bounds the search"
        );
    }

    #[test]
    fn a_journal_without_a_valid_entry_sends_the_search_to_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = naming::idempotency_journal_file(dir.path());
        std::fs::write(&path, [0x5a; ENTRY_BYTES + 10]).unwrap();
        let load = IdempotencyJournal::load(dir.path(), live(7, 30, 0)).unwrap();
        assert!(load.entries.is_empty());
        assert_eq!(load.orphans_from, Some(7));
    }

    #[test]
    fn a_missing_journal_is_no_entries_and_no_search() {
        let dir = tempfile::tempdir().unwrap();
        let load = IdempotencyJournal::load(dir.path(), live(0, 0, 0)).unwrap();
        assert!(load.journal.is_none() && load.entries.is_empty());
        assert_eq!(load.orphans_from, None);
    }

    #[test]
    fn a_tags_producer_id_is_its_key_hash_without_the_sign_bit() {
        let mut t = entry(0xff, 0, 0).tag;
        assert_eq!(t.producer_id(), i64::MAX);
        t.key_hash[0] = 0x01;
        assert_eq!(t.producer_id(), 0x01ff_ffff_ffff_ffff);
    }
}
