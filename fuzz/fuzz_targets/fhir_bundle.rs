//! FHIR deserialization of untrusted bodies: `Bundle` (typed and untyped entries),
//! `OperationOutcome`, `Patient` and a transaction response, and what the client does with them afterwards
//! (next link, matches, re-serialization, an error's Display). Never panics.
#![no_main]

use auth_fhir::{Bundle, FhirError, JsonResource, OperationOutcome, Patient, TransactionResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = serde_json::from_slice::<Bundle<Patient>>(data) {
        let _ = bundle.next_link();
        let _ = bundle.matches().count();
        let _ = serde_json::to_vec(&bundle);
        let _ = bundle.into_matches().count();
    }
    if let Ok(bundle) = serde_json::from_slice::<Bundle<JsonResource>>(data) {
        let _ = bundle.link("self");
        let _ = serde_json::to_vec(&bundle);
    }
    if let Ok(bundle) = serde_json::from_slice::<JsonResource>(data) {
        // A batch or transaction response, read into per-entry outcomes.
        if let Ok(response) = TransactionResponse::from_bundle(bundle) {
            let _ = response.entries.iter().map(|e| (e.id(), e.is_success())).count();
        }
    }
    if let Ok(patient) = serde_json::from_slice::<Patient>(data) {
        let _ = serde_json::to_vec(&patient);
    }
    let outcome = serde_json::from_slice::<OperationOutcome>(data).ok();
    if let Some(o) = &outcome {
        let _ = serde_json::to_vec(o);
    }
    let error = FhirError::into_error(400, outcome, Some("application/fhir+json".into()), data.len());
    let _ = format!("{error} {error:?}");
});
