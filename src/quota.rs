//! Per-API-key metering: what each key sends (its metrics) and its quota, shared by every HTTP
//! worker.
//!
//! A key's quota is up to three limits from `[[auth.api_keys]] quota = { .. }`:
//!
//! - `records_per_sec` and `bytes_per_sec`: token buckets refilled at that rate and holding at
//!   most one second's worth (the burst);
//! - `max_inflight`: produce requests of the key being processed at once (sync ones until
//!   answered, async ones until appended).
//!
//! The rule is *check before the body is parsed, charge after*. A request is admitted
//! ([`KeyMeter::admit`]) before its body is read: it takes an in-flight slot and is refused
//! while a bucket holds less than one whole token. Then its bytes are charged (the declared
//! `Content-Length` before reading, else the bytes read) and, once parsed, its records. Charging
//! never refuses and may take a bucket into debt: a request larger than what is left is let
//! through whole, and the requests after it are refused until the rate has paid the debt back.
//! So a client over its rate gets 429s, each with the `Retry-After` that makes the next one
//! pass, and over any long window its throughput converges to the rate.
//!
//! Each bucket is one small mutex held for a few arithmetic operations; the in-flight count is
//! an atomic. Time is passed in (`*_at(now)`) so the arithmetic is tested exactly, without
//! sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::HttpResponseBuilder;
use prometheus::IntCounter;

use crate::config::QuotaConfig;
use crate::http::error::ApiError;
use crate::metrics::Metrics;

/// Bucket balances count billionths of a token, so that `rate` tokens per second over `n`
/// nanoseconds refill exactly `rate * n` units: no rounding drift however often it is read.
const UNITS_PER_TOKEN: i128 = 1_000_000_000;
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Which limit of a quota refused a request; its `as_str` is the config key and metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaKind {
    RecordsPerSec,
    BytesPerSec,
    MaxInflight,
}

impl QuotaKind {
    const ALL: [QuotaKind; 3] = [
        QuotaKind::RecordsPerSec,
        QuotaKind::BytesPerSec,
        QuotaKind::MaxInflight,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::RecordsPerSec => "records_per_sec",
            QuotaKind::BytesPerSec => "bytes_per_sec",
            QuotaKind::MaxInflight => "max_inflight",
        }
    }
}

/// The state of one rate limit as the `RateLimit-*` response headers
/// (draft-ietf-httpapi-ratelimit-headers) describe it, for a one-second window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Units (records or bytes) per second.
    pub limit: u64,
    /// Whole units that may be sent now.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl RateLimit {
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.to_string()),
            ("ratelimit-policy", format!("{};w=1", self.limit)),
        ]
    }

    pub fn insert_into(&self, response: &mut HttpResponseBuilder) {
        for header in self.headers() {
            response.insert_header(header);
        }
    }

    /// How close to refusal this is, as a fraction compared without division.
    fn is_tighter_than(&self, other: &RateLimit) -> bool {
        u128::from(self.remaining) * u128::from(other.limit)
            < u128::from(other.remaining) * u128::from(self.limit)
    }
}

/// Why a request was refused, before it is turned into an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: QuotaKind,
    pub limit: u64,
    /// Whole seconds, at least 1, after which the same request would not be refused for the
    /// same reason.
    pub retry_after_secs: u64,
    /// The rate limit to describe in the answer's headers, if the key has one.
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket: `rate` tokens per second, holding at most one second's worth. Invariant:
/// the balance never exceeds the capacity; it goes negative (debt) when a charge exceeds it.
struct TokenBucket {
    rate: u64,
    state: Mutex<BucketState>,
}

struct BucketState {
    /// In [`UNITS_PER_TOKEN`]ths of a token.
    balance: i128,
    refilled_at: Instant,
}

impl TokenBucket {
    fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            state: Mutex::new(BucketState {
                balance: i128::from(rate) * UNITS_PER_TOKEN,
                refilled_at: now,
            }),
        }
    }

    fn capacity(&self) -> i128 {
        i128::from(self.rate) * UNITS_PER_TOKEN
    }

    /// The state, refilled up to `now`. The state is plain numbers, valid after any panic.
    fn refilled(&self, now: Instant) -> std::sync::MutexGuard<'_, BucketState> {
        let mut state = self.lock();
        let elapsed = now.saturating_duration_since(state.refilled_at).as_nanos();
        let refill = i128::try_from(elapsed)
            .unwrap_or(i128::MAX)
            .saturating_mul(i128::from(self.rate));
        state.balance = state.balance.saturating_add(refill).min(self.capacity());
        state.refilled_at = state.refilled_at.max(now);
        state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err(retry_after_secs)` while less than one whole token is left.
    fn check(&self, now: Instant) -> Result<(), u64> {
        let state = self.refilled(now);
        if state.balance >= UNITS_PER_TOKEN {
            Ok(())
        } else {
            Err(self.secs_to_reach(state.balance, UNITS_PER_TOKEN).max(1))
        }
    }

    fn charge(&self, tokens: u64, now: Instant) {
        let mut state = self.refilled(now);
        state.balance = state
            .balance
            .saturating_sub(i128::from(tokens).saturating_mul(UNITS_PER_TOKEN));
    }

    fn rate_limit(&self, now: Instant) -> RateLimit {
        let state = self.refilled(now);
        RateLimit {
            limit: self.rate,
            remaining: u64::try_from(state.balance.max(0) / UNITS_PER_TOKEN).unwrap_or(u64::MAX),
            reset_secs: self.secs_to_reach(state.balance, self.capacity()),
        }
    }

    /// Whole seconds (rounded up) until the balance, refilling from `balance`, reaches `target`.
    fn secs_to_reach(&self, balance: i128, target: i128) -> u64 {
        let missing = target.saturating_sub(balance).max(0);
        let rate = i128::from(self.rate);
        // `rate` units arrive per nanosecond: ceil(missing / rate) ns, then ceil to seconds.
        let nanos = (missing + rate - 1) / rate;
        u64::try_from((nanos + NANOS_PER_SEC - 1) / NANOS_PER_SEC).unwrap_or(u64::MAX)
    }
}

/// One key's limits and their state. Cheap to check from any worker at once.
pub struct KeyQuota {
    records: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    max_inflight: Option<u64>,
    inflight: AtomicU64,
}

impl KeyQuota {
    /// Buckets start full: a key's first second may use its whole burst.
    pub fn new(config: &QuotaConfig, now: Instant) -> Self {
        Self {
            records: config
                .records_per_sec
                .map(|rate| TokenBucket::new(rate, now)),
            bytes: config.bytes_per_sec.map(|rate| TokenBucket::new(rate, now)),
            max_inflight: config.max_inflight,
            inflight: AtomicU64::new(0),
        }
    }

    /// Takes an in-flight slot (released by [`KeyQuota::leave`]) unless all are taken or a
    /// bucket is out of tokens; on refusal nothing is held.
    pub fn enter_at(&self, now: Instant) -> Result<(), Refusal> {
        if let Some(max) = self.max_inflight {
            let taken = self
                .inflight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_err() {
                return Err(Refusal {
                    kind: QuotaKind::MaxInflight,
                    limit: max,
                    // A slot frees when a request ends, which has no schedule: a second is
                    // the smallest wait `Retry-After` can say.
                    retry_after_secs: 1,
                    rate_limit: self.rate_limit_at(now),
                });
            }
        }
        let buckets = [
            (QuotaKind::RecordsPerSec, &self.records),
            (QuotaKind::BytesPerSec, &self.bytes),
        ];
        for (kind, bucket) in buckets {
            let Some(bucket) = bucket else { continue };
            if let Err(retry_after_secs) = bucket.check(now) {
                self.leave();
                return Err(Refusal {
                    kind,
                    limit: bucket.rate,
                    retry_after_secs,
                    rate_limit: Some(bucket.rate_limit(now)),
                });
            }
        }
        Ok(())
    }

    /// Gives back the slot [`KeyQuota::enter_at`] took.
    pub fn leave(&self) {
        if self.max_inflight.is_some() {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn charge_records_at(&self, records: u64, now: Instant) {
        if let Some(bucket) = &self.records {
            bucket.charge(records, now);
        }
    }

    pub fn charge_bytes_at(&self, bytes: u64, now: Instant) {
        if let Some(bucket) = &self.bytes {
            bucket.charge(bytes, now);
        }
    }

    /// The rate limit closest to refusing, if the quota has any.
    pub fn rate_limit_at(&self, now: Instant) -> Option<RateLimit> {
        let records = self.records.as_ref().map(|b| b.rate_limit(now));
        let bytes = self.bytes.as_ref().map(|b| b.rate_limit(now));
        match (records, bytes) {
            (Some(r), Some(b)) => Some(if b.is_tighter_than(&r) { b } else { r }),
            (r, b) => r.or(b),
        }
    }
}

/// Everything metered for one API key: its name, its counters and, if configured, its quota.
/// The secret is not here: nothing that reaches metrics, logs or answers can leak it.
pub struct KeyMeter {
    name: String,
    records: IntCounter,
    bytes: IntCounter,
    /// Indexed like [`QuotaKind::ALL`]; `None` for limits the key does not have.
    refused: [Option<IntCounter>; 3],
    quota: Option<KeyQuota>,
}

impl fmt::Debug for KeyMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMeter")
            .field("name", &self.name)
            .field("quota", &self.quota.is_some())
            .finish()
    }
}

impl KeyMeter {
    /// Creates the key's metric series up front, so they read 0 rather than being absent.
    pub fn new(name: String, quota: Option<&QuotaConfig>, metrics: &Metrics) -> Self {
        let refused = QuotaKind::ALL.map(|kind| {
            let limited = quota.is_some_and(|q| match kind {
                QuotaKind::RecordsPerSec => q.records_per_sec.is_some(),
                QuotaKind::BytesPerSec => q.bytes_per_sec.is_some(),
                QuotaKind::MaxInflight => q.max_inflight.is_some(),
            });
            limited.then(|| {
                metrics
                    .quota_refused
                    .with_label_values(&[name.as_str(), kind.as_str()])
            })
        });
        Self {
            records: metrics.key_records.with_label_values(&[name.as_str()]),
            bytes: metrics.key_bytes.with_label_values(&[name.as_str()]),
            refused,
            quota: quota.map(|q| KeyQuota::new(q, Instant::now())),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Admits one produce request of this key before its body is read, or refuses it with a
    /// 429 naming the limit. The [`Admission`] holds the key's in-flight slot until dropped.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, ApiError> {
        if let Some(quota) = &self.quota {
            quota
                .enter_at(Instant::now())
                .map_err(|refusal| self.refuse(refusal))?;
        }
        Ok(Admission {
            meter: Some(Arc::clone(self)),
        })
    }

    fn refuse(&self, refusal: Refusal) -> ApiError {
        if let Some(counter) = &self.refused[refusal.kind as usize] {
            counter.inc();
        }
        let limit = match refusal.kind {
            QuotaKind::MaxInflight => format!("{} concurrent produce requests", refusal.limit),
            QuotaKind::RecordsPerSec | QuotaKind::BytesPerSec => format!("{}/s", refusal.limit),
        };
        log::debug!(
            "API key {:?} refused: {} exceeded",
            self.name,
            refusal.kind.as_str()
        );
        ApiError::TooManyRequests {
            message: format!(
                "quota exceeded for {} ({limit}) of API key \"{}\"; retry after {} s",
                refusal.kind.as_str(),
                self.name,
                refusal.retry_after_secs
            ),
            retry_after_secs: refusal.retry_after_secs,
            rate_limit: refusal.rate_limit,
        }
    }
}

/// A produce request let in by its key's quota (or by no quota at all): charges what it sends
/// and holds the key's in-flight slot until dropped.
pub struct Admission {
    meter: Option<Arc<KeyMeter>>,
}

impl Admission {
    /// For requests no key is metered for (auth off).
    pub fn unmetered() -> Self {
        Self { meter: None }
    }

    pub fn charge_bytes(&self, bytes: usize) {
        if let Some(meter) = &self.meter {
            let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            meter.bytes.inc_by(bytes);
            if let Some(quota) = &meter.quota {
                quota.charge_bytes_at(bytes, Instant::now());
            }
        }
    }

    pub fn charge_records(&self, records: usize) {
        if let Some(meter) = &self.meter {
            let records = u64::try_from(records).unwrap_or(u64::MAX);
            meter.records.inc_by(records);
            if let Some(quota) = &meter.quota {
                quota.charge_records_at(records, Instant::now());
            }
        }
    }

    /// What the answer's `RateLimit-*` headers say, if the key has a rate limit.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        let quota = self.meter.as_ref()?.quota.as_ref()?;
        quota.rate_limit_at(Instant::now())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(quota) = self.meter.as_ref().and_then(|m| m.quota.as_ref()) {
            quota.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn quota(records: Option<u64>, bytes: Option<u64>, inflight: Option<u64>) -> QuotaConfig {
        QuotaConfig {
            records_per_sec: records,
            bytes_per_sec: bytes,
            max_inflight: inflight,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_burst_passes_then_refusal_lasts_until_a_token_is_back() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(Some(100), None, None), t0);
        assert_eq!(q.enter_at(t0), Ok(()));
        q.charge_records_at(100, t0);
        q.leave();
        let refusal = q.enter_at(t0).expect_err("bucket empty");
        assert_eq!(refusal.kind, QuotaKind::RecordsPerSec);
        assert_eq!(refusal.limit, 100);
        assert_eq!(refusal.retry_after_secs, 1);
        assert_eq!(
            refusal.rate_limit,
            Some(RateLimit {
                limit: 100,
                remaining: 0,
                reset_secs: 1
            })
        );
        // One token takes 10 ms at 100/s: refused a nanosecond before, admitted at.
        assert!(q.enter_at(t0 + ms(10) - Duration::from_nanos(1)).is_err());
        assert_eq!(q.enter_at(t0 + ms(10)), Ok(()));
    }

    #[test]
    fn a_charge_beyond_the_balance_is_debt_paid_back_at_the_rate() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(Some(100), None, None), t0);
        q.enter_at(t0).expect("full bucket admits");
        q.charge_records_at(350, t0);
        q.leave();
        // Balance -250: 2.51 s until one whole token, so Retry-After rounds up to 3.
        assert_eq!(q.enter_at(t0).map_err(|r| r.retry_after_secs), Err(3));
        assert!(q.enter_at(t0 + ms(2500)).is_err());
        assert_eq!(q.enter_at(t0 + ms(2510)), Ok(()));
        assert_eq!(
            q.rate_limit_at(t0 + ms(2510)),
            Some(RateLimit {
                limit: 100,
                remaining: 1,
                reset_secs: 1
            })
        );
    }

    #[test]
    fn the_bucket_never_holds_more_than_one_second() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(Some(10), None, None), t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            q.rate_limit_at(later),
            Some(RateLimit {
                limit: 10,
                remaining: 10,
                reset_secs: 0
            })
        );
        q.charge_records_at(10, later);
        assert_eq!(q.rate_limit_at(later).map(|r| r.remaining), Some(0));
        assert_eq!(
            q.rate_limit_at(later + ms(550)).map(|r| r.remaining),
            Some(5)
        );
    }

    #[test]
    fn a_clock_read_out_of_order_neither_refills_nor_panics() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let q = KeyQuota::new(&quota(Some(10), None, None), t0);
        q.charge_records_at(10, t0);
        assert_eq!(q.rate_limit_at(t0 - ms(500)).map(|r| r.remaining), Some(0));
        assert_eq!(q.rate_limit_at(t0 + ms(100)).map(|r| r.remaining), Some(1));
    }

    #[test]
    fn bytes_refuse_independently_of_records() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(Some(1000), Some(4096), None), t0);
        q.enter_at(t0).expect("admitted");
        q.charge_bytes_at(10_000, t0);
        q.charge_records_at(1, t0);
        q.leave();
        let refusal = q.enter_at(t0).expect_err("bytes in debt");
        assert_eq!(refusal.kind, QuotaKind::BytesPerSec);
        assert_eq!(refusal.limit, 4096);
        // (10000 - 4096 + 1) bytes at 4096/s: 1.44 s.
        assert_eq!(refusal.retry_after_secs, 2);
    }

    #[test]
    fn headers_describe_the_limit_closest_to_refusal() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(Some(100), Some(1000), None), t0);
        q.charge_records_at(10, t0);
        q.charge_bytes_at(500, t0);
        let tightest = q.rate_limit_at(t0).expect("rate limited");
        assert_eq!(tightest.limit, 1000);
        assert_eq!(tightest.remaining, 500);
        let headers = tightest.headers();
        assert_eq!(headers[0], ("ratelimit-limit", "1000".to_string()));
        assert_eq!(headers[1], ("ratelimit-remaining", "500".to_string()));
        assert_eq!(headers[2], ("ratelimit-reset", "1".to_string()));
        assert_eq!(headers[3], ("ratelimit-policy", "1000;w=1".to_string()));
    }

    #[test]
    fn in_flight_slots_are_bounded_and_given_back() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(None, None, Some(2)), t0);
        assert_eq!(q.enter_at(t0), Ok(()));
        assert_eq!(q.enter_at(t0), Ok(()));
        let refusal = q.enter_at(t0).expect_err("both slots taken");
        assert_eq!(refusal.kind, QuotaKind::MaxInflight);
        assert_eq!(refusal.limit, 2);
        assert_eq!(refusal.retry_after_secs, 1);
        assert_eq!(refusal.rate_limit, None);
        q.leave();
        assert_eq!(q.enter_at(t0), Ok(()));
    }

    #[test]
    fn a_bucket_refusal_gives_back_the_slot_it_took() {
        let t0 = Instant::now();
        let q = KeyQuota::new(&quota(Some(1), None, Some(1)), t0);
        q.charge_records_at(5, t0);
        assert_eq!(
            q.enter_at(t0).map_err(|r| r.kind),
            Err(QuotaKind::RecordsPerSec)
        );
        let paid = t0 + Duration::from_secs(5);
        assert_eq!(q.enter_at(paid), Ok(()));
    }

    #[test]
    fn admissions_count_per_key_and_release_their_slot_when_dropped() {
        let metrics = Metrics::new();
        let meter = Arc::new(KeyMeter::new(
            "ingest".into(),
            Some(&quota(None, None, Some(1))),
            &metrics,
        ));
        let first = meter.admit().expect("free slot");
        first.charge_bytes(300);
        first.charge_records(3);
        let refused = meter.admit().err().expect("slot taken");
        assert!(matches!(refused, ApiError::TooManyRequests { .. }));
        assert_eq!(
            refused.to_string(),
            "quota exceeded for max_inflight (1 concurrent produce requests) of API key \"ingest\"; retry after 1 s"
        );
        drop(first);
        assert!(meter.admit().is_ok());
        let text = metrics.render();
        assert!(
            text.contains("rill_key_records_total{key=\"ingest\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("rill_key_bytes_total{key=\"ingest\"} 300"),
            "{text}"
        );
        assert!(
            text.contains("rill_quota_refused_total{key=\"ingest\",quota=\"max_inflight\"} 1"),
            "{text}"
        );
        assert!(!text.contains("records_per_sec"), "{text}");
    }
}
