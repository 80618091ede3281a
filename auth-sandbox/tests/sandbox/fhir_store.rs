//! The sandbox's FHIR server, Patient only, spoken to directly (no authentication):
//! the behaviour every vendor emulator builds on.

use auth_sandbox::fhir::{FhirStore, sample_patients};
use serde_json::{Value, json};

async fn serve() -> (String, std::sync::Arc<FhirStore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let store = FhirStore::new(base.clone());
    store.seed(sample_patients());
    let app = axum::Router::new().nest("/fhir", store.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, store)
}

#[tokio::test]
async fn crud_search_paging_and_preconditions() {
    let (base, store) = serve().await;
    let http = reqwest::Client::new();

    // Search with paging: 3 Chalmers at 2 per page (plus Chalk matches "chal").
    let mut url = format!("{base}/Patient?name=chal&_count=2");
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let bundle: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(bundle["total"], 4);
        seen += bundle["entry"].as_array().unwrap().len();
        pages += 1;
        match bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!((seen, pages), (4, 2));

    // Create: 201, Location with version, ETag; unknown fields kept.
    let new = json!({"resourceType": "Patient", "name": [{"family": "Newman"}], "x-unknown": {"kept": true},
                     "identifier": [{"system": "urn:mrn", "value": "N-1"}]});
    let created = http.post(format!("{base}/Patient")).json(&new).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{base}/Patient/")) && location.ends_with("/_history/1"),
        "{location}"
    );
    assert_eq!(created.headers()["etag"], "W/\"1\"");
    let body: Value = created.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["x-unknown"]["kept"], true);

    // Conditional create finds the existing one.
    let again = http
        .post(format!("{base}/Patient"))
        .header("If-None-Exist", "identifier=urn:mrn|N-1")
        .json(&new)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(store.len(), 7);

    // Update with a stale If-Match fails; with the right one succeeds.
    let mut changed = body.clone();
    changed["gender"] = json!("female");
    let stale = http
        .put(format!("{base}/Patient/{id}"))
        .header("If-Match", "W/\"9\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let outcome: Value = stale.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let ok = http
        .put(format!("{base}/Patient/{id}"))
        .header("If-Match", "W/\"1\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "W/\"2\"");
    assert_eq!(store.received().last().unwrap()["x-unknown"]["kept"], true);

    // vread, delete, then 410.
    let v1: Value =
        http.get(format!("{base}/Patient/{id}/_history/1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v1["meta"]["versionId"], "1");
    assert_eq!(http.delete(format!("{base}/Patient/{id}")).send().await.unwrap().status(), 204);
    assert_eq!(http.get(format!("{base}/Patient/{id}")).send().await.unwrap().status(), 410);
    assert_eq!(http.get(format!("{base}/Patient/nope")).send().await.unwrap().status(), 404);

    // Bad input gets an OperationOutcome, not a crash.
    let bad = http.post(format!("{base}/Patient")).body("{not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let wrong = http
        .post(format!("{base}/Patient"))
        .json(&json!({"resourceType": "Observation"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let meta: Value = http.get(format!("{base}/metadata")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["resourceType"], "CapabilityStatement");
}
