//! Gathering one produce request's acknowledgements. librdkafka reports each record's delivery
//! on its producer's polling thread; the records of a request share one [`Acks`], which fills
//! the record's slot and, with the last one, hands every result to the waiting request at once.
//!
//! Why not rdkafka's `FutureProducer`: it allocates a channel per record and wakes the request
//! once per record (a 100-record request was polled 100 times); here it is one channel and one
//! wake-up per request (bench/kafka.sh).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::message::Message;
use rdkafka::producer::DeliveryResult;
use rill_actors::types::Offset;
use tokio::sync::oneshot;

use super::errors::record_error;
use super::lock;
use crate::backend::BackendError;

/// One record's outcome: the offset Kafka gave it, or why it failed.
pub(super) type Ack = Result<Offset, BackendError>;

/// The acknowledgements of one request's records, indexed by the record's position in the
/// request's batches. Invariant: `remaining` counts the slots still `None`; the results are
/// sent when it reaches zero, exactly once.
pub(super) struct Acks {
    slots: Mutex<Vec<Option<Ack>>>,
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<Vec<Option<Ack>>>>>,
}

/// What librdkafka carries with each record and hands back to its delivery callback.
pub(super) struct Slot {
    acks: Arc<Acks>,
    index: usize,
}

impl Acks {
    /// Room for `count` records (at least one), and the receiver of their results. If every
    /// [`Slot`] is dropped before all are filled (the producer went away), the receiver gets
    /// an error instead.
    pub(super) fn new(count: usize) -> (Arc<Acks>, oneshot::Receiver<Vec<Option<Ack>>>) {
        let (tx, rx) = oneshot::channel();
        let acks = Arc::new(Acks {
            slots: Mutex::new((0..count).map(|_| None).collect()),
            remaining: AtomicUsize::new(count),
            done: Mutex::new(Some(tx)),
        });
        (acks, rx)
    }

    pub(super) fn slot(self: &Arc<Self>, index: usize) -> Slot {
        Slot {
            acks: Arc::clone(self),
            index,
        }
    }

    /// Records the outcome of record `index` (once per record).
    pub(super) fn complete(&self, index: usize, ack: Ack) {
        let filled = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(index) {
                Some(slot @ None) => {
                    *slot = Some(ack);
                    true
                }
                _ => false,
            }
        };
        if filled && self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let results = std::mem::take(&mut *lock(&self.slots));
            if let Some(done) = lock(&self.done).take() {
                // The request may have given up (its timeout): nobody to tell then.
                let _ = done.send(results);
            }
        }
    }
}

impl Slot {
    /// The delivery callback's half: Kafka's answer for this record.
    pub(super) fn delivered(self, result: &DeliveryResult<'_>) {
        let ack = match result {
            Ok(message) => Ok(message.offset()),
            Err((e, _)) => Err(record_error(e)),
        };
        self.acks.complete(self.index, ack);
    }

    /// For a record librdkafka refused to queue: its callback will never run.
    pub(super) fn failed(self, error: BackendError) {
        self.acks.complete(self.index, Err(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_arrive_once_all_records_are_acknowledged_in_any_order() {
        let (acks, mut rx) = Acks::new(3);
        acks.slot(2).failed(BackendError::Unavailable("x".into()));
        acks.complete(0, Ok(10));
        assert!(rx.try_recv().is_err(), "sent before the last record");
        acks.complete(0, Ok(99)); // a second answer for a record changes nothing
        acks.complete(1, Ok(11));
        let results = rx.try_recv().expect("sent after the last record");
        assert!(matches!(results[0], Some(Ok(10))));
        assert!(matches!(results[1], Some(Ok(11))));
        assert!(matches!(
            results[2],
            Some(Err(BackendError::Unavailable(_)))
        ));
    }

    #[test]
    fn dropped_slots_close_the_channel_instead_of_hanging() {
        let (acks, mut rx) = Acks::new(2);
        let slots = [acks.slot(0), acks.slot(1)];
        drop(acks);
        drop(slots);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
