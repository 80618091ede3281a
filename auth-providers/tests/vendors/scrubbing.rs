//! Every provider's token requests know their own secrets: an identity provider
//! that echoes *everything* it received (every header, the raw body, each form
//! field, and the decoded `id:secret` of every Basic header) into its
//! `error_description` produces an error in which none of them survives.
//!
//! One test per provider, each with the headers only it sends: SanteDB's device
//! Basic header (`X-Device-Authorization` on 2.x, `Authorization` on 3.x), Aidbox's
//! raw Basic credentials and its Session close with the bearer, Graphnet's
//! subscription key on the token request, SMART's signed assertion, MSK's secret
//! in the body, and the generic source's Basic header, refresh and revocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use auth_core::oauth2::OAuth2Source;
use auth_core::request::BasicEncoding;
use auth_core::{
    AccessToken, ClientSecret, CredentialSource, DeviceSecret, Error, FetchContext, IdToken, PrivateKeyPem,
    RefreshToken, SecretValue, Token,
};
use auth_providers::aidbox::{AidboxAuthStyle, AidboxSource, SessionEndpoint};
use auth_providers::graphnet::GraphnetSource;
use auth_providers::msk::MskSource;
use auth_providers::santedb::{SanteDbSource, SanteDbVersion};
use auth_providers::smart::{SigningAlgorithm, SmartSource};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const CLIENT_SECRET: &str = "CANARY-client-secret-1f2e";
const DEVICE_SECRET: &str = "CANARY-device-secret-3d4c";
const SUBSCRIPTION_KEY: &str = "CANARY-subscription-key-5b6a";
const REFRESH: &str = "CANARY-refresh-token-7980";
const ACCESS: &str = "CANARY-access-token-a0b1";
const ID_TOKEN: &str = "CANARY-id-token-c2d3";

/// Everything the echo server received, for checking it really carried the
/// secrets: the text it echoed, and the credential headers as sent.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>);

/// The headers whose values are credentials.
const CREDENTIAL_HEADERS: [&str; 3] =
    ["authorization", "x-device-authorization", "ocp-apim-subscription-key"];

/// Answers every request 401 `invalid_client` whose description repeats all of
/// it, including what Basic headers decode to.
async fn echo(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut echoed = Vec::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some((_, b64)) = value.split_once(' ')
            && let Ok(decoded) = STANDARD.decode(b64.trim())
        {
            echoed.push(format!("{name} decodes to {}", String::from_utf8_lossy(&decoded)));
        }
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            received.1.lock().unwrap().push(value.clone());
        }
        echoed.push(format!("{name}: {value}"));
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    for (k, v) in form_urlencoded::parse(body.as_bytes()) {
        echoed.push(format!("{k}={v}"));
    }
    echoed.push(format!("body {body}"));
    let text = echoed.join("; ");
    received.0.lock().unwrap().push(text.clone());
    let description = serde_json::json!({"error": "invalid_client", "error_description": text});
    (StatusCode::UNAUTHORIZED, axum::Json(description))
}

/// The echo server's base URL, and what it received.
async fn echo_server() -> (String, Received) {
    let received = Received::default();
    let app = Router::new().fallback(any(echo)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// The error must be the OAuth error the echo sent, carrying `[redacted]` where
/// the secrets were, and none of `secrets` in any form anywhere.
fn assert_scrubbed(what: &str, error: &Error, received: &Received, secrets: &[&str]) {
    let sent = received.0.lock().unwrap().last().cloned().unwrap_or_default();
    assert!(
        secrets.iter().all(|s| sent.contains(s)),
        "{what}: the request did not carry every secret: {sent}"
    );
    assert_eq!(error.oauth_error().map(|e| e.code.as_str()), Some("invalid_client"), "{what}: {error}");
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(shown.contains("[redacted]"), "{what}: nothing was redacted: {shown}");
    for secret in secrets {
        let forms = [
            (*secret).to_owned(),
            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            STANDARD.encode(secret),
        ];
        for form in forms {
            assert!(!shown.contains(&form), "{what} leaks `{form}`: {shown}");
        }
    }
    assert!(!shown.to_ascii_lowercase().contains("canary"), "{what} leaks a canary: {shown}");
    // Every credential header as it went out: `Basic base64(id:secret)` must not
    // come back as its base64 either.
    for value in received.1.lock().unwrap().iter() {
        for part in value.split_whitespace().filter(|p| p.len() >= 8) {
            assert!(!shown.contains(part), "{what} leaks the header credential `{part}`: {shown}");
        }
    }
}

fn token(value: &str, id_token: Option<&str>) -> Token {
    let now = SystemTime::now();
    let token = Token::new(AccessToken::new(value), now, now + Duration::from_secs(300)).unwrap();
    match id_token {
        Some(id) => token.with_id_token(IdToken::new(id)),
        None => token,
    }
}

#[tokio::test]
async fn santedb_scrubs_its_device_headers_and_sign_out() {
    for version in [SanteDbVersion::V2, SanteDbVersion::V3] {
        let (base, received) = echo_server().await;
        let source = SanteDbSource::builder(&base, "APP", ClientSecret::new(CLIENT_SECRET))
            .version(version)
            .device("NODE", DeviceSecret::new(DEVICE_SECRET))
            .sign_out(true)
            .build()
            .unwrap();
        let e = source.fetch(&FetchContext::default()).await.unwrap_err();
        assert_scrubbed(
            &format!("santedb {version:?} fetch"),
            &e,
            &received,
            &[CLIENT_SECRET, DEVICE_SECRET],
        );
        let e = source.refresh(&FetchContext::default(), &RefreshToken::new(REFRESH)).await.unwrap_err();
        assert_scrubbed(&format!("santedb {version:?} refresh"), &e, &received, &[DEVICE_SECRET, REFRESH]);
        let e = source.revoke(&token(ACCESS, Some(ID_TOKEN))).await.unwrap_err();
        assert_scrubbed(&format!("santedb {version:?} sign-out"), &e, &received, &[ID_TOKEN]);
    }
}

#[tokio::test]
async fn aidbox_scrubs_its_basic_credentials_json_body_and_session_close() {
    for style in [AidboxAuthStyle::BasicForm, AidboxAuthStyle::Json, AidboxAuthStyle::FormPost] {
        let (base, received) = echo_server().await;
        let source = AidboxSource::builder(&base, "api-client", ClientSecret::new(CLIENT_SECRET))
            .auth_style(style)
            .session_endpoint(SessionEndpoint::Root)
            .build()
            .unwrap();
        let e = source.fetch(&FetchContext::default()).await.unwrap_err();
        assert_scrubbed(&format!("aidbox {style:?} fetch"), &e, &received, &[CLIENT_SECRET]);
        let e = source.refresh(&FetchContext::default(), &RefreshToken::new(REFRESH)).await.unwrap_err();
        assert_scrubbed(&format!("aidbox {style:?} refresh"), &e, &received, &[REFRESH]);
    }
    // Closing a Session sends the bearer; a 401 there means "already closed", so
    // the echo answers 400 for this one.
    let (base, received) = echo_server().await;
    let source =
        AidboxSource::builder(&base, "api-client", ClientSecret::new(CLIENT_SECRET)).build().unwrap();
    received.1.lock().unwrap().clear();
    let closed = source.revoke(&token(ACCESS, None)).await;
    assert!(matches!(closed, Ok(true)), "a 401 on close is an already closed Session: {closed:?}");
    assert!(received.0.lock().unwrap().last().is_some_and(|r| r.contains(ACCESS)), "the bearer was sent");
}

#[tokio::test]
async fn msk_scrubs_the_secret_in_its_body() {
    let (base, received) = echo_server().await;
    let source = MskSource::builder(&base, "MSK_CLIENT", ClientSecret::new(CLIENT_SECRET))
        .partner_id("PARTNER")
        .research_study("FHIR-T")
        .build()
        .unwrap();
    let e = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_scrubbed("msk fetch", &e, &received, &[CLIENT_SECRET]);
}

#[tokio::test]
async fn graphnet_scrubs_its_subscription_key_on_the_token_request() {
    let (base, received) = echo_server().await;
    let source = GraphnetSource::builder(
        format!("{base}/oauth/token"),
        "client",
        ClientSecret::new(CLIENT_SECRET),
        SecretValue::new(SUBSCRIPTION_KEY),
    )
    .subscription_key_on_token_request(true)
    .build()
    .unwrap();
    let e = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_scrubbed("graphnet fetch", &e, &received, &[CLIENT_SECRET, SUBSCRIPTION_KEY]);
}

#[tokio::test]
async fn smart_scrubs_its_assertion() {
    let (base, received) = echo_server().await;
    let key = PrivateKeyPem::new(super::smart::keys(SigningAlgorithm::Es384).pkcs8);
    let source = SmartSource::builder("client", key, SigningAlgorithm::Es384, "kid-1")
        .token_url(format!("{base}/token"))
        .scopes(["system/Patient.rs"])
        .build()
        .unwrap();
    let e = source.fetch(&FetchContext::default()).await.unwrap_err();
    let sent = received.0.lock().unwrap().last().cloned().unwrap_or_default();
    let assertion = sent
        .split("; ")
        .find_map(|part| part.strip_prefix("client_assertion="))
        .map(str::to_owned)
        .expect("the assertion was sent");
    assert_scrubbed("smart fetch", &e, &received, &[&assertion]);
}

#[tokio::test]
async fn the_generic_source_scrubs_basic_refresh_and_revocation() {
    for encoding in [BasicEncoding::FormUrlEncoded, BasicEncoding::Raw] {
        let (base, received) = echo_server().await;
        let source =
            OAuth2Source::builder(format!("{base}/token"), "client", ClientSecret::new(CLIENT_SECRET))
                .basic_encoding(encoding)
                .param("tenant", "CANARY-tenant-param-e4f5")
                .revocation_url(format!("{base}/revoke"))
                .build()
                .unwrap();
        let e = source.fetch(&FetchContext::default()).await.unwrap_err();
        assert_scrubbed("oauth2 fetch", &e, &received, &[CLIENT_SECRET, "CANARY-tenant-param-e4f5"]);
        let e = source.refresh(&FetchContext::default(), &RefreshToken::new(REFRESH)).await.unwrap_err();
        assert_scrubbed("oauth2 refresh", &e, &received, &[CLIENT_SECRET, REFRESH]);
        let e = source.revoke(&token(ACCESS, None)).await.unwrap_err();
        assert_scrubbed("oauth2 revocation", &e, &received, &[CLIENT_SECRET, ACCESS]);
    }
}
