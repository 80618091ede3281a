//! The minimal Patient app of ../ours on fhir-sdk 0.16 (R4B): an OAuth 2.0
//! client-credentials token (fetched by a `LoginManager`, renewed by fhir-sdk's auth
//! callback on a 401), read a Patient by id and search Patients by name, printing names.
//!
//! Configuration from the environment, as ../ours: `TOKEN_URL`, `CLIENT_ID`,
//! `CLIENT_SECRET`, `SCOPE` (optional), `FHIR_BASE`, `PATIENT_ID`, `NAME`.
use fhir_sdk::client::{Client, LoginManager, RequestSettings, SearchParameters, StringSearch};
use fhir_sdk::r4b::resources::Patient;
use fhir_sdk::r4b::types::HumanName;
use fhir_sdk::version::FhirR4B;
use fhir_sdk::{HeaderValue, HttpClient, header};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// RFC 6749 §4.4 client credentials, `client_secret_basic` (ours' default).
struct ClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: String,
}

impl LoginManager for ClientCredentials {
    type Error = BoxError;

    async fn authenticate(&mut self, http: HttpClient) -> Result<HeaderValue, BoxError> {
        let response = http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", self.scope.as_str())])
            .send()
            .await?
            .error_for_status()?;
        let body: serde_json::Value = response.json().await?;
        let token = body
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .ok_or("token response without access_token")?;
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn display(name: &HumanName) -> String {
    let mut parts: Vec<&str> = name.given.iter().flatten().map(String::as_str).collect();
    parts.extend(name.family.as_deref());
    parts.join(" ")
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut login = ClientCredentials {
        token_url: env("TOKEN_URL", "https://idp.example/oauth2/token"),
        client_id: env("CLIENT_ID", "my-client"),
        client_secret: env("CLIENT_SECRET", ""),
        scope: env("SCOPE", "system/Patient.rs"),
    };
    let http = HttpClient::builder().build()?;
    // The first token up front (as ours does), then fhir-sdk calls the login manager again
    // whenever the server answers 401.
    let bearer = login.authenticate(http.clone()).await?;
    let client: Client<FhirR4B> = Client::builder()
        .base_url(env("FHIR_BASE", "https://fhir.example/r4").parse()?)
        .client(http)
        .request_settings(RequestSettings::default().header(header::AUTHORIZATION, bearer))
        .auth_callback(login)
        .build()?;

    let id = env("PATIENT_ID", "123");
    let patient = client.read::<Patient>(&id).await?.ok_or("Patient not found")?;
    for name in patient.name.iter().flatten() {
        println!("Patient/{id}: {}", display(name));
    }

    let name = env("NAME", "chalmers");
    let page = client
        .search::<Patient>(SearchParameters::empty().and(StringSearch::Standard { name: "name", value: &name }))
        .await?;
    for patient in page.matches() {
        let id = patient.id.as_deref().unwrap_or("?");
        for name in patient.name.iter().flatten() {
            println!("found Patient/{id}: {}", display(name));
        }
    }
    Ok(())
}
