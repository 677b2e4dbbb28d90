//! What the gateway knows of the cluster's topics: names, partition counts and default codecs
//! from cluster metadata, cached; names found missing, remembered briefly (so an unknown topic
//! is a fast 404); and the metadata round trips behind them, each bounded by
//! `metadata_timeout_ms`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{ConfigResource, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rill_actors::compression::Compression;
use rill_actors::types::TopicName;

use super::clients::{admin_options, drain};
use super::errors::cluster_error;
use super::topic_config::codec_of;
use super::{blocking, Inner, KafkaBackend, ADMIN_TIMEOUT};
use crate::backend::{BackendError, TopicMeta};

/// What the gateway knows of the cluster's topics.
#[derive(Default)]
pub(super) struct TopicCache {
    pub(super) topics: HashMap<String, TopicMeta>,
    /// Names found missing, until when they are answered 404 without asking again.
    pub(super) unknown: HashMap<String, Instant>,
}

/// Most names remembered as missing: a client sending random names cannot grow it further.
const MAX_UNKNOWN_TOPICS: usize = 10_000;

impl KafkaBackend {
    pub(super) fn cached(&self, name: &str) -> Option<TopicMeta> {
        let cache = self
            .inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        cache.topics.get(name).cloned()
    }

    pub(super) fn known_unknown(&self, name: &str) -> bool {
        let cache = self
            .inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .unknown
            .get(name)
            .is_some_and(|until| Instant::now() < *until)
    }

    pub(super) fn remember_unknown(&self, name: &str) {
        let ttl = self.inner.settings.unknown_topic_ttl();
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = lock_write(&self.inner.cache);
        if cache.unknown.len() >= MAX_UNKNOWN_TOPICS {
            cache.unknown.retain(|_, until| now < *until);
            if cache.unknown.len() >= MAX_UNKNOWN_TOPICS {
                cache.unknown.clear();
            }
        }
        cache.unknown.insert(name.to_owned(), now + ttl);
    }

    pub(super) fn insert(&self, meta: TopicMeta) {
        let mut cache = lock_write(&self.inner.cache);
        cache.unknown.remove(meta.name.as_str());
        cache.topics.insert(meta.name.as_str().to_owned(), meta);
    }

    /// Re-reads every topic and partition count; learns the codec of topics seen first.
    pub(super) async fn refresh_all(&self) -> Result<(), BackendError> {
        let inner = Arc::clone(&self.inner);
        let found = blocking(move || inner.all_topics()).await?;
        let new: Vec<String> = {
            let mut cache = lock_write(&self.inner.cache);
            let mut topics = HashMap::with_capacity(found.len());
            let mut new = Vec::new();
            let now = Instant::now();
            for (name, partitions) in found {
                // A topic deleted here may linger in the metadata for a moment.
                if cache.unknown.get(&name).is_some_and(|until| now < *until) {
                    continue;
                }
                let Ok(topic_name) = TopicName::new(name.as_str()) else {
                    continue;
                };
                let compression = match cache.topics.get(&name) {
                    Some(known) => known.compression,
                    None => {
                        new.push(name.clone());
                        Compression::None
                    }
                };
                topics.insert(
                    name,
                    TopicMeta {
                        name: topic_name,
                        partitions,
                        compression,
                    },
                );
            }
            cache.topics = topics;
            new
        };
        if !new.is_empty() {
            let names: Vec<&str> = new.iter().map(String::as_str).collect();
            let codecs = self.codecs_of(&names).await;
            let mut cache = lock_write(&self.inner.cache);
            for (name, codec) in codecs {
                if let Some(meta) = cache.topics.get_mut(&name) {
                    meta.compression = codec;
                }
            }
        }
        Ok(())
    }

    /// The default codec of each topic: its `compression.type` when that names a codec.
    /// Best effort: a topic whose configuration cannot be read is left out.
    pub(super) async fn codecs_of(&self, names: &[&str]) -> HashMap<String, Compression> {
        match self.configs_of(names).await {
            Ok(found) => found
                .into_iter()
                .map(|(name, resource)| {
                    let codec = codec_of(
                        resource
                            .get("compression.type")
                            .and_then(|e| e.value.as_deref()),
                    );
                    (name, codec)
                })
                .collect(),
            Err(e) => {
                log::warn!("reading compression.type of {names:?}: {e}");
                HashMap::new()
            }
        }
    }

    pub(super) async fn configs_of(
        &self,
        names: &[&str],
    ) -> Result<HashMap<String, ConfigResource>, BackendError> {
        let specifiers: Vec<ResourceSpecifier> =
            names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let results = self
            .inner
            .admin
            .describe_configs(
                &specifiers,
                &admin_options(self.inner.settings.metadata_timeout()),
            )
            .await
            .map_err(|e| cluster_error(&e))?;
        Ok(names
            .iter()
            .zip(results)
            .filter_map(|(name, result)| result.ok().map(|r| (name.to_string(), r)))
            .collect())
    }
}

impl Inner {
    /// A cheap round trip: the metadata of one (probably absent) topic.
    pub(super) fn probe(&self) -> Result<(), BackendError> {
        // Nobody else polls this handle: its queued error events would pile up.
        drain(&self.meta);
        self.meta
            .fetch_metadata(
                Some("__rill_gateway_probe"),
                self.settings.metadata_timeout(),
            )
            .map(|_| ())
            .map_err(|e| cluster_error(&e))
    }

    pub(super) fn all_topics(&self) -> Result<Vec<(String, u32)>, BackendError> {
        let metadata = self
            .meta
            .fetch_metadata(None, self.settings.metadata_timeout())
            .map_err(|e| cluster_error(&e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), t.partitions().len() as u32))
            .collect())
    }

    /// The partition count of `topic`, `None` if the cluster does not have it.
    pub(super) fn partitions_of(&self, topic: &str) -> Result<Option<u32>, BackendError> {
        let metadata = self
            .meta
            .fetch_metadata(Some(topic), self.settings.metadata_timeout())
            .map_err(|e| cluster_error(&e))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None if !found.partitions().is_empty() => Ok(Some(found.partitions().len() as u32)),
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
            Some(code) => Err(BackendError::Unavailable(format!(
                "metadata of topic {topic}: {code}"
            ))),
        }
    }

    /// Waits until the metadata shows `topic` with all its partitions led.
    pub(super) fn await_metadata(&self, topic: &str, partitions: u32) -> Result<(), BackendError> {
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        loop {
            let metadata = self
                .meta
                .fetch_metadata(Some(topic), self.settings.metadata_timeout())
                .map_err(|e| cluster_error(&e))?;
            let ready = metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.leader() >= 0 && p.error().is_none())
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Unavailable(format!(
                    "topic {topic} created but not visible in the metadata within {ADMIN_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(super) fn lock_write(
    cache: &RwLock<TopicCache>,
) -> std::sync::RwLockWriteGuard<'_, TopicCache> {
    cache.write().unwrap_or_else(PoisonError::into_inner)
}
