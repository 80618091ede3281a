//! Fault knobs every emulator and the test identity provider carry: added latency,
//! a rate of 5xx answers, a rate of dropped connections (headers sent, then the
//! connection dies mid-body, which a client sees as a transport error) and a rate of
//! hangs (no answer until the client gives up: a timeout).
//!
//! Every emulator (and [`TestIdentityProvider`](crate::idp::TestIdentityProvider))
//! has two sets of knobs:
//!
//! * `faults()` covers every route of the emulator (identity provider and FHIR API);
//! * `idp_faults()` covers only its identity provider: the token endpoint (refresh
//!   grants included) and, where the vendor has them, sign-out and discovery. The
//!   FHIR API stays healthy, which is what an identity provider outage looks like.
//!
//! Latency holds the *answer* back: a request that is let through is handled (and
//! counted, recorded, a token issued) on arrival, and its answer leaves `latency`
//! later, as from a slow server. Tests that count requests while a slow answer is
//! in flight rely on that.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use auth_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! let idp = sandbox.graphnet().idp_faults();
//! idp.set_outage(0.5); // half the token requests fail: 503, reset or hang, a third each
//! // … later
//! idp.clear();
//! println!("{} token requests reached the provider", idp.stats().requests);
//! # Ok(()) }
//! ```
//!
//! The rates are independent fractions of requests; their sum is capped at 1 by
//! the order in which they are tried (drop, then 5xx, then hang).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How long a hung request is held before it is answered `504`, unless set.
pub const DEFAULT_HANG: Duration = Duration::from_secs(60);

/// The knobs' settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Added to every answer (the request is handled on arrival, its answer held back).
    pub latency: Duration,
    /// Fraction of requests answered `503` (0.0–1.0).
    pub error_rate: f64,
    /// Fraction of requests whose connection is dropped mid-answer (0.0–1.0).
    pub drop_rate: f64,
    /// Fraction of requests that hang: no answer for [`FaultConfig::hang_for`] (0.0–1.0).
    pub hang_rate: f64,
    /// How long a hung request waits before it is answered `504` (default [`DEFAULT_HANG`]).
    pub hang_for: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            drop_rate: 0.0,
            hang_rate: 0.0,
            hang_for: DEFAULT_HANG,
        }
    }
}

/// What the knobs did so far (counted since the emulator started; `clear` keeps them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Requests that reached the knobs, faulted or not.
    pub requests: u64,
    /// Requests answered `503` by a knob.
    pub errors: u64,
    /// Connections dropped by a knob.
    pub drops: u64,
    /// Requests hung by a knob.
    pub hangs: u64,
}

impl FaultStats {
    /// Requests a knob failed, whatever the way.
    pub fn faulted(&self) -> u64 {
        self.errors + self.drops + self.hangs
    }

    /// What happened between `earlier` (an older reading) and this one.
    pub fn since(&self, earlier: &FaultStats) -> FaultStats {
        FaultStats {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            drops: self.drops.saturating_sub(earlier.drops),
            hangs: self.hangs.saturating_sub(earlier.hangs),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    drops: AtomicU64,
    hangs: AtomicU64,
}

/// Shared, adjustable fault knobs. Clones adjust the same knobs.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    config: Arc<Mutex<FaultConfig>>,
    counters: Arc<Counters>,
    /// Which requests fault: seeded ([`Faults::seed`]) for a run that repeats.
    dice: Arc<Mutex<fastrand::Rng>>,
}

fn rate(rate: f64) -> f64 {
    if rate.is_finite() { rate.clamp(0.0, 1.0) } else { 0.0 }
}

impl Faults {
    /// The current settings.
    pub fn get(&self) -> FaultConfig {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.config.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Adds `latency` to every answer: the request is handled on arrival, its answer
    /// sent `latency` later.
    pub fn set_latency(&self, latency: Duration) {
        self.update(|c| c.latency = latency);
    }

    /// Answers this fraction of requests with 503.
    pub fn set_error_rate(&self, rate: f64) {
        self.update(|c| c.error_rate = self::rate(rate));
    }

    /// Drops the connection of this fraction of requests.
    pub fn set_drop_rate(&self, rate: f64) {
        self.update(|c| c.drop_rate = self::rate(rate));
    }

    /// Hangs this fraction of requests: no answer for [`FaultConfig::hang_for`], so
    /// a client with a shorter timeout sees a timeout.
    pub fn set_hang_rate(&self, rate: f64) {
        self.update(|c| c.hang_rate = self::rate(rate));
    }

    /// How long a hung request waits before it is answered `504` (default [`DEFAULT_HANG`]).
    pub fn set_hang_for(&self, duration: Duration) {
        self.update(|c| c.hang_for = duration);
    }

    /// An outage: fails this fraction of requests, a third each with a `503`, a
    /// dropped connection and a hang. Replaces the three rates; latency is kept.
    pub fn set_outage(&self, rate: f64) {
        let third = self::rate(rate) / 3.0;
        self.update(|c| {
            c.error_rate = third;
            c.drop_rate = third;
            c.hang_rate = third;
        });
    }

    /// Makes which requests fault repeat from run to run: the same seed and the
    /// same sequence of requests fault the same ones.
    pub fn seed(&self, seed: u64) {
        *self.dice.lock().unwrap_or_else(PoisonError::into_inner) = fastrand::Rng::with_seed(seed);
    }

    fn roll(&self) -> f64 {
        self.dice.lock().unwrap_or_else(PoisonError::into_inner).f64()
    }

    /// Back to no faults (the counters are kept).
    pub fn clear(&self) {
        self.update(|c| *c = FaultConfig::default());
    }

    /// What the knobs did so far.
    pub fn stats(&self) -> FaultStats {
        let c = &self.counters;
        FaultStats {
            requests: c.requests.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            drops: c.drops.load(Ordering::Relaxed),
            hangs: c.hangs.load(Ordering::Relaxed),
        }
    }
}

/// Middleware applying the knobs; install with
/// `axum::middleware::from_fn_with_state(faults, apply)`.
pub async fn apply(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let config = faults.get();
    let counters = &faults.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let roll = faults.roll();
    let faulted = roll < config.drop_rate + config.error_rate + config.hang_rate;
    // A request that passes is handled now and its answer held back (see the module
    // docs); a faulted one is held before its fault, as the answer it stands for.
    let response = if faulted { None } else { Some(next.run(request).await) };
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    if let Some(response) = response {
        return response;
    }
    if roll < config.drop_rate {
        counters.drops.fetch_add(1, Ordering::Relaxed);
        // Promise a body, then fail while sending it: hyper aborts the connection.
        let broken = futures_util::stream::once(async {
            Err::<axum::body::Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault injected",
            ))
        });
        let mut response = Response::new(Body::from_stream(broken));
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("1000"));
        return response;
    }
    if roll < config.drop_rate + config.error_rate {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "fault injected: service unavailable").into_response();
    }
    // The rest of the faulted requests hang.
    counters.hangs.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(config.hang_for).await;
    (StatusCode::GATEWAY_TIMEOUT, "fault injected: hung").into_response()
}
