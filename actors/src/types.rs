//! The words of the domain as small validated types: a [`TopicName`] that is safe to use as a
//! directory name, a [`Topition`] (topic + partition) and the per-topic configuration the log
//! and the partition actors obey.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compression::Compression;

/// Offsets are Kafka offsets: signed 64-bit, dense, starting at 0 for a new partition.
pub type Offset = i64;

/// Partition numbers as Kafka uses them on the wire (non-negative `i32`).
pub type PartitionId = i32;

/// The longest topic name Kafka accepts; `<name>-<partition>` must still fit in 255 bytes.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A topic name that is safe to use as part of a path: 1..=249 bytes of `[A-Za-z0-9._-]`, and
/// neither `.` nor `..` (Kafka's rule). Holding one proves the name cannot escape the data dir.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

/// Why a string is not a [`TopicName`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicNameError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_NAME_LEN`].
    #[error("topic name is longer than {MAX_TOPIC_NAME_LEN} characters")]
    TooLong,
    /// The name is `.` or `..`.
    #[error("topic name may not be '.' or '..'")]
    Dots,
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("topic name may only contain ASCII letters, digits, '.', '_' and '-'")]
    BadCharacter,
}

impl TopicName {
    /// Validates `name` as Kafka does.
    pub fn new(name: impl Into<String>) -> Result<Self, TopicNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(TopicNameError::Empty);
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(TopicNameError::TooLong);
        }
        if name == "." || name == ".." {
            return Err(TopicNameError::Dots);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(TopicNameError::BadCharacter);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TopicName> for String {
    fn from(value: TopicName) -> Self {
        value.0
    }
}

// Ordering, equality and hashing are the inner string's, so maps keyed by TopicName can be
// looked up with a plain &str from a URL.
impl std::borrow::Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One partition of one topic: the unit that owns a log directory and an actor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topition {
    pub topic: TopicName,
    pub partition: PartitionId,
}

impl fmt::Display for Topition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// When appended bytes are forced to disk, and so what an acknowledgement promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flush", rename_all = "snake_case")]
pub enum FlushPolicy {
    /// fdatasync before every acknowledgement, as a group commit: an ack survives power loss.
    Always,
    /// fdatasync every `interval_ms`; acks come before the flush, so a power loss may lose up
    /// to that window (a process crash loses nothing: the bytes are in the page cache).
    Interval { interval_ms: u64 },
    /// Never fdatasync on the write path; the kernel writes back when it likes.
    Os,
}

impl FlushPolicy {
    pub fn interval(&self) -> Option<Duration> {
        match self {
            FlushPolicy::Interval { interval_ms } => Some(Duration::from_millis(*interval_ms)),
            _ => None,
        }
    }
}

/// How one partition's log is laid out and kept. Defaults are Kafka's where Kafka has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// A segment rolls once appending the next batch would take it past this size.
    pub segment_bytes: u64,
    /// One sparse index entry per this many bytes of batches (Kafka's `index.interval.bytes`).
    pub index_interval_bytes: u32,
    #[serde(flatten)]
    pub flush: FlushPolicy,
    /// Whole segments whose newest record is older than this are deleted; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// Oldest segments are deleted while the partition is bigger than this; `None`: no limit.
    pub retention_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Always,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
        }
    }
}

/// Everything a topic is created with. The partition count never changes afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// The codec used when a produce request does not name one.
    pub compression: Compression,
    #[serde(flatten)]
    pub log: LogConfig,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            compression: Compression::None,
            log: LogConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_that_could_escape_the_data_dir_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", "a b", "é"] {
            assert!(TopicName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            TopicName::new("x".repeat(250)),
            Err(TopicNameError::TooLong)
        );
        for good in [
            "orders",
            "logs-2026.11",
            "a_b",
            "..x",
            "x".repeat(249).as_str(),
        ] {
            assert!(TopicName::new(good).is_ok(), "{good:?} rejected");
        }
    }
}
