//! The idempotency journal: per partition, which idempotent produce requests (by the hash of
//! their `Idempotency-Key`) put a batch where, so a retry finds the batch instead of
//! appending it again.
//!
//! Each entry is carried twice. In the log: right after its batch, the partition writes a
//! control batch holding the entry ([`JournalEntry::carrier_batch`]), so the entry is
//! durable exactly when its batch is, by the same segment write and fdatasync — an
//! idempotent request costs no sync of its own. And in the journal file, the index a start
//! reads instead of the log: written 1,024 entries at a time (no fsync), and written up and
//! fsynced at a mark (an entry with no batch, [`JournalEntry::mark`]), which a flush adds
//! after every [`MARK_INTERVAL_BYTES`](crate::log::MARK_INTERVAL_BYTES) of log. A crash can
//! leave the file behind the log; recovery reads the log's batches after the file's last
//! valid entry, takes the entries their carriers hold, and cuts a marked batch (an idempotent
//! request's data batch carries a producerId, [`IdempotencyTag::producer_id`]) whose carrier
//! is missing: the write of the pair was torn, so it was never acknowledged.
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
//! A carrier batch's record value is the same 72 bytes.
//!
//! big-endian, appended in offset order. At start the journal is read up to its first
//! invalid entry (a torn tail is cut), and entries are dropped that are out of the window,
//! below the log start (retention) or past the log end (the batch was lost in the crash).
//! When dropped entries outnumber kept ones, or any lies past the log end, the file is
//! rewritten (temporary file, fsync, rename). Zeros after the entries (the reserve older
//! versions kept) are cut like a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::LogError;
use crate::naming;
use crate::record_batch;
use crate::types::Offset;

/// Bytes of one journal entry.
pub const ENTRY_BYTES: usize = 72;

/// The control record type of a carrier batch (rill's own; Kafka's are 0 to 6 or so, and
/// its clients skip control records of any type).
pub const CARRIER_CONTROL_TYPE: i16 = 0x7269;

/// Entries held in memory before the partition writes them to the file (a flush with a mark
/// writes them sooner). Nothing waits for the file: the entries are durable in the log.
const UNWRITTEN_LIMIT: usize = 1024 * ENTRY_BYTES;

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
    /// A mark: an entry without a batch (record count 0) at the log end offset. Fsynced, it
    /// tells recovery that every entry of a batch below `log_end` is in the file before it,
    /// so the search of the log for entries the file lacks starts there (see
    /// [`JournalLoad`]).
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

    /// The offset after this entry's batch (a mark's own offset); its carrier's offset.
    pub fn end_offset(&self) -> Offset {
        self.base_offset + Offset::from(self.record_count)
    }

    /// The control batch that carries this entry in the log, right after the entry's batch:
    /// the entry's 72 bytes (`encoded`, what [`JournalEntry::encode`] gave) as the value of a
    /// control record of type [`CARRIER_CONTROL_TYPE`], marked with the batch's producerId
    /// and stamped with its `max_timestamp` so that it changes nothing the time index says.
    /// Base offset 0 until the log stamps it.
    pub fn carrier_batch(
        encoded: &[u8; ENTRY_BYTES],
        producer_id: i64,
        max_timestamp: i64,
    ) -> Vec<u8> {
        record_batch::encode_control_batch(
            producer_id,
            max_timestamp,
            CARRIER_CONTROL_TYPE,
            encoded,
        )
    }

    /// The entry `batch` carries, if it is a valid carrier batch.
    pub fn from_carrier(batch: &[u8]) -> Option<Self> {
        match record_batch::control_record(batch)? {
            (CARRIER_CONTROL_TYPE, value) => Self::decode(&value).filter(|e| !e.is_mark()),
            _ => None,
        }
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
    pub fn keeps(&self, entry: &JournalEntry) -> bool {
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
    /// Where recovery must read the log for entries the file lacks: the end of its last
    /// valid entry or mark (the journal's valid entries are a prefix of those written, in
    /// offset order). `None` without a journal: it is created, and made durable, before the
    /// partition's first marked batch is written.
    pub carried_from: Option<Offset>,
}

/// A partition's open journal file.
#[derive(Debug)]
pub struct IdempotencyJournal {
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of entries, those in `unwritten` included.
    len: u64,
    /// Entries appended since they were last taken: the last `unwritten.len()` bytes of
    /// `len`, in memory until a flush with a mark, or [`UNWRITTEN_LIMIT`], writes them.
    unwritten: Vec<u8>,
}

/// What a flush with a mark (or the shutdown's) does with the journal: write the entries
/// still in memory and fsync the file.
#[derive(Debug)]
pub struct JournalSync {
    file: Arc<File>,
    /// The entries to write and the file position they go to, written from the flush's
    /// thread.
    unwritten: Option<(u64, Vec<u8>)>,
}

impl JournalSync {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Blocking.
    pub fn sync(self) -> std::io::Result<()> {
        if let Some((at, bytes)) = &self.unwritten {
            self.file.write_all_at(bytes, *at)?;
        }
        self.file.sync_data()
    }
}

impl IdempotencyJournal {
    /// Reads the journal in `dir` (if any): the entries `live` keeps, the journal open for
    /// appends, and where recovery's reading of carried entries starts. Cuts a torn tail.
    /// Entries past the log end (their batches were lost in the crash) are removed from the
    /// file, so that they never stand in for the entries of batches that take their offsets
    /// later; the file is rewritten then, and when most of it is dead.
    pub fn load(dir: &Path, live: Liveness) -> Result<JournalLoad, LogError> {
        let path = naming::idempotency_journal_file(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(JournalLoad {
                    journal: None,
                    entries: Vec::new(),
                    carried_from: None,
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
        let carried_from = fresh
            .last()
            .map_or(live.log_start, JournalEntry::end_offset);
        let kept: Vec<JournalEntry> = fresh.iter().filter(|e| live.keeps(e)).copied().collect();
        let valid_len = (valid.len() * ENTRY_BYTES) as u64;
        let journal = if fresh.len() < valid.len() || kept.len() * 2 < valid.len() {
            if fresh.len() < valid.len() {
                log::warn!(
                    "{}: dropped {} entries whose batches were lost",
                    path.display(),
                    valid.len() - fresh.len()
                );
            }
            Self::rewrite(&path, &kept, carried_from)?
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
                        "{}: cut {} bytes of zeros after the last entry",
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
                file: Arc::new(file),
                len: valid_len,
                unwritten: Vec::new(),
            }
        };
        Ok(JournalLoad {
            journal: Some(journal),
            entries: kept,
            carried_from: Some(carried_from),
        })
    }

    /// Creates the journal of `dir` holding one mark at `log_end`, durably (temporary file,
    /// fsync, rename, directory fsync), before the partition's first marked batch: so a
    /// partition without a journal file has no marked batch, and recovery need not read one
    /// without a bound. Once per partition.
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
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len: bytes.len() as u64,
            unwritten: Vec::new(),
        })
    }

    /// Adds one entry at the end, in memory; at [`UNWRITTEN_LIMIT`] writes what is in memory
    /// (one `pwrite` per 1,024 entries rather than one per flush: they are durable in the log
    /// already). An error leaves the file behind its entries for good, so the caller must
    /// fail-stop.
    pub fn append(&mut self, entry: &JournalEntry) -> Result<(), LogError> {
        self.append_encoded(&entry.encode())
    }

    /// [`IdempotencyJournal::append`] of an entry already encoded (the carrier holds the same
    /// bytes).
    pub fn append_encoded(&mut self, encoded: &[u8; ENTRY_BYTES]) -> Result<(), LogError> {
        self.unwritten.extend_from_slice(encoded);
        self.len += ENTRY_BYTES as u64;
        if self.unwritten.len() >= UNWRITTEN_LIMIT {
            if let Some((at, bytes)) = self.take_unwritten() {
                self.file
                    .write_all_at(&bytes, at)
                    .map_err(|e| LogError::io("writing idempotency journal", &self.path, e))?;
            }
        }
        Ok(())
    }

    /// Adds `entries` (recovery's, read from their carriers) and makes the file durable now,
    /// so the next start finds them in it.
    pub fn append_durably(&mut self, entries: &[JournalEntry]) -> Result<(), LogError> {
        for entry in entries {
            self.append(entry)?;
        }
        self.for_mark()
            .sync()
            .map_err(|e| LogError::io("writing idempotency journal", &self.path, e))
    }

    /// The entries still in memory and the file position they go to, for a flush to write.
    fn take_unwritten(&mut self) -> Option<(u64, Vec<u8>)> {
        (!self.unwritten.is_empty()).then(|| {
            let at = self.len - self.unwritten.len() as u64;
            (at, std::mem::take(&mut self.unwritten))
        })
    }

    /// For a flush that carries a mark, and the shutdown's: every entry written, an
    /// fdatasync.
    pub fn for_mark(&mut self) -> JournalSync {
        JournalSync {
            file: Arc::clone(&self.file),
            unwritten: self.take_unwritten(),
        }
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
        assert_eq!(load.carried_from, Some(42));
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
            journal.append(&e).unwrap();
        }
        journal.for_mark().sync().unwrap();
        drop(journal);
        let path = naming::idempotency_journal_file(dir.path());
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&entry(6, 29, 1000).encode()[..30]).unwrap();
        drop(file);

        let load = IdempotencyJournal::load(dir.path(), live(10, 26, 500)).unwrap();
        assert_eq!(load.entries, vec![entry(3, 20, 1000), entry(4, 23, 1000)]);
        // Recovery reads carried entries after the last entry whose batch is still there.
        assert_eq!(load.carried_from, Some(26));
        // Rewritten with the live entries; the last one ends at the bound, so no mark.
        assert_eq!(file_len(dir.path()), 2 * ENTRY_BYTES as u64);

        // The entry cut at 26 is gone from the file, so a new batch at 26 gets its own.
        let mut journal = load.journal.unwrap();
        journal.append(&entry(7, 26, 2000)).unwrap();
        journal.for_mark().sync().unwrap();
        drop(journal);
        let load = IdempotencyJournal::load(dir.path(), live(10, 29, 500)).unwrap();
        assert_eq!(load.entries.len(), 3);
        assert_eq!(load.entries[2], entry(7, 26, 2000));
        assert_eq!(load.carried_from, Some(29));
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
            journal.append(&e).unwrap();
        }
        journal.for_mark().sync().unwrap();
        drop(journal);
        let load = IdempotencyJournal::load(dir.path(), live(0, 12, 500)).unwrap();
        assert_eq!(load.entries, vec![entry(3, 6, 1000)]);
        assert_eq!(load.carried_from, Some(12));
        assert_eq!(
            file_len(dir.path()),
            2 * ENTRY_BYTES as u64,
            "entry 3 and a mark"
        );
        let load = IdempotencyJournal::load(dir.path(), live(0, 12, 500)).unwrap();
        assert_eq!(load.entries, vec![entry(3, 6, 1000)]);
        assert_eq!(
            load.carried_from,
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
        assert_eq!(load.carried_from, Some(7));
    }

    #[test]
    fn a_missing_journal_is_no_entries_and_no_search() {
        let dir = tempfile::tempdir().unwrap();
        let load = IdempotencyJournal::load(dir.path(), live(0, 0, 0)).unwrap();
        assert!(load.journal.is_none() && load.entries.is_empty());
        assert_eq!(load.carried_from, None);
    }

    #[test]
    fn a_carrier_holds_its_entry_and_never_a_mark() {
        let e = entry(9, 40, 1_700_000_000_000);
        let carrier =
            JournalEntry::carrier_batch(&e.encode(), e.tag.producer_id(), 1_700_000_000_500);
        let header = record_batch::verify(&carrier).unwrap();
        assert_eq!(carrier.len(), 146, "docs/FORMAT.md gives its bytes");
        assert_eq!(header.producer_id, e.tag.producer_id());
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
        assert_eq!(JournalEntry::from_carrier(&carrier), Some(e));
        let mark = record_batch::encode_control_batch(
            0,
            0,
            CARRIER_CONTROL_TYPE,
            &JournalEntry::mark(5).encode(),
        );
        assert_eq!(JournalEntry::from_carrier(&mark), None);
        let other_type = record_batch::encode_control_batch(1, 0, 1, &e.encode());
        assert_eq!(JournalEntry::from_carrier(&other_type), None);
    }

    #[test]
    fn a_tags_producer_id_is_its_key_hash_without_the_sign_bit() {
        let mut t = entry(0xff, 0, 0).tag;
        assert_eq!(t.producer_id(), i64::MAX);
        t.key_hash[0] = 0x01;
        assert_eq!(t.producer_id(), 0x01ff_ffff_ffff_ffff);
    }
}
