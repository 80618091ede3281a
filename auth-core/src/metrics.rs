//! What the token layer does, as metrics through the [`metrics`](https://docs.rs/metrics)
//! facade: recorded only with the crate's `metrics` feature, to whichever
//! recorder the application installed (Prometheus, StatsD, …).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`TOKEN_REQUESTS`] | counter | `provider`, `outcome` | requests to the identity provider (each attempt, refresh grants included); `outcome` is `ok` or the [`ErrorKind`] in snake case (`oauth`, `transport`, `timeout`, `unavailable`, `invalid_response`, …) |
//! | [`CACHE_HITS`] | counter | `provider` | callers handed the cached token at once |
//! | [`CACHE_MISSES`] | counter | `provider` | callers that found no usable token and waited for one |
//! | [`REFRESHES_AHEAD`] | counter | `provider` | background refreshes started before expiry |
//! | [`REJECTIONS`] | counter | `provider` | API answers judged to reject the token |
//! | [`REPLAYS`] | counter | `provider` | API requests sent again with a fresh token |
//! | [`STORE_ERRORS`] | counter | `provider`, `operation` | token store failures; `operation` is `get`, `put`, `remove`, `lease`, `renew`, `release` or `failure` |
//! | [`FETCH_DURATION`] | histogram | `provider`, `outcome` | seconds one fetch took, every attempt and the store included; `outcome` is `ok` or `error` |
//! | [`WAIT_DURATION`] | histogram | `provider` | seconds a caller without a usable token waited for one |
//!
//! `provider` is the source's provider kind ([`CacheKey::provider`](crate::CacheKey::provider):
//! `oauth2`, `smart`, …). No label ever holds a token, a secret, a client id or a URL.
//!
//! A [`TokenManager`](crate::TokenManager) takes its handles from the recorder
//! installed when it is built: install the recorder first.
//!
//! The spans the crate opens, at the level shown:
//!
//! | span | level | fields | around |
//! |---|---|---|---|
//! | `token_fetch` | info | `provider`, `key`, `reason` | one fetch of a token (attempts, store and lease included) |
//! | `token_wait` | debug | `provider` | a caller waiting for a token it has not got |
//! | `token_replay` | debug | `status` | the one replay of an API request after a rejected token |

use crate::error::ErrorKind;

/// Counter: requests to the identity provider, by `provider` and `outcome`.
pub const TOKEN_REQUESTS: &str = "auth_token_requests_total";
/// Counter: callers handed the cached token at once, by `provider`.
pub const CACHE_HITS: &str = "auth_token_cache_hits_total";
/// Counter: callers that found no usable token and waited, by `provider`.
pub const CACHE_MISSES: &str = "auth_token_cache_misses_total";
/// Counter: background refreshes started before expiry, by `provider`.
pub const REFRESHES_AHEAD: &str = "auth_token_refreshes_ahead_total";
/// Counter: API answers judged to reject the token, by `provider`.
pub const REJECTIONS: &str = "auth_token_rejections_total";
/// Counter: API requests replayed with a fresh token, by `provider`.
pub const REPLAYS: &str = "auth_token_replays_total";
/// Counter: token store failures, by `provider` and `operation`.
pub const STORE_ERRORS: &str = "auth_token_store_errors_total";
/// Histogram: seconds one fetch took, by `provider` and `outcome` (`ok`, `error`).
pub const FETCH_DURATION: &str = "auth_token_fetch_duration_seconds";
/// Histogram: seconds a caller without a usable token waited, by `provider`.
pub const WAIT_DURATION: &str = "auth_token_wait_duration_seconds";

/// Every metric name, in the order of the table above.
pub const ALL: [&str; 9] = [
    TOKEN_REQUESTS,
    CACHE_HITS,
    CACHE_MISSES,
    REFRESHES_AHEAD,
    REJECTIONS,
    REPLAYS,
    STORE_ERRORS,
    FETCH_DURATION,
    WAIT_DURATION,
];

/// A token store operation, the `operation` label of [`STORE_ERRORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Get,
    Put,
    Remove,
    Lease,
    Renew,
    Release,
    /// Reading or writing a failure shared through the store.
    Failure,
}

impl StoreOp {
    #[cfg(feature = "metrics")]
    const ALL: [StoreOp; 7] =
        [Self::Get, Self::Put, Self::Remove, Self::Lease, Self::Renew, Self::Release, Self::Failure];

    #[cfg(feature = "metrics")]
    fn label(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Remove => "remove",
            Self::Lease => "lease",
            Self::Renew => "renew",
            Self::Release => "release",
            Self::Failure => "failure",
        }
    }
}

/// The `outcome` label of a failed token request: its kind in snake case.
pub fn outcome_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::OAuth => "oauth",
        ErrorKind::Transport => "transport",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::InvalidResponse => "invalid_response",
        ErrorKind::Configuration => "configuration",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::InsufficientScope => "insufficient_scope",
        ErrorKind::Store => "store",
        ErrorKind::Internal => "internal",
        ErrorKind::Api => "api",
    }
}

#[cfg(feature = "metrics")]
const KINDS: [ErrorKind; 11] = [
    ErrorKind::OAuth,
    ErrorKind::Transport,
    ErrorKind::Timeout,
    ErrorKind::Unavailable,
    ErrorKind::InvalidResponse,
    ErrorKind::Configuration,
    ErrorKind::Unauthorized,
    ErrorKind::InsufficientScope,
    ErrorKind::Store,
    ErrorKind::Internal,
    ErrorKind::Api,
];

/// One manager's handles, taken from the recorder once when it is built: the hot
/// path then costs one increment, with no lookup by name.
#[derive(Debug)]
pub(crate) struct ManagerMetrics {
    #[cfg(feature = "metrics")]
    handles: Handles,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    requests_ok: ::metrics::Counter,
    requests_failed: [::metrics::Counter; KINDS.len()],
    cache_hits: ::metrics::Counter,
    cache_misses: ::metrics::Counter,
    refreshes_ahead: ::metrics::Counter,
    rejections: ::metrics::Counter,
    replays: ::metrics::Counter,
    store_errors: [::metrics::Counter; StoreOp::ALL.len()],
    fetch_ok: ::metrics::Histogram,
    fetch_error: ::metrics::Histogram,
    wait: ::metrics::Histogram,
}

impl ManagerMetrics {
    /// Handles labelled with `provider`, from the recorder installed now (a
    /// no-op without the `metrics` feature).
    pub(crate) fn new(provider: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            use ::metrics::{counter, histogram};
            let provider = provider.to_owned();
            let p = || provider.clone();
            Self {
                handles: Handles {
                    requests_ok: counter!(TOKEN_REQUESTS, "provider" => p(), "outcome" => "ok"),
                    requests_failed: KINDS
                        .map(|k| counter!(TOKEN_REQUESTS, "provider" => p(), "outcome" => outcome_label(k))),
                    cache_hits: counter!(CACHE_HITS, "provider" => p()),
                    cache_misses: counter!(CACHE_MISSES, "provider" => p()),
                    refreshes_ahead: counter!(REFRESHES_AHEAD, "provider" => p()),
                    rejections: counter!(REJECTIONS, "provider" => p()),
                    replays: counter!(REPLAYS, "provider" => p()),
                    store_errors: StoreOp::ALL
                        .map(|op| counter!(STORE_ERRORS, "provider" => p(), "operation" => op.label())),
                    fetch_ok: histogram!(FETCH_DURATION, "provider" => p(), "outcome" => "ok"),
                    fetch_error: histogram!(FETCH_DURATION, "provider" => p(), "outcome" => "error"),
                    wait: histogram!(WAIT_DURATION, "provider" => p()),
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = provider;
            Self {}
        }
    }

    /// One request to the identity provider, and how it ended.
    pub(crate) fn token_request(&self, outcome: Result<(), ErrorKind>) {
        #[cfg(feature = "metrics")]
        match outcome {
            Ok(()) => self.handles.requests_ok.increment(1),
            Err(kind) => {
                if let Some(i) = KINDS.iter().position(|k| *k == kind) {
                    self.handles.requests_failed[i].increment(1);
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = outcome;
    }

    #[inline]
    pub(crate) fn cache_hit(&self) {
        #[cfg(feature = "metrics")]
        self.handles.cache_hits.increment(1);
    }

    pub(crate) fn cache_miss(&self) {
        #[cfg(feature = "metrics")]
        self.handles.cache_misses.increment(1);
    }

    pub(crate) fn refresh_ahead(&self) {
        #[cfg(feature = "metrics")]
        self.handles.refreshes_ahead.increment(1);
    }

    pub(crate) fn rejection(&self) {
        #[cfg(feature = "metrics")]
        self.handles.rejections.increment(1);
    }

    pub(crate) fn replay(&self) {
        #[cfg(feature = "metrics")]
        self.handles.replays.increment(1);
    }

    pub(crate) fn store_error(&self, op: StoreOp) {
        #[cfg(feature = "metrics")]
        if let Some(i) = StoreOp::ALL.iter().position(|o| *o == op) {
            self.handles.store_errors[i].increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = op;
    }

    /// One fetch took `took`, and succeeded or not.
    pub(crate) fn fetched(&self, took: std::time::Duration, ok: bool) {
        #[cfg(feature = "metrics")]
        if ok {
            self.handles.fetch_ok.record(took.as_secs_f64());
        } else {
            self.handles.fetch_error.record(took.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (took, ok);
    }

    /// A caller without a usable token waited `took` for one.
    pub(crate) fn waited(&self, took: std::time::Duration) {
        #[cfg(feature = "metrics")]
        self.handles.wait.record(took.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = took;
    }
}
