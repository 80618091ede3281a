//! Read, vread, create, update, delete and their conditional forms, for any
//! resource type (http.html).

use reqwest::Method;
use serde_json::{Value, json};

use crate::fhir_common::{outcome, serve};

fn observation(patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}
    })
}

#[tokio::test]
async fn create_answers_201_with_location_etag_last_modified_and_the_server_s_id_and_meta() {
    let s = serve().await;
    let mut body = observation("pat-1", "8867-4");
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"versionId": "42", "lastUpdated": "1999-01-01T00:00:00Z"});
    let response = s.post("Observation", &body).await;
    assert_eq!(response.status(), 201);
    let headers = response.headers().clone();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen", "http.html#create: a client's id is ignored");
    assert_eq!(created["meta"]["versionId"], "1");
    let last_updated = created["meta"]["lastUpdated"].as_str().unwrap();
    assert!(
        last_updated.ends_with('Z') && last_updated.contains('T') && !last_updated.starts_with("1999"),
        "{last_updated}"
    );
    assert_eq!(headers["location"], format!("{}/Observation/{id}/_history/1", s.base).as_str());
    assert_eq!(headers["etag"], "W/\"1\"");
    assert!(httpdate::parse_http_date(headers["last-modified"].to_str().unwrap()).is_ok());

    let read = s.get(&format!("Observation/{id}")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["etag"], "W/\"1\"");
    assert!(read.headers().contains_key("last-modified"));
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["subject"]["reference"], "Patient/pat-1");
    assert_eq!(s.store.read("Observation", id).unwrap()["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(s.store.count("Observation"), 1);
}

#[tokio::test]
async fn prefer_return_minimal_representation_and_operation_outcome() {
    let s = serve().await;
    let body = observation("pat-1", "1");
    let minimal = s.send(Method::POST, "Observation", Some(&body), &[("prefer", "return=minimal")]).await;
    assert_eq!(minimal.status(), 201);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.bytes().await.unwrap().is_empty(), "return=minimal: no body");
    let oo = s.send(Method::POST, "Observation", Some(&body), &[("prefer", "return=OperationOutcome")]).await;
    assert_eq!(oo.status(), 201);
    let oo: Value = oo.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["severity"], "information");
    let full = s.send(Method::POST, "Observation", Some(&body), &[("prefer", "return=representation")]).await;
    let full: Value = full.json().await.unwrap();
    assert_eq!(full["resourceType"], "Observation");
}

#[tokio::test]
async fn conditional_create_creates_on_no_match_returns_the_match_on_one_and_412_on_several() {
    let s = serve().await;
    let before = s.store.count("Patient");
    let new = json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "C-1"}]});
    let none =
        s.send(Method::POST, "Patient", Some(&new), &[("if-none-exist", "identifier=urn:mrn|C-1")]).await;
    assert_eq!(none.status(), 201);
    let created: Value = none.json().await.unwrap();
    let one =
        s.send(Method::POST, "Patient", Some(&new), &[("if-none-exist", "identifier=urn:mrn|C-1")]).await;
    assert_eq!(one.status(), 200);
    assert_eq!(
        one.headers()["location"],
        format!("{}/Patient/{}/_history/1", s.base, created["id"].as_str().unwrap()).as_str()
    );
    let body: Value = one.json().await.unwrap();
    assert_eq!(body["id"], created["id"]);
    assert_eq!(s.store.count("Patient"), before + 1, "one match: nothing new");
    let (status, code, _) =
        outcome(s.send(Method::POST, "Patient", Some(&new), &[("if-none-exist", "family=Chalmers")]).await)
            .await;
    assert_eq!((status, code.as_str()), (412, "multiple-matches"));
    // Criteria the server does not understand would widen the match: refused.
    let (status, _, diagnostics) =
        outcome(s.send(Method::POST, "Patient", Some(&new), &[("if-none-exist", "shoe-size=9")]).await).await;
    assert_eq!(status, 400, "{diagnostics}");
    assert_eq!(s.store.count("Patient"), before + 1);
}

#[tokio::test]
async fn update_checks_if_match_creates_new_ids_and_requires_if_match_when_told() {
    let s = serve().await;
    let mut p = s.get_json("Patient/pat-1").await;
    p["gender"] = json!("female");
    let stale = s.send(Method::PUT, "Patient/pat-1", Some(&p), &[("if-match", "W/\"7\"")]).await;
    let (status, code, _) = outcome(stale).await;
    assert_eq!((status, code.as_str()), (412, "conflict"));
    let garbage = s.send(Method::PUT, "Patient/pat-1", Some(&p), &[("if-match", "yesterday")]).await;
    assert_eq!(outcome(garbage).await.0, 400);
    let ok = s.send(Method::PUT, "Patient/pat-1", Some(&p), &[("if-match", "W/\"1\"")]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "W/\"2\"");
    assert_eq!(ok.headers()["location"], format!("{}/Patient/pat-1/_history/2", s.base).as_str());

    // Update as create (http.html#upsert): 201 with the client's id.
    let new = json!({"resourceType": "Condition", "id": "cond-a", "subject": {"reference": "Patient/pat-1"}});
    let created = s.send(Method::PUT, "Condition/cond-a", Some(&new), &[]).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["etag"], "W/\"1\"");

    // The id in the body must be the URL's; the type too.
    let (status, _, _) = outcome(s.send(Method::PUT, "Condition/other", Some(&new), &[]).await).await;
    assert_eq!(status, 400);
    let (status, _, _) = outcome(s.send(Method::PUT, "Observation/cond-a", Some(&new), &[]).await).await;
    assert_eq!(status, 400);

    s.store.set_require_if_match(true);
    let (status, code, _) = outcome(s.send(Method::PUT, "Patient/pat-1", Some(&p), &[]).await).await;
    assert_eq!((status, code.as_str()), (428, "required"));
    let mut current = s.get_json("Patient/pat-1").await;
    current["gender"] = json!("male");
    let ok = s.send(Method::PUT, "Patient/pat-1", Some(&current), &[("if-match", "W/\"2\"")]).await;
    assert_eq!(ok.status(), 200);
    // A new resource cannot have a version to name: update as create still works.
    let fresh = json!({"resourceType": "Condition", "id": "cond-b"});
    assert_eq!(s.send(Method::PUT, "Condition/cond-b", Some(&fresh), &[]).await.status(), 201);
}

#[tokio::test]
async fn conditional_update_creates_updates_or_refuses_by_match_count() {
    let s = serve().await;
    let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "U-1"}], "gender": "male"});
    let created = s.send(Method::PUT, "Patient?identifier=urn:mrn|U-1", Some(&body), &[]).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let mut changed = body.clone();
    changed["gender"] = json!("female");
    let updated = s.send(Method::PUT, "Patient?identifier=urn:mrn|U-1", Some(&changed), &[]).await;
    assert_eq!(updated.status(), 200);
    assert_eq!(updated.headers()["etag"], "W/\"2\"");
    assert_eq!(s.store.get(&id).unwrap()["gender"], "female");

    let mut wrong_id = changed.clone();
    wrong_id["id"] = json!("pat-2");
    let (status, _, _) =
        outcome(s.send(Method::PUT, "Patient?identifier=urn:mrn|U-1", Some(&wrong_id), &[]).await).await;
    assert_eq!(status, 400, "one match, another id in the body");

    let (status, code, _) =
        outcome(s.send(Method::PUT, "Patient?family=Chalmers", Some(&body), &[]).await).await;
    assert_eq!((status, code.as_str()), (412, "multiple-matches"));
    let (status, _, _) = outcome(s.send(Method::PUT, "Patient", Some(&body), &[]).await).await;
    assert_eq!(status, 400, "PUT [type] without criteria");
}

#[tokio::test]
async fn delete_makes_reads_gone_keeps_old_versions_and_conditional_delete_takes_one() {
    let s = serve().await;
    let deleted = s.send(Method::DELETE, "Patient/pat-2", None, &[]).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.headers()["etag"], "W/\"2\"");
    let (status, code, _) = outcome(s.get("Patient/pat-2").await).await;
    assert_eq!((status, code.as_str()), (410, "deleted"));
    assert_eq!(s.get_json("Patient/pat-2/_history/1").await["id"], "pat-2");
    assert_eq!(outcome(s.get("Patient/pat-2/_history/2").await).await.0, 410);
    assert_eq!(outcome(s.get("Patient/pat-2/_history/3").await).await.0, 404);
    // Deleting again, or what never existed, is no error (http.html#delete).
    assert_eq!(s.send(Method::DELETE, "Patient/pat-2", None, &[]).await.status(), 204);
    assert_eq!(s.send(Method::DELETE, "Patient/never", None, &[]).await.status(), 204);
    assert_eq!(s.store.versions("Patient", "pat-2").len(), 2, "a repeated delete writes nothing");

    let (status, code, _) = outcome(s.send(Method::DELETE, "Patient?family=Chalmers", None, &[]).await).await;
    assert_eq!((status, code.as_str()), (412, "multiple-matches"));
    assert_eq!(s.send(Method::DELETE, "Patient?identifier=22345", None, &[]).await.status(), 204);
    assert!(s.store.get("pat-3").is_none(), "Windsor (22345) is deleted");
    assert_eq!(s.send(Method::DELETE, "Patient?identifier=nobody", None, &[]).await.status(), 204);
    assert_eq!(outcome(s.send(Method::DELETE, "Patient", None, &[]).await).await.0, 400);

    // Recreated by update: a new version after the deletion, 201.
    let back = json!({"resourceType": "Patient", "id": "pat-2"});
    let recreated = s.send(Method::PUT, "Patient/pat-2", Some(&back), &[]).await;
    assert_eq!(recreated.status(), 201);
    assert_eq!(recreated.headers()["etag"], "W/\"3\"");
}

#[tokio::test]
async fn refusals_are_operation_outcomes_with_the_right_status() {
    let s = serve().await;
    let (status, code, _) = outcome(s.get("Nonsense/1").await).await;
    assert_eq!((status, code.as_str()), (404, "not-supported"));
    assert_eq!(outcome(s.get("Patient/bad%20id").await).await.0, 400);
    assert_eq!(outcome(s.get("Patient/nope").await).await.0, 404);
    assert_eq!(outcome(s.get("Patient/pat-1/_history/1/extra").await).await.0, 404);

    let not_allowed = s.send(Method::POST, "Patient/pat-1", Some(&json!({})), &[]).await;
    assert_eq!(not_allowed.headers()["allow"], "GET, PUT, PATCH, DELETE");
    assert_eq!(outcome(not_allowed).await.0, 405);
    assert_eq!(outcome(s.send(Method::DELETE, "metadata", None, &[]).await).await.0, 405);

    let xml = s
        .http
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+xml")
        .body("<Patient xmlns=\"http://hl7.org/fhir\"/>")
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(xml).await.0, 415);
    let garbage = s
        .http
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(garbage).await.0, 400);
    let array = s.post("Patient", &json!([1, 2])).await;
    assert_eq!(outcome(array).await.0, 400);
    let untyped = s.post("Patient", &json!({"name": []})).await;
    assert_eq!(outcome(untyped).await.0, 400);
    // The server is still there.
    assert_eq!(s.get("Patient/pat-1").await.status(), 200);
}
