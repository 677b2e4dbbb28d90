//! [`StatusActor`]: the state of asynchronous produce requests, from `pending` to a final
//! `completed`, `failed` or `timeout`, kept for `ttl` after it finishes.
//!
//! Expiry follows mini-redis's shape: beside the map, a `BTreeSet<(Instant, RequestId)>` orders
//! finished requests by when they expire, and a scheduled `Sweep` message pops the expired
//! front. The number of unfinished requests is bounded by `max_pending` through
//! [`PendingSlots`], taken on the HTTP worker before a request is registered: one more is
//! refused (the HTTP layer answers 429), so a flood of async requests cannot grow memory.
//! Finished requests are bounded too, by the per-record results they hold
//! (`max_finished_records`): past it the oldest finished ones are dropped before their TTL.
//!
//! There is one status actor per HTTP worker ([`StatusShards`]), started on the worker's own
//! thread: an async request's registration, its move to `processing` and its final state are
//! sent by tasks of the worker that accepted it, and stay on that thread. A single actor on
//! its own thread cost every async request four cross-thread wake-ups (an eventfd write and
//! a context switch each) — a tenth of the CPU of a 100-record async request. A request id
//! carries its shard's index, so a poll arriving at any worker finds the right actor.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde::Serialize;

use crate::types::{Offset, PartitionId, TopicName};

/// A request id: a ULID-shaped random token (unguessable, unlike a timestamp).
pub type RequestId = String;

/// Life cycle of an async request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Timeout,
}

impl RequestStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, RequestStatus::Pending | RequestStatus::Processing)
    }
}

/// The result for one input record, in input order: where it landed or why it did not.
///
/// Serialized as `{"partition", "offset", "timestamp", "error_code", "error", "retriable"}`,
/// the last three `null` for an appended record. A finished async request keeps one per
/// record for its TTL, so the rare failure's text is boxed: 40 bytes a record instead of 88.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordResult {
    pub partition: Option<PartitionId>,
    pub offset: Offset,
    pub timestamp: Option<i64>,
    /// Why the record was not appended; `None` for an appended one.
    pub failure: Option<Box<RecordFailure>>,
}

/// What a record that was not appended answers beside its partition and offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFailure {
    pub error_code: String,
    pub error: String,
    /// Whether sending the same record again may succeed (a full disk, an unavailable
    /// cluster) or never will (a value that does not fit its format).
    pub retriable: bool,
}

impl RecordResult {
    pub fn ok(partition: PartitionId, offset: Offset, timestamp: i64) -> Self {
        Self {
            partition: Some(partition),
            offset,
            timestamp: Some(timestamp),
            failure: None,
        }
    }

    /// `(partition, offset, timestamp)` of a record [`RecordResult::ok`] describes: appended,
    /// with nothing else to say.
    pub fn appended(&self) -> Option<(PartitionId, Offset, i64)> {
        match self {
            RecordResult {
                partition: Some(partition),
                offset,
                timestamp: Some(timestamp),
                failure: None,
            } => Some((*partition, *offset, *timestamp)),
            _ => None,
        }
    }

    /// A record that was not appended.
    pub fn failed(
        partition: Option<PartitionId>,
        code: &str,
        message: String,
        retriable: bool,
    ) -> Self {
        Self {
            partition,
            offset: -1,
            timestamp: None,
            failure: Some(Box::new(RecordFailure {
                error_code: code.to_string(),
                error: message,
                retriable,
            })),
        }
    }
}

impl Serialize for RecordResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let failure = self.failure.as_deref();
        let mut entry = serializer.serialize_struct("RecordResult", 6)?;
        entry.serialize_field("partition", &self.partition)?;
        entry.serialize_field("offset", &self.offset)?;
        entry.serialize_field("timestamp", &self.timestamp)?;
        entry.serialize_field("error_code", &failure.map(|f| &f.error_code))?;
        entry.serialize_field("error", &failure.map(|f| &f.error))?;
        entry.serialize_field("retriable", &failure.map(|f| f.retriable))?;
        entry.end()
    }
}

/// Everything the status endpoint shows about one request.
#[derive(Clone, Debug, Serialize)]
pub struct RequestState {
    pub request_id: RequestId,
    pub topic: TopicName,
    pub status: RequestStatus,
    #[serde(serialize_with = "serialize_time")]
    pub created_at: SystemTime,
    #[serde(serialize_with = "serialize_time")]
    pub updated_at: SystemTime,
    pub record_count: usize,
    /// Shared: a status poll clones the state, and a finished request may hold 100,000s. A
    /// `Vec` inside, so the results move in without a copy.
    pub offsets: Arc<Vec<RecordResult>>,
    pub error: Option<String>,
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_millis(*t))
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-29T01:02:03.456Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Register a new async request. Sent one way (`do_send`) once a [`PendingSlot`] is held: the
/// 202 needs no answer from the actor, and the mailbox is FIFO, so a poll the client sends
/// after the 202 always finds the request registered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub request_id: RequestId,
    pub topic: TopicName,
    pub record_count: usize,
}

/// `max_pending` unfinished requests exist.
#[derive(Debug, thiserror::Error)]
#[error("{pending} async requests are pending (max_pending)")]
pub struct StatusFull {
    pub pending: usize,
}

/// The `max_pending` bound on unfinished async requests, shared by the HTTP workers: an atomic
/// count instead of a question to the status actor, which would cost every async request a
/// round trip to the actor's thread and back before its 202.
#[derive(Debug)]
pub struct PendingSlots {
    taken: AtomicUsize,
    max: usize,
}

/// One unfinished async request's place under `max_pending`; given back when dropped, which
/// the request's task does right after sending its final state.
#[derive(Debug)]
pub struct PendingSlot(Arc<PendingSlots>);

impl PendingSlots {
    pub fn new(max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            taken: AtomicUsize::new(0),
            max: max_pending,
        })
    }

    pub fn try_take(self: &Arc<Self>) -> Result<PendingSlot, StatusFull> {
        let before = self.taken.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return Err(StatusFull { pending: before });
        }
        Ok(PendingSlot(Arc::clone(self)))
    }

    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Move a request to `processing`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MarkProcessing {
    pub request_id: RequestId,
}

/// Record a request's final state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finish {
    pub request_id: RequestId,
    pub status: RequestStatus,
    pub offsets: Vec<RecordResult>,
    pub error: Option<String>,
}

/// Look a request up.
#[derive(Message)]
#[rtype(result = "Option<RequestState>")]
pub struct GetStatus {
    pub request_id: RequestId,
}

/// Counts for metrics and readiness.
#[derive(Message)]
#[rtype(result = "StatusCounts")]
pub struct GetCounts;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub unfinished: usize,
    pub finished: usize,
}

/// Drop finished requests whose TTL passed. Scheduled every `cleanup_interval`.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Sweep;

pub struct StatusActor {
    requests: HashMap<RequestId, RequestState>,
    expirations: BTreeSet<(Instant, RequestId)>,
    unfinished: usize,
    /// Per-record results held by finished requests.
    finished_records: usize,
    max_finished_records: usize,
    ttl: Duration,
    cleanup_interval: Duration,
}

impl StatusActor {
    pub fn new(ttl: Duration, cleanup_interval: Duration) -> Self {
        Self {
            requests: HashMap::new(),
            expirations: BTreeSet::new(),
            unfinished: 0,
            finished_records: 0,
            max_finished_records: usize::MAX,
            ttl,
            cleanup_interval,
        }
    }

    /// Bounds the per-record results finished requests may hold (40 bytes each, more with a
    /// failure's text): past it the oldest finished requests are forgotten early.
    pub fn with_max_finished_records(mut self, max: usize) -> Self {
        self.max_finished_records = max;
        self
    }

    /// Enters a request as `pending` (admission under `max_pending` is [`PendingSlots`]'s).
    pub fn register(&mut self, msg: Register) {
        if self.requests.contains_key(&msg.request_id) {
            return;
        }
        let now = SystemTime::now();
        self.unfinished += 1;
        self.requests.insert(
            msg.request_id.clone(),
            RequestState {
                request_id: msg.request_id,
                topic: msg.topic,
                status: RequestStatus::Pending,
                created_at: now,
                updated_at: now,
                record_count: msg.record_count,
                offsets: Arc::default(),
                error: None,
            },
        );
    }

    pub fn finish(&mut self, msg: Finish, now: Instant) {
        let Some(state) = self.requests.get_mut(&msg.request_id) else {
            return;
        };
        if state.status.is_finished() {
            return;
        }
        self.unfinished -= 1;
        state.status = msg.status;
        state.offsets = msg.offsets.into();
        state.error = msg.error;
        state.updated_at = SystemTime::now();
        self.finished_records += state.offsets.len();
        self.expirations.insert((now + self.ttl, msg.request_id));
        while self.finished_records > self.max_finished_records {
            let Some((_, id)) = self.expirations.pop_first() else {
                break;
            };
            self.forget(&id);
        }
    }

    fn forget(&mut self, id: &str) {
        if let Some(state) = self.requests.remove(id) {
            self.finished_records -= state.offsets.len();
        }
    }

    /// Removes finished requests that expired at or before `now`.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some((when, _)) = self.expirations.first() {
            if *when > now {
                break;
            }
            let (_, id) = self.expirations.pop_first().expect("first exists");
            self.forget(&id);
            removed += 1;
        }
        removed
    }

    pub fn counts(&self) -> StatusCounts {
        StatusCounts {
            unfinished: self.unfinished,
            finished: self.requests.len() - self.unfinished,
        }
    }
}

impl Actor for StatusActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(self.cleanup_interval, |_, ctx| ctx.notify(Sweep));
    }
}

impl Handler<Register> for StatusActor {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Self::Context) {
        self.register(msg)
    }
}

impl Handler<MarkProcessing> for StatusActor {
    type Result = ();
    fn handle(&mut self, msg: MarkProcessing, _: &mut Self::Context) {
        if let Some(state) = self.requests.get_mut(&msg.request_id) {
            if state.status == RequestStatus::Pending {
                state.status = RequestStatus::Processing;
                state.updated_at = SystemTime::now();
            }
        }
    }
}

impl Handler<Finish> for StatusActor {
    type Result = ();
    fn handle(&mut self, msg: Finish, _: &mut Self::Context) {
        self.finish(msg, Instant::now());
    }
}

impl Handler<GetStatus> for StatusActor {
    type Result = Option<RequestState>;
    fn handle(&mut self, msg: GetStatus, _: &mut Self::Context) -> Self::Result {
        self.requests.get(&msg.request_id).cloned()
    }
}

impl Handler<GetCounts> for StatusActor {
    type Result = MessageResult<GetCounts>;
    fn handle(&mut self, _: GetCounts, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.counts())
    }
}

impl Handler<Sweep> for StatusActor {
    type Result = usize;
    fn handle(&mut self, _: Sweep, _: &mut Self::Context) -> usize {
        self.sweep(Instant::now())
    }
}

/// The most shards: a request id carries its shard's index in one byte.
pub const MAX_SHARDS: usize = 256;
const SHARD_MASK: u128 = MAX_SHARDS as u128 - 1;

thread_local! {
    /// The index of the shard started on this thread, if any.
    static LOCAL_SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The status actors, one per HTTP worker thread, by index.
pub struct StatusShards {
    slots: Mutex<Vec<Shard>>,
    make: Box<dyn Fn() -> StatusActor + Send + Sync>,
}

struct Shard {
    thread: ThreadId,
    addr: Addr<StatusActor>,
}

impl StatusShards {
    /// `make` builds each shard's actor (ttl, cleanup interval, its share of
    /// `max_finished_records`).
    pub fn new(make: impl Fn() -> StatusActor + Send + Sync + 'static) -> Self {
        Self {
            slots: Mutex::new(Vec::new()),
            make: Box::new(make),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Shard>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the calling thread's status actor on its arbiter, once per thread, and returns
    /// its index. Called by the HTTP server's app factory, which runs on every worker thread
    /// (once per listener). A worker restarted after a panic takes over its stopped shard's
    /// index; ids already handed out for it name a request that was lost with the worker.
    pub fn start_here(&self) -> usize {
        let here = std::thread::current().id();
        let mut slots = self.slots();
        if let Some(index) = slots
            .iter()
            .position(|s| s.thread == here && s.addr.connected())
        {
            return index;
        }
        let stopped = slots.iter().position(|s| !s.addr.connected());
        if stopped.is_none() && slots.len() == MAX_SHARDS {
            // Past the limit the thread shares shard 0 (any thread may send to any shard).
            return 0;
        }
        let shard = Shard {
            thread: here,
            addr: (self.make)().start(),
        };
        let index = match stopped {
            Some(index) => {
                slots[index] = shard;
                index
            }
            None => {
                slots.push(shard);
                slots.len() - 1
            }
        };
        LOCAL_SHARD.with(|local| local.set(Some(index)));
        index
    }

    /// The index of the calling thread's shard (0 on a thread that started none).
    pub fn local_index() -> usize {
        LOCAL_SHARD.with(Cell::get).unwrap_or(0)
    }

    /// `random` (a new request id's 128 bits) with its low byte replaced by the calling
    /// thread's shard index: the request's state is kept on the thread that handles it.
    pub fn mark_local(random: u128) -> u128 {
        (random & !SHARD_MASK) | Self::local_index() as u128
    }

    /// The shard index a request id made by [`StatusShards::mark_local`] carries.
    pub fn index_in(id: u128) -> usize {
        (id & SHARD_MASK) as usize
    }

    /// The actor of shard `index`; shard 0 for an index no shard has (an id made by an
    /// earlier run with more workers). `None` before any shard started.
    pub fn shard(&self, index: usize) -> Option<Addr<StatusActor>> {
        let slots = self.slots();
        slots
            .get(index)
            .or_else(|| slots.first())
            .map(|s| s.addr.clone())
    }

    /// The counts of every shard, summed; `None` if a shard did not answer.
    pub async fn counts(&self) -> Option<StatusCounts> {
        let mut total = StatusCounts::default();
        let shards: Vec<_> = self.slots().iter().map(|s| s.addr.clone()).collect();
        for addr in shards {
            let counts = addr.send(GetCounts).await.ok()?;
            total.unfinished += counts.unfinished;
            total.finished += counts.finished;
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_result_is_written_with_all_six_fields_and_stays_small() {
        assert_eq!(
            serde_json::to_string(&RecordResult::ok(2, 42, 1_732_838_400_000)).unwrap(),
            r#"{"partition":2,"offset":42,"timestamp":1732838400000,"error_code":null,"error":null,"retriable":null}"#
        );
        assert_eq!(
            serde_json::to_string(&RecordResult::failed(
                None,
                "invalid_value",
                "records[1].value: expected a base64 string".into(),
                false
            ))
            .unwrap(),
            r#"{"partition":null,"offset":-1,"timestamp":null,"error_code":"invalid_value","error":"records[1].value: expected a base64 string","retriable":false}"#
        );
        // Finished async requests hold one per record for their TTL; max_finished_records'
        // documented memory bound assumes this size.
        assert_eq!(std::mem::size_of::<RecordResult>(), 40);
    }

    fn register(actor: &mut StatusActor, id: &str) {
        actor.register(Register {
            request_id: id.into(),
            topic: TopicName::new("t").unwrap(),
            record_count: 1,
        })
    }

    fn finish(actor: &mut StatusActor, id: &str, now: Instant) {
        actor.finish(
            Finish {
                request_id: id.into(),
                status: RequestStatus::Completed,
                offsets: vec![RecordResult::ok(0, 5, 1)],
                error: None,
            },
            now,
        );
    }

    #[test]
    fn pending_slots_bound_unfinished_requests_and_come_back_when_dropped() {
        let slots = PendingSlots::new(2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert_eq!(slots.try_take().unwrap_err().pending, 2);
        assert_eq!(slots.taken(), 2, "a refusal takes nothing");
        drop(a);
        let _c = slots.try_take().unwrap();
        assert!(slots.try_take().is_err());
    }

    #[test]
    fn each_thread_starts_its_own_shard_once_and_counts_add_up() {
        let shards = Arc::new(StatusShards::new(|| {
            StatusActor::new(Duration::from_secs(10), Duration::from_secs(1))
        }));
        let register_on = |shards: &StatusShards, index: usize, id: &str| {
            shards.shard(index).unwrap().do_send(Register {
                request_id: id.into(),
                topic: TopicName::new("t").unwrap(),
                record_count: 1,
            });
        };
        // A worker: its own thread and arbiter, like an HTTP worker's.
        let start_worker = |shards: &Arc<StatusShards>| {
            let (tx, rx) = std::sync::mpsc::channel();
            let arbiter = Arbiter::new();
            let shards = Arc::clone(shards);
            arbiter.spawn_fn(move || tx.send(shards.start_here()).unwrap());
            (arbiter, rx.recv().unwrap())
        };
        System::new().block_on(async {
            assert!(shards.shard(0).is_none(), "no shard before one started");
            let here = shards.start_here();
            assert_eq!(here, 0);
            assert_eq!(
                shards.start_here(),
                here,
                "a second listener reuses the thread's"
            );
            assert_eq!(StatusShards::local_index(), here);

            let (worker, index) = start_worker(&shards);
            assert_eq!(index, 1);
            register_on(&shards, here, "a");
            register_on(&shards, index, "b");
            register_on(&shards, index, "c");
            // An id from a run with more workers names no shard here: it goes to shard 0.
            register_on(&shards, 9, "d");
            let counts = shards.counts().await.unwrap();
            assert_eq!((counts.unfinished, counts.finished), (4, 0));
            let first = shards.shard(0).unwrap().send(GetCounts).await.unwrap();
            assert_eq!(first.unfinished, 2);

            // A worker that stopped (a panic) leaves its index to the next one started.
            worker.stop();
            worker.join().unwrap();
            assert_eq!(shards.counts().await, None, "unknown, not short");
            let (_restarted, index) = start_worker(&shards);
            assert_eq!(index, 1);
            let counts = shards.counts().await.unwrap();
            assert_eq!((counts.unfinished, counts.finished), (2, 0));
        });
    }

    #[test]
    fn counts_tell_unfinished_from_finished() {
        let mut actor = StatusActor::new(Duration::from_secs(10), Duration::from_secs(1));
        register(&mut actor, "a");
        register(&mut actor, "b");
        finish(&mut actor, "a", Instant::now());
        register(&mut actor, "c");
        register(&mut actor, "c");
        assert_eq!(
            actor.counts(),
            StatusCounts {
                unfinished: 2,
                finished: 1
            }
        );
    }

    #[test]
    fn finished_requests_expire_after_the_ttl_and_not_before() {
        let mut actor = StatusActor::new(Duration::from_secs(10), Duration::from_secs(1));
        let t0 = Instant::now();
        register(&mut actor, "a");
        register(&mut actor, "b");
        finish(&mut actor, "a", t0);
        assert_eq!(actor.sweep(t0 + Duration::from_secs(9)), 0);
        assert_eq!(actor.sweep(t0 + Duration::from_secs(10)), 1);
        assert!(!actor.requests.contains_key("a"));
        assert!(
            actor.requests.contains_key("b"),
            "unfinished requests never expire"
        );
    }

    #[test]
    fn finished_requests_are_dropped_oldest_first_past_max_finished_records() {
        let mut actor = StatusActor::new(Duration::from_secs(10), Duration::from_secs(1))
            .with_max_finished_records(2);
        let t0 = Instant::now();
        for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
            register(&mut actor, id);
            finish(&mut actor, id, t0 + Duration::from_millis(n as u64));
        }
        // One record each: only the two newest fit.
        assert!(!actor.requests.contains_key("a"));
        assert!(actor.requests.contains_key("b") && actor.requests.contains_key("c"));
        assert_eq!(actor.finished_records, 2);
        actor.sweep(t0 + Duration::from_secs(11));
        assert_eq!(actor.finished_records, 0);
        assert!(actor.requests.is_empty());
    }

    #[test]
    fn timestamps_render_as_rfc3339_utc_millis() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_914_123_456);
        assert_eq!(rfc3339_millis(t), "2026-11-29T01:02:03.456Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
