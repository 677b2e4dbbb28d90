//! Every file and directory name the broker writes, built and parsed side by side so the two
//! can never drift apart. Layout mirrors Kafka:
//!
//! ```text
//! <data_dir>/topics.json                       topic registry (name, config)
//! <data_dir>/.lock                             held while a broker owns the directory
//! <data_dir>/<topic>-<partition>/<base:020>.log    segment: concatenated RecordBatch v2
//! <data_dir>/<topic>-<partition>/<base:020>.index  sparse offset index of that segment
//! <data_dir>/<topic>-<partition>/idempotency.journal  where idempotent requests' batches went
//! ```

use std::path::{Path, PathBuf};

use crate::types::{Offset, PartitionId, TopicName, Topition};

pub const TOPICS_FILE: &str = "topics.json";
pub const LOCK_FILE: &str = ".lock";
pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of a file being written before an atomic rename.
pub const TMP_SUFFIX: &str = ".tmp";
/// A partition directory renamed away for deletion (deleting a large directory is slow, the
/// rename is atomic, so a crash mid-delete leaves no half topic behind).
pub const DELETE_SUFFIX: &str = ".deleted";

pub fn partition_dir(data_dir: &Path, topition: &Topition) -> PathBuf {
    data_dir.join(format!("{}-{}", topition.topic, topition.partition))
}

/// The partition's idempotency journal (see `idempotency`).
pub const IDEMPOTENCY_JOURNAL: &str = "idempotency.journal";

pub fn idempotency_journal_file(dir: &Path) -> PathBuf {
    dir.join(IDEMPOTENCY_JOURNAL)
}

pub fn segment_file(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{base_offset:020}{LOG_SUFFIX}"))
}

pub fn index_file(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{base_offset:020}{INDEX_SUFFIX}"))
}

/// The base offset named by a segment file name (`00000000000000000042.log` → 42).
pub fn parse_segment_file_name(name: &str) -> Option<Offset> {
    parse_base_offset(name, LOG_SUFFIX)
}

/// The base offset named by an index file name.
pub fn parse_index_file_name(name: &str) -> Option<Offset> {
    parse_base_offset(name, INDEX_SUFFIX)
}

fn parse_base_offset(name: &str, suffix: &str) -> Option<Offset> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Splits `<topic>-<partition>` at the last dash (topic names may contain dashes).
pub fn parse_partition_dir_name(name: &str) -> Option<Topition> {
    let (topic, partition) = name.rsplit_once('-')?;
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let partition: PartitionId = partition.parse().ok()?;
    Some(Topition {
        topic: TopicName::new(topic).ok()?,
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let dir = Path::new("/d");
        let path = segment_file(dir, 42);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_segment_file_name(name), Some(42));
        let index = index_file(dir, i64::MAX);
        let name = index.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_index_file_name(name), Some(i64::MAX));
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
    }

    #[test]
    fn partition_dirs_round_trip_with_dashes_in_the_topic() {
        let t = Topition {
            topic: TopicName::new("logs-web-1").unwrap(),
            partition: 7,
        };
        let dir = partition_dir(Path::new("/d"), &t);
        assert_eq!(dir, Path::new("/d/logs-web-1-7"));
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_partition_dir_name(name), Some(t));
        assert_eq!(parse_partition_dir_name("nodash"), None);
        assert_eq!(parse_partition_dir_name("x-"), None);
    }
}
