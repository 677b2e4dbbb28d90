//! The baseline of the Kafka gateway benchmark (bench/kafka.sh): a native rdkafka producer
//! writing straight into the same Kafka broker rill's gateway writes to, with the producer
//! settings rill uses (acks=all, idempotence, linger 5 ms, the same codec) and records shaped
//! like rill-loadgen's (`user-<n>` keys from 100 000, JSON values padded to `--record-bytes`).
//! Partitions are chosen by librdkafka's `murmur2_random`, the Java client's partitioner,
//! which is what rill computes for keyed records.
//!
//! ```text
//! cargo run --release --example kafka_native_bench -- --bootstrap 127.0.0.1:9092 \
//!     --topic bench-native --seconds 5 --record-bytes 100 --compression none
//! ```
//!
//! Prints one line `records_per_s=… mb_per_s=… errors=…` (acknowledged records only, counted
//! during the measured window after a one-second warm-up). Records are counted in librdkafka's
//! delivery callback; at most librdkafka's queue (100 000 records) is unacknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    /// Measured seconds, after one second of warm-up.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// JSON text bytes of each value.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
}

/// xorshift64*, as rill-loadgen uses: cheap and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const PAD: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// 64 distinct (key, value) pairs, built before the clock starts and cycled, like the
/// load generator's bodies.
fn records(record_bytes: usize) -> Vec<(String, String)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 | 1);
    (0..64)
        .map(|_| {
            let key = format!("user-{}", rng.next() % 100_000);
            let mut value = format!(r#"{{"id":{},"pad":""#, rng.next() % 1_000_000_000);
            let fill = record_bytes.saturating_sub(value.len() + 2);
            value.extend((0..fill).map(|_| PAD[(rng.next() % PAD.len() as u64) as usize] as char));
            value.push_str("\"}");
            (key, value)
        })
        .collect()
}

/// Counts acknowledgements in librdkafka's delivery callback: the cheapest way to produce with
/// rdkafka (no future, no channel per record).
#[derive(Default)]
struct Counter {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // rill's producer settings (src/backend/kafka/clients.rs), with the Java client's
    // partitioner instead of rill's own murmur2.
    let producer: ThreadedProducer<Counter> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("max.in.flight.requests.per.connection", "5")
        .set("compression.type", &args.compression)
        .set("partitioner", "murmur2_random")
        .create_with_context(Counter::default())?;
    let records = records(args.record_bytes);
    let counter = producer.context();
    let started = Instant::now();
    let warmup = Duration::from_secs(1);
    let end = warmup + Duration::from_secs_f64(args.seconds);
    let mut measured_from = None;
    let mut acked_at_start = 0;
    let mut i = 0usize;
    while started.elapsed() < end {
        if measured_from.is_none() && started.elapsed() >= warmup {
            measured_from = Some(Instant::now());
            acked_at_start = counter.acked.load(Ordering::Relaxed);
        }
        let (key, value) = &records[i % records.len()];
        i += 1;
        let mut record = BaseRecord::to(&args.topic).key(key).payload(value);
        // The queue (100 000 records) bounds what is unacknowledged; when full, wait for room.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    let window = measured_from.map_or(Duration::ZERO, |t| t.elapsed());
    let count = counter.acked.load(Ordering::Relaxed) - acked_at_start;
    let per_s = count as f64 / window.as_secs_f64().max(1e-9);
    println!(
        "records_per_s={per_s:.0} mb_per_s={:.1} errors={}",
        per_s * args.record_bytes as f64 / 1e6,
        counter.failed.load(Ordering::Relaxed)
    );
    producer.flush(Timeout::After(Duration::from_secs(30)))?;
    Ok(())
}
