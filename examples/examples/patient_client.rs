//! A typed Patient client in under 40 lines, against the Aidbox emulator.
//! `cargo run -p examples --example patient_client`
use auth_core::{AuthClient, Result, TokenManager};
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_providers::aidbox::AidboxSource;
use auth_sandbox::{Sandbox, SandboxConfig};

struct Patients {
    fhir: FhirClient,
}

#[authenticated_api]
impl Patients {
    #[get("Patient/{id}")]
    async fn read(&self, id: &str) -> Result<Patient>;
    #[get("Patient")]
    async fn search(&self, #[query] name: &str) -> Result<Bundle<Patient>>;
    #[post("Patient")]
    async fn create(&self, #[body] patient: &Patient) -> Result<Created<Patient>>;
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let aidbox = sandbox.aidbox();
    let (client_id, secret) = aidbox.credentials();
    let tokens = TokenManager::new(AidboxSource::builder(aidbox.base_url(), client_id, secret).build()?);
    let patients = Patients { fhir: FhirClient::new(AuthClient::new(tokens)?, &aidbox.fhir_base())? };
    let created = patients.create(&Patient::new().with_name("Chalmers", ["Nora"])).await?;
    let id = created.id.unwrap_or_default();
    let read = patients.read(&id).await?;
    println!("created Patient/{id}: {:?} {:?}", read.name[0].given, read.name[0].family);
    let found = patients.search("chalmers").await?.matches().count();
    println!("{found} patients named Chalmers; token requests: {}", aidbox.token_requests());
    Ok(())
}
