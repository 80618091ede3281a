//! The FHIR server behind each emulator: its bearer checks guard every new route,
//! its CapabilityStatement names the emulator's token URL, and the vendors' quirks
//! stay (MSK read-only with its own page parameter, SanteDB's XML by default,
//! Graphnet's per-API grants, SMART's discovery).

use std::time::Duration;

use auth_sandbox::{Sandbox, SandboxConfig};
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-test-token";

fn transaction() -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]})
}

/// Every emulator, its FHIR base, store and what its gateway wants besides a bearer.
fn emulators(
    sandbox: &Sandbox,
) -> Vec<(&'static str, String, &std::sync::Arc<auth_sandbox::fhir::FhirStore>, String)> {
    vec![
        (
            "santedb",
            sandbox.santedb().fhir_base(),
            sandbox.santedb().fhir_store(),
            sandbox.santedb().token_url(),
        ),
        ("aidbox", sandbox.aidbox().fhir_base(), sandbox.aidbox().fhir_store(), sandbox.aidbox().token_url()),
        ("msk", sandbox.msk().fhir_base(), sandbox.msk().fhir_store(), sandbox.msk().token_url()),
        (
            "graphnet",
            sandbox.graphnet().fhir_base(),
            sandbox.graphnet().fhir_store(),
            sandbox.graphnet().token_url(),
        ),
        ("smart", sandbox.smart().fhir_base(), sandbox.smart().fhir_store(), sandbox.smart().token_url()),
    ]
}

/// A request as the emulator's gateway wants it, with a token issued in its registry.
fn authorised(sandbox: &Sandbox, http: &Client, name: &str, method: Method, url: &str) -> RequestBuilder {
    let lifetime = Duration::from_secs(300);
    let request = http.request(method, url).bearer_auth(TOKEN);
    match name {
        "santedb" => {
            sandbox.santedb().registry().issue(TOKEN, sandbox.santedb().client_id(), lifetime, None);
            request.header("accept", "application/fhir+json")
        }
        "aidbox" => {
            sandbox.aidbox().registry().issue(TOKEN, sandbox.aidbox().client_id(), lifetime, None);
            request
        }
        "msk" => {
            let m = sandbox.msk();
            m.registry().issue(TOKEN, m.client_id(), lifetime, None);
            request
                .header("x-partnerid", m.partner_id())
                .query(&[("_format", "json"), ("researchstudy", m.research_study())])
        }
        "graphnet" => {
            let g = sandbox.graphnet();
            g.registry().issue(TOKEN, g.client_id(), lifetime, None);
            request.header("Ocp-Apim-Subscription-Key", g.subscription_key().expose_secret())
        }
        _ => {
            sandbox.smart().registry().issue(TOKEN, sandbox.smart().client_id(), lifetime, None);
            request
        }
    }
}

#[tokio::test]
async fn every_new_route_is_behind_each_emulator_s_bearer_check() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = Client::new();
    let patch = json!([{"op": "add", "path": "/active", "value": true}]).to_string();
    for (name, base, store, _) in emulators(&sandbox) {
        let requests = [
            http.get(format!("{base}/_history")),
            http.get(format!("{base}/Patient/pat-1/_history")),
            http.get(format!("{base}/$ping")),
            http.get(format!("{base}/Patient/pat-1/$everything")),
            http.get(format!("{base}/Observation?subject=Patient/pat-1")),
            http.post(base.clone())
                .header("content-type", "application/fhir+json")
                .body(transaction().to_string()),
            http.post(format!("{base}/Observation"))
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType": "Observation"}).to_string()),
            http.patch(format!("{base}/Patient/pat-1"))
                .header("content-type", "application/json-patch+json")
                .body(patch.clone()),
            http.delete(format!("{base}/Patient?identifier=12345")),
        ];
        for request in requests {
            let response = request.bearer_auth("never-issued").send().await.unwrap();
            assert!(matches!(response.status().as_u16(), 401 | 403), "{name}: {}", response.status());
        }
        assert_eq!((store.state_changes(), store.writes().len()), (0, 0), "{name}: nothing got through");
    }
}

#[tokio::test]
async fn each_capability_statement_names_its_emulator_s_token_url() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = Client::new();
    for (name, base, _, token_url) in emulators(&sandbox) {
        let response =
            authorised(&sandbox, &http, name, Method::GET, &format!("{base}/metadata")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let cs: Value = response.json().await.unwrap();
        assert_eq!(cs["fhirVersion"], "4.0.1", "{name}");
        let oauth = &cs["rest"][0]["security"]["extension"][0];
        assert_eq!(oauth["extension"][0]["valueUri"], token_url.as_str(), "{name}");
    }
    // SMART's discovery document is still served beside it.
    let smart = sandbox.smart();
    let discovery: Value = http
        .get(format!("{}/.well-known/smart-configuration", smart.fhir_base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["token_endpoint"], smart.token_url().as_str());
}

#[tokio::test]
async fn the_new_interactions_work_behind_each_writable_emulator() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = Client::new();
    for (name, base, store, _) in emulators(&sandbox).into_iter().filter(|(n, ..)| *n != "msk") {
        let response = authorised(&sandbox, &http, name, Method::POST, &base)
            .header("content-type", "application/fhir+json")
            .body(transaction().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["entry"][0]["response"]["status"], "201 Created", "{name}");
        let patched = authorised(&sandbox, &http, name, Method::PATCH, &format!("{base}/Patient/pat-1"))
            .header("content-type", "application/json-patch+json")
            .body(json!([{"op": "add", "path": "/active", "value": true}]).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200, "{name}");
        assert_eq!(store.state_changes(), 2, "{name}");
        let history =
            authorised(&sandbox, &http, name, Method::GET, &format!("{base}/Patient/pat-1/_history"))
                .send()
                .await
                .unwrap();
        assert_eq!(history.status(), 200, "{name}");
    }
}

#[tokio::test]
async fn msk_refuses_every_write_and_pages_with_its_own_parameter() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = Client::new();
    let base = sandbox.msk().fhir_base();
    let writes = [
        (Method::POST, base.clone(), transaction().to_string(), "application/fhir+json"),
        (Method::PATCH, format!("{base}/Patient/10081001"), "[]".to_owned(), "application/json-patch+json"),
        (
            Method::PUT,
            format!("{base}/Patient/10081001"),
            json!({"resourceType": "Patient", "id": "10081001"}).to_string(),
            "application/fhir+json",
        ),
        (Method::DELETE, format!("{base}/Patient/10081001"), String::new(), "application/fhir+json"),
        (
            Method::POST,
            format!("{base}/Patient"),
            json!({"resourceType": "Patient"}).to_string(),
            "application/fhir+json",
        ),
    ];
    for (method, url, body, content_type) in writes {
        let response = authorised(&sandbox, &http, "msk", method.clone(), &url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {url}");
    }
    assert_eq!(sandbox.msk().fhir_store().state_changes(), 0);
    let page: Value = authorised(&sandbox, &http, "msk", Method::GET, &format!("{base}/Patient"))
        .query(&[("_count", "2")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap();
    assert!(
        next.contains("page=2") && next.contains("researchstudy=") && next.contains("x-partnerid="),
        "{next}"
    );
    assert!(
        page["entry"].as_array().unwrap().iter().all(|e| e["search"]["mode"] == "match"),
        "the gateway's own parameters are no unknown parameters: {page}"
    );
}

#[tokio::test]
async fn santedb_answers_the_new_routes_in_xml_unless_json_is_asked_for() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = Client::new();
    let s = sandbox.santedb();
    s.registry().issue(TOKEN, s.client_id(), Duration::from_secs(300), None);
    let xml = http
        .get(format!("{}/Patient/pat-1/_history", s.fhir_base()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(xml.headers()["content-type"], "application/fhir+xml");
    assert!(xml.text().await.unwrap().contains("<Bundle xmlns=\"http://hl7.org/fhir\">"));
    let json = http
        .get(format!("{}/$ping", s.fhir_base()))
        .bearer_auth(TOKEN)
        .query(&[("_format", "json")])
        .send()
        .await
        .unwrap();
    assert_eq!(json.headers()["content-type"], "application/fhir+json");
}

#[tokio::test]
async fn graphnet_grants_a_batch_only_the_apis_its_token_names() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = Client::new();
    let base = sandbox.graphnet().fhir_base();
    let bundle = |t: &str| {
        json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": {"resourceType": t}, "request": {"method": "POST", "url": t}}
        ]})
    };
    let refused = authorised(&sandbox, &http, "graphnet", Method::POST, &base)
        .header("content-type", "application/fhir+json")
        .body(bundle("Condition").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "Condition is not among the seeded client's APIs");
    let allowed = authorised(&sandbox, &http, "graphnet", Method::POST, &base)
        .header("content-type", "application/fhir+json")
        .body(bundle("Encounter").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let system_history = authorised(&sandbox, &http, "graphnet", Method::GET, &format!("{base}/_history"))
        .send()
        .await
        .unwrap();
    assert_eq!(system_history.status(), 403, "history across every API");
    assert_eq!(sandbox.graphnet().fhir_store().state_changes(), 1);
}
