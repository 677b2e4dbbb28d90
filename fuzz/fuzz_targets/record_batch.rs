//! The RecordBatch v2 decoder over arbitrary bytes: `verify`, `decode_batch` (with the default
//! and a small decompression cap) and the `batches` framing iterator must never panic, and what
//! they accept must be self-consistent.
//!
//! Random bytes almost never carry a valid CRC-32C, so each input is also tried "fixed up":
//! magic 2, `batchLength` = the input's length, and the right CRC — that lets the fuzzer reach
//! the record decoder and all five decompressors behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_actors::record_batch::{
    self, batches, decode_batch, decode_batch_with_limit, verify, BATCH_HEADER_LEN, LOG_OVERHEAD,
};

fn check(batch: &[u8]) {
    match verify(batch) {
        Ok(header) => {
            assert_eq!(header.total_len(), batch.len());
            assert!(header.record_count >= 0 && header.last_offset_delta >= 0);
            for limit in [record_batch::MAX_RECORDS_LEN, 4096] {
                if let Ok(records) = decode_batch_with_limit(batch, limit) {
                    assert_eq!(records.len(), header.record_count as usize);
                    let mut previous = None;
                    for r in &records {
                        assert!(r.offset >= header.base_offset);
                        assert!(r.offset <= header.last_offset());
                        assert!(previous.is_none_or(|p| r.offset > p));
                        previous = Some(r.offset);
                    }
                }
            }
        }
        Err(_) => assert!(decode_batch(batch).is_err()),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);

    // The framing iterator over the input as a run of concatenated batches.
    let mut it = batches(data);
    let mut framed = 0usize;
    for item in it.by_ref() {
        match item {
            Ok((header, batch)) => {
                assert_eq!(batch.len(), header.total_len());
                framed += batch.len();
                check(batch);
            }
            Err(_) => break,
        }
    }
    assert_eq!(it.position(), framed);
    assert!(framed <= data.len());

    // The same bytes as one well-framed batch with a correct checksum.
    if data.len() >= BATCH_HEADER_LEN {
        let mut fixed = data.to_vec();
        let len = (fixed.len() - LOG_OVERHEAD) as i32;
        fixed[8..12].copy_from_slice(&len.to_be_bytes());
        fixed[16] = 2;
        let crc = crc32c::crc32c(&fixed[21..]);
        fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(
            !matches!(
                verify(&fixed),
                Err(record_batch::BatchError::CrcMismatch { .. })
            ),
            "fixed-up CRC rejected"
        );
        check(&fixed);
    }
});
