//! Every FHIR interaction of the runtime, over real HTTP, against two servers: the
//! sandbox's FHIR server (ours, strict) and Medplum's router (nobody here wrote
//! it). One scenario per interaction, run on each server; where a server differs
//! as FHIR allows, or has a known gap (see `medplum.rs`), the scenario says so
//! through [`Server`] rather than testing less everywhere.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::oauth2::OAuth2Source;
use auth_core::{AuthClient, ErrorKind, TokenManager};
use auth_fhir::model::ObservationValue;
use auth_fhir::transaction::Transaction;
use auth_fhir::{
    Bundle, CodeableConcept, Decimal, FhirClient, FhirErrorExt, History, JsonResource, Observation,
    Operation, Patient, Quantity, Reference, ReferenceContext, Resource, SearchParams,
};
use auth_sandbox::fhir::FhirStore;
use auth_sandbox::idp::TestIdentityProvider;
use futures_util::TryStreamExt;
use integration_tests::medplum::{MedplumOptions, MedplumServer};
use serde_json::{Value, json};

const SYSTEM: &str = "urn:fhir-auth:interactions";

/// A server under test and what it does differently.
struct Server {
    fhir: FhirClient,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The sandbox: atomic transactions, numeric versions, every history level
    /// with paging, operations at every level.
    Sandbox,
    /// Medplum's router over its in-memory repository, transactions on.
    Medplum,
}

impl Server {
    fn is_sandbox(&self) -> bool {
        self.kind == Kind::Sandbox
    }
}

/// A name no other test on a shared server uses.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").subsec_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{nanos:x}-{n}")
}

fn patient(mrn: &str, family: &str) -> Patient {
    let mut p = Patient::new().with_name(family, ["Test"]).with_identifier(SYSTEM, mrn);
    p.gender = Some("male".into());
    p
}

fn observation(subject: &str, value: &str) -> Observation {
    Observation {
        status: Some("final".into()),
        code: Some(CodeableConcept { text: Some("dose".into()), ..CodeableConcept::default() }),
        subject: Some(Reference { reference: Some(subject.into()), ..Reference::default() }),
        // The decimal goes in as text: it must come back exactly as written.
        value: Some(ObservationValue::Quantity(Quantity {
            value: Some(value.parse::<Decimal>().expect("a decimal")),
            unit: Some("mg".into()),
            ..Quantity::default()
        })),
        ..Observation::default()
    }
}

fn quantity(o: &Observation) -> &str {
    match &o.value {
        Some(ObservationValue::Quantity(q)) => q.value.as_ref().map(Decimal::as_str).unwrap_or_default(),
        other => panic!("not a quantity: {other:?}"),
    }
}

fn subject(o: &Observation) -> Option<&str> {
    o.subject.as_ref().and_then(|r| r.reference.as_deref())
}

fn by_mrn(mrn: &str) -> SearchParams {
    SearchParams::new().add("identifier", format!("{SYSTEM}|{mrn}"))
}

fn version_of(r: &impl Resource) -> String {
    r.version_id().expect("a version").to_owned()
}

async fn sandbox() -> Server {
    let idp = TestIdentityProvider::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let store = FhirStore::new(base.clone());
    let app = axum::Router::new().nest("/fhir", store.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (id, secret) = idp.credentials();
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let fhir = FhirClient::new(AuthClient::new(TokenManager::new(source)).unwrap(), &base).unwrap();
    // The provider lives as long as the test: leak it with the server.
    std::mem::forget(idp);
    Server { fhir, kind: Kind::Sandbox }
}

/// One Medplum server, transactions on, for every scenario here.
fn medplum() -> Server {
    static SERVER: OnceLock<MedplumServer> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        MedplumServer::start_with(MedplumOptions { transactions: true, ..MedplumOptions::default() })
    });
    let source = OAuth2Source::builder(server.token_url(), server.client_id(), server.client_secret())
        .scopes(["system/*.*"])
        .build()
        .unwrap();
    let fhir =
        FhirClient::new(AuthClient::new(TokenManager::new(source)).unwrap(), &server.fhir_base()).unwrap();
    Server { fhir, kind: Kind::Medplum }
}

/// Runs `scenario` against both servers.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod on_sandbox {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(&super::sandbox().await).await;
            })*
        }
        mod on_medplum {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(&super::medplum()).await;
            })*
        }
    };
}

on_both!(
    decimals_come_back_exactly_as_written,
    conditional_update_creates_then_updates_and_conditional_delete_removes,
    patch_applies_under_if_match_and_refuses_a_stale_version,
    history_has_one_entry_per_version,
    transaction_resolves_urn_uuid_references,
    a_rejected_transaction_is_an_error_and_a_failed_batch_entry_is_not,
    search_keeps_included_resources_apart_posts_and_counts,
    references_resolve_to_typed_resources,
    operations_are_called,
    the_server_says_r4,
);

async fn decimals_come_back_exactly_as_written(s: &Server) {
    let p = s.fhir.create(&patient(&unique("dec-"), "Decimal")).await.unwrap();
    let subject = format!("Patient/{}", p.id.unwrap());
    // (An exponent comes back spelled `1e+3`: serde_json writes the sign. The
    // digits, and so the precision, are kept.)
    for value in ["1.50", "0.010", "7.000", "100.000000000000000000001"] {
        let created = s.fhir.create(&observation(&subject, value)).await.unwrap();
        let read: Observation = s.fhir.read(&created.id.unwrap()).await.unwrap();
        let json: JsonResource = s.fhir.read_json("Observation", read.id().unwrap()).await.unwrap();
        let raw = serde_json::to_string(&json.0["valueQuantity"]["value"]).unwrap();
        if s.is_sandbox() {
            assert_eq!(quantity(&read), value, "a decimal keeps its text");
            assert_eq!(raw, value);
        } else {
            // Medplum parses JSON into JavaScript numbers: `1.50` is stored as 1.5,
            // so what comes back has the value, not the text. The loss is the
            // server's: the sandbox above shows what this client sends and reads.
            assert_eq!(quantity(&read).parse::<f64>().unwrap(), value.parse::<f64>().unwrap());
        }
    }
}

async fn conditional_update_creates_then_updates_and_conditional_delete_removes(s: &Server) {
    let mrn = unique("cu-");
    let first = s.fhir.update_where(&patient(&mrn, "Conditional"), &by_mrn(&mrn)).await.unwrap();
    assert!(first.created, "{:?}: no match, so it was created (201)", s.kind);
    let id = first.id.clone().expect("the new id");

    let mut changed = patient(&mrn, "Conditional");
    changed.gender = Some("female".into());
    let second = s.fhir.update_where(&changed, &by_mrn(&mrn)).await.unwrap();
    assert!(!second.created, "{:?}: one match, so it was updated", s.kind);
    assert_eq!(second.id.as_deref(), Some(id.as_str()), "the same resource");
    assert_ne!(second.version_id, first.version_id, "a new version");
    let read: Patient = s.fhir.read(&id).await.unwrap();
    assert_eq!(read.gender.as_deref(), Some("female"));

    s.fhir.delete_where("Patient", &by_mrn(&mrn)).await.unwrap();
    let gone = s.fhir.read::<Patient>(&id).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Api);
    assert!(matches!(gone.status(), Some(404 | 410)), "{:?}: {gone}", s.kind);
    assert_eq!(s.fhir.count::<Patient>(&by_mrn(&mrn)).await.unwrap(), 0);
}

async fn patch_applies_under_if_match_and_refuses_a_stale_version(s: &Server) {
    let created = s.fhir.create(&patient(&unique("patch-"), "Patchy")).await.unwrap();
    let id = created.id.clone().unwrap();
    let v1 = created.version_id.clone().unwrap();
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/gender", "value": "female"}])).unwrap();
    let patched: Patient = s.fhir.patch(&id, &patch, Some(&v1)).await.unwrap();
    assert_eq!(patched.gender.as_deref(), Some("female"));
    let v2 = version_of(&patched);
    assert_ne!(v2, v1);

    // The same patch under the old version: someone changed it since; refused, not lost.
    let stale = s.fhir.patch::<Patient>(&id, &patch, Some(&v1)).await.unwrap_err();
    assert_eq!((stale.kind(), stale.status()), (ErrorKind::Api, Some(412)), "{:?}: {stale}", s.kind);

    // A patch computed from two versions changes only what differs…
    let before: Patient = s.fhir.read(&id).await.unwrap();
    let mut after = before.clone();
    after.birth_date = Some("1970-01-01".into());
    let changed = s.fhir.patch_changes(&before, &after).await.unwrap();
    assert_eq!(
        (changed.birth_date.as_deref(), changed.gender.as_deref()),
        (Some("1970-01-01"), Some("female"))
    );
    // …and is refused when the resource moved on after `before` was read.
    let mut again = before.clone();
    again.birth_date = Some("1980-01-01".into());
    let moved = s.fhir.patch_changes(&before, &again).await.unwrap_err();
    assert_eq!(moved.status(), Some(412), "{:?}", s.kind);
}

async fn history_has_one_entry_per_version(s: &Server) {
    let created = s.fhir.create(&patient(&unique("hist-"), "Historic")).await.unwrap();
    let id = created.id.clone().unwrap();
    let mut versions = vec![created.version_id.clone().unwrap()];
    let mut current: Patient = s.fhir.read(&id).await.unwrap();
    for gender in ["female", "other"] {
        current.gender = Some(gender.into());
        current = s.fhir.update(&current, Some(&version_of(&current))).await.unwrap();
        versions.push(version_of(&current));
    }
    let of = History::instance("Patient", &id);
    let history: Bundle<Patient> = s.fhir.history(&of, &SearchParams::new()).await.unwrap();
    assert_eq!(history.type_.as_deref(), Some("history"));
    let mut seen: Vec<String> = history.entry.iter().filter_map(|e| e.typed()).map(version_of).collect();
    // Medplum's in-memory history alternates its order between reads: compare sets.
    seen.sort();
    let mut want = versions.clone();
    want.sort();
    assert_eq!(seen, want, "{:?}: one entry per version", s.kind);
    for (v, gender) in versions.iter().zip(["male", "female", "other"]) {
        let old: Patient = s.fhir.vread(&id, v).await.unwrap();
        assert_eq!((old.version_id(), old.gender.as_deref()), (Some(v.as_str()), Some(gender)));
    }
    if s.is_sandbox() {
        // Newest first, one version a page, followed by next links.
        let pages: Vec<Bundle<Patient>> =
            s.fhir.history_pages(&of, &SearchParams::new().add("_count", "1")).try_collect().await.unwrap();
        assert_eq!(pages.len(), 3);
        let paged: Vec<String> =
            pages.iter().flat_map(|b| b.entry.iter().filter_map(|e| e.typed()).map(version_of)).collect();
        assert_eq!(paged, versions.iter().rev().cloned().collect::<Vec<_>>());
        // Type and system history hold the versions too.
        let of_type: Bundle<Patient> = s
            .fhir
            .history(&History::of_type("Patient"), &SearchParams::new().add("_count", "1000"))
            .await
            .unwrap();
        let system: Bundle<JsonResource> =
            s.fhir.history(&History::System, &SearchParams::new().add("_count", "1000")).await.unwrap();
        let ours =
            of_type.entry.iter().filter_map(|e| e.typed()).filter(|r| r.id() == Some(id.as_str())).count();
        assert_eq!(ours, 3);
        let ours =
            system.entry.iter().filter_map(|e| e.typed()).filter(|r| r.id() == Some(id.as_str())).count();
        assert_eq!(ours, 3);
    }
}

async fn transaction_resolves_urn_uuid_references(s: &Server) {
    let mrn = unique("tx-");
    let mut tx = Transaction::new();
    let p = tx.create(&patient(&mrn, "Transactional")).unwrap();
    let mut obs = observation("", "1.50");
    obs.subject = Some(p.reference());
    let o = tx.create(&obs).unwrap();
    let response = s.fhir.transaction(&tx).await.unwrap();
    assert!(response.all_succeeded(), "{:?}: {:?}", s.kind, response.entries);
    assert_eq!(response.outcome(&p).map(|e| e.status), Some(201));
    let patient_id = response.outcome(&p).and_then(|e| e.id()).expect("the patient's Location").to_owned();
    let observation_id =
        response.outcome(&o).and_then(|e| e.id()).expect("the observation's Location").to_owned();
    let read: Observation = s.fhir.read(&observation_id).await.unwrap();
    assert_eq!(subject(&read), Some(format!("Patient/{patient_id}").as_str()), "the urn:uuid was rewritten");
    if s.is_sandbox() {
        assert_eq!(quantity(&read), "1.50", "the decimal, as written, through a transaction");
    }
}

async fn a_rejected_transaction_is_an_error_and_a_failed_batch_entry_is_not(s: &Server) {
    // An update under a version the server no longer has fails the transaction.
    let existing = s.fhir.create(&patient(&unique("rej-"), "Existing")).await.unwrap();
    let mut current = existing.resource.clone().expect("the created patient");
    current.gender = Some("female".into());
    let stale = if s.is_sandbox() { "999".to_owned() } else { uuid_like() };
    let mrn = unique("rej-new-");
    let mut tx = Transaction::new();
    tx.create(&patient(&mrn, "NeverCreated")).unwrap();
    tx.update(&current, Some(&stale)).unwrap();
    let rejected = s.fhir.transaction(&tx).await.unwrap_err();
    assert_eq!(rejected.kind(), ErrorKind::Api, "{:?}: {rejected}", s.kind);
    assert!(rejected.operation_outcome().is_some(), "the server's OperationOutcome");
    if s.is_sandbox() {
        // All or nothing: the create before the failed entry did not happen.
        // (Medplum's in-memory repository does not roll back.)
        assert_eq!(s.fhir.count::<Patient>(&by_mrn(&mrn)).await.unwrap(), 0);
    }

    // As a batch: each entry on its own; the response says which failed.
    let mut batch = Transaction::batch();
    batch.create(&patient(&unique("batch-"), "Batched")).unwrap();
    let missing = batch.read("Patient", "no-such-patient").unwrap();
    let response = s.fhir.transaction(&batch).await.unwrap();
    assert_eq!(response.entries[0].status, 201, "{:?}", s.kind);
    assert_eq!(response.entries[missing].status, 404, "{:?}", s.kind);
    assert!(!response.all_succeeded());
}

/// A version id in Medplum's form (a UUID) that no resource has.
fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

async fn search_keeps_included_resources_apart_posts_and_counts(s: &Server) {
    let p = s.fhir.create(&patient(&unique("inc-"), "Included")).await.unwrap();
    let pid = p.id.unwrap();
    for v in ["1.0", "2.0"] {
        s.fhir.create(&observation(&format!("Patient/{pid}"), v)).await.unwrap();
    }
    let params =
        SearchParams::new().add("subject", format!("Patient/{pid}")).add("_include", "Observation:subject");
    let found: Bundle<Observation> = s.fhir.search(&params).await.unwrap();
    assert_eq!(found.matches().count(), 2, "{:?}: the two observations are the matches", s.kind);
    let included: Vec<Patient> = found.included().unwrap();
    assert_eq!(included.iter().map(|r| r.id()).collect::<Vec<_>>(), [Some(pid.as_str())]);

    let rev = SearchParams::new().add("_id", pid.as_str()).add("_revinclude", "Observation:subject");
    let found: Bundle<Patient> = s.fhir.search(&rev).await.unwrap();
    assert_eq!(found.matches().count(), 1);
    let observations: Vec<Observation> = found.included().unwrap();
    assert_eq!(observations.len(), 2, "{:?}: the observations pointing at the patient", s.kind);

    let posted: Bundle<Observation> = s.fhir.search_post(&params).await.unwrap();
    assert_eq!(posted.matches().count(), 2, "{:?}: POST _search finds the same", s.kind);
    let of_subject = SearchParams::new().add("subject", format!("Patient/{pid}"));
    assert_eq!(s.fhir.count::<Observation>(&of_subject).await.unwrap(), 2);
}

async fn references_resolve_to_typed_resources(s: &Server) {
    let mrn = unique("ref-");
    let p = s.fhir.create(&patient(&mrn, "Referenced")).await.unwrap();
    let pid = p.id.unwrap();
    let relative = format!("Patient/{pid}");
    let none = ReferenceContext::new();
    let by_relative: Patient = s.fhir.resolve(&relative, &none).await.unwrap();
    assert_eq!(by_relative.id(), Some(pid.as_str()));
    let absolute = format!("{}Patient/{pid}", s.fhir.base());
    let by_absolute: Patient = s.fhir.resolve(&absolute, &none).await.unwrap();
    assert_eq!(by_absolute.id(), Some(pid.as_str()));
    let elsewhere =
        s.fhir.resolve::<Patient>("https://elsewhere.example/fhir/Patient/1", &none).await.unwrap_err();
    assert_eq!(elsewhere.kind(), ErrorKind::Configuration, "the token must not go to another server");

    // A contained resource, by `#id`, within the resource holding it.
    let mut holder = observation("#p1", "3.0");
    let contained: JsonResource =
        serde_json::from_value(json!({"resourceType": "Patient", "id": "p1", "gender": "unknown"})).unwrap();
    holder.contained.push(contained);
    let created = s.fhir.create(&holder).await.unwrap();
    let read: Observation = s.fhir.read(&created.id.unwrap()).await.unwrap();
    let within = ReferenceContext::new().within(&read).unwrap();
    let found: Patient = s.fhir.resolve_reference(read.subject.as_ref().unwrap(), &within).await.unwrap();
    assert_eq!(found.gender.as_deref(), Some("unknown"));

    // A search Bundle's entry, found without another request.
    let bundle: Bundle<Patient> = s.fhir.search(&by_mrn(&mrn)).await.unwrap();
    let in_bundle = ReferenceContext::new().in_bundle(&bundle).unwrap();
    let from_bundle: Patient = s.fhir.resolve(&relative, &in_bundle).await.unwrap();
    assert_eq!(from_bundle.id(), Some(pid.as_str()));
    // Not an Observation: a typed error, not a wrong value.
    let wrong = s.fhir.resolve::<Observation>(&relative, &in_bundle).await.unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Configuration);
}

async fn operations_are_called(s: &Server) {
    if s.is_sandbox() {
        let created = s.fhir.create(&patient(&unique("op-"), "Operated")).await.unwrap();
        let pid = created.id.unwrap();
        s.fhir.create(&observation(&format!("Patient/{pid}"), "4.0")).await.unwrap();
        // Instance level: everything about the patient, by POST and by GET.
        let everything: Bundle<JsonResource> =
            s.fhir.operation(&Operation::on_instance("Patient", &pid, "$everything").unwrap()).await.unwrap();
        let mut kinds: Vec<&str> =
            everything.entry.iter().filter_map(|e| e.typed()).map(|r| r.resource_type()).collect();
        kinds.sort();
        assert_eq!(kinds, ["Observation", "Patient"]);
        let by_get =
            Operation::on_instance_of::<Patient>(&pid, "$everything").unwrap().get(SearchParams::new());
        let again: Bundle<JsonResource> = s.fhir.operation(&by_get).await.unwrap();
        assert_eq!(again.entry.len(), 2);
        // Type level: how many patients; system level: the versions the server speaks.
        let count: auth_fhir::Parameters =
            s.fhir.operation(&Operation::on_type_of::<Patient>("$count").unwrap()).await.unwrap();
        assert!(!count.parameter.is_empty(), "{count:?}");
        let versions: auth_fhir::Parameters = s
            .fhir
            .operation(&Operation::system("$versions").unwrap().get(SearchParams::new()))
            .await
            .unwrap();
        let text = serde_json::to_string(&versions).unwrap();
        assert!(text.contains("4.0"), "{text}");
        return;
    }
    // Medplum's router has one operation, at system level: $graphql, whose input
    // is plain JSON.
    let mrn = unique("gql-");
    s.fhir.create(&patient(&mrn, "Graphed")).await.unwrap();
    let query = json!({"query": format!("{{ PatientList(identifier: \"{SYSTEM}|{mrn}\") {{ id name {{ family }} }} }}")});
    let op = Operation::system("$graphql").unwrap().input_json(&query).unwrap();
    let answer: Value = s.fhir.operation_response(&op).await.unwrap().json().unwrap();
    assert_eq!(answer["data"]["PatientList"][0]["name"][0]["family"], "Graphed", "{answer}");
}

async fn the_server_says_r4(s: &Server) {
    let checked = s.fhir.clone().with_r4_check();
    let capabilities = checked.capabilities().await.unwrap();
    assert!(capabilities.fhir_version.as_deref().unwrap_or_default().starts_with("4.0."));
    // Every call goes through after the check.
    checked.search::<Patient>(&SearchParams::new().add("_count", "1")).await.unwrap();
}
