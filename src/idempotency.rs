//! Idempotent produce: the table of `Idempotency-Key`s seen within the dedup window.
//!
//! A key is scoped to the API key and topic: its table entry is keyed by a hash of the three
//! ([`key_hash`]). An entry remembers what the first request asked for (a digest of its body
//! and options), when it arrived, its async request id, and where each of its batches landed
//! (one [`BatchRef`] per partition). A retry does not replay a stored answer: it rebuilds the
//! request's batches exactly as the first time (same arrival time, same round-robin start —
//! see [`round_robin_start`]) and takes each batch's offsets from the entry, appending only
//! batches that never landed (a crash between partitions). So one code path serves retries
//! after a timeout, after an error and after a restart.
//!
//! On the embedded backend the partitions journal every idempotent batch with the batch
//! itself (`rill_actors::idempotency`), and the table is filled from those journals at start:
//! the window survives a restart. On the Kafka backend the table is this gateway's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_actors::idempotency::{DigestKind, IdempotencyTag};
use rill_actors::types::{Offset, PartitionId};
use sha2::{Digest, Sha256};

/// The longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Most keys the table makes room for when it is created (about 140 MB of address space for
/// the map and the order queue); past it, it grows as keys arrive.
const PREALLOCATED_KEYS_CAP: usize = 1 << 20;

/// Where one batch of an idempotent request landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRef {
    pub partition: PartitionId,
    pub base_offset: Offset,
    pub record_count: u32,
    /// Each record's offset when they are not `base_offset..base_offset + record_count` (a
    /// Kafka cluster may interleave other producers' records).
    pub offsets: Option<Arc<[Offset]>>,
}

/// What [`IdempotencyTable::begin`] found for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Never seen (or out of the window): go ahead; the key is now in progress.
    Fresh,
    /// Seen with the same body: rebuild the request with this tag and these batches; the key
    /// is in progress until [`IdempotencyTable::settle`].
    Retry {
        tag: IdempotencyTag,
        landed: Vec<BatchRef>,
    },
    /// A request with this key is being handled right now.
    InProgress,
    /// Seen with a different body.
    Reused,
}

struct Entry {
    digest: [u8; 16],
    digest_kind: DigestKind,
    created_ms: i64,
    request_id: [u8; 16],
    topic: String,
    landed: Vec<BatchRef>,
    in_progress: bool,
}

struct Inner {
    entries: HashMap<[u8; 16], Entry>,
    /// Keys in arrival order, for expiry and eviction (stale pairs are skipped).
    order: VecDeque<([u8; 16], i64)>,
}

/// Every idempotency key of the window, shared by all HTTP workers.
pub struct IdempotencyTable {
    inner: Mutex<Inner>,
    window_ms: i64,
    max_keys: usize,
}

impl IdempotencyTable {
    pub fn new(window: Duration, max_keys: usize) -> Self {
        // Sized for the whole window up front: growing rehashes every entry under the lock,
        // stalling every keyed request of both workers (the growth at entry 57,344 of a
        // default table moves about 7 MB: 9-11 ms on the benchmark machine). Pages are
        // touched only as entries fill them, so RSS still follows the keys held; the cap
        // bounds the address space a huge setting takes.
        let capacity = max_keys.clamp(1, PREALLOCATED_KEYS_CAP);
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::with_capacity(capacity),
                order: VecDeque::with_capacity(capacity),
            }),
            window_ms: window.as_millis().min(i64::MAX as u128) as i64,
            max_keys: max_keys.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks `key_hash` up and, unless another request holds it, marks it in progress. A
    /// fresh key is entered with `fresh` as its tag (its digest, arrival and request id).
    /// `digest_as` makes the request's digest the other way, for an entry journaled with it.
    pub fn begin(
        &self,
        topic: &str,
        fresh: IdempotencyTag,
        now_ms: i64,
        digest_as: impl FnOnce(DigestKind) -> [u8; 16],
    ) -> Begin {
        let mut inner = self.lock();
        self.expire(&mut inner, now_ms);
        if let Some(entry) = inner.entries.get_mut(&fresh.key_hash) {
            let same_body = if entry.digest_kind == fresh.digest_kind {
                entry.digest == fresh.body_digest
            } else {
                entry.digest == digest_as(entry.digest_kind)
            };
            if !same_body {
                return Begin::Reused;
            }
            if entry.in_progress {
                return Begin::InProgress;
            }
            entry.in_progress = true;
            return Begin::Retry {
                tag: IdempotencyTag {
                    key_hash: fresh.key_hash,
                    body_digest: entry.digest,
                    digest_kind: entry.digest_kind,
                    request_id: entry.request_id,
                    created_ms: entry.created_ms,
                },
                landed: entry.landed.clone(),
            };
        }
        self.make_room(&mut inner);
        inner.order.push_back((fresh.key_hash, fresh.created_ms));
        inner.entries.insert(
            fresh.key_hash,
            Entry {
                digest: fresh.body_digest,
                digest_kind: fresh.digest_kind,
                created_ms: fresh.created_ms,
                request_id: fresh.request_id,
                topic: topic.to_string(),
                landed: Vec::new(),
                in_progress: true,
            },
        );
        Begin::Fresh
    }

    /// Ends the request holding `key_hash`: records where its batches landed (added to what
    /// had landed before). A key none of whose batches landed is forgotten, so a retry with
    /// another body is not refused for a request that left no trace.
    pub fn settle(&self, key_hash: &[u8; 16], landed: &[BatchRef]) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(key_hash) else {
            return;
        };
        entry.in_progress = false;
        for batch in landed {
            if !entry.landed.iter().any(|b| b.partition == batch.partition) {
                entry.landed.push(batch.clone());
            }
        }
        if entry.landed.is_empty() {
            inner.entries.remove(key_hash);
        }
    }

    /// Enters a batch found in a partition's journal at start.
    pub fn recover(&self, topic: &str, tag: &IdempotencyTag, landed: BatchRef) {
        let mut inner = self.lock();
        if !inner.entries.contains_key(&tag.key_hash) {
            self.make_room(&mut inner);
            inner.order.push_back((tag.key_hash, tag.created_ms));
        }
        let entry = inner.entries.entry(tag.key_hash).or_insert_with(|| Entry {
            digest: tag.body_digest,
            digest_kind: tag.digest_kind,
            created_ms: tag.created_ms,
            request_id: tag.request_id,
            topic: topic.to_string(),
            landed: Vec::new(),
            in_progress: false,
        });
        if !entry.landed.iter().any(|b| b.partition == landed.partition) {
            entry.landed.push(landed);
        }
    }

    /// Forgets every key of a deleted topic (a new topic of that name starts clean).
    pub fn forget_topic(&self, topic: &str) {
        self.lock().entries.retain(|_, e| e.topic != topic);
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, inner: &mut Inner, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.window_ms);
        while let Some(&(key, created)) = inner.order.front() {
            if created >= oldest {
                break;
            }
            inner.order.pop_front();
            let current = inner.entries.get(&key);
            if current.is_some_and(|e| e.created_ms == created && !e.in_progress) {
                inner.entries.remove(&key);
            }
        }
    }

    /// Evicts the oldest settled keys while the table is full: the window is bounded by
    /// `idempotency_max_keys` as well as by time.
    fn make_room(&self, inner: &mut Inner) {
        let mut skipped = Vec::new();
        while inner.entries.len() >= self.max_keys {
            let Some((key, created)) = inner.order.pop_front() else {
                break;
            };
            match inner.entries.get(&key) {
                Some(e) if e.created_ms == created && e.in_progress => skipped.push((key, created)),
                Some(e) if e.created_ms == created => {
                    inner.entries.remove(&key);
                }
                _ => {}
            }
        }
        for pair in skipped.into_iter().rev() {
            inner.order.push_front(pair);
        }
    }
}

/// The table key of an `Idempotency-Key`: scoped to the caller's API key and the topic.
pub fn key_hash(caller_id: &[u8; 32], topic: &str, key: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(caller_id);
    hasher.update((topic.len() as u64).to_be_bytes());
    hasher.update(topic.as_bytes());
    hasher.update(key.as_bytes());
    truncate(hasher.finalize().into())
}

/// What a request asks for: its (decoded) body and every option that changes its outcome,
/// hashed the way `kind` says (new entries: [`DigestKind::Xxh3`]).
pub fn body_digest(kind: DigestKind, body: &[u8], compression: &str, is_async: bool) -> [u8; 16] {
    let parts: [&[u8]; 4] = [
        &[u8::from(is_async)],
        &(compression.len() as u64).to_be_bytes(),
        compression.as_bytes(),
        body,
    ];
    match kind {
        DigestKind::Xxh3 => {
            let mut hasher = twox_hash::XxHash3_128::with_seed(0);
            parts.iter().for_each(|part| hasher.write(part));
            hasher.finish_128().to_be_bytes()
        }
        DigestKind::Sha256 => {
            let mut hasher = Sha256::new();
            parts.iter().for_each(|part| hasher.update(part));
            truncate(hasher.finalize().into())
        }
    }
}

fn truncate(digest: [u8; 32]) -> [u8; 16] {
    digest[..16].try_into().expect("16 of 32 bytes")
}

/// Where round-robin starts for a request with this key: fixed, so that a retry puts every
/// record without key or partition where the first attempt did.
pub fn round_robin_start(key_hash: &[u8; 16]) -> u32 {
    u32::from_be_bytes(key_hash[..4].try_into().expect("4 bytes"))
}

/// Checks an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn parse_key(value: &[u8]) -> Result<&str, String> {
    if value.is_empty() || value.len() > MAX_KEY_LEN {
        return Err(format!(
            "Idempotency-Key: must be 1 to {MAX_KEY_LEN} characters, got {}",
            value.len()
        ));
    }
    if !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(
            "Idempotency-Key: only visible ASCII characters (no spaces) are allowed".into(),
        );
    }
    Ok(std::str::from_utf8(value).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: u8, body: u8, created_ms: i64) -> IdempotencyTag {
        IdempotencyTag {
            key_hash: [key; 16],
            body_digest: [body; 16],
            digest_kind: DigestKind::Xxh3,
            request_id: [0; 16],
            created_ms,
        }
    }

    /// For tables holding only XXH3 entries: the other digest is never asked for.
    fn no_other_digest(kind: DigestKind) -> [u8; 16] {
        panic!("asked for a {kind:?} digest with no such entry in the table")
    }

    fn batch(partition: PartitionId, base_offset: Offset) -> BatchRef {
        BatchRef {
            partition,
            base_offset,
            record_count: 2,
            offsets: None,
        }
    }

    #[test]
    fn a_key_is_fresh_then_in_progress_then_a_retry_with_its_batches() {
        let table = IdempotencyTable::new(Duration::from_secs(60), 100);
        assert_eq!(
            table.begin("t", tag(1, 9, 1000), 1000, no_other_digest),
            Begin::Fresh
        );
        assert_eq!(
            table.begin("t", tag(1, 9, 1001), 1001, no_other_digest),
            Begin::InProgress
        );
        assert_eq!(
            table.begin("t", tag(1, 8, 1001), 1001, no_other_digest),
            Begin::Reused
        );
        table.settle(&[1; 16], &[batch(0, 10), batch(2, 4)]);
        match table.begin("t", tag(1, 9, 5000), 5000, no_other_digest) {
            Begin::Retry { tag, landed } => {
                assert_eq!(tag.created_ms, 1000, "the first arrival time is kept");
                assert_eq!(landed, vec![batch(0, 10), batch(2, 4)]);
            }
            other => panic!("{other:?}"),
        }
        // A retry that appended the missing partition adds it.
        table.settle(&[1; 16], &[batch(1, 7)]);
        match table.begin("t", tag(1, 9, 6000), 6000, no_other_digest) {
            Begin::Retry { landed, .. } => assert_eq!(landed.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_table_never_rehashes_below_its_key_limit() {
        let table = IdempotencyTable::new(Duration::from_secs(60), 100_000);
        let room = table.lock().entries.capacity();
        assert!(room >= 100_000, "room for {room} keys");
        for key in 0..100_000u32 {
            let mut hash = [0; 16];
            hash[..4].copy_from_slice(&key.to_be_bytes());
            let fresh = IdempotencyTag {
                key_hash: hash,
                ..tag(0, 1, 1000)
            };
            assert_eq!(table.begin("t", fresh, 1000, no_other_digest), Begin::Fresh);
        }
        assert_eq!(table.len(), 100_000);
        assert_eq!(table.lock().entries.capacity(), room, "the table grew");
    }

    #[test]
    fn a_request_that_left_no_batch_is_forgotten() {
        let table = IdempotencyTable::new(Duration::from_secs(60), 100);
        assert_eq!(
            table.begin("t", tag(1, 9, 1000), 1000, no_other_digest),
            Begin::Fresh
        );
        table.settle(&[1; 16], &[]);
        assert_eq!(
            table.begin("t", tag(1, 8, 1001), 1001, no_other_digest),
            Begin::Fresh
        );
    }

    #[test]
    fn keys_expire_with_the_window_and_the_oldest_go_when_full() {
        let table = IdempotencyTable::new(Duration::from_millis(100), 2);
        for key in 1..=2 {
            assert_eq!(
                table.begin("t", tag(key, 1, 1000), 1000, no_other_digest),
                Begin::Fresh
            );
            table.settle(&[key; 16], &[batch(0, key as i64)]);
        }
        // Full: the third evicts the oldest.
        assert_eq!(
            table.begin("t", tag(3, 1, 1010), 1010, no_other_digest),
            Begin::Fresh
        );
        table.settle(&[3; 16], &[batch(0, 3)]);
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.begin("t", tag(1, 7, 1020), 1020, no_other_digest),
            Begin::Fresh
        );
        table.settle(&[1; 16], &[]);
        // Past the window everything else is gone too.
        assert_eq!(
            table.begin("t", tag(3, 7, 1200), 1200, no_other_digest),
            Begin::Fresh
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn recovered_batches_group_by_key_and_deleted_topics_are_forgotten() {
        let table = IdempotencyTable::new(Duration::from_secs(60), 100);
        table.recover("t", &tag(1, 9, 1000), batch(0, 5));
        table.recover("t", &tag(1, 9, 1000), batch(1, 6));
        table.recover("u", &tag(2, 9, 1000), batch(0, 1));
        match table.begin("t", tag(1, 9, 2000), 2000, no_other_digest) {
            Begin::Retry { landed, .. } => assert_eq!(landed, vec![batch(0, 5), batch(1, 6)]),
            other => panic!("{other:?}"),
        }
        table.forget_topic("u");
        assert_eq!(
            table.begin("u", tag(2, 8, 2000), 2000, no_other_digest),
            Begin::Fresh
        );
    }

    #[test]
    fn keys_are_scoped_to_caller_and_topic_and_checked() {
        let a = key_hash(&[1; 32], "t", "k");
        assert_ne!(a, key_hash(&[2; 32], "t", "k"));
        assert_ne!(a, key_hash(&[1; 32], "u", "k"));
        assert_ne!(key_hash(&[1; 32], "ab", "c"), key_hash(&[1; 32], "a", "bc"));
        assert!(parse_key(b"order-42").is_ok());
        assert!(parse_key(b"").is_err());
        assert!(parse_key(&[b'a'; 256]).is_err());
        assert!(parse_key(&[b'a'; 255]).is_ok());
        assert!(parse_key(b"with space").is_err());
        assert!(parse_key("é".as_bytes()).is_err());
    }

    #[test]
    fn a_retry_is_checked_against_an_entry_journaled_with_sha256() {
        let table = IdempotencyTable::new(Duration::from_secs(60), 100);
        let body = br#"{"records":[{"value":1}]}"#;
        let journaled = IdempotencyTag {
            body_digest: body_digest(DigestKind::Sha256, body, "none", false),
            digest_kind: DigestKind::Sha256,
            ..tag(1, 0, 1000)
        };
        table.recover("t", &journaled, batch(0, 7));
        let retry = |body: &[u8]| {
            let fresh = IdempotencyTag {
                body_digest: body_digest(DigestKind::Xxh3, body, "none", false),
                ..tag(1, 0, 2000)
            };
            let digest_as = |kind| body_digest(kind, body, "none", false);
            table.begin("t", fresh, 2000, digest_as)
        };
        assert_eq!(retry(br#"{"records":[{"value":2}]}"#), Begin::Reused);
        match retry(body) {
            Begin::Retry { tag, landed } => {
                assert_eq!(
                    tag.digest_kind,
                    DigestKind::Sha256,
                    "batches still to write keep it"
                );
                assert_eq!(tag.body_digest, journaled.body_digest);
                assert_eq!(landed, vec![batch(0, 7)]);
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        assert_ne!(
            body_digest(DigestKind::Xxh3, body, "none", false),
            body_digest(DigestKind::Sha256, body, "none", false)
        );
    }
}
