//! Kafka RecordBatch v2, byte for byte: the unit rill stores, indexes and serves.
//!
//! A batch is a 61-byte header followed by the records section, which may be compressed as a
//! whole (see [`crate::compression`]). All integers are big-endian; docs/FORMAT.md
//! ("RecordBatch v2") has the full table. In short:
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            ┐ LOG_OVERHEAD: outside batchLength and the CRC,
//!      8     4  batchLength           ┘ so the log stamps offsets without re-checksumming
//!     12     4  partitionLeaderEpoch    also outside the CRC (the leader stamps it)
//!     16     1  magic = 2
//!     17     4  crc                     CRC-32C of bytes 21..end
//!     21     2  attributes              bits 0-2 codec, 3 timestamp type, 4 transactional,
//!                                       5 control
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp           first record's timestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordCount
//!     61     …  records
//!
//! record: length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//!         keyLength varint | key | valueLength varint | value |
//!         headerCount varint | (headerKeyLength varint | key | headerValueLength varint | value)*
//! ```
//!
//! Varints are zigzag-encoded base-128 (Protocol Buffers' `sint32`/`sint64`); a length of -1
//! means null.
//!
//! The produce path uses [`BatchBuilder`] (off the partition actor, on the HTTP workers) and
//! the log only calls [`BatchHeader::parse`], [`verify`] and [`stamp_base_offset`]. Decoding
//! ([`decode_batch`]) is for read-back and tests. Every decoder here treats its input as hostile:
//! no panics, and allocations bounded by a small multiple of the input or an explicit limit.

use bytes::{Buf, BufMut};

use crate::compression::{CodecError, Compression};

/// Bytes before the part `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, up to and including recordCount.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only batch format rill reads or writes.
pub const MAGIC_V2: i8 = 2;
/// Smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// Default cap on a batch's decompressed records section in [`decode_batch`]: far above any
/// batch rill accepts, low enough that a hostile batch cannot exhaust memory.
pub const MAX_RECORDS_LEN: usize = 256 << 20;

/// producerId of a producer without idempotence (Kafka's `NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// producerEpoch of a producer without idempotence (Kafka's `NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// baseSequence of a producer without idempotence (Kafka's `NO_SEQUENCE`).
pub const NO_SEQUENCE: i32 = -1;
/// Kafka's `NO_PARTITION_LEADER_EPOCH`, what a Kafka producer writes; see [`BatchBuilder`].
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Attributes bit 3: timestamps are the broker's append time (then every record's timestamp
/// is the batch's maxTimestamp), not the producer's create time.
pub const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attributes bit 4: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// Attributes bit 5: the batch holds a control record (transaction marker).
pub const ATTR_CONTROL: i16 = 1 << 5;

const CRC_AT: usize = 17;
/// The CRC covers everything from attributes to the end of the batch.
const CRC_FROM: usize = 21;

/// Why bytes are not a valid batch, or a batch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared `batchLength` need: a torn write at the end
    /// of a segment, or a buffer cut short.
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },

    /// The magic byte is not 2: an older message format (v0/v1) or not a batch at all.
    #[error("unsupported batch magic {0}: only RecordBatch v2 is supported")]
    BadMagic(i8),

    /// `batchLength` is smaller than the v2 header itself (49), so it cannot frame a batch.
    #[error("batch length {0} is shorter than a RecordBatch v2 header")]
    BadLength(i32),

    /// [`verify`] was given more bytes than the batch declares (it checks exactly one batch).
    #[error("buffer of {actual} bytes holds a batch declaring {declared} bytes")]
    LengthMismatch { declared: usize, actual: usize },

    /// The stored CRC-32C does not match the bytes: corruption or tampering after writing.
    #[error("CRC-32C mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },

    /// The records section could not be compressed or decompressed, or the attributes name an
    /// unknown codec.
    #[error(transparent)]
    Codec(#[from] CodecError),

    /// The batch frames correctly but its contents are inconsistent: bad varints, lengths past
    /// the end of a record, offset deltas or record count disagreeing with the header.
    #[error("malformed batch: {0}")]
    Malformed(String),

    /// [`BatchBuilder::finish`] was called with no records pushed; Kafka producers never write
    /// an empty batch.
    #[error("a batch needs at least one record")]
    Empty,

    /// The records would make `batchLength` overflow an i32 (a batch over 2 GiB).
    #[error("batch of {size} bytes exceeds the RecordBatch size limit")]
    TooLarge { size: usize },
}

fn malformed(what: &str) -> BatchError {
    BatchError::Malformed(what.to_owned())
}

/// Fixed header fields of a batch, parsed without touching the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the first 61 bytes of `buf`. Checks only what framing needs — enough bytes for a
    /// header, magic 2, `batchLength >= 49` — not the CRC or whether the batch fits in `buf`
    /// (that is [`verify`]).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        let Some(mut b) = buf.get(..BATCH_HEADER_LEN) else {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        };
        // Struct fields are evaluated in source order, which is the wire order.
        let header = BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        };
        if header.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(header.magic));
        }
        if header.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength(header.batch_length));
        }
        Ok(header)
    }

    /// The 61 header bytes, as [`BatchHeader::parse`] reads them back.
    pub fn to_bytes(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut bytes = [0u8; BATCH_HEADER_LEN];
        let mut b = &mut bytes[..];
        b.put_i64(self.base_offset);
        b.put_i32(self.batch_length);
        b.put_i32(self.partition_leader_epoch);
        b.put_i8(self.magic);
        b.put_u32(self.crc);
        b.put_i16(self.attributes);
        b.put_i32(self.last_offset_delta);
        b.put_i64(self.base_timestamp);
        b.put_i64(self.max_timestamp);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.base_sequence);
        b.put_i32(self.record_count);
        bytes
    }

    /// Whole size of the batch in bytes: `LOG_OVERHEAD + batch_length`.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the batch's last record. Wraps instead of panicking on a hostile header;
    /// [`verify`] rejects batches where it would.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The codec named in attributes bits 0..=2.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Ok(Compression::from_attributes(self.attributes)?)
    }

    /// Whether the batch holds control records, which consumers never see.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Overwrites the base offset (bytes 0..8). Base offset is outside the CRC, so no re-checksum.
///
/// Does nothing if `batch` is shorter than 8 bytes; callers pass batches that passed
/// [`BatchHeader::parse`].
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(..8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Checks that `batch` (exactly one whole batch) has a valid header, length and CRC-32C, a
/// known codec, and a record count and last offset delta that can describe real records.
///
/// The CRC does not cover baseOffset, batchLength, partitionLeaderEpoch or magic (bytes 0..21):
/// Kafka designed it so the broker can rewrite the first and third without re-checksumming.
pub fn verify(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_len();
    if batch.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: batch.len(),
        });
    }
    if batch.len() > total {
        return Err(BatchError::LengthMismatch {
            declared: total,
            actual: batch.len(),
        });
    }
    let actual = crc32c::crc32c(&batch[CRC_FROM..]);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    header.compression()?;
    if header.record_count < 0 {
        return Err(malformed("negative record count"));
    }
    if header.last_offset_delta < 0 {
        return Err(malformed("negative last offset delta"));
    }
    if i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1 {
        return Err(malformed("more records than offsets in the batch"));
    }
    if header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .is_none()
    {
        return Err(malformed("last offset overflows"));
    }
    Ok(header)
}

/// One header of a record; Kafka header keys are strings, values nullable bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// Builds one batch from records; reuses its buffers across batches (call `clear`/reuse).
///
/// The batch is what a Kafka Java producer without idempotence writes: CreateTime timestamps,
/// not transactional, producerId/epoch/baseSequence -1 (an idempotent request's batches are
/// marked instead: [`BatchBuilder::set_idempotent_producer`]), and partitionLeaderEpoch -1
/// (`NO_PARTITION_LEADER_EPOCH`). A Kafka broker would stamp its leader epoch on append; rill
/// has no leader elections, and -1 tells consumers to skip epoch-based truncation detection,
/// which is right for a single node. Base offset is 0 until the log stamps it.
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    /// A header-sized gap, then the uncompressed records section, appended to record by
    /// record. The gap lets an uncompressed batch be finished in place: the header is written
    /// into it and the buffer handed over without copying the records (a measurable share of
    /// a 1000-record produce in the profile).
    records: Vec<u8>,
    count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    /// The producerId written into the header: [`NO_PRODUCER_ID`], or the mark of a batch
    /// of an idempotent request ([`BatchBuilder::set_idempotent_producer`]).
    producer_id: i64,
    /// A control batch ([`encode_control_batch`]).
    control: bool,
}

/// A finished batch with base offset 0, ready for [`stamp_base_offset`] and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    pub record_count: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// A builder whose buffer holds `records_bytes` of records before it has to grow (and
    /// copy what it holds): callers that know roughly how much is coming say so.
    pub fn with_capacity(compression: Compression, records_bytes: usize) -> Self {
        let mut records = Vec::with_capacity(BATCH_HEADER_LEN + records_bytes);
        records.resize(BATCH_HEADER_LEN, 0);
        Self {
            compression,
            records,
            count: 0,
            base_timestamp: -1,
            max_timestamp: -1,
            producer_id: NO_PRODUCER_ID,
            control: false,
        }
    }

    /// Marks the batches this builder finishes as an idempotent request's: producerId
    /// `producer_id` (non-negative), epoch 0, base sequence 0, as a Kafka idempotent producer's
    /// first batch. The log refuses a marked batch without a journal entry and an entry
    /// without a marked batch, and recovery cuts a marked batch whose entry was lost
    /// (docs/FORMAT.md, "Idempotency journal").
    pub fn set_idempotent_producer(&mut self, producer_id: i64) {
        debug_assert!(producer_id >= 0);
        self.producer_id = producer_id;
    }

    /// The codec [`BatchBuilder::finish`] applies.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Changes the codec for the batch being built (records are compressed only on finish).
    pub fn set_compression(&mut self, compression: Compression) {
        self.compression = compression;
    }

    /// Appends one record. Its timestamp is stored as a delta from the first record's
    /// (wrapping, so any i64 round-trips); its offset delta is its index in the batch.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        }
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        // Sizes beyond i32 saturate here; `finish` then refuses the batch as too large, since
        // its records section alone is past 2 GiB.
        let offset_delta = saturating_i32(self.count);

        let mut body_len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
        body_len += nullable_len(key) + nullable_len(value);
        body_len += varint_len(saturating_i32(headers.len()));
        for h in headers {
            body_len += varint_len(saturating_i32(h.key.len())) + h.key.len();
            body_len += nullable_len(h.value);
        }

        let out = &mut self.records;
        out.reserve(5 + body_len);
        put_varint(out, saturating_i32(body_len));
        out.push(0); // record attributes: unused in v2
        put_varlong(out, timestamp_delta);
        put_varint(out, offset_delta);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, saturating_i32(headers.len()));
        for h in headers {
            put_varint(out, saturating_i32(h.key.len()));
            out.extend_from_slice(h.key.as_bytes());
            put_nullable(out, h.value);
        }
        self.count += 1;
    }

    /// Number of records pushed since the last finish or clear.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the records section so far, before compression: what callers use to cap a
    /// batch's size.
    pub fn uncompressed_len(&self) -> usize {
        self.records.len() - BATCH_HEADER_LEN
    }

    /// Drops the pushed records, keeping the buffer's capacity (if it still has it).
    pub fn clear(&mut self) {
        self.records.clear();
        self.records.resize(BATCH_HEADER_LEN, 0);
        self.count = 0;
        self.base_timestamp = -1;
        self.max_timestamp = -1;
    }

    /// Finishes the batch with base offset 0: compresses records, writes header and CRC.
    ///
    /// The builder is cleared whether or not this succeeds, ready for the next batch.
    pub fn finish(&mut self) -> Result<EncodedBatch, BatchError> {
        let result = self.encode();
        self.clear();
        result
    }

    fn encode(&mut self) -> Result<EncodedBatch, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Empty);
        }
        let size = self.records.len();
        let too_large = || BatchError::TooLarge { size };
        let record_count = i32::try_from(self.count).map_err(|_| too_large())?;
        if size > i32::MAX as usize {
            return Err(too_large());
        }
        let mut bytes = if self.compression == Compression::None {
            std::mem::take(&mut self.records)
        } else {
            let mut bytes = Vec::with_capacity(self.records.len() / 2 + BATCH_HEADER_LEN);
            bytes.resize(BATCH_HEADER_LEN, 0);
            self.compression
                .compress(&self.records[BATCH_HEADER_LEN..], &mut bytes)?;
            bytes
        };
        let batch_length = i32::try_from(bytes.len() - LOG_OVERHEAD).map_err(|_| too_large())?;
        let (producer_epoch, base_sequence) = if self.producer_id == NO_PRODUCER_ID {
            (NO_PRODUCER_EPOCH, NO_SEQUENCE)
        } else if self.control {
            (0, NO_SEQUENCE)
        } else {
            (0, 0)
        };
        let control = if self.control {
            ATTR_CONTROL | ATTR_TRANSACTIONAL
        } else {
            0
        };
        let header = BatchHeader {
            base_offset: 0,
            batch_length,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            magic: MAGIC_V2,
            crc: 0,
            attributes: self.compression.id() | control,
            last_offset_delta: record_count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        };
        bytes[..BATCH_HEADER_LEN].copy_from_slice(&header.to_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
        bytes[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
        Ok(EncodedBatch {
            bytes,
            // Non-negative: it came from a usize.
            record_count: record_count as u32,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
        })
    }
}

/// Version of the control record key rill writes (Kafka's current one).
const CONTROL_KEY_VERSION: i16 = 0;

/// A control batch of one uncompressed record whose key is Kafka's control record key
/// (version 0, `control_type`) and whose value is `value`: transactional and control,
/// producerId `producer_id`, epoch 0, base sequence -1, as Kafka writes a transaction marker.
/// It takes an offset, but consumers never see it: Kafka's clients skip control batches, and
/// so does rill's read-back API. Base offset 0 until the log stamps it.
pub fn encode_control_batch(
    producer_id: i64,
    timestamp_ms: i64,
    control_type: i16,
    value: &[u8],
) -> Vec<u8> {
    let mut builder = BatchBuilder::with_capacity(Compression::None, value.len() + 32);
    builder.producer_id = producer_id;
    builder.control = true;
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    builder.push(timestamp_ms, Some(&key), Some(value), &[]);
    builder
        .finish()
        .expect("one small record always makes a batch")
        .bytes
}

/// The control type and value of `batch`'s record, if `batch` is a valid control batch of
/// one record with a version 0 key.
pub fn control_record(batch: &[u8]) -> Option<(i16, Vec<u8>)> {
    if !BatchHeader::parse(batch).ok()?.is_control() {
        return None;
    }
    let mut records = decode_batch(batch).ok()?;
    if records.len() != 1 {
        return None;
    }
    let record = records.pop()?;
    let key = record.key?;
    let (version, control_type) = match key.as_slice() {
        [v0, v1, t0, t1] => (
            i16::from_be_bytes([*v0, *v1]),
            i16::from_be_bytes([*t0, *t1]),
        ),
        _ => return None,
    };
    (version == CONTROL_KEY_VERSION).then(|| (control_type, record.value.unwrap_or_default()))
}

/// A decoded record, owned (used by the read-back API and tests, not the append hot path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Verifies CRC then decodes (decompressing) every record of one batch.
pub fn decode_batch(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    decode_batch_with_limit(batch, MAX_RECORDS_LEN)
}

/// [`decode_batch`] with an explicit cap on the decompressed records section.
///
/// Rejects records that disagree with the header: more or fewer than `recordCount`, offset
/// deltas not strictly increasing from 0.., a last offset delta other than `lastOffsetDelta`,
/// or bytes left after the last record. Gaps between deltas are allowed, as in batches Kafka
/// has compacted.
pub fn decode_batch_with_limit(
    batch: &[u8],
    max_records_len: usize,
) -> Result<Vec<Record>, BatchError> {
    let header = verify(batch)?;
    let section = &batch[BATCH_HEADER_LEN..];
    let decompressed;
    let records = match header.compression()? {
        Compression::None => section,
        codec => {
            let mut buf = Vec::new();
            codec.decompress(section, &mut buf, max_records_len)?;
            decompressed = buf;
            &decompressed[..]
        }
    };
    decode_records(&header, records)
}

fn decode_records(header: &BatchHeader, records: &[u8]) -> Result<Vec<Record>, BatchError> {
    // recordCount is untrusted: never reserve more than the bytes could hold (a record takes
    // at least 7 bytes).
    let count = usize::try_from(header.record_count).unwrap_or(0);
    let mut out = Vec::with_capacity(count.min(records.len() / 7));
    let mut r = Reader(records);
    let mut prev_delta: Option<i32> = None;
    for _ in 0..count {
        let len = r.varint()?;
        let len = usize::try_from(len).map_err(|_| malformed("negative record length"))?;
        let mut body = Reader(r.take(len)?);
        let _attributes = body.take(1)?;
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        if offset_delta < 0 || prev_delta.is_some_and(|p| offset_delta <= p) {
            return Err(malformed("record offset deltas are not increasing from 0"));
        }
        if offset_delta > header.last_offset_delta {
            return Err(malformed(
                "record offset delta past the batch's last offset",
            ));
        }
        prev_delta = Some(offset_delta);
        let key = body.nullable()?.map(<[u8]>::to_vec);
        let value = body.nullable()?.map(<[u8]>::to_vec);
        let header_count = usize::try_from(body.varint()?)
            .map_err(|_| malformed("negative record header count"))?;
        // A header takes at least 2 bytes.
        let mut headers = Vec::with_capacity(header_count.min(body.0.len() / 2));
        for _ in 0..header_count {
            let key_len = usize::try_from(body.varint()?)
                .map_err(|_| malformed("null or negative header key length"))?;
            let key = std::str::from_utf8(body.take(key_len)?)
                .map_err(|_| malformed("header key is not UTF-8"))?;
            let value = body.nullable()?.map(<[u8]>::to_vec);
            headers.push((key.to_owned(), value));
        }
        if !body.0.is_empty() {
            return Err(malformed("record length exceeds its fields"));
        }
        // Under LogAppendTime the broker's time in maxTimestamp applies to every record.
        let timestamp = if header.attributes & ATTR_LOG_APPEND_TIME != 0 {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        out.push(Record {
            // verify() checked base_offset + last_offset_delta does not overflow, and
            // 0 <= offset_delta <= last_offset_delta.
            offset: header.base_offset + i64::from(offset_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    if !r.0.is_empty() {
        return Err(malformed("bytes left after the last record"));
    }
    if count > 0 && prev_delta != Some(header.last_offset_delta) {
        return Err(malformed(
            "last record's offset delta differs from lastOffsetDelta",
        ));
    }
    Ok(out)
}

/// Iterates whole batches in a buffer of concatenated batches (a segment slice); yields
/// Err on a torn/short batch and stops.
///
/// Only framing is checked (header and length); call [`verify`] on a batch to check its CRC.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        rest: buf,
        position: 0,
        failed: false,
    }
}

/// Iterator returned by [`batches`].
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    rest: &'a [u8],
    position: usize,
    failed: bool,
}

impl Batches<'_> {
    /// Byte position in the original buffer of the next batch, or of the bad one after an
    /// error: the length of the well-framed prefix.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(self.rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let total = header.total_len();
        if total > self.rest.len() {
            self.failed = true;
            return Some(Err(BatchError::Truncated {
                needed: total,
                available: self.rest.len(),
            }));
        }
        let (batch, rest) = self.rest.split_at(total);
        self.rest = rest;
        self.position += total;
        Some(Ok((header, batch)))
    }
}

impl std::iter::FusedIterator for Batches<'_> {}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn put_uvarint(out: &mut Vec<u8>, mut z: u64) {
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn uvarint_len(z: u64) -> usize {
    // Bits needed (at least 1), 7 per byte.
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

/// Zigzag of an i32 equals zigzag of the same value widened to i64, so varint and varlong
/// share the encoder; they differ only in how many bytes a reader accepts.
fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, zigzag(i64::from(v)));
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

fn varint_len(v: i32) -> usize {
    uvarint_len(zigzag(i64::from(v)))
}

fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag(v))
}

fn nullable_len(field: Option<&[u8]>) -> usize {
    match field {
        None => varint_len(-1),
        Some(b) => varint_len(saturating_i32(b.len())) + b.len(),
    }
}

fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, saturating_i32(b.len()));
            out.extend_from_slice(b);
        }
    }
}

/// A cursor over untrusted bytes; every read checks what remains.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if n > self.0.len() {
            return Err(malformed("field length runs past the end of the record"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    /// An unsigned base-128 varint of at most `max_bytes` bytes.
    fn uvarint(&mut self, max_bytes: usize) -> Result<u64, BatchError> {
        let mut z = 0u64;
        for i in 0..max_bytes {
            let Some((&b, rest)) = self.0.split_first() else {
                return Err(malformed("varint runs past the end of the record"));
            };
            self.0 = rest;
            // For a 10-byte varlong the last byte holds only bit 63, so the shift never
            // drops set bits of a valid encoding; overlong encodings are caught below.
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 1 {
                    return Err(malformed("varlong overflows 64 bits"));
                }
                return Ok(z);
            }
        }
        Err(malformed("varint is too long"))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let z = self.uvarint(5)?;
        let z = u32::try_from(z).map_err(|_| malformed("varint overflows 32 bits"))?;
        // Unzigzag in 64 bits, then narrow: a u32 zigzag always lands in i32's range.
        i32::try_from(unzigzag(u64::from(z))).map_err(|_| malformed("varint overflows 32 bits"))
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        Ok(unzigzag(self.uvarint(10)?))
    }

    /// Length-prefixed bytes where length -1 means null.
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        match self.varint()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len).map_err(|_| malformed("negative field length"))?;
                self.take(len).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PARTITION_LEADER_EPOCH_AT: usize = 12;

    type Owned = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn build(codec: Compression, records: &[Owned]) -> EncodedBatch {
        let mut builder = BatchBuilder::new(codec);
        for (ts, key, value, headers) in records {
            let headers: Vec<RecordHeader<'_>> = headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: k,
                    value: v.as_deref(),
                })
                .collect();
            builder.push(*ts, key.as_deref(), value.as_deref(), &headers);
        }
        builder.finish().expect("finish")
    }

    fn assert_round_trip(codec: Compression, records: &[Owned]) {
        let batch = build(codec, records);
        let decoded = decode_batch(&batch.bytes).expect("decode");
        assert_eq!(decoded.len(), records.len(), "{codec}");
        for (i, (rec, (ts, key, value, headers))) in decoded.iter().zip(records).enumerate() {
            assert_eq!(rec.offset, i as i64, "{codec}");
            assert_eq!(rec.timestamp, *ts, "{codec}");
            assert_eq!(&rec.key, key, "{codec}");
            assert_eq!(&rec.value, value, "{codec}");
            assert_eq!(&rec.headers, headers, "{codec}");
        }
        let header = verify(&batch.bytes).expect("verify");
        assert_eq!(header.compression().ok(), Some(codec));
        assert_eq!(header.record_count as usize, records.len());
        assert_eq!(header.max_timestamp, batch.max_timestamp);
        assert_eq!(header.base_timestamp, batch.base_timestamp);
    }

    fn varied_records(n: usize, value_len: usize) -> Vec<Owned> {
        (0..n)
            .map(|i| {
                let key = match i % 3 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(format!("key-{i}").into_bytes()),
                };
                let value = match i % 4 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(
                        format!("{{\"n\":{i}}}")
                            .into_bytes()
                            .into_iter()
                            .cycle()
                            .take(value_len)
                            .collect(),
                    ),
                };
                let headers = match i % 2 {
                    0 => vec![],
                    _ => vec![
                        ("trace".to_owned(), Some(b"abc".to_vec())),
                        ("trace".to_owned(), None),
                        (String::new(), Some(Vec::new())),
                        ("ünïcode".to_owned(), Some(vec![0, 255])),
                    ],
                };
                // Out of order timestamps: deltas go negative, max is not the last.
                let ts = 1_700_000_000_000 + (i as i64 % 7) * 1000 - 3000;
                (ts, key, value, headers)
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_one_and_a_thousand_records() {
        for codec in Compression::ALL {
            assert_round_trip(codec, &varied_records(1, 10));
            assert_round_trip(codec, &varied_records(1000, 40));
        }
    }

    #[test]
    fn every_codec_round_trips_values_larger_than_a_codec_block() {
        // 200 KiB values span several 32 KiB snappy and 64 KiB lz4 blocks.
        for codec in Compression::ALL {
            assert_round_trip(codec, &varied_records(6, 200 * 1024));
        }
    }

    #[test]
    fn header_fields_are_what_a_non_idempotent_kafka_producer_writes() {
        let batch = build(
            Compression::Lz4,
            &[
                (5, None, Some(b"a".to_vec()), vec![]),
                (3, None, None, vec![]),
            ],
        );
        let h = verify(&batch.bytes).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.total_len(), batch.bytes.len());
        assert_eq!(h.partition_leader_epoch, -1);
        assert_eq!(h.attributes, 3);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!((h.base_timestamp, h.max_timestamp), (5, 5));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
        assert_eq!(h.record_count, 2);
        assert_eq!(BatchHeader::parse(&h.to_bytes()).unwrap(), h);
    }

    /// Bytes written out by hand from the format description, independent of the builder.
    #[test]
    fn builder_output_matches_the_format_byte_for_byte() {
        let batch = build(
            Compression::None,
            &[(
                1000,
                None,
                Some(b"v".to_vec()),
                vec![("h".to_owned(), None)],
            )],
        );
        #[rustfmt::skip]
        let mut expected: Vec<u8> = vec![
            0, 0, 0, 0, 0, 0, 0, 0,     // baseOffset
            0, 0, 0, 60,                // batchLength = 49 + 11
            0xff, 0xff, 0xff, 0xff,     // partitionLeaderEpoch -1
            2,                          // magic
            0, 0, 0, 0,                 // crc, filled below
            0, 0,                       // attributes
            0, 0, 0, 0,                 // lastOffsetDelta
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // baseTimestamp 1000
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // maxTimestamp 1000
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producerId -1
            0xff, 0xff,                 // producerEpoch -1
            0xff, 0xff, 0xff, 0xff,     // baseSequence -1
            0, 0, 0, 1,                 // recordCount
            20,   // record length 10, zigzag
            0,    // attributes
            0,    // timestampDelta 0
            0,    // offsetDelta 0
            1,    // key length -1 (null)
            2, b'v', // value length 1
            2,    // header count 1
            2, b'h', // header key
            1,    // header value null
        ];
        let crc = crc32c::crc32c(&expected[21..]).to_be_bytes();
        expected[17..21].copy_from_slice(&crc);
        assert_eq!(batch.bytes, expected);
    }

    #[test]
    fn varints_match_protobuf_zigzag() {
        let cases: [(i64, &[u8]); 7] = [
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(varlong_len(v), bytes.len());
            assert_eq!(Reader(bytes).varlong().unwrap(), v);
        }
        for v in [i32::MIN, -300, 300, i32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len());
            assert_eq!(Reader(&out).varint().unwrap(), v);
        }
        // Overlong or overflowing encodings are refused, not wrapped.
        assert!(Reader(&[0x80, 0x80, 0x80, 0x80, 0x10]).varint().is_err());
        assert!(Reader(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
            .varint()
            .is_err());
        assert!(Reader(&[0xff; 10]).varlong().is_err());
        assert!(
            Reader(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varlong()
                .is_err()
        );
    }

    #[test]
    fn crc_detects_every_single_bit_flip_outside_the_unchecksummed_fields() {
        for codec in [Compression::None, Compression::Gzip] {
            let batch = build(codec, &varied_records(3, 5)).bytes;
            for byte in 0..batch.len() {
                for bit in 0..8 {
                    let mut flipped = batch.clone();
                    flipped[byte] ^= 1 << bit;
                    let result = verify(&flipped);
                    if byte < 8
                        || (PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4)
                            .contains(&byte)
                    {
                        // baseOffset and partitionLeaderEpoch are outside the CRC by design.
                        assert!(result.is_ok(), "{codec} byte {byte} bit {bit}");
                    } else {
                        assert!(result.is_err(), "{codec} byte {byte} bit {bit}");
                        assert!(decode_batch(&flipped).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn stamping_the_base_offset_keeps_the_batch_valid() {
        let mut batch = build(Compression::Zstd, &varied_records(3, 5)).bytes;
        stamp_base_offset(&mut batch, 41);
        let header = verify(&batch).unwrap();
        assert_eq!((header.base_offset, header.last_offset()), (41, 43));
        let offsets: Vec<i64> = decode_batch(&batch)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, [41, 42, 43]);
    }

    #[test]
    fn truncation_at_every_length_is_an_error_not_a_panic() {
        for codec in Compression::ALL {
            let batch = build(codec, &varied_records(4, 20)).bytes;
            for len in 0..batch.len() {
                let cut = &batch[..len];
                assert!(verify(cut).is_err(), "{codec} at {len}");
                assert!(decode_batch(cut).is_err(), "{codec} at {len}");
                let framed: Vec<_> = batches(cut).collect();
                if len == 0 {
                    assert!(framed.is_empty());
                } else {
                    assert_eq!(framed.len(), 1, "{codec} at {len}");
                    assert!(framed[0].is_err());
                }
            }
        }
    }

    #[test]
    fn batches_walks_concatenated_batches_and_stops_at_a_torn_tail() {
        let mut segment = Vec::new();
        let mut ends = Vec::new();
        for (i, codec) in Compression::ALL.into_iter().enumerate() {
            let mut batch = build(codec, &varied_records(i + 1, 10)).bytes;
            stamp_base_offset(&mut batch, i as i64 * 10);
            segment.extend_from_slice(&batch);
            ends.push(segment.len());
        }
        let whole: Vec<_> = batches(&segment).collect::<Result<_, _>>().unwrap();
        assert_eq!(whole.len(), 5);
        for (i, (header, bytes)) in whole.iter().enumerate() {
            assert_eq!(header.base_offset, i as i64 * 10);
            assert_eq!(verify(bytes).unwrap(), *header);
        }

        let torn = &segment[..ends[2] + 30];
        let mut it = batches(torn);
        assert!(it.by_ref().take(3).all(|b| b.is_ok()));
        assert_eq!(it.position(), ends[2]);
        assert!(matches!(it.next(), Some(Err(BatchError::Truncated { .. }))));
        assert!(it.next().is_none());
        assert_eq!(it.position(), ends[2]);
    }

    #[test]
    fn finishing_an_empty_builder_fails_and_the_builder_is_reusable() {
        let mut builder = BatchBuilder::new(Compression::Snappy);
        assert!(matches!(builder.finish(), Err(BatchError::Empty)));
        builder.push(1, Some(b"k"), None, &[]);
        assert_eq!((builder.len(), builder.is_empty()), (1, false));
        let first = builder.finish().unwrap();
        assert!(builder.is_empty());
        builder.push(1, Some(b"k"), None, &[]);
        assert_eq!(builder.finish().unwrap(), first);
    }

    /// Re-checksums a batch after editing it, so the decoder gets past the CRC.
    fn rechecksum(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[CRC_FROM..]);
        batch[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn records_disagreeing_with_the_header_are_rejected() {
        let good = build(Compression::None, &varied_records(3, 5)).bytes;
        let edit = |at: usize, value: &[u8]| {
            let mut b = good.clone();
            b[at..at + value.len()].copy_from_slice(value);
            rechecksum(&mut b);
            decode_batch(&b)
        };
        // recordCount (57..61) too high, too low, absurd; lastOffsetDelta (23..27) off.
        assert!(edit(57, &4i32.to_be_bytes()).is_err());
        assert!(edit(57, &2i32.to_be_bytes()).is_err());
        assert!(edit(57, &i32::MAX.to_be_bytes()).is_err());
        assert!(edit(57, &(-1i32).to_be_bytes()).is_err());
        assert!(edit(23, &3i32.to_be_bytes()).is_err());
        assert!(edit(23, &1i32.to_be_bytes()).is_err());
        // The first record's offsetDelta is its 4th byte (length, attributes, tsDelta).
        assert!(edit(BATCH_HEADER_LEN + 3, &[4]).is_err());
        assert!(edit(BATCH_HEADER_LEN + 3, &[1]).is_err());
        // Unknown codec id 5.
        assert!(matches!(
            edit(21, &5i16.to_be_bytes()),
            Err(BatchError::Codec(CodecError::UnknownId(5)))
        ));
        assert!(decode_batch(&good).is_ok());
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let mut b = build(Compression::None, &varied_records(3, 5)).bytes;
        b[21..23].copy_from_slice(&ATTR_LOG_APPEND_TIME.to_be_bytes());
        b[35..43].copy_from_slice(&77i64.to_be_bytes());
        rechecksum(&mut b);
        assert!(decode_batch(&b).unwrap().iter().all(|r| r.timestamp == 77));
    }

    #[test]
    fn parse_rejects_short_buffers_bad_magic_and_bad_length() {
        let good = build(Compression::None, &varied_records(1, 1)).bytes;
        assert!(matches!(
            BatchHeader::parse(&good[..60]),
            Err(BatchError::Truncated {
                needed: 61,
                available: 60
            })
        ));
        let mut v1 = good.clone();
        v1[16] = 1;
        assert!(matches!(
            BatchHeader::parse(&v1),
            Err(BatchError::BadMagic(1))
        ));
        let mut short = good.clone();
        short[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&short),
            Err(BatchError::BadLength(48))
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            verify(&long),
            Err(BatchError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn a_compressed_bomb_is_refused_by_the_limit() {
        let records = vec![(0, None, Some(vec![0u8; 4 << 20]), vec![])];
        let batch = build(Compression::Zstd, &records).bytes;
        assert!(batch.len() < 4096);
        assert!(matches!(
            decode_batch_with_limit(&batch, 1 << 20),
            Err(BatchError::Codec(CodecError::TooLarge { .. }))
        ));
        assert!(decode_batch(&batch).is_ok());
    }

    #[test]
    fn a_control_batch_is_a_kafka_transaction_marker_shaped_batch_and_reads_back() {
        let batch = encode_control_batch(77, 1_700_000_000_123, 0x7269, b"entry bytes");
        let header = verify(&batch).expect("a valid batch");
        assert!(header.is_control());
        assert_eq!(header.attributes, ATTR_CONTROL | ATTR_TRANSACTIONAL);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (77, 0, NO_SEQUENCE)
        );
        assert_eq!((header.record_count, header.last_offset_delta), (1, 0));
        assert_eq!(header.max_timestamp, 1_700_000_000_123);
        let records = decode_batch(&batch).unwrap();
        assert_eq!(records[0].key.as_deref(), Some(&[0, 0, 0x72, 0x69][..]));
        assert_eq!(
            control_record(&batch),
            Some((0x7269, b"entry bytes".to_vec()))
        );

        // A data batch, a damaged control batch, and another key version are not one.
        let data = build(Compression::None, &[(5, None, Some(vec![1]), vec![])]).bytes;
        assert_eq!(control_record(&data), None);
        let mut damaged = batch.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(control_record(&damaged), None);
        let mut builder = BatchBuilder::new(Compression::None);
        builder.control = true;
        builder.producer_id = 77;
        builder.push(0, Some(&[0, 1, 0x72, 0x69]), Some(b"v"), &[]);
        assert_eq!(control_record(&builder.finish().unwrap().bytes), None);
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    fn arb_record() -> impl Strategy<Value = Owned> {
        (
            any::<i64>(),
            prop::option::of(arb_bytes(40)),
            prop::option::of(arb_bytes(300)),
            prop::collection::vec((".{0,8}", prop::option::of(arb_bytes(20))), 0..4),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_records_round_trip_through_every_codec(
            records in prop::collection::vec(arb_record(), 1..20),
        ) {
            for codec in Compression::ALL {
                assert_round_trip(codec, &records);
            }
        }

        #[test]
        fn arbitrary_records_sections_never_panic(
            records_section in arb_bytes(200),
            record_count in -2i32..50,
            last_offset_delta in -2i32..50,
            codec in 0i16..8,
        ) {
            let mut batch = build(Compression::None, &varied_records(1, 1)).bytes;
            batch.truncate(BATCH_HEADER_LEN);
            batch.extend_from_slice(&records_section);
            let batch_length = (batch.len() - LOG_OVERHEAD) as i32;
            batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
            batch[21..23].copy_from_slice(&codec.to_be_bytes());
            batch[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
            batch[57..61].copy_from_slice(&record_count.to_be_bytes());
            rechecksum(&mut batch);
            let _ = decode_batch(&batch);
        }
    }
}
