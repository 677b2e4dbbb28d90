//! A Kafka topic's configuration in rill's terms, and back: `compression.type` ↔ the default
//! codec, `retention.*`, `segment.bytes`, `flush.*` ↔ [`TopicConfig`].

use rdkafka::admin::ConfigResource;
use rill_actors::compression::Compression;
use rill_actors::types::{FlushPolicy, LogConfig, TopicConfig};

/// The codec a topic's `compression.type` names; `producer` and `uncompressed` name none.
pub(super) fn codec_of(compression_type: Option<&str>) -> Compression {
    match compression_type {
        Some("gzip") => Compression::Gzip,
        Some("snappy") => Compression::Snappy,
        Some("lz4") => Compression::Lz4,
        Some("zstd") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// A codec as a topic's `compression.type`: `none` becomes `producer` (keep what producers
/// send), so that a request asking for a codec is still stored with it.
pub(super) fn kafka_codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "producer",
        other => other.name(),
    }
}

/// A topic's Kafka configuration in rill's terms (`GET /api/topics/{topic}`).
pub(super) fn topic_config(partitions: u32, resource: &ConfigResource) -> TopicConfig {
    let text = |name: &str| resource.get(name).and_then(|e| e.value.as_deref());
    let number = |name: &str| text(name).and_then(|v| v.parse::<i64>().ok());
    let defaults = LogConfig::default();
    let flush = match (number("flush.messages"), number("flush.ms")) {
        (Some(1), _) => FlushPolicy::Always,
        (_, Some(ms)) if (0..i64::MAX).contains(&ms) => FlushPolicy::Interval {
            interval_ms: ms as u64,
        },
        _ => FlushPolicy::Os,
    };
    TopicConfig {
        partitions,
        compression: codec_of(text("compression.type")),
        log: LogConfig {
            segment_bytes: number("segment.bytes")
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(defaults.segment_bytes),
            index_interval_bytes: number("index.interval.bytes")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(defaults.index_interval_bytes),
            flush,
            retention_ms: number("retention.ms").filter(|v| *v >= 0),
            retention_bytes: number("retention.bytes").and_then(|v| u64::try_from(v).ok()),
        },
    }
}

/// Kafka's own defaults, when the configuration cannot be read.
pub(super) fn default_config(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        compression: Compression::None,
        log: LogConfig {
            flush: FlushPolicy::Os,
            retention_bytes: None,
            ..LogConfig::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_map_both_ways() {
        for codec in Compression::ALL {
            assert_eq!(codec_of(Some(kafka_codec_name(codec))), codec);
        }
        assert_eq!(codec_of(Some("uncompressed")), Compression::None);
        assert_eq!(codec_of(None), Compression::None);
    }

    #[test]
    fn kafka_topic_settings_read_as_rill_topic_config() {
        let config = default_config(3);
        assert_eq!(config.partitions, 3);
        assert_eq!(config.log.flush, FlushPolicy::Os);
        assert_eq!(config.log.retention_ms, Some(7 * 24 * 3600 * 1000));
    }
}
