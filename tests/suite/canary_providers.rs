//! Issue 9, part 4: secret canaries for every provider.
//!
//! Each provider (the generic OAuth2 source, SanteDB with a device secret and with
//! mutual TLS, Aidbox, MSK, Graphnet with its subscription key, SMART with its
//! private key) runs its full flow against its sandbox emulator over real HTTP on
//! 127.0.0.1, with canary secrets, and with tokens that carry a canary marker
//! (`SandboxConfig::with_token_marker`; JWTs, which cannot carry it, are searched
//! for by their whole value). Errors are provoked too: a wrong secret, a token the
//! API rejects (replayed, then with the provider down), identity provider 5xx and
//! reset connections, a source that panics, a token that cannot be a header.
//!
//! Asserted: no canary (nor the Basic-encoded credentials, nor a line of a private
//! key) appears in any log line of any crate at TRACE, any error's Display or
//! Debug, the Debug of sources, managers, clients and tokens, the emulators'
//! records, or any panic message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::oauth2::OAuth2Source;
use auth_core::request::{BasicEncoding, ClientAuthMethod};
use auth_core::{
    ApiProfile, AuthClient, CacheKey, ClientSecret, CredentialSource, DeviceSecret, FetchContext,
    ManagerConfig, RetryPolicy, SecretValue, Token, TokenManager,
};
use auth_fhir::{FhirClient, Patient};
use auth_providers::aidbox::AidboxSource;
use auth_providers::graphnet::GraphnetSource;
use auth_providers::msk::MskSource;
use auth_providers::santedb::SanteDbSource;
use auth_sandbox::faults::Faults;
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};
use auth_sandbox::tokens::TokenRegistry;
use auth_sandbox::{Sandbox, SandboxConfig};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Special characters on purpose: they exercise url-encoding and Basic encoding,
/// and every encoded form still starts with the `CANARY-` prefix searched for.
const CLIENT_SECRET: &str = "CANARY-client-secret-$+/=&%-7c1e";
const WRONG_SECRET: &str = "CANARY-wrong-secret-0f9d";
const DEVICE_SECRET: &str = "CANARY-device-secret-42aa";
const SUB_KEY: &str = "CANARY-subscription-key-93c1";
const WRONG_SUB_KEY: &str = "CANARY-wrong-subscription-key-5be0";
/// Put in front of every opaque token the emulators issue.
const TOKEN_MARKER: &str = "CANARY-token-";
const STATIC: [&str; 6] = [CLIENT_SECRET, WRONG_SECRET, DEVICE_SECRET, SUB_KEY, WRONG_SUB_KEY, TOKEN_MARKER];

/// What was produced, and every secret value that must not be in it.
#[derive(Default)]
struct Checks {
    outputs: Vec<(String, String)>,
    /// Secrets only known at run time: token values, encodings, key lines.
    secrets: Vec<String>,
}

impl Checks {
    fn output(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.outputs.push((what.into(), text.into()));
    }

    fn secret(&mut self, value: impl Into<String>) {
        let value = value.into();
        // Short fragments would match by chance; every real secret here is longer.
        if value.len() >= 12 && !self.secrets.contains(&value) {
            self.secrets.push(value);
        }
    }

    /// A client id and secret as a Basic header carries them (raw and url-encoded).
    fn basic(&mut self, id: &str, secret: &str) {
        self.secret(STANDARD.encode(format!("{id}:{secret}")));
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        self.secret(STANDARD.encode(format!("{}:{}", enc(id), enc(secret))));
    }

    /// Every line of a PEM's body, and the whole PEM.
    fn pem(&mut self, pem: &str) {
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            self.secret(line.trim());
        }
        self.secret(pem);
    }

    fn token(&mut self, what: &str, token: &Token) {
        self.secret(token.access_token().expose_secret());
        if let Some(r) = token.refresh_token() {
            self.secret(r.expose_secret());
        }
        if let Some(i) = token.id_token() {
            self.secret(i.expose_secret());
        }
        self.output(format!("{what}: token Debug"), format!("{token:?}"));
        self.output(format!("{what}: token pretty Debug"), format!("{token:#?}"));
        self.output(format!("{what}: token extras"), format!("{:?} {:?}", token.extra(), token.scope()));
    }

    fn error(&mut self, what: &str, error: &auth_core::Error) {
        let mut chain = String::new();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            chain.push_str(&format!("{s} / {s:?}\n"));
            source = s.source();
        }
        self.output(format!("{what}: error"), format!("{error}\n{error:#}\n{error:?}\n{error:#?}\n{chain}"));
    }

    fn result<T: std::fmt::Debug>(&mut self, what: &str, result: &auth_core::Result<T>) {
        match result {
            Ok(v) => self.output(format!("{what}: ok"), format!("{v:?}")),
            Err(e) => self.error(what, e),
        }
    }

    fn assert_clean(&self, what: &str, text: &str) {
        for canary in STATIC.iter().copied().chain(self.secrets.iter().map(String::as_str)) {
            assert!(!text.contains(canary), "{what} leaks `{canary}`:\n{text}");
        }
        assert!(!text.to_lowercase().contains("canary-"), "{what} leaks a canary:\n{text}");
    }
}

/// Retries: one quick retry, short backoff, so provoked failures do not stall the test.
fn config() -> ManagerConfig {
    let mut config = ManagerConfig::default();
    let mut retry = RetryPolicy::default();
    retry.attempts = 2;
    retry.backoff_base = Duration::from_millis(50);
    retry.backoff_max = Duration::from_millis(100);
    retry.non_retryable_ttl = Duration::from_millis(100);
    config.retry = retry;
    config
}

/// A source that panics, formatting its inner source (and so its secrets) into
/// the panic message: the manager must survive it and the message must be clean.
#[derive(Debug)]
struct Exploding<S>(S);

#[async_trait]
impl<S: CredentialSource> CredentialSource for Exploding<S> {
    fn cache_key(&self) -> &CacheKey {
        self.0.cache_key()
    }

    async fn fetch(&self, _ctx: &FetchContext) -> auth_core::Result<Token> {
        panic!("source exploded: {:?} / {:#?}", self.0, self.0)
    }
}

/// The emulator side of one provider.
struct Idp<'a> {
    registry: &'a TokenRegistry,
    faults: &'a Faults,
    fhir_base: String,
}

/// The full flow of one provider, and every error path worth provoking.
async fn exercise<S: CredentialSource + 'static>(
    cx: &mut Checks,
    name: &str,
    idp: &Idp<'_>,
    make: impl Fn() -> S,
    wrong_secret: S,
    profile: ApiProfile,
) {
    let manager = TokenManager::builder(make()).config(config()).build();
    let client = AuthClient::builder(manager.clone()).profile(profile.clone()).build().unwrap();
    cx.output(format!("{name}: api profile"), format!("{profile:?}"));
    let fhir = FhirClient::new(client.clone(), &idp.fhir_base).unwrap();

    // The happy path: token, read, search.
    let token = manager.token().await.unwrap_or_else(|e| panic!("{name}: {e}"));
    cx.token(name, &token);
    // Each path is asserted to have worked as it should, so a broken flow cannot
    // pass as leak-free.
    let read = fhir.read::<Patient>("pat-1").await;
    cx.result(&format!("{name}: read"), &read);
    assert_eq!(read.as_ref().map(|p| p.id.as_deref()).ok().flatten(), Some("pat-1"), "{name}: read");
    let missing = fhir.read::<Patient>("no-such-patient").await;
    cx.result(&format!("{name}: read missing"), &missing);
    assert_eq!(
        missing.as_ref().err().and_then(|e| e.status()),
        Some(404),
        "{name}: a missing patient is a 404"
    );
    let raw = client.get(format!("{}/Patient?_count=2", idp.fhir_base)).send().await;
    cx.output(format!("{name}: raw response"), format!("{:?}", raw.as_ref().map(|r| r.status())));
    assert_eq!(raw.as_ref().map(|r| r.status().as_u16()).ok(), Some(200), "{name}: raw search");

    // The API rejects the token: dropped, replayed with a new one.
    idp.registry.revoke_all();
    let replayed = fhir.read::<Patient>("pat-1").await;
    cx.result(&format!("{name}: replayed read"), &replayed);
    assert!(replayed.is_ok(), "{name}: the replay with a new token succeeds");
    assert_eq!(manager.stats().invalidations, 1, "{name}: the rejected token was dropped");
    if let Some(t) = manager.cached() {
        cx.token(&format!("{name} after replay"), &t);
    }

    // Rejected again, and the provider is down: the call fails.
    idp.registry.revoke_all();
    idp.faults.set_error_rate(1.0);
    let failed = fhir.read::<Patient>("pat-1").await;
    assert!(failed.is_err(), "{name}: a rejected token and no provider must fail");
    cx.result(&format!("{name}: rejected, provider down"), &failed);
    idp.faults.clear();

    // Provider 5xx and reset connections, from a cold start.
    for (what, set) in [("503", Faults::set_error_rate as fn(&Faults, f64)), ("reset", Faults::set_drop_rate)]
    {
        set(idp.faults, 1.0);
        let cold = TokenManager::builder(make()).config(config()).build();
        let err = cold.token().await.map(|_| ());
        assert!(err.is_err(), "{name}: provider {what} must fail");
        cx.result(&format!("{name}: provider {what}"), &err);
        cx.output(format!("{name}: manager after {what}"), format!("{cold:?}"));
        idp.faults.clear();
    }

    // A wrong secret.
    let wrong = TokenManager::builder(wrong_secret).config(config()).build();
    let err = wrong.token().await.map(|_| ());
    assert!(err.is_err(), "{name}: a wrong secret must fail");
    cx.result(&format!("{name}: wrong secret"), &err);
    cx.output(format!("{name}: wrong manager"), format!("{wrong:?}"));

    // A source that panics.
    let exploding = TokenManager::builder(Exploding(make())).config(config()).build();
    let err = exploding.token().await.map(|_| ());
    assert!(err.is_err(), "{name}: a panicking source fails the fetch");
    cx.result(&format!("{name}: panicking source"), &err);

    // Debug of everything that holds a secret.
    cx.output(format!("{name}: source"), format!("{:?} {:#?}", manager.source(), manager.source()));
    cx.output(format!("{name}: manager"), format!("{manager:?} {manager:#?}"));
    cx.output(format!("{name}: auth client"), format!("{client:?}"));
    cx.output(format!("{name}: fhir client"), format!("{fhir:?}"));
    cx.output(format!("{name}: cache key"), format!("{} {:?}", manager.cache_key(), manager.cache_key()));
    cx.output(format!("{name}: stats"), format!("{:?}", manager.stats()));
    cx.output(format!("{name}: emulator registry"), format!("{:?}", idp.registry));
}

/// The flow below installs a global TRACE subscriber and panic hook: it runs in
/// its own process.
#[test]
fn no_provider_leaks_a_secret_anywhere() {
    integration_tests::run_in_child("canary_providers::every_provider_at_trace", |_| {});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in its own process by no_provider_leaks_a_secret_anywhere"]
async fn every_provider_at_trace() {
    integration_tests::assert_child("canary_providers::every_provider_at_trace");
    let logs = integration_tests::capture_all_logs();
    let panics = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{info}\n{message}"));
        default_hook(info);
    }));

    let sandbox = Sandbox::start(SandboxConfig::default().with_token_marker(TOKEN_MARKER)).await.unwrap();
    let mut cx = Checks::default();
    cx.output("sandbox", format!("{sandbox:?} {sandbox:#?}"));

    // Generic OAuth2 (client_secret_basic and _post) against Aidbox's token endpoint.
    let aidbox = sandbox.aidbox();
    aidbox.register_client("generic-client", CLIENT_SECRET);
    cx.basic("generic-client", CLIENT_SECRET);
    cx.basic("generic-client", WRONG_SECRET);
    let idp = Idp { registry: aidbox.registry(), faults: aidbox.idp_faults(), fhir_base: aidbox.fhir_base() };
    for method in [ClientAuthMethod::ClientSecretBasic, ClientAuthMethod::ClientSecretPost] {
        let generic = |secret: &str| {
            OAuth2Source::builder(aidbox.token_url(), "generic-client", ClientSecret::new(secret))
                .auth_method(method)
                // Aidbox does not url-decode Basic credentials (its docs; the emulator's rule).
                .basic_encoding(BasicEncoding::Raw)
                .build()
                .unwrap()
        };
        exercise(
            &mut cx,
            &format!("oauth2 {method:?}"),
            &idp,
            || generic(CLIENT_SECRET),
            generic(WRONG_SECRET),
            ApiProfile::new(),
        )
        .await;
    }

    // Aidbox.
    aidbox.register_client("aidbox-client", CLIENT_SECRET);
    cx.basic("aidbox-client", CLIENT_SECRET);
    cx.basic("aidbox-client", WRONG_SECRET);
    let make = |secret: &str| {
        AidboxSource::builder(aidbox.base_url(), "aidbox-client", ClientSecret::new(secret)).build().unwrap()
    };
    let profile = make(CLIENT_SECRET).api_profile();
    exercise(&mut cx, "aidbox", &idp, || make(CLIENT_SECRET), make(WRONG_SECRET), profile).await;
    cx.output("aidbox records", format!("{:?}", aidbox.token_log()));

    // SanteDB: client secret and device secret (Basic device header).
    let santedb = sandbox.santedb();
    santedb.register_client("santedb-app", &ClientSecret::new(CLIENT_SECRET));
    santedb.register_device("santedb-device", &DeviceSecret::new(DEVICE_SECRET));
    cx.basic("santedb-app", CLIENT_SECRET);
    cx.basic("santedb-device", DEVICE_SECRET);
    let idp =
        Idp { registry: santedb.registry(), faults: santedb.idp_faults(), fhir_base: santedb.fhir_base() };
    let make = |secret: &str| {
        SanteDbSource::builder(santedb.base_url(), "santedb-app", ClientSecret::new(secret))
            .device("santedb-device", DeviceSecret::new(DEVICE_SECRET))
            .build()
            .unwrap()
    };
    let profile = make(CLIENT_SECRET).api_profile();
    exercise(&mut cx, "santedb", &idp, || make(CLIENT_SECRET), make(WRONG_SECRET), profile).await;
    // SanteDB over mutual TLS: the client key is the secret.
    cx.pem(santedb.client_key_pem().expose_secret());
    let mtls = |secret: &str| {
        SanteDbSource::builder(santedb.mtls_base_url(), "santedb-app", ClientSecret::new(secret))
            .client_certificate(santedb.client_cert_pem(), santedb.client_key_pem().clone())
            .root_certificate_pem(santedb.ca_cert_pem())
            .build()
            .unwrap()
    };
    let manager = TokenManager::builder(mtls(CLIENT_SECRET)).config(config()).build();
    let token = manager.token().await.unwrap();
    cx.token("santedb mtls", &token);
    cx.output("santedb mtls manager", format!("{manager:?}"));
    let err = TokenManager::builder(mtls(WRONG_SECRET)).config(config()).build().token().await.map(|_| ());
    assert!(err.is_err());
    cx.result("santedb mtls wrong secret", &err);
    cx.output("santedb records", format!("{:?} {:?}", santedb.token_log(), santedb.api_log()));

    // MSK: client secret; partner id and study on every API call.
    let msk = sandbox.msk();
    msk.register_client("msk-client", CLIENT_SECRET);
    msk.register_partner("msk-partner", "msk-client", [msk.research_study()]);
    cx.basic("msk-client", CLIENT_SECRET);
    let idp = Idp { registry: msk.registry(), faults: msk.idp_faults(), fhir_base: msk.fhir_base() };
    let make = |secret: &str| {
        MskSource::builder(msk.base_url(), "msk-client", ClientSecret::new(secret))
            .partner_id("msk-partner")
            .research_study(msk.research_study())
            .build()
            .unwrap()
    };
    let profile = make(CLIENT_SECRET).api_profile();
    exercise(&mut cx, "msk", &idp, || make(CLIENT_SECRET), make(WRONG_SECRET), profile).await;

    // Graphnet: client secret and subscription key (JWT access tokens).
    let graphnet = sandbox.graphnet();
    graphnet.register_client("graphnet-client", CLIENT_SECRET, &["Patient"]);
    graphnet.add_subscription_key(SUB_KEY);
    let idp =
        Idp { registry: graphnet.registry(), faults: graphnet.idp_faults(), fhir_base: graphnet.fhir_base() };
    let make = |secret: &str, key: &str| {
        GraphnetSource::builder(
            graphnet.token_url(),
            "graphnet-client",
            ClientSecret::new(secret),
            SecretValue::new(key),
        )
        .build()
        .unwrap()
    };
    let profile = make(CLIENT_SECRET, SUB_KEY).api_profile();
    exercise(
        &mut cx,
        "graphnet",
        &idp,
        || make(CLIENT_SECRET, SUB_KEY),
        make(WRONG_SECRET, SUB_KEY),
        profile,
    )
    .await;
    // A wrong subscription key: the gateway's 401 is a configuration error.
    let manager = TokenManager::builder(make(CLIENT_SECRET, WRONG_SUB_KEY)).config(config()).build();
    let fhir = FhirClient::new(
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap(),
        &graphnet.fhir_base(),
    )
    .unwrap();
    let err = fhir.read::<Patient>("pat-1").await;
    assert!(err.is_err(), "a wrong subscription key fails");
    cx.result("graphnet wrong key", &err);
    // Opaque Graphnet tokens carry the marker.
    graphnet.set_opaque_tokens(true);
    let source = GraphnetSource::builder(
        graphnet.token_url(),
        "graphnet-client",
        ClientSecret::new(CLIENT_SECRET),
        SecretValue::new(SUB_KEY),
    )
    .default_lifetime(Duration::from_secs(300))
    .build()
    .unwrap();
    let opaque = TokenManager::builder(source).config(config()).build();
    let token = opaque.token().await.unwrap();
    assert!(token.access_token().expose_secret().starts_with(TOKEN_MARKER), "the marker is on opaque tokens");
    cx.token("graphnet opaque", &token);
    cx.output("graphnet records", format!("{:?} {:?}", graphnet.token_log(), graphnet.api_log()));

    // SMART Backend Services: the private key.
    let smart = sandbox.smart();
    cx.pem(smart.private_key().expose_secret());
    let idp = Idp { registry: smart.registry(), faults: smart.idp_faults(), fhir_base: smart.fhir_base() };
    // "Wrong secret" for SMART: a client the server does not know (same key).
    let wrong = auth_providers::smart::SmartSource::builder(
        "unknown-client",
        smart.private_key(),
        auth_providers::smart::SigningAlgorithm::Es384,
        smart.key_id(),
    )
    .token_url(smart.token_url())
    .scopes(["system/Patient.rs"])
    .build()
    .unwrap();
    let make = || integration_tests::smart_source(smart).build().unwrap();
    exercise(&mut cx, "smart", &idp, make, wrong, ApiProfile::new()).await;
    // Discovery, then a key that is not a key: refused at build, without quoting it.
    let discovering = auth_providers::smart::SmartSource::builder(
        smart.client_id(),
        smart.private_key(),
        auth_providers::smart::SigningAlgorithm::Es384,
        smart.key_id(),
    )
    .fhir_base(smart.fhir_base())
    .scopes(["system/Patient.rs"])
    .build()
    .unwrap();
    let token = TokenManager::builder(discovering).config(config()).build().token().await.unwrap();
    cx.token("smart discovered", &token);
    let garbage = format!("-----BEGIN PRIVATE KEY-----\n{WRONG_SECRET}\n-----END PRIVATE KEY-----\n");
    let err = auth_providers::smart::SmartSource::builder(
        "c",
        auth_core::PrivateKeyPem::new(garbage),
        auth_providers::smart::SigningAlgorithm::Es384,
        "k",
    )
    .token_url(smart.token_url())
    .scopes(["system/Patient.rs"])
    .build()
    .map(|_| ());
    assert!(err.is_err());
    cx.result("smart garbage key", &err);
    cx.output("smart records", format!("{:?} {smart:?}", smart.token_log()));

    // Things that could panic: a token that cannot be an HTTP header, a secret
    // header value with a newline, a token response that is not one.
    let generic = TestIdentityProvider::start().await.unwrap();
    generic.register_client("generic-client", CLIENT_SECRET);
    for body in [
        format!(
            r#"{{"access_token":"{TOKEN_MARKER}bad\u0001\r\nvalue","token_type":"Bearer","expires_in":300}}"#
        ),
        format!(r#"{{"access_token":"{TOKEN_MARKER}no-type","expires_in":"soon"}}"#),
        format!(r#"{{"access_token":["{TOKEN_MARKER}array"],"token_type":"Bearer"}}"#),
        format!("access_token={TOKEN_MARKER}form&token_type=Bearer"),
    ] {
        generic.set_behavior(TokenBehavior::Raw {
            status: 200,
            content_type: "application/json".into(),
            body,
        });
        let source =
            OAuth2Source::builder(generic.token_url(), "generic-client", ClientSecret::new(CLIENT_SECRET))
                .build()
                .unwrap();
        let manager = TokenManager::builder(source).config(config()).build();
        let client =
            AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap();
        let result = client.get(generic.api_url("Patient/1")).send().await.map(|r| r.status());
        cx.result("odd token response", &result);
        cx.output("odd token manager", format!("{manager:?}"));
    }
    let bad_header = ApiProfile::new()
        .secret_header("X-Api-Key", &SecretValue::new(format!("{SUB_KEY}\r\nInjected: yes")))
        .map(|_| ());
    cx.result("secret header with a newline", &bad_header);

    // The verdict.
    let _ = std::panic::take_hook();
    for (what, text) in &cx.outputs {
        cx.assert_clean(what, text);
    }
    let panics = panics.lock().unwrap().clone();
    assert!(
        panics.iter().any(|p| p.contains("source exploded")),
        "the panicking source really panicked (and the hook saw it)"
    );
    for p in &panics {
        cx.assert_clean("a panic message", p);
    }
    let logged = logs.text();
    if let Ok(path) = std::env::var("CANARY_LOG") {
        // For a human to look at what was checked.
        std::fs::write(path, &logged).unwrap();
    }
    for needle in ["token ready", "token rejected", "token fetch failed", "TRACE"] {
        assert!(logged.contains(needle), "the log has `{needle}`: the flows were logged at TRACE");
    }
    for line in logged.lines() {
        cx.assert_clean("a log line", line);
    }
    eprintln!(
        "checked {} outputs, {} panic messages and {} log lines against {} canaries",
        cx.outputs.len(),
        panics.len(),
        logged.lines().count(),
        STATIC.len() + cx.secrets.len()
    );
}
