//! Partition choice for records the producer did not pin to a partition, the way a Java Kafka
//! client chooses.
//!
//! - With a key: Kafka's default partitioner, `toPositive(murmur2(key)) % partitions`, over the
//!   key's *serialized* bytes (the bytes that are stored, whatever the key format). A key lands on
//!   the same partition here as it would from a Java producer, so rill and Kafka clients can share
//!   a topic, and a topic moved to the Kafka backend keeps its key placement.
//! - Without a key: [`RoundRobin`]. Kafka's own client is "sticky" (fills a batch for one
//!   partition, then moves on); rill already batches per request, so plain round-robin spreads
//!   load evenly without a hot partition 0 (see API.md, "Deliberate differences").

use std::sync::atomic::{AtomicU32, Ordering};

/// Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`, bit-exact with the Java
/// client (including its signed result).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java computes `seed ^ length` on an int; truncating the length matches it for every array
    // Java can hold.
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        // Java assembles the word with `+` of non-overlapping masked bytes: a little-endian read.
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // The Java `switch` falls through from case 3 to case 1.
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition Kafka's default partitioner gives a record with this serialized key.
///
/// `partitions` must be at least 1 (topic configs guarantee it); 0 yields partition 0, which such
/// a topic does not have, so the caller's "partition exists" check fails instead of a panic.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    to_positive(murmur2(key))
        .checked_rem(partitions)
        .unwrap_or(0)
}

/// Spreads keyless records over a topic's partitions in turn. One per topic, shared by all
/// HTTP workers: the counter is a relaxed atomic because only the spread matters, not an order.
#[derive(Debug, Default)]
pub struct RoundRobin {
    counter: AtomicU32,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    /// A round-robin whose first pick is `start % partitions`: for requests that must place
    /// records the same way every time they are retried.
    pub fn starting_at(start: u32) -> Self {
        Self {
            counter: AtomicU32::new(start),
        }
    }

    /// The next partition in `0..partitions`. When the counter wraps at 2^32 one partition may
    /// be picked twice in a row; over billions of records that skew is noise. `partitions == 0`
    /// yields 0 (see [`partition_for_key`]).
    pub fn next(&self, partitions: u32) -> u32 {
        self.counter
            .fetch_add(1, Ordering::Relaxed)
            .checked_rem(partitions)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils).
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Values printed by the Java client's `Utils.murmur2` (kafkajs and Akka both pin them),
    /// covering every tail length 0..=3.
    #[test]
    fn murmur2_matches_java_client_for_every_tail_length() {
        let cases: [(&[u8], i32); 7] = [
            (b"0", 971_027_396),
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
            (b"128", -326_012_175),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Placements kafka-python checked against the Java `DefaultPartitioner` with 1000
    /// partitions, including the empty key and a key with a NUL byte.
    #[test]
    fn key_placement_matches_java_default_partitioner() {
        let cases: [(&[u8], u32); 6] = [
            (b"", 681),
            (b"a", 524),
            (b"ab", 434),
            (b"abc", 107),
            (b"123456789", 566),
            (b"\x00 ", 742),
        ];
        for (key, expected) in cases {
            assert_eq!(partition_for_key(key, 1000), expected, "{key:?}");
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit_like_kafka() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn keys_stay_in_range_and_single_partition_topics_take_everything() {
        for i in 0..1000u32 {
            let key = format!("order-{i}");
            assert_eq!(partition_for_key(key.as_bytes(), 1), 0);
            assert!(partition_for_key(key.as_bytes(), 7) < 7);
        }
        assert_eq!(partition_for_key(b"abc", 0), 0);
    }

    #[test]
    fn round_robin_cycles_through_every_partition() {
        let rr = RoundRobin::new();
        let picks: Vec<u32> = (0..7).map(|_| rr.next(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(rr.next(0), 0);
    }

    #[test]
    fn round_robin_survives_counter_wraparound() {
        let rr = RoundRobin {
            counter: AtomicU32::new(u32::MAX),
        };
        assert_eq!(rr.next(4), u32::MAX % 4);
        assert_eq!(rr.next(4), 0);
    }
}
