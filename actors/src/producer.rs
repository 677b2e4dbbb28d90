//! [`ProducerActor`]: fans one produce request's batches (one per partition) out to the
//! partition actors and gathers their acknowledgements.
//!
//! The batches arrive built, checksummed and compressed — that CPU work is done by whoever
//! sends the message (the HTTP workers), in parallel. The actor only forwards and waits, so it
//! is cheap; the server starts one per HTTP worker thread so no single thread carries all
//! traffic.

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::join_all;

use crate::error::LogError;
use crate::idempotency::IdempotencyTag;
use crate::messages::AppendAck;
use crate::topics::Topic;
use crate::types::PartitionId;

/// One partition's share of a request.
pub struct PartitionBatch {
    pub partition: PartitionId,
    /// A whole RecordBatch v2 with base offset 0.
    pub batch: Vec<u8>,
    /// Set when the request carries an `Idempotency-Key`.
    pub tag: Option<IdempotencyTag>,
}

/// Append each batch to its partition; answers with one result per batch, in order.
#[derive(Message)]
#[rtype(result = "Vec<Result<AppendAck, LogError>>")]
pub struct Produce {
    pub topic: Arc<Topic>,
    pub batches: Vec<PartitionBatch>,
}

#[derive(Default)]
pub struct ProducerActor;

impl Actor for ProducerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Produce> for ProducerActor {
    type Result = ResponseFuture<Vec<Result<AppendAck, LogError>>>;

    fn handle(&mut self, msg: Produce, _: &mut Self::Context) -> Self::Result {
        Box::pin(produce(msg))
    }
}

/// The fan-out itself: all partitions are appended to concurrently.
pub async fn produce(msg: Produce) -> Vec<Result<AppendAck, LogError>> {
    let Produce { topic, batches } = msg;
    join_all(batches.into_iter().map(|pb| {
        // A sender of its own per append: a full mailbox parks the sender that filled it, and
        // a parked sender shared by every request would send them all down the slower path.
        let addr = topic.partition(pb.partition).cloned();
        async move {
            match addr {
                Some(addr) => crate::partition::append(&addr, pb.batch, pb.tag).await,
                None => Err(LogError::ShutDown),
            }
        }
    }))
    .await
}
