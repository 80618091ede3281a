//! Least privilege from the macro: the SMART v2 scopes `#[authenticated_api]`
//! derives for a generated client, one token manager serving several scope sets
//! (one cached token each), and a token from oidc-provider restricted to exactly
//! the client's scopes. Also the per-manager request parameters: an RFC 8707
//! `resource` indicator becomes the token's audience.

use auth_core::oauth2::OAuth2Source;
use auth_core::request::ClientAuthMethod;
use auth_core::{ClientSecret, Result, TokenManager};
use auth_fhir::{Bundle, Created, FhirClient, Observation, Patient};
use auth_macros::authenticated_api;
use serde_json::Value;

use crate::conformance::{OidcServer, jwt_part, shared_server};

/// Scopes the provider knows besides the suite's default ones: those the
/// generated client below needs, and one narrower still.
pub(crate) const EXTRA_SCOPES: &[&str] = &["system/Observation.c", "system/Patient.r"];

/// Reads and searches patients, records observations: nothing else. Its calls
/// are not made here (oidc-provider is no FHIR server): its `SCOPES` are the point.
#[allow(dead_code, reason = "generated for its SCOPES")]
struct Recorder {
    fhir: FhirClient,
}

#[authenticated_api]
#[allow(dead_code, reason = "generated for its SCOPES")]
impl Recorder {
    #[get("Patient/{id}")]
    async fn patient(&self, id: &str) -> Result<Patient>;

    #[get("Patient")]
    async fn find(&self, #[query] identifier: &str) -> Result<Bundle<Patient>>;

    #[post("Observation")]
    async fn record(&self, #[body] observation: &Observation) -> Result<Created<Observation>>;
}

/// The broad source: every scope the provider knows.
fn broad(server: &OidcServer) -> OAuth2Source {
    OAuth2Source::builder(server.token_url(), "basic-client", ClientSecret::new("basic-secret-0123456789"))
        .auth_method(ClientAuthMethod::ClientSecretBasic)
        .scopes(["system/Patient.rs", "system/Observation.rs", "system/Observation.c"])
        .build()
        .expect("valid configuration")
}

fn granted(token: &auth_core::Token) -> Vec<String> {
    let claims = jwt_part(token.access_token().expose_secret(), 1);
    let mut scopes: Vec<String> =
        claims["scope"].as_str().expect("a scope claim").split(' ').map(str::to_owned).collect();
    scopes.sort();
    scopes
}

#[tokio::test]
async fn a_generated_client_gets_a_token_with_exactly_its_scopes() {
    assert_eq!(Recorder::SCOPES, ["system/Observation.c", "system/Patient.rs"]);
    let server = shared_server();
    let tokens = TokenManager::new(broad(server));
    let narrow = tokens.scoped(Recorder::SCOPES).expect("a scoped manager");
    let narrower = tokens.scoped(["system/Patient.r"]).expect("a scoped manager");

    let token = narrow.token().await.expect("a token");
    assert_eq!(granted(&token), Recorder::SCOPES, "the token allows exactly what the client needs");
    assert_eq!(granted(&narrower.token().await.expect("a token")), ["system/Patient.r"]);
    let wide = tokens.token().await.expect("a token");
    assert_eq!(granted(&wide), ["system/Observation.c", "system/Observation.rs", "system/Patient.rs"]);

    // One cached token per set: asking again fetches nothing, the same set gives
    // the same manager, and the broad token is not handed to the narrow client.
    assert_eq!(narrow.token().await.expect("cached").access_token(), token.access_token());
    let again = tokens.scoped(["system/Patient.rs", "system/Observation.c"]).expect("the same manager");
    assert_eq!(again.token().await.expect("cached").access_token(), token.access_token());
    assert_eq!((narrow.stats().fetches, tokens.stats().fetches), (1, 1));
    assert_ne!(wide.access_token(), token.access_token());
}

#[tokio::test]
async fn a_resource_indicator_becomes_the_tokens_audience() {
    let server = shared_server();
    let other = "https://other.example/r4";
    let source = OAuth2Source::builder(
        server.token_url(),
        "basic-client",
        ClientSecret::new("basic-secret-0123456789"),
    )
    .scopes(["system/Patient.rs"])
    .resource(other)
    .build()
    .expect("valid configuration");
    let default = TokenManager::new(broad(server)).token().await.expect("a token");
    let token = TokenManager::new(source).token().await.expect("a token");
    let aud = |t: &auth_core::Token| jwt_part(t.access_token().expose_secret(), 1)["aud"].clone();
    assert_eq!(aud(&token), Value::from(other));
    assert_ne!(aud(&default), Value::from(other));
}
