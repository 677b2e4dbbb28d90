//! The seam between the HTTP layer and where records live. The handlers speak only to
//! [`Backend`]: produce batches to partitions, read records from an offset, list, describe,
//! create and delete topics. Two implementations sit behind it:
//!
//! - [`local::LocalBackend`]: rill's own partition actors and segment files (the default);
//! - [`kafka::KafkaBackend`] (`[backend] kind = "kafka"`), where rill is a stateless gateway
//!   in front of a Kafka cluster.
//!
//! Dispatch is a plain enum match — no trait objects on the hot path, and no `if kafka`
//! anywhere in the handlers.

pub mod kafka;
pub mod local;

use rill_actors::compression::Compression;
use rill_actors::error::{LogError, TopicError};
use rill_actors::producer::PartitionBatch;
use rill_actors::record_batch::Record;
use rill_actors::types::{Offset, PartitionId, TopicConfig, TopicName};

pub use kafka::KafkaBackend;
pub use local::LocalBackend;

/// What a produce request needs to know about its topic.
#[derive(Clone, Debug)]
pub struct TopicMeta {
    pub name: TopicName,
    pub partitions: u32,
    /// The codec used when a request names none.
    pub compression: Compression,
}

/// One partition's offsets and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: PartitionId,
    pub start_offset: Offset,
    /// The next offset to be written.
    pub end_offset: Offset,
    /// Bytes stored, where the backend knows it.
    pub bytes: Option<u64>,
}

/// A topic as `GET /api/topics/{topic}` shows it.
#[derive(Clone, Debug)]
pub struct TopicDescription {
    pub meta: TopicMeta,
    pub partitions: Vec<PartitionInfo>,
    pub config: TopicConfig,
}

/// How one partition's batch was acknowledged.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Every record appended, at consecutive offsets from `base_offset` (the embedded log).
    Appended { base_offset: Offset },
    /// Each record on its own (a Kafka cluster: other producers may interleave, and single
    /// records may fail), in batch order.
    PerRecord(Vec<Result<Offset, BackendError>>),
}

/// Failures of a backend, independent of HTTP (mapped to status codes in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The topic does not exist.
    #[error("topic {0} not found")]
    TopicNotFound(String),
    /// The log refused or failed an operation (embedded backend).
    #[error(transparent)]
    Log(#[from] LogError),
    /// Topic administration failed (embedded backend).
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The backend cannot serve now (cluster down, broker shutting down); retrying later may
    /// succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A record or request was refused by the backend; `retriable` says whether resending
    /// the same thing may succeed.
    #[error("{message}")]
    Rejected {
        code: &'static str,
        message: String,
        retriable: bool,
    },
}

impl BackendError {
    /// The `error_code` a per-record failure carries.
    pub fn record_error_code(&self) -> &'static str {
        match self {
            BackendError::Rejected { code, .. } => code,
            BackendError::Log(LogError::DiskFull { .. }) => "insufficient_storage",
            BackendError::TopicNotFound(_) => "topic_not_found",
            _ => "unavailable",
        }
    }

    /// Whether sending the same thing again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            BackendError::Rejected { retriable, .. } => *retriable,
            BackendError::TopicNotFound(_) => false,
            BackendError::Log(e) => !matches!(
                e,
                LogError::InvalidBatch(_)
                    | LogError::BatchTooLarge { .. }
                    | LogError::Corrupt { .. }
            ),
            BackendError::Topic(_) | BackendError::Unavailable(_) => true,
        }
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, BackendError::Log(e) if e.is_disk_full())
    }
}

/// The backend a broker runs on.
pub enum Backend {
    Local(LocalBackend),
    Kafka(KafkaBackend),
}

impl Backend {
    /// The topic, if it exists. Fast: served from memory (or a metadata cache).
    pub async fn topic(&self, name: &str) -> Result<Option<TopicMeta>, BackendError> {
        match self {
            Backend::Local(b) => Ok(b.topic(name)),
            Backend::Kafka(b) => b.topic(name).await,
        }
    }

    /// The codec batches should be built with for a request asking for `requested`: the
    /// embedded log stores the batch as built; a Kafka client compresses itself.
    pub fn batch_compression(&self, requested: Compression) -> Compression {
        match self {
            Backend::Local(_) => requested,
            // librdkafka compresses (per producer, one per codec): a compressed batch would
            // only be decompressed again.
            Backend::Kafka(_) => Compression::None,
        }
    }

    /// Appends each batch (built with base offset 0) to its partition; one outcome per batch,
    /// in order. `compression` is the codec the request asked for.
    pub async fn produce(
        &self,
        topic: &TopicMeta,
        compression: Compression,
        batches: Vec<PartitionBatch>,
    ) -> Result<Vec<Result<BatchOutcome, BackendError>>, BackendError> {
        match self {
            Backend::Local(b) => b.produce(topic, compression, batches).await,
            Backend::Kafka(b) => b.produce(topic, compression, batches).await,
        }
    }

    /// Up to `max_records` records of one partition from `offset` on (empty at the end).
    pub async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_records: usize,
    ) -> Result<Vec<Record>, BackendError> {
        match self {
            Backend::Local(b) => b.read(topic, partition, offset, max_records).await,
            Backend::Kafka(b) => b.read(topic, partition, offset, max_records).await,
        }
    }

    /// Every topic, sorted by name.
    pub async fn list(&self) -> Result<Vec<TopicMeta>, BackendError> {
        match self {
            Backend::Local(b) => Ok(b.list()),
            Backend::Kafka(b) => b.list().await,
        }
    }

    pub async fn describe(&self, name: &str) -> Result<TopicDescription, BackendError> {
        match self {
            Backend::Local(b) => b.describe(name).await,
            Backend::Kafka(b) => b.describe(name).await,
        }
    }

    pub async fn create(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, BackendError> {
        match self {
            Backend::Local(b) => b.create(name, config).await,
            Backend::Kafka(b) => b.create(name, config).await,
        }
    }

    /// Fills `table` with the idempotency keys the backend kept across a restart (the
    /// embedded log's journals; a Kafka gateway keeps none).
    pub fn recover_idempotency(&self, table: &crate::idempotency::IdempotencyTable) {
        match self {
            Backend::Local(b) => b.recover_idempotency(table),
            Backend::Kafka(_) => {}
        }
    }

    pub async fn delete(&self, name: &str) -> Result<(), BackendError> {
        match self {
            Backend::Local(b) => b.delete(name).await,
            Backend::Kafka(b) => b.delete(name).await,
        }
    }

    /// Whether produce requests can succeed now (`/readyz`).
    pub async fn is_ready(&self) -> bool {
        match self {
            Backend::Local(_) => true,
            Backend::Kafka(b) => b.is_ready(),
        }
    }

    /// Flushes and stops everything (after the HTTP server stopped).
    pub async fn shutdown(&self) {
        match self {
            Backend::Local(b) => b.shutdown().await,
            Backend::Kafka(b) => b.shutdown().await,
        }
    }
}
