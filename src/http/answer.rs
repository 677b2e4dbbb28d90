//! JSON answers written by hand on the hot paths: the per-record results of a produce, in the
//! sync answer and in a finished async request's status.
//!
//! The bytes are exactly what serde would write for the same values (a test keeps them equal);
//! only an appended record's entry — numbers only, no text to escape — skips serde, whose
//! per-field formatting of 1,000 entries was ~10 % of a 1,000-record request (perf). Failed
//! entries, which carry messages, still go through serde.

use rill_actors::status::{rfc3339_millis, RecordResult, RequestState};
use rill_actors::types::PartitionId;
use serde::Serialize;

/// The longest entry of an appended record: the fixed text plus an `i32` partition and two
/// `i64`s at their longest (`{"partition":-2147483648,"offset":-9223372036854775808,…}`).
const MAX_APPENDED_ENTRY: usize = ENTRY_FIXED_LEN + 11 + 20 + 20;
const ENTRY_FIXED_LEN: usize = PARTITION.len() + OFFSET.len() + TIMESTAMP.len() + TAIL.len();
const PARTITION: &[u8] = b"{\"partition\":";
const OFFSET: &[u8] = b",\"offset\":";
const TIMESTAMP: &[u8] = b",\"timestamp\":";
const TAIL: &[u8] = b",\"error_code\":null,\"error\":null,\"retriable\":null}";

/// Appends `[entry, …]` for `results` to `out`, sized up front for the longest appended
/// entries: 96 bytes per entry was short of a typical one (~106), so a 1,000-record answer
/// grew by doubling and copied itself once more.
///
/// An entry's text before its offset depends only on the partition, and its text after the
/// offset only on the timestamp, which the records of one request mostly share (the broker's
/// clock at the append). Both are formatted once and copied, leaving one number to format per
/// entry instead of three.
pub fn write_record_results(out: &mut Vec<u8>, results: &[RecordResult]) {
    out.reserve(2 + results.len() * (MAX_APPENDED_ENTRY + 1));
    out.push(b'[');
    let mut numbers = itoa::Buffer::new();
    let mut heads = EntryHeads::default();
    let mut tail = Vec::with_capacity(TIMESTAMP.len() + 20 + TAIL.len());
    let mut tail_timestamp = None;
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match result.appended() {
            Some((partition, offset, timestamp)) => {
                if tail_timestamp != Some(timestamp) {
                    tail.clear();
                    tail.extend_from_slice(TIMESTAMP);
                    tail.extend_from_slice(numbers.format(timestamp).as_bytes());
                    tail.extend_from_slice(TAIL);
                    tail_timestamp = Some(timestamp);
                }
                heads.write(out, partition);
                out.extend_from_slice(numbers.format(offset).as_bytes());
                out.extend_from_slice(&tail);
            }
            None => serde_json::to_writer(&mut *out, result).expect("writing to a Vec never fails"),
        }
    }
    out.push(b']');
}

/// `{"partition":P,"offset":` for the partitions of one answer, formatted on first use. A
/// request's records land on a handful of partitions, in no order (keys hash anywhere), so a
/// short list searched front to back finds them; past [`EntryHeads::MAX`] partitions the rest
/// are formatted each time.
#[derive(Default)]
struct EntryHeads {
    /// Each kept partition and where its head lies in `text`.
    heads: Vec<(PartitionId, std::ops::Range<usize>)>,
    text: Vec<u8>,
}

impl EntryHeads {
    const MAX: usize = 32;

    fn write(&mut self, out: &mut Vec<u8>, partition: PartitionId) {
        if let Some((_, head)) = self.heads.iter().find(|(p, _)| *p == partition) {
            out.extend_from_slice(&self.text[head.clone()]);
            return;
        }
        let start = out.len();
        out.extend_from_slice(PARTITION);
        out.extend_from_slice(itoa::Buffer::new().format(partition).as_bytes());
        out.extend_from_slice(OFFSET);
        if self.heads.len() < Self::MAX {
            let kept = self.text.len();
            self.text.extend_from_slice(&out[start..]);
            self.heads.push((partition, kept..self.text.len()));
        }
    }
}

/// The sync produce answer: `{"topic": …, "offsets": [one entry per input record, in input
/// order]}`.
pub fn sync_answer(topic: &str, results: &[RecordResult]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + topic.len() + results.len() * (MAX_APPENDED_ENTRY + 1));
    out.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut out, topic).expect("writing to a Vec never fails");
    out.extend_from_slice(b",\"offsets\":");
    write_record_results(&mut out, results);
    out.push(b'}');
    out
}

/// `GET /api/produce/status/{id}`'s answer: the request's state, field by field in
/// `RequestState`'s order, its offsets written by hand.
pub fn status_answer(state: &RequestState) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        serde_json::to_writer(&mut *out, value).expect("writing to a Vec never fails");
    }
    let mut out = Vec::with_capacity(256 + state.offsets.len() * (MAX_APPENDED_ENTRY + 1));
    out.extend_from_slice(b"{\"request_id\":");
    serde_json::to_writer(&mut out, &state.request_id).expect("writing to a Vec never fails");
    field(&mut out, "topic", &state.topic);
    field(&mut out, "status", &state.status);
    field(&mut out, "created_at", &rfc3339_millis(state.created_at));
    field(&mut out, "updated_at", &rfc3339_millis(state.updated_at));
    field(&mut out, "record_count", &state.record_count);
    out.extend_from_slice(b",\"offsets\":");
    write_record_results(&mut out, &state.offsets);
    field(&mut out, "error", &state.error);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use rill_actors::status::RequestStatus;
    use rill_actors::types::{PartitionId, TopicName};

    use super::*;

    fn results() -> Vec<RecordResult> {
        vec![
            RecordResult::ok(0, 42, 1_732_838_400_000),
            RecordResult::ok(PartitionId::MAX, i64::MAX, i64::MAX),
            RecordResult::ok(2, -1, 0),
            RecordResult::failed(
                None,
                "invalid_value",
                "records[3].value: \"quoted\" \\ and \u{1}".into(),
                false,
            ),
            RecordResult::failed(Some(1), "disk_full", "records[4]: full".into(), true),
            RecordResult {
                timestamp: None,
                ..RecordResult::ok(0, 7, 1)
            },
            RecordResult::ok(1, 0, i64::MIN),
            // The longest entry there can be.
            RecordResult::ok(PartitionId::MIN, i64::MIN, i64::MIN),
            // Partitions seen before and a timestamp shared by neighbours, as a request's
            // records come, broken by a failure between two equal entries.
            RecordResult::ok(2, 100, 1_732_838_400_000),
            RecordResult::ok(0, 101, 1_732_838_400_000),
            RecordResult::ok(2, 102, 1_732_838_400_000),
            RecordResult::failed(Some(0), "disk_full", "records[11]: full".into(), true),
            RecordResult::ok(0, 103, 1_732_838_400_001),
            RecordResult::ok(1, 104, 1_732_838_400_000),
        ]
    }

    #[test]
    fn the_sync_answer_is_what_serde_writes() {
        #[derive(Serialize)]
        struct ProduceResponse<'a> {
            topic: &'a str,
            offsets: &'a [RecordResult],
        }
        let results = results();
        for topic in ["orders", "we\"ird\\topic"] {
            for n in 0..=results.len() {
                let by_serde = serde_json::to_string(&ProduceResponse {
                    topic,
                    offsets: &results[..n],
                })
                .unwrap();
                let by_hand = String::from_utf8(sync_answer(topic, &results[..n])).unwrap();
                assert_eq!(by_hand, by_serde);
            }
        }
    }

    #[test]
    fn answers_over_more_partitions_than_are_kept_formatted_are_what_serde_writes() {
        // 40 partitions, each seen twice: the first 32 heads are kept, the rest formatted
        // each time.
        let results: Vec<RecordResult> = (0..80)
            .map(|i| RecordResult::ok(i % 40, i64::from(i), 1_732_838_400_000 + i64::from(i / 7)))
            .collect();
        let mut by_hand = Vec::new();
        write_record_results(&mut by_hand, &results);
        assert_eq!(
            String::from_utf8(by_hand).unwrap(),
            serde_json::to_string(&results).unwrap()
        );
    }

    #[test]
    fn the_status_answer_is_what_serde_writes() {
        for (status, error) in [
            (RequestStatus::Completed, None),
            (RequestStatus::Failed, Some("disk \"full\"".to_string())),
            (RequestStatus::Pending, None),
        ] {
            let state = RequestState {
                request_id: "01JDQ8Z6S3N5J8Q4V3C2B1A0ZX".into(),
                topic: TopicName::new("orders").unwrap(),
                status,
                created_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_732_838_400_123),
                updated_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_732_838_401_456),
                record_count: 7,
                offsets: results().into(),
                error,
            };
            let by_hand = String::from_utf8(status_answer(&state)).unwrap();
            assert_eq!(by_hand, serde_json::to_string(&state).unwrap());
        }
    }
}
