//! Conformance against a real OAuth 2.0 server: oidc-provider 9.13.3 (panva), the
//! certified OpenID Connect / OAuth 2.0 implementation for Node.js.
//!
//! The harness installs it with npm into `target/oidc-provider-cache` (reused when
//! present), starts `tests/oidc/server.mjs` with node on a free loopback port and
//! kills it when the test ends. Without node, npm or openssl the suite fails: it
//! never skips, because a silently skipped conformance suite proves nothing.
//!
//! Proven here, each through `auth_core::TokenManager` or the sources themselves:
//! `client_secret_basic`, `client_secret_post`, Basic credentials with `: % + / =`
//! and a space (RFC 6749 §2.3.1 encoding), and SMART `private_key_jwt` with RS384
//! and ES384 keys; `invalid_client` for wrong credentials; expiry resolution against
//! a JWT access token; unique `jti`s and the server's replay rejection; RFC 7662
//! introspection of our token.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::oauth2::OAuth2Source;
use auth_core::request::ClientAuthMethod;
use auth_core::token::ExpirySource;
use auth_core::{
    ClientSecret, CredentialSource, FetchContext, OAuthErrorCode, PrivateKeyPem, Token, TokenManager,
};
use auth_providers::smart::{CLIENT_ASSERTION_TYPE, SigningAlgorithm, SmartSource};
use serde_json::{Value, json};

const SCOPE: &str = "system/Patient.rs system/Observation.rs";
const RESOURCE: &str = "https://fhir.example/r4";
/// A second resource whose tokens are opaque: oidc-provider does not introspect JWTs.
const OPAQUE_RESOURCE: &str = "https://opaque.example/r4";
const TTL: u64 = 600;
const AWKWARD_ID: &str = "id: %+/= x";
const AWKWARD_SECRET: &str = "p: %+/= s";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_owned()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out =
        cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run it ({e}); it is required, not optional"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs oidc-provider once per machine (the cache survives `cargo test` runs).
fn provider_dir() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("oidc-provider-cache");
    let oidc = workspace().join("tests/oidc");
    run(Command::new("node").arg("--version"), "node (Node.js 20 or later)");
    std::fs::create_dir_all(&dir).expect("cache dir");
    // A changed package.json (a new pinned version) means installing again.
    let changed = install_file(&oidc.join("package.json"), &dir.join("package.json"));
    if changed || !dir.join("node_modules/oidc-provider/package.json").exists() {
        run(
            Command::new("npm").args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(&dir),
            "npm install oidc-provider",
        );
    }
    // Node resolves `import 'oidc-provider'` from the script's folder.
    install_file(&oidc.join("server.mjs"), &dir.join("server.mjs"));
    dir
}

/// Copies `from` to `to` only when it changed, and atomically: another test's node
/// may be reading `to` at this moment, and must never see it half written.
/// Returns whether it wrote anything.
fn install_file(from: &Path, to: &Path) -> bool {
    let content = std::fs::read(from).expect("read a harness file");
    if std::fs::read(to).is_ok_and(|old| old == content) {
        return false;
    }
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &content).expect("write a harness file");
    std::fs::rename(&tmp, to).expect("install a harness file");
    true
}

/// A key pair generated for this run: PKCS#8 private and SPKI public PEM.
pub(crate) struct KeyPair {
    pub(crate) private: String,
    public: String,
}

fn scratch() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("oidc-conformance-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn key_pair(alg: SigningAlgorithm) -> KeyPair {
    let dir = scratch();
    let path = dir.join("key.pem");
    let opts: [&str; 4] = match alg {
        SigningAlgorithm::Rs384 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        _ => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    };
    run(Command::new("openssl").arg("genpkey").args(opts).arg("-out").arg(&path), "openssl genpkey");
    let public = run(Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&path), "openssl pkey");
    let private = std::fs::read_to_string(&path).expect("key file");
    let _ = std::fs::remove_dir_all(&dir);
    KeyPair { private, public }
}

/// oidc-provider on loopback, killed on drop.
/// One oidc-provider per test binary, shared by every test: five node servers
/// starting at once on two busy cores once starved one of them past its deadline.
/// Being a static it is never dropped; node exits when our process does, because
/// its stdin (a pipe from us) closes.
pub(crate) fn shared_server() -> &'static OidcServer {
    static SERVER: std::sync::OnceLock<OidcServer> = std::sync::OnceLock::new();
    // The tests also call it with a plain `reqwest::Client::new()`: it needs the
    // process' TLS crypto provider.
    auth_core::tls::install_default_provider();
    SERVER.get_or_init(OidcServer::start)
}

pub(crate) struct OidcServer {
    child: Child,
    pub(crate) issuer: String,
    rs384: KeyPair,
    pub(crate) es384: KeyPair,
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcServer {
    fn start() -> Self {
        let dir = provider_dir();
        let (rs384, es384) = (key_pair(SigningAlgorithm::Rs384), key_pair(SigningAlgorithm::Es384));
        // Served before the provider starts: a client is registered by its URL.
        let jwks_uri = crate::key_rotation::jwks_server();
        let config = json!({
            "scope": SCOPE,
            "extra_scopes": crate::scopes::EXTRA_SCOPES,
            "resource": RESOURCE,
            "opaque_resource": OPAQUE_RESOURCE,
            "access_token_ttl": TTL,
            "clients": [
                {"client_id": "basic-client", "client_secret": "basic-secret-0123456789", "token_endpoint_auth_method": "client_secret_basic"},
                {"client_id": "post-client", "client_secret": "post-secret-0123456789", "token_endpoint_auth_method": "client_secret_post"},
                {"client_id": AWKWARD_ID, "client_secret": AWKWARD_SECRET, "token_endpoint_auth_method": "client_secret_basic"},
                {"client_id": "rs384-client", "token_endpoint_auth_method": "private_key_jwt",
                 "token_endpoint_auth_signing_alg": "RS384", "kid": "rs-key", "public_key_pem": rs384.public},
                {"client_id": "es384-client", "token_endpoint_auth_method": "private_key_jwt",
                 "token_endpoint_auth_signing_alg": "ES384", "kid": "es-key", "public_key_pem": es384.public},
                {"client_id": "opaque-basic-client", "client_secret": "basic-secret-0123456789",
                 "token_endpoint_auth_method": "client_secret_basic", "opaque": true},
                {"client_id": "opaque-es384-client", "token_endpoint_auth_method": "private_key_jwt",
                 "token_endpoint_auth_signing_alg": "ES384", "kid": "es-key", "public_key_pem": es384.public, "opaque": true},
                // DPoP (dpop.rs): opaque tokens, so introspection shows their `cnf.jkt`.
                {"client_id": crate::dpop::CLIENT, "client_secret": crate::dpop::SECRET,
                 "token_endpoint_auth_method": "client_secret_basic", "opaque": true},
                {"client_id": crate::dpop::NONCE_CLIENT, "token_endpoint_auth_method": "private_key_jwt",
                 "token_endpoint_auth_signing_alg": "ES384", "kid": "es-key", "public_key_pem": es384.public,
                 "opaque": true, "dpop_nonce": true},
                // Key rotation (key_rotation.rs): keys fetched from our JWK Set URL.
                {"client_id": crate::key_rotation::CLIENT, "token_endpoint_auth_method": "private_key_jwt",
                 "token_endpoint_auth_signing_alg": "ES384", "jwks_uri": jwks_uri},
            ],
        });
        let config_path = scratch().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(&config_path)
            .current_dir(&dir)
            // Stdin stays open while we live: the server exits when it closes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed: the conformance suite needs it");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("LISTENING ") {
                    let _ = tx.send(port.trim().to_owned());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("oidc-provider did not start ({e}; its stderr is above)");
            }
        };
        Self { child, issuer: format!("http://127.0.0.1:{port}"), rs384, es384 }
    }

    pub(crate) fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    fn secret_client(&self, id: &str, secret: &str, method: ClientAuthMethod) -> OAuth2Source {
        OAuth2Source::builder(self.token_url(), id, ClientSecret::new(secret))
            .auth_method(method)
            .scopes(SCOPE.split(' '))
            .build()
            .expect("valid configuration")
    }

    fn smart(&self, alg: SigningAlgorithm) -> SmartSource {
        self.smart_as(alg, None)
    }

    fn smart_as(&self, alg: SigningAlgorithm, client_id: Option<&str>) -> SmartSource {
        let (id, kid, key) = match alg {
            SigningAlgorithm::Rs384 => ("rs384-client", "rs-key", &self.rs384.private),
            _ => ("es384-client", "es-key", &self.es384.private),
        };
        SmartSource::builder(client_id.unwrap_or(id), PrivateKeyPem::new(key.as_str()), alg, kid)
            .token_url(self.token_url())
            .scopes(SCOPE.split(' '))
            .build()
            .expect("valid configuration")
    }
}

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// An `application/x-www-form-urlencoded` body (reqwest's `form` feature is off here).
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// One decoded part of a JWT (0: header, 1: claims), by the workspace's one decoder.
pub(crate) fn jwt_part(jwt: &str, index: usize) -> Value {
    let part = if index == 0 { auth_core::token::jwt_header(jwt) } else { auth_core::token::jwt_claims(jwt) };
    Value::Object(part.expect("a JWT"))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// The token is a JWT for our resource, issued to `client_id`, with our scopes.
fn assert_issued_to(token: &Token, client_id: &str) {
    let claims = jwt_part(token.access_token().expose_secret(), 1);
    assert_eq!(claims["client_id"], client_id, "{claims}");
    assert_eq!(claims["aud"], RESOURCE, "{claims}");
    let mut scopes: Vec<&str> = claims["scope"].as_str().expect("scope claim").split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["system/Observation.rs", "system/Patient.rs"]);
}

#[tokio::test]
async fn every_client_authentication_method_gets_a_token() {
    let server = shared_server();
    let cases: Vec<(&str, Box<dyn CredentialSource>)> = vec![
        (
            "basic-client",
            Box::new(server.secret_client(
                "basic-client",
                "basic-secret-0123456789",
                ClientAuthMethod::ClientSecretBasic,
            )),
        ),
        (
            "post-client",
            Box::new(server.secret_client(
                "post-client",
                "post-secret-0123456789",
                ClientAuthMethod::ClientSecretPost,
            )),
        ),
        // Default encoding: form-url-encoded id and secret inside Basic, which
        // oidc-provider decodes as RFC 6749 §2.3.1 requires.
        (
            AWKWARD_ID,
            Box::new(server.secret_client(AWKWARD_ID, AWKWARD_SECRET, ClientAuthMethod::ClientSecretBasic)),
        ),
        ("rs384-client", Box::new(server.smart(SigningAlgorithm::Rs384))),
        ("es384-client", Box::new(server.smart(SigningAlgorithm::Es384))),
    ];
    for (client_id, source) in cases {
        let manager = TokenManager::new(source);
        let token = manager.token().await.unwrap_or_else(|e| panic!("{client_id}: {e}"));
        assert_issued_to(&token, client_id);
        assert_eq!(manager.stats().fetches, 1, "{client_id}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_typed_invalid_client() {
    let server = shared_server();
    let wrong_basic =
        server.secret_client("basic-client", "wrong-secret-0123456789", ClientAuthMethod::ClientSecretBasic);
    let wrong_post =
        server.secret_client("post-client", "wrong-secret-0123456789", ClientAuthMethod::ClientSecretPost);
    // Signed with a key the server has never seen, under a registered kid.
    let stranger = key_pair(SigningAlgorithm::Es384);
    let wrong_key = SmartSource::builder(
        "es384-client",
        PrivateKeyPem::new(stranger.private),
        SigningAlgorithm::Es384,
        "es-key",
    )
    .token_url(server.token_url())
    .scopes(SCOPE.split(' '))
    .build()
    .expect("valid configuration");
    let cases: Vec<(&str, Box<dyn CredentialSource>)> = vec![
        ("basic", Box::new(wrong_basic)),
        ("post", Box::new(wrong_post)),
        ("private_key_jwt", Box::new(wrong_key)),
    ];
    for (what, source) in cases {
        let err = TokenManager::new(source).token().await.expect_err(what);
        let oauth = err.oauth_error().unwrap_or_else(|| panic!("{what}: not an OAuth error: {err:?}"));
        assert_eq!(oauth.code, OAuthErrorCode::InvalidClient, "{what}: {err}");
        assert!(!err.is_retryable(), "{what}");
        assert!(!err.to_string().contains("wrong-secret"), "{what}: the secret leaked");
    }
}

#[tokio::test]
async fn expiry_resolution_agrees_with_the_jwt_and_expires_in() {
    let server = shared_server();
    // What the server says, seen raw.
    let raw: Value = reqwest::Client::new()
        .post(server.token_url())
        .basic_auth("basic-client", Some("basic-secret-0123456789"))
        .header("content-type", FORM)
        .body(form(&[("grant_type", "client_credentials"), ("scope", SCOPE)]))
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(raw["expires_in"], TTL, "{raw}");
    let claims = jwt_part(raw["access_token"].as_str().expect("access_token"), 1);
    assert_eq!(claims["exp"].as_u64().zip(claims["iat"].as_u64()).map(|(e, i)| e - i), Some(TTL));

    // What we make of our own token.
    let manager = TokenManager::new(server.secret_client(
        "basic-client",
        "basic-secret-0123456789",
        ClientAuthMethod::ClientSecretBasic,
    ));
    let token = manager.token().await.expect("token");
    let exp = jwt_part(token.access_token().expose_secret(), 1)["exp"].as_u64().expect("exp");
    assert!(
        matches!(token.expiry_source(), ExpirySource::ExpiresIn | ExpirySource::AccessTokenExp),
        "{:?}",
        token.expiry_source()
    );
    // Both sources agree within the second `exp` is rounded to; we take the earlier.
    let expires_at = token.expires_at();
    assert!(unix(expires_at) <= exp, "expires_at {} after the JWT exp {exp}", unix(expires_at));
    assert!(exp - unix(expires_at) <= 1, "expires_at {} vs exp {exp}", unix(expires_at));
    let lifetime = token.lifetime().as_secs_f64();
    assert!((lifetime - TTL as f64).abs() <= 1.0, "lifetime {lifetime} vs expires_in {TTL}");
}

#[tokio::test]
async fn assertions_are_never_reused_and_a_replay_is_rejected() {
    let server = shared_server();
    for alg in [SigningAlgorithm::Rs384, SigningAlgorithm::Es384] {
        let source = server.smart(alg);
        // Two fetches, two assertions: the server's replay detection would refuse
        // the second if its jti repeated.
        let ctx = FetchContext::default();
        source.fetch(&ctx).await.expect("first fetch");
        source.fetch(&ctx).await.expect("second fetch: a fresh jti");
        let a = source.sign_assertion(&server.token_url()).expect("sign");
        let b = source.sign_assertion(&server.token_url()).expect("sign");
        assert_ne!(jwt_part(&a, 1)["jti"], jwt_part(&b, 1)["jti"]);
        assert_eq!(jwt_part(&a, 0)["alg"], alg.as_str());

        // The same assertion twice, by hand: the server must refuse the replay.
        let http = reqwest::Client::new();
        let post = || {
            http.post(server.token_url())
                .header("content-type", FORM)
                .body(form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", SCOPE),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                    ("client_assertion", a.as_str()),
                ]))
                .send()
        };
        let first = post().await.expect("first POST");
        assert_eq!(first.status(), 200, "{alg}: the first use is accepted");
        let second = post().await.expect("second POST");
        assert_eq!(second.status(), 401, "{alg}: a replayed assertion must be rejected");
        let body: Value = second.json().await.expect("JSON error");
        assert_eq!(body["error"], "invalid_client", "{body}");
    }
}

#[tokio::test]
async fn introspection_reports_our_token_active() {
    let server = shared_server();
    let http = reqwest::Client::new();
    let introspect = |token: String| {
        http.post(format!("{}/token/introspection", server.issuer))
            .basic_auth("opaque-basic-client", Some("basic-secret-0123456789"))
            .header("content-type", FORM)
            .body(form(&[("token", token.as_str())]))
            .send()
    };
    // Introspection is authenticated as opaque-basic-client (RFC 7662 §2.1): its own
    // token, and the SMART client's (oidc-provider lets any confidential client).
    for (client_id, source) in [
        (
            "opaque-basic-client",
            Box::new(server.secret_client(
                "opaque-basic-client",
                "basic-secret-0123456789",
                ClientAuthMethod::ClientSecretBasic,
            )) as Box<dyn CredentialSource>,
        ),
        (
            "opaque-es384-client",
            Box::new(server.smart_as(SigningAlgorithm::Es384, Some("opaque-es384-client"))),
        ),
    ] {
        let token = TokenManager::new(source).token().await.expect("token");
        let answer: Value = introspect(token.access_token().expose_secret().to_owned())
            .await
            .expect("introspection")
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer["active"], true, "{client_id}: {answer}");
        assert_eq!(answer["client_id"], client_id, "{answer}");
        assert!(
            answer["exp"].as_u64().is_some_and(|exp| exp.abs_diff(unix(token.expires_at())) <= 1),
            "{answer}"
        );
    }
    let bogus: Value =
        introspect("not-a-token".to_owned()).await.expect("introspection").json().await.expect("JSON");
    assert_eq!(bogus["active"], false, "{bogus}");
}
