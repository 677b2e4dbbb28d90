//! The librdkafka clients of the Kafka backend, and the health they report: how each is
//! configured (the producer's delivery guarantee and batching, the read consumers' assign-only
//! settings) and the context they share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rill_actors::compression::Compression;

use super::acks::Slot;
use super::{lock, Inner};
use crate::backend::BackendError;

/// Consumer group id of the read consumers. They only assign partitions: they never join the
/// group nor commit, but librdkafka needs a group to assign.
const READER_GROUP: &str = "rill-gateway-reader";

/// Whether the cluster answers; shared with every librdkafka client's context.
pub(super) struct Health {
    ready: AtomicBool,
    /// Why it is not ready, for the 503 message.
    reason: Mutex<String>,
}

impl Health {
    /// Unready until the first answer from the cluster.
    pub(super) fn new() -> Self {
        Self {
            ready: AtomicBool::new(false),
            reason: Mutex::new("not contacted yet".into()),
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub(super) fn up(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            log::info!("Kafka cluster reachable: ready");
        }
    }

    pub(super) fn down(&self, reason: String) {
        if self.ready.swap(false, Ordering::Relaxed) {
            log::warn!("Kafka cluster unreachable: not ready ({reason})");
        }
        *lock(&self.reason) = reason;
    }

    pub(super) fn check(&self) -> Result<(), BackendError> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(BackendError::Unavailable(format!(
                "Kafka cluster unreachable ({}); retry later",
                lock(&self.reason)
            )))
        }
    }
}

/// The context of every librdkafka client rill creates: logs go to `log` (librdkafka's
/// default), and an "all brokers down" report makes the backend unready at once, before the
/// watcher's next probe notices.
#[derive(Clone)]
pub(super) struct GatewayContext {
    pub(super) health: Arc<Health>,
}

impl ClientContext for GatewayContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // Logged once, by the change of state.
            self.health.down(format!("all brokers down: {reason}"));
        } else if error.rdkafka_error_code() == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            // librdkafka's own log already has a line for each failed connection.
            log::debug!("Kafka client: {error}: {reason}");
        } else {
            log::warn!("Kafka client: {error}: {reason}");
        }
    }
}

impl ConsumerContext for GatewayContext {}

impl ProducerContext for GatewayContext {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        slot.delivered(result);
    }
}

/// Shared by every request asking for its codec (one per codec, see `Inner::producer`).
pub(super) type KafkaProducer = Arc<ThreadedProducer<GatewayContext>>;
pub(super) type KafkaConsumer = BaseConsumer<GatewayContext>;

pub(super) fn client_config(base: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("client.id", "rill-gateway");
    for (key, value) in base {
        config.set(key, value);
    }
    config
}

pub(super) fn admin_options(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout))
}

/// Takes the events waiting in a consumer's queue (bounded: new ones may keep arriving).
pub(super) fn drain(consumer: &KafkaConsumer) {
    for _ in 0..1000 {
        if consumer.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

impl Inner {
    pub(super) fn producer(&self, codec: Compression) -> Result<KafkaProducer, BackendError> {
        let mut slots = lock(&self.producers);
        if let Some(producer) = &slots[codec as usize] {
            return Ok(producer.clone());
        }
        let mut config = ClientConfig::new();
        // Throughput: librdkafka gathers records of all requests for up to linger.ms into
        // batches of up to batch.size. Bounded: at most this much waits in its queue.
        config
            .set("client.id", "rill-gateway")
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("max.in.flight.requests.per.connection", "5")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            .set("allow.auto.create.topics", "false")
            .set("reconnect.backoff.max.ms", "2000");
        for (key, value) in &self.base {
            config.set(key, value);
        }
        // Not overridable (config validation refuses them): the delivery guarantee and the
        // codec this producer exists for.
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", codec.name());
        let producer: ThreadedProducer<GatewayContext> = config
            .create_with_context(GatewayContext {
                health: Arc::clone(&self.health),
            })
            .map_err(|e| BackendError::Unavailable(format!("creating the Kafka producer: {e}")))?;
        let producer = Arc::new(producer);
        slots[codec as usize] = Some(producer.clone());
        Ok(producer)
    }

    pub(super) fn new_reader(&self) -> Result<KafkaConsumer, BackendError> {
        let mut config = client_config(&self.base);
        config
            .set("group.id", READER_GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Surface data removed by retention as an error instead of skipping silently.
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false")
            .set("fetch.wait.max.ms", "100");
        config
            .create_with_context(GatewayContext {
                health: Arc::clone(&self.health),
            })
            .map_err(|e| BackendError::Unavailable(format!("creating a Kafka consumer: {e}")))
    }
}
