//! One segment: a file of concatenated RecordBatch v2 batches starting at `base_offset`, plus
//! its sparse [`OffsetIndex`].
//!
//! Bytes go in with positional writes (`pwrite`) and come out through a read-only memory map.
//! Writing through `pwrite` rather than into a mapping is what turns a full disk into an
//! `ENOSPC` error instead of a SIGBUS. The map is only ever read below `len`, the committed
//! length, so no read touches a page past the end of the file.
//!
//! Invariant: `[0, len)` holds whole, valid batches with offsets `base_offset..next_offset`,
//! contiguous; nothing past `len` is ever served. A failed append leaves `len` unchanged and
//! cuts the file back to it.
//!
//! Preallocation: the active segment's file may reach past `len` into space reserved with
//! `fallocate` (reads as zeros). Appending inside it leaves the file size alone, so an
//! fdatasync has only the data to write, not the inode too — on ext4 a third less CPU and
//! latency per fdatasync (docs/FORMAT.md, "Preallocated space"). Recovery already
//! ends the log at the first zero header; a segment is cut back to `len` when it is sealed
//! and at a clean shutdown, so files at rest are exact.
//!
//! Page cache: once a flush has made bytes durable, their pages are handed back to the
//! kernel ([`PageCacheRelease`]), all but the active segment's newest few MiB.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use memmap2::Mmap;

use crate::error::LogError;
use crate::index::OffsetIndex;
use crate::naming;
use crate::record_batch::{self, BatchError, BatchHeader};
use crate::recovery::{self, ScanOutcome};
use crate::types::Offset;

#[derive(Debug)]
pub struct Segment {
    base_offset: Offset,
    path: PathBuf,
    /// Shared with running flushes, which fsync it off this thread: cheaper than a `dup`
    /// and a `close` per flush.
    file: Arc<File>,
    /// Committed length: bytes below this are whole batches.
    len: u64,
    next_offset: Offset,
    /// Largest batch max-timestamp seen (for time-based retention); -1 when empty.
    max_timestamp: i64,
    index: OffsetIndex,
    bytes_since_index_entry: u64,
    /// Read-only map of `[0, map_len)`; remapped lazily when reads reach past it.
    map: Option<Mmap>,
    /// The file size preallocation was last asked to reach (or the size the file was cut
    /// to): a new [`Preallocation`] is handed out only past it.
    preallocated_to: u64,
    /// Shared with a running [`Preallocation`]; set once the segment no longer grows.
    released: Arc<Mutex<bool>>,
    /// The page cache was last asked to drop `[0, uncached_to)`: a new
    /// [`PageCacheRelease`] starts there.
    uncached_to: u64,
}

/// Synced bytes whose page-cache pages the kernel may drop, asked for off the partition
/// actor's thread after the flush that made them durable.
///
/// Why: every page a write lands in is a freshly allocated page-cache page. On a virtual
/// machine whose free memory was handed back to the host, the first touch of each one
/// costs a fault in the hypervisor — measured here, copying into fresh pages took 3.5 times
/// the system CPU of copying into pages just dropped and reused (bench/RESULTS.md). Dropping
/// what is synced keeps the kernel recycling the same few warm pages instead of spreading
/// the log over all of memory.
#[derive(Debug)]
pub struct PageCacheRelease {
    file: Arc<File>,
    from: u64,
    to: u64,
}

impl PageCacheRelease {
    /// The byte range of the segment file given back.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.from..self.to
    }

    /// Advises the kernel to drop the range. Only advice: dirty or mapped pages are left
    /// where they are, and a failure costs speed, not data, so it is logged.
    pub fn apply(self) {
        let len = std::num::NonZeroU64::new(self.to - self.from);
        let advice = rustix::fs::Advice::DontNeed;
        if let Err(e) = rustix::fs::fadvise(&*self.file, self.from, len, advice) {
            log::debug!("dropping synced pages {}..{}: {e}", self.from, self.to);
        }
    }
}

/// Space to reserve at the end of a segment file, off the partition actor's thread (it runs
/// with a flush, on the blocking pool).
#[derive(Debug)]
pub struct Preallocation {
    file: Arc<File>,
    path: PathBuf,
    to: u64,
    /// How much the reserved space grows (what `[storage] min_free_bytes` must allow).
    grows_by: u64,
    released: Arc<Mutex<bool>>,
}

impl Preallocation {
    pub fn grows_by(&self) -> u64 {
        self.grows_by
    }

    /// Reserves `[0, to)` (blocks already there are left as they are). A failure only costs
    /// speed — the file then grows as it is written, as without preallocation — so it is
    /// logged, not returned; the next request comes a step later.
    pub fn apply(self) {
        // Under the lock: a segment sealed meanwhile must not grow a zero tail again.
        let released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        if *released {
            return;
        }
        let flags = rustix::fs::FallocateFlags::empty();
        if let Err(e) = rustix::fs::fallocate(&self.file, flags, 0, self.to) {
            log::debug!(
                "{}: preallocating {} bytes: {e}; the file grows as written",
                self.path.display(),
                self.to
            );
        }
    }
}

/// What recovery cut off the end of a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutTail {
    pub bytes: u64,
    /// The cut bytes were all zeros: preallocated space a stop left behind (or space the
    /// file system zero-filled), not damage — the batches before it are whole.
    pub only_zeros: bool,
}

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendedBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub position: u64,
}

impl Segment {
    /// Creates a new, empty segment (and its index) in `dir`. Fails if the file exists.
    pub fn create(dir: &Path, base_offset: Offset) -> Result<Self, LogError> {
        let path = naming::segment_file(dir, base_offset);
        let index_path = naming::index_file(dir, base_offset);
        // A stale index without its segment would be trusted later: start it empty.
        let _ = std::fs::remove_file(&index_path);
        // The index first, the segment file last: once the `.log` exists nothing else can
        // fail, so a failed roll never leaves an empty segment behind. (One left behind would
        // sit inside the active segment's offsets once the log moved on without rolling, and
        // recovery would then drop every later segment, acknowledged data included.) A
        // leftover index without its segment is removed at the next start.
        let (index, _) = OffsetIndex::open(&index_path, base_offset, 0)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                let _ = std::fs::remove_file(&index_path);
                LogError::io("creating segment", &path, e)
            })?;
        Ok(Self {
            base_offset,
            path,
            file: Arc::new(file),
            len: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            index,
            bytes_since_index_entry: 0,
            map: None,
            preallocated_to: 0,
            uncached_to: 0,
            released: Arc::default(),
        })
    }

    /// Opens an existing segment and recovers it: the index is checked (rebuilt from the log
    /// if it disagrees), then every batch after the last index entry is validated (length,
    /// CRC, contiguous offsets) and the file is cut after the last valid one.
    ///
    /// Returns the segment and what was cut off its tail.
    pub fn open(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u32,
    ) -> Result<(Self, CutTail), LogError> {
        let path = naming::segment_file(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io("opening segment", &path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| LogError::io("stat of segment", &path, e))?
            .len();
        let index_path = naming::index_file(dir, base_offset);
        let (mut index, problem) = OffsetIndex::open(&index_path, base_offset, file_len)?;
        let map = map_file(&file, &path, file_len)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);

        // Start the scan at the last index entry whose batch really is there; otherwise
        // rebuild the index from the segment's first byte.
        let mut start = None;
        if problem.is_none() {
            if let Some(entry) = index.last_entry() {
                let at = entry.position as usize;
                let expected = base_offset + i64::from(entry.relative_offset);
                if BatchHeader::parse(&bytes[at..]).is_ok_and(|h| h.base_offset == expected) {
                    start = Some((at as u64, expected));
                }
            } else {
                start = Some((0, base_offset));
            }
        }
        let (scan_from, expected_offset) = match start {
            Some(s) => s,
            None => {
                log::warn!(
                    "{}: index {:?} disagrees with the log; rebuilding it",
                    path.display(),
                    problem
                );
                index.clear()?;
                (0, base_offset)
            }
        };

        let mut outcome = recovery::scan(
            bytes,
            scan_from,
            expected_offset,
            index_interval_bytes,
            |offset, position| index.append(offset, position),
        )?;
        let mut scan_from = scan_from;
        if scan_from > 0 && outcome.valid_len == scan_from {
            // Not even the batch the last index entry points at is valid: the index cannot
            // vouch for the bytes before it either (cutting at the entry would make the next
            // start trust an older, unchecked entry and find another end). Scan it all.
            log::warn!(
                "{}: the batch at the last index entry is invalid; rebuilding the index",
                path.display()
            );
            index.clear()?;
            scan_from = 0;
            outcome = recovery::scan(
                bytes,
                0,
                base_offset,
                index_interval_bytes,
                |offset, position| index.append(offset, position),
            )?;
        }
        let ScanOutcome {
            valid_len,
            next_offset,
            max_timestamp,
            last_index_position,
        } = outcome;
        let bytes_since_index_entry = valid_len - last_index_position.unwrap_or(scan_from);

        let truncated = file_len - valid_len;
        let only_zeros = map.as_deref().unwrap_or(&[])[valid_len as usize..]
            .iter()
            .all(|&b| b == 0);
        drop(map);
        if truncated > 0 {
            if only_zeros {
                // Preallocated space left by a stop that was not clean: expected, not damage.
                log::info!(
                    "{}: released {truncated} bytes of unused preallocated space",
                    path.display()
                );
            } else {
                log::warn!(
                    "{}: cut {truncated} bytes of torn or invalid tail after offset {}",
                    path.display(),
                    next_offset - 1
                );
            }
            file.set_len(valid_len)
                .map_err(|e| LogError::io("truncating segment", &path, e))?;
            index.truncate_to_position(valid_len)?;
        }
        index.write_pending()?;
        Ok((
            Self {
                base_offset,
                path,
                file: Arc::new(file),
                len: valid_len,
                next_offset,
                max_timestamp,
                index,
                bytes_since_index_entry,
                map: None,
                preallocated_to: valid_len,
                uncached_to: 0,
                released: Arc::default(),
            },
            CutTail {
                bytes: truncated,
                only_zeros,
            },
        ))
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    /// The offset the next appended record gets.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one whole batch (already stamped with `header.base_offset == next_offset`) at
    /// the end of the segment.
    ///
    /// On error nothing is committed: the file is cut back to its old length so the next
    /// append (e.g. after disk space is freed) starts on a clean boundary.
    pub fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u32,
    ) -> Result<AppendedBatch, LogError> {
        self.append_batches(&[(batch, header)], index_interval_bytes)
    }

    /// [`Segment::append`] of consecutive batches in one write (an idempotent request's batch
    /// and the carrier of its journal entry): one system call, and on error neither is kept.
    /// Returns where the first one went.
    pub fn append_batches(
        &mut self,
        batches: &[(&[u8], &BatchHeader)],
        index_interval_bytes: u32,
    ) -> Result<AppendedBatch, LogError> {
        let position = self.len;
        let written = match batches {
            [(batch, _)] => self.file.write_all_at(batch, position),
            _ => write_all_vectored_at(&self.file, batches, position),
        };
        if let Err(e) = written {
            let err = LogError::io("writing segment", &self.path, e);
            self.preallocated_to = position;
            if let Err(cut) = self.file.set_len(position) {
                log::error!("{}: cannot cut failed write: {cut}", self.path.display());
                return Err(LogError::FailStopped {
                    reason: format!("{err}; then cutting it back failed: {cut}"),
                });
            }
            return Err(err);
        }
        for (batch, header) in batches {
            debug_assert_eq!(header.base_offset, self.next_offset);
            if self.bytes_since_index_entry >= u64::from(index_interval_bytes) && self.len > 0 {
                // An index write failure costs lookup speed, not data: recovery rebuilds it.
                if let Err(e) = self.index.append(header.base_offset, self.len) {
                    log::warn!("{e}; the index will be rebuilt at next start");
                }
                self.bytes_since_index_entry = 0;
            }
            self.bytes_since_index_entry += batch.len() as u64;
            self.len += batch.len() as u64;
            self.next_offset = header.last_offset() + 1;
            self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        }
        let first = batches[0].1;
        Ok(AppendedBatch {
            base_offset: first.base_offset,
            last_offset: first.last_offset(),
            position,
        })
    }

    /// The committed bytes from `position` to the end, through the read map.
    fn committed_from(&mut self, position: u64) -> Result<&[u8], LogError> {
        if self
            .map
            .as_ref()
            .is_none_or(|m| (m.len() as u64) < self.len)
        {
            self.map = map_file(&self.file, &self.path, self.len)?;
        }
        let bytes = self.map.as_deref().unwrap_or(&[]);
        Ok(&bytes[position.min(self.len) as usize..self.len as usize])
    }

    /// Copies whole batches holding offsets `>= offset`, starting with the batch that
    /// contains `offset`, until `max_bytes` would be passed (at least one batch is returned so
    /// a batch larger than `max_bytes` can still be read).
    ///
    /// Every batch on the way must continue the offsets of the one before it and every batch
    /// returned must pass its CRC and carry rill's leader epoch: damaged bytes give
    /// [`LogError::Corrupt`], never wrong data.
    pub fn read(
        &mut self,
        offset: Offset,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        let (mut expected, start) = self.index.lookup(offset);
        let path = self.path.clone();
        let bytes = self.committed_from(start)?;
        let mut at = 0usize;
        let first_len = out.len();
        while at < bytes.len() {
            let corrupt = |source| LogError::Corrupt {
                path: path.clone(),
                position: start + at as u64,
                source,
            };
            let header = BatchHeader::parse(&bytes[at..]).map_err(corrupt)?;
            let total = header.total_len();
            if total > bytes.len() - at {
                return Err(corrupt(BatchError::Truncated {
                    needed: total,
                    available: bytes.len() - at,
                }));
            }
            if header.base_offset != expected || header.last_offset_delta < 0 {
                return Err(corrupt(BatchError::Malformed(format!(
                    "batch base offset {} where {expected} was expected",
                    header.base_offset
                ))));
            }
            expected = header.last_offset() + 1;
            if header.last_offset() >= offset {
                if out.len() > first_len && out.len() - first_len + total > max_bytes {
                    break;
                }
                let batch = &bytes[at..at + total];
                verify_stored(batch).map_err(corrupt)?;
                out.extend_from_slice(batch);
            }
            at += total;
        }
        Ok(())
    }

    /// The committed bytes from the indexed batch at or before `offset` to the end: whole
    /// batches, for [`record_batch::batches`]; the first ones may lie before `offset`.
    pub fn bytes_from(&mut self, offset: Offset) -> Result<&[u8], LogError> {
        let (_, start) = self.index.lookup(offset);
        self.committed_from(start)
    }

    /// Cuts the segment so that it ends before the batch holding `offset`. Returns the new
    /// next offset (batches are never split: a batch straddling `offset` is removed whole).
    pub fn truncate_to(&mut self, offset: Offset) -> Result<Offset, LogError> {
        let (_, start) = self.index.lookup(offset);
        let mut next = self.next_offset;
        let bytes = self.committed_from(start)?;
        let mut at = 0usize;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).map_err(LogError::InvalidBatch)?;
            if header.last_offset() >= offset {
                next = header.base_offset;
                break;
            }
            at += header.total_len();
        }
        let new_len = start + at as u64;
        self.map = None;
        self.file
            .set_len(new_len)
            .map_err(|e| LogError::io("truncating segment", &self.path, e))?;
        self.index.truncate_to_position(new_len)?;
        self.preallocated_to = new_len;
        self.uncached_to = self.uncached_to.min(new_len);
        self.len = new_len;
        self.next_offset = next;
        self.bytes_since_index_entry =
            new_len - self.index.last_entry().map_or(0, |e| u64::from(e.position));
        Ok(next)
    }

    /// Writes the index entries still held in memory: when the segment is sealed and at a
    /// shutdown. A failure costs lookup speed, not data (start-up rebuilds them), so it is
    /// logged.
    pub fn write_index(&mut self) {
        if let Err(e) = self.index.write_pending() {
            log::warn!("{e}; the index will be rebuilt at next start");
        }
    }

    /// Handles for a background fsync of the segment and its index.
    pub fn sync_handles(&self) -> (Arc<File>, Arc<File>) {
        (Arc::clone(&self.file), self.index.sync_handle())
    }

    /// The synced bytes up to `keep` short of the end whose pages may leave the page cache
    /// (call it only when a flush syncs everything appended so far); `None` until that is at
    /// least `min_step` bytes more than last time, so the advice costs one system call per
    /// step. The newest `keep` bytes stay cached for readers following the log.
    pub fn page_cache_release(&mut self, keep: u64, min_step: u64) -> Option<PageCacheRelease> {
        let to = self.len.saturating_sub(keep) & !(PAGE_SIZE - 1);
        if to <= self.uncached_to || to - self.uncached_to < min_step {
            return None;
        }
        let from = std::mem::replace(&mut self.uncached_to, to);
        Some(PageCacheRelease {
            file: Arc::clone(&self.file),
            from,
            to,
        })
    }

    /// The preallocation this segment needs next, if any: the file is kept one to two
    /// `step`s ahead of `len`, never past `limit` (the segment size). `None` when `step` is 0,
    /// the space is already asked for, or the segment was released.
    pub fn preallocation(&mut self, step: u64, limit: u64) -> Option<Preallocation> {
        if step == 0 {
            return None;
        }
        let to = (self.len / step + 2).saturating_mul(step).min(limit);
        let reserved = self.preallocated_to.max(self.len);
        if to <= reserved {
            return None;
        }
        // A released segment is refused in `apply`, under the lock that orders it with the
        // cut.
        self.preallocated_to = to;
        Some(Preallocation {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            to,
            grows_by: to - reserved,
            released: Arc::clone(&self.released),
        })
    }

    /// Stops preallocation for good and cuts any reserved space past `len`: called when the
    /// segment is sealed by a roll and at a clean shutdown, so files at rest end at their last
    /// batch (what Kafka's tools expect). Failing to cut costs disk space, not data — reads
    /// and recovery stop at `len` — so it is logged.
    pub fn release_preallocation(&mut self) {
        let mut released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        *released = true;
        if self.preallocated_to > self.len {
            if let Err(e) = self.file.set_len(self.len) {
                log::warn!("{}: cutting preallocated space: {e}", self.path.display());
            }
            self.preallocated_to = self.len;
        }
    }

    /// Deletes the segment's files. The caller has already removed it from the log.
    pub fn delete(self) -> Result<(), LogError> {
        let index_path = self.index.path().to_path_buf();
        drop(self.map);
        std::fs::remove_file(&self.path)
            .map_err(|e| LogError::io("deleting segment", &self.path, e))?;
        match std::fs::remove_file(&index_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LogError::io("deleting index", &index_path, e))
            }
            _ => Ok(()),
        }
    }
}

/// `pwritev` of `batches` at `position`, finishing a short write with plain writes.
fn write_all_vectored_at(
    file: &File,
    batches: &[(&[u8], &BatchHeader)],
    position: u64,
) -> std::io::Result<()> {
    let slices: Vec<std::io::IoSlice<'_>> = batches
        .iter()
        .map(|(batch, _)| std::io::IoSlice::new(batch))
        .collect();
    let mut skip = loop {
        match rustix::io::pwritev(file, &slices, position) {
            Err(rustix::io::Errno::INTR) => continue,
            result => break result?,
        }
    };
    let mut at = position + skip as u64;
    for (batch, _) in batches {
        if skip >= batch.len() {
            skip -= batch.len();
            continue;
        }
        file.write_all_at(&batch[skip..], at)?;
        at += (batch.len() - skip) as u64;
        skip = 0;
    }
    Ok(())
}

/// The page size the page-cache advice is rounded to (the kernel drops whole pages only).
const PAGE_SIZE: u64 = 4096;

/// The partition leader epoch rill stamps on every stored batch. rill is its partitions' only
/// leader, so the epoch never changes; stamping a known value lets reads detect damage to
/// the four header bytes the CRC does not cover.
pub const LEADER_EPOCH: i32 = 0;

/// Checks a stored batch: CRC over attributes..end, plus the leader epoch outside it.
pub fn verify_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = record_batch::verify(batch)?;
    if header.partition_leader_epoch != LEADER_EPOCH {
        return Err(BatchError::Malformed(format!(
            "partition leader epoch {} is not rill's {LEADER_EPOCH}",
            header.partition_leader_epoch
        )));
    }
    Ok(header)
}

/// Stamps the fields outside the CRC that the log owns: base offset and leader epoch.
pub fn stamp(batch: &mut [u8], base_offset: Offset) {
    record_batch::stamp_base_offset(batch, base_offset);
    batch[12..16].copy_from_slice(&LEADER_EPOCH.to_be_bytes());
}

/// Maps `[0, len)` of `file` read-only; `None` for an empty range (a zero-length map is an
/// error on Linux).
fn map_file(file: &File, path: &Path, len: u64) -> Result<Option<Mmap>, LogError> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the map is only read below the committed length, which this process never
    // shrinks while the map lives (truncation drops the map first), and no other process
    // writes the data dir (it is locked). Bytes read are still CRC-checked before serving.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file) }
        .map_err(|e| LogError::io("mapping segment", path, e))?;
    Ok(Some(map))
}
