//! The produce request path over arbitrary bytes: `parse_body`, `ProduceSettings::resolve`
//! (formats, inline Avro schemas) and `prepare` (serializing keys, values and headers,
//! choosing partitions, building and compressing one batch per partition). Every batch built
//! must verify and decode back to as many records as were put in; every error must be an
//! error the HTTP layer answers with a 4xx (never `internal_error`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rill::backend::TopicMeta;
use rill::formats::AvroSchemaCache;
use rill::partitioner::RoundRobin;
use rill::produce::{parse_body, prepare, ProduceSettings};
use rill_actors::compression::Compression;
use rill_actors::idempotency::{DigestKind, IdempotencyTag};
use rill_actors::record_batch::decode_batch;
use rill_actors::types::TopicName;

fn schemas() -> &'static AvroSchemaCache {
    static CACHE: OnceLock<AvroSchemaCache> = OnceLock::new();
    CACHE.get_or_init(|| AvroSchemaCache::new(64, 1 << 16))
}

fn client_error(e: &rill::http::error::ApiError) -> bool {
    use actix_web::ResponseError;
    e.status_code().is_client_error()
}

fuzz_target!(|data: &[u8]| {
    let body = match parse_body(data) {
        Ok(body) => body,
        Err(e) => {
            assert!(client_error(&e), "parse_body: {e} is not a 4xx");
            return;
        }
    };
    // The codec from the input's length: every codec gets exercised.
    let compression = Compression::ALL[data.len() % Compression::ALL.len()];
    let settings = match ProduceSettings::resolve(&body, compression, schemas()) {
        Ok(settings) => settings,
        Err(e) => {
            assert!(client_error(&e), "resolve: {e} is not a 4xx");
            return;
        }
    };
    let topic = TopicMeta {
        name: TopicName::new("fuzz").expect("valid name"),
        partitions: 1 + (data.len() % 7) as u32,
        compression,
    };
    let prepared = match prepare(
        &body,
        &settings,
        &topic,
        &RoundRobin::new(),
        1_700_000_000_000,
        // Half the inputs as an idempotent request's: its batches are marked.
        (data.len() % 2 == 0).then_some(&IdempotencyTag {
            key_hash: [data.len() as u8; 16],
            body_digest: [0; 16],
            digest_kind: DigestKind::Xxh3,
            request_id: [0; 16],
            created_ms: 1_700_000_000_000,
        }),
    ) {
        Ok(prepared) => prepared,
        Err(e) => panic!("prepare failed as a whole: {e}"),
    };
    let mut decoded = 0;
    for batch in &prepared.batches {
        assert!((0..topic.partitions as i32).contains(&batch.partition));
        let records = decode_batch(&batch.batch).expect("a built batch decodes");
        decoded += records.len();
    }
    assert_eq!(decoded, prepared.appended_records);
    assert!(decoded <= body.records.len());
});
