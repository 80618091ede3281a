//! Against a real FHIR server nobody here wrote: Medplum's `FhirRouter` over its
//! in-memory `MemoryRepository` (`@medplum/fhir-router` 5.2.13), behind our wrapper
//! `tests/medplum/server.mjs` (an OAuth 2.0 client-credentials token endpoint, a
//! bearer check on every FHIR request), started by
//! [`integration_tests::medplum::MedplumServer`] with Node 22 from npm, installed
//! into `target/medplum-cache` on first use. Without npm the suite fails, saying
//! what to install; it never skips.
//!
//! Proven here: tokens from `OAuth2Source` with `client_secret_basic` and
//! `client_secret_post` (and a typed `invalid_client` for a wrong secret); with
//! `FhirClient` over `AuthClient`: create (id and version from `Location` and
//! `ETag`), read, vread, search by name, update with `If-Match` (a stale one is a
//! typed 412 with the server's OperationOutcome), conditional create with
//! `If-None-Exist`, delete (the read after it is 404: the in-memory repository
//! forgets deleted resources); a missing or invalid bearer is refused with 401 and
//! our client replays once with a fresh token; RFC 7009 revocation.
//!
//! # What the wrapper already offers for the next tests
//!
//! Base `http://127.0.0.1:<port>/fhir/R4` ([`MedplumServer::fhir_base`]); token URL
//! `/token`, revocation `/revoke`, counters `GET /stats` ([`MedplumServer::stats`]).
//! Every route of Medplum's router is reachable; the wrapper maps the router's
//! `[OperationOutcome, resource]` to the outcome's status, the resource as body (the
//! outcome on errors and when there is none), `ETag: W/"<versionId>"`,
//! `Last-Modified`, and `Location: [base]/Type/id/_history/vid` on 201.
//!
//! - **batch / transaction**: `POST [base]` with a Bundle. Transaction Bundles run
//!   as batches (entry by entry, `200` with a `transaction-response` Bundle whose
//!   entries carry their own statuses) unless the server was started with
//!   [`MedplumOptions::transactions`] (`server.mjs --transactions`,
//!   `MedplumServer::start_with(MedplumOptions { transactions: true, .. })`): then
//!   the first failed entry fails the whole request with its own status and
//!   OperationOutcome. Nothing is rolled back in either mode: entries processed
//!   before the failure stay. `urn:uuid:` references between entries are resolved
//!   in both modes. The shared server ([`MedplumServer::shared`]) runs without.
//! - **PATCH** `[base]/Type/id` with `Content-Type: application/json-patch+json`
//!   (a JSON Patch array) or `application/fhir+json` (a FHIRPath Patch
//!   `Parameters`); `If-Match: W/"<vid>"` is honoured (stale: 412). Conditional
//!   PATCH `[base]/Type?search` (JSON Patch only). A JSON Patch `replace` of an
//!   absent element is a 400.
//! - **history**: instance history only, `GET [base]/Type/id/_history` (a
//!   `history` Bundle of every version, no paging links, `_count` ignored) and vread
//!   `GET [base]/Type/id/_history/vid`. No type- or system-level history (404).
//!   Beware: Medplum 5.2.13's `MemoryRepository.readHistory` reverses its stored
//!   array in place, so successive history reads alternate newest-first and
//!   oldest-first; sort by `meta.lastUpdated` or compare sets. After a delete the
//!   history and vread of that resource are 404 too.
//! - **$operations**: only `POST [base]/$graphql` (Medplum's GraphQL,
//!   `Content-Type: application/json`, `{"query": "..."}`). No `$everything`,
//!   `$validate`, `$expand` etc. (404): those live in Medplum's server, not the router.
//! - **metadata**: `GET [base]/metadata` is the wrapper's own CapabilityStatement
//!   (the router has none): every R4 resource type with read, vread, update, patch,
//!   delete, history-instance, create, search-type; system batch and search-system
//!   (and transaction when on); the token URL in the SMART `oauth-uris` extension.
//!   It is public, as on real deployments (no bearer needed).
//! - also: conditional update `PUT [base]/Type?search` (200 on a match, 201 when
//!   it creates), conditional delete `DELETE [base]/Type?search`,
//!   `POST [base]/Type/_search` (form body), `_include`/`_revinclude`, `_sort`,
//!   `_count` with `_offset` (`total` counts every match). `Prefer: return=minimal`
//!   (no body) and `return=OperationOutcome` are applied by the wrapper to
//!   successes. Not there: system search `GET [base]?_type=…` is routed but the
//!   in-memory repository finds nothing (an empty Bundle); `HEAD` is 404.
//!
//! Gaps of the in-memory repository, so tests check the server and not them:
//! search Bundles have no paging links and no `fullUrl`; version ids are UUIDs;
//! `If-Match` without quotes is ignored; update-as-create answers 200, not 201;
//! a read after delete is 404, not 410; resources are not validated against
//! their profiles. The wrapper refuses bodies other than JSON (XML) with 415 and
//! bodies over 16 MiB with 413.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::oauth2::OAuth2Source;
use auth_core::request::ClientAuthMethod;
use auth_core::token::ExpirySource;
use auth_core::{AuthClient, ErrorKind, OAuthErrorCode, TokenManager};
use auth_fhir::{FhirClient, FhirErrorExt, Patient, Resource, SearchParams};
use integration_tests::medplum::{MedplumOptions, MedplumServer};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::json;

const MRN: &str = "urn:fhir-auth:medplum-test:mrn";

/// A name no other test on the shared server uses: they all share one repository.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").subsec_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{nanos:x}{n}")
}

fn source(server: &MedplumServer, method: ClientAuthMethod) -> OAuth2Source {
    OAuth2Source::builder(server.token_url(), server.client_id(), server.client_secret())
        .auth_method(method)
        .scopes(["system/*.*"])
        .revocation_url(server.revocation_url())
        .build()
        .expect("valid configuration")
}

fn fhir_client(server: &MedplumServer) -> FhirClient {
    let api =
        AuthClient::new(TokenManager::new(source(server, ClientAuthMethod::ClientSecretBasic))).unwrap();
    FhirClient::new(api, &server.fhir_base()).unwrap()
}

/// `GET [base]/Patient?_count=1` with `authorization` (none if `None`): status and challenge.
async fn raw_search(server: &MedplumServer, authorization: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(format!("{}/Patient?_count=1", server.fhir_base()));
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let response = request.send().await.unwrap();
    let challenge =
        response.headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status(), challenge)
}

#[tokio::test]
async fn both_client_authentication_methods_get_a_token_the_server_accepts() {
    let server = MedplumServer::shared();
    for method in [ClientAuthMethod::ClientSecretBasic, ClientAuthMethod::ClientSecretPost] {
        let manager = TokenManager::new(source(server, method));
        let token = manager.token().await.unwrap_or_else(|e| panic!("{method:?}: {e}"));
        assert_eq!(token.expiry_source(), ExpirySource::ExpiresIn, "{method:?}");
        assert_eq!(token.lifetime().as_secs(), server.options().token_ttl.as_secs(), "{method:?}");
        assert_eq!(token.scope(), Some("system/*.*"), "{method:?}");
        let bearer = format!("Bearer {}", token.access_token().expose_secret());
        assert_eq!(raw_search(server, Some(&bearer)).await.0, StatusCode::OK, "{method:?}");

        let wrong = OAuth2Source::builder(
            server.token_url(),
            server.client_id(),
            auth_core::ClientSecret::new("wrong-secret-0123456789"),
        )
        .auth_method(method)
        .build()
        .unwrap();
        let err = TokenManager::new(wrong).token().await.unwrap_err();
        let oauth = err.oauth_error().unwrap_or_else(|| panic!("{method:?}: not an OAuth error: {err:?}"));
        assert_eq!((oauth.code.clone(), oauth.status), (OAuthErrorCode::InvalidClient, 401), "{method:?}");
    }
}

#[tokio::test]
async fn fhir_client_does_every_interaction_against_medplum() {
    let server = MedplumServer::shared();
    let fhir = fhir_client(server);
    let family = unique("Medplum");
    let mrn = unique("mrn-");

    // Create: the id from Location, the version from ETag, both as in the body.
    let patient = Patient::new().with_name(family.as_str(), ["Ada"]).with_identifier(MRN, mrn.as_str());
    let created = fhir.create(&patient).await.unwrap();
    assert!(created.created, "201 Created");
    let id = created.id.clone().expect("id from Location");
    let v1 = created.version_id.clone().expect("version from ETag");
    let body = created.resource.as_ref().expect("the created resource");
    assert_eq!((body.id(), body.version_id()), (Some(id.as_str()), Some(v1.as_str())));

    // Read, vread, search by name.
    let read: Patient = fhir.read(&id).await.unwrap();
    assert_eq!(read.name[0].family.as_deref(), Some(family.as_str()));
    assert_eq!(read.version_id(), Some(v1.as_str()));
    let first: Patient = fhir.vread(&id, &v1).await.unwrap();
    assert_eq!(first.name, read.name);
    let found = fhir.search::<Patient>(&SearchParams::new().add("name", family.as_str())).await.unwrap();
    assert_eq!(found.total, Some(1));
    assert_eq!(found.matches().map(|p| p.id.as_deref()).collect::<Vec<_>>(), [Some(id.as_str())]);

    // Update with If-Match: the current version succeeds; the old one is now stale.
    let mut changed = read.clone();
    changed.gender = Some("female".into());
    let updated = fhir.update(&changed, Some(&v1)).await.unwrap();
    let v2 = updated.version_id().expect("a new version").to_owned();
    assert_ne!(v2, v1);
    assert_eq!(updated.gender.as_deref(), Some("female"));
    changed.gender = Some("other".into());
    let stale = fhir.update(&changed, Some(&v1)).await.unwrap_err();
    assert_eq!((stale.kind(), stale.status()), (ErrorKind::Api, Some(412)), "{stale}");
    let outcome = stale.operation_outcome().expect("the server's OperationOutcome");
    assert_eq!(outcome.id.as_deref(), Some("precondition-failed"));
    assert_eq!(outcome.issue[0].severity.as_deref(), Some("error"));
    let now: Patient = fhir.read(&id).await.unwrap();
    assert_eq!((now.version_id(), now.gender.as_deref()), (Some(v2.as_str()), Some("female")), "unchanged");
    assert_eq!(fhir.vread::<Patient>(&id, &v1).await.unwrap().gender, None, "version 1 kept");

    // Conditional create: a match is returned (200), no match creates (201).
    let condition = SearchParams::new().add("identifier", format!("{MRN}|{mrn}"));
    let again = fhir.create_if_none_exist(&patient, &condition).await.unwrap();
    assert!(!again.created, "the conditional create found the existing patient");
    assert_eq!(again.id.as_deref(), Some(id.as_str()));
    let other_mrn = unique("mrn-");
    let other = Patient::new().with_name(family.as_str(), ["Bo"]).with_identifier(MRN, other_mrn.as_str());
    let fresh = fhir
        .create_if_none_exist(&other, &SearchParams::new().add("identifier", format!("{MRN}|{other_mrn}")))
        .await
        .unwrap();
    assert!(fresh.created, "nothing matched: created");
    let fresh_id = fresh.id.expect("id from Location");
    assert_ne!(fresh_id, id);

    // Delete: the read after it is a typed 404 (Medplum's in-memory store keeps no
    // tombstone; a server that does answers 410, which the brief allows too).
    for gone in [&id, &fresh_id] {
        fhir.delete("Patient", gone).await.unwrap();
        let e = fhir.read::<Patient>(gone).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Api, "{e}");
        assert!(matches!(e.status(), Some(404 | 410)), "{e}");
        assert_eq!(e.operation_outcome().and_then(|o| o.issue[0].code.as_deref()), Some("not-found"));
    }
    let none = fhir.search::<Patient>(&SearchParams::new().add("name", family.as_str())).await.unwrap();
    assert_eq!(none.total, Some(0));

    let capabilities = fhir.capabilities().await.unwrap();
    assert_eq!(capabilities.resource_type(), "CapabilityStatement");
    assert_eq!(capabilities.fhir_version.as_deref(), Some("4.0.1"));
}

#[tokio::test]
async fn an_invalid_bearer_is_refused_and_the_client_replays_once_with_a_fresh_token() {
    let server = MedplumServer::shared();

    // The server's refusals, as RFC 6750 §3.1 has them.
    let (status, challenge) = raw_search(server, Some("Bearer not-a-token-we-issued")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let (status, challenge) = raw_search(server, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer ") && !challenge.contains("error="), "{challenge}");

    let manager = Arc::new(TokenManager::new(source(server, ClientAuthMethod::ClientSecretPost)));
    let fhir = FhirClient::new(AuthClient::new(Arc::clone(&manager)).unwrap(), &server.fhir_base()).unwrap();
    let created = fhir.create(&Patient::new().with_name(unique("Replay"), ["Ray"])).await.unwrap();
    let id = created.id.expect("id from Location");
    let first = manager.cached().expect("the token the create used");

    // The server forgets the token behind the client's back (RFC 7009, as an
    // administrator or a rotation would), so the client's next request is refused.
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", first.access_token().expose_secret())
        .finish();
    let revoked = reqwest::Client::new()
        .post(server.revocation_url())
        .basic_auth(server.client_id(), Some(server.client_secret().expose_secret()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let old_bearer = format!("Bearer {}", first.access_token().expose_secret());
    assert_eq!(raw_search(server, Some(&old_bearer)).await.0, StatusCode::UNAUTHORIZED);

    let read: Patient = fhir.read(&id).await.expect("replayed with a fresh token");
    assert_eq!(read.id.as_deref(), Some(id.as_str()));
    let stats = manager.stats();
    assert_eq!((stats.fetches, stats.invalidations), (2, 1), "one rejection, one new token, one replay");
    let second = manager.cached().expect("the new token");
    assert!(!second.same_value(&first));

    // Revocation through the engine: the server refuses that token from now on and
    // the client fetches the next one without being refused first.
    assert!(manager.revoke().await.unwrap(), "the server was told");
    let bearer = format!("Bearer {}", second.access_token().expose_secret());
    assert_eq!(raw_search(server, Some(&bearer)).await.0, StatusCode::UNAUTHORIZED);
    fhir.delete("Patient", &id).await.unwrap();
    let stats = manager.stats();
    assert_eq!((stats.fetches, stats.invalidations), (3, 1), "a new token, no rejection");
}

/// A transaction whose second entry fails (an Observation PUT to a Patient URL).
fn failing_transaction(family: &str) -> serde_json::Value {
    json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": family}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "id": "x", "status": "final", "code": {"text": "x"}},
             "request": {"method": "PUT", "url": "Patient/x"}}
        ]
    })
}

#[tokio::test]
async fn the_transactions_option_reaches_the_router() {
    let post = |fhir: FhirClient, bundle: serde_json::Value| async move {
        let url = fhir.url(&[]).unwrap();
        let body = serde_json::to_vec(&bundle).unwrap();
        fhir.send(Method::POST, url, HeaderMap::new(), Some(body.into())).await
    };

    // Without the option (the shared server): a batch, each entry its own status.
    let shared = fhir_client(MedplumServer::shared());
    let answer = post(shared.clone(), failing_transaction(&unique("Batch"))).await.unwrap();
    let bundle: serde_json::Value = answer.json().unwrap();
    let statuses: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "400"], "{bundle}");

    // With it: the failed entry fails the request. The entry before it stays
    // (MemoryRepository has no rollback): known, and not what this test is about.
    let server =
        MedplumServer::start_with(MedplumOptions { transactions: true, ..MedplumOptions::default() });
    let fhir = fhir_client(&server);
    let e = post(fhir.clone(), failing_transaction(&unique("Txn"))).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Api, Some(400)), "{e}");
    assert_eq!(e.operation_outcome().and_then(|o| o.issue[0].code.as_deref()), Some("invalid"));
    let capabilities = fhir.capabilities().await.unwrap();
    let system = &capabilities.rest[0].interaction;
    assert!(system.iter().any(|i| i.code.as_deref() == Some("transaction")), "{system:?}");
}
