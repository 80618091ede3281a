//! The kick-off request: which data, which parameters, GET or POST.

use serde_json::{Value, json};
use url::Url;

use auth_core::{Error, Result};

use crate::client::FhirClient;

/// Which data an export covers (Bulk Data IG §"Bulk Data Kick-off Request").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExportLevel {
    /// Every resource the client may read: `[base]/$export`.
    System,
    /// The compartments of every patient: `[base]/Patient/$export`.
    Patients,
    /// The compartments of one Group's members: `[base]/Group/[id]/$export`.
    Group(String),
}

/// A Bulk Data `$export` kick-off, built up and then sent with
/// [`FhirClient::export`] (or run whole by [`BulkExport`](super::BulkExport)).
///
/// `_type` is sent once, comma-joined (some servers refuse it repeated);
/// `_typeFilter` once per filter. A GET carries them in the query; a POST
/// ([`ExportRequest::post`]) as a `Parameters` body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportRequest {
    level: ExportLevel,
    types: Vec<String>,
    since: Option<String>,
    type_filters: Vec<String>,
    output_format: Option<String>,
    post: bool,
    lenient: bool,
}

impl ExportRequest {
    /// A system-level export (`[base]/$export`).
    pub fn system() -> Self {
        Self::at(ExportLevel::System)
    }

    /// A patient-level export (`[base]/Patient/$export`).
    pub fn patients() -> Self {
        Self::at(ExportLevel::Patients)
    }

    /// A group-level export (`[base]/Group/[id]/$export`).
    pub fn group(id: &str) -> Result<Self> {
        if !valid_id(id) {
            return Err(Error::configuration("a Group id is 1 to 64 letters, digits, `-` and `.` (FHIR id)"));
        }
        Ok(Self::at(ExportLevel::Group(id.to_owned())))
    }

    fn at(level: ExportLevel) -> Self {
        Self {
            level,
            types: Vec::new(),
            since: None,
            type_filters: Vec::new(),
            output_format: None,
            post: false,
            lenient: false,
        }
    }

    /// Only these resource types (`_type`); adds to those given before.
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for t in types {
            for t in t.as_ref().split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if !self.types.iter().any(|have| have == t) {
                    self.types.push(t.to_owned());
                }
            }
        }
        self
    }

    /// Only resources changed after this FHIR instant (`_since`), such as the
    /// `transactionTime` of the previous export.
    pub fn since(mut self, instant: &str) -> Self {
        self.since = Some(instant.to_owned());
        self
    }

    /// Adds a `_typeFilter`: a search such as `Observation?status=final` (filters
    /// of one type are OR-ed by the server).
    pub fn type_filter(mut self, query: &str) -> Self {
        self.type_filters.push(query.to_owned());
        self
    }

    /// The `_outputFormat` (the server's default, NDJSON, when not set).
    pub fn output_format(mut self, format: &str) -> Self {
        self.output_format = Some(format.to_owned());
        self
    }

    /// Kicks off with `POST` and a `Parameters` body instead of `GET`.
    pub fn post(mut self) -> Self {
        self.post = true;
        self
    }

    /// Sends `Prefer: handling=lenient`: a server may ignore parameters it does not
    /// support (and say so in the error files) instead of refusing the export.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// The level.
    pub fn level(&self) -> &ExportLevel {
        &self.level
    }

    /// The resource types asked for (empty: all).
    pub fn resource_types(&self) -> &[String] {
        &self.types
    }

    /// Whether the kick-off is a `POST`.
    pub fn is_post(&self) -> bool {
        self.post
    }

    /// Whether the kick-off asks for lenient handling.
    pub fn is_lenient(&self) -> bool {
        self.lenient
    }

    /// Checks what the server would refuse anyway, before anything is sent.
    pub(crate) fn validate(&self) -> Result<()> {
        for t in &self.types {
            let valid = t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphanumeric());
            if !valid {
                return Err(Error::configuration(format!("`{t}` is not a FHIR resource type (_type)")));
            }
        }
        if let Some(since) = &self.since
            && crate::instant::parse_instant(since).is_none()
        {
            return Err(Error::configuration(format!(
                "`{since}` is not a FHIR instant (_since), such as 2024-01-31T00:00:00Z"
            )));
        }
        for filter in &self.type_filters {
            let valid = filter.split_once('?').is_some_and(|(t, q)| !t.is_empty() && !q.is_empty());
            if !valid {
                return Err(Error::configuration(format!(
                    "`{filter}` is not a _typeFilter (a search such as Observation?status=final)"
                )));
            }
        }
        Ok(())
    }

    /// The kick-off URL: with the parameters in its query for a GET.
    pub(crate) fn url(&self, fhir: &FhirClient) -> Result<Url> {
        let mut url = match &self.level {
            ExportLevel::System => fhir.url(&["$export"])?,
            ExportLevel::Patients => fhir.url(&["Patient", "$export"])?,
            ExportLevel::Group(id) => fhir.url(&["Group", id, "$export"])?,
        };
        if !self.post {
            let params = self.params();
            if !params.is_empty() {
                let mut query = url.query_pairs_mut();
                for (name, value) in &params {
                    query.append_pair(name, value);
                }
            }
        }
        Ok(url)
    }

    /// The `Parameters` body of a POST kick-off.
    pub(crate) fn parameters(&self) -> Value {
        let parameter: Vec<Value> = self
            .params()
            .into_iter()
            .map(|(name, value)| match name {
                "_since" => json!({"name": name, "valueInstant": value}),
                _ => json!({"name": name, "valueString": value}),
            })
            .collect();
        json!({"resourceType": "Parameters", "parameter": parameter})
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        if let Some(format) = &self.output_format {
            params.push(("_outputFormat", format.clone()));
        }
        if !self.types.is_empty() {
            params.push(("_type", self.types.join(",")));
        }
        if let Some(since) = &self.since {
            params.push(("_since", since.clone()));
        }
        for filter in &self.type_filters {
            params.push(("_typeFilter", filter.clone()));
        }
        params
    }

    /// A stable name for this request (level and parameters), under which
    /// [`BulkExport`](super::BulkExport) keeps its state by default.
    pub fn key(&self) -> String {
        let level = match &self.level {
            ExportLevel::System => "system".to_owned(),
            ExportLevel::Patients => "patients".to_owned(),
            ExportLevel::Group(id) => format!("group-{id}"),
        };
        let params: Vec<String> = self.params().into_iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{level}-{}", fingerprint(&params.join("&")))
    }
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A short, stable, non-cryptographic fingerprint (FNV-1a, 64 bits) for naming
/// saved state: a collision only matters between one user's own export requests.
fn fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn since_must_be_an_instant() {
        for bad in ["2024-01-31", "2023-02-29T00:00:00Z", "yesterday"] {
            let kind = ExportRequest::system().since(bad).validate().err().map(|e| e.kind());
            assert_eq!(kind, Some(auth_core::ErrorKind::Configuration), "{bad}");
        }
        assert!(ExportRequest::system().since("2024-01-31T10:20:30.123+02:00").validate().is_ok());
    }

    #[test]
    fn bad_parameters_are_typed_errors_before_anything_is_sent() {
        let kinds = [
            ExportRequest::system().types(["patient"]).validate(),
            ExportRequest::system().since("last week").validate(),
            ExportRequest::system().type_filter("status=final").validate(),
        ];
        for k in kinds {
            assert_eq!(k.unwrap_err().kind(), auth_core::ErrorKind::Configuration);
        }
        assert!(ExportRequest::group("a/b").is_err());
        assert!(ExportRequest::group("").is_err());
    }

    #[test]
    fn types_are_joined_once_and_filters_repeated() {
        let r = ExportRequest::system()
            .types(["Patient", "Observation,Condition"])
            .types(["Patient"])
            .type_filter("Observation?status=final")
            .type_filter("Condition?clinical-status=active")
            .since("2024-01-31T00:00:00Z");
        let p = r.params();
        assert_eq!(p[0], ("_type", "Patient,Observation,Condition".to_owned()));
        assert_eq!(p.iter().filter(|(n, _)| *n == "_typeFilter").count(), 2);
        let body = r.parameters();
        assert_eq!(body["parameter"][1]["valueInstant"], "2024-01-31T00:00:00Z");
        assert_eq!(r.key(), r.clone().key());
        assert_ne!(r.key(), r.clone().since("2024-02-01T00:00:00Z").key());
    }
}
