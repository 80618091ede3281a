//! The knobs a client's retry tests turn: scripted 429/503 with Retry-After, and a
//! count of the requests that really changed something.

use std::time::{Duration, SystemTime};

use auth_sandbox::fhir::RetryAfter;
use reqwest::StatusCode;
use serde_json::json;

use crate::fhir_common::{outcome, serve};

#[tokio::test]
async fn the_next_n_requests_are_throttled_with_retry_after_and_nothing_they_ask_is_done() {
    let s = serve().await;
    s.store.throttle_next(2, StatusCode::TOO_MANY_REQUESTS, Some(RetryAfter::Seconds(3)));
    let body = json!({"resourceType": "Patient", "name": [{"family": "Retry"}]});
    for _ in 0..2 {
        let refused = s.post("Patient", &body).await;
        assert_eq!(refused.headers()["retry-after"], "3");
        let (status, code, _) = outcome(refused).await;
        assert_eq!((status, code.as_str()), (429, "throttled"));
    }
    assert_eq!(s.store.state_changes(), 0, "throttled requests are not applied");
    assert_eq!(s.post("Patient", &body).await.status(), 201);
    assert_eq!(s.store.throttled(), 2);
    assert_eq!(s.store.state_changes(), 1);
    assert_eq!(s.get_json("Patient?family=Retry").await["total"], 1, "applied once");

    let at = SystemTime::now() + Duration::from_secs(120);
    s.store.throttle_next(1, StatusCode::SERVICE_UNAVAILABLE, Some(RetryAfter::At(at)));
    let refused = s.get("Patient/pat-1").await;
    assert_eq!(refused.status(), 503);
    let date = httpdate::parse_http_date(refused.headers()["retry-after"].to_str().unwrap()).unwrap();
    assert!(date.duration_since(SystemTime::now()).unwrap() > Duration::from_secs(100));
    assert_eq!(s.get("Patient/pat-1").await.status(), 200);

    s.store.throttle_next(5, StatusCode::TOO_MANY_REQUESTS, None);
    let refused = s.get("Patient/pat-1").await;
    assert!(!refused.headers().contains_key("retry-after"));
    s.store.throttle_next(0, StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(s.get("Patient/pat-1").await.status(), 200, "n = 0 ends it");
}

#[tokio::test]
async fn state_changes_count_requests_that_wrote_and_writes_list_what() {
    let s = serve().await;
    let id = s.create(&json!({"resourceType": "Patient"})).await;
    s.send(reqwest::Method::DELETE, &format!("Patient/{id}"), None, &[]).await;
    // Refused, read-only or writing nothing: not counted.
    s.send(reqwest::Method::DELETE, &format!("Patient/{id}"), None, &[]).await;
    s.get("Patient/pat-1").await;
    s.send(
        reqwest::Method::PUT,
        "Patient/pat-1",
        Some(&json!({"resourceType": "Patient", "id": "pat-1"})),
        &[("if-match", "W/\"9\"")],
    )
    .await;
    assert_eq!(s.store.state_changes(), 2);
    let writes: Vec<(&str, u64)> = s.store.writes().iter().map(|w| (w.interaction, w.version)).collect();
    assert_eq!(writes, vec![("create", 1), ("delete", 2)]);
    assert_eq!(s.store.writes()[0].id, id);
}
