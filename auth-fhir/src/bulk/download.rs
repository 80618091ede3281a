//! Downloading a manifest's files: the token only where it belongs, streamed in
//! chunks (memory stays bounded whatever the file's size), and a connection that
//! drops mid-file taken up again where it stopped, so the bytes come out exact.

use std::fmt;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use reqwest::header::{ACCEPT, ACCEPT_RANGES, CONTENT_RANGE, HeaderValue, RANGE};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use url::{Origin, Url};

use auth_core::endpoint::{content_type, read_capped, retry_after};
use auth_core::{Error, ErrorKind, ResponseProblem, Result};

use super::manifest::{ExportFile, ExportManifest};
use crate::client::FhirClient;
use crate::error::FhirError;
use crate::model::OperationOutcome;

/// The NDJSON media type of export files.
pub const FHIR_NDJSON: &str = "application/fhir+ndjson";
/// Tries per file request (a connection that drops mid-file starts a new one).
pub const DOWNLOAD_ATTEMPTS: u32 = 5;
/// How long a download may receive nothing before it counts as dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one file request may run in all (files can be gigabytes).
pub const FILE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// The longest line (one resource) read by [`NdjsonLines`].
pub const MAX_LINE: usize = 64 * 1024 * 1024;
/// First wait before a file request is tried again, doubled each time.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` a download waits for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// What a failed file request's body is read up to (its OperationOutcome).
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// Downloads the files of one manifest.
///
/// The access token goes with a file request only when the manifest says
/// `requiresAccessToken: true`, and then only to the FHIR server's origin or to an
/// origin trusted with [`ExportDownloads::trust_origin`]; a file elsewhere that
/// needs the token is an error of kind [`Configuration`](ErrorKind::Configuration).
/// With `requiresAccessToken: false` no token is ever sent (the URLs are
/// capability URLs).
#[derive(Clone)]
pub struct ExportDownloads {
    fhir: FhirClient,
    requires_token: bool,
    trusted: Vec<Origin>,
    attempts: u32,
    idle_timeout: Duration,
}

impl fmt::Debug for ExportDownloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trusted: Vec<String> = self.trusted.iter().map(Origin::ascii_serialization).collect();
        f.debug_struct("ExportDownloads")
            .field("requires_token", &self.requires_token)
            .field("trusted", &trusted)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl ExportDownloads {
    /// Downloads of `manifest`'s files through `fhir`.
    pub fn new(fhir: &FhirClient, manifest: &ExportManifest) -> Self {
        Self {
            fhir: fhir.clone(),
            requires_token: manifest.requires_access_token,
            trusted: vec![fhir.base().origin()],
            attempts: DOWNLOAD_ATTEMPTS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// Also sends the token to files on `url`'s origin (a file server of the
    /// same organisation, say) when the manifest requires it.
    pub fn trust_origin(mut self, url: &str) -> Result<Self> {
        let url =
            Url::parse(url).map_err(|e| Error::configuration(format!("not a valid origin URL: {e}")))?;
        if !url.origin().is_tuple() {
            return Err(Error::configuration("a trusted origin must be an http(s) URL"));
        }
        self.trusted.push(url.origin());
        Ok(self)
    }

    /// Trusts every origin in `urls` ([`ExportDownloads::trust_origin`]).
    pub fn trust_origins<'a>(self, urls: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        urls.into_iter().try_fold(self, Self::trust_origin)
    }

    /// Tries per request (default [`DOWNLOAD_ATTEMPTS`]).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Silence that counts as a dropped connection (default [`IDLE_TIMEOUT`]).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Whether a request for `url` carries the token; an error if the file
    /// needs it but its origin is not trusted.
    pub fn sends_token(&self, url: &Url) -> Result<bool> {
        if !self.requires_token {
            return Ok(false);
        }
        if self.trusted.contains(&url.origin()) {
            return Ok(true);
        }
        Err(Error::configuration(format!(
            "an export file on {} requires the access token, but that is not the FHIR server's origin ({}); \
             the token is not sent there unless that origin is trusted explicitly",
            url.origin().ascii_serialization(),
            self.fhir.base().origin().ascii_serialization()
        )))
    }

    /// Starts downloading `file`.
    pub async fn open(&self, file: &ExportFile) -> Result<FileDownload> {
        let insecure = self.fhir.base().scheme() == "http";
        let url = auth_core::endpoint::check_url(&file.url, insecure)?;
        let token = self.sends_token(&url)?;
        let mut download = FileDownload {
            downloads: self.clone(),
            url,
            token,
            response: None,
            position: 0,
            discard: 0,
            ranges: false,
            reconnects: 0,
        };
        download.connect().await?;
        Ok(download)
    }
}

/// One file coming in: its bytes in order, exactly as the server sent them, even
/// across reconnections.
pub struct FileDownload {
    downloads: ExportDownloads,
    url: Url,
    token: bool,
    response: Option<Response>,
    /// Bytes handed to the caller.
    position: u64,
    /// Bytes of the current response to skip: a server that ignored `Range`
    /// sends the whole file again.
    discard: u64,
    /// Whether the server said it takes `Range`.
    ranges: bool,
    reconnects: u32,
}

impl fmt::Debug for FileDownload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A file URL may be a capability URL: its path is the secret.
        f.debug_struct("FileDownload")
            .field("origin", &self.url.origin().ascii_serialization())
            .field("token", &self.token)
            .field("position", &self.position)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl FileDownload {
    /// The next bytes of the file; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let mut failures = 0;
        loop {
            if self.response.is_none() {
                self.connect().await?;
            }
            let Some(response) = self.response.as_mut() else { continue };
            let next = tokio::time::timeout(self.downloads.idle_timeout, response.chunk()).await;
            let error = match next {
                Ok(Ok(Some(mut chunk))) => {
                    if self.discard > 0 {
                        let skip = self.discard.min(chunk.len() as u64);
                        chunk.advance(skip as usize);
                        self.discard -= skip;
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.position += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(Ok(None)) => {
                    self.response = None;
                    return Ok(None);
                }
                Ok(Err(e)) => Error::transport("Bulk Data file", e),
                Err(_) => Error::timeout("Bulk Data file", self.downloads.idle_timeout),
            };
            // The connection dropped mid-file: start again where it stopped.
            self.response = None;
            failures += 1;
            if failures >= self.downloads.attempts {
                return Err(error);
            }
            tracing::debug!(position = self.position, error = %error, "export file interrupted; resuming");
            self.reconnects += 1;
            tokio::time::sleep(RETRY_BACKOFF.saturating_mul(1 << failures.min(8))).await;
        }
    }

    /// Bytes received so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many times the download reconnected after a dropped connection.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// Whether the requests carry the access token.
    pub fn sends_token(&self) -> bool {
        self.token
    }

    /// The file as lines (one resource each).
    pub fn lines(self) -> NdjsonLines {
        NdjsonLines { download: self, buffer: BytesMut::new(), done: false, max_line: MAX_LINE }
    }

    /// Sends the request (from `position` on, when the server takes ranges),
    /// retrying what may pass: a refused connection, 429, 5xx.
    async fn connect(&mut self) -> Result<()> {
        let attempts = self.downloads.attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send().await {
                Ok(response) => match self.accept(response).await {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let (retry, asked) = retryable(&error);
            if !retry || attempt >= attempts {
                return Err(error);
            }
            let backoff = RETRY_BACKOFF.saturating_mul(1 << attempt.min(8));
            let wait = asked.map_or(backoff, |a| a.min(MAX_RETRY_AFTER));
            tracing::debug!(attempt, error = %error, "export file request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(&self) -> Result<Response> {
        let range = (self.position > 0 && self.ranges)
            .then(|| HeaderValue::from_str(&format!("bytes={}-", self.position)))
            .transpose()
            .map_err(|_| Error::configuration("bad range"))?;
        let accept = HeaderValue::from_static(FHIR_NDJSON);
        if self.token {
            let mut request =
                self.downloads.fhir.api().get(self.url.clone()).header(ACCEPT, accept).timeout(FILE_TIMEOUT);
            if let Some(range) = range {
                request = request.header(RANGE, range);
            }
            request.send().await
        } else {
            // No token: the plain HTTP client underneath, not the authenticating one.
            let mut request = self
                .downloads
                .fhir
                .api()
                .http()
                .get(self.url.clone())
                .header(ACCEPT, accept)
                .timeout(FILE_TIMEOUT);
            if let Some(range) = range {
                request = request.header(RANGE, range);
            }
            request.send().await.map_err(|e| {
                if e.is_timeout() {
                    Error::timeout("Bulk Data file", FILE_TIMEOUT)
                } else {
                    Error::transport("Bulk Data file", e)
                }
            })
        }
    }

    async fn accept(&mut self, response: Response) -> Result<()> {
        let status = response.status();
        if status == StatusCode::PARTIAL_CONTENT {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(self.position) {
                return Err(Error::invalid_response(
                    "Bulk Data file",
                    206,
                    ResponseProblem::Other("the range sent back is not the one asked for".into()),
                ));
            }
            self.discard = 0;
        } else if status.is_success() {
            // The whole file (again): skip what was already handed out.
            self.discard = self.position;
            self.ranges = response
                .headers()
                .get(ACCEPT_RANGES)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|u| u.trim().eq_ignore_ascii_case("bytes")));
        } else {
            let headers = response.headers().clone();
            let body = read_capped(response, MAX_ERROR_BODY, "Bulk Data file").await?;
            let outcome = serde_json::from_slice::<OperationOutcome>(&body).ok();
            return Err(FhirError::new(status.as_u16(), outcome, content_type(&headers), body.len())
                .with_retry_after(retry_after(&headers))
                .into());
        }
        self.response = Some(response);
        Ok(())
    }
}

/// Whether a failed file request may be tried again, and the server's `Retry-After`.
fn retryable(error: &Error) -> (bool, Option<Duration>) {
    match error.kind() {
        ErrorKind::Transport | ErrorKind::Timeout => (true, None),
        ErrorKind::Api => match error.api_detail::<FhirError>() {
            Some(f) => (matches!(f.status(), 408 | 429 | 500 | 502 | 503 | 504), f.retry_after()),
            None => (false, None),
        },
        _ => (false, None),
    }
}

/// An NDJSON file as lines: one resource per line, blank lines skipped, `\r\n`
/// taken as `\n`. Memory holds one line at a time (at most [`MAX_LINE`] bytes).
#[derive(Debug)]
pub struct NdjsonLines {
    download: FileDownload,
    buffer: BytesMut,
    done: bool,
    max_line: usize,
}

impl NdjsonLines {
    /// The next line's bytes as sent (without its line break).
    pub async fn next_line(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line = self.buffer.split_to(end + 1).freeze();
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.buffer.len() > self.max_line {
                return Err(Error::invalid_response(
                    "Bulk Data file",
                    200,
                    ResponseProblem::TooLarge { limit: self.max_line },
                ));
            }
            if self.done {
                let rest = std::mem::take(&mut self.buffer).freeze();
                return Ok((!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest));
            }
            match self.download.chunk().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => self.done = true,
            }
        }
    }

    /// The next line read as `T` (a typed resource, [`crate::JsonResource`], or
    /// an [`OperationOutcome`] from an error file). A line that is not a `T` is
    /// an error of kind [`InvalidResponse`](ErrorKind::InvalidResponse) that says
    /// where, never what (it is patient data).
    pub async fn next_resource<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(line) = self.next_line().await? else { return Ok(None) };
        serde_json::from_slice(&line).map(Some).map_err(|e| {
            Error::invalid_response(
                "Bulk Data file",
                200,
                ResponseProblem::Other(format!(
                    "a line is not the expected resource (column {}): {:?}",
                    e.column(),
                    e.classify()
                )),
            )
        })
    }

    /// The download underneath (position, reconnects).
    pub fn download(&self) -> &FileDownload {
        &self.download
    }
}
