//! [`PartitionActor`]: the one owner of a partition's log. Every append, read and flush of a
//! partition goes through its mailbox, so offsets are assigned without locks.
//!
//! The actor does as little as it can on its thread: it stamps offsets and copies bytes into
//! the segment (a `pwrite` into the page cache). Building, checksumming and compressing batches
//! happen before the message is sent; fsync happens on the blocking pool.
//!
//! Group commit (`flush = "always"`): an append's answer waits in `waiting` until a flush
//! takes it; the flush answers it from the blocking pool once its fsyncs return. At most one
//! flush runs at a time; appends that arrive meanwhile are covered by the next one, so one
//! fsync acknowledges everything that piled up while the previous one ran and throughput
//! grows with concurrency. A failed flush fail-stops the partition: every
//! waiting append is answered with an error and later appends are refused, because after a
//! failed fsync the kernel may have dropped the pages it could not write.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::error::LogError;
use crate::idempotency::IdempotencyTag;
use crate::log::PartitionLog;
use crate::messages::{
    Append, AppendAck, EnforceRetention, GetStats, PartitionStats, Read, Shutdown,
};
use crate::segment::PageCacheRelease;
use crate::types::{FlushPolicy, Topition};

/// Appends waiting in a partition's mailbox before senders are made to wait: enough to keep
/// a flush busy, small enough to bound memory (each message holds a whole batch).
const MAILBOX_CAPACITY: usize = 256;

/// Appends and where to send each one's answer, in offset order.
type Waiting = VecDeque<(AppendAck, oneshot::Sender<Result<AppendAck, LogError>>)>;

pub struct PartitionActor {
    topition: Topition,
    log: PartitionLog,
    retention_check: Duration,
    /// Appends in the log that no flush has taken yet (only with `flush = "always"`).
    waiting: Waiting,
    flushing: bool,
    /// Set by a failed flush; the partition refuses writes from then on.
    fail_stop: Option<String>,
}

impl PartitionActor {
    pub fn new(topition: Topition, log: PartitionLog, retention_check: Duration) -> Self {
        Self {
            topition,
            log,
            retention_check,
            waiting: VecDeque::new(),
            flushing: false,
            fail_stop: None,
        }
    }

    pub fn topition(&self) -> &Topition {
        &self.topition
    }

    fn flush_policy(&self) -> FlushPolicy {
        self.log.config().flush
    }

    /// Appends one batch to the log. Plain method, so it can be tested without a mailbox.
    pub fn append(
        &mut self,
        mut batch: Vec<u8>,
        tag: Option<&IdempotencyTag>,
    ) -> Result<AppendAck, LogError> {
        if let Some(reason) = &self.fail_stop {
            return Err(LogError::FailStopped {
                reason: reason.clone(),
            });
        }
        match self.log.append_tagged(&mut batch, tag) {
            Ok(appended) => Ok(AppendAck {
                base_offset: appended.base_offset,
                last_offset: appended.last_offset,
            }),
            Err(e) => {
                if let LogError::FailStopped { reason } = &e {
                    self.fail_stop = Some(reason.clone());
                }
                Err(e)
            }
        }
    }

    fn stats(&self) -> PartitionStats {
        PartitionStats {
            start_offset: self.log.start_offset(),
            end_offset: self.log.end_offset(),
            bytes: self.log.size_bytes(),
            segments: self.log.segment_count(),
            fail_stopped: self.fail_stop.is_some(),
        }
    }

    /// Starts a background flush of everything appended so far, unless one is running (the
    /// next one starts when it finishes) or there is nothing to flush.
    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.fail_stop.is_some() || !self.log.has_unsynced() {
            return;
        }
        let mut targets = match self.log.take_unsynced() {
            Ok(t) => t,
            Err(e) => return self.enter_fail_stop(e.to_string()),
        };
        self.flushing = true;
        // Every append waiting now is covered by this flush. The flush's own thread answers
        // them as soon as the fsyncs return, rather than after a hop back to this actor's
        // thread: an acknowledgement's latency is what bounds throughput per connection.
        let covered = std::mem::take(&mut self.waiting);
        let page_cache = std::mem::take(&mut targets.page_cache);
        let sync = tokio::task::spawn_blocking(move || {
            let timer = crate::metrics::FLUSH_LATENCY.start_timer();
            let result = targets.sync();
            drop(timer);
            let answer = result.as_ref().map(|_| ()).map_err(ToString::to_string);
            answer_waiting(covered, &answer);
            if result.is_ok() {
                page_cache.into_iter().for_each(PageCacheRelease::apply);
            }
            result
        });
        ctx.spawn(
            async move {
                match sync.await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(join) => Err(format!("flush task failed: {join}")),
                }
            }
            .into_actor(self)
            .map(move |result, act, ctx| act.flush_finished(result, ctx)),
        );
    }

    fn flush_finished(&mut self, result: Result<(), String>, ctx: &mut Context<Self>) {
        self.flushing = false;
        if let Err(reason) = result {
            log::error!(
                "{}: flush failed, partition fail-stopped: {reason}",
                self.topition
            );
            return self.enter_fail_stop(reason);
        }
        if !self.waiting.is_empty()
            || (self.log.has_unsynced() && self.flush_policy() == FlushPolicy::Always)
        {
            self.start_flush(ctx);
        }
    }

    fn enter_fail_stop(&mut self, reason: String) {
        let answer = Err(reason.clone());
        self.fail_stop = Some(reason);
        answer_waiting(std::mem::take(&mut self.waiting), &answer);
    }

    /// Syncs everything on this thread: only for shutdown, when nothing else waits.
    fn flush_now(&mut self) -> Result<(), LogError> {
        let targets = self.log.take_everything()?;
        let dir = self.log.dir().to_path_buf();
        targets
            .sync()
            .map_err(|e| LogError::io("flushing", dir, e))?;
        Ok(())
    }
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if let Some(interval) = self.flush_policy().interval() {
            ctx.run_interval(interval, |act, ctx| act.start_flush(ctx));
        }
        ctx.run_interval(self.retention_check, |act, _| {
            if let Err(e) = act.log.apply_retention(now_ms()) {
                log::warn!("{}: retention: {e}", act.topition);
            }
        });
    }
}

impl Handler<Append> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: Append, ctx: &mut Self::Context) {
        let result = self.append(msg.batch, msg.tag.as_ref());
        match (result, self.flush_policy()) {
            (Ok(ack), FlushPolicy::Always) => {
                self.waiting.push_back((ack, msg.reply));
                self.start_flush(ctx);
            }
            (result, _) => {
                let _ = msg.reply.send(result);
            }
        }
    }
}

/// Appends `batch` to the partition behind `partition` and waits for the answer.
pub async fn append(
    partition: &Addr<PartitionActor>,
    batch: Vec<u8>,
    tag: Option<IdempotencyTag>,
) -> Result<AppendAck, LogError> {
    let (reply, answer) = oneshot::channel();
    let message = Append { batch, tag, reply };
    // `try_send` takes the message without a channel for the handler's `()`. It refuses only
    // when this sender was parked by a full mailbox; then `send` waits for room.
    match partition.try_send(message) {
        Ok(()) => {}
        Err(SendError::Full(message)) => partition
            .send(message)
            .await
            .map_err(|_| LogError::ShutDown)?,
        Err(SendError::Closed(_)) => return Err(LogError::ShutDown),
    }
    answer.await.unwrap_or(Err(LogError::ShutDown))
}

impl Handler<Read> for PartitionActor {
    type Result = Result<Vec<u8>, LogError>;

    fn handle(&mut self, msg: Read, _: &mut Self::Context) -> Self::Result {
        self.log.read(msg.offset, msg.max_bytes)
    }
}

impl Handler<GetStats> for PartitionActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats())
    }
}

impl Handler<EnforceRetention> for PartitionActor {
    type Result = Result<usize, LogError>;

    fn handle(&mut self, msg: EnforceRetention, _: &mut Self::Context) -> Self::Result {
        self.log.apply_retention(msg.now_ms)
    }
}

impl Handler<Shutdown> for PartitionActor {
    type Result = Result<(), LogError>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        if self.fail_stop.is_some() {
            return Ok(());
        }
        // A background flush may be running over some of these files; syncing them again
        // here is harmless and lets every waiting append be answered before the actor ends.
        let result = self.flush_now();
        let answer = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        answer_waiting(std::mem::take(&mut self.waiting), &answer);
        result
    }
}

/// Answers appends a flush covered: their acks if it succeeded, the fail-stop error if not.
fn answer_waiting(waiting: Waiting, answer: &Result<(), String>) {
    for (ack, reply) in waiting {
        let _ = reply.send(match answer {
            Ok(()) => Ok(ack),
            Err(reason) => Err(LogError::FailStopped {
                reason: reason.clone(),
            }),
        });
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
