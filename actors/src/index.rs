//! The sparse offset index of one segment, Kafka's model: fixed 8-byte entries
//! `[relative_offset: u32 BE][position: u32 BE]`, one per `index_interval_bytes` of batches,
//! each naming the first offset of a batch and where that batch starts in the segment.
//!
//! Invariant: entries are strictly increasing in both fields and every position lies inside the
//! segment. The index is a hint, never the truth: it is not fsynced on the ack path, is
//! sanity-checked on open, and is rebuilt from the log whenever it disagrees with it.
//!
//! New entries are written to the file in runs, not one `pwrite` each: when the segment is
//! sealed, at a shutdown, or once [`PENDING_LIMIT`] wait. At 100 records per request every
//! batch earns an entry, so a syscall per entry was one per batch. A crash loses at most the
//! unwritten run, which start-up's scan from the last entry on disk rebuilds (at most
//! ~64 × 4 KiB more to scan).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::LogError;
use crate::types::Offset;

pub const INDEX_ENTRY_LEN: usize = 8;

/// Entries held in memory at most before they are written.
pub const PENDING_LIMIT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the batch's first record, relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// Why an index on disk cannot be trusted.
#[derive(Debug, PartialEq, Eq)]
pub enum IndexProblem {
    /// Length is not a multiple of 8 (torn entry).
    PartialEntry,
    /// An entry does not increase over the one before it (zeros or garbage).
    NotIncreasing { entry: usize },
    /// An entry points past the end of the segment.
    PastEnd { entry: usize },
}

/// A segment's sparse index, kept in memory and mirrored to its file with positional writes.
#[derive(Debug)]
pub struct OffsetIndex {
    path: PathBuf,
    file: Arc<File>,
    base_offset: Offset,
    entries: Vec<IndexEntry>,
    /// `entries[..written]` are in the file; the rest wait for [`OffsetIndex::write_pending`].
    written: usize,
}

impl OffsetIndex {
    /// Opens (creating if absent) the index at `path` and loads its entries, checked against
    /// the segment's `segment_len`. A problem is reported, not repaired: recovery decides.
    pub fn open(
        path: &Path,
        base_offset: Offset,
        segment_len: u64,
    ) -> Result<(Self, Option<IndexProblem>), LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| LogError::io("opening index", path, e))?;
        let bytes = std::fs::read(path).map_err(|e| LogError::io("reading index", path, e))?;
        let mut index = Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            base_offset,
            entries: Vec::with_capacity(bytes.len() / INDEX_ENTRY_LEN),
            written: 0,
        };
        let problem = index.load(&bytes, segment_len);
        index.written = index.entries.len();
        Ok((index, problem))
    }

    fn load(&mut self, bytes: &[u8], segment_len: u64) -> Option<IndexProblem> {
        if !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
            return Some(IndexProblem::PartialEntry);
        }
        for (i, chunk) in bytes.chunks_exact(INDEX_ENTRY_LEN).enumerate() {
            let entry = IndexEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if let Some(last) = self.entries.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return Some(IndexProblem::NotIncreasing { entry: i });
                }
            } else if entry.position == 0 {
                // Position 0 is implied and never written; a zero here means zeros on disk.
                return Some(IndexProblem::NotIncreasing { entry: i });
            }
            if u64::from(entry.position) >= segment_len {
                return Some(IndexProblem::PastEnd { entry: i });
            }
            self.entries.push(entry);
        }
        None
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn last_entry(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    /// Appends an entry for a batch starting at `offset` / `position`: at once in memory (lookups
    /// use it), in the file with the next run. An error is a failed write of that run; the
    /// entries stay in memory and the next run tries again.
    pub fn append(&mut self, offset: Offset, position: u64) -> Result<(), LogError> {
        let entry = IndexEntry {
            relative_offset: (offset - self.base_offset) as u32,
            position: position as u32,
        };
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|l| l.position < entry.position));
        self.entries.push(entry);
        if self.entries.len() - self.written >= PENDING_LIMIT {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the entries not yet in the file, in one `pwrite`.
    pub fn write_pending(&mut self) -> Result<(), LogError> {
        let pending = &self.entries[self.written..];
        if pending.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(pending.len() * INDEX_ENTRY_LEN);
        for entry in pending {
            buf.extend_from_slice(&entry.relative_offset.to_be_bytes());
            buf.extend_from_slice(&entry.position.to_be_bytes());
        }
        let at = (self.written * INDEX_ENTRY_LEN) as u64;
        self.file
            .write_all_at(&buf, at)
            .map_err(|e| LogError::io("writing index", &self.path, e))?;
        self.written = self.entries.len();
        Ok(())
    }

    /// The last indexed batch starting at or before `offset`: its base offset and position
    /// (the segment's base offset and 0 if none).
    pub fn lookup(&self, offset: Offset) -> (Offset, u64) {
        let relative = offset - self.base_offset;
        let idx = if relative <= 0 {
            0
        } else {
            self.entries
                .partition_point(|e| i64::from(e.relative_offset) <= relative)
        };
        match idx.checked_sub(1).map(|i| self.entries[i]) {
            Some(e) => (
                self.base_offset + i64::from(e.relative_offset),
                u64::from(e.position),
            ),
            None => (self.base_offset, 0),
        }
    }

    /// Drops every entry at or past `position` (the log was cut there).
    pub fn truncate_to_position(&mut self, position: u64) -> Result<(), LogError> {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.position) < position);
        self.entries.truncate(keep);
        self.written = self.written.min(keep);
        self.file
            .set_len((self.written * INDEX_ENTRY_LEN) as u64)
            .map_err(|e| LogError::io("truncating index", &self.path, e))
    }

    /// Forgets every entry, on disk too, before a rebuild from the log.
    pub fn clear(&mut self) -> Result<(), LogError> {
        self.truncate_to_position(0)
    }

    /// A handle for a background fsync (sealed segments' indexes are synced once).
    pub fn sync_handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_last_entry_at_or_before_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let (mut index, problem) = OffsetIndex::open(&path, 100, 0).unwrap();
        assert!(problem.is_none());
        index.append(110, 4096).unwrap();
        index.append(150, 9000).unwrap();
        assert_eq!(index.lookup(100), (100, 0));
        assert_eq!(index.lookup(109), (100, 0));
        assert_eq!(index.lookup(110), (110, 4096));
        assert_eq!(index.lookup(149), (110, 4096));
        assert_eq!(index.lookup(10_000), (150, 9000));

        // Served from memory before they reach the file; the file holds them after a run.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        index.write_pending().unwrap();
        let (reopened, problem) = OffsetIndex::open(&path, 100, 10_000).unwrap();
        assert!(problem.is_none());
        assert_eq!(reopened.entries(), index.entries());
    }

    #[test]
    fn garbage_and_zeros_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0u8; 16]).unwrap();
        let (_, problem) = OffsetIndex::open(&path, 0, 1000).unwrap();
        assert_eq!(problem, Some(IndexProblem::NotIncreasing { entry: 0 }));
        std::fs::write(&path, [0u8; 7]).unwrap();
        let (_, problem) = OffsetIndex::open(&path, 0, 1000).unwrap();
        assert_eq!(problem, Some(IndexProblem::PartialEntry));
        std::fs::write(&path, [0, 0, 0, 5, 0, 0, 0x10, 0]).unwrap();
        let (_, problem) = OffsetIndex::open(&path, 0, 1000).unwrap();
        assert_eq!(problem, Some(IndexProblem::PastEnd { entry: 0 }));
    }
}
