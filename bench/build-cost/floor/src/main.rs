//! The floor of the build-cost comparison: the two API calls of ../ours (read a
//! Patient by id, search Patients by name, printing names) with reqwest, rustls,
//! tokio and serde_json alone. The bearer comes from the environment: no token logic.
//!
//! Configuration from the environment: `ACCESS_TOKEN`, `FHIR_BASE`, `PATIENT_ID`, `NAME`.
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// "given… family" of every name of a Patient resource.
fn names(patient: &Value) -> Vec<String> {
    let list = patient.get("name").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .map(|name| {
            let mut parts: Vec<&str> = name
                .get("given")
                .and_then(Value::as_array)
                .map(|given| given.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            parts.extend(name.get("family").and_then(Value::as_str));
            parts.join(" ")
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // reqwest without a built-in provider (as ours): rustls with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build()?;
    let base = env("FHIR_BASE", "https://fhir.example/r4");
    let token = env("ACCESS_TOKEN", "");

    let id = env("PATIENT_ID", "123");
    let patient: Value = http
        .get(format!("{base}/Patient/{id}"))
        .bearer_auth(&token)
        .header("accept", "application/fhir+json")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for name in names(&patient) {
        println!("Patient/{id}: {name}");
    }

    let bundle: Value = http
        .get(format!("{base}/Patient"))
        .query(&[("name", env("NAME", "chalmers"))])
        .bearer_auth(&token)
        .header("accept", "application/fhir+json")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for patient in entries.iter().filter_map(|e| e.get("resource")) {
        let id = patient.get("id").and_then(Value::as_str).unwrap_or("?");
        for name in names(patient) {
            println!("found Patient/{id}: {name}");
        }
    }
    Ok(())
}
