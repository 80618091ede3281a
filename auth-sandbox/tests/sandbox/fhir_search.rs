//! Search (search.html): the generic parameters, references, tokens, dates,
//! unknown parameters (lenient and strict), includes, POST _search, _summary=count.

use reqwest::Method;
use serde_json::{Value, json};

use crate::fhir_common::{Server, entries, outcome, serve};

async fn clinical(s: &Server) -> (String, String) {
    let obs = |patient: &str, code: &str, status: &str| {
        json!({
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": "2024-05-01T10:00:00Z"
        })
    };
    let a = s.create(&obs("pat-1", "8867-4", "final")).await;
    let b = s.create(&obs("pat-1", "8310-5", "preliminary")).await;
    s.create(&obs("pat-2", "8867-4", "final")).await;
    s.create(&json!({"resourceType": "Condition", "subject": {"reference": "Patient/pat-1"},
                     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}))
        .await;
    (a, b)
}

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    entries(bundle).into_iter().filter(|(m, _)| m == mode).map(|(_, r)| r).collect()
}

#[tokio::test]
async fn patient_parameters_keep_working_with_paging() {
    let s = serve().await;
    let mut url = "Patient?name=chal&_count=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let bundle = s.get_json(&url).await;
        assert_eq!(bundle["total"], 4);
        seen.extend(ids(&bundle, "match"));
        match bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().strip_prefix(&s.base).unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(s.get_json("Patient?family=Chalmers&given=jim").await["total"], 1);
    assert_eq!(s.get_json("Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|12345").await["total"], 1);
    assert_eq!(s.get_json("Patient?identifier=other-system|12345").await["total"], 0);
    assert_eq!(s.get_json("Patient?name:exact=Chalmers").await["total"], 3);
    assert_eq!(s.get_json("Patient?name:contains=alme").await["total"], 3);
    // Values after a comma are alternatives; two parameters are both required.
    assert_eq!(s.get_json("Patient?_id=pat-1,pat-3").await["total"], 2);
    assert_eq!(s.get_json("Patient?_id=pat-1,pat-3&family=Windsor").await["total"], 1);
    assert_eq!(outcome(s.get("Patient?_count=abc").await).await.0, 400);
    assert_eq!(outcome(s.get("Patient?_page=0").await).await.0, 400);
}

#[tokio::test]
async fn references_tokens_and_last_updated_select_clinical_resources() {
    let s = serve().await;
    let (a, b) = clinical(&s).await;
    assert_eq!(s.get_json("Observation?subject=Patient/pat-1").await["total"], 2);
    assert_eq!(s.get_json("Observation?patient=pat-1").await["total"], 2);
    assert_eq!(s.get_json(&format!("Observation?subject={}/Patient/pat-1", s.base)).await["total"], 2);
    assert_eq!(s.get_json("Observation?subject:Patient=pat-1").await["total"], 2);
    assert_eq!(
        s.get_json("Observation?subject=Patient/pat-1&code=http://loinc.org|8867-4").await["total"],
        1
    );
    assert_eq!(s.get_json("Observation?code=8867-4").await["total"], 2);
    let fin = s.get_json("Observation?patient=pat-1&status=final").await;
    assert_eq!(ids(&fin, "match"), vec![format!("Observation/{a}")]);
    assert_eq!(s.get_json("Observation?status:not=final").await["total"], 1);
    assert_eq!(s.get_json("Condition?patient=pat-1&code=38341003").await["total"], 1);
    assert_eq!(s.get_json("Observation?date=2024-05-01").await["total"], 3);
    assert_eq!(s.get_json("Observation?date=gt2024-05-01").await["total"], 0);

    // _lastUpdated with prefixes, on the server's own timestamps.
    let second = s.get_json(&format!("Observation/{b}")).await;
    let at = second["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let q = |prefix: &str| format!("Observation?_lastUpdated={prefix}{}", at.replace('+', "%2B"));
    assert_eq!(s.get_json(&q("gt")).await["total"], 1, "the third one");
    assert_eq!(s.get_json(&q("ge")).await["total"], 2);
    assert_eq!(s.get_json(&q("lt")).await["total"], 1, "the first one");
    assert_eq!(s.get_json(&q("le")).await["total"], 2);
    assert_eq!(s.get_json(&q("")).await["total"], 1);
    assert_eq!(s.get_json("Observation?_lastUpdated=gt2000-01-01").await["total"], 3);
    assert_eq!(s.get_json("Observation?_lastUpdated=lt2000").await["total"], 0);
    let (status, _, diagnostics) = outcome(s.get("Observation?_lastUpdated=gtyesterday").await).await;
    assert_eq!(status, 400, "{diagnostics}");
    let (status, code, _) = outcome(s.get("Observation?code:below=x").await).await;
    assert_eq!((status, code.as_str()), (400, "not-supported"), "an unsupported modifier is refused");
}

#[tokio::test]
async fn unknown_parameters_are_ignored_with_a_warning_or_refused_when_strict() {
    let s = serve().await;
    let bundle = s.get_json("Patient?family=Chalmers&shoe-size=9").await;
    assert_eq!(bundle["total"], 3, "ignored, not a filter");
    let outcomes: Vec<&Value> =
        bundle["entry"].as_array().unwrap().iter().filter(|e| e["search"]["mode"] == "outcome").collect();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["resource"]["issue"][0]["severity"], "warning");
    assert!(outcomes[0]["resource"]["issue"][0]["diagnostics"].as_str().unwrap().contains("shoe-size"));
    let this = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "self").unwrap();
    assert!(!this["url"].as_str().unwrap().contains("shoe-size"), "self names what was used");
    let strict = s
        .send(Method::GET, "Patient?family=Chalmers&shoe-size=9", None, &[("prefer", "handling=strict")])
        .await;
    let (status, code, diagnostics) = outcome(strict).await;
    assert_eq!((status, code.as_str()), (400, "not-supported"));
    assert!(diagnostics.contains("shoe-size"));
    let clean = s.send(Method::GET, "Patient?family=Chalmers", None, &[("prefer", "handling=strict")]).await;
    assert_eq!(clean.status(), 200);
}

#[tokio::test]
async fn include_and_revinclude_add_entries_in_include_mode() {
    let s = serve().await;
    let (a, b) = clinical(&s).await;
    let bundle = s.get_json("Observation?patient=pat-1&_include=Observation:subject").await;
    assert_eq!(bundle["total"], 2, "total counts matches only");
    let mut matched = ids(&bundle, "match");
    matched.sort();
    let mut expected = vec![format!("Observation/{a}"), format!("Observation/{b}")];
    expected.sort();
    assert_eq!(matched, expected);
    assert_eq!(ids(&bundle, "include"), vec!["Patient/pat-1".to_owned()], "once, though two refer to it");

    let bundle = s.get_json("Patient?_id=pat-1&_revinclude=Observation:subject").await;
    assert_eq!(ids(&bundle, "match"), vec!["Patient/pat-1".to_owned()]);
    assert_eq!(ids(&bundle, "include").len(), 2);
    let bundle =
        s.get_json("Patient?_id=pat-1&_revinclude=Observation:subject&_revinclude=Condition:subject").await;
    assert_eq!(ids(&bundle, "include").len(), 3);
    assert_eq!(outcome(s.get("Observation?_include=Observation:nonsense").await).await.0, 400);
}

#[tokio::test]
async fn post_search_answers_as_get_and_summary_count_has_no_entries() {
    let s = serve().await;
    let get = s.get_json("Patient?family=Chalmers&_count=2").await;
    let post = s
        .http
        .post(s.url("Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=Chalmers&_count=2")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    let post: Value = post.json().await.unwrap();
    assert_eq!(get["total"], post["total"]);
    assert_eq!(entries(&get), entries(&post));
    assert_eq!(get["link"], post["link"]);
    let wrong = s.post("Patient/_search", &json!({"family": "Chalmers"})).await;
    assert_eq!(outcome(wrong).await.0, 415);

    let count = s.get_json("Patient?family=Chalmers&_summary=count").await;
    assert_eq!(count["total"], 3);
    assert!(count.get("entry").is_none());
    assert_eq!(s.get_json("Patient?_count=0").await["total"], 6);
    assert!(s.get_json("Patient?_count=0").await.get("entry").is_none());
}

#[tokio::test]
async fn sort_and_elements() {
    let s = serve().await;
    let sorted = s.get_json("Patient?_sort=-_id&_count=3").await;
    assert_eq!(
        ids(&sorted, "match"),
        vec!["Patient/pat-6".to_owned(), "Patient/pat-5".to_owned(), "Patient/pat-4".to_owned()]
    );
    let by_name = s.get_json("Patient?_sort=given&family=Chalmers").await;
    let given: Vec<&str> = by_name["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["name"][0]["given"][0].as_str().unwrap())
        .collect();
    assert_eq!(given, vec!["Alice", "Jim", "Peter"]);
    let subset = s.get_json("Patient?_id=pat-1&_elements=gender").await;
    let r = &subset["entry"][0]["resource"];
    assert_eq!(r["gender"], "unknown");
    assert!(r.get("name").is_none());
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
}
