//! Drives raw appends through a real [`PartitionActor`], bypassing HTTP: the benchmark of the
//! log and its group commit, and the workload of the SIGKILL crash test.
//!
//! ```text
//! rill-append-bench --dir DIR [--appenders 8] [--batch-records 100] [--record-bytes 100]
//!                   [--seconds 5 | --batches N] [--flush always|os] [--print-acks]
//!                   [--segment-bytes N]
//! rill-append-bench --ceiling --dir DIR [--batch-records 100] [--record-bytes 100] [--seconds 5]
//! ```
//! With `--print-acks` every acknowledged batch is printed as `ack <base> <last> <tag>` the
//! moment its answer arrives, so a crash test can kill the process at any time and know what
//! was acknowledged. `--ceiling` measures the disk alone: sequential writes of the same batch
//! size, each followed by fdatasync, as one appender without the broker.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rill_actors::compression::Compression;
use rill_actors::log::PartitionLog;
use rill_actors::partition::{self, PartitionActor};
use rill_actors::record_batch::BatchBuilder;
use rill_actors::types::{FlushPolicy, LogConfig, TopicName, Topition};

struct Options {
    dir: PathBuf,
    appenders: usize,
    batch_records: usize,
    record_bytes: usize,
    seconds: f64,
    batches: Option<u64>,
    flush: FlushPolicy,
    segment_bytes: u64,
    print_acks: bool,
    ceiling: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        dir: PathBuf::new(),
        appenders: 1,
        batch_records: 100,
        record_bytes: 100,
        seconds: 5.0,
        batches: None,
        flush: FlushPolicy::Always,
        segment_bytes: LogConfig::default().segment_bytes,
        print_acks: false,
        ceiling: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => o.dir = PathBuf::from(value("--dir")?),
            "--appenders" => o.appenders = number(&value("--appenders")?)?,
            "--batch-records" => o.batch_records = number(&value("--batch-records")?)?,
            "--record-bytes" => o.record_bytes = number(&value("--record-bytes")?)?,
            "--seconds" => o.seconds = number(&value("--seconds")?)?,
            "--batches" => o.batches = Some(number(&value("--batches")?)?),
            "--flush" => {
                o.flush = match value("--flush")?.as_str() {
                    "always" => FlushPolicy::Always,
                    "os" => FlushPolicy::Os,
                    other => return Err(format!("--flush: unknown policy {other}")),
                }
            }
            "--segment-bytes" => o.segment_bytes = number(&value("--segment-bytes")?)?,
            "--print-acks" => o.print_acks = true,
            "--ceiling" => o.ceiling = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(o)
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

/// A batch whose records carry `tag` so a crash test can check every acknowledged value.
fn build_batch(tag: u64, records: usize, record_bytes: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let mut value = format!("{tag}:{i}:").into_bytes();
        value.resize(record_bytes.max(value.len()), b'x');
        builder.push(1_700_000_000_000, Some(b"key"), Some(&value), &[]);
    }
    builder.finish().expect("batch encodes").bytes
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rill-append-bench: {e}");
            std::process::exit(2);
        }
    };
    if options.ceiling {
        return ceiling(&options);
    }
    let system = System::new();
    system.block_on(run(options));
}

async fn run(o: Options) {
    let config = LogConfig {
        flush: o.flush,
        segment_bytes: o.segment_bytes,
        ..LogConfig::default()
    };
    let topition = Topition {
        topic: TopicName::new("bench").expect("valid name"),
        partition: 0,
    };
    let log = PartitionLog::open(&o.dir, config).expect("log opens");
    let arbiter = Arbiter::new();
    let addr = PartitionActor::start_in_arbiter(&arbiter.handle(), move |_| {
        PartitionActor::new(topition, log, Duration::from_secs(3600))
    });
    let records = Arc::new(AtomicU64::new(0));
    let batches_done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for appender in 0..o.appenders {
        let addr = addr.clone();
        let records = Arc::clone(&records);
        let batches_done = Arc::clone(&batches_done);
        let (batch_records, record_bytes, limit, print) =
            (o.batch_records, o.record_bytes, o.batches, o.print_acks);
        tasks.push(actix_rt::spawn(async move {
            // Without --print-acks the same batch is sent again and again, so the figure is
            // the partition actor's, not the cost of encoding batches on this one thread.
            let template = build_batch(0, batch_records, record_bytes);
            let mut seq = 0u64;
            loop {
                if limit.map_or(Instant::now() >= deadline, |n| seq >= n) {
                    break;
                }
                let tag = (appender as u64) << 32 | seq;
                let batch = if print {
                    build_batch(tag, batch_records, record_bytes)
                } else {
                    template.clone()
                };
                match partition::append(&addr, batch, None).await {
                    Ok(ack) => {
                        if print {
                            let mut out = std::io::stdout().lock();
                            let _ =
                                writeln!(out, "ack {} {} {tag}", ack.base_offset, ack.last_offset);
                            let _ = out.flush();
                        }
                        records.fetch_add(batch_records as u64, Ordering::Relaxed);
                        batches_done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("append failed: {e}");
                        break;
                    }
                }
                seq += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = records.load(Ordering::Relaxed) as f64;
    let mb = records * o.record_bytes as f64 / 1e6;
    println!(
        "appenders={} batch_records={} record_bytes={} batches={} records/s={:.0} MB/s={:.1} seconds={:.2}",
        o.appenders,
        o.batch_records,
        o.record_bytes,
        batches_done.load(Ordering::Relaxed),
        records / elapsed,
        mb / elapsed,
        elapsed
    );
    arbiter.stop();
}

/// The disk's own ceiling: one writer appending the same batch bytes and fdatasync-ing after
/// each, the best a durable one-at-a-time appender could do.
fn ceiling(o: &Options) {
    std::fs::create_dir_all(&o.dir).expect("dir");
    let path = o.dir.join("ceiling.bin");
    let file = std::fs::File::create(&path).expect("file");
    let batch = build_batch(0, o.batch_records, o.record_bytes);
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let started = Instant::now();
    let mut position = 0u64;
    let mut writes = 0u64;
    while Instant::now() < deadline {
        file.write_all_at(&batch, position).expect("write");
        file.sync_data().expect("fdatasync");
        position += batch.len() as u64;
        writes += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = (writes * o.batch_records as u64) as f64;
    println!(
        "ceiling batch_records={} record_bytes={} writes={} records/s={:.0} MB/s={:.1} seconds={:.2}",
        o.batch_records,
        o.record_bytes,
        writes,
        records / elapsed,
        records * o.record_bytes as f64 / 1e6 / elapsed,
        elapsed
    );
    let _ = std::fs::remove_file(path);
}
