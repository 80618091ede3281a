//! Batch and transaction Bundles (http.html#transaction, bundle.html#transaction).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::fhir_common::{outcome, serve};

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

#[tokio::test]
async fn a_transaction_gives_urn_uuids_ids_and_rewrites_every_reference_to_them() {
    let s = serve().await;
    let patient = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    let encounter = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0";
    let tx = bundle(
        "transaction",
        vec![
            json!({"fullUrl": encounter, "resource": {"resourceType": "Encounter", "status": "finished",
               "subject": {"reference": patient}}, "request": {"method": "POST", "url": "Encounter"}}),
            json!({"fullUrl": "urn:uuid:7f1b2a55-9c1d-4c3e-8f51-1d2b3c4d5e6f", "resource": {
                "resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                "subject": {"reference": patient}, "encounter": {"reference": encounter},
                "hasMember": [{"reference": patient}],
                "contained": [{"resourceType": "Provenance", "target": [{"reference": patient}]}],
                "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"{patient}\">patient</a></div>")}
              }, "request": {"method": "POST", "url": "Observation"}}),
            json!({"fullUrl": patient, "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
               "request": {"method": "POST", "url": "Patient"}}),
            json!({"request": {"method": "GET", "url": "Patient?family=Tx"}}),
        ],
    );
    let response = s.post("", &tx).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "transaction-response");
    let e = answer["entry"].as_array().unwrap();
    assert_eq!(e.len(), 4, "one answer per entry, in the request's order");
    for created in &e[..3] {
        assert_eq!(created["response"]["status"], "201 Created");
        assert!(created["response"]["location"].as_str().unwrap().contains("/_history/1"));
        assert_eq!(created["response"]["etag"], "W/\"1\"");
    }
    let patient_id = e[2]["resource"]["id"].as_str().unwrap();
    let encounter_id = e[0]["resource"]["id"].as_str().unwrap();
    let observation = &e[1]["resource"];
    let to_patient = format!("Patient/{patient_id}");
    assert_eq!(observation["subject"]["reference"], to_patient.as_str());
    assert_eq!(observation["hasMember"][0]["reference"], to_patient.as_str());
    assert_eq!(observation["contained"][0]["target"][0]["reference"], to_patient.as_str(), "nested anywhere");
    assert_eq!(observation["encounter"]["reference"], format!("Encounter/{encounter_id}").as_str());
    assert!(observation["text"]["div"].as_str().unwrap().contains(&to_patient), "narrative links too");
    assert_eq!(e[0]["resource"]["subject"]["reference"], to_patient.as_str());
    // GET ran last (after the POSTs): it sees the new patient.
    assert_eq!(e[3]["response"]["status"], "200 OK");
    assert_eq!(e[3]["resource"]["total"], 1);
    assert_eq!(s.store.state_changes(), 1, "one request");
    assert_eq!(s.store.writes().len(), 3, "three resources");
}

#[tokio::test]
async fn a_transaction_runs_deletes_first_and_resolves_conditional_references() {
    let s = serve().await;
    let tx = bundle(
        "transaction",
        vec![
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|42345"}},
               "request": {"method": "POST", "url": "Observation"}}),
            json!({"request": {"method": "GET", "url": "Patient?_id=pat-4"}}),
            json!({"request": {"method": "DELETE", "url": "Patient/pat-4"}}),
            json!({"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "T-1"}]},
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"}}),
            json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
               "data": STANDARD.encode(json!([{"op": "add", "path": "/active", "value": true}]).to_string())},
               "request": {"method": "PATCH", "url": "Patient/pat-6", "ifMatch": "W/\"1\""}}),
        ],
    );
    let response = s.post("", &tx).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let e = answer["entry"].as_array().unwrap();
    assert_eq!(e[0]["resource"]["subject"]["reference"], "Patient/pat-5", "Smith, 42345");
    // GET comes first in the Bundle but runs last, after the DELETE.
    assert_eq!(e[1]["resource"]["total"], 0);
    assert_eq!(e[2]["response"]["status"], "204 No Content");
    assert_eq!(e[3]["response"]["status"], "200 OK", "If-None-Exist matched pat-1: nothing created");
    assert_eq!(e[3]["resource"]["id"], "pat-1");
    assert_eq!(e[4]["response"]["status"], "200 OK");
    assert_eq!(s.store.get("pat-6").unwrap()["active"], true);
    assert_eq!(s.store.count("Patient"), 5, "pat-4 deleted, nothing created");
}

#[tokio::test]
async fn a_failing_entry_rolls_the_whole_transaction_back_and_is_named() {
    let s = serve().await;
    let before = (s.store.len(), s.store.writes().len(), s.store.state_changes());
    let tx = bundle(
        "transaction",
        vec![
            json!({"resource": {"resourceType": "Patient", "name": [{"family": "Lost"}]}, "request": {"method": "POST", "url": "Patient"}}),
            json!({"request": {"method": "DELETE", "url": "Patient/pat-1"}}),
            json!({"resource": {"resourceType": "Patient", "id": "pat-2"}, "request": {"method": "PUT", "url": "Patient/pat-2", "ifMatch": "W/\"9\""}}),
        ],
    );
    let (status, code, diagnostics) = outcome(s.post("", &tx).await).await;
    assert_eq!((status, code.as_str()), (412, "conflict"));
    assert!(
        diagnostics.contains("Bundle.entry[2]") && diagnostics.contains("PUT Patient/pat-2"),
        "{diagnostics}"
    );
    assert_eq!((s.store.len(), s.store.writes().len(), s.store.state_changes()), before, "nothing applied");
    assert!(s.store.get("pat-1").is_some(), "the DELETE that ran first is undone");
    assert_eq!(s.get_json("Patient?family=Lost").await["total"], 0);

    let cases = [
        (
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": "urn:uuid:0000"}}, "request": {"method": "POST", "url": "Observation"}}),
            400,
        ),
        (
            json!({"resource": {"resourceType": "Observation", "subject": {"reference": "Patient?family=Chalmers"}},
                "request": {"method": "POST", "url": "Observation"}}),
            412,
        ),
        (json!({"request": {"method": "GET", "url": "Patient/nobody"}}), 404),
        (json!({"request": {"method": "FETCH", "url": "Patient"}}), 400),
        (
            json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "http://elsewhere/fhir/Patient"}}),
            400,
        ),
    ];
    for (entry, expected) in cases {
        let tx = bundle(
            "transaction",
            vec![
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}),
                entry.clone(),
            ],
        );
        let (status, _, diagnostics) = outcome(s.post("", &tx).await).await;
        assert_eq!(status, expected, "{entry}: {diagnostics}");
        assert!(diagnostics.contains("Bundle.entry[1]"), "{diagnostics}");
    }
    let twice = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": "Patient/pat-1"}}),
            json!({"resource": {"resourceType": "Patient", "id": "pat-1"}, "request": {"method": "PUT", "url": "Patient/pat-1"}}),
        ],
    );
    assert_eq!(outcome(s.post("", &twice).await).await.0, 400, "one resource, two writes");
    assert_eq!(s.store.len(), before.0);
}

#[tokio::test]
async fn a_batch_applies_each_entry_on_its_own() {
    let s = serve().await;
    let batch = bundle(
        "batch",
        vec![
            json!({"resource": {"resourceType": "Patient", "name": [{"family": "Kept"}]}, "request": {"method": "POST", "url": "Patient"}}),
            json!({"resource": {"resourceType": "Patient", "id": "pat-2"}, "request": {"method": "PUT", "url": "Patient/pat-2", "ifMatch": "W/\"5\""}}),
            json!({"request": {"method": "GET", "url": "Patient/pat-1"}}),
            json!({"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:abc"}}, "request": {"method": "POST", "url": "Observation"}}),
            json!({"request": {"method": "DELETE", "url": "Patient/pat-3"}}),
        ],
    );
    let response = s.post("", &batch).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "batch-response");
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["201 Created", "412 Precondition Failed", "200 OK", "400 Bad Request", "204 No Content"]
    );
    let e = answer["entry"].as_array().unwrap();
    assert!(e[0]["response"]["location"].as_str().unwrap().starts_with(&format!("{}/Patient/", s.base)));
    assert_eq!(e[0]["response"]["etag"], "W/\"1\"");
    assert_eq!(e[1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(e[2]["resource"]["id"], "pat-1");
    assert_eq!(s.get_json("Patient?family=Kept").await["total"], 1);
    assert!(s.store.get("pat-3").is_none());
}

#[tokio::test]
async fn only_batch_and_transaction_bundles_are_taken() {
    let s = serve().await;
    assert_eq!(outcome(s.post("", &bundle("collection", vec![])).await).await.0, 400);
    assert_eq!(outcome(s.post("", &json!({"resourceType": "Patient"})).await).await.0, 400);
    let nested = bundle(
        "batch",
        vec![json!({"resource": bundle("batch", vec![]), "request": {"method": "POST", "url": ""}})],
    );
    let answer: Value = s.post("", &nested).await.json().await.unwrap();
    assert_eq!(answer["entry"][0]["response"]["status"], "400 Bad Request");
    let empty: Value = s.post("", &bundle("transaction", vec![])).await.json().await.unwrap();
    assert_eq!(empty["type"], "transaction-response");
    let minimal = s.send(Method::POST, "", Some(&bundle("transaction", vec![
        json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}),
    ])), &[("prefer", "return=minimal")]).await;
    let minimal: Value = minimal.json().await.unwrap();
    assert!(minimal["entry"][0].get("resource").is_none());
    assert_eq!(minimal["entry"][0]["response"]["status"], "201 Created");
}
