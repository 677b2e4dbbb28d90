//! Crash harness: the real binary under concurrent producers over HTTP, killed or stopped at a
//! random moment, restarted, and checked against an oracle of what it acknowledged.
//!
//! The oracle (`common::check_log`) is the log of every acknowledgement — (partition, offset,
//! record hash) per record — plus every request sent; each record's value names its request
//! and position. After every restart: 0 acknowledged records lost or changed, 0 duplicate
//! offsets, 0 gaps, 0 duplicated or invented records, and every unacknowledged request's
//! share of each partition entirely present (one whole batch) or entirely absent.
//!
//! Counts are small by default (CI); `RILL_SOAK=1` runs the long mode. `RILL_SEED=<n>` replays
//! a run: every test prints its seed, and every failure message carries it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    acks_of, check_log, prepare_dir, send_sync, start_logged, Broker, Outcome, Request, Rng, Sent,
    StderrLog, Unacked,
};
use serde_json::Value;

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;

/// Small segments and a dense index so kills land around rolls and index writes too.
const CONFIG: &str = "[storage]\nsegment_bytes = 262144\nindex_interval_bytes = 1024\n\
                      [[topics]]\nname = \"crash\"\npartitions = 4\n";

fn soak() -> bool {
    std::env::var("RILL_SOAK").is_ok_and(|v| v == "1")
}

/// `ci` rounds normally, `long` with `RILL_SOAK=1`.
fn rounds(ci: u32, long: u32) -> u32 {
    if soak() {
        long
    } else {
        ci
    }
}

/// Panics if the broker's log shows a panic.
fn assert_no_panic(log: &StderrLog, context: &str) {
    let panics = log.lines_with("panicked");
    assert!(
        panics.is_empty(),
        "{context}: broker panicked:\n{}",
        log.tail(30)
    );
}

/// Sync producers against `url` until `stop` is set or the broker stops answering; every
/// request and its outcome lands in `sent`.
fn run_sync_producers(
    url: &str,
    producers: u32,
    rng: &mut Rng,
    prefix: &str,
    stop: &AtomicBool,
    keep_going_after_refusal: bool,
) -> Vec<Sent> {
    let sent = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for p in 0..producers {
            let mut rng = Rng::new(rng.next_u64());
            let sent = &sent;
            scope.spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                for q in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let request = Request::random(&mut rng, format!("{prefix}p{p}q{q}"), 500, 1000);
                    let result = send_sync(&client, url, TOPIC, request);
                    let outcome = result.outcome.clone();
                    sent.lock().unwrap().push(result);
                    match outcome {
                        Outcome::Acked(_) => {}
                        Outcome::Refused(..) if keep_going_after_refusal => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        // The broker is gone (or going): stop once it no longer answers.
                        Outcome::NoAnswer(_) if keep_going_after_refusal => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        _ => break,
                    }
                }
            });
        }
    });
    sent.into_inner().unwrap()
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    let seed = Rng::seed_from_env();
    let mut rng = Rng::new(seed);
    let total_rounds = rounds(20, 200);
    // A fresh data dir every `per_dir` rounds keeps the read-back check linear; within a dir,
    // each round recovers what every earlier kill left.
    let per_dir = 5;
    eprintln!("crash_harness sigkill: seed {seed}, {total_rounds} rounds");

    let mut totals = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut torn_tails_cut = 0usize;
    let mut broker: Option<(Broker, StderrLog)> = None;
    let mut sent: Vec<Sent> = Vec::new();
    for round in 0..total_rounds {
        let context = format!("seed {seed}, round {round}");
        if round % per_dir == 0 {
            drop(broker.take());
            sent.clear();
            let (dir, config, data) = prepare_dir(CONFIG);
            let (mut b, log) = start_logged(&[], &config, &data);
            b.keep_dir(dir);
            broker = Some((b, log));
        }
        let (mut b, log) = broker.take().unwrap();
        let kill_after = Duration::from_millis(rng.range(0, 1200));
        let stop = AtomicBool::new(false);
        let url = b.url.clone();
        let mut producer_rng = Rng::new(rng.next_u64());
        let round_sent = std::thread::scope(|scope| {
            let producers = scope.spawn(|| {
                run_sync_producers(
                    &url,
                    4,
                    &mut producer_rng,
                    &format!("r{round}"),
                    &stop,
                    false,
                )
            });
            std::thread::sleep(kill_after);
            b.kill();
            stop.store(true, Ordering::Relaxed);
            producers.join().unwrap()
        });
        assert_no_panic(&log, &context);
        for s in &round_sent {
            if let Outcome::Refused(status, code, _) = &s.outcome {
                panic!(
                    "{context}: {} refused before the kill: {status} {code}",
                    s.request.id
                );
            }
        }
        sent.extend(round_sent);

        let (b, log) = b.restart_logged(&[]);
        torn_tails_cut += log.lines_with("cut ").len();
        let checked = check_log(
            &b,
            TOPIC,
            PARTITIONS,
            &sent,
            Unacked::AllOrNothing,
            &context,
        );
        let acked_now = sent
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Acked(_)))
            .count();
        if round % per_dir == per_dir - 1 || round == total_rounds - 1 {
            // Figures once per data dir, over everything it holds.
            totals.0 += sent.len();
            totals.1 += acked_now;
            totals.2 += checked.acked_records;
            totals.3 += checked.stored;
            totals.4 += checked.unacked_present;
            totals.5 += checked.unacked_absent;
        }
        broker = Some((b, log));
    }
    // The last recovered broker takes writes at the right offsets.
    let (b, log) = broker.take().unwrap();
    let client = reqwest::blocking::Client::new();
    let last = send_sync(
        &client,
        &b.url,
        TOPIC,
        Request::random(&mut rng, "after".into(), 50, 1000),
    );
    assert!(
        matches!(last.outcome, Outcome::Acked(_)),
        "seed {seed}: produce after the last recovery: {:?}",
        last.outcome
    );
    assert_no_panic(&log, &format!("seed {seed}, final"));
    println!(
        "crash_harness sigkill summary: seed {seed}, rounds {total_rounds}, requests {}, \
         acknowledged requests {}, acknowledged records checked {}, stored records checked {}, \
         unacknowledged partition batches whole {} / absent {}, torn tails cut {torn_tails_cut}, \
         0 lost, 0 changed, 0 duplicates, 0 gaps",
        totals.0, totals.1, totals.2, totals.3, totals.4, totals.5
    );
    assert!(totals.2 > 0, "seed {seed}: nothing was ever acknowledged");
}

/// Polls an async request's status once: `Some(outcome)` once it finished.
fn poll_status(
    client: &reqwest::blocking::Client,
    status_url: &str,
    request: &Request,
) -> Option<Outcome> {
    let res = client.get(status_url).send().ok()?;
    let status = res.status().as_u16();
    let body: Value = res.json().ok()?;
    assert_eq!(status, 200, "{status_url}: {body}");
    match body["status"].as_str() {
        Some("pending") | Some("processing") => None,
        Some("completed") => Some(Outcome::Acked(acks_of(request, &body["offsets"]))),
        Some(other) => Some(Outcome::Refused(
            200,
            other.to_string(),
            body["error"].to_string(),
        )),
        None => panic!("{status_url}: no status in {body}"),
    }
}

/// One async request: what was sent, where its status is, and what the status said last.
struct AsyncRequest {
    request: Request,
    status_url: Option<String>,
    outcome: Option<Outcome>,
}

/// Async producers: send `?async=true` requests and poll the unfinished ones, until `stop`
/// or the broker stops answering. A `completed` status seen becomes an acknowledgement.
fn run_async_producer(
    url: &str,
    rng: &mut Rng,
    prefix: &str,
    stop: &AtomicBool,
) -> Vec<AsyncRequest> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut mine: Vec<AsyncRequest> = Vec::new();
    for q in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let request = Request::random(rng, format!("{prefix}q{q}"), 200, 1000);
        let res = client
            .post(format!(
                "{url}/api/topics/{TOPIC}/produce?async=true&compression={}",
                request.compression
            ))
            .json(&request.body())
            .send();
        let accepted: Option<Value> = match res {
            Ok(res) if res.status().as_u16() == 202 => res.json().ok(),
            Ok(res) => panic!("async produce answered {}", res.status()),
            Err(_) => None,
        };
        let Some(accepted) = accepted else {
            mine.push(AsyncRequest {
                request,
                status_url: None,
                outcome: Some(Outcome::NoAnswer("broker gone".into())),
            });
            break;
        };
        mine.push(AsyncRequest {
            request,
            status_url: Some(format!("{url}{}", accepted["status_url"].as_str().unwrap())),
            outcome: None,
        });
        if q % 4 == 3 {
            for r in mine.iter_mut().filter(|r| r.outcome.is_none()) {
                if stop.load(Ordering::Relaxed) {
                    return mine;
                }
                r.outcome = poll_status(&client, r.status_url.as_ref().unwrap(), &r.request);
            }
        }
    }
    mine
}

#[test]
fn sigkill_with_async_requests_in_flight_never_loses_a_completed_one() {
    let seed = Rng::seed_from_env();
    let mut rng = Rng::new(seed);
    let total_rounds = rounds(5, 50);
    eprintln!("crash_harness async: seed {seed}, {total_rounds} rounds");
    let (dir, config, data) = prepare_dir(CONFIG);
    let (mut broker, mut log) = start_logged(&[], &config, &data);
    broker.keep_dir(dir);
    let mut sent: Vec<Sent> = Vec::new();
    let (mut completed, mut in_flight_at_kill, mut checked_records) = (0usize, 0usize, 0usize);
    for round in 0..total_rounds {
        let context = format!("seed {seed}, async round {round}");
        let kill_after = Duration::from_millis(rng.range(100, 1500));
        let stop = AtomicBool::new(false);
        let url = broker.url.clone();
        let mut round_rng = Rng::new(rng.next_u64());
        let round_requests: Vec<AsyncRequest> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|p| {
                    let mut rng = Rng::new(round_rng.next_u64());
                    let (url, stop) = (&url, &stop);
                    scope.spawn(move || {
                        run_async_producer(url, &mut rng, &format!("a{round}p{p}"), stop)
                    })
                })
                .collect();
            std::thread::sleep(kill_after);
            broker.kill();
            stop.store(true, Ordering::Relaxed);
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_no_panic(&log, &context);
        let mut old_status_url = None;
        for r in round_requests {
            let outcome = match r.outcome {
                Some(outcome) => outcome,
                None => {
                    in_flight_at_kill += 1;
                    Outcome::NoAnswer("unfinished at the kill".into())
                }
            };
            if matches!(outcome, Outcome::Acked(_)) {
                completed += 1;
            }
            old_status_url = r.status_url.or(old_status_url);
            sent.push(Sent {
                request: r.request,
                outcome,
                at: Instant::now(),
                took: Duration::ZERO,
            });
        }
        (broker, log) = broker.restart_logged(&[]);
        let checked = check_log(
            &broker,
            TOPIC,
            PARTITIONS,
            &sent,
            Unacked::AllOrNothing,
            &context,
        );
        checked_records = checked.acked_records;
        // Statuses live in memory: after the restart an old id is unknown (404), never
        // answered with a made-up state.
        if let Some(old) = old_status_url {
            let path = &old[old.find("/api/").expect("status path")..];
            let (s, b) = common::status_json(broker.get(path).send().unwrap());
            assert_eq!(s, 404, "{context}: {path} after restart: {b}");
        }
    }
    assert_no_panic(&log, &format!("seed {seed}, final"));
    println!(
        "crash_harness async summary: seed {seed}, rounds {total_rounds}, async requests {}, \
         completed before the kill {completed} (acknowledged records checked {checked_records}), \
         unfinished at the kill {in_flight_at_kill}, 0 completed statuses naming missing data",
        sent.len()
    );
    assert!(
        completed > 0,
        "seed {seed}: no async request ever completed"
    );
    assert!(
        in_flight_at_kill > 0,
        "seed {seed}: no async request was in flight at a kill"
    );
}

#[test]
fn sigterm_under_load_answers_every_request_keeps_acked_data_and_restarts_clean() {
    let seed = Rng::seed_from_env();
    let mut rng = Rng::new(seed);
    let total_rounds = rounds(3, 30);
    eprintln!("crash_harness sigterm: seed {seed}, {total_rounds} rounds");
    // Default [server] settings: shutdown_timeout_secs = 10, keep-alive on.
    let (dir, config, data) = prepare_dir(CONFIG);
    let (mut broker, mut log) = start_logged(&[], &config, &data);
    broker.keep_dir(dir);
    let mut sent: Vec<Sent> = Vec::new();
    let mut longest = Duration::ZERO;
    let mut answered_503 = 0usize;
    let mut no_answer = 0usize;
    let mut refused = 0usize;
    for round in 0..total_rounds {
        let context = format!("seed {seed}, sigterm round {round}");
        let term_after = Duration::from_millis(rng.range(200, 1500));
        let stop = AtomicBool::new(false);
        let url = broker.url.clone();
        let mut producer_rng = Rng::new(rng.next_u64());
        let (round_sent, took) = std::thread::scope(|scope| {
            let producers = scope.spawn(|| {
                run_sync_producers(
                    &url,
                    4,
                    &mut producer_rng,
                    &format!("t{round}"),
                    &stop,
                    true,
                )
            });
            // Plus a client that keeps an idle keep-alive connection open: it must not hold
            // the shutdown up.
            let mut idle = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
            idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            let n = idle.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{context}: healthz");
            std::thread::sleep(term_after);
            let signalled = Instant::now();
            broker.send_sigterm();
            let status = loop {
                if let Some(status) = broker.child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    signalled.elapsed() < Duration::from_secs(30),
                    "{context}: still running 30 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            let took = signalled.elapsed();
            stop.store(true, Ordering::Relaxed);
            assert!(status.success(), "{context}: exit status {status}");
            (producers.join().unwrap(), took)
        });
        longest = longest.max(took);
        assert!(
            took <= Duration::from_secs(10),
            "{context}: shutdown took {took:?} (> 10 s)\n{}",
            log.tail(20)
        );
        assert_no_panic(&log, &context);
        for s in &round_sent {
            match &s.outcome {
                Outcome::Refused(503, ..) => answered_503 += 1,
                Outcome::Refused(status, code, _) => {
                    panic!("{context}: {} answered {status} {code}", s.request.id)
                }
                Outcome::NoAnswer(why) if why.starts_with("connect") => refused += 1,
                Outcome::NoAnswer(why) => {
                    no_answer += 1;
                    eprintln!("{context}: {} no answer: {why}", s.request.id);
                }
                Outcome::Acked(_) => {}
            }
        }
        sent.extend(round_sent);

        let (b, l) = broker.restart_logged(&[]);
        (broker, log) = (b, l);
        // Give the log thread a moment: recovery warnings are written before "listening".
        std::thread::sleep(Duration::from_millis(50));
        let recovery: Vec<String> = ["cut ", "rebuilding", "does not continue", "dropped"]
            .iter()
            .flat_map(|w| log.lines_with(w))
            .collect();
        assert!(
            recovery.is_empty(),
            "{context}: restart after SIGTERM needed recovery:\n{}",
            recovery.join("\n")
        );
        // Refused (503 while shutting down) and unanswered requests were never taken in.
        check_log(&broker, TOPIC, PARTITIONS, &sent, Unacked::Absent, &context);
    }
    let acked: usize = sent
        .iter()
        .map(|s| match &s.outcome {
            Outcome::Acked(a) => a.len(),
            _ => 0,
        })
        .sum();
    println!(
        "crash_harness sigterm summary: seed {seed}, rounds {total_rounds}, requests {}, \
         acknowledged records {acked} all present, answered 503 while stopping {answered_503}, \
         connection refused {refused}, closed unanswered (and absent) {no_answer}, longest shutdown {} ms, \
         0 recoveries on restart",
        sent.len(),
        longest.as_millis()
    );
    assert!(acked > 0, "seed {seed}: nothing was acknowledged");
}
