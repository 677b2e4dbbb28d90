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
                topic: Arc::clone(&live),
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
                .map_err(|e| self.partition_error(&live, e))
            })
            .collect())
    }

    /// A partition that answers "shut down" was stopped either by the broker's shutdown (503:
    /// try again elsewhere or later) or by its topic's deletion while the request was in
    /// flight, which is the client's 404: that topic no longer exists, even if one of the
    /// same name was created since.
    fn partition_error(&self, live: &Arc<Topic>, error: LogError) -> BackendError {
        let deleted = || {
            !self
                .registry
                .get(live.name.as_str())
                .is_some_and(|now| Arc::ptr_eq(&now, live))
        };
        match error {
            LogError::ShutDown if deleted() => BackendError::TopicNotFound(live.name.to_string()),
            error => BackendError::from(error),
        }
    }

    /// A topic's partitions with their offsets and sizes, asked of its partition actors.
    async fn describe_live(&self, topic: &Arc<Topic>) -> Result<TopicDescription, BackendError> {
        let stats = topic
            .stats()
            .await
            .map_err(|e| self.partition_error(topic, e))?;
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
                .unwrap_or(Err(LogError::ShutDown))
                .map_err(|e| self.partition_error(&live, e))?;
            if bytes.is_empty() {
                break;
            }
            let mut after = next;
            for batch in record_batch::batches(&bytes) {
                let (header, batch) = batch.map_err(|e| corrupt(topic, partition, e))?;
                after = after.max(header.last_offset() + 1);
                // Control batches (an idempotent batch's journal entry) take an offset but
                // are no records, as for Kafka's consumers.
                if header.is_control() {
                    continue;
                }
                let decoded =
                    record_batch::decode_batch(batch).map_err(|e| corrupt(topic, partition, e))?;
                records.extend(decoded.into_iter().filter(|r| r.offset >= next));
            }
            if after <= next {
                break;
            }
            next = after;
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
        self.describe_live(&topic).await
    }

    pub async fn create(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, BackendError> {
        let topic = self.registry.create(name, config).await?;
        self.describe_live(&topic).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), BackendError> {
        Ok(self.registry.delete(name).await?)
    }

    pub async fn shutdown(&self) {
        self.registry.shutdown().await;
    }
}

/// A stored batch that does not decode: never served (the log already CRC-checked it).
fn corrupt(topic: &str, partition: PartitionId, e: record_batch::BatchError) -> BackendError {
    BackendError::Rejected {
        code: "corrupt_record",
        message: format!("{topic}-{partition}: stored batch does not decode: {e}"),
        retriable: false,
    }
}

#[cfg(test)]
mod tests {
    use rill_actors::producer;
    use rill_actors::topics::BrokerOptions;

    use super::*;

    #[actix_rt::test]
    async fn requests_that_meet_their_topics_deletion_are_topic_not_found_not_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let name = TopicName::new("doomed").unwrap();
        let declared = vec![(name.clone(), TopicConfig::default())];
        let registry =
            Arc::new(TopicRegistry::open(BrokerOptions::new(dir.path()), declared).unwrap());
        let backend = LocalBackend::new(Arc::clone(&registry));
        // What a produce request holds once it has looked the topic up.
        let live = registry.get("doomed").unwrap();
        // While the topic stands, a partition that is shut down means the broker is stopping.
        assert!(matches!(
            backend.partition_error(&live, LogError::ShutDown),
            BackendError::Log(LogError::ShutDown)
        ));

        registry.delete("doomed").await.unwrap();
        // The request's append reaches the stopped partition actor...
        let acks = producer::produce(Produce {
            topic: Arc::clone(&live),
            batches: vec![PartitionBatch {
                partition: 0,
                batch: Vec::new(),
                tag: None,
            }],
        })
        .await;
        let error = acks.into_iter().next().unwrap().unwrap_err();
        // ...and the client hears that the topic is gone.
        assert!(matches!(
            backend.partition_error(&live, error),
            BackendError::TopicNotFound(topic) if topic == "doomed"
        ));
        // So does a describe that looked the topic up before the deletion.
        assert!(matches!(
            backend.describe_live(&live).await,
            Err(BackendError::TopicNotFound(_))
        ));

        // A topic created since under the same name is not the one the request wrote to.
        registry.create(name, TopicConfig::default()).await.unwrap();
        assert!(matches!(
            backend.partition_error(&live, LogError::ShutDown),
            BackendError::TopicNotFound(_)
        ));
        // Other log errors pass through as they are.
        assert!(matches!(
            backend.partition_error(&live, LogError::FailStopped { reason: "x".into() }),
            BackendError::Log(LogError::FailStopped { .. })
        ));
    }
}
