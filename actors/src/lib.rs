//! # rill-actors: the broker core
//!
//! Everything below rill's HTTP layer: durable partition logs in Kafka's on-disk format and
//! the actix actors that own them.
//!
//! ## Components
//! - The log, bottom up: [`record_batch`] (Kafka RecordBatch v2, byte-exact) and
//!   [`compression`] (its codecs); [`segment`] (one file of batches, written with `pwrite`,
//!   read through `mmap`) with its sparse [`index`]; [`recovery`] (where valid data ends after
//!   a crash); [`log`] (a partition's ordered segments: append, read, roll, retention);
//!   [`naming`] (every file name, built and parsed in one place); [`idempotency`] (the
//!   journal of where idempotent requests' batches went, flushed with them).
//! - The actors: [`partition::PartitionActor`] owns one partition's log and group-commits its
//!   flushes; [`producer::ProducerActor`] fans a request's batches out to partitions;
//!   [`status::StatusActor`] (one per HTTP worker, [`status::StatusShards`]) holds async
//!   request state with TTL sweeps; their messages live
//!   in [`messages`] (partition) and beside each actor.
//! - [`topics::TopicRegistry`]: which topics exist, persisted in the data dir, with the
//!   addresses of their partition actors spread over arbiters (threads).
//!
//! ## How a produce request flows
//! The HTTP worker parses the request, serializes every record and builds one compressed,
//! checksummed batch per partition (CPU work, in parallel across workers). The
//! `ProducerActor` sends each batch to its `PartitionActor`, which stamps the base offset
//! (outside the CRC), `pwrite`s the bytes, and — with `flush = "always"` — answers once a
//! group-commit fsync covers them.
//!
//! Start reading at [`log::PartitionLog`] and docs/FORMAT.md.

pub mod compression;
pub mod error;
pub mod idempotency;
pub mod index;
pub mod log;
pub mod messages;
pub mod metrics;
pub mod naming;
pub mod partition;
pub mod producer;
pub mod record_batch;
pub mod recovery;
pub mod segment;
pub mod status;
pub mod topics;
pub mod types;
