//! Reading batches with an independent implementation, the `kafka-protocol` crate, shared by
//! the interop tests here and the server's end-to-end tests (included with `#[path]`).
//!
//! kafka-protocol 0.15 reads snappy only as one raw block, not the xerial (snappy-java)
//! framing Kafka's Java client and rill write, so snappy sections are unframed here with
//! `snap::raw` directly; gzip, lz4 and zstd use kafka-protocol's own decompressors.
#![allow(dead_code)]

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression as KCompression, Record as KRecord, RecordBatchDecoder};

/// Undoes snappy-java's framing with nothing from rill: 8-byte magic, version and compatible
/// version (both 1), then `[i32 BE length][raw snappy block]` until the end.
pub fn xerial_unframe(mut data: &[u8]) -> Result<Vec<u8>, String> {
    const HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    if !data.starts_with(HEADER) {
        return Err("snappy data from rill lacks the xerial header".into());
    }
    data = &data[HEADER.len()..];
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err("truncated block length".into());
        }
        let len = data.get_i32() as usize;
        if len > data.len() {
            return Err("block past the end".into());
        }
        let block = snap::raw::Decoder::new()
            .decompress_vec(&data[..len])
            .map_err(|e| e.to_string())?;
        if block.len() > 32 * 1024 {
            return Err("xerial block larger than snappy-java's 32 KiB".into());
        }
        out.extend_from_slice(&block);
        data = &data[len..];
    }
    Ok(out)
}

/// Decodes one batch with kafka-protocol: its own decompressors for gzip, lz4 and zstd,
/// [`xerial_unframe`] for snappy.
pub fn decode_with_kafka(batch: &[u8]) -> Vec<KRecord> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Zstd};
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(|section: &mut Bytes, codec: KCompression| match codec {
            KCompression::None => Ok(std::mem::take(section)),
            KCompression::Gzip => Gzip::decompress(section, |b: &mut Bytes| Ok(std::mem::take(b))),
            KCompression::Lz4 => Lz4::decompress(section, |b: &mut Bytes| Ok(std::mem::take(b))),
            KCompression::Zstd => Zstd::decompress(section, |b: &mut Bytes| Ok(std::mem::take(b))),
            KCompression::Snappy => xerial_unframe(section)
                .map(Bytes::from)
                .map_err(|e| std::io::Error::other(e).into()),
        }),
    )
    .expect("kafka-protocol decodes rill's batch");
    assert_eq!(set.version, 2);
    assert!(
        !buf.has_remaining(),
        "kafka-protocol consumed the whole batch"
    );
    set.records
}

/// Decodes every batch of a segment file's bytes, in order.
pub fn decode_segment_with_kafka(segment: &[u8]) -> Vec<KRecord> {
    let mut records = Vec::new();
    let mut rest = segment;
    while !rest.is_empty() {
        assert!(rest.len() >= 12, "torn batch at the end of the segment");
        let len = 12 + i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        records.extend(decode_with_kafka(&rest[..len]));
        rest = &rest[len..];
    }
    records
}
