//! Retries of FHIR calls, over real HTTP against the sandbox's FHIR server
//! throttling with 429 and 503: calls that are safe to repeat get through, a
//! create is never sent twice, `Retry-After` is waited for, in seconds and as an
//! HTTP-date, and a server that is not listening yet is tried again.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use auth_core::oauth2::OAuth2Source;
use auth_core::{AuthClient, ErrorKind, TokenManager};
use auth_fhir::{FhirClient, FhirRetry, JsonResource, Patient, Resource, SearchParams};
use auth_sandbox::fhir::{FhirStore, RetryAfter, sample_patients};
use auth_sandbox::idp::TestIdentityProvider;
use axum::http::StatusCode;

struct Setup {
    _idp: TestIdentityProvider,
    store: Arc<FhirStore>,
    manager: Arc<TokenManager<OAuth2Source>>,
    fhir: FhirClient,
    base: String,
}

async fn setup() -> Setup {
    let idp = TestIdentityProvider::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let store = FhirStore::new(base.clone());
    store.seed(sample_patients());
    store.seed([known_patient()]);
    let app = axum::Router::new().nest("/fhir", store.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (id, secret) = idp.credentials();
    let manager =
        Arc::new(TokenManager::new(OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap()));
    let fhir = FhirClient::new(AuthClient::new(manager.clone()).unwrap(), &base).unwrap();
    Setup { _idp: idp, store, manager, fhir, base }
}

/// A seeded patient with a known id.
fn known_patient() -> serde_json::Value {
    serde_json::json!({"resourceType": "Patient", "id": "known", "name": [{"family": "Known"}]})
}

fn a_patient(n: usize) -> Patient {
    Patient::new().with_name("Retry", [format!("N{n}")]).with_identifier("urn:retry", format!("r-{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_a_throttling_server_fails_no_safe_call_and_duplicates_no_create() {
    let s = setup().await;
    let id = "known";
    // Every request for a while answers 503 or 429, each with Retry-After: 1.
    s.store.throttle_next(25, StatusCode::SERVICE_UNAVAILABLE, Some(RetryAfter::Seconds(1)));
    let started = Instant::now();
    let mut safe = Vec::new();
    for n in 0..60 {
        let fhir = s.fhir.clone();
        let id = id.to_owned();
        safe.push(tokio::spawn(async move {
            match n % 3 {
                0 => fhir.read::<Patient>(&id).await.map(drop),
                1 => fhir.search::<Patient>(&SearchParams::new().add("name", "chal")).await.map(drop),
                // A conditional create is safe to repeat: the second one finds the first.
                _ => fhir
                    .create_if_none_exist(
                        &a_patient(1000 + n),
                        &SearchParams::new().add("identifier", format!("urn:retry|r-{}", 1000 + n)),
                    )
                    .await
                    .map(drop),
            }
        }));
    }
    let mut creates = Vec::new();
    for n in 0..20 {
        let fhir = s.fhir.clone();
        creates.push(tokio::spawn(async move { fhir.create(&a_patient(n)).await }));
    }
    let mut failed_safe = Vec::new();
    for call in safe {
        if let Err(e) = call.await.unwrap() {
            failed_safe.push(e.to_string());
        }
    }
    assert_eq!(failed_safe, Vec::<String>::new(), "no safe call fails");
    let mut created = 0;
    for call in creates {
        match call.await.unwrap() {
            Ok(c) => {
                assert!(c.created);
                created += 1;
            }
            // A plain create the server refused is handed back, not retried.
            Err(e) => assert_eq!((e.kind(), e.status()), (ErrorKind::Api, Some(503)), "{e}"),
        }
    }
    let stored = s.store.writes().iter().filter(|w| w.interaction == "create").count();
    // Each conditional create wrote once; each successful plain create once; nothing twice.
    assert_eq!(stored, 20 + created, "creates stored: one per successful create");
    let throttled = s.store.throttled();
    assert_eq!(throttled, 25, "the throttle answered its 25 requests");
    let stats = s.fhir.stats();
    assert!(stats.retries >= 1 && stats.retries <= throttled, "{stats:?}");
    assert_eq!(s.manager.stats().api_retries, stats.retries, "counted in the manager's statistics");
    // A retried call waited out Retry-After: 1 s.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn retry_after_is_waited_for_in_seconds_and_as_a_date() {
    let s = setup().await;
    s.store.throttle_next(1, StatusCode::TOO_MANY_REQUESTS, Some(RetryAfter::Seconds(2)));
    let started = Instant::now();
    let found = s.fhir.search::<Patient>(&SearchParams::new().add("name", "chal")).await.unwrap();
    assert!(found.matches().count() > 0);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 2 waited ({:?})", started.elapsed());

    // An HTTP-date has whole seconds: two seconds ahead is at least one second's wait.
    s.store.throttle_next(
        1,
        StatusCode::SERVICE_UNAVAILABLE,
        Some(RetryAfter::At(SystemTime::now() + Duration::from_secs(2))),
    );
    let started = Instant::now();
    s.fhir.search::<Patient>(&SearchParams::new().add("name", "chal")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After date waited ({:?})", started.elapsed());
    assert_eq!(s.store.throttled(), 2);
    assert_eq!(s.fhir.stats().retries, 2);
}

#[tokio::test]
async fn a_retry_after_past_the_cap_or_retries_off_hands_the_error_back_at_once() {
    let s = setup().await;
    s.store.throttle_next(1, StatusCode::SERVICE_UNAVAILABLE, Some(RetryAfter::Seconds(3600)));
    let started = Instant::now();
    let e = s.fhir.read::<Patient>("known").await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(
        e.api_detail::<auth_fhir::FhirError>().and_then(|f| f.retry_after()),
        Some(Duration::from_secs(3600))
    );
    assert!(started.elapsed() < Duration::from_secs(5), "an hour is not waited for");

    let no_retries = s.fhir.clone().with_retry(FhirRetry::none());
    s.store.throttle_next(1, StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(no_retries.read::<Patient>("known").await.unwrap_err().status(), Some(429));
}

#[tokio::test]
async fn patch_and_transactions_are_never_retried() {
    let s = setup().await;
    let before = s.store.state_changes();
    s.store.throttle_next(2, StatusCode::SERVICE_UNAVAILABLE, Some(RetryAfter::Seconds(0)));
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::json!([{"op": "add", "path": "/active", "value": true}])).unwrap();
    let e = s.fhir.patch::<Patient>("known", &patch, None).await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    let mut tx = auth_fhir::Transaction::new();
    tx.create(&a_patient(7)).unwrap();
    assert_eq!(s.fhir.transaction(&tx).await.unwrap_err().status(), Some(503));
    assert_eq!(
        (s.store.throttled(), s.store.state_changes()),
        (2, before),
        "each sent once, nothing written"
    );
}

#[tokio::test]
async fn a_read_gets_through_to_a_server_that_starts_late() {
    let s = setup().await;
    // A port with nothing listening yet: connections are refused until it starts.
    let late = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = late.local_addr().unwrap();
    drop(late);
    let base = format!("http://{addr}/fhir");
    let store = FhirStore::new(base.clone());
    store.seed([known_patient()]);
    let fhir = FhirClient::new(s.fhir.api().clone(), &base).unwrap();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        axum::serve(listener, axum::Router::new().nest("/fhir", store.router())).await
    });
    let read: JsonResource = fhir.read_json("Patient", "known").await.unwrap();
    assert_eq!(read.id(), Some("known"));
    assert!(fhir.stats().retries >= 1);
    // A create to a server that is not there fails at once: it is not repeated.
    let nowhere = FhirClient::new(s.fhir.api().clone(), &format!("http://{}/fhir", free_port())).unwrap();
    let e = nowhere.create(&a_patient(1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert_eq!(nowhere.stats().retries, 0);
    server.abort();
    let _ = s.base;
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
