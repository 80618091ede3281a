//! Key rotation for `private_key_jwt` against oidc-provider fetching our JWK Set
//! over HTTP: a client registered by `jwks_uri` (the set served here, on
//! loopback, from a [`KeyRing`]), keys published, activated and retired while
//! token requests keep flowing, and not one of them failing.
//!
//! oidc-provider keeps a fetched set for at least 60 s (here: the set's max-age,
//! 300 s) and fetches it again only once it is stale and an assertion names a
//! key it does not hold. Rather than wait that out, the test has the server
//! fetch the set at once through the server script's test route, which is what
//! the wait would come to. That the order matters is shown too: a key that
//! signs before the server has fetched it is refused.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use auth_core::jwks::{JWKS_CACHE_CONTROL, KeyRing};
use auth_core::keys::{JwsAlgorithm, PrivateKey};
use auth_core::{CredentialSource, FetchContext, OAuthErrorCode};
use auth_providers::smart::SmartSource;

use crate::conformance::{OidcServer, jwt_part, shared_server};

/// The client oidc-provider knows by the URL of its JWK Set.
pub(crate) const CLIENT: &str = "rotating-client";

/// The ring whose JWK Set is served: one key to start with.
fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let first = PrivateKey::generate(JwsAlgorithm::Es384).expect("a key").with_kid("rotation-0");
        KeyRing::new(first).expect("a ring")
    })
}

/// Serves [`ring`]'s JWK Set at `/jwks` on loopback for the whole test binary
/// (on a thread and runtime of its own: each test's runtime ends with it) and
/// returns its URL. Started before oidc-provider, which is told the URL.
pub(crate) fn jwks_server() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}/jwks", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().route(
                    "/jwks",
                    axum::routing::get(|| async {
                        (
                            [("content-type", "application/json"), ("cache-control", JWKS_CACHE_CONTROL)],
                            ring().jwks_json(),
                        )
                    }),
                );
                let _ = axum::serve(listener, app).await;
            });
        });
        url
    })
    .clone()
}

/// Has oidc-provider fetch the client's JWK Set again now (what waiting out its
/// cache would come to).
async fn refetch_set(server: &OidcServer) {
    let status = reqwest::Client::new()
        .post(format!("{}/__test/jwks-refresh/{CLIENT}", server.issuer))
        .send()
        .await
        .expect("test route")
        .status();
    assert_eq!(status, 204);
}

fn source(server: &OidcServer) -> SmartSource {
    SmartSource::builder_with_keys(CLIENT, ring().clone())
        .token_url(server.token_url())
        .scopes(["system/Patient.rs"])
        .build()
        .expect("valid configuration")
}

fn new_key(kid: &str) -> PrivateKey {
    PrivateKey::generate(JwsAlgorithm::Es384).expect("a key").with_kid(kid)
}

#[tokio::test]
async fn keys_rotate_while_requests_flow_without_one_failing() {
    let server = shared_server();
    let source = std::sync::Arc::new(source(server));
    let ctx = FetchContext::default();
    source.fetch(&ctx).await.expect("the first key works");

    // Token requests keep flowing, two at a time, for the whole rotation.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (ok, failed) = (std::sync::Arc::new(AtomicU64::new(0)), std::sync::Arc::new(AtomicU64::new(0)));
    let flows: Vec<_> = (0..2)
        .map(|_| {
            let (source, stop, ok, failed) = (source.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let ctx = FetchContext::default();
                while !stop.load(Ordering::Relaxed) {
                    match source.fetch(&ctx).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("token request failed during the rotation: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let settle = || tokio::time::sleep(Duration::from_millis(300));

    for n in 1..=2 {
        let (old, new) = (format!("rotation-{}", n - 1), format!("rotation-{n}"));
        // 1. Publish: in the set, not signing.
        ring().publish(new_key(&new), None).expect("publish");
        settle().await;
        // 2. The server fetches the set again (its copy expired), then the new key signs.
        refetch_set(server).await;
        settle().await;
        ring().activate(&new).expect("activate");
        let assertion = source.sign_assertion(&server.token_url()).expect("sign");
        assert_eq!(jwt_part(&assertion, 0)["kid"], new.as_str());
        settle().await;
        // 3. Retire the old key once its assertions are spent; the server forgets it.
        ring().retire(&old).expect("retire");
        refetch_set(server).await;
        settle().await;
    }
    stop.store(true, Ordering::Relaxed);
    for flow in flows {
        flow.await.expect("a flow");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed token requests during the rotation");
    assert!(ok.load(Ordering::Relaxed) >= 10, "requests flowed: {}", ok.load(Ordering::Relaxed));
    assert_eq!(ring().kids(), ["rotation-2"]);

    // The order matters: a key that signs before the server has fetched it is
    // refused while the server's copy is fresh, and accepted once it is renewed.
    ring().publish(new_key("too-early"), None).expect("publish");
    ring().activate("too-early").expect("activate");
    let err = source.fetch(&ctx).await.expect_err("an unknown kid");
    assert_eq!(err.oauth_error().map(|o| o.code.clone()), Some(OAuthErrorCode::InvalidClient), "{err}");
    refetch_set(server).await;
    source.fetch(&ctx).await.expect("known once the set is fetched again");
}
