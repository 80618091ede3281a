//! FHIR failures: an error status from a FHIR server, with its OperationOutcome.
//!
//! They travel as the engine's one error type, [`auth_core::Error`], of kind
//! [`ErrorKind::Api`](auth_core::ErrorKind::Api): one `Result` for the whole stack,
//! while the engine itself knows nothing of FHIR. [`FhirErrorExt`] reads the
//! OperationOutcome back.

use std::fmt;
use std::time::Duration;

use auth_core::Error;
use auth_core::error::redact_credentials;

use crate::model::OperationOutcome;

/// An error status from a FHIR server: what the error of kind
/// [`ErrorKind::Api`](auth_core::ErrorKind::Api) carries when a FHIR call fails.
///
/// The body itself is not kept: it may hold patient data. Credential-like text in
/// the issues' `diagnostics` and `details.text` is replaced (see
/// [`redact_credentials`]): servers echo a refused `Authorization` header there.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirError {
    status: u16,
    outcome: Option<OperationOutcome>,
    content_type: Option<String>,
    len: usize,
    retry_after: Option<Duration>,
}

impl FhirError {
    /// The error for a FHIR error status, as an [`auth_core::Error`].
    pub fn into_error(
        status: u16,
        outcome: Option<OperationOutcome>,
        content_type: Option<String>,
        len: usize,
    ) -> Error {
        Self::new(status, outcome, content_type, len).into()
    }

    /// The failure for an error status: `len` bytes of `content_type` came back,
    /// `outcome` if they were an OperationOutcome.
    pub fn new(
        status: u16,
        outcome: Option<OperationOutcome>,
        content_type: Option<String>,
        len: usize,
    ) -> Self {
        let outcome = outcome.map(|mut o| {
            for issue in &mut o.issue {
                if let Some(d) = &mut issue.diagnostics {
                    *d = redact_credentials(d);
                }
                if let Some(text) = issue.details.as_mut().and_then(|d| d.text.as_mut()) {
                    *text = redact_credentials(text);
                }
            }
            o
        });
        Self { status, outcome, content_type, len, retry_after: None }
    }

    /// With the server's `Retry-After` (a 429 or 503).
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// How long the server asked to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The server's OperationOutcome, if it sent one.
    pub fn operation_outcome(&self) -> Option<&OperationOutcome> {
        self.outcome.as_ref()
    }
}

impl fmt::Display for FhirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status;
        match &self.outcome {
            Some(outcome) => {
                write!(f, "the FHIR server answered HTTP {status}")?;
                for issue in &outcome.issue {
                    let severity = issue.severity.as_deref().unwrap_or("(no severity)");
                    write!(f, "; {severity} {}", issue.code.as_deref().unwrap_or("(no code)"))?;
                    if let Some(d) = &issue.diagnostics {
                        write!(f, ": {d}")?;
                    }
                }
                Ok(())
            }
            None => write!(
                f,
                "the FHIR server answered HTTP {status} without an OperationOutcome ({}, {} bytes)",
                self.content_type.as_deref().unwrap_or("no content type"),
                self.len
            ),
        }
    }
}

impl std::error::Error for FhirError {}

impl From<FhirError> for Error {
    fn from(failure: FhirError) -> Self {
        Error::api(failure.status, failure)
    }
}

/// FHIR queries on [`auth_core::Error`].
pub trait FhirErrorExt {
    /// The OperationOutcome of a FHIR error status, when the server sent one.
    fn operation_outcome(&self) -> Option<&OperationOutcome>;
}

impl FhirErrorExt for Error {
    fn operation_outcome(&self) -> Option<&OperationOutcome> {
        self.api_detail::<FhirError>().and_then(FhirError::operation_outcome)
    }
}
