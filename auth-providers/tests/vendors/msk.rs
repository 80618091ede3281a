//! MSK Blaze behind IBM API Connect: the provider against its emulator, over real
//! HTTP on loopback. Every wire-format claim is asserted on what the emulator
//! received, not on what the client meant to send.

use std::time::{Duration, UNIX_EPOCH};

use auth_core::clock::{Clock, ManualClock};
use auth_core::token::ExpirySource;
use auth_core::{
    AuthClient, ClientSecret, ErrorKind, OAuthErrorCode, Rejection, RejectionVerdict, TokenManager,
};
use auth_providers::msk::{self, MskSource};
use auth_sandbox::{MskEmulator, Sandbox, SandboxConfig};
use serde_json::Value;

/// `consented_on` of MSK's example response: the test clocks start there.
const SEED_CONSENTED_ON: u64 = 1_656_086_348;
/// The exact body of MSK's example token request (its Python sample).
const SEED_PAYLOAD: &str = "client_id=MSK_PROVIDED_CLIENTID&client_secret=MSK_PROVIDED_SECRET&grant_type=client_credentials&scope=full";
const TOKEN_PATH: &str = "/msk/msk-apim/external/msk-oidc/oauth2/token";
const FHIR_PATH: &str = "/msk/msk-apim/external/v2/crit/blaze/api";
const APIC_MORE: &str = "Cannot pass the security checks that are required by the target API or operation, Enable debug headers for more details.";

/// A source builder for the emulator's registered client, partner and study.
fn source_builder(msk: &MskEmulator) -> msk::MskSourceBuilder {
    MskSource::builder(msk.base_url(), msk.client_id(), msk.client_secret())
        .partner_id(msk.partner_id())
        .research_study(msk.research_study())
}

fn seed_clock() -> ManualClock {
    ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(SEED_CONSENTED_ON))
}

/// A sandbox issuing one-hour tokens, as MSK does, on `clock`.
async fn sandbox_on(clock: &ManualClock) -> std::io::Result<Sandbox> {
    let config =
        SandboxConfig::default().with_token_lifetime(Duration::from_secs(3600)).with_clock(clock.clone());
    Sandbox::start(config).await
}

fn manager_on(source: MskSource, clock: &ManualClock) -> TokenManager<MskSource> {
    TokenManager::builder(source).clock(clock.clone()).build()
}

/// The token in a logged request's `Authorization: Bearer …` (a macro: the
/// emulator's record type is not nameable outside the crate).
macro_rules! bearer_of {
    ($request:expr) => {
        $request.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap().to_owned()
    };
}

/// The text of an OperationOutcome's first issue, where MSK puts it.
fn outcome_text(body: &Value) -> Option<&str> {
    body["issue"][0]["details"]["text"].as_str()
}

#[tokio::test]
async fn the_guides_example_exchange_is_reproduced_on_the_wire() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();

    // MSK's Python sample, byte for byte: only Content-Type, the four fields.
    let raw = reqwest::Client::new()
        .post(msk.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(SEED_PAYLOAD)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["content-type"], "application/json");
    assert_eq!(raw.headers()["cache-control"], "no-store");
    let text = raw.text().await.unwrap();
    let keys: Vec<&str> = ["token_type", "access_token", "scope", "expires_in", "consented_on"]
        .iter()
        .map(|k| {
            let at = text.find(&format!("\"{k}\"")).unwrap_or_else(|| panic!("{k} missing from {text}"));
            (at, *k)
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    assert_eq!(keys, ["token_type", "access_token", "scope", "expires_in", "consented_on"], "field order");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 5, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().unwrap().starts_with("AAIg"), "{body}");
    assert_eq!(body["scope"], "full");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["consented_on"], SEED_CONSENTED_ON, "the seed's example time, on the sandbox clock");

    // The provider sends the same request.
    let manager = manager_on(source_builder(msk).build().unwrap(), &clock);
    let token = manager.token().await.unwrap();
    let log = msk.token_log();
    assert_eq!(log.len(), 2);
    let sent = &log[1];
    assert_eq!(sent.method(), "POST");
    assert_eq!(sent.path(), TOKEN_PATH);
    assert!(sent.query().is_empty(), "nothing in the query: {:?}", sent.query());
    assert_eq!(sent.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(sent.header("authorization"), None, "credentials only in the body, as MSK's samples");
    assert_eq!(sent.header("cache-control"), Some("no-store"));
    assert_eq!(sent.body(), SEED_PAYLOAD, "same fields, same order, same encoding as the guide");
    assert_eq!(msk.token_requests_for(msk.client_id()), 2);

    // The token as the engine sees it.
    assert!(token.access_token().expose_secret().starts_with("AAIg"));
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(token.scope(), Some("full"));
    assert!(token.refresh_token().is_none());
    assert_eq!(token.extra().get("consented_on"), Some(&Value::from(SEED_CONSENTED_ON)));
    assert_eq!(msk::consented_on(&token), Some(UNIX_EPOCH + Duration::from_secs(SEED_CONSENTED_ON)));
    assert_eq!(token.expiry_source(), ExpirySource::ExpiresIn);
    assert_eq!(token.issued_at(), UNIX_EPOCH + Duration::from_secs(SEED_CONSENTED_ON));
    assert_eq!(token.lifetime(), Duration::from_secs(3600), "expires_in seconds from receipt");
    assert!(!format!("{token:?}").contains(token.access_token().expose_secret()));
}

#[tokio::test]
async fn expiry_follows_expires_in_seconds() {
    let clock = seed_clock();
    let config =
        SandboxConfig::default().with_token_lifetime(Duration::from_secs(900)).with_clock(clock.clone());
    let sandbox = Sandbox::start(config).await.unwrap();
    let msk = sandbox.msk();
    let manager = manager_on(source_builder(msk).build().unwrap(), &clock);
    let token = manager.token().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(900));
    assert_eq!(token.expires_at(), clock.now() + Duration::from_secs(900));

    // Past expiry the engine fetches a new token before calling, rather than
    // sending one it knows is dead.
    clock.advance(Duration::from_secs(901));
    let fresh = manager.token().await.unwrap();
    assert!(!fresh.same_value(&token));
    assert_eq!(msk.token_requests_for(msk.client_id()), 2);
}

#[tokio::test]
async fn api_requests_carry_partner_id_study_and_format() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let source = source_builder(msk).build().unwrap();
    let fhir = source.fhir_base().to_owned();
    assert_eq!(fhir.as_str(), msk.fhir_base());
    let manager = manager_on(source, &clock);
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();

    let search = client.get(format!("{fhir}/Patient")).send().await.unwrap();
    assert_eq!(search.status(), 200);
    assert_eq!(search.headers()["content-type"], "application/fhir+json", "_format=json was honoured");
    let bundle: Value = search.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["total"], 9);

    let read = client.get(format!("{fhir}/Patient/10081001")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let patient: Value = read.json().await.unwrap();
    assert_eq!(patient["extension"][0]["valueString"], "FHIR-T");

    let token = manager.cached().unwrap();
    let log = msk.api_log();
    assert_eq!(log.len(), 2);
    for (request, path) in
        log.iter().zip([format!("{FHIR_PATH}/Patient"), format!("{FHIR_PATH}/Patient/10081001")])
    {
        assert_eq!(request.method(), "GET");
        assert_eq!(request.path(), path);
        assert_eq!(
            request.header("authorization").map(str::to_owned),
            Some(format!("Bearer {}", token.access_token().expose_secret()))
        );
        assert_eq!(request.header("x-partnerid"), Some("MSK_PROVIDED_PARTNERID"));
        assert_eq!(request.query_values("researchstudy"), ["FHIR-T"]);
        assert_eq!(request.query_values("_format"), ["json"]);
        assert!(request.query_values("x-partnerid").is_empty(), "the partner id travels as a header");
    }
    assert_eq!(msk.token_requests_for(msk.client_id()), 1, "one token for both calls");
}

#[tokio::test]
async fn a_wrong_partner_id_is_a_configuration_error_and_burns_no_token() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let source = source_builder(msk).partner_id("NOT-OUR-PARTNER").build().unwrap();
    let fhir = source.fhir_base().to_owned();
    let manager = manager_on(source, &clock);
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();

    let err = client.get(format!("{fhir}/Patient")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(err.to_string().contains("Incorrect Partnerid name"), "{err}");
    assert!(err.to_string().contains("NOT-OUR-PARTNER"), "names the partner id: {err}");
    assert!(!err.is_retryable());
    assert_eq!(msk.token_requests_for(msk.client_id()), 1, "no second token");
    assert_eq!(msk.api_requests(), 1, "no replay");
    assert_eq!(manager.stats().invalidations, 0, "the token was not blamed");
    assert!(manager.cached().is_some(), "and stays cached");

    // A partner id that exists but belongs to another client is just as wrong.
    msk.register_partner("SOMEONE-ELSES", "another-client", ["FHIR-T"]);
    let other = source_builder(msk).partner_id("SOMEONE-ELSES").build().unwrap();
    let profile = other.api_profile();
    let client = AuthClient::builder(manager_on(other, &clock)).profile(profile).build().unwrap();
    let err = client.get(format!("{fhir}/Patient")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert_eq!(msk.api_requests(), 2);
    assert_eq!(msk.token_requests_for(msk.client_id()), 2);
}

#[tokio::test]
async fn rejections_are_judged_by_their_body() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let source = source_builder(msk).build().unwrap();
    assert!(source.api_profile().wants_rejection_body());
    let http = reqwest::Client::new();
    let token = manager_on(source_builder(msk).build().unwrap(), &clock).token().await.unwrap();
    let bearer = format!("Bearer {}", token.access_token().expose_secret());
    let patients = format!("{}/Patient?researchstudy=FHIR-T&_format=json", msk.fhir_base());

    // Blaze without x-partnerid: 401 OperationOutcome, "Api Key was not provided".
    let missing = http.get(&patients).header("Authorization", &bearer).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body = missing.bytes().await.unwrap();
    let outcome: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome_text(&outcome).unwrap(), "Api Key was not provided");
    match source.api_profile().judge_rejection(&Rejection::new(401, None, &body)) {
        RejectionVerdict::Configuration(message) => assert!(message.contains("Api Key was not provided")),
        other => panic!("a missing partner id is configuration, not {other:?}"),
    }

    // The gateway about a token: replay-worthy.
    let expired =
        http.get(&patients).header("Authorization", "Bearer AAIgnot-issued-here").send().await.unwrap();
    assert_eq!(expired.status(), 401);
    let body = expired.bytes().await.unwrap();
    assert_eq!(
        source.api_profile().judge_rejection(&Rejection::new(401, None, &body)),
        RejectionVerdict::TokenRejected
    );
    // Anything unreadable is trusted as a token problem too (one bounded replay).
    assert_eq!(
        source.api_profile().judge_rejection(&Rejection::new(401, None, b"")),
        RejectionVerdict::TokenRejected
    );
}

#[tokio::test]
async fn an_expired_token_is_replayed_once_with_a_new_one() {
    // The gateway's clock runs ahead of ours: it sees the token expire while the
    // engine still trusts it, which is exactly when a 401 must lead to a replay.
    let gateway_clock = seed_clock();
    let our_clock = seed_clock();
    let sandbox = sandbox_on(&gateway_clock).await.unwrap();
    let msk = sandbox.msk();
    let source = source_builder(msk).build().unwrap();
    let fhir = source.fhir_base().to_owned();
    let manager = manager_on(source, &our_clock);
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();

    let first = client.get(format!("{fhir}/Patient")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let old = manager.cached().unwrap();

    gateway_clock.advance(Duration::from_secs(3601));
    let replayed = client.get(format!("{fhir}/Patient/10081004")).send().await.unwrap();
    assert_eq!(replayed.status(), 200);
    let new = manager.cached().unwrap();
    assert!(!new.same_value(&old));

    let log = msk.api_log();
    assert_eq!(log.len(), 3, "first call, rejected call, exactly one replay");
    assert_eq!(bearer_of!(log[1]), old.access_token().expose_secret());
    assert_eq!(bearer_of!(log[2]), new.access_token().expose_secret());
    assert_eq!(log[2].path(), format!("{FHIR_PATH}/Patient/10081004"));
    assert_eq!(log[2].header("x-partnerid"), Some("MSK_PROVIDED_PARTNERID"), "extras on the replay too");
    assert_eq!(log[2].query_values("researchstudy"), ["FHIR-T"]);
    assert_eq!(msk.token_requests_for(msk.client_id()), 2);
    assert_eq!(manager.stats().invalidations, 1);

    // Revocation at the gateway is handled the same way.
    msk.revoke_all();
    let again = client.get(format!("{fhir}/Patient/10081007")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(msk.api_requests(), 5);
    assert_eq!(msk.token_requests_for(msk.client_id()), 3);
}

#[tokio::test]
async fn wrong_credentials_give_the_typed_rfc_error() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let source =
        MskSource::builder(msk.base_url(), msk.client_id(), ClientSecret::new("CANARY-wrong-secret"))
            .partner_id(msk.partner_id())
            .research_study(msk.research_study())
            .build()
            .unwrap();
    let fhir = source.fhir_base().to_owned();
    let manager = manager_on(source, &clock);

    let err = manager.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OAuth);
    let oauth = err.oauth_error().unwrap();
    assert_eq!(oauth.code, OAuthErrorCode::InvalidClient);
    assert_eq!(oauth.status, 401);
    assert_eq!(
        oauth.description.as_deref(),
        Some("Client authentication failed: unknown client_id or wrong client_secret")
    );
    assert!(!err.is_retryable());
    for text in [err.to_string(), format!("{err:?}"), format!("{:?}", manager.source())] {
        assert!(!text.contains("CANARY"), "secret leaked: {text}");
    }
    assert_eq!(msk.token_requests_for(msk.client_id()), 1, "invalid_client is not retried");

    // Through the client: the same typed error, and the API is never called.
    let client =
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
    let err = client.get(format!("{fhir}/Patient")).send().await.unwrap_err();
    assert_eq!(err.oauth_error().map(|o| o.code.clone()), Some(OAuthErrorCode::InvalidClient));
    assert_eq!(msk.api_requests(), 0);
}

#[tokio::test]
async fn searches_page_through_next_links() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let source = source_builder(msk).build().unwrap();
    let fhir = source.fhir_base().to_owned();
    let profile = source.api_profile();
    let client = AuthClient::builder(manager_on(source, &clock)).profile(profile).build().unwrap();

    let mut url = format!("{fhir}/Patient?_count=3");
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let bundle: Value = response.json().await.unwrap();
        pages += 1;
        assert_eq!(bundle["total"], 9);
        for entry in bundle["entry"].as_array().unwrap() {
            ids.push(entry["resource"]["id"].as_str().unwrap().to_owned());
        }
        let Some(next) = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") else {
            break;
        };
        url = next["url"].as_str().unwrap().to_owned();
        let link = reqwest::Url::parse(&url).unwrap();
        let query: Vec<(String, String)> = link.query_pairs().into_owned().collect();
        let has = |k: &str, v: &str| query.iter().any(|(qk, qv)| qk == k && qv == v);
        assert!(link.as_str().starts_with(&format!("{fhir}/Patient?")), "{url}");
        assert!(has("researchstudy", "FHIR-T"), "next link keeps the study: {url}");
        assert!(has("x-partnerid", "MSK_PROVIDED_PARTNERID"), "next link carries the partner id: {url}");
        assert!(has("page", &(pages + 1).to_string()), "MSK pages with page=N: {url}");
        assert!(pages < 10, "runaway paging");
    }
    assert_eq!(pages, 3);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (9, 9), "every patient once: {ids:?}");

    let log = msk.api_log();
    assert_eq!(log.len(), 3);
    for (n, request) in log.iter().enumerate() {
        assert_eq!(request.header("x-partnerid"), Some("MSK_PROVIDED_PARTNERID"));
        assert!(request.header("authorization").is_some_and(|v| v.starts_with("Bearer AAIg")));
        // The next links already hold the study and format: the engine adds only
        // what a URL lacks, so each appears exactly once on every page.
        assert_eq!(request.query_values("researchstudy"), ["FHIR-T"]);
        assert_eq!(request.query_values("_format"), ["json"]);
        if n > 0 {
            assert_eq!(request.query_values("page"), [(n + 1).to_string()]);
        }
    }
    assert_eq!(msk.token_requests_for(msk.client_id()), 1);
}

#[tokio::test]
async fn the_token_endpoint_is_as_strict_as_msk_documents() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(msk.token_url()).header("Content-Type", "application/x-www-form-urlencoded").body(body)
    };
    async fn error_of(response: reqwest::Response) -> (u16, String, String) {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["error"].as_str().unwrap().to_owned(),
            body["error_description"].as_str().unwrap_or("").to_owned(),
        )
    }

    let cases: [(&str, u16, &str, &str); 7] = [
        (
            "client_id=MSK_PROVIDED_CLIENTID&client_secret=MSK_PROVIDED_SECRET&grant_type=client_credentials",
            400,
            "invalid_request",
            "Missing required parameter: scope",
        ),
        (
            "client_id=MSK_PROVIDED_CLIENTID&client_secret=MSK_PROVIDED_SECRET&grant_type=client_credentials&scope=openid",
            400,
            "invalid_scope",
            "The only scope offered is: full",
        ),
        (
            "client_id=MSK_PROVIDED_CLIENTID&client_secret=MSK_PROVIDED_SECRET&grant_type=client_credentials&scope=full&audience=x",
            400,
            "invalid_request",
            "Unexpected parameter: audience",
        ),
        (
            "client_id=MSK_PROVIDED_CLIENTID&client_secret=MSK_PROVIDED_SECRET&grant_type=client_credentials&scope=full&scope=full",
            400,
            "invalid_request",
            "Repeated parameter: scope",
        ),
        (
            "client_id=MSK_PROVIDED_CLIENTID&client_secret=MSK_PROVIDED_SECRET&grant_type=password&scope=full",
            400,
            "unsupported_grant_type",
            "Only the client_credentials grant type is supported",
        ),
        (
            "client_id=MSK_PROVIDED_CLIENTID&grant_type=client_credentials&scope=full",
            401,
            "invalid_client",
            "Missing required parameters: client_id and client_secret",
        ),
        (
            "client_id=MSK_PROVIDED_CLIENTID&client_secret=nope&grant_type=client_credentials&scope=full",
            401,
            "invalid_client",
            "Client authentication failed: unknown client_id or wrong client_secret",
        ),
    ];
    for (body, status, code, description) in cases {
        let got = error_of(post(body).send().await.unwrap()).await;
        assert_eq!(got, (status, code.to_owned(), description.to_owned()), "{body}");
    }

    // JSON instead of a form; Basic on top of body credentials; GET.
    let json = http.post(msk.token_url()).json(&serde_json::json!({"client_id": "MSK_PROVIDED_CLIENTID"}));
    assert_eq!(error_of(json.send().await.unwrap()).await.1, "invalid_request");
    let twice = post(SEED_PAYLOAD).basic_auth("MSK_PROVIDED_CLIENTID", Some("MSK_PROVIDED_SECRET"));
    assert_eq!(
        error_of(twice.send().await.unwrap()).await.2,
        "Multiple OAuth client credentials are provided"
    );
    let get = http.get(msk.token_url()).send().await.unwrap();
    assert_eq!(get.status(), 405);

    // Every attempt counted; per client when its form named one (not the JSON
    // body, not the GET).
    assert_eq!(msk.token_requests_for("MSK_PROVIDED_CLIENTID"), 8);
    assert_eq!(msk.token_requests(), 10);
    assert_eq!(msk.registry().issued_count(), 0, "none of these got a token");

    // The provider's own configuration errors never reach the wire.
    let no_partner = MskSource::builder(msk.base_url(), msk.client_id(), msk.client_secret())
        .research_study("FHIR-T")
        .build()
        .unwrap_err();
    assert_eq!(no_partner.kind(), ErrorKind::Configuration);
}

#[tokio::test]
async fn the_api_is_as_strict_as_msk_documents() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let http = reqwest::Client::new();
    let token = manager_on(source_builder(msk).build().unwrap(), &clock).token().await.unwrap();
    let bearer = format!("Bearer {}", token.access_token().expose_secret());
    let fhir = msk.fhir_base();
    let get = |path: &str, partner: Option<&str>| {
        let mut request = http.get(format!("{fhir}{path}")).header("Authorization", &bearer);
        if let Some(p) = partner {
            request = request.header("x-partnerid", p);
        }
        request
    };
    let partner = Some("MSK_PROVIDED_PARTNERID");

    // The gateway: no bearer, or one it never issued, gets API Connect's document.
    for request in [
        http.get(format!("{fhir}/Patient?researchstudy=FHIR-T"))
            .header("x-partnerid", "MSK_PROVIDED_PARTNERID"),
        http.get(format!("{fhir}/Patient?researchstudy=FHIR-T"))
            .header("x-partnerid", "MSK_PROVIDED_PARTNERID")
            .header("Authorization", "Bearer AAIgforged"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"httpCode": "401", "httpMessage": "Unauthorized", "moreInformation": APIC_MORE})
        );
    }

    // Blaze: partner id missing, wrong; study missing, not the partner's.
    let cases: [(&str, Option<&str>, u16, &str); 5] = [
        ("/Patient?researchstudy=FHIR-T&_format=json", None, 401, "Api Key was not provided"),
        ("/Patient?researchstudy=FHIR-T&_format=json", Some("WRONG"), 401, "Incorrect Partnerid name"),
        (
            "/Patient?researchstudy=FHIR-T&_format=json&x-partnerid=OTHER",
            partner,
            401,
            "Incorrect Partnerid name",
        ),
        (
            "/Patient?_format=json",
            partner,
            400,
            "Missing required query parameter: researchstudy (the MSK unique study number)",
        ),
        ("/Patient?researchstudy=OTHER-STUDY&_format=json", partner, 403, "Access to protocol denied"),
    ];
    for (path, partner_id, status, text) in cases {
        let response = get(path, partner_id).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(response.headers()["content-type"], "application/fhir+json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(outcome_text(&body).unwrap(), text, "{path}");
    }

    // Patient by id and metadata need no study.
    for path in ["/Patient/10081001?_format=json", "/metadata?_format=json"] {
        assert_eq!(get(path, partner).send().await.unwrap().status(), 200, "{path}");
    }
    // The partner id may come in the query, as paging links carry it.
    let by_query = get("/Patient?researchstudy=FHIR-T&x-partnerid=MSK_PROVIDED_PARTNERID&_format=json", None)
        .send()
        .await;
    assert_eq!(by_query.unwrap().status(), 200);

    // Without _format=json, JSON labelled text/plain, as MSK warns.
    let plain = get("/Patient/10081001", partner).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["content-type"], "text/plain; charset=utf-8");
    let body: Value = serde_json::from_str(&plain.text().await.unwrap()).unwrap();
    assert_eq!(body["id"], "10081001");
    // No XML, no writes, no conflicting studies.
    assert_eq!(get("/Patient/10081001?_format=xml", partner).send().await.unwrap().status(), 406);
    let write = http
        .post(format!("{fhir}/Patient?researchstudy=FHIR-T"))
        .header("Authorization", &bearer)
        .header("x-partnerid", "MSK_PROVIDED_PARTNERID")
        .json(&serde_json::json!({"resourceType": "Patient"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 405);
    let conflicting = get("/Patient?researchstudy=FHIR-T&researchstudy=OTHER", partner).send().await.unwrap();
    assert_eq!(conflicting.status(), 400);

    // Default page size is MSK's 50; paging by `page`.
    let bundle: Value = get("/Patient?researchstudy=FHIR-T&_format=json", partner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 9);
    let self_link = bundle["link"][0]["url"].as_str().unwrap();
    assert!(self_link.contains("_count=50") && self_link.contains("page=1"), "{self_link}");
}

#[tokio::test]
async fn faults_apply_to_the_token_endpoint_and_the_api() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    msk.faults().set_error_rate(1.0);
    let manager = manager_on(source_builder(msk).build().unwrap(), &clock);
    let err = manager.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let api = reqwest::get(format!("{}/metadata", msk.fhir_base())).await.unwrap();
    assert_eq!(api.status(), 503);
    assert_eq!(msk.token_requests(), 0, "the fault answered before the emulator saw the request");

    msk.faults().clear();
    let token = reqwest::Client::new()
        .post(msk.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(SEED_PAYLOAD)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200, "back to normal once cleared");
}

#[tokio::test]
async fn nothing_secret_in_debug_output() {
    let clock = seed_clock();
    let sandbox = sandbox_on(&clock).await.unwrap();
    let msk = sandbox.msk();
    let builder = source_builder(msk);
    let builder_debug = format!("{builder:?}");
    let source = builder.build().unwrap();
    let manager = manager_on(source, &clock);
    let token = manager.token().await.unwrap();
    let value = token.access_token().expose_secret().to_owned();
    let texts = [
        builder_debug,
        format!("{:?}", manager.source()),
        format!("{manager:?}"),
        format!("{token:?}"),
        format!("{:?}", msk.token_log()),
        format!("{:?}", msk.api_log()),
        format!("{msk:?}"),
    ];
    for text in texts {
        assert!(!text.contains("MSK_PROVIDED_SECRET"), "client secret in {text}");
        assert!(!text.contains(&value), "access token in {text}");
    }
    // The partner id is not a secret, and is shown to help debugging.
    assert!(format!("{:?}", manager.source()).contains("MSK_PROVIDED_PARTNERID"));
}
