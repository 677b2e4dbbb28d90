//! Every message the actors exchange, in one place: small structs whose `rtype` is the answer
//! (except [`Append`]'s, which travels on a channel of its own: see there).

use actix::Message;
use tokio::sync::oneshot;

use crate::error::LogError;
use crate::idempotency::IdempotencyTag;
use crate::types::Offset;

/// Append one batch (built with base offset 0, CRC already computed) to a partition. Sent
/// with [`crate::partition::append`].
///
/// Answered on `reply` once the batch is in the log and — under `flush = "always"` — on disk.
/// The answer travels on the message's own channel rather than as the handler's result: a
/// handler's deferred result is a task on the actor's thread, so every acknowledgement would
/// wake that thread on its way from the flush to the request.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    pub batch: Vec<u8>,
    /// Set for a batch of an idempotent request: journaled with it (see `idempotency`).
    pub tag: Option<IdempotencyTag>,
    pub reply: oneshot::Sender<Result<AppendAck, LogError>>,
}

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: Offset,
    pub last_offset: Offset,
}

/// Read whole batches starting with the one that holds `offset`, up to about `max_bytes`.
#[derive(Message)]
#[rtype(result = "Result<Vec<u8>, LogError>")]
pub struct Read {
    pub offset: Offset,
    pub max_bytes: usize,
}

/// Report the partition's offsets and size.
#[derive(Message)]
#[rtype(result = "PartitionStats")]
pub struct GetStats;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PartitionStats {
    /// First offset still in the log.
    pub start_offset: Offset,
    /// The next offset to be written.
    pub end_offset: Offset,
    /// Bytes in all segments.
    pub bytes: u64,
    pub segments: usize,
    /// Whether the partition refuses writes after a failed flush.
    pub fail_stopped: bool,
}

/// Flush everything, answer, then stop the actor (topic deletion, broker shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), LogError>")]
pub struct Shutdown;

/// Apply retention now (tests and operators; the actor also does it on a timer).
#[derive(Message)]
#[rtype(result = "Result<usize, LogError>")]
pub struct EnforceRetention {
    pub now_ms: i64,
}
