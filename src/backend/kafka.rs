//! [`KafkaBackend`]: rill as a stateless HTTP gateway in front of a Kafka cluster
//! (`[backend] kind = "kafka"`). The HTTP API is the same as on the embedded log; only where
//! records go changes. Run as many gateways as needed: nothing here is shared between them
//! except the cluster (async request status is per gateway, see docs/KAFKA.md).
//!
//! - **Produce.** The HTTP layer has already serialized every record, chosen its partition with
//!   rill's murmur2 partitioner (the partition a Java client would choose) and built one
//!   *uncompressed* RecordBatch per partition ([`super::Backend::batch_compression`] is `none`
//!   here). This backend decodes each batch and hands its records to librdkafka with the
//!   partition fixed, through one idempotent `acks=all` producer per codec, created on first
//!   use: librdkafka compresses and batches records of all concurrent requests together. Each
//!   record's offset, or its own error, comes back ([`BatchOutcome::PerRecord`]): other
//!   producers interleave, and single records can fail.
//! - **Topics.** Names and partition counts come from cluster metadata, cached. A name not in
//!   the cache is looked up once (bounded by `metadata_timeout_ms`) and, when missing,
//!   remembered as missing for `unknown_topic_ttl_ms`, so an unknown topic is a fast 404. The
//!   whole list is re-read every `metadata_refresh_ms`. Create and delete go through the
//!   admin API; `[[topics]]` of broker.toml are created at start when absent.
//! - **Health.** A watcher asks the cluster for metadata every second. While that fails (or
//!   librdkafka reports all brokers down) the backend is unready: `/readyz` answers 503 and
//!   every request 503 at once instead of queueing records that cannot be delivered.
//! - **Reads** assign and seek a consumer (no group membership, no commits) between the
//!   partition's watermarks, bounded by count and `read_timeout_ms`.
//!
//! librdkafka's calls that block (metadata, watermarks, consumer polls) run on the blocking
//! pool, never on an HTTP worker.
//!
//! Here: produce, topic administration and the watcher. Beside it: `clients` (how each
//! librdkafka client is configured, and the health they report), `metadata` (the topic cache),
//! `reader` (reads), `errors` (Kafka's errors in rill's terms), `topic_config` (a Kafka topic's
//! configuration in rill's terms).

mod acks;
mod clients;
mod errors;
mod metadata;
mod reader;
mod topic_config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::util::Timeout;
use rill_actors::compression::Compression;
use rill_actors::producer::PartitionBatch;
use rill_actors::record_batch::{self, Record};
use rill_actors::types::{Offset, PartitionId, TopicConfig, TopicName};

use self::acks::{Acks, Slot};
use self::clients::{
    admin_options, client_config, GatewayContext, Health, KafkaConsumer, KafkaProducer,
};
use self::errors::{admin_error, cluster_error, record_error};
use self::metadata::{lock_write, TopicCache};
use self::topic_config::{default_config, kafka_codec_name, topic_config};
use super::{BackendError, BatchOutcome, PartitionInfo, TopicDescription, TopicMeta};
use crate::config::KafkaSettings;

/// How often the watcher checks that the cluster answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long topic creation and deletion may take: the controller does real work there.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before retrying a record librdkafka refused because its queue was full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// The Kafka backend. Cheap to share: everything lives behind one `Arc`.
pub struct KafkaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// Address, security and `[backend.kafka.properties]`: the base of every client's config.
    base: Vec<(String, String)>,
    settings: KafkaSettings,
    /// librdkafka's delivery deadline per record: `[producer] request_timeout_ms`.
    message_timeout: Duration,
    health: Arc<Health>,
    /// One producer per codec (indexed by codec id), created on first use.
    producers: Mutex<[Option<KafkaProducer>; 5]>,
    /// Metadata and watermark queries (a consumer handle: it never auto-creates topics).
    meta: KafkaConsumer,
    admin: AdminClient<GatewayContext>,
    readers: Mutex<Vec<KafkaConsumer>>,
    cache: RwLock<TopicCache>,
    /// `[[topics]]` not yet ensured because the cluster was unreachable at start.
    pending: Mutex<Vec<(TopicName, TopicConfig)>>,
    stopping: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain inserts), so a
    // poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KafkaBackend {
    /// Creates the clients, checks whether the cluster answers (without failing if it does
    /// not: the gateway starts unready and the watcher keeps trying), creates the `declared`
    /// topics that are missing, and starts the watcher. Must run inside the actix system.
    pub async fn connect(
        base: Vec<(String, String)>,
        settings: KafkaSettings,
        message_timeout: Duration,
        declared: Vec<(TopicName, TopicConfig)>,
    ) -> Result<Self, String> {
        let health = Arc::new(Health::new());
        let context = GatewayContext {
            health: Arc::clone(&health),
        };
        let mut meta_config = client_config(&base);
        meta_config.set("allow.auto.create.topics", "false");
        let meta: KafkaConsumer = meta_config
            .create_with_context(context.clone())
            .map_err(|e| format!("Kafka metadata client: {e}"))?;
        let admin = client_config(&base)
            .create_with_context(context)
            .map_err(|e| format!("Kafka admin client: {e}"))?;
        let inner = Arc::new(Inner {
            base,
            settings,
            message_timeout,
            health,
            producers: Mutex::new(Default::default()),
            meta,
            admin,
            readers: Mutex::new(Vec::new()),
            cache: RwLock::new(TopicCache::default()),
            pending: Mutex::new(declared),
            stopping: AtomicBool::new(false),
        });
        let backend = Self { inner };
        match backend.refresh_all().await {
            Ok(()) => {
                backend.inner.health.up();
                backend.ensure_declared().await;
            }
            Err(e) => {
                log::warn!(
                    "Kafka cluster not reachable at start ({e}); /readyz stays unready until it is"
                );
                backend.inner.health.down(e.to_string());
            }
        }
        actix_rt::spawn(watch(Self {
            inner: Arc::clone(&backend.inner),
        }));
        Ok(backend)
    }

    /// The topic, if the cluster has it: from the cache, else asked once (bounded), a missing
    /// name remembered briefly.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicMeta>, BackendError> {
        // Every request starts here: while the cluster is down, all answer 503 at once (an
        // async produce too, rather than a 202 bound to fail).
        self.inner.health.check()?;
        if let Some(meta) = self.cached(name) {
            return Ok(Some(meta));
        }
        let Ok(topic_name) = TopicName::new(name) else {
            return Ok(None); // Kafka cannot have it either: same naming rules.
        };
        if self.known_unknown(name) {
            return Ok(None);
        }
        let inner = Arc::clone(&self.inner);
        let wanted = name.to_owned();
        let partitions = blocking(move || inner.partitions_of(&wanted)).await?;
        match partitions {
            None => {
                self.remember_unknown(name);
                Ok(None)
            }
            Some(partitions) => {
                let mut meta = TopicMeta {
                    name: topic_name,
                    partitions,
                    compression: Compression::None,
                };
                if let Some(codec) = self.codecs_of(&[name]).await.remove(name) {
                    meta.compression = codec;
                }
                self.insert(meta.clone());
                Ok(Some(meta))
            }
        }
    }

    /// Sends every record of every batch, each to its batch's partition, through the
    /// producer for `compression`; one outcome per batch, one result per record.
    pub async fn produce(
        &self,
        topic: &TopicMeta,
        compression: Compression,
        batches: Vec<PartitionBatch>,
    ) -> Result<Vec<Result<BatchOutcome, BackendError>>, BackendError> {
        self.inner.health.check()?;
        let producer = self.inner.producer(compression)?;
        let decoded: Vec<Result<Vec<Record>, BackendError>> = batches
            .iter()
            .map(|batch| {
                record_batch::decode_batch(&batch.batch).map_err(|e| BackendError::Rejected {
                    code: "internal_error",
                    message: format!(
                        "batch for partition {} does not decode: {e}",
                        batch.partition
                    ),
                    retriable: false,
                })
            })
            .collect();
        let count: usize = decoded.iter().flatten().map(Vec::len).sum();
        // Enqueue everything (librdkafka batches it with other requests' records), then wait
        // once for all the acknowledgements. Records of one partition keep their order, and
        // with idempotence their offsets do too.
        let (acks, all_acked) = Acks::new(count);
        let mut index = 0;
        for (batch, records) in batches.iter().zip(&decoded) {
            let Ok(records) = records else { continue };
            for record in records {
                let slot = acks.slot(index);
                index += 1;
                self.enqueue(
                    &producer,
                    topic.name.as_str(),
                    batch.partition,
                    record,
                    slot,
                )
                .await;
            }
        }
        // Only the slots in librdkafka's hands keep `acks` alive now: if the producer drops
        // them unanswered, the channel closes instead of hanging.
        drop(acks);
        let mut results = if count == 0 {
            Vec::new()
        } else {
            all_acked.await.unwrap_or_default()
        }
        .into_iter();
        let mut fatal = false;
        let outcomes = decoded
            .into_iter()
            .map(|records| {
                let records = records?;
                let offsets = (0..records.len())
                    .map(|_| match results.next().flatten() {
                        Some(ack) => {
                            fatal |= matches!(
                                &ack,
                                Err(BackendError::Rejected {
                                    code: "kafka_fatal",
                                    ..
                                })
                            );
                            ack
                        }
                        None => Err(BackendError::Rejected {
                            code: "kafka_unavailable",
                            message: "Kafka producer closed before the record was acknowledged: \
                                      it may or may not be stored (a retry may succeed)"
                                .into(),
                            retriable: true,
                        }),
                    })
                    .collect();
                Ok(BatchOutcome::PerRecord(offsets))
            })
            .collect();
        if fatal {
            // An idempotent producer that hit a fatal error refuses everything after it; the
            // next request gets a fresh one (a new producer id).
            log::error!("Kafka producer for {compression} hit a fatal error; replacing it");
            lock(&self.inner.producers)[compression as usize] = None;
        }
        Ok(outcomes)
    }

    /// Queues one record, its acknowledgement to go to `slot`; waits while librdkafka's
    /// bounded queue is full (up to the delivery timeout), so a burst slows down instead of
    /// failing.
    async fn enqueue(
        &self,
        producer: &KafkaProducer,
        topic: &str,
        partition: PartitionId,
        record: &Record,
        slot: Slot,
    ) {
        let mut out = BaseRecord::<[u8], [u8], Box<Slot>>::with_opaque_to(topic, Box::new(slot))
            .partition(partition)
            .timestamp(record.timestamp);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            out = out.payload(value.as_slice());
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            out = out.headers(headers);
        }
        // The clock is read only once the queue is full: not on every record.
        let mut deadline = None;
        loop {
            match producer.send(out) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now()
                        < *deadline
                            .get_or_insert_with(|| Instant::now() + self.inner.message_timeout) =>
                {
                    out = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, refused)) => return refused.delivery_opaque.failed(record_error(&e)),
            }
        }
    }

    /// Up to `max_records` records of one partition from `offset` on.
    pub async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_records: usize,
    ) -> Result<Vec<Record>, BackendError> {
        self.inner.health.check()?;
        let meta = self
            .topic(topic)
            .await?
            .ok_or_else(|| BackendError::TopicNotFound(topic.to_owned()))?;
        if partition < 0 || partition as u32 >= meta.partitions {
            return Err(BackendError::Rejected {
                code: "partition_not_found",
                message: format!("partition {partition} of topic {topic} not found"),
                retriable: false,
            });
        }
        let inner = Arc::clone(&self.inner);
        let topic = topic.to_owned();
        blocking(move || inner.read(&topic, partition, offset, max_records)).await
    }

    /// Every topic of the cluster (internal `__` topics left out), read now.
    pub async fn list(&self) -> Result<Vec<TopicMeta>, BackendError> {
        self.inner.health.check()?;
        self.refresh_all().await?;
        let cache = self
            .inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut topics: Vec<TopicMeta> = cache
            .topics
            .values()
            .filter(|t| !t.name.as_str().starts_with("__"))
            .cloned()
            .collect();
        topics.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(topics)
    }

    /// Watermarks of every partition and the topic's configuration as the cluster has it.
    pub async fn describe(&self, name: &str) -> Result<TopicDescription, BackendError> {
        self.inner.health.check()?;
        let mut meta = self
            .topic(name)
            .await?
            .ok_or_else(|| BackendError::TopicNotFound(name.to_owned()))?;
        let inner = Arc::clone(&self.inner);
        let (topic, partitions) = (name.to_owned(), meta.partitions);
        let watermarks = blocking(move || {
            (0..partitions as PartitionId)
                .map(|p| {
                    let (low, high) = inner.watermarks(&topic, p)?;
                    Ok(PartitionInfo {
                        partition: p,
                        start_offset: low,
                        end_offset: high,
                        bytes: None,
                    })
                })
                .collect::<Result<Vec<_>, BackendError>>()
        })
        .await?;
        let config = match self.configs_of(&[name]).await {
            Ok(mut found) => match found.remove(name) {
                Some(resource) => topic_config(partitions, &resource),
                None => default_config(partitions),
            },
            Err(e) => {
                // DescribeConfigs may be denied by ACLs where producing is allowed.
                log::warn!("describing the configuration of topic {name}: {e}");
                default_config(partitions)
            }
        };
        meta.compression = config.compression;
        self.insert(meta.clone());
        Ok(TopicDescription {
            meta,
            partitions: watermarks,
            config,
        })
    }

    /// Creates the topic in the cluster (partitions, codec, retention; the `[storage]`
    /// settings of the embedded log have no meaning there) and waits until its metadata
    /// shows it.
    pub async fn create(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, BackendError> {
        self.inner.health.check()?;
        self.create_in_cluster(&name, &config).await?;
        let inner = Arc::clone(&self.inner);
        let (topic, partitions) = (name.as_str().to_owned(), config.partitions);
        blocking(move || inner.await_metadata(&topic, partitions)).await?;
        lock_write(&self.inner.cache).unknown.remove(name.as_str());
        self.insert(TopicMeta {
            name: name.clone(),
            partitions: config.partitions,
            compression: config.compression,
        });
        self.describe(name.as_str()).await
    }

    async fn create_in_cluster(
        &self,
        name: &TopicName,
        config: &TopicConfig,
    ) -> Result<(), BackendError> {
        let partitions = i32::try_from(config.partitions).map_err(|_| BackendError::Rejected {
            code: "invalid_config",
            message: format!("partitions: {} is too many", config.partitions),
            retriable: false,
        })?;
        let replication = self.inner.settings.replication_factor.unwrap_or(-1);
        let retention_ms = config.log.retention_ms.unwrap_or(-1).to_string();
        let retention_bytes = config
            .log
            .retention_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
            .to_string();
        let topic = NewTopic::new(
            name.as_str(),
            partitions,
            TopicReplication::Fixed(replication),
        )
        .set("compression.type", kafka_codec_name(config.compression))
        .set("retention.ms", &retention_ms)
        .set("retention.bytes", &retention_bytes);
        let results = self
            .inner
            .admin
            .create_topics([&topic], &admin_options(ADMIN_TIMEOUT))
            .await
            .map_err(|e| cluster_error(&e))?;
        for result in results {
            if let Err((topic, code)) = result {
                return Err(admin_error(&topic, code));
            }
        }
        Ok(())
    }

    /// Deletes the topic in the cluster; the name answers 404 from now on.
    pub async fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.inner.health.check()?;
        let results = self
            .inner
            .admin
            .delete_topics(&[name], &admin_options(ADMIN_TIMEOUT))
            .await
            .map_err(|e| cluster_error(&e))?;
        for result in results {
            if let Err((topic, code)) = result {
                return Err(admin_error(&topic, code));
            }
        }
        lock_write(&self.inner.cache).topics.remove(name);
        self.remember_unknown(name);
        Ok(())
    }

    /// Whether the cluster answered the last probe (and no client reported all brokers down).
    pub fn is_ready(&self) -> bool {
        self.inner.health.is_ready()
    }

    /// Stops the watcher and waits (bounded) until every queued record is acknowledged.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        let producers: Vec<KafkaProducer> = lock(&self.inner.producers)
            .iter()
            .flatten()
            .cloned()
            .collect();
        let flushed = blocking(move || {
            for producer in producers {
                producer
                    .flush(Timeout::After(Duration::from_secs(10)))
                    .map_err(|e| cluster_error(&e))?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = flushed {
            log::warn!("Kafka producers not flushed at shutdown: {e}");
        }
    }

    /// Creates the `[[topics]]` still pending; those that already exist keep their settings.
    /// Ones that fail for another reason are logged and not retried.
    async fn ensure_declared(&self) {
        let declared = std::mem::take(&mut *lock(&self.inner.pending));
        for (name, config) in declared {
            match self.create_in_cluster(&name, &config).await {
                Ok(()) => {
                    log::info!(
                        "created topic {name} in the Kafka cluster ({} partitions)",
                        config.partitions
                    );
                    let inner = Arc::clone(&self.inner);
                    let (topic, partitions) = (name.as_str().to_owned(), config.partitions);
                    if let Err(e) = blocking(move || inner.await_metadata(&topic, partitions)).await
                    {
                        log::warn!("topic {name} created but not yet visible: {e}");
                    }
                    self.insert(TopicMeta {
                        name,
                        partitions: config.partitions,
                        compression: config.compression,
                    });
                }
                Err(BackendError::Rejected {
                    code: "topic_already_exists",
                    ..
                }) => {}
                Err(e @ BackendError::Unavailable(_)) => {
                    log::warn!("topic {name}: {e}; will retry");
                    lock(&self.inner.pending).push((name, config));
                }
                Err(e) => {
                    log::error!("[[topics]] {name} cannot be created in the Kafka cluster: {e}")
                }
            }
        }
    }
}

/// The watcher: probes the cluster every second, re-reads all topics every
/// `metadata_refresh_ms` and creates `[[topics]]` once the cluster answers.
async fn watch(backend: KafkaBackend) {
    let inner = &backend.inner;
    let mut last_full: Option<Instant> = None;
    while !inner.stopping.load(Ordering::Relaxed) {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let full = last_full.is_none_or(|at| at.elapsed() >= inner.settings.metadata_refresh());
        let result = if full {
            backend.refresh_all().await
        } else {
            let probing = Arc::clone(inner);
            blocking(move || probing.probe()).await
        };
        match result {
            Ok(()) => {
                if full {
                    last_full = Some(Instant::now());
                }
                inner.health.up();
                if !lock(&inner.pending).is_empty() {
                    backend.ensure_declared().await;
                }
            }
            Err(e) => {
                inner.health.down(e.to_string());
                // Re-read everything as soon as the cluster is back.
                last_full = None;
            }
        }
    }
}

/// Runs librdkafka's blocking calls on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Unavailable(format!("Kafka call did not complete: {e}")))?
}
