//! Errors of the log and the actors that own it. They know nothing of HTTP: the server maps
//! each variant to a status code and `error_code` in one place.

use std::io;
use std::path::PathBuf;

use crate::record_batch::BatchError;
use crate::types::Offset;

/// What can go wrong appending to or reading from a partition log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file system is out of space (ENOSPC/EDQUOT). Nothing of the failed append is in the
    /// log: the partial write was cut off again, so a later append succeeds once space is freed.
    #[error("disk full while writing {path}")]
    DiskFull { path: PathBuf },

    /// A flush failed earlier; the partition refuses writes until the broker restarts, because
    /// after a failed fsync the kernel may have dropped the dirty pages it could not write.
    #[error("partition is fail-stopped after a storage error: {reason}")]
    FailStopped { reason: String },

    /// Any other I/O failure, with what was being done.
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Stored bytes failed validation on read (bit rot, tampering): the read is refused rather
    /// than serving wrong bytes.
    #[error("corrupt batch in {path} at position {position}: {source}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        #[source]
        source: BatchError,
    },

    /// A read asked for an offset below the log start (deleted by retention).
    #[error("offset {requested} is below the log start offset {log_start}")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
    },

    /// The batch handed to append is not one well-formed batch.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[source] BatchError),

    /// The batch is larger than a whole segment may be.
    #[error("batch of {size} bytes exceeds segment_bytes {limit}")]
    BatchTooLarge { size: usize, limit: u64 },

    /// The partition actor is gone (topic deleted or broker stopping).
    #[error("partition is shut down")]
    ShutDown,
}

impl LogError {
    /// Wraps an I/O error, recognising a full disk so callers can answer 507.
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            LogError::DiskFull { path }
        } else {
            LogError::Io {
                context,
                path,
                source,
            }
        }
    }

    /// Whether the failure is local to one request (the partition stays writable).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LogError::DiskFull { .. })
    }
}

/// ENOSPC and EDQUOT both mean "free space and retry".
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28) | Some(122))
}

/// What can go wrong managing topics.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Create named a topic that exists.
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    /// The topic does not exist.
    #[error("topic {0} not found")]
    NotFound(String),
    /// A topic's configuration is unusable (e.g. zero partitions, or broker.toml asks for a
    /// different partition count than the topic on disk has).
    #[error("invalid topic configuration: {0}")]
    InvalidConfig(String),
    /// Opening or recovering a partition log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Reading or writing the topic metadata file failed.
    #[error("{context} {path}: {source}")]
    Metadata {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
