//! The test identity provider on the sandbox's shared parts: its delay and failure
//! knobs are a `Faults`, its clients, tokens and counts a `TokenRegistry`, and it
//! answers by the same rules the emulators keep.

use std::time::{Duration, Instant, SystemTime};

use auth_core::clock::ManualClock;
use auth_sandbox::idp::{CLIENT_ID, CLIENT_SECRET, TestIdentityProvider};
use auth_sandbox::tokens::Refusal;
use auth_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

/// A form-encoded POST, with Basic credentials if given.
fn post_form(url: String, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    match basic {
        Some((id, secret)) => request.basic_auth(id, Some(secret)),
        None => request,
    }
}

/// A `client_credentials` (or other) grant with the default client in the form.
async fn grant(idp: &TestIdentityProvider, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];
    if !extra.iter().any(|(k, _)| *k == "grant_type") {
        form.push(("grant_type", "client_credentials"));
    }
    form.extend_from_slice(extra);
    post_form(idp.token_url(), None, &form).send().await.expect("an answer")
}

async fn token(idp: &TestIdentityProvider) -> Value {
    let response = grant(idp, &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON token answer")
}

#[tokio::test]
async fn a_latency_on_its_idp_faults_delays_the_token_endpoint_only() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let access = token(&idp).await["access_token"].as_str().unwrap().to_owned();
    idp.idp_faults().set_latency(Duration::from_millis(300));

    let started = Instant::now();
    token(&idp).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());

    // The API is not the identity provider: it answers at once.
    let started = Instant::now();
    let api = reqwest::Client::new().get(idp.api_url("Patient/1")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(api.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(idp.idp_faults().stats().requests, 2, "the two token requests; the API's went around them");
    assert_eq!(idp.faults().stats().requests, 3, "the all-routes knobs saw all three");
}

#[tokio::test]
async fn set_delay_is_the_idp_latency_knob_and_counts_on_arrival() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_delay(Duration::from_secs(1));
    assert_eq!(idp.idp_faults().get().latency, Duration::from_secs(1));
    assert_eq!(idp.faults().get().latency, Duration::ZERO, "the all-routes knobs are left alone");

    let url = idp.token_url();
    let slow = tokio::spawn(async move {
        let form = [
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "client_credentials"),
        ];
        post_form(url, None, &form).send().await.map(|r| r.status().as_u16())
    });
    // Counted (and the token issued) on arrival; the answer is what waits.
    let deadline = Instant::now() + Duration::from_secs(5);
    while idp.token_requests() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.token_requests(), 1);
    assert!(!slow.is_finished(), "the answer is still held back");
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    assert_eq!(idp.registry().issued_count(), 1);
}

#[tokio::test]
async fn its_faults_fail_every_route_and_its_idp_faults_only_the_token_endpoint() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let access = token(&idp).await["access_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let api = || http.get(idp.api_url("x")).bearer_auth(&access).send();

    idp.idp_faults().set_error_rate(1.0);
    assert_eq!(grant(&idp, &[]).await.status(), 503);
    assert_eq!(api().await.unwrap().status(), 200, "an identity provider outage leaves the API up");
    assert_eq!(idp.token_requests(), 1, "a request a knob answered never reached the provider");
    idp.idp_faults().clear();

    idp.faults().set_error_rate(1.0);
    assert_eq!(grant(&idp, &[]).await.status(), 503);
    assert_eq!(api().await.unwrap().status(), 503);
    idp.faults().clear();
    assert_eq!(grant(&idp, &[]).await.status(), 200);
    assert_eq!(idp.faults().stats().errors, 2);
    assert_eq!(idp.idp_faults().stats().errors, 1);
}

#[tokio::test]
async fn its_registry_counts_and_validates_as_the_emulators_do() {
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    idp.register_client("other", "other-secret");
    let registry = idp.registry();
    assert!(registry.check(CLIENT_ID, CLIENT_SECRET));
    assert!(registry.check("other", "other-secret"));
    assert!(!registry.check(CLIENT_ID, "wrong"));

    let answer = token(&idp).await;
    let access = answer["access_token"].as_str().unwrap().to_owned();
    assert_eq!(answer["expires_in"], 300);
    let wrong = post_form(idp.token_url(), Some(("other", "wrong")), &[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!((idp.token_requests(), registry.requests()), (2, 2));
    assert_eq!((idp.token_requests_for(CLIENT_ID), idp.token_requests_for("other")), (1, 1));
    assert_eq!(registry.issued_count(), 1, "a refused request issues nothing");

    // The registry judges the token the API judges: live, then expired on the clock.
    let bearer = format!("Bearer {access}");
    assert_eq!(registry.validate(Some(&bearer)).map(|t| t.client_id).as_deref(), Ok(CLIENT_ID));
    let api = |token: String| reqwest::Client::new().get(idp.api_url("x")).bearer_auth(token).send();
    assert_eq!(api(access.clone()).await.unwrap().status(), 200);
    clock.advance(Duration::from_secs(301));
    assert_eq!(registry.validate(Some(&bearer)).err(), Some(Refusal::Expired));
    assert_eq!(api(access.clone()).await.unwrap().status(), 401);
    assert_eq!(registry.validate(Some("Bearer never-issued")).err(), Some(Refusal::Unknown));
    assert_eq!((idp.api_requests(), idp.api_rejections()), (2, 1));
    assert_eq!((registry.api_requests(), registry.api_rejections()), (2, 1));

    // Revocation is the registry's too.
    let fresh = token(&idp).await["access_token"].as_str().unwrap().to_owned();
    idp.revoke_all();
    assert_eq!(registry.validate(Some(&format!("Bearer {fresh}"))).err(), Some(Refusal::Revoked));
    assert_eq!(api(fresh).await.unwrap().status(), 401);
    assert!(registry.now() >= SystemTime::UNIX_EPOCH, "on the injected clock");
}

#[tokio::test]
async fn refresh_tokens_are_the_registrys_and_belong_to_their_client() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_refresh_tokens(true);
    idp.register_client("other", "other-secret");
    let answer = token(&idp).await;
    let refresh = answer["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("rt-"), "{refresh}");

    // Not rotated: the same refresh token works twice.
    for _ in 0..2 {
        let r = grant(&idp, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(r.status(), 200);
    }
    // Never issued, even if it looks like one.
    let r = grant(&idp, &[("grant_type", "refresh_token"), ("refresh_token", "rt-999")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Issued, but to another client.
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
    let r = post_form(idp.token_url(), Some(("other", "other-secret")), &form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(idp.refresh_requests(), 4);
    assert_eq!(idp.registry().refresh_requests(), 4);
}

#[tokio::test]
async fn every_emulator_counts_api_requests_and_rejections_in_its_registry() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let bases = [
        ("santedb", sandbox.santedb().fhir_base(), sandbox.santedb().registry().clone()),
        ("aidbox", sandbox.aidbox().fhir_base(), sandbox.aidbox().registry().clone()),
        ("msk", sandbox.msk().fhir_base(), sandbox.msk().registry().clone()),
        ("graphnet", sandbox.graphnet().fhir_base(), sandbox.graphnet().registry().clone()),
        ("smart", sandbox.smart().fhir_base(), sandbox.smart().registry().clone()),
    ];
    for (name, base, registry) in &bases {
        let status = http.get(format!("{base}/Patient")).bearer_auth("never-issued").send().await.unwrap();
        assert!(matches!(status.status().as_u16(), 401 | 403), "{name}: {}", status.status());
        assert_eq!((registry.api_requests(), registry.api_rejections()), (1, 1), "{name}");
    }
    let counts = [
        (sandbox.santedb().api_requests(), sandbox.santedb().api_rejections()),
        (sandbox.aidbox().api_requests(), sandbox.aidbox().api_rejections()),
        (sandbox.msk().api_requests(), sandbox.msk().api_rejections()),
        (sandbox.graphnet().api_requests(), sandbox.graphnet().api_rejections()),
        (sandbox.smart().api_requests(), sandbox.smart().api_rejections()),
    ];
    assert_eq!(counts, [(1, 1); 5]);
}

#[tokio::test]
async fn its_debug_shows_counts_never_secrets_or_tokens() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_refresh_tokens(true);
    let answer = token(&idp).await;
    let text = format!("{idp:?} {:?} {:?}", idp.registry(), idp.token_log());
    for secret in
        [CLIENT_SECRET, answer["access_token"].as_str().unwrap(), answer["refresh_token"].as_str().unwrap()]
    {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("requests: 1"), "{text}");
}

#[tokio::test]
async fn the_common_accessors_describe_the_default_client() {
    let idp = TestIdentityProvider::start().await.unwrap();
    assert_eq!(idp.client_id(), CLIENT_ID);
    assert_eq!(idp.client_secret().expose_secret(), CLIENT_SECRET);
    let (id, secret) = idp.credentials();
    assert_eq!((id.as_str(), secret.expose_secret()), (CLIENT_ID, CLIENT_SECRET));
    assert_eq!(idp.token_url(), format!("{}/token", idp.base_url()));
    assert_eq!(idp.api_url("Patient/1"), format!("{}/Patient/1", idp.fhir_base()));
    let aidbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let a = aidbox.aidbox();
    assert_eq!(a.credentials().0, a.client_id());
    assert_eq!(a.credentials().1.expose_secret(), a.client_secret().expose_secret());
}
