//! The input format of the `segment_recovery` fuzz target, shared by the target
//! (fuzz/fuzz_targets/segment_recovery.rs) and the tests that replay what it found
//! (actors/tests/recovery_regressions.rs): a replayed input must mean what it meant to the
//! fuzzer, so it is decoded in one place.
//!
//! Layout: a mode byte, the index length / 8, the index bytes, the segment bytes. Mode bit 0:
//! every well-framed batch is "fixed up" (magic, length, CRC) so that the fuzzer can build
//! segments of many valid batches and explore offset continuity and the index. Bit 1: the
//! index file is written too.

use std::path::Path;

use rill_actors::record_batch::{BATCH_HEADER_LEN, LOG_OVERHEAD};
use rill_actors::types::{FlushPolicy, LogConfig};

/// One decoded input: the files of a partition directory.
pub struct RecoveryInput<'a> {
    pub index: &'a [u8],
    pub segment: Vec<u8>,
    pub writes_index: bool,
}

impl<'a> RecoveryInput<'a> {
    /// `None` for inputs too short to hold the two header bytes and any data.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < 3 {
            return None;
        }
        let mode = data[0];
        let index_len = (usize::from(data[1]) * 8).min(data.len() - 2);
        let mut segment = data[2 + index_len..].to_vec();
        if mode & 1 == 1 {
            fix_up(&mut segment);
        }
        Some(Self {
            index: &data[2..2 + index_len],
            segment,
            writes_index: mode & 2 == 2,
        })
    }

    /// Writes the segment (and index) of partition directory `dir`, creating it.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{:020}.log", 0)), &self.segment)?;
        if self.writes_index {
            std::fs::write(dir.join(format!("{:020}.index", 0)), self.index)?;
        }
        Ok(())
    }
}

/// The log configuration inputs are opened with.
pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        // Small, so short inputs still get (and must survive) index entries.
        index_interval_bytes: 64,
        flush: FlushPolicy::Os,
        retention_ms: None,
        retention_bytes: None,
    }
}

/// Makes every well-framed batch in `segment` checksum correctly (magic 2, CRC-32C), so a
/// scan gets past the CRC. Lengths are clamped to what is left.
fn fix_up(segment: &mut [u8]) {
    let mut at = 0;
    while segment.len() - at >= BATCH_HEADER_LEN {
        let rest = &mut segment[at..];
        let declared = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let max = (rest.len() - LOG_OVERHEAD) as i32;
        let len = declared.clamp((BATCH_HEADER_LEN - LOG_OVERHEAD) as i32, max);
        rest[8..12].copy_from_slice(&len.to_be_bytes());
        rest[16] = 2;
        let total = LOG_OVERHEAD + len as usize;
        let crc = crc32c::crc32c(&rest[21..total]);
        rest[17..21].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
}
