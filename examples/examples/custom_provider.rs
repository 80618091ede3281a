//! A library author's view: a provider of your own, built from auth-core's parts,
//! plugged into a generated client. It gets single flight, refresh ahead, replay
//! and the hardened token transport without writing any of it.
//!
//! `cargo run -p examples --example custom_provider`

use async_trait::async_trait;
use auth_core::endpoint::{EndpointConfig, TokenEndpoint};
use auth_core::request::{ClientAuth, ClientAuthMethod, GrantParams, TokenRequest};
use auth_core::{
    ApiProfile, AuthClient, CacheKey, ClientSecret, CredentialSource, FetchContext, Result, Token,
    TokenManager,
};
use auth_fhir::{Bundle, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_sandbox::{Sandbox, SandboxConfig};

/// "Acme Health": client credentials as a JSON body, and an `X-Acme-Tenant` header
/// its API gateway wants on every request.
#[derive(Debug)]
struct AcmeHealth {
    endpoint: TokenEndpoint,
    client: ClientAuth,
    grant: GrantParams,
    tenant: String,
    key: CacheKey,
}

impl AcmeHealth {
    fn new(token_url: &str, client_id: &str, secret: ClientSecret, tenant: &str) -> Result<Self> {
        let endpoint = TokenEndpoint::new(token_url, EndpointConfig::default())?;
        let client = ClientAuth::new(client_id, secret, ClientAuthMethod::JsonBody);
        client.check()?;
        let mut grant = GrantParams::default();
        grant.add_scopes(["system/Patient.rs"]);
        // The tenant changes which token is issued to nobody, but it is part of the
        // request identity here: two tenants must not share a cached token.
        let key =
            CacheKey::builder("acme", endpoint.url().as_str(), client_id).param("tenant", tenant).build();
        // Refused now rather than on every request.
        ApiProfile::new().header("X-Acme-Tenant", tenant)?;
        Ok(Self { endpoint, client, grant, tenant: tenant.to_owned(), key })
    }

    /// What Acme's API gateway wants on every request.
    fn api_profile(&self) -> Result<ApiProfile> {
        ApiProfile::new().header("X-Acme-Tenant", &self.tenant)
    }
}

#[async_trait]
impl CredentialSource for AcmeHealth {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        // The request knows the client secret is secret: a server echoing it in an
        // error gets it redacted, with nothing to remember here.
        let request =
            TokenRequest::grant("client_credentials").grant_params(&self.grant).client_auth(&self.client);
        self.endpoint.request_token(ctx, request).await
    }
}

/// The application's client: the same macro, whatever the provider.
struct Patients {
    fhir: FhirClient,
}

#[authenticated_api]
impl Patients {
    #[get("Patient")]
    async fn by_identifier(&self, #[query] identifier: &str) -> Result<Bundle<Patient>>;
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    // The Aidbox emulator stands in for Acme's servers: it takes JSON client
    // credentials, which is all this provider needs.
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let aidbox = sandbox.aidbox();
    let (client_id, secret) = aidbox.credentials();
    let acme = AcmeHealth::new(&aidbox.token_url(), &client_id, secret, "tenant-42")?;
    let profile = acme.api_profile()?;
    let tokens = TokenManager::new(acme);
    let api = AuthClient::builder(tokens.clone()).profile(profile).build()?;
    let patients = Patients { fhir: FhirClient::new(api, &aidbox.fhir_base())? };

    let found = patients.by_identifier("urn:oid:1.2.36.146.595.217.0.1|12345").await?;
    for p in found.matches() {
        println!("found {:?} {:?}", p.name[0].given, p.name[0].family);
    }
    let sent = aidbox.last_token_request().and_then(|r| r.content_type.clone());
    println!("token request content type: {sent:?}; token requests: {}", aidbox.token_requests());
    println!("manager stats: {:?}", tokens.stats());
    Ok(())
}
