//! Reading a partition back (`GET …/records`) and its watermarks: a pooled consumer is
//! assigned the partition at the asked offset (no group membership, nothing committed) and
//! polled until the count, the high watermark or `read_timeout_ms`.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use rill_actors::record_batch::Record;
use rill_actors::types::{Offset, PartitionId};

use super::clients::drain;
use super::errors::{cluster_error, is_transient, offset_out_of_range};
use super::{lock, Inner};
use crate::backend::BackendError;

/// Idle read consumers kept for the next read (each is a librdkafka client with threads).
const IDLE_READERS: usize = 4;

impl Inner {
    /// The partition's first offset and the next to be written. Retries while its leader is
    /// moving or (just after creation) not yet serving it, up to `metadata_timeout_ms`.
    pub(super) fn watermarks(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<(Offset, Offset), BackendError> {
        let deadline = Instant::now() + self.settings.metadata_timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.meta.fetch_watermarks(topic, partition, left) {
                Ok(found) => return Ok(found),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(cluster_error(&e)),
            }
        }
    }

    /// Reads between the watermarks with a pooled consumer: assign at `offset`, poll until
    /// `max_records`, the end, or `read_timeout_ms`.
    pub(super) fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_records: usize,
    ) -> Result<Vec<Record>, BackendError> {
        let timeout = self.settings.read_timeout();
        let (low, high) = self.watermarks(topic, partition)?;
        if offset < low {
            return Err(offset_out_of_range(topic, partition, offset, low));
        }
        if offset >= high {
            return Ok(Vec::new());
        }
        let consumer = match lock(&self.readers).pop() {
            Some(consumer) => consumer,
            None => self.new_reader()?,
        };
        // Events an idle consumer collected (errors of a past outage) are not this read's.
        drain(&consumer);
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, KafkaOffset::Offset(offset))
            .map_err(|e| cluster_error(&e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| cluster_error(&e))?;
        let deadline = Instant::now() + timeout;
        let mut records = Vec::new();
        let mut at_end = false;
        let mut failure = None;
        let mut last_error = None;
        while records.len() < max_records {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left) {
                None => break,
                Some(Ok(message)) => {
                    if message.topic() != topic || message.partition() != partition {
                        continue;
                    }
                    if message.offset() >= offset {
                        records.push(owned_record(&message));
                    }
                    if message.offset() + 1 >= high {
                        at_end = true;
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    at_end = true;
                    break;
                }
                Some(Err(e))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) =>
                {
                    failure = Some(offset_out_of_range(topic, partition, offset, low));
                    break;
                }
                // Anything else (a broker connection lost, …) librdkafka retries by itself:
                // keep polling until the deadline.
                Some(Err(e)) => last_error = Some(e),
            }
        }
        // A consumer that cannot be unassigned is dropped, not pooled.
        if consumer.unassign().is_ok() {
            let mut idle = lock(&self.readers);
            if idle.len() < IDLE_READERS {
                idle.push(consumer);
            }
        }
        match failure {
            Some(e) => Err(e),
            None if records.is_empty() && !at_end => Err(BackendError::Unavailable(format!(
                "no records of {topic}-{partition} from offset {offset} arrived within \
                 read_timeout_ms ({} ms){}",
                timeout.as_millis(),
                last_error.map(|e| format!(": {e}")).unwrap_or_default()
            ))),
            None => Ok(records),
        }
    }
}

pub(super) fn owned_record<M: Message>(message: &M) -> Record {
    Record {
        offset: message.offset(),
        timestamp: message.timestamp().to_millis().unwrap_or(-1),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
