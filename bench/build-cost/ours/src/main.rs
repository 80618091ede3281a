//! Minimal Patient app on auth-core + auth-fhir + auth-macros: an OAuth 2.0 client-credentials
//! token, a typed client from `#[authenticated_api]`, read a Patient by id and
//! search Patients by name, printing names.
//!
//! Configuration from the environment: `TOKEN_URL`, `CLIENT_ID`, `CLIENT_SECRET`,
//! `SCOPE` (optional), `FHIR_BASE`, `PATIENT_ID`, `NAME`.
use auth_core::oauth2::OAuth2Source;
use auth_core::{AuthClient, ClientSecret, Result, TokenManager};
use auth_fhir::{Bundle, FhirClient, HumanName, Patient};
use auth_macros::authenticated_api;

struct Patients {
    fhir: FhirClient,
}

#[authenticated_api]
impl Patients {
    #[get("Patient/{id}")]
    async fn read(&self, id: &str) -> Result<Patient>;
    #[get("Patient")]
    async fn search(&self, #[query] name: &str) -> Result<Bundle<Patient>>;
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn display(name: &HumanName) -> String {
    let mut parts: Vec<&str> = name.given.iter().map(String::as_str).collect();
    parts.extend(name.family.as_deref());
    parts.join(" ")
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let source = OAuth2Source::builder(
        env("TOKEN_URL", "https://idp.example/oauth2/token"),
        env("CLIENT_ID", "my-client"),
        ClientSecret::new(env("CLIENT_SECRET", "")),
    )
    .scopes(env("SCOPE", "system/Patient.rs").split_whitespace())
    .build()?;
    let tokens = TokenManager::new(source);
    let patients = Patients {
        fhir: FhirClient::new(AuthClient::new(tokens)?, &env("FHIR_BASE", "https://fhir.example/r4"))?,
    };

    let id = env("PATIENT_ID", "123");
    let patient = patients.read(&id).await?;
    for name in &patient.name {
        println!("Patient/{id}: {}", display(name));
    }

    let bundle = patients.search(&env("NAME", "chalmers")).await?;
    for patient in bundle.matches() {
        let id = patient.id.as_deref().unwrap_or("?");
        for name in &patient.name {
            println!("found Patient/{id}: {}", display(name));
        }
    }
    Ok(())
}
