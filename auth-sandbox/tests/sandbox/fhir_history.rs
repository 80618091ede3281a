//! History at instance, type and system level (http.html#history).

use reqwest::Method;
use serde_json::{Value, json};

use crate::fhir_common::{outcome, serve};

fn methods(bundle: &Value) -> Vec<(String, String, Option<String>)> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["request"]["method"].as_str().unwrap().to_owned(),
                e["response"]["etag"].as_str().unwrap().to_owned(),
                e["resource"]["meta"]["versionId"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn instance_history_is_newest_first_with_deletions_as_entries_without_a_resource() {
    let s = serve().await;
    let mut p = s.get_json("Patient/pat-1").await;
    p["gender"] = json!("other");
    assert_eq!(s.send(Method::PUT, "Patient/pat-1", Some(&p), &[]).await.status(), 200);
    assert_eq!(s.send(Method::DELETE, "Patient/pat-1", None, &[]).await.status(), 204);
    let bundle = s.get_json("Patient/pat-1/_history").await;
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["total"], 3);
    assert_eq!(
        methods(&bundle),
        vec![
            ("DELETE".to_owned(), "W/\"3\"".to_owned(), None),
            ("PUT".to_owned(), "W/\"2\"".to_owned(), Some("2".to_owned())),
            ("POST".to_owned(), "W/\"1\"".to_owned(), Some("1".to_owned())),
        ]
    );
    let first = &bundle["entry"][0];
    assert!(first.get("resource").is_none());
    assert_eq!(first["request"]["url"], "Patient/pat-1");
    assert_eq!(first["response"]["status"], "204 No Content");
    assert_eq!(bundle["entry"][2]["request"]["url"], "Patient");
    assert!(first["response"]["lastModified"].as_str().unwrap().ends_with('Z'));
    assert_eq!(outcome(s.get("Patient/nobody/_history").await).await.0, 404);
}

#[tokio::test]
async fn type_and_system_history_page_and_cut_with_since() {
    let s = serve().await;
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let id = s.create(&obs).await;
    let created = s.get_json(&format!("Observation/{id}")).await;
    let cut = created["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let mut p = s.get_json("Patient/pat-2").await;
    p["gender"] = json!("male");
    s.send(Method::PUT, "Patient/pat-2", Some(&p), &[]).await;

    let patients = s.get_json("Patient/_history").await;
    assert_eq!(patients["total"], 7, "six seeded, one update");
    assert_eq!(patients["entry"][0]["resource"]["id"], "pat-2", "newest first");
    let system = s.get_json("_history?_count=3").await;
    assert_eq!(system["total"], 8);
    assert_eq!(system["entry"].as_array().unwrap().len(), 3);
    assert_eq!(system["entry"][1]["resource"]["resourceType"], "Observation");
    let next = system["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page2 = s.get_json(next.strip_prefix(&s.base).unwrap()).await;
    assert_eq!(page2["entry"].as_array().unwrap().len(), 3);
    assert_ne!(page2["entry"][0], system["entry"][0]);

    let since = s.get_json(&format!("_history?_since={cut}")).await;
    assert_eq!(since["total"], 2, "the observation and the update");
    assert_eq!(outcome(s.get("_history?_since=someday").await).await.0, 400);
    let strict = s.send(Method::GET, "_history?_at=2024", None, &[("prefer", "handling=strict")]).await;
    assert_eq!(outcome(strict).await.0, 400);
}
