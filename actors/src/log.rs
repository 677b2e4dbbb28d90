//! A partition's log: an ordered run of [`Segment`]s in one directory, the newest one active.
//!
//! Invariant: segments are contiguous — each one's base offset is the next offset of the one
//! before — and only the last (active) segment is ever appended to. Offsets are assigned here,
//! by stamping the base offset into the batch header (outside the CRC, so batches are built and
//! checksummed elsewhere, in parallel, and only stamped and copied here).
//!
//! Opening a log recovers it: every segment's tail after its last index entry is validated
//! and the log is the longest valid prefix — if a segment turns out torn, the segments after
//! it cannot continue it and are deleted. See docs/FORMAT.md, "Recovery".

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::LogError;
use crate::idempotency::{IdempotencyJournal, IdempotencyTag, JournalEntry, JournalSync, Liveness};
use crate::naming;
use crate::record_batch::{self, BatchHeader};
use crate::segment::{self, AppendedBatch, PageCacheRelease, Preallocation, Segment};
use crate::types::{LogConfig, Offset};

/// How much a log may grow before its idempotency journal (if it has one) gets a mark and an
/// fsync: recovery then reads at most about this many bytes of the log (batch headers, and
/// the small carrier batches whole) for entries the journal file lacks.
pub const MARK_INTERVAL_BYTES: u64 = 64 << 20;

/// How much of the active segment's newest synced bytes a flush leaves in the page cache
/// (for readers following the log); the rest is given back ([`PageCacheRelease`]).
const PAGE_CACHE_KEEP_BYTES: u64 = 4 << 20;

/// The least the active segment's cached range is given back in, so the advice costs one
/// system call per this many bytes appended.
const PAGE_CACHE_STEP_BYTES: u64 = 1 << 20;

#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Never empty: there is always an active segment.
    segments: Vec<Segment>,
    /// Segments written to since the last [`PartitionLog::take_unsynced`], by base offset.
    unsynced: Vec<Offset>,
    /// Set when a segment file was created or deleted: the directory must be fsynced too.
    dir_unsynced: bool,
    /// `[storage] min_free_bytes`, shared by every partition of the data dir.
    reserve: Option<Arc<DiskReserve>>,
    /// Created by the first idempotent append (or found at start).
    journal: Option<IdempotencyJournal>,
    /// Bytes appended since the journal's last mark: past [`MARK_INTERVAL_BYTES`] a flush
    /// writes a mark and fsyncs the journal, which bounds recovery's reading of the log.
    bytes_since_mark: u64,
    /// `[storage] preallocate_bytes`: how far ahead of its end the active segment's space is
    /// reserved, in steps of this size; 0 = never.
    preallocate_step: u64,
}

/// A floor of free space under the data dir (`[storage] min_free_bytes`): an append that
/// would leave less free is refused as [`LogError::DiskFull`] (507) before anything is written,
/// so the disk never fills up under the broker (or whatever else shares it).
///
/// Cheap on the append path: the free space is read with statvfs(2) at most every
/// [`RESERVE_REFRESH`] or [`RESERVE_REFRESH_BYTES`] appended, and in between estimated by
/// subtracting what was appended. Near the floor (the estimate says no) it is read again
/// before refusing, so freed space is seen at once.
#[derive(Debug)]
pub struct DiskReserve {
    dir: PathBuf,
    min_free: u64,
    state: Mutex<ReserveState>,
}

#[derive(Debug, Default)]
struct ReserveState {
    /// Estimated free bytes (for unprivileged writers: `f_bavail`).
    free: u64,
    /// Bytes claimed since `free` was read.
    claimed: u64,
    read_at: Option<Instant>,
    /// Whether the last statvfs failed (logged once, not per append).
    failing: bool,
}

/// How stale the free-space reading may get.
pub const RESERVE_REFRESH: Duration = Duration::from_millis(100);
/// How many appended bytes before the free space is read again.
pub const RESERVE_REFRESH_BYTES: u64 = 1 << 20;

impl DiskReserve {
    pub fn new(dir: impl Into<PathBuf>, min_free: u64) -> Self {
        Self {
            dir: dir.into(),
            min_free,
            state: Mutex::new(ReserveState::default()),
        }
    }

    /// Claims `bytes` of the free space, or refuses if writing them would leave less than
    /// the reserve free.
    pub fn claim(&self, bytes: u64) -> Result<(), LogError> {
        let needed = self.min_free.saturating_add(bytes);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = state
            .read_at
            .is_none_or(|at| at.elapsed() >= RESERVE_REFRESH)
            || state.claimed >= RESERVE_REFRESH_BYTES
            || state.free < needed;
        if stale {
            match free_bytes(&self.dir) {
                Ok(free) => {
                    state.free = free;
                    state.claimed = 0;
                    state.read_at = Some(Instant::now());
                    state.failing = false;
                }
                Err(e) => {
                    // Cannot tell: let the write itself find out.
                    if !std::mem::replace(&mut state.failing, true) {
                        log::warn!(
                            "{}: cannot read free space for min_free_bytes: {e}",
                            self.dir.display()
                        );
                    }
                    return Ok(());
                }
            }
        }
        if state.free < needed {
            return Err(LogError::DiskFull {
                path: self.dir.clone(),
            });
        }
        state.free -= bytes;
        state.claimed += bytes;
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// What [`PartitionLog::load_idempotency`] read from the log after the journal file's end.
struct CarriedEntries {
    /// Entries from carrier batches, in offset order.
    entries: Vec<JournalEntry>,
    /// The base offset of the first marked batch not followed by its carrier.
    torn_at: Option<Offset>,
}

/// What a background flush must fsync to make everything appended so far durable.
#[derive(Debug)]
pub struct SyncTargets {
    /// The idempotency journal, when the flush carries a mark: its entries to write and
    /// fsync.
    pub journal: Option<JournalSync>,
    /// Segments and sealed segments' indexes.
    pub files: Vec<Arc<File>>,
    pub dir: Option<PathBuf>,
    /// Space the active segment should reserve, done after the fsyncs so it never delays
    /// the acknowledgements this flush is for by more than once per step.
    pub preallocation: Option<Preallocation>,
    /// Synced bytes to drop from the page cache once the fsyncs have returned (and the
    /// acknowledgements have gone): only then are the pages clean.
    pub page_cache: Vec<PageCacheRelease>,
}

impl SyncTargets {
    /// fsyncs every target. Blocking: run it off the actor's thread.
    ///
    /// The journal goes first, then the directory, then the segments. No order between the
    /// journal and the segments is needed: an acknowledged idempotent batch's entry is durable
    /// through its carrier batch in the segment; the journal file only saves recovery from
    /// reading the log for it.
    pub fn sync(self) -> std::io::Result<()> {
        if let Some(journal) = self.journal {
            journal.sync()?;
        }
        if let Some(dir) = &self.dir {
            File::open(dir)?.sync_all()?;
        }
        for file in &self.files {
            file.sync_data()?;
        }
        if let Some(preallocation) = self.preallocation {
            preallocation.apply();
        }
        Ok(())
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (creating it), recovering every segment. Blocking.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| LogError::io("creating log dir", dir, e))?;
        let mut bases = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| LogError::io("listing log dir", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io("listing log dir", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = naming::parse_segment_file_name(name) {
                bases.push(base);
            } else if naming::parse_index_file_name(name)
                .is_some_and(|b| !naming::segment_file(dir, b).exists())
                || name.ends_with(naming::TMP_SUFFIX)
            {
                // Left behind by a crash between deleting a segment and its index, or mid
                // write of a temporary file: never part of the log.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut dir_unsynced = false;
        let mut bases = bases.into_iter();
        for base in bases.by_ref() {
            if let Some(prev) = segments.last() {
                if prev.next_offset() != base {
                    log::warn!(
                        "{}: segment {base} does not continue offset {}; it and later segments are dropped",
                        dir.display(),
                        prev.next_offset()
                    );
                    delete_segment_files(dir, base)?;
                    break;
                }
            }
            let (segment, cut) = Segment::open(dir, base, config.index_interval_bytes)?;
            segments.push(segment);
            if cut.bytes > 0 && !cut.only_zeros {
                // Anything after a torn segment cannot continue it. A tail of zeros is
                // preallocated space whose cut at the roll failed or was lost in a crash:
                // the batches before it are whole, and the offset check above still drops
                // the next segment if zeros stand where batches were.
                break;
            }
        }
        for base in bases {
            delete_segment_files(dir, base)?;
            dir_unsynced = true;
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            dir_unsynced = true;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            segments,
            unsynced: Vec::new(),
            dir_unsynced,
            reserve: None,
            journal: None,
            bytes_since_mark: 0,
            preallocate_step: 0,
        })
    }

    /// Reads the idempotency journal (if any) and returns the entries whose batches the log
    /// still holds, created at or after `oldest_ms`. Call once, after [`PartitionLog::open`].
    ///
    /// The journal file may lag the log (it is fsynced only at marks): the entries it lacks
    /// are read from their carrier batches in the log after its last valid entry, and written
    /// to it. A marked batch found there without its carrier right after it is cut, with
    /// everything after it: the write of the pair was torn, so it was never acknowledged, and
    /// kept without an entry, a retry of its request would append it a second time.
    pub fn load_idempotency(&mut self, oldest_ms: i64) -> Result<Vec<JournalEntry>, LogError> {
        let live = Liveness {
            log_start: self.start_offset(),
            log_end: self.end_offset(),
            oldest_ms,
        };
        let load = IdempotencyJournal::load(&self.dir, live)?;
        self.journal = load.journal;
        let mut entries = load.entries;
        let Some(from) = load.carried_from else {
            return Ok(entries);
        };
        let carried = self.read_carried_entries(from)?;
        if let Some(torn) = carried.torn_at {
            log::warn!(
                "{}: cut the log at offset {torn} (was {}): an idempotent request's batch without its journal entry after it (a torn write, never acknowledged)",
                self.dir.display(),
                self.end_offset()
            );
            self.truncate_to(torn)?;
        }
        if !carried.entries.is_empty() {
            log::info!(
                "{}: {} idempotency entries read from the log into the journal",
                self.dir.display(),
                carried.entries.len()
            );
            if let Some(journal) = &mut self.journal {
                journal.append_durably(&carried.entries)?;
            }
            entries.extend(carried.entries.into_iter().filter(|e| live.keeps(e)));
        }
        Ok(entries)
    }

    /// Reads the log from `from` for carrier batches (see
    /// [`JournalEntry::carrier_batch`]): every marked batch must be followed by the carrier
    /// of its entry.
    fn read_carried_entries(&mut self, from: Offset) -> Result<CarriedEntries, LogError> {
        let from = from.max(self.start_offset());
        let first = self.segments.partition_point(|s| s.next_offset() <= from);
        let mut entries = Vec::new();
        // A marked batch whose carrier is still to come: (base offset, records, producerId).
        let mut expecting: Option<(Offset, u32, i64)> = None;
        for segment in &mut self.segments[first..] {
            for batch in record_batch::batches(segment.bytes_from(from)?) {
                let (header, bytes) = batch.map_err(LogError::InvalidBatch)?;
                if header.base_offset < from {
                    continue;
                }
                let carried = if header.is_control() {
                    JournalEntry::from_carrier(bytes)
                } else {
                    None
                };
                match (expecting.take(), carried) {
                    (Some((base, count, producer_id)), Some(entry))
                        if (
                            entry.base_offset,
                            entry.record_count,
                            entry.tag.producer_id(),
                        ) == (base, count, producer_id) =>
                    {
                        entries.push(entry);
                    }
                    (Some((base, ..)), _) => {
                        return Ok(CarriedEntries {
                            entries,
                            torn_at: Some(base),
                        })
                    }
                    // The carrier of the batch whose entry ends the journal file.
                    (None, Some(_)) => {}
                    (None, None) => {
                        if header.producer_id != record_batch::NO_PRODUCER_ID
                            && !header.is_control()
                        {
                            let count = (header.last_offset_delta as u32).saturating_add(1);
                            expecting = Some((header.base_offset, count, header.producer_id));
                        }
                    }
                }
            }
        }
        Ok(CarriedEntries {
            entries,
            torn_at: expecting.map(|(base, ..)| base),
        })
    }

    /// Keeps the active segment's file up to two `step`s past its end (see [`Segment`]); 0
    /// turns preallocation off. Only
    /// flushes reserve space, so it never happens with `flush = "os"`, where no fsync would
    /// gain from it.
    pub fn set_preallocation(&mut self, step: u64) {
        self.preallocate_step = step;
    }

    /// Makes appends keep `reserve` free on the data dir's file system (see [`DiskReserve`]).
    pub fn set_reserve(&mut self, reserve: Option<Arc<DiskReserve>>) {
        self.reserve = reserve;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset still in the log.
    pub fn start_offset(&self) -> Offset {
        self.segments[0].base_offset()
    }

    /// The offset the next record will get (Kafka's log end offset).
    pub fn end_offset(&self) -> Offset {
        self.active().next_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::len).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Appends one batch built with base offset 0: stamps its base offset with the log end
    /// offset and writes it, rolling first if it would overflow the active segment.
    ///
    /// On error nothing was appended and the end offset is unchanged.
    pub fn append(&mut self, batch: &mut [u8]) -> Result<AppendedBatch, LogError> {
        self.append_tagged(batch, None)
    }

    /// [`PartitionLog::append`] for a batch of an idempotent request: the batch is followed
    /// in the log by the carrier of its journal entry (a control batch taking one offset;
    /// consumers never see it; the two in one write), so the entry is durable with the
    /// batch, and the entry is added to the journal.
    pub fn append_tagged(
        &mut self,
        batch: &mut [u8],
        tag: Option<&IdempotencyTag>,
    ) -> Result<AppendedBatch, LogError> {
        let header = BatchHeader::parse(batch).map_err(LogError::InvalidBatch)?;
        if header.total_len() != batch.len() || header.last_offset_delta < 0 {
            return Err(LogError::InvalidBatch(record_batch::BatchError::Malformed(
                "batch length does not match the buffer".into(),
            )));
        }
        // Recovery cuts a marked batch not followed by its carrier: a mark on another batch
        // would be an acknowledged batch lost at the next start.
        if (header.producer_id != record_batch::NO_PRODUCER_ID) != tag.is_some() {
            return Err(LogError::InvalidBatch(record_batch::BatchError::Malformed(
                "a batch carries a producerId if and only if it is an idempotent request's".into(),
            )));
        }
        let base_offset = self.end_offset();
        // Encoded once: the carrier and the journal file hold the same 72 bytes.
        let entry = tag.map(|tag| {
            let entry = JournalEntry {
                tag: *tag,
                base_offset,
                record_count: (header.last_offset_delta as u32).saturating_add(1),
            };
            (entry.encode(), tag.producer_id())
        });
        let mut carrier = entry.as_ref().map(|(encoded, producer_id)| {
            JournalEntry::carrier_batch(encoded, *producer_id, header.max_timestamp)
        });
        let total = batch.len() + carrier.as_ref().map_or(0, Vec::len);
        if total as u64 > self.config.segment_bytes {
            return Err(LogError::BatchTooLarge {
                size: total,
                limit: self.config.segment_bytes,
            });
        }
        if let Some(reserve) = &self.reserve {
            reserve.claim(total as u64)?;
        }
        // The pair stays in one segment.
        if !self.active().is_empty()
            && self.active().len() + total as u64 > self.config.segment_bytes
        {
            self.roll()?;
        }
        if entry.is_some() && self.journal.is_none() {
            self.journal = Some(IdempotencyJournal::create(&self.dir, base_offset)?);
        }
        segment::stamp(batch, base_offset);
        let header = BatchHeader {
            base_offset,
            partition_leader_epoch: segment::LEADER_EPOCH,
            ..header
        };
        let interval = self.config.index_interval_bytes;
        let appended = match carrier.as_mut() {
            None => self.active_mut().append(batch, &header, interval)?,
            Some(carrier) => {
                segment::stamp(carrier, header.last_offset() + 1);
                let carrier_header = BatchHeader::parse(carrier).map_err(LogError::InvalidBatch)?;
                let pair = [(&batch[..], &header), (&carrier[..], &carrier_header)];
                self.active_mut().append_batches(&pair, interval)?
            }
        };
        if let Some((encoded, _)) = &entry {
            let journal = self.journal.as_mut().expect("created above");
            journal
                .append_encoded(encoded)
                .map_err(|e| LogError::FailStopped {
                    reason: format!("cannot write the idempotency journal: {e}"),
                })?;
        }
        let active_base = self.active().base_offset();
        if self.unsynced.last() != Some(&active_base) {
            self.unsynced.push(active_base);
        }
        self.bytes_since_mark += total as u64;
        Ok(appended)
    }

    /// Starts a new active segment at the log end offset. The old one is in `unsynced` for
    /// the next flush (even when the last flush covered its batches), which syncs its cut
    /// length and finished index, hands its pages back, and syncs the directory for the new
    /// file.
    pub fn roll(&mut self) -> Result<(), LogError> {
        let base = self.end_offset();
        if self.active().is_empty() {
            return Ok(());
        }
        let segment = Segment::create(&self.dir, base)?;
        self.active_mut().release_preallocation();
        self.active_mut().write_index();
        let sealed = self.active().base_offset();
        if self.unsynced.last() != Some(&sealed) {
            self.unsynced.push(sealed);
        }
        self.segments.push(segment);
        self.dir_unsynced = true;
        Ok(())
    }

    /// Reads whole batches starting with the one holding `offset`, up to about `max_bytes`
    /// (at least one batch). An offset at or past the end gives nothing.
    pub fn read(&mut self, offset: Offset, max_bytes: usize) -> Result<Vec<u8>, LogError> {
        let start = self.start_offset();
        if offset < start {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: start,
            });
        }
        let mut out = Vec::new();
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in &mut self.segments[first..] {
            if out.len() >= max_bytes {
                break;
            }
            if segment.next_offset() <= offset {
                continue;
            }
            let budget = max_bytes.saturating_sub(out.len()).max(1);
            let before = out.len();
            let mut chunk = Vec::new();
            segment.read(offset, budget, &mut chunk)?;
            if before > 0 && chunk.len() > budget {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Removes every record at or after `offset` (whole batches: a batch straddling `offset`
    /// goes too). Segments entirely past it are deleted.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<Offset, LogError> {
        let offset = offset.max(self.start_offset());
        while self.segments.len() > 1 && self.active().base_offset() >= offset {
            let segment = self.segments.pop().expect("more than one segment");
            segment.delete()?;
            self.dir_unsynced = true;
        }
        let next = self.active_mut().truncate_to(offset)?;
        let base = self.active().base_offset();
        self.unsynced.retain(|b| *b <= base);
        if self.unsynced.last() != Some(&base) {
            self.unsynced.push(base);
        }
        Ok(next)
    }

    /// Collects what a flush must sync for everything appended so far, and forgets it.
    pub fn take_unsynced(&mut self) -> Result<SyncTargets, LogError> {
        let mut files = Vec::with_capacity(self.unsynced.len() * 2);
        let mut journal_file = None;
        let mut page_cache = Vec::new();
        let active_base = self.active().base_offset();
        for base in std::mem::take(&mut self.unsynced) {
            if let Some(segment) = self.segments.iter_mut().find(|s| s.base_offset() == base) {
                let (log, index) = segment.sync_handles();
                files.push(log);
                let release = if base == active_base {
                    segment.page_cache_release(PAGE_CACHE_KEEP_BYTES, PAGE_CACHE_STEP_BYTES)
                } else {
                    // A sealed segment's index is complete: make it durable once.
                    files.push(index);
                    segment.page_cache_release(0, 1)
                };
                page_cache.extend(release);
            }
        }
        if self.bytes_since_mark >= MARK_INTERVAL_BYTES {
            let log_end = self.end_offset();
            if let Some(journal) = &mut self.journal {
                journal.append(&JournalEntry::mark(log_end))?;
                journal_file = Some(journal.for_mark());
            }
            self.bytes_since_mark = 0;
        }
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        let (step, limit) = (self.preallocate_step, self.config.segment_bytes);
        // Reserved space counts against min_free_bytes like appended bytes do (twice, until
        // the next statvfs reading: the appends into it claim again). Refused, the segment
        // just grows as written.
        let preallocation = self.active_mut().preallocation(step, limit).filter(|p| {
            self.reserve
                .as_ref()
                .is_none_or(|r| r.claim(p.grows_by()).is_ok())
        });
        Ok(SyncTargets {
            journal: journal_file,
            files,
            dir,
            preallocation,
            page_cache,
        })
    }

    /// Handles for every segment and the directory: a shutdown flush must also cover files
    /// whose background flush is still running. The active segment's and the journal's
    /// preallocated space is cut first, so a cleanly stopped log is exact on disk.
    pub fn take_everything(&mut self) -> Result<SyncTargets, LogError> {
        self.active_mut().release_preallocation();
        self.unsynced.clear();
        self.dir_unsynced = false;
        let mut files = Vec::with_capacity(self.segments.len() * 2 + 1);
        for segment in &mut self.segments {
            segment.write_index();
            let (log, index) = segment.sync_handles();
            files.push(log);
            files.push(index);
        }
        let journal = self.journal.as_mut().map(IdempotencyJournal::for_mark);
        Ok(SyncTargets {
            journal,
            files,
            dir: Some(self.dir.clone()),
            preallocation: None,
            page_cache: Vec::new(),
        })
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || self.dir_unsynced
    }

    /// Deletes whole sealed segments past retention (by age of their newest record, and by
    /// total size). The active segment is never deleted. Returns how many were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let mut deleted = 0;
        let mut total = self.size_bytes();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let expired = self.config.retention_ms.is_some_and(|ms| {
                oldest.max_timestamp() >= 0 && now_ms - oldest.max_timestamp() > ms
            });
            let oversize = self
                .config
                .retention_bytes
                .is_some_and(|limit| total - oldest.len() >= limit);
            if !(expired || oversize) {
                break;
            }
            let segment = self.segments.remove(0);
            total -= segment.len();
            let base = segment.base_offset();
            self.unsynced.retain(|b| *b != base);
            log::info!(
                "{}: retention deleted segment {base} ({})",
                self.dir.display(),
                if expired { "age" } else { "size" }
            );
            segment.delete()?;
            self.dir_unsynced = true;
            deleted += 1;
        }
        Ok(deleted)
    }
}

fn delete_segment_files(dir: &Path, base: Offset) -> Result<(), LogError> {
    for path in [
        naming::segment_file(dir, base),
        naming::index_file(dir, base),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LogError::io("deleting segment", &path, e))
            }
            _ => {}
        }
    }
    Ok(())
}
