//! Fault knobs every emulator carries: added latency, a rate of 5xx answers, and a
//! rate of dropped connections (headers sent, then the connection dies mid-body,
//! which a client sees as a transport error).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The knobs' settings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Added to every answer.
    pub latency: Duration,
    /// Fraction of requests answered `503` (0.0–1.0).
    pub error_rate: f64,
    /// Fraction of requests whose connection is dropped mid-answer (0.0–1.0).
    pub drop_rate: f64,
}

/// Shared, adjustable fault knobs. Clones adjust the same knobs.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultConfig>>);

impl Faults {
    /// The current settings.
    pub fn get(&self) -> FaultConfig {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Adds `latency` to every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.update(|c| c.latency = latency);
    }

    /// Answers this fraction of requests with 503.
    pub fn set_error_rate(&self, rate: f64) {
        self.update(|c| c.error_rate = rate.clamp(0.0, 1.0));
    }

    /// Drops the connection of this fraction of requests.
    pub fn set_drop_rate(&self, rate: f64) {
        self.update(|c| c.drop_rate = rate.clamp(0.0, 1.0));
    }

    /// Back to no faults.
    pub fn clear(&self) {
        self.update(|c| *c = FaultConfig::default());
    }
}

/// Middleware applying the knobs; install with
/// `axum::middleware::from_fn_with_state(faults, apply)`.
pub async fn apply(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let config = faults.get();
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let roll = fastrand::f64();
    if roll < config.drop_rate {
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
        return (StatusCode::SERVICE_UNAVAILABLE, "fault injected: service unavailable").into_response();
    }
    next.run(request).await
}
