//! The SanteDB provider against the SanteDB emulator, over real HTTP(S) on
//! 127.0.0.1: the wire format of every node authentication mode (checked on the
//! server side), expiry resolution, refresh and sign-out, the 403 replay, content
//! negotiation, mutual TLS and the vendor's errors.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use auth_core::clock::ManualClock;
use auth_core::token::ExpirySource;
use auth_core::{
    AuthClient, ClientSecret, CredentialSource, DeviceSecret, ErrorKind, ExpiresInUnit, FetchContext,
    OAuthErrorCode, TokenManager,
};
use auth_providers::santedb::{
    DeviceHeader, NodeAuth, SanteDbClaims, SanteDbSource, SanteDbSourceBuilder, SanteDbVersion,
};
use auth_sandbox::tls::CertificateAuthority;
use auth_sandbox::{Sandbox, SandboxConfig, SanteDbEmulator};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The vendor guide's device header, character for character.
const SEED_DEVICE_HEADER: &str =
    "BASIC RVhBTVBMRV9ERVZJQ0VfTk9ERTpxbGNFdGJvRi1INVhkSzR4MXQtYXJMNUdhRzRzdkY5VGtMNWE=";
/// The vendor guide's request body, character for character (`$` unencoded).
const SEED_BODY: &str = "grant_type=client_credentials&scope=*&client_id=EXAMPLE_APPLICATION&client_secret=4toXrw0x-SpM1K4c7D$M0OkJcA1OgW4HeOlV";
/// The guide's form fields, in order.
const SEED_FIELDS: [(&str, &str); 4] = [
    ("grant_type", "client_credentials"),
    ("scope", "*"),
    ("client_id", "EXAMPLE_APPLICATION"),
    ("client_secret", "4toXrw0x-SpM1K4c7D$M0OkJcA1OgW4HeOlV"),
];
const DEVICE_REQUIRED: &str = "client_credentials grant type requires device authentication either using X509 \
     or X-Device-Authorization or enabling the DeviceAuthorizationAccessBehavior in the configuration.";

/// A clock at a whole second, so lifetimes computed from JWT `exp` are exact.
/// The emulator's generation for the provider's version.
fn server(version: SanteDbVersion) -> auth_sandbox::SanteDbServerVersion {
    match version {
        SanteDbVersion::V2 => auth_sandbox::SanteDbServerVersion::V2,
        _ => auth_sandbox::SanteDbServerVersion::V3,
    }
}

fn clock() -> ManualClock {
    ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

async fn sandbox_with(lifetime: Duration, clock: &ManualClock) -> Sandbox {
    let config = SandboxConfig::default().with_token_lifetime(lifetime).with_clock(clock.clone());
    Sandbox::start(config).await.unwrap()
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.unwrap()
}

fn ctx(clock: &ManualClock) -> FetchContext {
    FetchContext::new(Arc::new(clock.clone()))
}

/// A provider for the guide's application against the plain-HTTP listener.
fn provider(emu: &SanteDbEmulator, version: SanteDbVersion) -> SanteDbSourceBuilder {
    SanteDbSource::builder(emu.base_url(), emu.client_id(), emu.client_secret()).version(version)
}

fn with_device(emu: &SanteDbEmulator, version: SanteDbVersion) -> SanteDbSource {
    provider(emu, version).device(emu.device_id(), emu.device_secret()).build().unwrap()
}

fn mtls(emu: &SanteDbEmulator, version: SanteDbVersion) -> SanteDbSource {
    SanteDbSource::builder(emu.mtls_base_url(), emu.client_id(), emu.client_secret())
        .version(version)
        .client_certificate(emu.client_cert_pem(), emu.client_key_pem().clone())
        .root_certificate_pem(emu.ca_cert_pem())
        .build()
        .unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    STANDARD.encode(format!("{id}:{secret}"))
}

fn grant_types(emu: &SanteDbEmulator) -> Vec<String> {
    emu.token_log()
        .iter()
        .filter(|r| r.path == "/auth/oauth2_token")
        .map(|r| r.field("grant_type").unwrap_or_default().to_owned())
        .collect()
}

async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn the_guides_exchange_is_reproduced_byte_for_byte_and_by_the_provider() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(1800), &clock).await;
    let emu = sandbox.santedb();
    emu.set_version(server(SanteDbVersion::V2));
    // The guide's answer came 16 ms after the session began: expires_in 1799984.
    emu.set_expires_in_elapsed(Duration::from_millis(16));
    assert_eq!(SEED_BODY.len(), 118, "the guide's Content-Length");
    assert_eq!(
        format!("BASIC {}", basic(emu.device_id(), SanteDbEmulator::DEVICE_SECRET)),
        SEED_DEVICE_HEADER
    );

    // 1. The guide's request as printed, sent by hand.
    let response = reqwest::Client::new()
        .post(emu.token_url())
        .header("User-Agent", "Fiddler")
        .header("X-Device-Authorization", SEED_DEVICE_HEADER)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(SEED_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["access_token", "expires_in", "id_token", "refresh_token", "token_type"]);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1_799_984);
    for name in ["access_token", "refresh_token"] {
        let v = body[name].as_str().unwrap();
        assert!(
            v.len() == 96 && v.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            "{name}: {v}"
        );
    }
    // The id_token is signed with the client secret and says who and how long.
    let id = body["id_token"].as_str().unwrap();
    let key = jsonwebtoken::DecodingKey::from_secret(SanteDbEmulator::CLIENT_SECRET.as_bytes());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(id, &key, &validation).unwrap().claims;
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 1800);
    assert_eq!(claims["aud"], json!([SanteDbEmulator::CLIENT_ID]));
    assert_eq!(claims["scope"], json!(emu.policies()));
    for c in ["iss", "sub", "sid", "nbf", "urn:santedb:org:claim:appid", "urn:santedb:org:claim:devid"] {
        assert!(claims.get(c).is_some(), "claim {c} missing: {claims}");
    }
    let by_hand = emu.token_log().pop().unwrap();
    assert_eq!(by_hand.header("user-agent"), Some("Fiddler"));
    assert_eq!(by_hand.body, SEED_BODY);

    // 2. The provider sends the same request: same headers, same fields in the same
    //    order; only `$` is form-encoded, as a form body requires.
    let source = with_device(emu, SanteDbVersion::V2);
    let token = source.fetch(&ctx(&clock)).await.unwrap();
    let sent = emu.token_log().pop().unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/auth/oauth2_token");
    assert_eq!(sent.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(sent.header("x-device-authorization"), Some(SEED_DEVICE_HEADER));
    assert_eq!(sent.header("authorization"), None, "2.x: the device goes in X-Device-Authorization only");
    assert_eq!(sent.body, SEED_BODY.replace('$', "%24"));
    let fields: Vec<(&str, &str)> = sent.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(fields, SEED_FIELDS);
    assert!(!sent.mutual_tls);

    // 1799984 is milliseconds (30 minutes), and the id_token's exp agrees.
    assert_eq!(token.token_type(), "bearer");
    assert_eq!(token.lifetime(), Duration::from_secs(1800));
    assert_eq!(token.expiry_source(), ExpirySource::IdTokenExp);
    let claims = source.verify_claims(&token).unwrap();
    assert_eq!(claims.audience, [SanteDbEmulator::CLIENT_ID]);
    assert_eq!(claims.policies, emu.policies());
    assert!(claims.application_id.is_some() && claims.device_id.is_some() && claims.session_id.is_some());
    assert_eq!(claims.expires_at, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 1800)));
    assert_eq!(emu.token_requests_for(emu.client_id()), 2);
}

#[tokio::test]
async fn version_3_sends_the_device_in_authorization_basic_and_counts_seconds() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(1800), &clock).await;
    let emu = sandbox.santedb();
    assert_eq!(emu.version(), server(SanteDbVersion::V3));

    let source = with_device(emu, SanteDbVersion::V3);
    assert_eq!(source.node_auth(), NodeAuth::Device(DeviceHeader::AuthorizationBasic));
    let token = source.fetch(&ctx(&clock)).await.unwrap();
    let sent = emu.token_log().pop().unwrap();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/auth/oauth2_token"));
    assert_eq!(sent.header("content-type"), Some("application/x-www-form-urlencoded"));
    // Raw id:secret, not form-url-encoded, under the standard scheme name.
    let expected = format!("Basic {}", basic(SanteDbEmulator::DEVICE_ID, SanteDbEmulator::DEVICE_SECRET));
    assert_eq!(sent.header("authorization"), Some(expected.as_str()));
    assert_eq!(sent.header("x-device-authorization"), None);
    let fields: Vec<(&str, &str)> = sent.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(fields, SEED_FIELDS, "client credentials stay in the body on 3.x");
    assert_eq!(token.lifetime(), Duration::from_secs(1800));

    // The guide's request with the 3.x header: expires_in now counts seconds.
    let response = reqwest::Client::new()
        .post(emu.token_url())
        .header("Authorization", expected)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(SEED_BODY)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["token_type"], "bearer");

    // The guide's 2.x header means nothing to a 3.x server: no node, no session.
    let response = reqwest::Client::new()
        .post(emu.token_url())
        .header("X-Device-Authorization", SEED_DEVICE_HEADER)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(SEED_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "unauthorized_client", "error_description": DEVICE_REQUIRED}));
}

#[tokio::test]
async fn no_device_mode_sends_no_node_credentials() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(600), &clock).await;
    let emu = sandbox.santedb();
    let source = provider(emu, SanteDbVersion::V3).build().unwrap();
    assert_eq!(source.node_auth(), NodeAuth::None);

    // A server that requires a node says so, in SanteDB's words.
    let err = source.fetch(&ctx(&clock)).await.unwrap_err();
    let oauth = err.oauth_error().unwrap();
    assert_eq!((oauth.code.clone(), oauth.status), (OAuthErrorCode::UnauthorizedClient, 400));
    assert_eq!(oauth.description.as_deref(), Some(DEVICE_REQUIRED));
    assert!(!err.is_retryable());

    // One that allows node-less clients (allowNodelessClientAuth) issues a session.
    emu.set_require_device(false);
    let token = source.fetch(&ctx(&clock)).await.unwrap();
    let sent = emu.token_log().pop().unwrap();
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("x-device-authorization"), None);
    let fields: Vec<(&str, &str)> = sent.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(fields, SEED_FIELDS);
    let claims = source.claims(&token).unwrap().unwrap();
    assert_eq!(claims.device_id, None, "no node, no device claim");
    assert!(claims.application_id.is_some());
    assert_eq!(token.lifetime(), Duration::from_secs(600));
}

#[tokio::test]
async fn mutual_tls_authenticates_the_node_by_certificate_for_tokens_and_fhir() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    for version in [SanteDbVersion::V3, SanteDbVersion::V2] {
        emu.set_version(server(version));
        let source = mtls(emu, version);
        assert_eq!(source.node_auth(), NodeAuth::ClientCertificate);
        assert!(source.token_url().as_str().starts_with("https://127.0.0.1:"));
        let token = source.fetch(&FetchContext::default()).await.unwrap();
        let sent = emu.token_log().pop().unwrap();
        assert!(sent.mutual_tls);
        assert_eq!(sent.certificate_device.as_deref(), Some(SanteDbEmulator::CERT_DEVICE_ID));
        assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/auth/oauth2_token"));
        assert_eq!(sent.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(sent.header("authorization"), None, "the certificate is the node's only credential");
        assert_eq!(sent.header("x-device-authorization"), None);
        let fields: Vec<(&str, &str)> = sent.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(fields, SEED_FIELDS);
        assert!(
            source.claims(&token).unwrap().unwrap().device_id.is_some(),
            "the session has the cert's device"
        );
    }

    // The FHIR endpoint of the same listener, with the same client identity.
    let source = mtls(emu, SanteDbVersion::V2);
    let fhir = source.fhir_base().to_owned();
    let (http, profile) = (source.api_http_client().clone(), source.api_profile());
    let client =
        AuthClient::builder(TokenManager::new(source)).http_client(http).profile(profile).build().unwrap();
    let response = client.get(format!("{fhir}/Patient")).query(&[("name", "Chalmers")]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(bundle["total"], 3);
}

#[tokio::test]
async fn mutual_tls_refuses_a_missing_or_untrusted_certificate_in_the_handshake() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let base = || SanteDbSource::builder(emu.mtls_base_url(), emu.client_id(), emu.client_secret());

    // Trusting the server is not enough: no client certificate, no connection.
    let anonymous = base().root_certificate_pem(emu.ca_cert_pem()).build().unwrap();
    let err = anonymous.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(eventually(|| emu.refused_handshakes() >= 1).await);

    // A certificate for the right device from another CA is refused as well.
    let rogue =
        CertificateAuthority::new("Rogue CA").unwrap().issue_client(SanteDbEmulator::CERT_DEVICE_ID).unwrap();
    let untrusted = base()
        .client_certificate(rogue.cert_pem(), rogue.key_pem().clone())
        .root_certificate_pem(emu.ca_cert_pem())
        .build()
        .unwrap();
    let refused_before = emu.refused_handshakes();
    let err = untrusted.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(eventually(|| emu.refused_handshakes() > refused_before).await);

    // Neither reached HTTP: the emulator saw no request at all.
    assert!(emu.token_log().is_empty(), "{:?}", emu.token_log());
    assert_eq!(emu.token_requests_for(emu.client_id()), 0);

    // The FHIR endpoint is behind the same handshake.
    let plain = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emu.ca_cert_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    assert!(plain.get(format!("{}/Patient", emu.mtls_fhir_base())).send().await.is_err());
    assert!(emu.api_log().is_empty());

    // And a certificate from the emulator's CA for a new device gets in.
    let issued = emu.issue_client_certificate("SECOND_NODE").unwrap();
    let good = base()
        .client_certificate(issued.cert_pem(), issued.key_pem().clone())
        .root_certificate_pem(emu.ca_cert_pem())
        .build()
        .unwrap();
    good.fetch(&FetchContext::default()).await.unwrap();
    assert_eq!(emu.token_log().pop().unwrap().certificate_device.as_deref(), Some("SECOND_NODE"));

    // A client certificate only works over TLS: refused when building.
    let err = SanteDbSource::builder(emu.base_url(), emu.client_id(), emu.client_secret())
        .client_certificate(emu.client_cert_pem(), emu.client_key_pem().clone())
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    let err = base().client_certificate("not a pem", "nor this".into()).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
}

#[tokio::test]
async fn expiry_comes_from_the_id_token_first_then_expires_in_in_the_versions_unit() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(1800), &clock).await;
    let emu = sandbox.santedb();
    emu.set_require_device(false);
    emu.set_expires_in_elapsed(Duration::from_millis(16));
    let fetch = |version: SanteDbVersion, unit: Option<ExpiresInUnit>| {
        let mut b = provider(emu, version);
        if let Some(unit) = unit {
            b = b.expires_in_unit(unit);
        }
        let source = b.build().unwrap();
        let ctx = ctx(&clock);
        async move { source.fetch(&ctx).await.unwrap() }
    };

    // 2.x without an id_token: 1799984 is milliseconds.
    emu.set_version(server(SanteDbVersion::V2));
    emu.set_id_token(false);
    let t = fetch(SanteDbVersion::V2, None).await;
    assert_eq!((t.lifetime().as_millis(), t.expiry_source()), (1_799_984, ExpirySource::ExpiresIn));
    // Read as seconds it would be 20 days (cut to the 24 h ceiling): why the unit matters.
    let t = fetch(SanteDbVersion::V3, None).await;
    assert_eq!(t.lifetime(), Duration::from_secs(24 * 3600));

    // 3.x without an id_token: seconds.
    emu.set_version(server(SanteDbVersion::V3));
    let t = fetch(SanteDbVersion::V3, None).await;
    assert_eq!((t.lifetime().as_secs(), t.expiry_source()), (1799, ExpirySource::ExpiresIn));

    // With an id_token its exp decides, even when expires_in in the configured unit
    // reads shorter (a 3.x server taken for 2.x: 1799 "ms").
    emu.set_id_token(true);
    let t = fetch(SanteDbVersion::V3, Some(ExpiresInUnit::Milliseconds)).await;
    assert_eq!(t.lifetime(), Duration::from_secs(1800));
    // …and when it reads longer (a 2.x server taken for 3.x: 1799984 "s").
    emu.set_version(server(SanteDbVersion::V2));
    let t = fetch(SanteDbVersion::V3, None).await;
    assert_eq!((t.lifetime(), t.expiry_source()), (Duration::from_secs(1800), ExpirySource::IdTokenExp));
    let t = fetch(SanteDbVersion::V2, None).await;
    assert_eq!(t.lifetime(), Duration::from_secs(1800));
}

#[tokio::test]
async fn refresh_sends_the_client_credentials_and_the_refresh_token_rotates() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(300), &clock).await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    let first = source.fetch(&ctx(&clock)).await.unwrap();
    let rt1 = first.refresh_token().unwrap().clone();

    clock.advance(Duration::from_secs(200));
    let second = source.refresh(&ctx(&clock), &rt1).await.unwrap().unwrap();
    let sent = emu.token_log().pop().unwrap();
    let names: Vec<&str> = sent.form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["grant_type", "refresh_token", "client_id", "client_secret"]);
    assert_eq!(sent.field("grant_type"), Some("refresh_token"));
    assert_eq!(sent.field("refresh_token"), Some(rt1.expose_secret()));
    assert_eq!(sent.field("client_id"), Some(SanteDbEmulator::CLIENT_ID));
    assert_eq!(sent.field("client_secret"), Some(SanteDbEmulator::CLIENT_SECRET));
    assert!(
        sent.header("authorization").is_some_and(|h| h.starts_with("Basic ")),
        "the node authenticates too"
    );

    // A new access token and a new refresh token, in the same (extended) session.
    assert!(!second.same_value(&first));
    let rt2 = second.refresh_token().unwrap();
    assert_ne!(rt2.expose_secret(), rt1.expose_secret());
    let (c1, c2) = (source.claims(&first).unwrap().unwrap(), source.claims(&second).unwrap().unwrap());
    assert_eq!(c1.session_id, c2.session_id);
    assert_eq!(second.lifetime(), Duration::from_secs(300));

    // The used refresh token is spent.
    let err = source.refresh(&ctx(&clock), &rt1).await.unwrap_err();
    let oauth = err.oauth_error().unwrap();
    assert_eq!(oauth.code, OAuthErrorCode::InvalidGrant);
    assert_eq!(oauth.description.as_deref(), Some("invalid refresh token"));
    assert!(!err.to_string().contains(rt1.expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_refreshes_with_the_rotated_token_and_falls_back_to_client_credentials() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(300), &clock).await;
    let emu = sandbox.santedb();
    let manager = TokenManager::builder(with_device(emu, SanteDbVersion::V3)).clock(clock.clone()).build();
    let mut current = manager.token().await.unwrap();
    let mut used_refresh_tokens = Vec::new();

    // Two refreshes ahead of expiry: each must present the token the previous one rotated in.
    for _ in 0..2 {
        used_refresh_tokens.push(current.refresh_token().unwrap().expose_secret().to_owned());
        clock.advance(Duration::from_secs(245));
        let served = manager.token().await.unwrap();
        assert!(served.same_value(&current), "callers keep the current token during the refresh");
        assert!(eventually(|| manager.cached().is_some_and(|t| !t.same_value(&current))).await);
        current = manager.token().await.unwrap();
    }
    let refreshes: Vec<String> = emu
        .token_log()
        .iter()
        .filter(|r| r.field("grant_type") == Some("refresh_token"))
        .map(|r| r.field("refresh_token").unwrap().to_owned())
        .collect();
    assert_eq!(refreshes, used_refresh_tokens);
    assert_ne!(refreshes[0], refreshes[1], "rotated");

    // The server forgets refresh tokens: the manager falls back to client credentials.
    emu.set_accept_refresh(false);
    let session_before = SanteDbClaims::from_token(&current).unwrap().unwrap().session_id;
    clock.advance(Duration::from_secs(245));
    manager.token().await.unwrap();
    assert!(eventually(|| manager.cached().is_some_and(|t| !t.same_value(&current))).await);
    let fresh = manager.token().await.unwrap();
    assert_ne!(
        SanteDbClaims::from_token(&fresh).unwrap().unwrap().session_id,
        session_before,
        "a new session"
    );
    assert_eq!(
        grant_types(emu),
        ["client_credentials", "refresh_token", "refresh_token", "refresh_token", "client_credentials"]
    );
    assert_eq!(manager.stats().refreshes, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresh_tokens_the_manager_asks_for_a_new_session() {
    let clock = clock();
    let sandbox = sandbox_with(Duration::from_secs(300), &clock).await;
    let emu = sandbox.santedb();
    emu.set_refresh_tokens(false);
    let manager = TokenManager::builder(with_device(emu, SanteDbVersion::V3)).clock(clock.clone()).build();
    let first = manager.token().await.unwrap();
    assert!(first.refresh_token().is_none());
    clock.advance(Duration::from_secs(245));
    manager.token().await.unwrap();
    assert!(eventually(|| manager.cached().is_some_and(|t| !t.same_value(&first))).await);
    assert_eq!(grant_types(emu), ["client_credentials", "client_credentials"]);
}

#[tokio::test]
async fn sign_out_abandons_the_session() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    assert_eq!(source.signout_url().map(|u| u.as_str().to_owned()), Some(emu.signout_url()));
    let manager = TokenManager::new(source.clone());
    let token = manager.token().await.unwrap();
    let http = reqwest::Client::new();
    let read = |bearer: String| {
        http.get(format!("{}/Patient", emu.fhir_base()))
            .header("Authorization", bearer)
            .header("Accept", "application/fhir+json")
            .send()
    };
    let bearer = || token.bearer_header().to_str().unwrap().to_owned();
    assert_eq!(read(bearer()).await.unwrap().status(), 200);

    assert!(manager.revoke().await.unwrap(), "3.x signs out");
    let sent = emu.token_log().pop().unwrap();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/auth/signout"));
    assert_eq!(sent.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(sent.field("id_token_hint"), Some(token.id_token().unwrap().expose_secret()));
    assert_eq!(sent.field("client_id"), Some(SanteDbEmulator::CLIENT_ID));
    assert_eq!(sent.field("client_secret"), None, "sign-out does not need the secret");

    // The session is gone: its bearer is refused, its refresh token spent.
    let response = read(bearer()).await.unwrap();
    assert_eq!(response.status(), 403);
    let err = source.refresh(&FetchContext::default(), token.refresh_token().unwrap()).await.unwrap_err();
    assert_eq!(err.oauth_error().map(|o| o.code.clone()), Some(OAuthErrorCode::InvalidGrant));

    // Signing out twice, or with a forged id_token, is SanteDB's invalid_request.
    let err = source.revoke(&token).await.unwrap_err();
    let oauth = err.oauth_error().unwrap();
    assert_eq!(
        (oauth.code.clone(), oauth.description.as_deref()),
        (OAuthErrorCode::InvalidRequest, Some("invalid session"))
    );
    let forged = auth_sandbox::tokens::hs256_jwt(
        &json!({"aud": [SanteDbEmulator::CLIENT_ID], "sid": "x"}),
        b"not-the-client-secret",
    );
    let response = http
        .post(emu.signout_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("id_token_hint={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": "invalid_request", "error_description": "invalid token"})
    );

    // 2.x has no sign-out: revoke says so without sending anything.
    let before = emu.token_log().len();
    let v2 = with_device(emu, SanteDbVersion::V2);
    assert!(v2.signout_url().is_none());
    assert!(!v2.revoke(&token).await.unwrap());
    assert_eq!(emu.token_log().len(), before);
}

#[tokio::test]
async fn fhir_requests_ask_for_json_and_santedb_answers_xml_otherwise() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    let manager = TokenManager::new(source.clone());
    let client = AuthClient::builder(manager.clone())
        .http_client(source.api_http_client().clone())
        .profile(source.api_profile())
        .build()
        .unwrap();
    let fhir = source.fhir_base().to_owned();
    assert_eq!(fhir.as_str(), emu.fhir_base());

    let response = client.get(format!("{fhir}/Patient?name=Windsor")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/fhir+json");
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(bundle["entry"][0]["resource"]["name"][0]["family"], "Windsor");
    let seen = emu.api_log().pop().unwrap();
    assert_eq!(seen.accept.as_deref(), Some("application/fhir+json"));
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", "/fhir/Patient"));

    // The same request without the header: SanteDB's default, XML.
    let bearer = manager.token().await.unwrap().bearer_header();
    let http = reqwest::Client::new();
    let xml =
        http.get(format!("{fhir}/Patient?name=Windsor")).header("Authorization", bearer.clone()).send().await;
    let xml = xml.unwrap();
    assert_eq!(xml.status(), 200);
    assert_eq!(xml.headers()["content-type"], "application/fhir+xml");
    let text = xml.text().await.unwrap();
    assert!(text.starts_with("<?xml") && text.contains("<Bundle xmlns=\"http://hl7.org/fhir\">"), "{text}");
    assert!(text.contains("<family value=\"Windsor\"/>"), "{text}");
    // An Accept it can serve neither way.
    let html =
        http.get(format!("{fhir}/Patient")).header("Authorization", bearer).header("Accept", "text/html");
    assert_eq!(html.send().await.unwrap().status(), 406);
    // A caller's own Accept wins over the source's default.
    let mine =
        client.get(format!("{fhir}/Patient")).header("Accept", "application/fhir+xml").send().await.unwrap();
    assert_eq!(mine.headers()["content-type"], "application/fhir+xml");
}

#[tokio::test]
async fn a_403_invalid_token_is_replayed_once_with_a_new_token() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    let manager = TokenManager::new(source.clone());
    let client = AuthClient::builder(manager.clone())
        .http_client(source.api_http_client().clone())
        .profile(source.api_profile())
        .build()
        .unwrap();
    let url = format!("{}/Patient?name=Chalmers", source.fhir_base());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let old = manager.token().await.unwrap();

    emu.abandon_all_sessions();
    // What SanteDB says about the dead token: 403, lowercase scheme, no commas.
    let host = url::Url::parse(emu.base_url()).unwrap();
    let realm = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    let direct = reqwest::Client::new()
        .get(&url)
        .header("Authorization", old.bearer_header())
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 403);
    assert_eq!(
        direct.headers()["www-authenticate"],
        format!(
            "bearer realm=\"{realm}\" error=\"invalid_token\" error_description=\"Invalid bearer token\""
        )
        .as_str()
    );

    emu.clear_records();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "replayed with a fresh token");
    let statuses: Vec<u16> = emu.api_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 200], "exactly one replay");
    assert_eq!(emu.token_requests_for(emu.client_id()), 2);
    assert_eq!(manager.stats().invalidations, 1);
    assert!(!manager.token().await.unwrap().same_value(&old));
}

#[tokio::test]
async fn an_expired_token_is_a_401_and_is_replayed_too() {
    let emu_clock = ManualClock::new();
    let sandbox = sandbox_with(Duration::from_secs(300), &emu_clock).await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    // The client's clock does not move: only the server sees the token expire.
    let manager = TokenManager::new(source.clone());
    let client = AuthClient::builder(manager.clone())
        .http_client(source.api_http_client().clone())
        .profile(source.api_profile())
        .build()
        .unwrap();
    let url = format!("{}/Patient/pat-1", source.fhir_base());
    let before = manager.token().await.unwrap();
    emu_clock.advance(Duration::from_secs(301));

    let direct =
        reqwest::Client::new().get(&url).header("Authorization", before.bearer_header()).send().await;
    let direct = direct.unwrap();
    assert_eq!(direct.status(), 401);
    let challenge = direct.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("bearer realm=")
            && challenge.ends_with(" error=\"invalid_token\" error_description=\"Session expired\""),
        "{challenge}"
    );
    emu.clear_records();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "replayed with a fresh token");
    assert_eq!(response.json::<Value>().await.unwrap()["id"], "pat-1");
    let statuses: Vec<u16> = emu.api_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 200]);
    assert_eq!(emu.token_requests_for(emu.client_id()), 2);

    // Without any bearer: a challenge without an error code.
    let none = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(!none.headers()["www-authenticate"].to_str().unwrap().contains("error="));
}

#[tokio::test]
async fn wrong_credentials_are_typed_rfc_errors_with_the_vendors_words() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let ctx = FetchContext::default();

    // Wrong client secret.
    let wrong =
        SanteDbSource::builder(emu.base_url(), emu.client_id(), ClientSecret::new("wrong-secret-canary"))
            .device(emu.device_id(), emu.device_secret())
            .build()
            .unwrap();
    let err = wrong.fetch(&ctx).await.unwrap_err();
    let oauth = err.oauth_error().unwrap();
    assert_eq!((oauth.code.clone(), oauth.status), (OAuthErrorCode::InvalidClient, 400));
    assert_eq!(oauth.description.as_deref(), Some("invalid client_secret"));
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("wrong-secret-canary"));

    // Wrong device secret, in either version's header.
    for version in [SanteDbVersion::V3, SanteDbVersion::V2] {
        emu.set_version(server(version));
        let source = provider(emu, version).device(emu.device_id(), DeviceSecret::new("wrong-device-canary"));
        let err = source.build().unwrap().fetch(&ctx).await.unwrap_err();
        let oauth = err.oauth_error().unwrap();
        assert_eq!(oauth.code, OAuthErrorCode::Other("unspecified_error".into()), "{version:?}");
        assert_eq!((oauth.status, oauth.description.as_deref()), (401, Some("Invalid device credentials")));
        assert!(!format!("{err} {err:?}").contains("wrong-device-canary"));
    }
    emu.set_version(server(SanteDbVersion::V3));

    // What the provider cannot be made to send, sent by hand.
    let device = format!("Basic {}", basic(SanteDbEmulator::DEVICE_ID, SanteDbEmulator::DEVICE_SECRET));
    let post = |content_type: &'static str, body: &'static str, authorization: String| {
        reqwest::Client::new()
            .post(emu.token_url())
            .header("Content-Type", content_type)
            .header("Authorization", authorization)
            .body(body)
            .send()
    };
    let cases = [
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=*&client_secret=x",
            device.clone(),
            400,
            json!({"error": "invalid_grant", "error_description": "invalid client_id"}),
        ),
        (
            "application/x-www-form-urlencoded",
            "",
            device.clone(),
            400,
            json!({"error": "invalid_request", "error_description": "request is empty."}),
        ),
        (
            "application/x-www-form-urlencoded",
            "grant_type=password&client_id=EXAMPLE_APPLICATION",
            device.clone(),
            400,
            json!({"error": "unsupported_grant_type", "error_description": "unsupported grant type password"}),
        ),
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&client_id=EXAMPLE_APPLICATION&client_secret=4toXrw0x-SpM1K4c7D%24M0OkJcA1OgW4HeOlV",
            // A device secret with `:` as 3.x sees it: three parts.
            format!("Basic {}", basic("EXAMPLE_DEVICE_NODE", "qlc:Etbo")),
            403,
            json!({"error": "unspecified_error", "error_description": "Malformed HTTP Basic Header"}),
        ),
    ];
    for (content_type, body, authorization, status, answer) in cases {
        let response = post(content_type, body, authorization).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(response.json::<Value>().await.unwrap(), answer, "{body}");
    }
    // JSON is not a token request body SanteDB accepts.
    let json_body = reqwest::Client::new()
        .post(emu.token_url())
        .header("Authorization", device)
        .json(&json!({"grant_type": "client_credentials", "client_id": "EXAMPLE_APPLICATION",
                      "client_secret": SanteDbEmulator::CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    assert_eq!(json_body.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn a_colon_in_a_3x_device_secret_is_refused_when_building() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let colon = || DeviceSecret::new("s3cret:with-colon");
    let err = provider(emu, SanteDbVersion::V3).device("COLON_NODE", colon()).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    let text = err.to_string();
    assert!(text.contains("device secret contains `:`") && text.contains("3.x"), "{text}");
    assert!(!format!("{text} {err:?}").contains("s3cret"), "the secret is not in the error");
    // The same secret in the 3.x header on a 2.x configuration is refused too.
    let forced = provider(emu, SanteDbVersion::V2)
        .device("COLON_NODE", colon())
        .device_header(DeviceHeader::AuthorizationBasic);
    assert_eq!(forced.build().unwrap_err().kind(), ErrorKind::Configuration);

    // 2.x's X-Device-Authorization splits at the first `:` only, so there it works.
    emu.set_version(server(SanteDbVersion::V2));
    emu.register_device("COLON_NODE", &colon());
    let v2 = provider(emu, SanteDbVersion::V2).device("COLON_NODE", colon()).build().unwrap();
    v2.fetch(&FetchContext::default()).await.unwrap();
    let sent = emu.token_log().pop().unwrap();
    assert_eq!(
        sent.header("x-device-authorization"),
        Some(format!("BASIC {}", basic("COLON_NODE", "s3cret:with-colon")).as_str())
    );
}

#[tokio::test]
async fn fhir_create_read_and_search_through_the_provider() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    let fhir = source.fhir_base().to_owned();
    let (http, profile) = (source.api_http_client().clone(), source.api_profile());
    let client =
        AuthClient::builder(TokenManager::new(source)).http_client(http).profile(profile).build().unwrap();

    let patient = json!({"resourceType": "Patient", "name": [{"family": "Zzyzx", "given": ["Ada"]}],
                         "identifier": [{"system": "urn:oid:1.2.3", "value": "Z-1"}]});
    let created = client
        .post(format!("{fhir}/Patient"))
        .header("Content-Type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(created.headers()["location"].to_str().unwrap().starts_with(&format!("{fhir}/Patient/")));
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let read = client.get(format!("{fhir}/Patient/{id}")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap()["name"][0]["family"], "Zzyzx");

    let search =
        client.get(format!("{fhir}/Patient")).query(&[("identifier", "urn:oid:1.2.3|Z-1")]).send().await;
    let bundle: Value = search.unwrap().json().await.unwrap();
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], id.as_str());

    assert_eq!(emu.fhir_store().get(&id).unwrap()["name"][0]["given"][0], "Ada");
    assert!(emu.api_log().iter().all(|r| r.accept.as_deref() == Some("application/fhir+json")));
    assert_eq!(emu.token_requests_for(emu.client_id()), 1, "one token for all three calls");
}

#[tokio::test]
async fn faults_and_counts() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let source = with_device(emu, SanteDbVersion::V3);
    emu.faults().set_error_rate(1.0);
    let err = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!((err.kind(), err.status()), (ErrorKind::Unavailable, Some(503)));
    assert!(err.is_retryable());
    assert_eq!(emu.token_requests_for(emu.client_id()), 0, "the fault answered before the server");
    emu.faults().clear();
    for _ in 0..3 {
        source.fetch(&FetchContext::default()).await.unwrap();
    }
    assert_eq!(emu.token_requests_for(emu.client_id()), 3);
    assert_eq!(emu.token_requests_for("someone-else"), 0);
}

#[tokio::test]
async fn no_secret_reaches_debug_output() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    let sources = [
        with_device(emu, SanteDbVersion::V3),
        with_device(emu, SanteDbVersion::V2),
        mtls(emu, SanteDbVersion::V3),
    ];
    let token = sources[0].fetch(&FetchContext::default()).await.unwrap();
    let key_body: String = emu.client_key_pem().expose_secret().lines().nth(1).unwrap().to_owned();
    let mut outputs: Vec<String> = sources.iter().map(|s| format!("{s:?}")).collect();
    outputs.push(format!("{token:?}"));
    outputs.push(format!("{emu:?}"));
    outputs.push(format!("{:?}", emu.token_log()));
    outputs.push(format!(
        "{:?}",
        SanteDbSource::builder("https://x", "c", emu.client_secret()).device("d", emu.device_secret())
    ));
    for out in outputs {
        for secret in [SanteDbEmulator::CLIENT_SECRET, SanteDbEmulator::DEVICE_SECRET, key_body.as_str()] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(!out.contains(token.access_token().expose_secret()), "{out}");
    }
}

#[tokio::test]
async fn version_2_reads_authorization_basic_as_the_application() {
    let sandbox = sandbox().await;
    let emu = sandbox.santedb();
    emu.set_version(server(SanteDbVersion::V2));
    let app = format!("Basic {}", basic(SanteDbEmulator::CLIENT_ID, SanteDbEmulator::CLIENT_SECRET));
    let post = |authorization: String| {
        reqwest::Client::new()
            .post(emu.token_url())
            .header("Authorization", authorization)
            .header("X-Device-Authorization", SEED_DEVICE_HEADER)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=*")
            .send()
    };
    // On 2.x the application may authenticate in the header instead of the body…
    let ok = post(app).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["token_type"], "bearer");
    // …so a source configured for 3.x, sending the device there, fails loudly on a 2.x server.
    let device_as_app =
        format!("Basic {}", basic(SanteDbEmulator::DEVICE_ID, SanteDbEmulator::DEVICE_SECRET));
    let refused = post(device_as_app).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"error": "unspecified_error", "error_description": "Invalid client credentials"})
    );
    let err = with_device(emu, SanteDbVersion::V3).fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(err.oauth_error().map(|o| o.status), Some(401));
}
