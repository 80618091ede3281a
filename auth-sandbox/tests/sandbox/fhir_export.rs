//! Bulk Data export (IG v2.0.0) behind the SMART emulator's bearer check, over real
//! HTTP: strict kick-off, GET and POST parameters, levels, the status sequence and
//! its faults, files (exact bytes, ranges, cut downloads, synthetic ones), the
//! second origin, cancel, and the counters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auth_sandbox::fhir::{ExportJobState, ExportLevel, FhirStore};
use auth_sandbox::{Sandbox, SandboxConfig};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::fhir_common::outcome;

const TOKEN: &str = "bulk-export-token";

/// An Observation whose decimal must keep its text, parsed from text (a `json!`
/// literal would go through an f64 and lose the trailing zero).
const WEIGHT: &str = r#"{"resourceType": "Observation", "id": "weight", "status": "final",
    "code": {"text": "weight"}, "subject": {"reference": "Patient/pat-1"},
    "valueQuantity": {"value": 72.50, "unit": "kg"}}"#;

struct Bulk {
    _sandbox: Sandbox,
    base: String,
    store: Arc<FhirStore>,
    http: Client,
}

/// The sandbox, a bearer the SMART emulator accepts, and a little clinical data on
/// top of its six sample patients (`pat-1` … `pat-6`).
async fn bulk() -> Bulk {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let smart = sandbox.smart();
    smart.registry().issue(TOKEN, smart.client_id(), Duration::from_secs(300), None);
    let store = smart.fhir_store().clone();
    store.seed([
        serde_json::from_str::<Value>(WEIGHT).unwrap(),
        json!({"resourceType": "Observation", "id": "bp-2", "status": "preliminary", "code": {"text": "bp"},
               "subject": {"reference": "Patient/pat-2"}}),
        json!({"resourceType": "Observation", "id": "bp-3", "status": "final", "code": {"text": "bp"},
               "subject": {"reference": "Patient/pat-3"}}),
        json!({"resourceType": "Condition", "id": "cond-3", "code": {"text": "flu"},
               "subject": {"reference": "Patient/pat-3"}}),
        json!({"resourceType": "AllergyIntolerance", "id": "allergy-1", "patient": {"reference": "Patient/pat-1"}}),
        json!({"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Who"}]}),
        json!({"resourceType": "Group", "id": "cohort", "type": "person", "actual": true,
               "member": [{"entity": {"reference": "Patient/pat-1"}}, {"entity": {"reference": "Patient/pat-3"}}]}),
    ]);
    let base = smart.fhir_base();
    Bulk { _sandbox: sandbox, base, store, http: Client::new() }
}

impl Bulk {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// A request with the bearer.
    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(TOKEN)
    }

    /// A GET kick-off with the headers the IG asks for.
    async fn kickoff(&self, path_and_query: &str) -> Response {
        self.request(Method::GET, &self.url(path_and_query))
            .header("accept", "application/fhir+json")
            .header("prefer", "respond-async")
            .send()
            .await
            .unwrap()
    }

    /// A POST kick-off with a Parameters body.
    async fn kickoff_post(&self, path: &str, parameters: Value) -> Response {
        self.request(Method::POST, &self.url(path))
            .header("accept", "application/fhir+json")
            .header("prefer", "respond-async")
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Parameters", "parameter": parameters}).to_string())
            .send()
            .await
            .unwrap()
    }

    /// A kick-off that must be accepted: its status URL.
    async fn started(&self, path_and_query: &str) -> String {
        accepted(self.kickoff(path_and_query).await).await
    }

    async fn get(&self, url: &str) -> Response {
        self.request(Method::GET, url).send().await.unwrap()
    }

    /// Polls, as told by `Retry-After`, until the manifest.
    async fn manifest(&self, status_url: &str) -> Value {
        for _ in 0..20 {
            let response = self.get(status_url).await;
            match response.status().as_u16() {
                202 => {
                    let wait: u64 = header(&response, "retry-after").parse().unwrap();
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                200 => return response.json().await.unwrap(),
                other => panic!("status {other}: {}", response.text().await.unwrap()),
            }
        }
        panic!("no manifest after 20 polls");
    }

    /// Every output file's text, in manifest order, with its type.
    async fn files(&self, manifest: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for file in manifest["output"].as_array().unwrap() {
            let response = self.get(file["url"].as_str().unwrap()).await;
            assert_eq!(response.status(), 200);
            out.push((file["type"].as_str().unwrap().to_owned(), response.text().await.unwrap()));
        }
        out
    }

    /// `Type/id` of every resource of an export.
    async fn exported(&self, path_and_query: &str) -> BTreeSet<String> {
        let status = self.started(path_and_query).await;
        let manifest = self.manifest(&status).await;
        let mut out = BTreeSet::new();
        for (t, text) in self.files(&manifest).await {
            for line in text.lines() {
                let r: Value = serde_json::from_str(line).unwrap();
                assert_eq!(r["resourceType"], t.as_str(), "a file holds one type");
                out.insert(format!("{t}/{}", r["id"].as_str().unwrap()));
            }
        }
        out
    }
}

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// A 202 kick-off: its `Content-Location`, checked to be absolute.
async fn accepted(response: Response) -> String {
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let location = header(&response, "content-location");
    assert!(location.starts_with("http://127.0.0.1:") && location.contains("/$export-status/"), "{location}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "information");
    location
}

fn job_id(status_url: &str) -> String {
    status_url.rsplit('/').next().unwrap().to_owned()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn the_kick_off_is_strict_about_its_headers_and_parameters() {
    let b = bulk().await;
    let url = b.url("$export");
    let send = |accept: Option<&str>, prefer: Option<&str>, query: &str| {
        let mut request = b.request(Method::GET, &format!("{url}{query}"));
        if let Some(a) = accept {
            request = request.header("accept", a);
        }
        if let Some(p) = prefer {
            request = request.header("prefer", p);
        }
        request.send()
    };
    for accept in [None, Some("application/json"), Some("application/fhir+json, application/json")] {
        let (status, code, diagnostics) =
            outcome(send(accept, Some("respond-async"), "").await.unwrap()).await;
        assert_eq!((status, code.as_str()), (400, "invalid"), "{accept:?}");
        assert_eq!(diagnostics, "The Accept header must be application/fhir+json");
    }
    for prefer in [None, Some("return=minimal"), Some("handling=lenient")] {
        let (status, _, diagnostics) =
            outcome(send(Some("application/fhir+json"), prefer, "").await.unwrap()).await;
        assert_eq!(status, 400, "{prefer:?}");
        assert_eq!(diagnostics, "The Prefer header must be respond-async");
    }
    let ok = Some("application/fhir+json");
    for bad in [
        "?_type=Patient,Nonsense",
        "?_since=2024-01-01",
        "?_since=2024-01-01T00:00:00+01:00", // an unescaped + arrives as a space
        "?_since=2024-01-01T00:00:00Z&_since=2024-01-02T00:00:00Z",
        "?_outputFormat=application/fhir+json",
        "?_typeFilter=Observation%3Fshoe-size%3D9",
        "?_typeFilter=status%3Dfinal",
    ] {
        let response = send(ok, Some("respond-async"), bad).await.unwrap();
        assert_eq!(outcome(response).await.0, 400, "{bad}");
    }
    let (status, code, diagnostics) =
        outcome(send(ok, Some("respond-async"), "?_elements=id").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "not-supported"));
    assert!(diagnostics.contains("_elements"), "{diagnostics}");
    let put = b
        .request(Method::PUT, &url)
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async");
    assert_eq!(outcome(put.send().await.unwrap()).await.0, 405);
    assert_eq!(b.store.export_stats().kickoffs_refused, 15);
    assert!(b.store.export_jobs().is_empty(), "nothing refused became a job");

    // Lenient handling ignores what it does not know, and says which.
    let lenient = send(
        ok,
        Some("respond-async, handling=lenient"),
        "?_elements=id&patient=Patient/pat-1&_type=Patient",
    )
    .await
    .unwrap();
    let job = b.store.export_job(&job_id(&accepted(lenient).await)).unwrap();
    assert!(job.request.lenient);
    assert_eq!(job.request.ignored, vec!["_elements".to_owned(), "patient".to_owned()]);
    assert_eq!(job.request.types, Some(vec!["Patient".to_owned()]));
    for format in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        let query = format!("?_outputFormat={}", format.replace('+', "%2B"));
        accepted(send(ok, Some("respond-async"), &query).await.unwrap()).await;
    }
    assert_eq!(b.store.export_stats().kickoffs_accepted, 4);

    // Kick-off, status and files sit behind the emulator's bearer check.
    let status_url = b.store.export_jobs()[0].status_url.clone();
    for target in [url.clone(), status_url.clone(), b.url("$export-file/x/1")] {
        let response =
            b.http.get(&target).header("accept", "application/fhir+json").header("prefer", "respond-async");
        assert_eq!(response.send().await.unwrap().status(), 401, "{target}");
    }
}

#[tokio::test]
async fn get_and_post_kick_offs_are_read_alike_and_the_manifest_names_the_request() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    let query = "?_type=Patient,Observation&_type=Condition&_since=2020-01-01T00:00:00.000%2B02:00\
                 &_typeFilter=Observation%3Fstatus%3Dfinal,Condition%3F_id%3Dcond-3&_typeFilter=Patient%3Fgender%3Dunknown\
                 &_outputFormat=application/fhir%2Bndjson";
    let got = b.started(&format!("$export{query}")).await;
    let posted = accepted(
        b.kickoff_post(
            "$export",
            json!([
                {"name": "_type", "valueString": "Patient,Observation"},
                {"name": "_type", "valueString": "Condition"},
                {"name": "_since", "valueInstant": "2020-01-01T00:00:00.000+02:00"},
                {"name": "_typeFilter", "valueString": "Observation?status=final,Condition?_id=cond-3"},
                {"name": "_typeFilter", "valueString": "Patient?gender=unknown"},
                {"name": "_outputFormat", "valueString": "application/fhir+ndjson"}
            ]),
        )
        .await,
    )
    .await;
    let (got, posted) =
        (b.store.export_job(&job_id(&got)).unwrap(), b.store.export_job(&job_id(&posted)).unwrap());
    assert_eq!((got.request.method.as_str(), posted.request.method.as_str()), ("GET", "POST"));
    for job in [&got, &posted] {
        let r = &job.request;
        assert_eq!(r.level, ExportLevel::System);
        assert_eq!(
            r.types,
            Some(vec!["Patient".to_owned(), "Observation".to_owned(), "Condition".to_owned()])
        );
        assert_eq!(r.since.as_deref(), Some("2020-01-01T00:00:00.000+02:00"));
        assert_eq!(
            r.type_filters,
            vec!["Observation?status=final", "Condition?_id=cond-3", "Patient?gender=unknown"]
        );
        assert_eq!(r.output_format.as_deref(), Some("application/fhir+ndjson"));
        assert!(!r.lenient && r.ignored.is_empty());
    }
    // The manifest's `request` is the kick-off URL: with its query for a GET.
    let m = b.manifest(&got.status_url).await;
    assert_eq!(m["request"], format!("{}/$export{query}", b.base));
    let m = b.manifest(&posted.status_url).await;
    assert_eq!(m["request"], format!("{}/$export", b.base));
    let types: BTreeSet<&str> =
        m["output"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from(["Condition", "Observation", "Patient"]));

    // POST is strict about its body and keeps parameters out of the query.
    let wrong_type =
        b.kickoff_post("$export", json!([{"name": "_since", "valueString": "2020-01-01T00:00:00Z"}])).await;
    assert_eq!(outcome(wrong_type).await.0, 400);
    let not_fhir = b
        .request(Method::POST, &b.url("$export"))
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .header("content-type", "text/plain")
        .body("_type=Patient")
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(not_fhir).await.0, 415);
    let in_query = b.kickoff_post("$export?_type=Patient", json!([])).await;
    assert_eq!(outcome(in_query).await.0, 400);
    let unknown = b.kickoff_post(
        "Patient/$export",
        json!([{"name": "patient", "valueReference": {"reference": "Patient/pat-1"}}]),
    );
    assert_eq!(outcome(unknown.await).await.0, 400);
    let not_parameters = b
        .request(Method::POST, &b.url("$export"))
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(not_parameters).await.0, 400);
}

#[tokio::test]
async fn levels_select_the_system_every_patient_or_a_group_s_members() {
    let b = bulk().await;
    b.store.set_export_retry_after(0);
    let patients: Vec<String> = (1..=6).map(|n| format!("Patient/pat-{n}")).collect();
    let clinical = [
        "Observation/weight",
        "Observation/bp-2",
        "Observation/bp-3",
        "Condition/cond-3",
        "AllergyIntolerance/allergy-1",
    ];

    let system = b.exported("$export").await;
    let mut want: BTreeSet<String> = patients.iter().cloned().collect();
    want.extend(set(&clinical));
    want.extend(set(&["Practitioner/doc", "Group/cohort"]));
    assert_eq!(system, want);

    let everyone = b.exported("Patient/$export").await;
    let mut want: BTreeSet<String> = patients.iter().cloned().collect();
    want.extend(set(&clinical));
    assert_eq!(everyone, want, "no Practitioner, no Group: only what is about a patient");

    let cohort = b.exported("Group/cohort/$export").await;
    assert_eq!(
        cohort,
        set(&[
            "Patient/pat-1",
            "Patient/pat-3",
            "Observation/weight",
            "Observation/bp-3",
            "Condition/cond-3",
            "AllergyIntolerance/allergy-1"
        ])
    );
    assert_eq!(
        b.exported("Group/cohort/$export?_type=Observation").await,
        set(&["Observation/weight", "Observation/bp-3"])
    );
    let job = &b.store.export_jobs()[3];
    assert_eq!(job.request.level, ExportLevel::Group("cohort".to_owned()));

    let (status, code, _) = outcome(b.kickoff("Group/nobody/$export").await).await;
    assert_eq!((status, code.as_str()), (404, "not-found"));
    assert_eq!(
        outcome(b.kickoff("Observation/$export").await).await.0,
        404,
        "no type-level export but Patient's"
    );
}

#[tokio::test]
async fn since_and_type_filters_narrow_the_export() {
    let b = bulk().await;
    b.store.set_export_retry_after(0);
    let first = b.manifest(&b.started("$export?_type=Observation").await).await;
    let since = first["transactionTime"].as_str().unwrap().to_owned();
    assert!(since.ends_with('Z') && since.contains('T'), "{since}");
    // Nothing changed since: an empty export, `output` an empty array.
    let quiet = b.manifest(&b.started(&format!("$export?_since={since}")).await).await;
    assert_eq!(quiet["output"], json!([]));

    b.store.seed([
        json!({"resourceType": "Observation", "id": "late", "status": "final", "code": {"text": "x"},
                        "subject": {"reference": "Patient/pat-2"}}),
    ]);
    let later = b.exported(&format!("$export?_since={}", since.replace('+', "%2B"))).await;
    assert_eq!(later, set(&["Observation/late"]), "strictly after transactionTime");
    assert_eq!(
        b.exported("$export?_since=2000-01-01T00:00:00Z&_type=Condition").await,
        set(&["Condition/cond-3"])
    );

    // One filter per type: OR-ed within a type; types without one are whole.
    let filtered = b
        .exported("Patient/$export?_type=Observation,Condition&_typeFilter=Observation%3Fstatus%3Dpreliminary,Observation%3F_id%3Dweight")
        .await;
    assert_eq!(filtered, set(&["Observation/bp-2", "Observation/weight", "Condition/cond-3"]));
    let or_list =
        b.exported("$export?_typeFilter=Observation%3Fstatus%3Dpreliminary%2Cfinal&_type=Observation").await;
    assert_eq!(or_list.len(), 4, "a comma inside a query is an OR, not a new query: {or_list:?}");
}

#[tokio::test]
async fn status_is_202_with_progress_until_ready_then_the_manifest() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(3);
    b.store.set_export_retry_after(0);
    let status = b.started("$export?_type=Patient,Observation").await;
    for progress in ["25% complete", "50% complete", "75% complete"] {
        let response = b.get(&status).await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, "x-progress"), progress);
        assert_eq!(header(&response, "retry-after"), "0");
    }
    assert_eq!(b.store.export_jobs()[0].state, ExportJobState::Running);
    let response = b.get(&status).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    let expires = httpdate::parse_http_date(&header(&response, "expires")).unwrap();
    assert!(expires > SystemTime::now());
    let m: Value = response.json().await.unwrap();
    let keys: BTreeSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["transactionTime", "request", "requiresAccessToken", "output", "error"])
    );
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(m["error"], json!([]));
    let job = &b.store.export_jobs()[0];
    assert_eq!((job.state, job.polls), (ExportJobState::Complete, 4));
    assert_eq!(m["transactionTime"], job.transaction_time.as_str());
    // Six patients at two a file, then the three Observations.
    let outputs: Vec<(String, u64)> = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["type"].as_str().unwrap().to_owned(), f["count"].as_u64().unwrap()))
        .collect();
    let want: Vec<(String, u64)> =
        [("Observation", 2), ("Observation", 1), ("Patient", 2), ("Patient", 2), ("Patient", 2)]
            .iter()
            .map(|(t, n)| ((*t).to_owned(), *n))
            .collect();
    assert_eq!(outputs, want);
    for (n, file) in m["output"].as_array().unwrap().iter().enumerate() {
        assert_eq!(file["url"], format!("{}/$export-file/{}/{}", b.base, job.id, n + 1));
    }
    // The manifest again, as often as asked.
    assert_eq!(b.get(&status).await.json::<Value>().await.unwrap(), m);

    // Ready at once, and with an error file.
    b.store.set_export_ready_after_polls(0);
    b.store.set_export_error_file(true);
    let m = b.manifest(&b.started("$export?_type=Practitioner").await).await;
    assert_eq!(m["output"].as_array().unwrap().len(), 1);
    let error = &m["error"][0];
    assert_eq!((error["type"].as_str(), error["count"].as_u64()), (Some("OperationOutcome"), Some(2)));
    let text = b.get(error["url"].as_str().unwrap()).await.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["resourceType"] == "OperationOutcome"));
    assert_eq!(b.store.export_jobs()[1].polls, 1);
}

#[tokio::test]
async fn a_poll_before_retry_after_is_429_and_does_not_count() {
    let b = bulk().await;
    let status = b.started("$export?_type=Patient").await;
    let first = b.get(&status).await;
    assert_eq!((first.status().as_u16(), header(&first, "retry-after")), (202, "1".to_owned()));
    for _ in 0..2 {
        let early = b.get(&status).await;
        assert_eq!(header(&early, "retry-after"), "1");
        let (status, code, _) = outcome(early).await;
        assert_eq!((status, code.as_str()), (429, "throttled"));
    }
    assert_eq!(b.store.export_jobs()[0].polls, 1, "refused polls do not count");
    tokio::time::sleep(Duration::from_millis(950)).await;
    assert_eq!(b.get(&status).await.status(), 200, "within the 100 ms of slack");
    let stats = b.store.export_stats();
    assert_eq!((stats.status_polls, stats.polls_too_early), (4, 2));
    // A manifest asks for no wait: polling it again at once is fine.
    assert_eq!(b.get(&status).await.status(), 200);
}

#[tokio::test]
async fn transient_and_fatal_status_failures() {
    let b = bulk().await;
    b.store.set_export_retry_after(0);
    let status = b.started("$export").await;
    b.store.transient_status_failures(2);
    for _ in 0..2 {
        let response = b.get(&status).await;
        assert_eq!(header(&response, "content-type"), "application/fhir+json");
        let (code, kind, _) = outcome(response).await;
        assert_eq!((code, kind.as_str()), (500, "transient"));
    }
    assert_eq!(b.store.export_jobs()[0].polls, 0, "transient failures do not count");
    assert_eq!(b.get(&status).await.status(), 202);
    assert_eq!(b.get(&status).await.status(), 200);
    assert_eq!(b.store.export_stats().transient_failures, 2);

    b.store.fail_next_export();
    let doomed = b.started("$export").await;
    let fine = b.started("$export").await;
    assert_eq!(b.get(&doomed).await.status(), 202, "it runs first");
    for _ in 0..2 {
        let (status, code, _) = outcome(b.get(&doomed).await).await;
        assert_eq!((status, code.as_str()), (500, "exception"));
    }
    let job = b.store.export_job(&job_id(&doomed)).unwrap();
    assert_eq!(job.state, ExportJobState::Failed);
    assert_eq!(b.get(&b.url(&format!("$export-file/{}/1", job.id))).await.status(), 404);
    assert!(b.manifest(&fine).await["output"].as_array().unwrap().len() > 1, "only the next job fails");
    let (status, code, _) = outcome(b.get(&b.url("$export-status/0123abcd")).await).await;
    assert_eq!((status, code.as_str()), (404, "not-found"));
}

#[tokio::test]
async fn files_are_the_stored_json_one_resource_a_line_several_files_per_type() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    b.store.set_export_resources_per_file(4);
    let m = b.manifest(&b.started("Patient/$export?_type=Patient,Observation").await).await;
    let counts: Vec<u64> =
        m["output"].as_array().unwrap().iter().map(|f| f["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![3, 4, 2]);
    let mut lines = Vec::new();
    for (file, count) in m["output"].as_array().unwrap().iter().zip(&counts) {
        let response = b.get(file["url"].as_str().unwrap()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "application/fhir+ndjson");
        assert_eq!(header(&response, "accept-ranges"), "bytes");
        let length: usize = header(&response, "content-length").parse().unwrap();
        let text = response.text().await.unwrap();
        assert_eq!(text.len(), length);
        assert!(text.ends_with('\n') && !text.contains("\n\n"), "a \\n after every line, the last too");
        assert_eq!(text.lines().count() as u64, *count);
        lines.extend(text.lines().map(str::to_owned));
    }
    // Each line is the stored resource's JSON as it is: the decimal keeps its text.
    let weight = lines.iter().find(|l| l.contains("\"id\":\"weight\"")).unwrap();
    assert!(weight.contains("\"value\":72.50"), "{weight}");
    assert_eq!(*weight, b.store.read("Observation", "weight").unwrap().to_string());
    let pat4 = lines.iter().find(|l| l.contains("\"id\":\"pat-4\"")).unwrap();
    assert_eq!(*pat4, b.store.read("Patient", "pat-4").unwrap().to_string());
    assert_eq!(lines.len(), 9);
    // No such file, or not a number.
    let id = &b.store.export_jobs()[0].id;
    for n in ["4", "0", "x"] {
        assert_eq!(outcome(b.get(&b.url(&format!("$export-file/{id}/{n}"))).await).await.0, 404, "{n}");
    }
}

#[tokio::test]
async fn the_data_are_snapshotted_at_kick_off() {
    let b = bulk().await;
    b.store.set_export_retry_after(0);
    let status = b.started("$export?_type=Observation").await;
    b.store.seed([
        json!({"resourceType": "Observation", "id": "after", "status": "final", "code": {"text": "x"}}),
    ]);
    let delete = b.request(Method::DELETE, &b.url("Observation/bp-2")).send().await.unwrap();
    assert_eq!(delete.status(), 204);
    let m = b.manifest(&status).await;
    let ids: BTreeSet<String> = b
        .files(&m)
        .await
        .iter()
        .flat_map(|(_, text)| {
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, set(&["weight", "bp-2", "bp-3"]));
}

#[tokio::test]
async fn ranges_are_honoured_and_can_be_turned_off() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    b.store.set_export_resources_per_file(10);
    let m = b.manifest(&b.started("$export?_type=Patient").await).await;
    let url = m["output"][0]["url"].as_str().unwrap().to_owned();
    let full = b.get(&url).await.bytes().await.unwrap();
    let len = full.len();
    let ranged = |range: String| b.request(Method::GET, &url).header("range", range).send();

    let response = ranged("bytes=100-".into()).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "content-range"), format!("bytes 100-{}/{len}", len - 1));
    assert_eq!(header(&response, "content-length"), (len - 100).to_string());
    assert_eq!(response.bytes().await.unwrap(), full.slice(100..));
    let response = ranged("bytes=5-9".into()).await.unwrap();
    assert_eq!(header(&response, "content-range"), format!("bytes 5-9/{len}"));
    assert_eq!(response.bytes().await.unwrap(), full.slice(5..10));
    let response = ranged("bytes=-4".into()).await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), full.slice(len - 4..));
    let response = ranged(format!("bytes={len}-")).await.unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(header(&response, "content-range"), format!("bytes */{len}"));
    let response = ranged("bytes=0-1,5-6".into()).await.unwrap();
    assert_eq!(response.status(), 200, "several ranges: the whole file");
    assert_eq!(b.store.export_stats().range_requests, 3);

    b.store.set_export_ranges(false);
    let response = ranged("bytes=100-".into()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("accept-ranges").is_none());
    assert!(response.headers().get("content-range").is_none());
    assert_eq!(response.bytes().await.unwrap(), full);
    assert_eq!(b.store.export_stats().range_requests, 3);
}

/// Reads a body piece by piece: the bytes received, and whether it ended in an error.
async fn read_all(mut response: Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(piece)) => got.extend_from_slice(&piece),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

#[tokio::test]
async fn a_dropped_download_sends_part_of_the_body_then_fails() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    b.store.set_export_resources_per_file(10);
    let m = b.manifest(&b.started("$export?_type=Patient").await).await;
    let url = m["output"][0]["url"].as_str().unwrap().to_owned();
    let full = b.get(&url).await.bytes().await.unwrap();

    b.store.drop_export_file_after(100, 2);
    let response = b.get(&url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), full.len().to_string(), "it promises the whole file");
    let (got, failed) = read_all(response).await;
    assert!(failed, "the body ends in an error");
    assert_eq!(got, full[..100], "after exactly the bytes asked for");
    // A range is cut from where it starts.
    let response = b.request(Method::GET, &url).header("range", "bytes=200-").send().await.unwrap();
    assert_eq!(response.status(), 206);
    let (got, failed) = read_all(response).await;
    assert!(failed);
    assert_eq!(got, full[200..300]);
    // Then whole again.
    let (got, failed) = read_all(b.get(&url).await).await;
    assert!(!failed);
    assert_eq!(got, full);
    let stats = b.store.export_stats();
    assert_eq!(stats.dropped_downloads, 2);
    assert_eq!(stats.bytes_served, (full.len() * 2 + 200) as u64);
}

#[tokio::test]
async fn a_second_origin_serves_output_files_without_a_bearer_and_counts_authorization() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    b.store.set_export_error_file(true);
    let origin = b.store.start_export_origin(false).await.unwrap();
    assert!(origin.starts_with("http://127.0.0.1:") && !b.base.starts_with(&origin));
    let m = b.manifest(&b.started("$export?_type=Patient,Observation").await).await;
    assert_eq!(m["requiresAccessToken"], false);
    let id = b.store.export_jobs()[0].id.clone();
    let outputs = m["output"].as_array().unwrap();
    for (n, file) in outputs.iter().enumerate() {
        assert_eq!(file["url"], format!("{origin}/files/{id}/{}.ndjson", n + 1));
    }
    let error_url = m["error"][0]["url"].as_str().unwrap();
    assert_eq!(
        error_url,
        format!("{}/$export-file/{id}/{}", b.base, outputs.len() + 1),
        "the error file stays"
    );

    // The same bytes as the FHIR base, with no bearer; ranges too.
    let plain = Client::new();
    for (n, file) in outputs.iter().enumerate() {
        let response = plain.get(file["url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "application/fhir+ndjson");
        let there = response.bytes().await.unwrap();
        let here = b.get(&b.url(&format!("$export-file/{id}/{}", n + 1))).await.bytes().await.unwrap();
        assert_eq!(there, here);
    }
    let first = outputs[0]["url"].as_str().unwrap();
    let response = plain.get(first).header("range", "bytes=3-").send().await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(plain.get(format!("{origin}/files/{id}/99.ndjson")).send().await.unwrap().status(), 404);
    let stats = b.store.export_stats();
    assert_eq!((stats.origin_requests, stats.origin_authorized_requests), (outputs.len() as u64 + 2, 0));
    // A client that sends its bearer along is seen doing it.
    assert_eq!(b.get(first).await.status(), 200);
    let stats = b.store.export_stats();
    assert_eq!((stats.origin_requests, stats.origin_authorized_requests), (outputs.len() as u64 + 3, 1));

    // requiresAccessToken follows the origin's setting; stopped, files are back on the base.
    b.store.start_export_origin(true).await.unwrap();
    assert_eq!(b.manifest(&b.started("$export?_type=Patient").await).await["requiresAccessToken"], true);
    b.store.stop_export_origin();
    let m = b.manifest(&b.started("$export?_type=Patient").await).await;
    assert!(m["output"][0]["url"].as_str().unwrap().starts_with(&b.base));
    assert!(plain.get(first).send().await.is_err(), "the old origin is gone");
}

#[tokio::test]
async fn synthetic_files_are_fixed_length_lines_made_on_the_fly() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    b.store.set_export_synthetic("Observation", 3, 1024 * 1024 + 500);
    let m = b.manifest(&b.started("$export?_type=Patient").await).await;
    let outputs = m["output"].as_array().unwrap();
    assert_eq!(outputs.len(), 3, "instead of the real data");
    assert!(outputs.iter().all(|f| f["type"] == "Observation" && f["count"] == 1024));

    let url = outputs[1]["url"].as_str().unwrap();
    let response = b.get(url).await;
    assert_eq!(header(&response, "content-length"), (1024 * 1024).to_string());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 1024 * 1024);
    for (i, line) in body.split_inclusive(|c| *c == b'\n').enumerate() {
        assert_eq!(line.len(), 1024, "line {i}");
        if i % 97 == 0 || i == 1023 {
            let text = std::str::from_utf8(line).unwrap();
            let r: Value = serde_json::from_str(text).unwrap();
            assert_eq!(r["id"], format!("syn-2-{i}"));
            assert!(text.contains("\"value\":72.50"));
        }
    }
    // A range in the middle of a line is exactly that suffix.
    let offset = 700 * 1024 + 333;
    let response =
        b.request(Method::GET, url).header("range", format!("bytes={offset}-")).send().await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap(), body.slice(offset..));
    let first = b.get(outputs[2]["url"].as_str().unwrap()).await.bytes().await.unwrap();
    let line: Value = serde_json::from_slice(&first[..1024]).unwrap();
    assert_eq!(line["id"], "syn-3-0");

    b.store.set_export_synthetic("Observation", 0, 0);
    let m = b.manifest(&b.started("$export?_type=Practitioner").await).await;
    assert_eq!(m["output"][0]["count"], 1, "off again: the real data");
    b.store.set_export_synthetic("NotAType", 1, 1024);
    let m = b.manifest(&b.started("$export?_type=Practitioner").await).await;
    assert_eq!(m["output"][0]["type"], "Practitioner", "not a resource type: ignored");
}

#[tokio::test]
async fn delete_cancels_a_job_then_its_status_and_files_are_404() {
    let b = bulk().await;
    b.store.set_export_ready_after_polls(0);
    let done = b.started("$export?_type=Patient").await;
    let m = b.manifest(&done).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(b.get(&file).await.status(), 200);
    let deleted = b.request(Method::DELETE, &done).send().await.unwrap();
    let (status, _, _) = outcome(deleted).await;
    assert_eq!(status, 202);
    assert_eq!(outcome(b.get(&done).await).await.0, 404);
    assert_eq!(outcome(b.get(&file).await).await.0, 404);
    assert_eq!(outcome(b.request(Method::DELETE, &done).send().await.unwrap()).await.0, 404);

    b.store.set_export_ready_after_polls(5);
    let running = b.started("$export").await;
    assert_eq!(b.request(Method::DELETE, &running).send().await.unwrap().status(), 202);
    assert_eq!(b.get(&running).await.status(), 404);
    let states: Vec<ExportJobState> = b.store.export_jobs().iter().map(|j| j.state).collect();
    assert_eq!(states, vec![ExportJobState::Deleted, ExportJobState::Deleted]);
    assert_eq!(b.store.export_stats().cancels, 2);
    assert_eq!(b.request(Method::PUT, &running).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn a_limit_on_running_jobs_refuses_kick_offs_with_429() {
    let b = bulk().await;
    b.store.set_export_retry_after(0);
    b.store.set_export_max_running(Some(1));
    let first = b.started("$export").await;
    let refused = b.kickoff("Patient/$export").await;
    assert_eq!(header(&refused, "retry-after"), "1");
    let (status, code, _) = outcome(refused).await;
    assert_eq!((status, code.as_str()), (429, "throttled"));
    b.manifest(&first).await;
    let second = b.started("Patient/$export").await;
    assert_eq!(b.kickoff("$export").await.status(), 429);
    b.request(Method::DELETE, &second).send().await.unwrap();
    b.started("$export").await;
    b.store.set_export_max_running(None);
    b.started("$export").await;
    let stats = b.store.export_stats();
    assert_eq!((stats.kickoffs_accepted, stats.kickoffs_refused), (4, 2));
}

#[tokio::test]
async fn counters_tell_polls_files_and_bytes() {
    let b = bulk().await;
    b.store.set_export_retry_after(0);
    let status = b.started("$export?_type=Patient").await;
    let m = b.manifest(&status).await;
    let id = job_id(&status);
    let mut bytes = 0;
    for _ in 0..2 {
        bytes += b.get(m["output"][0]["url"].as_str().unwrap()).await.bytes().await.unwrap().len();
    }
    bytes += b.get(m["output"][1]["url"].as_str().unwrap()).await.bytes().await.unwrap().len();
    b.get(&b.url(&format!("$export-file/{id}/77"))).await;
    let stats = b.store.export_stats();
    assert_eq!(stats.status_polls, 2);
    assert_eq!(stats.file_requests, 4, "404s count as requests");
    assert_eq!(stats.bytes_served, bytes as u64);
    let by_file: Vec<((String, usize), u64)> = stats.file_requests_by_file.into_iter().collect();
    assert_eq!(by_file, vec![((id.clone(), 1), 2), ((id, 2), 1)]);
    // The CapabilityStatement says the server exports.
    let cs: Value = b.get(&b.url("metadata")).await.json().await.unwrap();
    assert_eq!(cs["instantiates"][0], "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data");
    assert!(cs["rest"][0]["operation"].as_array().unwrap().iter().any(|o| o["name"] == "export"));
}
