//! The Aidbox provider against the Aidbox emulator, over real HTTP on 127.0.0.1:
//! the wire format of both documented request styles (and the documentation's own
//! example exchange), expiry resolution, `refresh_token: null`, rotating refresh on
//! virtual time, Session revocation on both paths, audience, typed errors, and the
//! FHIR API through `AuthClient` with its 401 replay.

// Test helpers outside `#[test]` functions unwrap and panic too: a failure is the point.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::clock::{Clock, ManualClock};
use auth_core::token::ExpirySource;
use auth_core::{
    AuthClient, ClientSecret, CredentialSource, ErrorKind, FetchContext, OAuthErrorCode, TokenManager,
};
use auth_providers::aidbox::{
    AidboxAuthStyle, AidboxSource, AidboxSourceBuilder, RefreshAuth, SessionEndpoint,
};
use auth_sandbox::{AidboxEmulator, Sandbox, SandboxConfig};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// A clock on a whole second, so `expires_in` and a JWT `exp` agree to the second.
fn clock() -> ManualClock {
    ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

async fn sandbox(clock: &ManualClock) -> Sandbox {
    Sandbox::start(SandboxConfig::default().with_clock(clock.clone())).await.unwrap()
}

fn seed_source(emu: &AidboxEmulator) -> AidboxSourceBuilder {
    let (id, secret) = emu.credentials();
    AidboxSource::builder(emu.base_url(), id, secret)
}

fn jwt_source(emu: &AidboxEmulator) -> AidboxSourceBuilder {
    let (id, secret) = emu.jwt_credentials();
    AidboxSource::builder(emu.base_url(), id, secret)
}

fn ctx(clock: &ManualClock) -> FetchContext {
    FetchContext::new(Arc::new(clock.clone()))
}

fn claims(jwt: &str) -> Value {
    Value::Object(auth_core::token::jwt_claims(jwt).unwrap())
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

const FORM: &str = "application/x-www-form-urlencoded";

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn raw_get(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap()
}

/// The documentation's "using-basic" exchange, byte for byte: the provider sends
/// exactly its request and gets exactly its simple-client answer.
#[tokio::test]
async fn seed_example_basic_and_form_exchange_on_the_wire() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = seed_source(emu).default_lifetime(Duration::from_secs(120)).build().unwrap();

    let token = source.fetch(&ctx(&clock)).await.unwrap();

    let req = emu.last_token_request().unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/aidbox/auth/token");
    // `base64("api-client:verysecret")`, the very header of the docs' example.
    assert_eq!(req.authorization.as_deref(), Some("Basic YXBpLWNsaWVudDp2ZXJ5c2VjcmV0"));
    assert_eq!(req.basic, Some(("api-client".into(), "verysecret".into())));
    assert_eq!(req.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(req.body, "grant_type=client_credentials");
    assert_eq!(req.field_names(), ["grant_type"]);

    // The simple client's answer: token_type and access_token, nothing else.
    let answer = emu.last_response().unwrap();
    assert_eq!(keys(&answer), ["access_token", "token_type"]);
    assert_eq!(answer["token_type"], "Bearer");
    let opaque = answer["access_token"].as_str().unwrap();
    let uuid = String::from_utf8(STANDARD.decode(opaque).unwrap()).unwrap();
    assert_eq!(uuid.len(), 36, "base64 of a UUID, like `ZjQyNGFh…`");

    // No expires_in, not a JWT: the configured default lifetime.
    assert_eq!(token.access_token().expose_secret(), opaque);
    assert_eq!(token.expiry_source(), ExpirySource::Default);
    assert_eq!(token.lifetime(), Duration::from_secs(120));
    assert!(token.refresh_token().is_none());
    assert_eq!(emu.token_requests_for("api-client"), 1);

    // The token works on the FHIR API ("Using Access Token").
    let ok = raw_get(&format!("{}/Patient", emu.fhir_base()), opaque).await;
    assert_eq!(ok.status(), 200);

    // And the same exchange sent by hand, as the docs print it.
    let raw = reqwest::Client::new()
        .post(emu.token_url())
        .header("Authorization", "Basic YXBpLWNsaWVudDp2ZXJ5c2VjcmV0")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["cache-control"], "no-store");
    let body: Value = raw.json().await.unwrap();
    assert_eq!(keys(&body), ["access_token", "token_type"]);
}

/// The docs' "json-request" style: no Authorization, a JSON object of exactly
/// grant_type, client_id and client_secret.
#[tokio::test]
async fn json_style_on_the_wire() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = seed_source(emu).auth_style(AidboxAuthStyle::Json).build().unwrap();

    let token = source.fetch(&ctx(&clock)).await.unwrap();

    let req = emu.last_token_request().unwrap();
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/aidbox/auth/token"));
    assert_eq!(req.authorization, None);
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body,
        json!({"grant_type": "client_credentials", "client_id": "api-client", "client_secret": "verysecret"})
    );
    let ok = raw_get(&format!("{}/Patient", emu.fhir_base()), token.access_token().expose_secret()).await;
    assert_eq!(ok.status(), 200);
}

/// `client_secret_post`: the form carries the id and secret, no Authorization.
#[tokio::test]
async fn form_post_style_on_the_wire() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source =
        seed_source(emu).auth_style(AidboxAuthStyle::FormPost).scopes(["system/*.read"]).build().unwrap();

    source.fetch(&ctx(&clock)).await.unwrap();

    let req = emu.last_token_request().unwrap();
    assert_eq!(req.authorization, None);
    assert_eq!(req.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        req.body,
        "grant_type=client_credentials&scope=system%2F*.read&client_id=api-client&client_secret=verysecret"
    );
}

/// The docs' "JWT with refresh token" answer, and each way expiry is decided:
/// `expires_in`, then the JWT `exp`, then the default lifetime.
#[tokio::test]
async fn jwt_answer_and_expiry_resolution() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    // The docs' configuration, with the lifetime their example answer shows.
    emu.put_client(&json!({
        "id": "api-client", "secret": "verysecret", "grant_types": ["client_credentials"],
        "auth": {"client_credentials": {"access_token_expiration": 3000, "token_format": "jwt", "refresh_token": true}}
    }))
    .unwrap();
    let source = seed_source(emu).build().unwrap();

    let token = source.fetch(&ctx(&clock)).await.unwrap();
    let answer = emu.last_response().unwrap();
    assert_eq!(keys(&answer), ["access_token", "expires_in", "refresh_token", "token_type"]);
    assert_eq!(answer["expires_in"], 3000);
    let c = claims(token.access_token().expose_secret());
    assert_eq!(keys(&c), ["exp", "iat", "iss", "jti", "sub"]);
    assert_eq!(c["sub"], "api-client");
    assert_eq!(c["iss"], emu.base_url());
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 3000);
    assert_eq!(claims(token.refresh_token().unwrap().expose_secret())["typ"], "refresh");
    assert_eq!(token.expiry_source(), ExpirySource::ExpiresIn);
    assert_eq!(token.lifetime(), Duration::from_secs(3000));

    // Without expires_in, the JWT's exp decides.
    emu.set_send_expires_in("api-client", false);
    emu.set_access_token_expiration("api-client", Some(Duration::from_secs(900)));
    let token = source.fetch(&ctx(&clock)).await.unwrap();
    assert!(emu.last_response().unwrap().get("expires_in").is_none());
    assert_eq!(token.expiry_source(), ExpirySource::AccessTokenExp);
    assert_eq!(token.lifetime(), Duration::from_secs(900));

    // Opaque again: nothing says, the default lifetime (5 minutes) applies.
    emu.set_jwt("api-client", false);
    let token = source.fetch(&ctx(&clock)).await.unwrap();
    assert!(emu.last_response().unwrap().get("expires_in").is_none());
    assert_eq!(token.expiry_source(), ExpirySource::Default);
    assert_eq!(token.lifetime(), Duration::from_secs(300));
}

/// `"refresh_token": null` (Aidbox's SMART backend example) is no refresh token,
/// not an error; the manager then renews with the client credentials grant.
#[tokio::test]
async fn null_refresh_token_is_tolerated() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    emu.set_refresh_token(AidboxEmulator::JWT_CLIENT_ID, false);
    emu.set_null_refresh_token(AidboxEmulator::JWT_CLIENT_ID, true);
    let manager = TokenManager::builder(jwt_source(emu).build().unwrap()).clock(clock.clone()).build();

    let first = manager.token().await.unwrap();
    let answer = emu.last_response().unwrap();
    assert_eq!(answer.get("refresh_token"), Some(&Value::Null), "the server did send null");
    assert!(first.refresh_token().is_none());
    assert_eq!(first.lifetime(), Duration::from_secs(600));

    // Past expiry the manager asks again with client_credentials, never refresh_token.
    clock.advance(Duration::from_secs(601));
    let second = manager.token().await.unwrap();
    assert!(!second.same_value(&first));
    assert_eq!(emu.refresh_requests(), 0);
    assert_eq!(emu.last_token_request().unwrap().field("grant_type"), Some("client_credentials"));
    assert_eq!(emu.token_requests_for(AidboxEmulator::JWT_CLIENT_ID), 2);
}

async fn wait_for_new_token(
    manager: &TokenManager<AidboxSource>,
    old: &auth_core::Token,
) -> Arc<auth_core::Token> {
    for _ in 0..500 {
        if let Some(t) = manager.cached()
            && !t.same_value(old)
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no refreshed token within 5 s");
}

/// Refresh ahead of expiry on virtual time: the refresh grant with the issued refresh
/// token, a rotated refresh token back, and the old one dead.
#[tokio::test]
async fn refresh_rotates_through_the_manager_on_virtual_time() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let manager = TokenManager::builder(jwt_source(emu).build().unwrap()).clock(clock.clone()).build();

    let first = manager.token().await.unwrap();
    let rt1 = first.refresh_token().unwrap().expose_secret().to_owned();
    assert_eq!(emu.refresh_requests(), 0);

    // 500 s into a 600 s token: inside the refresh window, before the expiry margin.
    clock.advance(Duration::from_secs(500));
    let during = manager.token().await.unwrap();
    assert!(during.same_value(&first), "callers keep the current token while it refreshes");
    let second = wait_for_new_token(&manager, &first).await;

    assert_eq!(emu.refresh_requests(), 1);
    assert_eq!(manager.stats().refreshes, 1);
    let req = emu.last_token_request().unwrap();
    assert_eq!(req.field_names(), ["grant_type", "refresh_token"]);
    assert_eq!(req.field("grant_type"), Some("refresh_token"));
    assert_eq!(req.field("refresh_token"), Some(rt1.as_str()));
    // A confidential client authenticates its refresh as it did its token request.
    assert_eq!(
        req.basic,
        Some((AidboxEmulator::JWT_CLIENT_ID.into(), AidboxEmulator::JWT_CLIENT_SECRET.into()))
    );
    let rt2 = second.refresh_token().unwrap().expose_secret().to_owned();
    assert_ne!(rt2, rt1, "rotated");
    assert_eq!(second.issued_at(), first.issued_at() + Duration::from_secs(500));

    // The old refresh token was used up.
    let reuse = reqwest::Client::new()
        .post(emu.token_url())
        .basic_auth(AidboxEmulator::JWT_CLIENT_ID, Some(AidboxEmulator::JWT_CLIENT_SECRET))
        .header("content-type", FORM)
        .body(form(&[("grant_type", "refresh_token"), ("refresh_token", &rt1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 400);
    assert_eq!(reuse.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // The refreshed token works, the next refresh uses the rotated token.
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
    let ok = client.get(format!("{}/Patient", emu.fhir_base())).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    clock.advance(Duration::from_secs(500));
    manager.token().await.unwrap();
    let third = wait_for_new_token(&manager, &second).await;
    assert_eq!(emu.last_token_request().unwrap().field("refresh_token"), Some(rt2.as_str()));
    assert!(third.refresh_token().is_some());
    assert_eq!(
        emu.token_requests_for(AidboxEmulator::JWT_CLIENT_ID),
        4,
        "fetch, two refreshes, the refused reuse"
    );
}

/// The docs' refresh request: JSON `{grant_type, client_id, refresh_token}`, no secret.
#[tokio::test]
async fn refresh_with_client_id_only_as_the_docs_show() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = jwt_source(emu)
        .auth_style(AidboxAuthStyle::Json)
        .refresh_auth(RefreshAuth::ClientIdOnly)
        .build()
        .unwrap();
    let first = source.fetch(&ctx(&clock)).await.unwrap();
    let refreshed = source.refresh(&ctx(&clock), first.refresh_token().unwrap()).await.unwrap().unwrap();

    let req = emu.last_token_request().unwrap();
    assert_eq!(req.authorization, None);
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body,
        json!({"grant_type": "refresh_token", "client_id": "jwt-client",
               "refresh_token": first.refresh_token().unwrap().expose_secret()})
    );
    assert!(!refreshed.same_value(&first));
    assert_eq!(emu.refresh_requests(), 1);
}

async fn revoke_on(endpoint: SessionEndpoint, expected_path: &str) {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = seed_source(emu).session_endpoint(endpoint).build().unwrap();
    let manager = TokenManager::builder(source).clock(clock.clone()).build();
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
    let patients = format!("{}/Patient", emu.fhir_base());

    assert_eq!(client.get(&patients).send().await.unwrap().status(), 200);
    let old = manager.token().await.unwrap();
    let old_value = old.access_token().expose_secret().to_owned();
    assert_eq!(emu.active_sessions(), 1);

    assert!(manager.revoke().await.unwrap(), "Aidbox was told");

    let closes = emu.session_log();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].path, expected_path);
    assert_eq!(closes[0].bearer, old_value, "the Session of exactly this token");
    assert_eq!(closes[0].client_id, "api-client");
    assert_eq!(emu.active_sessions(), 0);
    // The API now refuses the old token...
    let refused = raw_get(&patients, &old_value).await;
    assert_eq!(refused.status(), 401);
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // ...and the manager gets a new one, which works.
    let new = manager.token().await.unwrap();
    assert!(!new.same_value(&old));
    assert_eq!(emu.token_requests_for("api-client"), 2);
    assert_eq!(client.get(&patients).send().await.unwrap().status(), 200);

    // The source's revoke on its own, for a token no manager holds.
    let lone = manager.source().fetch(&ctx(&clock)).await.unwrap();
    assert!(manager.source().revoke(&lone).await.unwrap());
    assert_eq!(emu.session_log().len(), 2);
    assert_eq!(raw_get(&patients, lone.access_token().expose_secret()).await.status(), 401);
    // Closing an already closed Session is not an error: it is closed.
    assert!(manager.source().revoke(&lone).await.unwrap());
}

#[tokio::test]
async fn revoke_closes_the_session_at_root_path() {
    revoke_on(SessionEndpoint::Root, "/aidbox/Session").await;
}

#[tokio::test]
async fn revoke_closes_the_session_at_fhir_path() {
    revoke_on(SessionEndpoint::Fhir, "/aidbox/fhir/Session").await;
}

#[tokio::test]
async fn revoke_can_be_disabled() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = seed_source(emu).session_endpoint(SessionEndpoint::Disabled).build().unwrap();
    let manager = TokenManager::builder(source).clock(clock.clone()).build();
    manager.token().await.unwrap();
    assert!(!manager.revoke().await.unwrap());
    assert!(emu.session_log().is_empty());
    assert_eq!(emu.active_sessions(), 1);
}

/// `audience` goes on the wire and comes back as the JWT's `aud`; it is part of the
/// cache key. Opaque tokens ignore it, as the docs say it is for JWTs.
#[tokio::test]
async fn audience_is_sent_and_reflected_in_the_jwt() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let audience = "https://resource.server.com";
    let source = jwt_source(emu).audience(audience).build().unwrap();
    let token = source.fetch(&ctx(&clock)).await.unwrap();

    let req = emu.last_token_request().unwrap();
    assert_eq!(req.body, "grant_type=client_credentials&audience=https%3A%2F%2Fresource.server.com");
    assert_eq!(claims(token.access_token().expose_secret())["aud"], audience);
    let plain = jwt_source(emu).build().unwrap();
    assert_ne!(plain.cache_key().fingerprint(), source.cache_key().fingerprint());
    assert!(
        claims(plain.fetch(&ctx(&clock)).await.unwrap().access_token().expose_secret()).get("aud").is_none()
    );

    // A refreshed token keeps the audience of its Session.
    let refreshed = source.refresh(&ctx(&clock), token.refresh_token().unwrap()).await.unwrap().unwrap();
    assert_eq!(claims(refreshed.access_token().expose_secret())["aud"], audience);
}

/// A wrong secret is RFC 6749's `invalid_client` with Aidbox's description, typed,
/// not retried, and without the secret anywhere.
#[tokio::test]
async fn wrong_credentials_are_a_typed_rfc_error() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    for style in [AidboxAuthStyle::BasicForm, AidboxAuthStyle::Json, AidboxAuthStyle::FormPost] {
        let source = AidboxSource::builder(emu.base_url(), "api-client", ClientSecret::new("wrong-canary"))
            .auth_style(style)
            .build()
            .unwrap();
        let err = source.fetch(&ctx(&clock)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OAuth);
        let oauth = err.oauth_error().unwrap();
        assert_eq!(oauth.code, OAuthErrorCode::InvalidClient, "{style:?}");
        assert_eq!(oauth.status, 401);
        assert_eq!(oauth.description.as_deref(), Some("Wrong client_id or client_secret"));
        assert!(!err.is_retryable());
        assert!(!format!("{err} {err:?} {source:?}").contains("canary"));
    }
    // Through a manager: one request, the failure remembered, not hammered.
    let source = AidboxSource::builder(emu.base_url(), "nobody", ClientSecret::new("x")).build().unwrap();
    let manager = TokenManager::builder(source).clock(clock.clone()).build();
    let first = manager.token().await.unwrap_err();
    let second = manager.token().await.unwrap_err();
    assert_eq!(first.oauth_error().map(|o| o.code.clone()), Some(OAuthErrorCode::InvalidClient));
    assert!(first.same_as(&second));
    assert_eq!(emu.token_requests_for("nobody"), 1);
}

/// The emulator refuses what Aidbox (and RFC 6749) refuses.
#[tokio::test]
async fn emulator_is_strict_about_client_authentication_and_grants() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let http = reqwest::Client::new();
    let url = emu.token_url();
    let refusal = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let www = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = r.json().await.unwrap();
        (status, body["error"].as_str().unwrap().to_owned(), body["error_description"].clone(), www)
    };

    // Two authentication methods at once.
    let both = http
        .post(&url)
        .basic_auth("api-client", Some("verysecret"))
        .header("content-type", FORM)
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "api-client"),
            ("client_secret", "verysecret"),
        ]))
        .send()
        .await
        .unwrap();
    let (status, code, description, _) = refusal(both).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert_eq!(description, AidboxEmulator::TWO_METHODS_DESCRIPTION);

    // Wrong secret with Basic: 401 naming the Basic scheme.
    let wrong = http
        .post(&url)
        .basic_auth("api-client", Some("nope"))
        .header("content-type", FORM)
        .body(form(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    let (status, code, description, www) = refusal(wrong).await;
    assert_eq!((status, code.as_str()), (401, "invalid_client"));
    assert_eq!(description, AidboxEmulator::WRONG_CREDENTIALS_DESCRIPTION);
    assert_eq!(www.as_deref(), Some("Basic realm=\"aidbox\""));

    // An unknown grant, a missing one, one the Client does not allow.
    let password = http
        .post(&url)
        .basic_auth("api-client", Some("verysecret"))
        .header("content-type", FORM)
        .body(form(&[("grant_type", "password")]))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(password).await.1, "unsupported_grant_type");
    let missing = http
        .post(&url)
        .basic_auth("api-client", Some("verysecret"))
        .header("content-type", FORM)
        .body(form(&[("x", "y")]))
        .send()
        .await;
    assert_eq!(refusal(missing.unwrap()).await.1, "invalid_request");
    emu.set_grant_types("api-client", &["authorization_code"]);
    let not_allowed = http
        .post(&url)
        .json(&json!({"grant_type": "client_credentials", "client_id": "api-client", "client_secret": "verysecret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(not_allowed).await.1, "unauthorized_client");
    emu.set_grant_types("api-client", &["client_credentials"]);

    // client_credentials with no secret, a body Aidbox does not read, a repeated field.
    let no_secret = http
        .post(&url)
        .json(&json!({"grant_type": "client_credentials", "client_id": "api-client"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(no_secret).await.1, "invalid_client");
    let text =
        http.post(&url).header("content-type", "text/plain").body("grant_type=client_credentials").send();
    assert_eq!(refusal(text.await.unwrap()).await.1, "invalid_request");
    let repeated = http
        .post(&url)
        .basic_auth("api-client", Some("verysecret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(repeated).await.1, "invalid_request");
    // Only POST.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 405);

    // Every one of them was counted against the client it named.
    assert_eq!(emu.token_requests_for("api-client"), 7);
    assert_eq!(emu.active_sessions(), 0, "nothing was issued");
}

/// Create, read and a paged search through `AuthClient`, on one cached token.
#[tokio::test]
async fn fhir_create_read_and_paged_search_through_auth_client() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let manager = TokenManager::builder(seed_source(emu).build().unwrap()).clock(clock.clone()).build();
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
    let base = emu.fhir_base();

    let created = client
        .post(format!("{base}/Patient"))
        .header("Content-Type", "application/fhir+json")
        .json(&json!({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Zed"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let read = client.get(format!("{base}/Patient/{id}")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap()["name"][0]["given"][0], "Zed");

    let mut url = format!("{base}/Patient?name=chalmers&_count=2");
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let bundle: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(bundle["total"], 4, "three seeded Chalmers and the new one");
        pages += 1;
        for e in bundle["entry"].as_array().unwrap() {
            names.push(e["resource"]["name"][0]["given"][0].as_str().unwrap().to_owned());
        }
        match bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    names.sort();
    assert_eq!(names, ["Alice", "Jim", "Peter", "Zed"]);
    assert_eq!(emu.token_requests(), 1, "one token for every call");
    assert_eq!(emu.fhir_store().len(), 7);

    // Without a bearer the API refuses.
    let anonymous = reqwest::get(format!("{base}/Patient")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// A token Aidbox no longer accepts is dropped, a new one fetched, and the request
/// (with its body) replayed once.
#[tokio::test]
async fn a_401_is_replayed_once_with_a_fresh_token() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let manager = TokenManager::builder(seed_source(emu).build().unwrap()).clock(clock.clone()).build();
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
    let base = emu.fhir_base();

    assert_eq!(client.get(format!("{base}/Patient")).send().await.unwrap().status(), 200);
    let before = manager.token().await.unwrap();
    emu.close_all_sessions();

    let created = client
        .post(format!("{base}/Patient"))
        .json(&json!({"resourceType": "Patient", "name": [{"family": "Replay"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(emu.api_rejections(), 1);
    assert_eq!(emu.token_requests(), 2);
    assert_eq!(manager.stats().invalidations, 1);
    assert!(!manager.token().await.unwrap().same_value(&before));
    let received = emu.fhir_store().received();
    assert_eq!(received.len(), 1, "the body reached the store once, on the replay");
    assert_eq!(received[0]["name"][0]["family"], "Replay");
}

/// Expired and unknown bearers are refused with 401; a client no AccessPolicy
/// allows gets 403, which is not a token problem and is not replayed.
#[tokio::test]
async fn bearer_enforcement_and_access_policy() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = seed_source(emu).build().unwrap();
    let token = source.fetch(&ctx(&clock)).await.unwrap();
    let patients = format!("{}/Patient", emu.fhir_base());
    let value = token.access_token().expose_secret();

    assert_eq!(raw_get(&patients, value).await.status(), 200);
    assert_eq!(raw_get(&patients, "ZjQyNGFhY2EtNTY2MS00NjVjLWEzYmEtMjIwYjFkNDI5Yjhi").await.status(), 401);
    clock.advance(Duration::from_secs(301));
    let expired = raw_get(&patients, value).await;
    assert_eq!(expired.status(), 401);
    let outcome: Value = expired.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["diagnostics"], "Access token expired");

    emu.set_access_policy("api-client", false);
    let manager = TokenManager::builder(seed_source(emu).build().unwrap()).clock(clock.clone()).build();
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
    let denied = client.get(&patients).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(emu.token_requests(), 2, "a 403 burns no token");
}

/// The fault knobs are on the token endpoint: a 503 is a retryable `Unavailable`.
#[tokio::test]
async fn faults_reach_the_token_endpoint() {
    let clock = clock();
    let sb = sandbox(&clock).await;
    let emu = sb.aidbox();
    let source = seed_source(emu).build().unwrap();
    emu.faults().set_error_rate(1.0);
    let err = source.fetch(&ctx(&clock)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert_eq!(emu.token_requests(), 0, "refused before reaching Aidbox");
    emu.faults().clear();
    assert!(source.fetch(&ctx(&clock)).await.is_ok());
}

#[tokio::test]
async fn aidbox_expires_in_wins_over_the_exp_of_a_box_whose_clock_runs_behind() {
    // The box's clock is 700 s behind ours; its JWTs say exp = its now + 600.
    let behind = ManualClock::starting_at(SystemTime::now() - Duration::from_secs(700));
    let sandbox = Sandbox::start(SandboxConfig::default().with_clock(behind.clone())).await.expect("starts");
    let aidbox = sandbox.aidbox();
    let (id, secret) = aidbox.jwt_credentials();
    let source = AidboxSource::builder(aidbox.base_url(), id, secret).build().expect("valid source");
    let token = source.fetch(&FetchContext::default()).await.expect("a token");
    assert_eq!(token.expiry_source(), ExpirySource::ExpiresIn);
    assert!(token.lifetime() >= Duration::from_secs(590), "lifetime {:?}", token.lifetime());
    let _ = behind.now();
}
