//! Operations at system, type and instance level (operations.html), and the
//! CapabilityStatement (http.html#capabilities).

use reqwest::Method;
use serde_json::{Value, json};

use crate::fhir_common::{entries, outcome, serve};

fn parameter<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

#[tokio::test]
async fn system_operations_answer_get_and_post() {
    let s = serve().await;
    let ping = s.get_json("$ping").await;
    assert_eq!(ping["resourceType"], "Parameters");
    assert_eq!(parameter(&ping, "status")["valueString"], "ok");
    let posted = s.post("$ping", &json!({"resourceType": "Parameters"})).await;
    assert_eq!(posted.status(), 200);
    let versions = s.get_json("$versions").await;
    assert_eq!(parameter(&versions, "default")["valueCode"], "4.0");
    assert_eq!(outcome(s.post("$ping", &json!({"resourceType": "Patient"})).await).await.0, 400);
    let (status, code, _) = outcome(s.get("$nonsense").await).await;
    assert_eq!((status, code.as_str()), (404, "not-supported"));
    assert_eq!(outcome(s.send(Method::DELETE, "$ping", None, &[]).await).await.0, 405);
}

#[tokio::test]
async fn type_count_takes_search_parameters_by_get_or_post() {
    let s = serve().await;
    let got = s.get_json("Patient/$count?family=Chalmers").await;
    assert_eq!(parameter(&got, "count")["valueInteger"], 3);
    let body =
        json!({"resourceType": "Parameters", "parameter": [{"name": "family", "valueString": "Windsor"}]});
    let posted: Value = s.post("Patient/$count", &body).await.json().await.unwrap();
    assert_eq!(parameter(&posted, "count")["valueInteger"], 1);
    assert_eq!(parameter(&s.get_json("Observation/$count").await, "count")["valueInteger"], 0);
    assert_eq!(outcome(s.get("Patient/$count?shoe-size=9").await).await.0, 400, "a count of something else");
    assert_eq!(outcome(s.get("Patient/$everything").await).await.0, 404, "not at type level");
}

#[tokio::test]
async fn patient_everything_returns_the_patient_what_refers_to_it_and_what_that_refers_to() {
    let s = serve().await;
    let practitioner = s.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Who"}]})).await;
    let obs = s
        .create(&json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                        "subject": {"reference": "Patient/pat-1"}, "performer": [{"reference": format!("Practitioner/{practitioner}")}]}))
        .await;
    let other = s
        .create(&json!({"resourceType": "Observation", "status": "final", "code": {"text": "y"},
                                 "subject": {"reference": "Patient/pat-2"}}))
        .await;
    let bundle = s.get_json("Patient/pat-1/$everything").await;
    assert_eq!(bundle["type"], "searchset");
    let got: Vec<String> = entries(&bundle).into_iter().map(|(_, r)| r).collect();
    assert!(got.contains(&"Patient/pat-1".to_owned()));
    assert!(got.contains(&format!("Observation/{obs}")));
    assert!(got.contains(&format!("Practitioner/{practitioner}")));
    assert!(!got.contains(&format!("Observation/{other}")));
    assert_eq!(bundle["total"], 3);
    let only: Value = s
        .post("Patient/pat-1/$everything", &json!({"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Observation"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        entries(&only).into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        vec![format!("Observation/{obs}")]
    );
    assert_eq!(outcome(s.get("Patient/nobody/$everything").await).await.0, 404);
    assert_eq!(outcome(s.get("Patient/pat-1/$everything?bogus=1").await).await.0, 400);
    assert_eq!(outcome(s.get("Observation/x/$everything").await).await.0, 404);
}

#[tokio::test]
async fn the_capability_statement_says_what_the_store_does() {
    let s = serve().await;
    let cs = s.get_json("metadata").await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let rest = &cs["rest"][0];
    let system: Vec<&str> =
        rest["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(system, vec!["transaction", "batch", "search-system", "history-system"]);
    let resource =
        |t: &str| rest["resource"].as_array().unwrap().iter().find(|r| r["type"] == t).cloned().unwrap();
    let observation = resource("Observation");
    let codes: Vec<&str> =
        observation["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for code in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(codes.contains(&code), "{code}");
    }
    let params: Vec<&str> =
        observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["_id", "_lastUpdated", "subject", "patient", "code", "status"] {
        assert!(params.contains(&name), "{name}");
    }
    assert_eq!(observation["conditionalDelete"], "single");
    assert!(observation["searchInclude"].as_array().unwrap().contains(&json!("Observation:subject")));
    assert!(
        resource("Patient")["searchRevInclude"].as_array().unwrap().contains(&json!("Observation:subject"))
    );
    assert!(rest.get("security").is_none(), "no token URL was set");

    s.store.set_token_url("https://idp.example/token");
    let cs = s.get_json("metadata").await;
    let oauth = &cs["rest"][0]["security"]["extension"][0];
    assert_eq!(oauth["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    assert_eq!(oauth["extension"][0], json!({"url": "token", "valueUri": "https://idp.example/token"}));

    s.store.set_read_only(true);
    let cs = s.get_json("metadata").await;
    assert_eq!(cs["rest"][0]["interaction"].as_array().unwrap().len(), 2);
    let p = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .cloned()
        .unwrap();
    assert!(!p["interaction"].as_array().unwrap().contains(&json!({"code": "create"})));
    let (status, _, _) = outcome(s.post("Patient", &json!({"resourceType": "Patient"})).await).await;
    assert_eq!(status, 405);
}
