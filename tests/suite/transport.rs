//! Transport safety over real sockets, where client_auth.rs does not cover it
//! already: redirects of every kind on token and revocation requests, plain http
//! refused before any connection (token endpoint and FhirClient), body caps on
//! FHIR responses, timeouts against servers that never answer or stall mid-body
//! (token, revocation, manager, FHIR, raw API), and TLS with a CA generated at run
//! time (trusted only when added: the built-in trust is the webpki roots, never the
//! system's store). Time is only ever bounded generously, never measured closely.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use auth_core::client::same_origin_redirects;
use auth_core::oauth2::OAuth2Source;
use auth_core::source::FetchContext;
use auth_core::{
    AccessToken, AuthClient, ClientSecret, CredentialSource, EndpointOptions, Error, ErrorKind,
    ResponseProblem, Token, TokenManager,
};
use auth_fhir::{FhirClient, Patient};
use auth_sandbox::idp::TestIdentityProvider;
use auth_sandbox::tls::{CertificateAuthority, IssuedCertificate, TlsServer};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use integration_tests::{predictable, serve};
use reqwest::Certificate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "CANARY-transport-secret-5a5a";
/// Generous: every timeout below is 300 ms.
const BOUND: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

fn assert_no_secret(e: &Error) {
    let mut text = format!("{e} {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains(SECRET), "{text}");
}

// ---------------------------------------------------------------------------
// Redirects

#[tokio::test]
async fn token_and_revocation_requests_follow_no_redirect_of_any_kind() {
    let target = TestIdentityProvider::start().await.unwrap();
    let target_origin = target.base_url().to_owned();
    let location = target.token_url();
    let app = axum::Router::new().route(
        "/token/{status}",
        axum::routing::post(move |Path(status): Path<u16>| {
            let location = location.clone();
            async move { (StatusCode::from_u16(status).unwrap(), [(header::LOCATION, location)]) }
        }),
    );
    let addr = serve(app).await;
    let (id, _) = target.credentials();
    for status in [301, 302, 303, 307, 308] {
        let url = format!("http://{addr}/token/{status}");
        let source = OAuth2Source::builder(url.clone(), id.clone(), ClientSecret::new(SECRET))
            .revocation_url(url)
            .build()
            .unwrap();
        let e = source.fetch(&FetchContext::default()).await.expect_err("a redirect is not a token");
        assert_eq!((e.kind(), e.status()), (ErrorKind::InvalidResponse, Some(status)), "{e}");
        assert_eq!(
            e.response_problem(),
            Some(&ResponseProblem::Redirect { location: Some(target_origin.clone()) }),
            "{status}"
        );
        assert!(e.to_string().contains("redirects are not followed"), "{e}");
        assert!(!e.is_retryable());
        assert_no_secret(&e);

        let now = SystemTime::now();
        let token = Token::new(AccessToken::new("some-token"), now, now + Duration::from_secs(60)).unwrap();
        let e = source.revoke(&token).await.expect_err("a redirected revocation failed");
        assert_eq!(
            e.response_problem(),
            Some(&ResponseProblem::Redirect { location: Some(target_origin.clone()) })
        );
        assert_no_secret(&e);
    }
    assert_eq!(target.token_requests(), 0, "the redirect target was never asked anything");
}

#[tokio::test]
async fn a_redirect_without_a_usable_location_is_still_typed() {
    let app = axum::Router::new()
        .route("/none", axum::routing::post(|| async { StatusCode::FOUND }))
        .route(
            "/garbage",
            axum::routing::post(|| async { (StatusCode::FOUND, [(header::LOCATION, "http://[::1")]) }),
        )
        .route(
            "/relative",
            axum::routing::post(|| async { (StatusCode::SEE_OTHER, [(header::LOCATION, "/elsewhere")]) }),
        );
    let addr = serve(app).await;
    for (path, want) in [("none", None), ("garbage", None), ("relative", Some(format!("http://{addr}")))] {
        let source = OAuth2Source::builder(format!("http://{addr}/{path}"), "c", ClientSecret::new(SECRET))
            .build()
            .unwrap();
        let e = source.fetch(&FetchContext::default()).await.unwrap_err();
        assert_eq!(e.response_problem(), Some(&ResponseProblem::Redirect { location: want }), "{path}");
    }
}

// ---------------------------------------------------------------------------
// Plain http

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_before_any_connection() {
    // Refused when the source or client is built, so no request can exist to be
    // sent; the addresses are documentation ranges and nothing is contacted.
    for url in ["http://idp.example.org/token", "http://10.1.2.3/token", "http://[2001:db8::1]/token"] {
        let e = OAuth2Source::builder(url, "c", ClientSecret::new(SECRET)).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration, "{url}");
        assert!(e.to_string().contains("refusing plain http://"), "{e}");
    }
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let api = || {
        let source = OAuth2Source::builder(idp.token_url(), id.clone(), secret.clone()).build().unwrap();
        AuthClient::new(TokenManager::new(source)).unwrap()
    };
    for base in ["http://fhir.example.org/r4", "http://10.1.2.3/fhir"] {
        let e = FhirClient::new(api(), base).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration, "{base}");
        assert!(e.to_string().contains("refusing plain http://"), "{e}");
    }
}

#[tokio::test]
async fn an_authenticated_request_over_plain_http_to_a_remote_host_is_refused() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let client = AuthClient::new(TokenManager::new(source)).unwrap();
    for url in ["http://fhir.example.org/r4/Patient/1", "http://10.1.2.3/Patient", "ftp://127.0.0.1/x"] {
        let e = client.get(url).send().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration, "{url}");
    }
    assert_eq!(idp.token_requests(), 0, "refused before a token was even fetched");
    // Loopback stays allowed: that is where tests and sidecars live.
    assert_eq!(client.get(idp.api_url("Patient/1")).send().await.unwrap().status(), 200);
}

// ---------------------------------------------------------------------------
// Body caps (the token endpoint's are in client_auth.rs)

#[tokio::test]
async fn fhir_bodies_are_capped_by_default_and_as_configured() {
    // 17 MiB streamed without a Content-Length, then 2 KiB with one.
    let app = axum::Router::new()
        .route(
            "/fhir/Patient/big",
            axum::routing::get(|| async {
                let chunk = vec![b' '; 1024 * 1024];
                let chunks = (0..17).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/fhir/Patient/small",
            axum::routing::get(|| async {
                let pad = "x".repeat(2048);
                axum::Json(serde_json::json!({"resourceType": "Patient", "id": "small", "pad": pad}))
            }),
        );
    let addr = serve(app).await;
    let base = format!("http://{addr}/fhir");
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let fhir = FhirClient::new(AuthClient::new(TokenManager::new(source)).unwrap(), &base).unwrap();
    let e = fhir.read::<Patient>("big").await.unwrap_err();
    assert_eq!(
        e.response_problem(),
        Some(&ResponseProblem::TooLarge { limit: auth_fhir::client::DEFAULT_MAX_BODY })
    );
    assert!(fhir.read::<Patient>("small").await.is_ok());
    let e = fhir.clone().with_max_body(1024).read::<Patient>("small").await.unwrap_err();
    assert_eq!(e.response_problem(), Some(&ResponseProblem::TooLarge { limit: 1024 }));
}

// ---------------------------------------------------------------------------
// Timeouts

/// A FHIR client at `base` whose requests time out after [`SHORT`].
async fn fhir_client_for(base: &str) -> (TestIdentityProvider, FhirClient) {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let http = reqwest::Client::builder().timeout(SHORT).redirect(same_origin_redirects()).build().unwrap();
    let api = AuthClient::builder(TokenManager::new(source)).http_client(http).build().unwrap();
    (idp, FhirClient::new(api, base).unwrap())
}

/// Accepts connections and never answers; the sockets stay open.
async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// Answers the headers and the start of a body, then stalls for good.
async fn stalling_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 8192];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{\"access_token\":\"",
                )
                .await;
            held.push(socket);
        }
    });
    addr
}

async fn within_bound<T>(what: &str, f: impl std::future::Future<Output = auth_core::Result<T>>) -> Error {
    let started = Instant::now();
    let result =
        tokio::time::timeout(BOUND * 2, f).await.unwrap_or_else(|_| panic!("{what}: never returned"));
    let Err(e) = result else { panic!("{what}: succeeded") };
    assert!(started.elapsed() < BOUND, "{what}: took {:?}", started.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{what}: {e}");
    assert!(e.is_retryable(), "{what}");
    assert_no_secret(&e);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_times_out_against_a_server_that_never_answers() {
    let silent = silent_server().await;
    let stalling = stalling_server().await;
    for (name, addr) in [("silent", silent), ("stalling mid-body", stalling)] {
        let url = format!("http://{addr}/token");
        let source = || {
            OAuth2Source::builder(url.clone(), "c", ClientSecret::new(SECRET))
                .timeout(SHORT)
                .revocation_url(url.clone())
                .build()
                .unwrap()
        };
        within_bound(&format!("{name} token request"), source().fetch(&FetchContext::default())).await;
        let now = SystemTime::now();
        let token = Token::new(AccessToken::new("t"), now, now + Duration::from_secs(60)).unwrap();
        within_bound(&format!("{name} revocation"), source().revoke(&token)).await;
        let manager = TokenManager::builder(source()).config(predictable()).build();
        within_bound(&format!("{name} manager"), manager.token()).await;

        // API requests: the FHIR runtime and the raw authenticated client.
        let (_idp, fhir) = fhir_client_for(&format!("http://{addr}/fhir")).await;
        within_bound(&format!("{name} FHIR read"), fhir.read::<Patient>("1")).await;
        let raw = AuthClient::builder(fhir.api().authenticator().clone())
            .http_client(reqwest::Client::new())
            .build()
            .unwrap();
        let request = raw.get(format!("http://{addr}/api")).timeout(SHORT);
        within_bound(&format!("{name} raw API request"), async move {
            let response = request.send().await?;
            response.bytes().await.map_err(|e| Error::transport("API request", e))
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// TLS with a private CA

/// A TLS token endpoint (no client certificate wanted) presenting `server`.
async fn tls_token_endpoint(server: &IssuedCertificate) -> (TlsServer, Arc<AtomicU64>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = auth_core::tls::crypto_provider().unwrap();
    let key = PrivateKeyDer::from_pem_slice(server.key_pem().expose_secret().as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(server.cert_der().to_vec())], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let hits = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(|State(hits): State<Arc<AtomicU64>>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"access_token": "tls-token", "expires_in": 60}))
            }),
        )
        .route(
            "/fhir/Patient/1",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"resourceType": "Patient", "id": "1"})).into_response()
            }),
        )
        .with_state(hits.clone());
    (TlsServer::serve(app, Arc::new(config)).await.unwrap(), hits)
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_added() {
    let ca = CertificateAuthority::new("Transport test CA").unwrap();
    let (server, hits) = tls_token_endpoint(&ca.issue_server(&["127.0.0.1", "localhost"]).unwrap()).await;
    let url = format!("{}/token", server.base_url());
    let ca_cert = || Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap();

    // The default trust (rustls, the webpki roots) does not know this CA.
    let untrusting = OAuth2Source::builder(url.clone(), "c", ClientSecret::new(SECRET)).build().unwrap();
    let e = untrusting.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert_no_secret(&e);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no HTTP request got through the failed handshake");

    // Another CA's certificate does not help either.
    let other = CertificateAuthority::new("Some other CA").unwrap();
    let wrong = OAuth2Source::builder(url.clone(), "c", ClientSecret::new(SECRET))
        .add_root_certificate(Certificate::from_pem(other.cert_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(wrong.fetch(&FetchContext::default()).await.unwrap_err().kind(), ErrorKind::Transport);

    let trusting = OAuth2Source::builder(url, "c", ClientSecret::new(SECRET))
        .add_root_certificate(ca_cert())
        .build()
        .unwrap();
    let token = trusting.fetch(&FetchContext::default()).await.expect("trusted with the CA added");
    assert_eq!(token.access_token().expose_secret(), "tls-token");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The FHIR side: an AuthClient on a reqwest client that trusts the CA.
    let http = reqwest::Client::builder().add_root_certificate(ca_cert()).build().unwrap();
    let api = AuthClient::builder(TokenManager::new(trusting)).http_client(http).build().unwrap();
    let fhir = FhirClient::new(api, &format!("{}/fhir", server.base_url())).unwrap();
    assert_eq!(fhir.read::<Patient>("1").await.unwrap().id.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_even_from_a_trusted_ca() {
    let ca = CertificateAuthority::new("Transport test CA").unwrap();
    let (server, hits) = tls_token_endpoint(&ca.issue_server(&["idp.example.org"]).unwrap()).await;
    let source =
        OAuth2Source::builder(format!("{}/token", server.base_url()), "c", ClientSecret::new(SECRET))
            .add_root_certificate(Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
    let e = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// Set (to a PEM file path) only in the child process that
/// [`the_system_trust_store_is_never_consulted`] starts.
const SYSTEM_CA_ENV: &str = "FHIR_AUTH_TEST_SYSTEM_CA_FILE";

/// A CA put into the "system store" (`SSL_CERT_FILE`, which the platform verifier
/// reads on Linux) is trusted by a plain reqwest client but by none of the
/// library's clients: their trust is the webpki roots plus what the user adds.
/// The variable has to be set before the process starts, so the check runs in a
/// child process (the ignored test below).
#[test]
fn the_system_trust_store_is_never_consulted() {
    let ca_file = std::env::temp_dir().join(format!("fhir-auth-system-ca-{}.pem", std::process::id()));
    integration_tests::run_in_child("transport::system_store_child", |child| {
        child.env(SYSTEM_CA_ENV, &ca_file).env("SSL_CERT_FILE", &ca_file).env_remove("SSL_CERT_DIR");
    });
    let _ = std::fs::remove_file(&ca_file);
}

#[tokio::test]
#[ignore = "run by the_system_trust_store_is_never_consulted with SSL_CERT_FILE set"]
async fn system_store_child() {
    integration_tests::assert_child("transport::system_store_child");
    let ca_file = std::env::var_os(SYSTEM_CA_ENV).expect("the parent sets the CA file");
    let ca = CertificateAuthority::new("System store test CA").unwrap();
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let (server, hits) = tls_token_endpoint(&ca.issue_server(&["127.0.0.1", "localhost"]).unwrap()).await;
    let url = format!("{}/token", server.base_url());

    // reqwest's own default (rustls-platform-verifier) trusts the "system" CA.
    let platform = reqwest::Client::new().post(&url).send().await.expect("the system store holds the CA");
    assert!(platform.status().is_success());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The token endpoint's client does not.
    let source = OAuth2Source::builder(url.clone(), "c", ClientSecret::new(SECRET)).build().unwrap();
    let e = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the handshake failed before any request");

    // Nor does AuthClient::new's default client (the token comes from a source that
    // was given the CA explicitly, so only the FHIR request is judged).
    let trusting = OAuth2Source::builder(url, "c", ClientSecret::new(SECRET))
        .add_root_certificate(Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let fhir = FhirClient::new(
        AuthClient::new(TokenManager::new(trusting)).unwrap(),
        &format!("{}/fhir", server.base_url()),
    )
    .unwrap();
    let e = fhir.read::<Patient>("1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");

    // The library's builder with the CA added is what trusts it.
    let http =
        auth_core::tls::client_builder(&[Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()], None)
            .unwrap()
            .build()
            .unwrap();
    assert!(http.post(format!("{}/token", server.base_url())).send().await.unwrap().status().is_success());
}
