//! Recovery: finding where a segment's valid data ends after a crash.
//!
//! The rule (docs/FORMAT.md, "Recovery"): starting from a known-good batch boundary, walk the
//! batches; each must have a sane header, fit in the file, pass its CRC-32C and continue the
//! offsets of the one before. The log ends before the first batch that does not — a torn
//! write, zeros from a file extended but never written, or garbage. Everything before it is
//! kept; a torn tail never hides a complete batch before it, and nothing after it is served.

use crate::error::LogError;
use crate::record_batch::BatchHeader;
use crate::segment::verify_stored;
use crate::types::Offset;

/// What a scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Byte length of the valid prefix: the segment is cut here.
    pub valid_len: u64,
    /// Offset after the last valid batch.
    pub next_offset: Offset,
    /// Largest max-timestamp among the scanned batches (-1 if none).
    pub max_timestamp: i64,
    /// Position of the last index entry the scan wrote, if any.
    pub last_index_position: Option<u64>,
}

/// Scans `segment[from..]`, whose first batch must have base offset `expected_offset`, and
/// calls `on_index_entry(offset, position)` every `index_interval_bytes` so a rebuilt index
/// has Kafka's spacing.
pub fn scan(
    segment: &[u8],
    from: u64,
    expected_offset: Offset,
    index_interval_bytes: u32,
    mut on_index_entry: impl FnMut(Offset, u64) -> Result<(), LogError>,
) -> Result<ScanOutcome, LogError> {
    let mut at = from as usize;
    let mut next_offset = expected_offset;
    let mut max_timestamp = -1;
    let mut last_index_position = None;
    // The batch at `from` is already indexed (or is position 0, which is implied).
    let mut since_index = 0u64;
    while at < segment.len() {
        let rest = &segment[at..];
        let Ok(header) = BatchHeader::parse(rest) else {
            break;
        };
        let total = header.total_len();
        if total > rest.len()
            || header.base_offset != next_offset
            || header.last_offset_delta < 0
            || verify_stored(&rest[..total]).is_err()
        {
            break;
        }
        if since_index >= u64::from(index_interval_bytes) && at > 0 {
            on_index_entry(header.base_offset, at as u64)?;
            last_index_position = Some(at as u64);
            since_index = 0;
        }
        since_index += total as u64;
        max_timestamp = max_timestamp.max(header.max_timestamp);
        next_offset = header.last_offset() + 1;
        at += total;
    }
    Ok(ScanOutcome {
        valid_len: at as u64,
        next_offset,
        max_timestamp,
        last_index_position,
    })
}
