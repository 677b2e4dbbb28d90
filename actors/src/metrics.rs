//! Metrics the broker core records itself; the server registers them for `/metrics`.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts};

/// How long each group-commit flush (fdatasync of a partition's dirty files) takes.
pub static FLUSH_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "rill_flush_latency_seconds",
            "Duration of partition flushes",
        )
        .buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            5.0,
        ]),
    )
    .expect("valid metric")
});
