//! PATCH with JSON Patch (http.html#patch).

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::fhir_common::{Server, outcome, serve};

const JSON_PATCH: &str = "application/json-patch+json";

async fn patch(s: &Server, path: &str, ops: &Value, headers: &[(&str, &str)]) -> Response {
    let mut request =
        s.http.request(Method::PATCH, s.url(path)).header("content-type", JSON_PATCH).body(ops.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_patch_applies_to_the_current_version_and_honours_if_match() {
    let s = serve().await;
    let ops = json!([{"op": "replace", "path": "/gender", "value": "female"}, {"op": "add", "path": "/active", "value": true}]);
    let ok = patch(&s, "Patient/pat-1", &ops, &[("if-match", "W/\"1\"")]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "W/\"2\"");
    let body: Value = ok.json().await.unwrap();
    assert_eq!((body["gender"].as_str(), body["active"].as_bool()), (Some("female"), Some(true)));
    assert_eq!(body["meta"]["versionId"], "2");
    assert_eq!(body["extension"][0]["valueString"], "seeded", "untouched fields stay");

    let (status, code, _) = outcome(patch(&s, "Patient/pat-1", &ops, &[("if-match", "W/\"1\"")]).await).await;
    assert_eq!((status, code.as_str()), (412, "conflict"));
    s.store.set_require_if_match(true);
    assert_eq!(outcome(patch(&s, "Patient/pat-1", &ops, &[]).await).await.0, 428);
    s.store.set_require_if_match(false);
    assert_eq!(patch(&s, "Patient/pat-1", &ops, &[("prefer", "return=minimal")]).await.status(), 200);
}

#[tokio::test]
async fn patches_that_cannot_apply_or_are_not_json_patch_are_refused() {
    let s = serve().await;
    let failing_test = json!([{"op": "test", "path": "/gender", "value": "male"}]);
    let (status, _, diagnostics) = outcome(patch(&s, "Patient/pat-1", &failing_test, &[]).await).await;
    assert_eq!(status, 422, "{diagnostics}");
    let missing_path = json!([{"op": "remove", "path": "/nothing/here"}]);
    assert_eq!(outcome(patch(&s, "Patient/pat-1", &missing_path, &[]).await).await.0, 422);
    for forbidden in [
        json!([{"op": "replace", "path": "/id", "value": "pat-2"}]),
        json!([{"op": "replace", "path": "/resourceType", "value": "Group"}]),
    ] {
        let (status, code, _) = outcome(patch(&s, "Patient/pat-1", &forbidden, &[]).await).await;
        assert_eq!((status, code.as_str()), (422, "business-rule"));
    }
    let malformed = json!({"op": "replace"});
    assert_eq!(outcome(patch(&s, "Patient/pat-1", &malformed, &[]).await).await.0, 400);
    let fhirpath = s
        .http
        .patch(s.url("Patient/pat-1"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Parameters"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(fhirpath).await.0, 415);
    let ok = json!([{"op": "add", "path": "/active", "value": true}]);
    assert_eq!(outcome(patch(&s, "Patient/nobody", &ok, &[]).await).await.0, 404);
    assert_eq!(s.send(Method::DELETE, "Patient/pat-2", None, &[]).await.status(), 204);
    assert_eq!(outcome(patch(&s, "Patient/pat-2", &ok, &[]).await).await.0, 410);
    assert_eq!(s.store.versions("Patient", "pat-1").len(), 1, "nothing refused was written");
}

#[tokio::test]
async fn conditional_patch_needs_exactly_one_match() {
    let s = serve().await;
    let ops = json!([{"op": "add", "path": "/active", "value": false}]);
    assert_eq!(patch(&s, "Patient?identifier=12345", &ops, &[]).await.status(), 200);
    assert_eq!(s.store.get("pat-1").unwrap()["active"], false);
    assert_eq!(outcome(patch(&s, "Patient?family=Chalmers", &ops, &[]).await).await.0, 412);
    assert_eq!(outcome(patch(&s, "Patient?identifier=none", &ops, &[]).await).await.0, 404);
}
