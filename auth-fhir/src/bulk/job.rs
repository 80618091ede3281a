//! A running export: kick-off, status polls, the wait for the manifest, cancel.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LOCATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use auth_core::endpoint::retry_after;
use auth_core::{Error, ErrorKind, ResponseProblem, Result};

use super::manifest::ExportManifest;
use super::request::ExportRequest;
use crate::client::{FHIR_JSON, FhirClient, FhirResponse};
use crate::error::FhirError;

/// The shortest wait between two polls, whatever a server says (`Retry-After: 0`
/// from a busy server must not turn into a tight loop).
pub const MIN_POLL_DELAY: Duration = Duration::from_millis(100);
/// The longest `Retry-After` honoured as it is; longer ones are cut to this (a
/// server has been seen asking for five hours).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The first wait when a server gives no `Retry-After`, doubled each poll.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between polls without a `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Polls in a row that may fail with a transient error before the wait gives up.
pub const MAX_TRANSIENT_FAILURES: u32 = 10;
/// Cap on a manifest's size.
const MAX_MANIFEST: usize = 16 * 1024 * 1024;

/// How [`ExportJob::wait`] polls.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportPolling {
    /// Shortest wait between polls (default [`MIN_POLL_DELAY`]).
    pub min_delay: Duration,
    /// Longest `Retry-After` honoured as sent (default [`MAX_RETRY_AFTER`]).
    pub max_retry_after: Duration,
    /// First wait without a `Retry-After` (default [`FIRST_BACKOFF`]).
    pub first_backoff: Duration,
    /// Longest wait without a `Retry-After` (default [`MAX_BACKOFF`]).
    pub max_backoff: Duration,
    /// Transient failures in a row before giving up (default [`MAX_TRANSIENT_FAILURES`]).
    pub max_transient_failures: u32,
    /// Give up (kind [`Timeout`](ErrorKind::Timeout)) after this long in all; some
    /// servers answer 202 forever for a job they cancelled. Default: none.
    pub deadline: Option<Duration>,
}

impl Default for ExportPolling {
    fn default() -> Self {
        Self {
            min_delay: MIN_POLL_DELAY,
            max_retry_after: MAX_RETRY_AFTER,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            max_transient_failures: MAX_TRANSIENT_FAILURES,
            deadline: None,
        }
    }
}

/// What one status poll said.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExportStatus {
    /// Still running (`202`).
    InProgress(ExportProgress),
    /// Done (`200`): the manifest.
    Complete(CompletedExport),
}

/// A `202` answer to a status poll.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportProgress {
    /// The server's `X-Progress` text, if any ("50% complete").
    pub progress: Option<String>,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// A finished export: the manifest, read and as received.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct CompletedExport {
    /// The manifest.
    pub manifest: ExportManifest,
    /// The manifest's bytes as the server sent them.
    pub raw: Bytes,
}

impl fmt::Debug for CompletedExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompletedExport")
            .field("manifest", &self.manifest)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// What [`ExportJob::wait`] reports while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollEvent {
    /// The job is still running.
    InProgress {
        /// `X-Progress`, if sent.
        progress: Option<String>,
        /// How long the next wait is.
        wait: Duration,
    },
    /// The server said to poll less often (`429`).
    TooSoon {
        /// How long the next wait is.
        wait: Duration,
    },
    /// A poll failed in a way that may pass (a transient OperationOutcome, a 5xx
    /// from a gateway, a dropped connection); it is tried again.
    Retrying {
        /// What went wrong.
        error: String,
        /// How long the next wait is.
        wait: Duration,
    },
}

/// An export kicked off on a server: its status URL, which is all there is to
/// keep to come back to it later ([`ExportJob::resume`]).
#[derive(Debug, Clone)]
pub struct ExportJob {
    fhir: FhirClient,
    status_url: Url,
}

impl FhirClient {
    /// Kicks off a Bulk Data export (`Accept: application/fhir+json`, `Prefer:
    /// respond-async`). Not retried: a second kick-off could start a second job.
    /// A server that refuses it gives an error of kind
    /// [`Api`](ErrorKind::Api) with its OperationOutcome.
    pub async fn export(&self, request: &ExportRequest) -> Result<ExportJob> {
        request.validate()?;
        let url = request.url(self)?;
        let prefer = if request.is_lenient() { "respond-async, handling=lenient" } else { "respond-async" };
        let mut builder = self
            .api()
            .request(if request.is_post() { Method::POST } else { Method::GET }, url)
            .header(ACCEPT, FHIR_JSON)
            .header("prefer", prefer);
        if request.is_post() {
            builder = builder.header(CONTENT_TYPE, FHIR_JSON).body(request.parameters().to_string());
        }
        let response = FhirResponse::read(builder.send().await?, MAX_MANIFEST).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Error::invalid_response(
                "Bulk Data kick-off",
                response.status().as_u16(),
                ResponseProblem::Other("expected 202 Accepted with a Content-Location".into()),
            ));
        }
        let location =
            response.headers().get(CONTENT_LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                Error::invalid_response(
                    "Bulk Data kick-off",
                    202,
                    ResponseProblem::Other("no Content-Location (the status URL)".into()),
                )
            })?;
        let status_url = self.base().join(location).map_err(|_| {
            Error::invalid_response(
                "Bulk Data kick-off",
                202,
                ResponseProblem::Other("Content-Location is not a URL".into()),
            )
        })?;
        ExportJob::resume(self.clone(), status_url.as_str())
    }
}

impl ExportJob {
    /// The job whose status URL is `status_url` (saved from an earlier kick-off).
    /// The URL must be on the FHIR server's origin: every poll carries the token.
    pub fn resume(fhir: FhirClient, status_url: &str) -> Result<Self> {
        let url = auth_core::endpoint::check_url(status_url, fhir.base().scheme() == "http")?;
        if url.origin() != fhir.base().origin() {
            return Err(Error::configuration(format!(
                "the export's status URL is on {}, not on the FHIR server's origin {}: the token is not sent there",
                url.origin().ascii_serialization(),
                fhir.base().origin().ascii_serialization()
            )));
        }
        Ok(Self { fhir, status_url: url })
    }

    /// The status URL.
    pub fn status_url(&self) -> &Url {
        &self.status_url
    }

    /// The client the job runs on.
    pub fn fhir(&self) -> &FhirClient {
        &self.fhir
    }

    /// Polls once. An error status is an error of kind [`Api`](ErrorKind::Api)
    /// (a `429` too: poll less often; see [`ExportJob::wait`] for the whole loop).
    pub async fn poll(&self) -> Result<ExportStatus> {
        let response = self
            .fhir
            .api()
            .get(self.status_url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .send()
            .await?;
        let response = FhirResponse::read(response, MAX_MANIFEST).await?;
        match response.status() {
            StatusCode::OK => {
                let manifest: ExportManifest = response.json()?;
                Ok(ExportStatus::Complete(CompletedExport { manifest, raw: response.body().clone() }))
            }
            StatusCode::ACCEPTED => Ok(ExportStatus::InProgress(ExportProgress {
                progress: response
                    .headers()
                    .get("x-progress")
                    .and_then(|v| v.to_str().ok())
                    .map(|p| p.chars().take(100).collect()),
                retry_after: retry_after(response.headers()),
            })),
            other => Err(Error::invalid_response(
                "Bulk Data status",
                other.as_u16(),
                ResponseProblem::Other("expected 202 (in progress) or 200 (the manifest)".into()),
            )),
        }
    }

    /// Polls until the export is done and returns its manifest, honouring
    /// `Retry-After` (seconds or HTTP-date, within `polling`'s bounds), backing
    /// off without one, and polling through `429` and transient failures. A job
    /// that failed is an error of kind [`Api`](ErrorKind::Api) with the server's
    /// OperationOutcome.
    pub async fn wait(
        &self,
        polling: &ExportPolling,
        mut on_event: impl FnMut(&PollEvent) + Send,
    ) -> Result<CompletedExport> {
        let started = Instant::now();
        let mut backoff = polling.first_backoff;
        let mut failures = 0;
        loop {
            let event = match self.poll().await {
                Ok(ExportStatus::Complete(done)) => return Ok(done),
                Ok(ExportStatus::InProgress(p)) => {
                    failures = 0;
                    let wait = self.delay(polling, p.retry_after, &mut backoff);
                    PollEvent::InProgress { progress: p.progress, wait }
                }
                Err(e) => match classify(&e) {
                    PollFailure::TooSoon(asked) => {
                        let wait = self.delay(polling, asked, &mut backoff);
                        PollEvent::TooSoon { wait }
                    }
                    PollFailure::Transient(asked) => {
                        failures += 1;
                        if failures > polling.max_transient_failures {
                            return Err(e);
                        }
                        let wait = self.delay(polling, asked, &mut backoff);
                        PollEvent::Retrying { error: e.to_string(), wait }
                    }
                    PollFailure::Fatal => return Err(e),
                },
            };
            let wait = match &event {
                PollEvent::InProgress { wait, .. }
                | PollEvent::TooSoon { wait }
                | PollEvent::Retrying { wait, .. } => *wait,
            };
            if let Some(deadline) = polling.deadline
                && started.elapsed() + wait > deadline
            {
                return Err(Error::timeout("Bulk Data export", deadline));
            }
            on_event(&event);
            tokio::time::sleep(wait).await;
        }
    }

    fn delay(&self, polling: &ExportPolling, asked: Option<Duration>, backoff: &mut Duration) -> Duration {
        let wait = match asked {
            Some(asked) => asked.min(polling.max_retry_after),
            None => {
                // Jitter keeps a fleet of pollers from coming back in step.
                let wait = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
                *backoff = backoff.saturating_mul(2).min(polling.max_backoff);
                wait
            }
        };
        wait.max(polling.min_delay)
    }

    /// Cancels the job (`DELETE` on the status URL): the server stops it and may
    /// remove its files. A job that is already gone (`404`) counts as cancelled.
    pub async fn cancel(&self) -> Result<()> {
        let response =
            self.fhir.api().delete(self.status_url.clone()).header(ACCEPT, FHIR_JSON).send().await?;
        match FhirResponse::read(response, MAX_MANIFEST).await {
            Ok(_) => Ok(()),
            Err(e) if e.api_detail::<FhirError>().is_some_and(|f| f.status() == 404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

enum PollFailure {
    TooSoon(Option<Duration>),
    Transient(Option<Duration>),
    Fatal,
}

/// Which failed polls are worth another poll (`bulk-data-and-dpop.md` §1.9).
fn classify(error: &Error) -> PollFailure {
    match error.kind() {
        ErrorKind::Transport | ErrorKind::Timeout => PollFailure::Transient(None),
        ErrorKind::Api => {
            let Some(fhir) = error.api_detail::<FhirError>() else { return PollFailure::Fatal };
            let transient_issue = fhir
                .operation_outcome()
                .is_some_and(|o| o.issue.iter().any(|i| i.code.as_deref() == Some("transient")));
            match fhir.status() {
                429 => PollFailure::TooSoon(fhir.retry_after()),
                _ if transient_issue => PollFailure::Transient(fhir.retry_after()),
                503 => PollFailure::Transient(fhir.retry_after()),
                // A gateway's answer, not the job's: no OperationOutcome.
                408 | 502 | 504 if fhir.operation_outcome().is_none() => {
                    PollFailure::Transient(fhir.retry_after())
                }
                _ => PollFailure::Fatal,
            }
        }
        _ => PollFailure::Fatal,
    }
}
