//! Retries of FHIR calls: a server answering 429 or 503, or a connection that
//! fails before any answer, is tried again, only for interactions that are safe to
//! repeat, honouring `Retry-After`, with exponential backoff and jitter, and within
//! a budget so a struggling server is not answered with a retry storm.
//!
//! Safe to repeat: reads, searches (`GET`, and `POST [type]/_search`), `PUT`,
//! `DELETE`, and conditional create (`POST` with `If-None-Exist`). Never a plain
//! `POST` (a create, a transaction, an operation) or `PATCH`: repeating one could
//! create a resource twice or apply a change twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use auth_core::{Error, ErrorKind};
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::error::FhirError;

/// How FHIR calls are retried (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FhirRetry {
    /// Tries per call, the first included (default 4; 1 turns retries off).
    pub attempts: u32,
    /// Backoff before the first retry, doubled each time, with full jitter (default 250 ms).
    pub base_delay: Duration,
    /// Longest backoff between two tries (default 8 s).
    pub max_delay: Duration,
    /// Longest `Retry-After` waited for; a server asking for more gets its error
    /// back at once (default 30 s).
    pub max_retry_after: Duration,
    /// Retries allowed per call made, on top of [`FhirRetry::min_per_second`]
    /// (default 0.2: at most one retry for five calls, once the reserve is spent).
    pub budget_ratio: f64,
    /// Retries always allowed per second, however few calls (default 5).
    pub min_per_second: f64,
}

impl Default for FhirRetry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            budget_ratio: 0.2,
            min_per_second: 5.0,
        }
    }
}

impl FhirRetry {
    /// No retries at all.
    pub fn none() -> Self {
        Self { attempts: 1, ..Self::default() }
    }

    /// How long to wait before try `attempt + 1` (`attempt` ≥ 1) after `error`;
    /// `None` when the server asks for more than [`FhirRetry::max_retry_after`].
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let exp =
            self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        // Full jitter: a crowd of clients does not come back in step.
        let jittered = exp.mul_f64(fastrand::f64());
        match retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked.max(jittered)),
            None => Some(jittered),
        }
    }
}

/// Whether an interaction may be sent twice without harm.
pub(crate) fn safe_to_repeat(method: &Method, url_path: &str, headers: &HeaderMap) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS => true,
        Method::POST => headers.contains_key("if-none-exist") || url_path.ends_with("/_search"),
        _ => false,
    }
}

/// Whether `error` is one a retry can cure, and the server's `Retry-After`.
pub(crate) fn retryable(error: &Error) -> Option<Option<Duration>> {
    match error.kind() {
        ErrorKind::Api => {
            let fhir = error.api_detail::<FhirError>()?;
            matches!(fhir.status(), 429 | 503).then(|| fhir.retry_after())
        }
        // The connection failed or timed out on the API request itself (not on the
        // token request, which the token manager retries on its own terms).
        ErrorKind::Transport | ErrorKind::Timeout
            if error.operation() == Some(auth_core::client::API_REQUEST) =>
        {
            Some(None)
        }
        _ => None,
    }
}

/// What the retries of a client (and its clones) have done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FhirStats {
    /// Calls made (each counted once, however many tries).
    pub calls: u64,
    /// Tries after the first.
    pub retries: u64,
    /// Retries not made because the budget was spent.
    pub budget_exhausted: u64,
}

/// The retry budget and counters, shared by a client's clones.
#[derive(Debug)]
pub(crate) struct RetryState {
    calls: AtomicU64,
    retries: AtomicU64,
    exhausted: AtomicU64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Retries that can be banked: a long quiet spell does not buy a storm later.
const BUDGET_CAPACITY: f64 = 100.0;

impl Default for RetryState {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            bucket: Mutex::new(Bucket { tokens: 10.0, refilled: Instant::now() }),
        }
    }
}

impl RetryState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A call is made: it adds `ratio` of a retry to the budget.
    pub(crate) fn call(&self, policy: &FhirRetry) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        b.tokens = (b.tokens + policy.budget_ratio.max(0.0)).min(BUDGET_CAPACITY);
    }

    /// Takes one retry from the budget, if there is one.
    pub(crate) fn withdraw(&self, policy: &FhirRetry) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * policy.min_per_second.max(0.0)).min(BUDGET_CAPACITY);
        b.refilled = now;
        // The epsilon forgives float sums: five calls at 0.2 make one whole retry.
        if b.tokens >= 1.0 - 1e-9 {
            b.tokens = (b.tokens - 1.0).max(0.0);
            self.retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    pub(crate) fn stats(&self) -> FhirStats {
        FhirStats {
            calls: self.calls.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            budget_exhausted: self.exhausted.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_interactions_repeat() {
        let none = HeaderMap::new();
        let mut conditional = HeaderMap::new();
        conditional.insert("if-none-exist", reqwest::header::HeaderValue::from_static("identifier=x"));
        assert!(safe_to_repeat(&Method::GET, "/fhir/Patient", &none));
        assert!(safe_to_repeat(&Method::PUT, "/fhir/Patient/1", &none));
        assert!(safe_to_repeat(&Method::DELETE, "/fhir/Patient/1", &none));
        assert!(safe_to_repeat(&Method::POST, "/fhir/Patient/_search", &none));
        assert!(safe_to_repeat(&Method::POST, "/fhir/Patient", &conditional));
        assert!(!safe_to_repeat(&Method::POST, "/fhir/Patient", &none), "a create could happen twice");
        assert!(!safe_to_repeat(&Method::POST, "/fhir", &none), "a transaction could apply twice");
        assert!(!safe_to_repeat(&Method::PATCH, "/fhir/Patient/1", &none));
    }

    #[test]
    fn delays_grow_honour_retry_after_and_give_up_past_the_cap() {
        let policy = FhirRetry::default();
        for attempt in 1..8 {
            let d = policy.delay(attempt, None).unwrap_or(Duration::MAX);
            assert!(d <= policy.max_delay, "{d:?}");
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))).map(|d| d >= Duration::from_secs(3)),
            Some(true)
        );
        assert_eq!(policy.delay(1, Some(Duration::from_secs(31))), None);
    }

    #[test]
    fn the_budget_runs_out_and_refills_with_calls() {
        let policy = FhirRetry { min_per_second: 0.0, ..FhirRetry::default() };
        let state = RetryState::default();
        let granted = (0..50).filter(|_| state.withdraw(&policy)).count();
        assert_eq!(granted, 10, "the reserve");
        for _ in 0..10 {
            state.call(&policy);
        }
        assert!(state.withdraw(&policy), "ten calls bought two retries");
        assert!(state.withdraw(&policy));
        assert!(!state.withdraw(&policy));
        assert_eq!(state.stats().budget_exhausted, 41);
    }
}
