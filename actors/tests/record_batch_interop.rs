//! Interop between rill's RecordBatch v2 codec and an independent implementation, the
//! `kafka-protocol` crate: batches rill builds must decode there, and batches it encodes must
//! decode in rill, for every codec, with identical offsets, timestamps, keys, values and headers.
//!
//! Two known gaps of kafka-protocol 0.15 shape these tests (both fixed in later releases):
//! - Its snappy codec reads and writes one *raw* snappy block, not the xerial (snappy-java)
//!   framing Kafka's Java client uses and rill writes. So rill's snappy batches are read here
//!   through a custom decompressor that undoes xerial framing with `snap::raw` directly — an
//!   independent reading of the framing — while kafka-protocol's raw-snappy batches exercise
//!   rill's raw fallback.
//! - It decodes a null header value (length -1) as an error, so batches going rill →
//!   kafka-protocol carry only non-null header values; null ones are covered in the other
//!   direction.
//!
//! Its headers are a map, so header keys are unique within a record here.

#[path = "support/kafka.rs"]
mod kafka_support;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordCompression, RecordEncodeOptions, TimestampType,
};
use kafka_support::decode_with_kafka;
use rill_actors::compression::Compression;
use rill_actors::record_batch::{
    self, decode_batch, stamp_base_offset, verify, BatchBuilder, RecordHeader,
};

/// One test record, in the shape both libraries can express.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn to_kafka(c: Compression) -> KCompression {
    match c {
        Compression::None => KCompression::None,
        Compression::Gzip => KCompression::Gzip,
        Compression::Snappy => KCompression::Snappy,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd => KCompression::Zstd,
    }
}

/// Records with nulls, empty fields, several headers, out-of-order timestamps and, every 50th
/// record, a 100 KiB value so compressed sections span several snappy and lz4 blocks.
fn samples(n: usize, null_header_values: bool) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            timestamp: 1_700_000_000_000 + (i as i64 * 37 % 11) * 1000 - 5000,
            key: match i % 3 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("user-{}", i % 17).into_bytes()),
            },
            value: match i % 5 {
                0 => None,
                1 => Some(Vec::new()),
                _ if i % 50 == 7 => Some(
                    format!("{{\"big\":{i},\"pad\":\"")
                        .into_bytes()
                        .into_iter()
                        .cycle()
                        .take(100 * 1024)
                        .collect(),
                ),
                _ => Some(format!("{{\"order\":{i},\"amount\":{}}}", i * 13 % 1000).into_bytes()),
            },
            headers: (0..i % 4)
                .map(|h| {
                    let value = if null_header_values && h == 1 {
                        None
                    } else {
                        Some(format!("v{h}-{i}").into_bytes())
                    };
                    (format!("h{h}"), value)
                })
                .collect(),
        })
        .collect()
}

fn build_with_rill(codec: Compression, records: &[Sample]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    for r in records {
        let headers: Vec<RecordHeader<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| RecordHeader {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        builder.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    builder.finish().expect("finish").bytes
}

fn assert_kafka_matches(records: &[KRecord], expected: &[Sample], base_offset: i64) {
    assert_eq!(records.len(), expected.len());
    for (i, (got, want)) in records.iter().zip(expected).enumerate() {
        assert_eq!(got.offset, base_offset + i as i64);
        assert_eq!(got.timestamp, want.timestamp, "record {i}");
        assert_eq!(got.timestamp_type, TimestampType::Creation);
        assert_eq!(got.key.as_deref(), want.key.as_deref(), "record {i}");
        assert_eq!(got.value.as_deref(), want.value.as_deref(), "record {i}");
        let headers: Vec<(String, Option<Vec<u8>>)> = got
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec())))
            .collect();
        assert_eq!(headers, want.headers, "record {i}");
        assert!(!got.transactional && !got.control);
        assert_eq!((got.producer_id, got.producer_epoch), (-1, -1));
        assert_eq!(got.partition_leader_epoch, -1);
    }
}

#[test]
fn kafka_protocol_decodes_batches_rill_builds_with_every_codec() {
    for codec in Compression::ALL {
        for n in [1, 200] {
            let records = samples(n, false);
            let mut batch = build_with_rill(codec, &records);
            stamp_base_offset(&mut batch, 1000);
            let decoded = decode_with_kafka(&batch);
            assert_kafka_matches(&decoded, &records, 1000);
        }
    }
}

#[test]
fn kafka_protocol_decodes_uncompressed_rill_batches_without_custom_codecs() {
    // No custom decompressor at all: the plainest reading of rill's bytes.
    let records = samples(50, false);
    let mut segment = Vec::new();
    for base in [0, 50] {
        let mut batch = build_with_rill(Compression::None, &records);
        stamp_base_offset(&mut batch, base);
        segment.extend_from_slice(&batch);
    }
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(segment)).expect("decode_all");
    assert_eq!(sets.len(), 2);
    for (set, base) in sets.iter().zip([0, 50]) {
        assert_eq!(
            set.compression,
            RecordCompression::RecordBatch(KCompression::None)
        );
        assert_kafka_matches(&set.records, &records, base);
    }
}

fn to_kafka_records(samples: &[Sample], base_offset: i64) -> Vec<KRecord> {
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| KRecord {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // kafka-protocol starts a new batch whenever offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: s.timestamp,
            key: s.key.clone().map(Bytes::from),
            value: s.value.clone().map(Bytes::from),
            headers: s
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                .collect::<IndexMap<_, _>>(),
        })
        .collect()
}

#[test]
fn rill_decodes_batches_kafka_protocol_encodes_with_every_codec() {
    // kafka-protocol writes snappy as one raw block (not xerial): this covers rill's fallback.
    for codec in Compression::ALL {
        for n in [1, 200] {
            let records = samples(n, true);
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &to_kafka_records(&records, 500),
                &RecordEncodeOptions {
                    version: 2,
                    compression: to_kafka(codec),
                },
            )
            .expect("kafka-protocol encodes");

            let mut seen = 0;
            for batch in record_batch::batches(&buf) {
                let (header, bytes) = batch.expect("well-framed batch");
                assert_eq!(
                    verify(bytes).expect("valid CRC").compression().ok(),
                    Some(codec)
                );
                assert_eq!(header.base_offset, 500);
                if codec == Compression::Snappy {
                    // What makes this case interesting: a raw block, not xerial framing.
                    assert!(!bytes[record_batch::BATCH_HEADER_LEN..].starts_with(b"\x82SNAPPY"));
                }
                let decoded = decode_batch(bytes).expect("rill decodes kafka-protocol's batch");
                assert_eq!(decoded.len(), records.len(), "{codec}");
                for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                    assert_eq!(got.offset, 500 + i as i64, "{codec}");
                    assert_eq!(got.timestamp, want.timestamp, "{codec} record {i}");
                    assert_eq!(got.key, want.key, "{codec} record {i}");
                    assert_eq!(got.value, want.value, "{codec} record {i}");
                    assert_eq!(got.headers, want.headers, "{codec} record {i}");
                }
                seen += 1;
            }
            assert_eq!(seen, 1, "{codec}: one batch expected");
        }
    }
}
