//! The sandbox is also a standalone server: bad requests and absurd settings must
//! get answers, never panics, and nothing it prints may leak a secret or token.

use std::time::Duration;

use auth_core::{CredentialSource, FetchContext};
use auth_providers::aidbox::AidboxSource;
use auth_providers::graphnet::GraphnetSource;
use auth_providers::msk::MskSource;
use auth_sandbox::{Sandbox, SandboxConfig};

#[tokio::test]
async fn absurd_page_numbers_get_a_400_and_the_server_lives_on() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox starts");
    let aidbox = sandbox.aidbox();
    let (id, secret) = aidbox.credentials();
    let source = AidboxSource::builder(aidbox.base_url(), id, secret).build().expect("valid source");
    let token = source.fetch(&FetchContext::default()).await.expect("a token");
    let http = reqwest::Client::new();
    for query in ["_page=18446744073709551615", "_page=9223372036854775807&_count=3"] {
        let response = http
            .get(format!("{}/Patient?{query}", aidbox.fhir_base()))
            .header("Authorization", token.bearer_header())
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(response.status(), 400, "{query}");
    }
    let ok = http
        .get(format!("{}/Patient?_count=2", aidbox.fhir_base()))
        .header("Authorization", token.bearer_header())
        .send()
        .await
        .expect("still serving");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_capped_not_a_panic() {
    let sandbox =
        Sandbox::start(SandboxConfig::default().with_token_lifetime(Duration::MAX)).await.expect("starts");
    let aidbox = sandbox.aidbox();
    let (id, secret) = aidbox.credentials();
    let source = AidboxSource::builder(aidbox.base_url(), id, secret).build().expect("valid source");
    source.fetch(&FetchContext::default()).await.expect("a token despite the absurd lifetime");
    let g = sandbox.graphnet();
    let graphnet =
        GraphnetSource::builder(g.token_url(), g.client_id(), g.client_secret(), g.subscription_key())
            .build()
            .expect("valid source");
    let token = graphnet.fetch(&FetchContext::default()).await.expect("a Graphnet token too");
    // Its JWT says the sandbox's longest lifetime (before the client's own bounds),
    // not `Duration::MAX`.
    let exp = auth_core::token::jwt_exp(token.access_token().expose_secret()).expect("a JWT with exp");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let longest = auth_sandbox::tokens::MAX_SANDBOX_LIFETIME.as_secs_f64();
    assert!(
        exp > now + longest - 3600.0 && exp <= now + longest + 60.0,
        "exp {exp} is not capped at {longest} s"
    );
    let m = sandbox.msk();
    let msk = MskSource::builder(m.base_url(), m.client_id(), m.client_secret())
        .partner_id(m.partner_id())
        .research_study(m.research_study())
        .build()
        .expect("valid source");
    msk.fetch(&FetchContext::default()).await.expect("an MSK token too");
}

#[tokio::test]
async fn the_registry_debug_shows_counts_not_secrets() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("starts");
    let aidbox = sandbox.aidbox();
    let (id, secret) = aidbox.credentials();
    let source = AidboxSource::builder(aidbox.base_url(), id, secret.clone()).build().expect("valid source");
    let token = source.fetch(&FetchContext::default()).await.expect("a token");
    for text in [format!("{:?}", aidbox.registry()), format!("{sandbox:?}")] {
        assert!(!text.contains(secret.expose_secret()), "{text}");
        assert!(!text.contains(token.access_token().expose_secret()), "{text}");
    }
    // It shows counts: the one token issued, after the one request.
    let debug = format!("{:?}", aidbox.registry());
    assert!(debug.contains("issued: 1") && debug.contains("requests: 1"), "{debug}");
}
