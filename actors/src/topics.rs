//! [`TopicRegistry`]: which topics exist, with their configuration and the addresses of their
//! partition actors. Topics come from broker.toml and from the API at run time; both are
//! persisted in `<data_dir>/topics.json` and reloaded at start. A topic's partition count
//! never changes.
//!
//! Lookups (every produce request) take a read lock on a small map; create and delete are
//! serialized by an async mutex and do their file work on the blocking pool.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LogError, TopicError};
use crate::idempotency::JournalEntry;
use crate::log::{DiskReserve, PartitionLog};
use crate::messages::{GetStats, PartitionStats, Shutdown};
use crate::naming;
use crate::partition::PartitionActor;
use crate::types::{PartitionId, TopicConfig, TopicName, Topition};

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// `[storage] preallocate_bytes` unless configured: one step is enough to turn all but one
/// flush in this many bytes of appends into a data-only fdatasync, and small enough that
/// thousands of written partitions do not reserve much disk.
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 1 << 20;

/// Where and how the registry runs its partitions.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    pub data_dir: PathBuf,
    /// Threads (actix arbiters) the partition actors are spread over.
    pub arbiters: usize,
    /// How often each partition applies its retention settings.
    pub retention_check_interval: Duration,
    /// Free bytes appends must leave on the data dir's file system; 0 = no reserve.
    pub min_free_bytes: u64,
    /// Step in which flushes reserve space ahead of each active segment's end; 0 = never.
    pub preallocate_bytes: u64,
    /// How long idempotency journal entries count (`[producer] idempotency_window_secs`);
    /// older ones are dropped when the logs are opened.
    pub idempotency_window: Duration,
}

impl BrokerOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            retention_check_interval: Duration::from_secs(300),
            min_free_bytes: 0,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
            idempotency_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// A live topic: its configuration and one actor per partition.
#[derive(Debug)]
pub struct Topic {
    pub name: TopicName,
    pub config: TopicConfig,
    pub partitions: Vec<Addr<PartitionActor>>,
}

impl Topic {
    pub fn partition(&self, partition: PartitionId) -> Option<&Addr<PartitionActor>> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
    }

    /// Offsets and sizes of every partition, in partition order.
    pub async fn stats(&self) -> Result<Vec<PartitionStats>, LogError> {
        let mut stats = Vec::with_capacity(self.partitions.len());
        for addr in &self.partitions {
            stats.push(addr.send(GetStats).await.map_err(|_| LogError::ShutDown)?);
        }
        Ok(stats)
    }
}

/// The metadata file's shape.
#[derive(Serialize, Deserialize, Default)]
struct TopicsFile {
    topics: Vec<TopicEntry>,
}

#[derive(Serialize, Deserialize)]
struct TopicEntry {
    name: TopicName,
    config: TopicConfig,
}

pub struct TopicRegistry {
    options: BrokerOptions,
    arbiters: Vec<Arbiter>,
    next_arbiter: AtomicUsize,
    topics: RwLock<BTreeMap<TopicName, Arc<Topic>>>,
    /// Serializes create/delete so topics.json is written by one at a time.
    admin: tokio::sync::Mutex<()>,
    /// Held for the registry's life: a second broker on the same data dir fails to start.
    _lock: File,
    /// `min_free_bytes`, shared by every partition.
    reserve: Option<Arc<DiskReserve>>,
    /// Idempotency journal entries found at start, until the server takes them.
    recovered_idempotency: std::sync::Mutex<Vec<(Topition, JournalEntry)>>,
}

impl TopicRegistry {
    /// Opens the data dir: locks it, loads topics.json, adds or reconfigures the topics
    /// declared in broker.toml, recovers every partition log and starts its actor. Blocking;
    /// must be called inside an actix `System`.
    pub fn open(
        options: BrokerOptions,
        declared: Vec<(TopicName, TopicConfig)>,
    ) -> Result<Self, TopicError> {
        let data_dir = &options.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| meta_err("creating data dir", data_dir, e))?;
        let lock_path = data_dir.join(naming::LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| meta_err("creating", &lock_path, e))?;
        lock.try_lock().map_err(|_| {
            TopicError::InvalidConfig(format!(
                "data dir {} is in use by another broker",
                data_dir.display()
            ))
        })?;
        remove_deleted_dirs(data_dir);

        let mut topics: BTreeMap<TopicName, TopicConfig> = read_topics_file(data_dir)?
            .topics
            .into_iter()
            .map(|t| (t.name, t.config))
            .collect();
        let mut changed = false;
        for (name, config) in declared {
            validate(&config)?;
            match topics.get(&name) {
                Some(existing) if existing.partitions != config.partitions => {
                    return Err(TopicError::InvalidConfig(format!(
                        "topic {name} has {} partitions on disk but broker.toml asks for {}; \
                         partition counts cannot change",
                        existing.partitions, config.partitions
                    )));
                }
                Some(existing) if *existing == config => {}
                _ => {
                    topics.insert(name, config);
                    changed = true;
                }
            }
        }
        if changed {
            write_topics_file(data_dir, &topics)?;
        }

        let arbiter_count = options.arbiters.max(1);
        let registry = Self {
            arbiters: (0..arbiter_count).map(|_| Arbiter::new()).collect(),
            next_arbiter: AtomicUsize::new(0),
            topics: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            _lock: lock,
            reserve: (options.min_free_bytes > 0)
                .then(|| Arc::new(DiskReserve::new(&options.data_dir, options.min_free_bytes))),
            recovered_idempotency: Default::default(),
            options,
        };
        // Recovery of many partitions is I/O bound: open them in parallel.
        let oldest_ms = crate::partition::now_ms()
            .saturating_sub(registry.options.idempotency_window.as_millis() as i64);
        let logs = open_logs(
            &registry.options.data_dir,
            &topics,
            arbiter_count,
            oldest_ms,
        )?;
        let mut by_topic: BTreeMap<TopicName, Vec<Addr<PartitionActor>>> = BTreeMap::new();
        let mut recovered = Vec::new();
        for (topition, log, entries) in logs {
            recovered.extend(entries.into_iter().map(|e| (topition.clone(), e)));
            let addr = registry.start_partition(topition.clone(), log);
            by_topic.entry(topition.topic).or_default().push(addr);
        }
        let live = topics
            .into_iter()
            .map(|(name, config)| {
                let partitions = by_topic.remove(&name).unwrap_or_default();
                let topic = Topic {
                    name: name.clone(),
                    config,
                    partitions,
                };
                (name, Arc::new(topic))
            })
            .collect();
        *registry.topics.write().expect("topics lock") = live;
        *registry
            .recovered_idempotency
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = recovered;
        Ok(registry)
    }

    /// The idempotency journal entries every partition held at start (once; later calls get
    /// nothing).
    pub fn take_recovered_idempotency(&self) -> Vec<(Topition, JournalEntry)> {
        std::mem::take(
            &mut *self
                .recovered_idempotency
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn start_partition(&self, topition: Topition, mut log: PartitionLog) -> Addr<PartitionActor> {
        log.set_reserve(self.reserve.clone());
        log.set_preallocation(self.options.preallocate_bytes);
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        let retention = self.options.retention_check_interval;
        PartitionActor::start_in_arbiter(&self.arbiters[i].handle(), move |_| {
            PartitionActor::new(topition, log, retention)
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    /// Creates a topic: its partition directories, then its metadata entry (so a crash in
    /// between leaves no topic half-registered), then its actors.
    pub async fn create(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<Arc<Topic>, TopicError> {
        validate(&config)?;
        let _admin = self.admin.lock().await;
        if self.get(name.as_str()).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let mut all: BTreeMap<TopicName, TopicConfig> = self
            .list()
            .iter()
            .map(|t| (t.name.clone(), t.config.clone()))
            .collect();
        all.insert(name.clone(), config.clone());
        let data_dir = self.options.data_dir.clone();
        let to_open: BTreeMap<TopicName, TopicConfig> =
            [(name.clone(), config.clone())].into_iter().collect();
        let logs = tokio::task::spawn_blocking(move || {
            let logs = open_logs(&data_dir, &to_open, 1, i64::MAX)?;
            write_topics_file(&data_dir, &all)?;
            Ok::<_, TopicError>(logs)
        })
        .await
        .map_err(|e| TopicError::InvalidConfig(format!("create task failed: {e}")))??;
        let partitions = logs
            .into_iter()
            .map(|(t, log, _)| self.start_partition(t, log))
            .collect();
        let topic = Arc::new(Topic {
            name: name.clone(),
            config,
            partitions,
        });
        self.topics
            .write()
            .expect("topics lock")
            .insert(name, Arc::clone(&topic));
        Ok(topic)
    }

    /// Deletes a topic: it disappears from lookups at once, its actors flush and stop, its
    /// directories are renamed away (atomic) and then removed.
    pub async fn delete(&self, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| TopicError::NotFound(name.to_string()))?;
        for addr in &topic.partitions {
            // An actor that is already gone has nothing left to flush.
            let _ = addr.send(Shutdown).await;
        }
        let remaining: BTreeMap<TopicName, TopicConfig> = self
            .list()
            .iter()
            .map(|t| (t.name.clone(), t.config.clone()))
            .collect();
        let data_dir = self.options.data_dir.clone();
        let name = topic.name.clone();
        let partitions = topic.config.partitions;
        tokio::task::spawn_blocking(move || {
            write_topics_file(&data_dir, &remaining)?;
            for partition in 0..partitions as PartitionId {
                let dir = naming::partition_dir(
                    &data_dir,
                    &Topition {
                        topic: name.clone(),
                        partition,
                    },
                );
                let doomed =
                    dir.with_extension(format!("{}{}", ulid_like_suffix(), naming::DELETE_SUFFIX));
                if std::fs::rename(&dir, &doomed).is_ok() {
                    if let Err(e) = std::fs::remove_dir_all(&doomed) {
                        log::warn!("removing {}: {e}", doomed.display());
                    }
                }
            }
            Ok::<_, TopicError>(())
        })
        .await
        .map_err(|e| TopicError::InvalidConfig(format!("delete task failed: {e}")))?
    }

    /// Flushes and stops every partition actor, then the arbiters. Answers once all data is
    /// on disk (or a flush failed, which is logged).
    pub async fn shutdown(&self) {
        let topics = self.list();
        for topic in topics {
            for addr in &topic.partitions {
                if let Ok(Err(e)) = addr.send(Shutdown).await {
                    log::error!("{}: final flush failed: {e}", topic.name);
                }
            }
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

fn validate(config: &TopicConfig) -> Result<(), TopicError> {
    if config.partitions == 0 || config.partitions > MAX_PARTITIONS {
        return Err(TopicError::InvalidConfig(format!(
            "partitions must be 1..={MAX_PARTITIONS}, got {}",
            config.partitions
        )));
    }
    if config.log.segment_bytes < 1024 || config.log.segment_bytes > i32::MAX as u64 {
        return Err(TopicError::InvalidConfig(format!(
            "segment_bytes must be 1024..={}, got {}",
            i32::MAX,
            config.log.segment_bytes
        )));
    }
    Ok(())
}

/// Opens (recovering) every partition of `topics`, `threads` partitions at a time.
fn open_logs(
    data_dir: &Path,
    topics: &BTreeMap<TopicName, TopicConfig>,
    threads: usize,
    idempotency_oldest_ms: i64,
) -> Result<Vec<(Topition, PartitionLog, Vec<JournalEntry>)>, TopicError> {
    let work: Vec<(Topition, &TopicConfig)> = topics
        .iter()
        .flat_map(|(name, config)| {
            (0..config.partitions as PartitionId).map(move |partition| {
                (
                    Topition {
                        topic: name.clone(),
                        partition,
                    },
                    config,
                )
            })
        })
        .collect();
    let chunk = work.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(topition, config)| {
                            let dir = naming::partition_dir(data_dir, topition);
                            let mut log = PartitionLog::open(&dir, config.log.clone())?;
                            let entries = log.load_idempotency(idempotency_oldest_ms)?;
                            Ok::<_, LogError>((topition.clone(), log, entries))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut logs = Vec::with_capacity(work.len());
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| TopicError::InvalidConfig("log recovery panicked".into()))??;
            logs.extend(part);
        }
        Ok(logs)
    })
}

fn read_topics_file(data_dir: &Path) -> Result<TopicsFile, TopicError> {
    let path = data_dir.join(naming::TOPICS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            meta_err(
                "parsing",
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TopicsFile::default()),
        Err(e) => Err(meta_err("reading", &path, e)),
    }
}

/// Replaces topics.json atomically: write a temporary file, fsync it, rename it over the old
/// one, fsync the directory. A crash leaves either the old or the new file, never a mix.
fn write_topics_file(
    data_dir: &Path,
    topics: &BTreeMap<TopicName, TopicConfig>,
) -> Result<(), TopicError> {
    let file = TopicsFile {
        topics: topics
            .iter()
            .map(|(name, config)| TopicEntry {
                name: name.clone(),
                config: config.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&file).expect("topic metadata serializes");
    let path = data_dir.join(naming::TOPICS_FILE);
    let tmp = data_dir.join(format!("{}{}", naming::TOPICS_FILE, naming::TMP_SUFFIX));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| meta_err("writing", &path, e))
}

/// Finishes deletions a crash interrupted.
fn remove_deleted_dirs(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(naming::DELETE_SUFFIX))
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A suffix that makes a doomed directory's name unique even if the topic is recreated and
/// deleted again before the first removal finishes.
fn ulid_like_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

fn meta_err(context: &'static str, path: &Path, source: std::io::Error) -> TopicError {
    TopicError::Metadata {
        context,
        path: path.to_path_buf(),
        source,
    }
}
