//! [`LocalBackend`]: the embedded store — rill's own partition actors and segment files.
//!
//! Produce goes through a [`ProducerActor`] per HTTP worker thread (started lazily on that
//! thread), which fans the batches out to the partition actors; nothing is shared between
//! workers on the way in.

use std::cell::OnceCell;
use std::sync::Arc;

use actix::prelude::*;
use rill_actors::compression::Compression;
use rill_actors::error::LogError;
use rill_actors::messages::Read;
use rill_actors::producer::{PartitionBatch, Produce, ProducerActor};
use rill_actors::record_batch::{self, Record};
use rill_actors::topics::{Topic, TopicRegistry};
use rill_actors::types::{Offset, PartitionId, TopicConfig, TopicName};

use super::{BackendError, BatchOutcome, PartitionInfo, TopicDescription, TopicMeta};

/// Bytes asked of a partition per read round trip.
const READ_CHUNK_BYTES: usize = 1 << 20;

thread_local! {
    /// This worker thread's producer actor.
    static PRODUCER: OnceCell<Addr<ProducerActor>> = const { OnceCell::new() };
}

fn producer() -> Addr<ProducerActor> {
    PRODUCER.with(|cell| cell.get_or_init(|| ProducerActor.start()).clone())
}

pub struct LocalBackend {
    registry: Arc<TopicRegistry>,
}

fn meta(topic: &Topic) -> TopicMeta {
    TopicMeta {
        name: topic.name.clone(),
        partitions: topic.config.partitions,
        compression: topic.config.compression,
    }
}

impl LocalBackend {
    pub fn new(registry: Arc<TopicRegistry>) -> Self {
        Self { registry }
    }

    pub fn registry(&self) -> &TopicRegistry {
        &self.registry
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.registry.get(name).map(|t| meta(&t))
    }

    pub fn recover_idempotency(&self, table: &crate::idempotency::IdempotencyTable) {
        let recovered = self.registry.take_recovered_idempotency();
        if !recovered.is_empty() {
            log::info!("{} idempotency journal entries recovered", recovered.len());
        }
        for (topition, entry) in recovered {
            table.recover(
                topition.topic.as_str(),
                &entry.tag,
                crate::idempotency::BatchRef {
                    partition: topition.partition,
                    base_offset: entry.base_offset,
                    record_count: entry.record_count,
                    offsets: None,
                },
            );
        }
    }

    pub async fn produce(
        &self,
        topic: &TopicMeta,
        _compression: Compression,
        batches: Vec<PartitionBatch>,
    ) -> Result<Vec<Result<BatchOutcome, BackendError>>, BackendError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let live = self
            .registry
            .get(topic.name.as_str())
            .ok_or_else(|| BackendError::TopicNotFound(topic.name.to_string()))?;
        let acks = producer()
            .send(Produce {
                topic: live,
                batches,
            })
            .await
            .map_err(|_| BackendError::Unavailable("producer actor stopped".into()))?;
        Ok(acks
            .into_iter()
            .map(|ack| {
                ack.map(|a| BatchOutcome::Appended {
                    base_offset: a.base_offset,
                })
                .map_err(BackendError::from)
            })
            .collect())
    }

    pub async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_records: usize,
    ) -> Result<Vec<Record>, BackendError> {
        let live = self
            .registry
            .get(topic)
            .ok_or_else(|| BackendError::TopicNotFound(topic.to_string()))?;
        let addr = live
            .partition(partition)
            .ok_or_else(|| BackendError::Rejected {
                code: "partition_not_found",
                message: format!("partition {partition} of topic {topic} not found"),
                retriable: false,
            })?
            .clone();
        let mut records: Vec<Record> = Vec::new();
        let mut next = offset;
        while records.len() < max_records {
            let bytes = addr
                .send(Read {
                    offset: next,
                    max_bytes: READ_CHUNK_BYTES,
                })
                .await
                .map_err(|_| BackendError::Log(LogError::ShutDown))??;
            if bytes.is_empty() {
                break;
            }
            for batch in record_batch::batches(&bytes) {
                let (_, batch) = batch.map_err(|e| corrupt(topic, partition, e))?;
                let decoded =
                    record_batch::decode_batch(batch).map_err(|e| corrupt(topic, partition, e))?;
                records.extend(decoded.into_iter().filter(|r| r.offset >= next));
            }
            match records.last() {
                Some(last) if last.offset >= next => next = last.offset + 1,
                _ => break,
            }
        }
        records.truncate(max_records);
        Ok(records)
    }

    pub fn list(&self) -> Vec<TopicMeta> {
        self.registry.list().iter().map(|t| meta(t)).collect()
    }

    pub async fn describe(&self, name: &str) -> Result<TopicDescription, BackendError> {
        let topic = self
            .registry
            .get(name)
            .ok_or_else(|| BackendError::TopicNotFound(name.to_string()))?;
        describe(&topic).await
    }

    pub async fn create(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, BackendError> {
        let topic = self.registry.create(name, config).await?;
        describe(&topic).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), BackendError> {
        Ok(self.registry.delete(name).await?)
    }

    pub async fn shutdown(&self) {
        self.registry.shutdown().await;
    }
}

async fn describe(topic: &Topic) -> Result<TopicDescription, BackendError> {
    let stats = topic.stats().await?;
    Ok(TopicDescription {
        meta: meta(topic),
        partitions: stats
            .iter()
            .enumerate()
            .map(|(p, s)| PartitionInfo {
                partition: p as PartitionId,
                start_offset: s.start_offset,
                end_offset: s.end_offset,
                bytes: Some(s.bytes),
            })
            .collect(),
        config: topic.config.clone(),
    })
}

/// A stored batch that does not decode: never served (the log already CRC-checked it).
fn corrupt(topic: &str, partition: PartitionId, e: record_batch::BatchError) -> BackendError {
    BackendError::Rejected {
        code: "corrupt_record",
        message: format!("{topic}-{partition}: stored batch does not decode: {e}"),
        retriable: false,
    }
}
