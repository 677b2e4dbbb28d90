//! rill: a single-node message broker whose front door is an HTTP Producer API.
//!
//! This crate is the server around the broker core (`rill_actors`). Where to start reading:
//!
//! - [`config`]: broker.toml and the command line — every setting, its default and bounds.
//! - [`formats`]: how a request's JSON key or value becomes stored bytes (`json`, `string`,
//!   `binary`, `avro`) and how stored bytes are rendered back for the read API.
//! - [`partitioner`]: which partition a record goes to — Kafka's murmur2 for keyed records,
//!   round-robin otherwise.
//! - [`backend`]: the seam between HTTP and storage — the embedded log, or a Kafka cluster.
//! - [`app`]: builds and runs the server (registry, actors, HTTP), and shuts it down in order.
//! - [`http`]: one module per resource; [`http::error`] maps every failure to a status and
//!   `error_code` in one place. [`auth`]: API keys and topic scopes. [`quota`]: per-key
//!   metering and quotas (token buckets, in-flight slots). [`metrics`]: `/metrics`.
//! - [`produce`]: the produce request's shape and its CPU work — serializing records, choosing
//!   partitions and building one compressed batch per partition on the HTTP worker.
//!
//! A produce request flows: auth middleware → `http::produce` (cheap checks, the key's quota,
//! bounded body read) → `produce::prepare` (batches) → the worker's `ProducerActor` → each partition's
//! `PartitionActor` (offset stamp, pwrite, group-commit fsync) → per-record offsets.

pub mod app;
pub mod auth;
pub mod backend;
pub mod config;
pub mod formats;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod partitioner;
pub mod produce;
pub mod quota;
