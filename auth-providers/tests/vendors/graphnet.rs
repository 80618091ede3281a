//! Graphnet over real HTTP on loopback, against the sandbox's Graphnet emulator:
//! the documented token exchange on the wire, expiry from the JWT `exp`, the
//! authorised-API claims, the APIM subscription key on every FHIR request, APIM's
//! own 401s, one replay after an expired token, and the RFC 6749 errors.

use std::time::{Duration, UNIX_EPOCH};

use auth_core::challenge::parse_challenges;
use auth_core::clock::ManualClock;
use auth_core::token::ExpirySource;
use auth_core::{
    AuthClient, ClientSecret, CredentialSource, ErrorKind, OAuthErrorCode, ResponseProblem, SecretValue,
    TokenManager,
};
use auth_core::{Rejection, RejectionVerdict};
use auth_providers::graphnet::{
    DEFAULT_API_CLAIM, GraphnetSource, GraphnetSourceBuilder, SUBSCRIPTION_KEY_HEADER,
};
use auth_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

/// A whole second, so JWT `exp` (whole seconds) and the clock agree exactly.
const T0: u64 = 1_800_000_000;
const SEED_KEY: &str = "5f1c0b6e9a2d4c7f8e5b1a0d6c9e2f47";
const MISSING_KEY: &str = r#"{"statusCode":401,"message":"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."}"#;
const INVALID_KEY: &str = r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#;

fn clock() -> ManualClock {
    ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(T0))
}

async fn sandbox(lifetime: Duration, clock: &ManualClock) -> std::io::Result<Sandbox> {
    Sandbox::start(SandboxConfig::default().with_token_lifetime(lifetime).with_clock(clock.clone())).await
}

/// A source for the emulator's seeded client (Graphnet's documented example).
fn source(sandbox: &Sandbox) -> GraphnetSourceBuilder {
    let g = sandbox.graphnet();
    GraphnetSource::builder(g.token_url(), g.client_id(), g.client_secret(), g.subscription_key())
}

fn manager(source: GraphnetSource, clock: &ManualClock) -> TokenManager<GraphnetSource> {
    TokenManager::builder(source).clock(clock.clone()).build()
}

/// One decoded part of a JWT (0: header, 1: claims), by the workspace's one decoder.
fn jwt_part(token: &str, index: usize) -> Option<Value> {
    let part =
        if index == 0 { auth_core::token::jwt_header(token) } else { auth_core::token::jwt_claims(token) };
    part.map(Value::Object)
}

#[tokio::test]
async fn the_documented_token_request_goes_on_the_wire_exactly() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(3600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    assert!(g.token_url().ends_with("/graphnet/vlive/hpca/oauth/token"), "{}", g.token_url());
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let token = tokens.token().await.unwrap();

    // Server side: Graphnet's example, field for field and in its order.
    let sent = g.last_token_request().unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/vlive/hpca/oauth/token");
    assert_eq!(sent.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        sent.body,
        "grant_type=client_credentials&client_id=%5Bclient-id-value%5D&client_secret=%5Bclient-secret-value%5D"
    );
    assert_eq!(sent.field_names(), ["grant_type", "client_id", "client_secret"]);
    assert_eq!(sent.field("client_id"), Some("[client-id-value]"));
    assert_eq!(sent.field("client_secret"), Some("[client-secret-value]"));
    assert_eq!(sent.authorization, None, "credentials in the body only, no Basic header");
    assert_eq!(sent.subscription_key, None, "the key is not sent to the token endpoint by default");
    assert!(!sent.header_names.iter().any(|h| h == "ocp-apim-subscription-key"));
    assert_eq!(sent.accept.as_deref(), Some("application/json"));
    assert_eq!((g.token_requests(), g.token_requests_for("[client-id-value]")), (1, 1));

    // Client side: `refresh_token: null` tolerated, expiry from the JWT.
    assert_eq!(token.token_type(), "Bearer");
    assert!(token.refresh_token().is_none());
    assert!(!tokens.source().supports_refresh());
    assert!(token.access_token().expose_secret().starts_with("eyJ"));
    assert_eq!(token.expiry_source(), ExpirySource::AccessTokenExp);
    assert_eq!(token.lifetime(), Duration::from_secs(3600));
    assert_eq!(token.expires_at(), UNIX_EPOCH + Duration::from_secs(T0 + 3600));
}

#[tokio::test]
async fn the_token_response_is_exactly_the_documented_example() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(3600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    // The request as Graphnet's page shows it: one header, three form fields.
    let response = reqwest::Client::new()
        .post(g.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=%5Bclient-id-value%5D&client_secret=%5Bclient-secret-value%5D")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    assert!(text.starts_with(r#"{"token_type":"Bearer","access_token":"eyJ"#), "{text}");
    assert!(text.ends_with(r#"","refresh_token":null}"#), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut fields: Vec<&String> = body.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["access_token", "refresh_token", "token_type"], "no expires_in");

    let jwt = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(jwt, 0).unwrap()["alg"], "HS256");
    let claims = jwt_part(jwt, 1).unwrap();
    assert_eq!(claims["exp"], T0 + 3600);
    assert_eq!(claims["sub"], "[client-id-value]");
    assert_eq!(claims[DEFAULT_API_CLAIM], json!(["Encounter", "Observation", "Patient"]));
    assert_eq!(g.authorised_apis("[client-id-value]"), ["Encounter", "Observation", "Patient"]);
}

#[tokio::test]
async fn expiry_follows_the_jwt_exp_on_the_emulator_clock() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(754), &clock).await.unwrap();
    clock.advance(Duration::from_secs(100));
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let token = tokens.token().await.unwrap();
    assert_eq!(token.expiry_source(), ExpirySource::AccessTokenExp);
    assert_eq!(token.lifetime(), Duration::from_secs(754));
    assert_eq!(token.expires_at(), UNIX_EPOCH + Duration::from_secs(T0 + 100 + 754));
    let claims = tokens.source().claims(&token).unwrap();
    assert_eq!(claims.expires_at(), Some(token.expires_at()));

    // A configured default lifetime does not override what the JWT says.
    let with_default =
        manager(source(&sandbox).default_lifetime(Duration::from_secs(60)).build().unwrap(), &clock);
    let token = with_default.token().await.unwrap();
    assert_eq!(
        (token.expiry_source(), token.lifetime()),
        (ExpirySource::AccessTokenExp, Duration::from_secs(754))
    );
}

#[tokio::test]
async fn an_opaque_token_is_a_clear_error_unless_a_default_lifetime_is_configured() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    g.set_opaque_tokens(true);

    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let error = tokens.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    let message = error.to_string();
    assert!(message.contains("not a JWT") && message.contains("default_lifetime"), "{message}");
    assert!(matches!(error.response_problem(), Some(ResponseProblem::Other(_))));
    assert!(!error.is_retryable(), "asking again gets the same kind of token");
    assert_eq!(g.token_requests(), 1, "not retried");
    assert!(!format!("{message} {error:?}").contains("gn-0"), "the token value is not echoed");

    let tokens =
        manager(source(&sandbox).default_lifetime(Duration::from_secs(900)).build().unwrap(), &clock);
    let token = tokens.token().await.unwrap();
    assert_eq!(token.expiry_source(), ExpirySource::Default);
    assert_eq!(token.lifetime(), Duration::from_secs(900));
    let claims = tokens.source().claims(&token).unwrap_err();
    assert_eq!(claims.kind(), ErrorKind::InvalidResponse);
    assert!(claims.to_string().contains("not a JWT"), "{claims}");

    // And the opaque token works at the gateway.
    let client = AuthClient::builder(tokens.clone()).profile(tokens.source().api_profile()).build().unwrap();
    let read = client.get(format!("{}/Patient/pat-1", g.fhir_base())).send().await.unwrap();
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn authorised_api_claims_are_typed_and_checkable_before_calling() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let token = tokens.token().await.unwrap();
    let claims = tokens.source().claims(&token).unwrap();
    let apis = claims.authorised_apis().unwrap();
    assert_eq!(apis.iter().collect::<Vec<_>>(), ["Encounter", "Observation", "Patient"]);
    assert!(claims.allows("Patient") && !claims.allows("Appointment"));
    claims.require_api("Patient").unwrap();
    let refused = claims.require_api("Appointment").unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Configuration);
    let text = refused.to_string();
    assert!(text.contains("`Appointment`") && text.contains("Encounter, Observation, Patient"), "{text}");
    assert_eq!(claims.subject(), Some("[client-id-value]"));
    assert!(claims.issuer().is_some_and(|i| i.ends_with("/graphnet/vlive/hpca")));

    // A client on-boarded for Encounter only can tell before calling Patient, and
    // the gateway agrees if it calls anyway (403, not a token problem: no replay).
    g.register_client("gp-practice-7", "practice-7-secret", &["Encounter"]);
    let narrow = GraphnetSource::builder(
        g.token_url(),
        "gp-practice-7",
        ClientSecret::new("practice-7-secret"),
        g.subscription_key(),
    )
    .build()
    .unwrap();
    let narrow = manager(narrow, &clock);
    let token = narrow.token().await.unwrap();
    let claims = narrow.source().claims(&token).unwrap();
    assert!(!claims.allows("Patient") && claims.allows("Encounter"));
    let client = AuthClient::builder(narrow.clone()).profile(narrow.source().api_profile()).build().unwrap();
    let forbidden = client.get(format!("{}/Patient/pat-1", g.fhir_base())).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(g.token_requests_for("gp-practice-7"), 1);

    // The claim name is an assumption: a deployment that names it differently is
    // told so instead of being told it may call nothing.
    let renamed = manager(source(&sandbox).api_claim("apis").build().unwrap(), &clock);
    let token = renamed.token().await.unwrap();
    let claims = renamed.source().claims(&token).unwrap();
    assert!(claims.authorised_apis().is_none());
    let text = claims.require_api("Patient").unwrap_err().to_string();
    assert!(text.contains("no `apis` claim") && text.contains("api_claim"), "{text}");
}

#[tokio::test]
async fn fhir_create_read_search_carry_the_subscription_key_on_every_request() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let client = AuthClient::builder(tokens.clone()).profile(tokens.source().api_profile()).build().unwrap();
    let fhir = g.fhir_base();

    let patient = json!({"resourceType": "Patient", "name": [{"family": "Hatherly", "given": ["Ada"]}],
                         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}]});
    let created = client.post(format!("{fhir}/Patient")).json(&patient).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let read = client.get(format!("{fhir}/Patient/{id}")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["name"][0]["family"], "Hatherly");

    let search = client
        .get(format!("{fhir}/Patient"))
        .query(&[("identifier", "https://fhir.nhs.uk/Id/nhs-number|9000000009")])
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 200);
    let bundle: Value = search.json().await.unwrap();
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], id.as_str());
    assert!(g.fhir_store().get(&id).is_some());

    let token = tokens.token().await.unwrap();
    let log = g.api_log();
    assert_eq!(log.len(), 3);
    for request in &log {
        assert_eq!(request.subscription_key.as_deref(), Some(SEED_KEY), "{request:?}");
        assert_eq!(request.bearer.as_deref(), Some(token.access_token().expose_secret()));
        assert!((200..300).contains(&request.status), "{request:?}");
    }
    assert_eq!(log.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["POST", "GET", "GET"]);
    assert_eq!(g.token_requests(), 1, "one token for all three calls");

    // The key and every other secret stay out of Debug output.
    let headers = tokens.source().api_profile().headers().clone();
    assert!(headers[SUBSCRIPTION_KEY_HEADER].is_sensitive());
    let debug = format!(
        "{tokens:?} {client:?} {:?} {:?} {token:?} {headers:?} {log:?} {:?} {g:?}",
        tokens.source(),
        source(&sandbox),
        g.token_log()
    );
    for secret in [SEED_KEY, "client-secret-value", token.access_token().expose_secret()] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert!(debug.contains("[client-id-value]"), "the client id is not a secret: {debug}");
}

#[tokio::test]
async fn apim_refuses_a_missing_or_wrong_key_with_its_own_401() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let token = tokens.token().await.unwrap();
    let url = format!("{}/Patient/pat-1", g.fhir_base());
    let http = reqwest::Client::new();
    let bearer = token.access_token().expose_secret();

    let missing = http.get(&url).bearer_auth(bearer).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.headers().get("www-authenticate").is_none(), "APIM sends no bearer challenge");
    assert_eq!(missing.text().await.unwrap(), MISSING_KEY);

    let wrong =
        http.get(&url).bearer_auth(bearer).header(SUBSCRIPTION_KEY_HEADER, "0000").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.text().await.unwrap(), INVALID_KEY);

    // The key is checked before the token, as APIM does.
    let neither = http.get(&url).header(SUBSCRIPTION_KEY_HEADER, "0000").send().await.unwrap();
    assert_eq!(neither.text().await.unwrap(), INVALID_KEY);
}

#[tokio::test]
async fn a_key_problem_is_a_configuration_error_and_burns_no_token() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    let url = format!("{}/Patient/pat-1", g.fhir_base());

    // A wrong key: one token fetched, one API call, no replay, the token kept.
    let wrong_key = "wrong-key-canary-0000";
    let source =
        GraphnetSource::builder(g.token_url(), g.client_id(), g.client_secret(), SecretValue::new(wrong_key))
            .build()
            .unwrap();
    let tokens = manager(source, &clock);
    let client = AuthClient::builder(tokens.clone()).profile(tokens.source().api_profile()).build().unwrap();
    let error = client.get(&url).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Configuration);
    let text = error.to_string();
    assert!(text.contains("subscription key is invalid") && text.contains(SUBSCRIPTION_KEY_HEADER), "{text}");
    assert!(!format!("{text} {error:?}").contains(wrong_key));
    assert!(!error.is_retryable());
    assert_eq!(g.token_requests(), 1);
    assert_eq!(g.api_log().len(), 1, "no replay");
    assert_eq!(g.api_log()[0].subscription_key.as_deref(), Some(wrong_key));
    assert_eq!(tokens.stats().invalidations, 0);
    let kept = tokens.cached().unwrap();

    // Calling again reuses the same token: still one token request.
    let again = client.get(&url).send().await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Configuration);
    assert_eq!(g.token_requests(), 1);
    assert!(tokens.cached().unwrap().same_value(&kept));

    // A missing key (a caller blanking it on one request) says so.
    let fresh = manager(self::source(&sandbox).build().unwrap(), &clock);
    let good = AuthClient::builder(fresh.clone()).profile(fresh.source().api_profile()).build().unwrap();
    let error = good.get(&url).header(SUBSCRIPTION_KEY_HEADER, "").send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Configuration);
    assert!(error.to_string().contains("subscription key is missing"), "{error}");
    assert_eq!(g.token_requests(), 2, "one per manager, none burnt");
    assert_eq!(g.api_rejections(), 3);
}

#[test]
fn the_rejection_judge_tells_key_problems_from_token_problems() {
    let source =
        GraphnetSource::builder("http://127.0.0.1:9/t", "c", ClientSecret::new("s"), SecretValue::new("k"))
            .build()
            .unwrap();
    assert!(source.api_profile().wants_rejection_body());
    let judge = |body: &str, challenge: Option<&str>| {
        let challenge = challenge.and_then(|c| parse_challenges(c).into_iter().next());
        source.api_profile().judge_rejection(&Rejection::new(401, challenge.as_ref(), body.as_bytes()))
    };
    assert!(matches!(judge(MISSING_KEY, None), RejectionVerdict::Configuration(m) if m.contains("missing")));
    assert!(matches!(judge(INVALID_KEY, None), RejectionVerdict::Configuration(m) if m.contains("invalid")));
    let bearer = r#"{"statusCode":401,"message":"Unauthorized. Access token is missing or invalid."}"#;
    assert_eq!(judge(bearer, Some(r#"Bearer error="invalid_token""#)), RejectionVerdict::TokenRejected);
    assert_eq!(judge(bearer, None), RejectionVerdict::TokenRejected);
    assert_eq!(judge("", None), RejectionVerdict::TokenRejected);
    assert_eq!(judge("<html>401</html>", None), RejectionVerdict::TokenRejected);
    // A bearer challenge wins over a body that mentions the key.
    assert_eq!(judge(INVALID_KEY, Some(r#"Bearer error="invalid_token""#)), RejectionVerdict::TokenRejected);
}

#[tokio::test]
async fn an_expired_token_is_replayed_once_with_a_new_one() {
    // The gateway's clock runs ahead of ours: it sees the token expired while the
    // manager, on its own clock, still thinks it fresh. That is how a cached token
    // meets an expiry the client did not foresee.
    let gateway_clock = clock();
    let our_clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &gateway_clock).await.unwrap();
    let g = sandbox.graphnet();
    let tokens = manager(source(&sandbox).build().unwrap(), &our_clock);
    let client = AuthClient::builder(tokens.clone()).profile(tokens.source().api_profile()).build().unwrap();
    let url = format!("{}/Patient/pat-1", g.fhir_base());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let first = tokens.cached().unwrap();

    gateway_clock.advance(Duration::from_secs(601));
    let expired = reqwest::Client::new()
        .get(&url)
        .bearer_auth(first.access_token().expose_secret())
        .header(SUBSCRIPTION_KEY_HEADER, SEED_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    let challenge = expired.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge}");

    let replayed = client.get(&url).send().await.unwrap();
    assert_eq!(replayed.status(), 200);
    assert_eq!(g.token_requests(), 2, "one new token");
    assert_eq!(tokens.stats().invalidations, 1);
    let log = g.api_log();
    let (rejected, replay) = (&log[log.len() - 2], &log[log.len() - 1]);
    assert_eq!((rejected.status, replay.status), (401, 200));
    assert_eq!(rejected.bearer.as_deref(), Some(first.access_token().expose_secret()));
    let second = tokens.cached().unwrap();
    assert!(!second.same_value(&first));
    assert_eq!(replay.bearer.as_deref(), Some(second.access_token().expose_secret()));
    assert!(log.iter().all(|r| r.subscription_key.as_deref() == Some(SEED_KEY)));
    // The new token expires by the gateway's clock: 600 s after it was issued there.
    assert_eq!(second.expires_at(), UNIX_EPOCH + Duration::from_secs(T0 + 601 + 600));

    // A revoked token (a key rotation at Graphnet) is replaced the same way.
    g.revoke_all();
    let before = g.api_log().len();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(g.token_requests(), 3);
    assert_eq!(g.api_log().len() - before, 2, "one rejected call, one replay");
}

#[tokio::test]
async fn wrong_credentials_give_the_typed_rfc_6749_error_with_its_description() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    let canary = "wrong-secret-canary";
    let source = GraphnetSource::builder(
        g.token_url(),
        g.client_id(),
        ClientSecret::new(canary),
        g.subscription_key(),
    )
    .build()
    .unwrap();
    let tokens = manager(source, &clock);
    let error = tokens.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OAuth);
    let oauth = error.oauth_error().unwrap();
    assert_eq!(oauth.code, OAuthErrorCode::InvalidClient);
    assert_eq!(oauth.status, 400);
    assert_eq!(
        oauth.description.as_deref(),
        Some("Client authentication failed: unknown client or wrong client secret")
    );
    assert!(!error.is_retryable());
    assert_eq!(g.token_requests_for("[client-id-value]"), 1, "never retried");
    assert!(!format!("{error} {error:?}").contains(canary));

    // An unknown client is refused the same way.
    let stranger =
        GraphnetSource::builder(g.token_url(), "stranger", g.client_secret(), g.subscription_key())
            .build()
            .unwrap();
    let error = manager(stranger, &clock).token().await.unwrap_err();
    assert_eq!(error.oauth_error().map(|o| o.code.clone()), Some(OAuthErrorCode::InvalidClient));
    assert_eq!(g.token_requests_for("stranger"), 1);
}

#[tokio::test]
async fn the_subscription_key_on_token_requests_is_configurable() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    // A deployment whose token endpoint also sits behind the gateway.
    g.require_key_on_token_request(true);

    let error = manager(source(&sandbox).build().unwrap(), &clock).token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    assert_eq!(error.status(), Some(401));
    assert!(matches!(error.response_problem(), Some(ResponseProblem::UnexpectedStatus { .. })));
    assert_eq!(g.last_token_request().unwrap().subscription_key, None);

    let with_key = source(&sandbox).subscription_key_on_token_request(true).build().unwrap();
    assert!(with_key.sends_key_on_token_request());
    let token = manager(with_key, &clock).token().await.unwrap();
    assert_eq!(token.expiry_source(), ExpirySource::AccessTokenExp);
    let sent = g.last_token_request().unwrap();
    assert_eq!(sent.subscription_key.as_deref(), Some(SEED_KEY));
    assert_eq!(
        sent.field_names(),
        ["grant_type", "client_id", "client_secret"],
        "the key is a header, not a field"
    );
}

#[tokio::test]
async fn the_token_endpoint_is_as_strict_as_documented() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    let http = reqwest::Client::new();
    let form = "application/x-www-form-urlencoded";
    let good = "grant_type=client_credentials&client_id=%5Bclient-id-value%5D&client_secret=%5Bclient-secret-value%5D";
    let cases: [(&str, &str, Option<&str>, u16, &str); 6] = [
        (
            "application/json",
            r#"{"grant_type":"client_credentials","client_id":"[client-id-value]","client_secret":"[client-secret-value]"}"#,
            None,
            400,
            "invalid_request",
        ),
        (
            form,
            "grant_type=password&client_id=%5Bclient-id-value%5D&client_secret=%5Bclient-secret-value%5D",
            None,
            400,
            "unsupported_grant_type",
        ),
        (
            form,
            "client_id=%5Bclient-id-value%5D&client_secret=%5Bclient-secret-value%5D",
            None,
            400,
            "invalid_request",
        ),
        (form, "grant_type=client_credentials&client_id=%5Bclient-id-value%5D", None, 400, "invalid_request"),
        (form, &format!("{good}&client_id=other"), None, 400, "invalid_request"),
        (
            form,
            "grant_type=client_credentials",
            Some("Basic W2NsaWVudC1pZC12YWx1ZV06W2NsaWVudC1zZWNyZXQtdmFsdWVd"),
            400,
            "invalid_request",
        ),
    ];
    for (content_type, body, authorization, status, code) in cases {
        let mut request = http.post(g.token_url()).header("Content-Type", content_type).body(body.to_owned());
        if let Some(a) = authorization {
            request = request.header("Authorization", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], code, "{body}");
        assert!(error["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    }
    let get = http.get(g.token_url()).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(g.token_requests(), 6, "every POST counted, whatever its outcome");
    assert_eq!(g.registry().issued_count(), 0);

    let ok = http.post(g.token_url()).header("Content-Type", form).body(good).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(g.registry().issued_count(), 1);
}

#[tokio::test]
async fn gateway_faults_surface_as_retryable_errors_and_clear() {
    let clock = clock();
    let sandbox = sandbox(Duration::from_secs(600), &clock).await.unwrap();
    let g = sandbox.graphnet();
    g.faults().set_error_rate(1.0);
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    let error = tokens.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.is_retryable());
    g.faults().clear();
    let tokens = manager(source(&sandbox).build().unwrap(), &clock);
    assert!(tokens.token().await.is_ok());
}

#[test]
fn configurations_that_cannot_work_are_refused_when_built() {
    let b = |url: &str, id: &str, key: &str| {
        GraphnetSource::builder(url, id, ClientSecret::new("secret-canary"), SecretValue::new(key))
    };
    let ok = "https://coret1.syhapp.com/vlive/hpca/oauth/token";
    let source = b(ok, "c", "k").build().unwrap();
    assert_eq!(source.cache_key().provider(), "graphnet");
    assert_eq!(source.cache_key().token_url(), ok);
    assert_eq!(source.api_claim(), DEFAULT_API_CLAIM);
    assert!(!source.sends_key_on_token_request());
    let kind = |r: auth_core::Result<GraphnetSource>| r.map(|_| ()).unwrap_err().kind();
    assert_eq!(kind(b(ok, "c", "").build()), ErrorKind::Configuration, "no subscription key");
    assert_eq!(kind(b(ok, "", "k").build()), ErrorKind::Configuration, "no client id");
    assert_eq!(kind(b("http://graphnet.example/token", "c", "k").build()), ErrorKind::Configuration);
    assert_eq!(kind(b(ok, "c", "k").default_lifetime(Duration::ZERO).build()), ErrorKind::Configuration);
    assert_eq!(kind(b(ok, "c", "k").api_claim("").build()), ErrorKind::Configuration);
    let bad_key = b(ok, "c", "key-canary\n").build().map(|_| ()).unwrap_err();
    assert_eq!(bad_key.kind(), ErrorKind::Configuration);
    assert!(!bad_key.to_string().contains("key-canary"), "{bad_key}");
    let debug = format!("{:?} {:?}", b(ok, "c", "key-canary"), b(ok, "c", "key-canary").build().unwrap());
    assert!(!debug.contains("key-canary") && !debug.contains("secret-canary"), "{debug}");
}
