//! Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! Counters and histograms are updated on the request path (cheap atomic adds); gauges that
//! describe state owned by actors (partition offsets, async request counts) are read from the
//! actors when scraped, so the hot path never pays for them.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub records_produced: IntCounterVec,
    pub bytes_produced: IntCounterVec,
    pub produce_latency: HistogramVec,
    pub async_requests: IntGaugeVec,
    pub partition_end_offset: IntGaugeVec,
    pub partition_bytes: IntGaugeVec,
    /// Per API key (by its configured name, never its secret); see `quota.rs`.
    pub key_records: IntCounterVec,
    pub key_bytes: IntCounterVec,
    pub quota_refused: IntCounterVec,
}

/// Latency buckets from 100 µs to 30 s: produce with fsync is sub-millisecond to tens of ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "rill_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let records_produced = IntCounterVec::new(
            Opts::new("rill_produced_records_total", "Records appended, by topic"),
            &["topic"],
        )
        .expect("valid metric");
        let bytes_produced = IntCounterVec::new(
            Opts::new(
                "rill_produced_bytes_total",
                "Batch bytes appended (after compression), by topic",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let produce_latency = HistogramVec::new(
            HistogramOpts::new(
                "rill_produce_latency_seconds",
                "Time from a produce request's arrival to its answer (sync) or completion (async)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["mode"],
        )
        .expect("valid metric");
        let async_requests = IntGaugeVec::new(
            Opts::new(
                "rill_async_requests",
                "Async produce requests held, by state",
            ),
            &["state"],
        )
        .expect("valid metric");
        let partition_end_offset = IntGaugeVec::new(
            Opts::new("rill_partition_end_offset", "Next offset to be written"),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let partition_bytes = IntGaugeVec::new(
            Opts::new("rill_partition_bytes", "Bytes in a partition's segments"),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let key_records = IntCounterVec::new(
            Opts::new(
                "rill_key_records_total",
                "Records in parsed produce requests, by API key name",
            ),
            &["key"],
        )
        .expect("valid metric");
        let key_bytes = IntCounterVec::new(
            Opts::new(
                "rill_key_bytes_total",
                "Produce request body bytes, by API key name",
            ),
            &["key"],
        )
        .expect("valid metric");
        let quota_refused = IntCounterVec::new(
            Opts::new(
                "rill_quota_refused_total",
                "Produce requests refused 429 by a key's quota, by API key name and limit",
            ),
            &["key", "quota"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(records_produced.clone()),
            Box::new(bytes_produced.clone()),
            Box::new(produce_latency.clone()),
            Box::new(async_requests.clone()),
            Box::new(partition_end_offset.clone()),
            Box::new(partition_bytes.clone()),
            Box::new(key_records.clone()),
            Box::new(key_bytes.clone()),
            Box::new(quota_refused.clone()),
            Box::new(rill_actors::metrics::FLUSH_LATENCY.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            records_produced,
            bytes_produced,
            produce_latency,
            async_requests,
            partition_end_offset,
            partition_bytes,
            key_records,
            key_bytes,
            quota_refused,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
