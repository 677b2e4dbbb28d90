//! Storage faults against the real binary over HTTP: I/O errors injected with libfiu, a full
//! disk (a small tmpfs), and the `min_free_bytes` reserve.
//!
//! libfiu: the broker runs under `fiu-run -x` (POSIX preload) with no fault enabled, so it
//! starts and recovers normally; faults are switched on and off at run time with `fiu-ctrl`
//! (remote control over /tmp/fiu-ctrl-<pid>.*). The preload interposes `pwrite64` (what Rust's
//! `write_all_at` calls; fault point `posix/io/rw/pwrite`, short writes via
//! `posix/io/rw/pwrite/reduce`), `fdatasync`, `fsync`, `ftruncate64` (`set_len`) and `open64`
//! (`File::open`/`create`), which are all the calls the append, roll and flush paths make.
//!
//! Every scenario asserts: no request waits more than 5 s; every answer is 200 or one of the
//! 5xx the fault explains (never a 4xx, never a dropped connection); a partition that answered
//! "fail-stopped" refuses every later write until restart while its reads are still served;
//! a partition that was not fail-stopped takes writes again once the faults stop; after a
//! stop and a restart without faults every 200-acknowledged record is at its offset with its
//! bytes, unacknowledged batches are whole or absent; the broker never panicked.
//!
//! Needs root (tmpfs mounts) and fiu-utils; `scripts/test` checks both.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{
    check_log, prepare_dir, send_sync, start_logged, Broker, Outcome, Request, Rng, Sent,
    StderrLog, Unacked,
};

const TOPIC: &str = "f";
const PARTITIONS: u32 = 3;

/// Tiny segments, so appends roll (open + create) often under the faults too.
const CONFIG: &str = "[storage]\nsegment_bytes = 16384\nindex_interval_bytes = 512\n\
                      [[topics]]\nname = \"f\"\npartitions = 3\n";

/// The one hang bound of the suite: every request is answered within this.
const HANG_BOUND: Duration = Duration::from_secs(5);

/// `ci` normally, `long` with `RILL_SOAK=1`.
fn count(ci: usize, long: usize) -> usize {
    if std::env::var("RILL_SOAK").is_ok_and(|v| v == "1") {
        long
    } else {
        ci
    }
}

fn fiu_ctrl(pid: u32, command: &str) {
    let status = Command::new("fiu-ctrl")
        .args(["-c", command, &pid.to_string()])
        .status()
        .expect("fiu-ctrl runs (scripts/test installs fiu-utils)");
    assert!(status.success(), "fiu-ctrl -c '{command}' {pid}");
}

fn assert_no_panic(log: &StderrLog, context: &str) {
    let panics = log.lines_with("panicked");
    assert!(
        panics.is_empty(),
        "{context}: broker panicked:\n{}",
        log.tail(30)
    );
}

fn is_fail_stop(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Refused(503, _, message) if message.contains("fail-stopped"))
}

/// One fault scenario: which fault points (with probability and errno), and which error
/// statuses they may legitimately cause.
struct Scenario {
    name: String,
    /// `(fault point, probability, errno)`.
    faults: Vec<(&'static str, f64, i32)>,
    allowed: &'static [u16],
    /// Requests per partition (two producers per partition, each sequential).
    per_partition: usize,
}

/// Figures of one scenario, for the summary line.
#[derive(Default, Debug)]
struct Figures {
    requests: usize,
    acked: usize,
    refused: BTreeMap<u16, usize>,
    fail_stopped: usize,
    slowest: Duration,
    acked_records_checked: usize,
}

fn run_scenario(scenario: &Scenario, seed: u64) -> Figures {
    let context = format!("{} (seed {seed})", scenario.name);
    let (dir, config, data) = prepare_dir(CONFIG);
    let (mut broker, log) = start_logged(&["fiu-run", "-x"], &config, &data);
    broker.keep_dir(dir);
    let pid = broker.pid();
    for (point, probability, errno) in &scenario.faults {
        fiu_ctrl(
            pid,
            &format!("enable_random name={point},probability={probability},failinfo={errno}"),
        );
    }

    let sent = Mutex::new(Vec::<Sent>::new());
    let mut rng = Rng::new(seed);
    std::thread::scope(|scope| {
        for partition in 0..PARTITIONS {
            for producer in 0..2 {
                let mut rng = Rng::new(rng.next_u64());
                let (url, sent, context) = (&broker.url, &sent, &context);
                scope.spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    for q in 0..scenario.per_partition / 2 {
                        let id = format!("p{partition}w{producer}q{q}");
                        let request =
                            Request::random(&mut rng, id, 100, 1000).for_partition(partition);
                        let s = send_sync(&client, url, TOPIC, request);
                        assert!(
                            s.took < HANG_BOUND,
                            "{context}: {} took {:?}",
                            s.request.id,
                            s.took
                        );
                        match &s.outcome {
                            Outcome::Acked(_) => {}
                            Outcome::Refused(status, code, message) => assert!(
                                scenario.allowed.contains(status),
                                "{context}: {} answered {status} {code}: {message}",
                                s.request.id
                            ),
                            Outcome::NoAnswer(why) => {
                                panic!("{context}: {} got no answer: {why}", s.request.id)
                            }
                        }
                        sent.lock().unwrap().push(s);
                    }
                });
            }
        }
    });
    let mut sent = sent.into_inner().unwrap();
    for (point, ..) in &scenario.faults {
        fiu_ctrl(pid, &format!("disable name={point}"));
    }
    assert!(
        broker.is_running(),
        "{context}: the broker died\n{}",
        log.tail(30)
    );

    let mut figures = Figures::default();
    // Fail-stop is for good: once a partition answered "fail-stopped", every write sent to it
    // afterwards was refused the same way.
    let mut stopped = vec![false; PARTITIONS as usize];
    for partition in 0..PARTITIONS {
        let mine: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.request.partition == Some(partition))
            .collect();
        let first_stop = mine
            .iter()
            .filter(|s| is_fail_stop(&s.outcome))
            .map(|s| s.at + s.took)
            .min();
        if let Some(first_stop) = first_stop {
            stopped[partition as usize] = true;
            for s in mine.iter().filter(|s| s.at > first_stop) {
                assert!(
                    is_fail_stop(&s.outcome),
                    "{context}: partition {partition} was fail-stopped, then {} got {:?}",
                    s.request.id,
                    s.outcome
                );
            }
        }
    }
    figures.fail_stopped = stopped.iter().filter(|s| **s).count();

    // With the faults off: reads are served everywhere and hold every acknowledged record; a
    // fail-stopped partition still refuses writes, every other one takes them again.
    check_log(
        &broker,
        TOPIC,
        PARTITIONS,
        &sent,
        Unacked::AllOrNothing,
        &format!("{context}, faults off, before restart"),
    );
    let client = reqwest::blocking::Client::new();
    for partition in 0..PARTITIONS {
        for attempt in 0..2 {
            let id = format!("probe{partition}a{attempt}");
            let request = Request::random(&mut rng, id, 5, 1000).for_partition(partition);
            let s = send_sync(&client, &broker.url, TOPIC, request);
            if stopped[partition as usize] {
                assert!(
                    is_fail_stop(&s.outcome),
                    "{context}: fail-stopped partition {partition} took a write once faults stopped: {:?}",
                    s.outcome
                );
            } else {
                assert!(
                    matches!(s.outcome, Outcome::Acked(_)),
                    "{context}: partition {partition} does not take writes once faults stopped: {:?}\n{}",
                    s.outcome,
                    log.tail(10)
                );
            }
            sent.push(s);
        }
    }

    // Stop, restart without faults: everything acknowledged is there, and every partition
    // (fail-stopped ones too) takes writes again.
    let status = broker.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "{context}: exit after SIGTERM: {status}\n{}",
        log.tail(20)
    );
    assert_no_panic(&log, &context);
    let (broker, restarted_log) = broker.restart_logged(&[]);
    let checked = check_log(
        &broker,
        TOPIC,
        PARTITIONS,
        &sent,
        Unacked::AllOrNothing,
        &format!(
            "{context}, restarted without faults\n{}",
            restarted_log.tail(10)
        ),
    );
    for partition in 0..PARTITIONS {
        let request = Request::random(&mut rng, format!("after{partition}"), 5, 1000)
            .for_partition(partition);
        let s = send_sync(&client, &broker.url, TOPIC, request);
        assert!(
            matches!(s.outcome, Outcome::Acked(_)),
            "{context}: partition {partition} after restart: {:?}",
            s.outcome
        );
    }
    assert_no_panic(&restarted_log, &context);

    figures.requests = sent.len();
    for s in &sent {
        figures.slowest = figures.slowest.max(s.took);
        match &s.outcome {
            Outcome::Acked(_) => figures.acked += 1,
            Outcome::Refused(status, ..) => *figures.refused.entry(*status).or_default() += 1,
            Outcome::NoAnswer(_) => {}
        }
    }
    figures.acked_records_checked = checked.acked_records;
    println!(
        "faults {}: requests {}, 200 {}, refused {:?}, fail-stopped partitions {}/{PARTITIONS}, \
         slowest answer {} ms, acknowledged records checked after restart {}, 0 lost, 0 panics",
        scenario.name,
        figures.requests,
        figures.acked,
        figures.refused,
        figures.fail_stopped,
        figures.slowest.as_millis(),
        figures.acked_records_checked
    );
    figures
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

fn scenarios(
    point: &'static str,
    probabilities: &[f64],
    errno: i32,
    allowed: &'static [u16],
) -> Vec<Scenario> {
    probabilities
        .iter()
        .map(|p| Scenario {
            name: format!("{point} errno {errno} p={p}"),
            faults: vec![(point, *p, errno)],
            allowed,
            per_partition: count(40, 400),
        })
        .collect()
}

#[test]
fn failed_segment_writes_answer_5xx_and_the_partition_takes_writes_again() {
    let seed = Rng::seed_from_env();
    eprintln!("seed {seed}");
    let mut refused = 0;
    for scenario in scenarios("posix/io/rw/pwrite", &[0.02, 0.2, 0.6], EIO, &[503])
        .into_iter()
        .chain(scenarios("posix/io/rw/pwrite", &[0.2], ENOSPC, &[507]))
    {
        let figures = run_scenario(&scenario, seed);
        assert_eq!(
            figures.fail_stopped, 0,
            "a failed write alone never fail-stops"
        );
        refused += figures.refused.values().sum::<usize>();
    }
    assert!(refused > 0, "seed {seed}: the faults never fired");
}

#[test]
fn short_writes_are_completed_and_every_request_succeeds() {
    let seed = Rng::seed_from_env();
    eprintln!("seed {seed}");
    let scenario = Scenario {
        name: "posix/io/rw/pwrite/reduce p=0.5 (short writes)".into(),
        faults: vec![("posix/io/rw/pwrite/reduce", 0.5, 0)],
        allowed: &[],
        per_partition: count(40, 400),
    };
    let figures = run_scenario(&scenario, seed);
    assert_eq!(figures.acked, figures.requests);
}

#[test]
fn failed_fdatasync_fail_stops_the_partition_until_restart_and_reads_are_served() {
    let seed = Rng::seed_from_env();
    eprintln!("seed {seed}");
    let mut stopped = 0;
    for scenario in scenarios("posix/io/sync/fdatasync", &[0.02, 0.1, 0.5], EIO, &[503])
        .into_iter()
        .chain(scenarios(
            "posix/io/sync/fdatasync",
            &[0.1],
            ENOSPC,
            &[503, 507],
        ))
    {
        stopped += run_scenario(&scenario, seed).fail_stopped;
    }
    assert!(stopped > 0, "seed {seed}: no flush ever failed");
}

#[test]
fn failed_directory_fsync_after_a_roll_fail_stops_the_partition() {
    // Rolls create files, so the flush after a roll also fsyncs the partition directory
    // (std's `sync_all`, i.e. fsync(2)), as does a partition's first flush (its log's first
    // segment was created at start). At p = 0.3 some of these succeed and some fail; there
    // are only a few per partition in this load, so in about one run in a hundred none fails.
    // At p = 1 every partition's first flush fails, so the path is always exercised.
    let seed = Rng::seed_from_env();
    eprintln!("seed {seed}");
    let mut stopped = 0;
    for scenario in scenarios("posix/io/sync/fsync", &[0.3, 1.0], EIO, &[503]) {
        stopped += run_scenario(&scenario, seed).fail_stopped;
    }
    assert!(stopped > 0, "seed {seed}: no directory fsync ever failed");
}

#[test]
fn failed_cut_after_a_failed_write_fail_stops_the_partition() {
    // A failed write is cut off again with ftruncate; if that fails too the file may hold a
    // partial batch, so the partition must stop taking writes.
    let seed = Rng::seed_from_env();
    eprintln!("seed {seed}");
    let scenario = Scenario {
        name: "posix/io/rw/pwrite p=0.1 + posix/io/rw/ftruncate p=1 (EIO)".into(),
        faults: vec![
            ("posix/io/rw/pwrite", 0.1, EIO),
            ("posix/io/rw/ftruncate", 1.0, EIO),
        ],
        allowed: &[503],
        per_partition: count(40, 400),
    };
    let figures = run_scenario(&scenario, seed);
    assert!(figures.fail_stopped > 0, "seed {seed}: no cut ever failed");
}

#[test]
fn failed_opens_at_segment_roll_answer_5xx_and_writes_resume() {
    let seed = Rng::seed_from_env();
    eprintln!("seed {seed}");
    let mut refused = 0;
    for scenario in scenarios("posix/io/oc/open", &[0.05, 0.3], EIO, &[503])
        .into_iter()
        .chain(scenarios("posix/io/oc/open", &[0.3], ENOSPC, &[503, 507]))
    {
        refused += run_scenario(&scenario, seed)
            .refused
            .values()
            .sum::<usize>();
    }
    assert!(refused > 0, "seed {seed}: no open ever failed");
}

// --- Disk full -------------------------------------------------------------------------------

/// A tmpfs of `size` mounted on a fresh temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes for an unprivileged writer (statvfs f_bavail × f_frsize), via `df`.
    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }

    /// Writes a filler file so that about `leave` bytes stay free.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let filler = self
            .path()
            .join(format!("filler-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let size = self.free_bytes().saturating_sub(leave);
        std::fs::write(&filler, vec![0u8; size as usize]).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Producers (multi-partition requests) until each has been answered 507 `fulls` times;
/// every 507 must come within 1 s and nothing but 200 and 507 is allowed.
fn produce_until_full(
    broker: &Broker,
    rng: &mut Rng,
    round: usize,
    fulls: usize,
    context: &str,
) -> Vec<Sent> {
    let sent = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for producer in 0..3 {
            let mut rng = Rng::new(rng.next_u64());
            let sent = &sent;
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut seen = 0;
                for q in 0..100_000 {
                    let request =
                        Request::random(&mut rng, format!("d{round}p{producer}q{q}"), 300, 1000);
                    let s = send_sync(&client, &broker.url, TOPIC, request);
                    match &s.outcome {
                        Outcome::Acked(_) => {}
                        Outcome::Refused(507, code, _) => {
                            assert_eq!(code, "insufficient_storage", "{context}");
                            assert!(
                                s.took < Duration::from_secs(1),
                                "{context}: 507 after {:?}",
                                s.took
                            );
                            seen += 1;
                        }
                        other => panic!("{context}: {} answered {other:?}", s.request.id),
                    }
                    sent.lock().unwrap().push(s);
                    if seen >= fulls {
                        break;
                    }
                }
                assert!(seen >= fulls, "{context}: the disk never filled");
            });
        }
    });
    sent.into_inner().unwrap()
}

#[test]
fn full_disk_answers_507_within_a_second_and_writes_resume_once_space_is_freed() {
    let seed = Rng::seed_from_env();
    let mut rng = Rng::new(seed);
    let rounds = count(3, 20);
    // Each round keeps about 1 MiB of records: room for all of them plus 1 MiB to fill.
    let size_mib = 4 + 2 * rounds;
    let tmpfs = Tmpfs::mount(&format!("{size_mib}m"));
    let config = tmpfs.path().join("broker.toml");
    let data = tmpfs.path().join("data");
    std::fs::write(
        &config,
        common::config_text(
            &data,
            "[storage]\nsegment_bytes = 262144\n[[topics]]\nname = \"f\"\npartitions = 3\n",
        ),
    )
    .unwrap();
    let (mut broker, log) = start_logged(&[], &config, &data);
    let mut sent = Vec::new();
    let mut fulls = 0;
    for round in 0..rounds {
        let context = format!("seed {seed}, disk-full round {round}");
        assert!(
            tmpfs.free_bytes() > 2 << 20,
            "{context}: the tmpfs has no room left for a round"
        );
        let filler = tmpfs.fill_leaving(1 << 20);
        let round_sent = produce_until_full(&broker, &mut rng, round, 3, &context);
        fulls += round_sent
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Refused(507, ..)))
            .count();
        sent.extend(round_sent);
        assert!(
            broker.is_running(),
            "{context}: broker died (SIGBUS?)\n{}",
            log.tail(20)
        );
        // Reads are served on a full disk, and hold everything acknowledged.
        check_log(
            &broker,
            TOPIC,
            PARTITIONS,
            &sent,
            Unacked::AllOrNothing,
            &context,
        );
        std::fs::remove_file(&filler).unwrap();
        // Writes resume at once, without a restart.
        let client = reqwest::blocking::Client::new();
        for partition in 0..PARTITIONS {
            let request = Request::random(&mut rng, format!("free{round}p{partition}"), 300, 1000)
                .for_partition(partition);
            let s = send_sync(&client, &broker.url, TOPIC, request);
            assert!(
                matches!(s.outcome, Outcome::Acked(_)),
                "{context}: partition {partition} after freeing space: {:?}",
                s.outcome
            );
            sent.push(s);
        }
    }
    assert_no_panic(&log, "disk full");
    broker.kill();
    let (broker, log) = broker.restart_logged(&[]);
    let checked = check_log(
        &broker,
        TOPIC,
        PARTITIONS,
        &sent,
        Unacked::AllOrNothing,
        "disk full, restarted",
    );
    assert_no_panic(&log, "disk full, restarted");
    let slowest_507 = sent
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Refused(507, ..)))
        .map(|s| s.took)
        .max()
        .unwrap_or_default();
    println!(
        "faults disk full (tmpfs {size_mib} MiB): seed {seed}, {rounds} fill/free rounds, requests {}, \
         507 {fulls}, slowest 507 {} ms, writes resumed without restart {rounds}/{rounds}, \
         acknowledged records checked after SIGKILL+restart {}, broker alive throughout \
         (0 SIGBUS), 0 panics",
        sent.len(),
        slowest_507.as_millis(),
        checked.acked_records
    );
}

#[test]
fn min_free_bytes_reserve_answers_507_before_the_disk_fills() {
    let seed = Rng::seed_from_env();
    let mut rng = Rng::new(seed);
    let tmpfs = Tmpfs::mount("24m");
    let config = tmpfs.path().join("broker.toml");
    let data = tmpfs.path().join("data");
    let reserve: u64 = 8 << 20;
    std::fs::write(
        &config,
        common::config_text(
            &data,
            &format!(
                "[storage]\nsegment_bytes = 262144\nmin_free_bytes = {reserve}\n\
                 [[topics]]\nname = \"f\"\npartitions = 3\n"
            ),
        ),
    )
    .unwrap();
    let (broker, log) = start_logged(&[], &config, &data);
    let context = format!("seed {seed}, min_free_bytes");
    let filler = tmpfs.fill_leaving(reserve + (2 << 20));
    let mut sent = produce_until_full(&broker, &mut rng, 0, 3, &context);
    // The reserve held: refused before the disk itself filled (a batch is at most ~50 KB; page
    // rounding and index files are the slack).
    let free = tmpfs.free_bytes();
    assert!(
        free + (256 << 10) >= reserve,
        "{context}: only {free} bytes free with a {reserve}-byte reserve"
    );
    std::fs::remove_file(&filler).unwrap();
    let client = reqwest::blocking::Client::new();
    for partition in 0..PARTITIONS {
        let request = Request::random(&mut rng, format!("free{partition}"), 300, 1000)
            .for_partition(partition);
        let s = send_sync(&client, &broker.url, TOPIC, request);
        assert!(
            matches!(s.outcome, Outcome::Acked(_)),
            "{context}: partition {partition} after freeing space: {:?}",
            s.outcome
        );
        sent.push(s);
    }
    let checked = check_log(
        &broker,
        TOPIC,
        PARTITIONS,
        &sent,
        Unacked::AllOrNothing,
        &context,
    );
    assert_no_panic(&log, &context);
    println!(
        "faults min_free_bytes = {reserve}: seed {seed}, requests {}, 507 {}, free at refusal {free} \
         bytes (reserve kept), writes resumed without restart, acknowledged records checked {}",
        sent.len(),
        sent.iter()
            .filter(|s| matches!(s.outcome, Outcome::Refused(507, ..)))
            .count(),
        checked.acked_records
    );
}
