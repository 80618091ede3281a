//! The CapabilityStatement (`GET [base]/metadata`, http.html#capabilities): what
//! this store really does, type by type, and where its tokens come from (the SMART
//! `oauth-uris` extension, smart-app-launch conformance), when the emulator it is
//! mounted in said so.

use serde_json::{Value, json};

use super::search::{self, COMMON, ParamType};
use super::{FhirStore, types};

const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

// Bulk Data Access IG v2.0.0: the server's CapabilityStatement and its three operations.
const BULK_DATA: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";
const BULK_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export";
const BULK_PATIENT_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export";
const BULK_GROUP_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export";

fn search_params(defs: &[search::ParamDef]) -> Vec<Value> {
    defs.iter().map(|d| json!({"name": d.name, "type": d.kind.code()})).collect()
}

fn codes(names: &[&str]) -> Vec<Value> {
    names.iter().map(|c| json!({"code": c})).collect()
}

fn resource(t: &str, read_only: bool) -> Value {
    let own = search::params_of(t);
    let mut params = search_params(COMMON);
    params.extend(search_params(own));
    let includes: Vec<String> =
        own.iter().filter(|d| d.kind == ParamType::Reference).map(|d| format!("{t}:{}", d.name)).collect();
    // What may point at this type: every reference parameter not aimed at another type.
    let revincludes: Vec<String> = types::RESOURCE_TYPES
        .iter()
        .flat_map(|source| {
            search::params_of(source)
                .iter()
                .filter(|d| d.kind == ParamType::Reference && d.target.is_none_or(|target| target == t))
                .map(move |d| format!("{source}:{}", d.name))
        })
        .collect();
    let interactions: &[&str] = if read_only {
        &["read", "vread", "history-instance", "history-type", "search-type"]
    } else {
        &[
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "history-instance",
            "history-type",
            "create",
            "search-type",
        ]
    };
    let mut operations =
        vec![json!({"name": "count", "definition": "urn:auth-sandbox:OperationDefinition:count"})];
    if t == "Patient" {
        operations.push(json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}));
        operations.push(json!({"name": "export", "definition": BULK_PATIENT_EXPORT}));
    }
    if t == "Group" {
        operations.push(json!({"name": "export", "definition": BULK_GROUP_EXPORT}));
    }
    let mut r = json!({
        "type": t,
        "interaction": codes(interactions),
        "versioning": "versioned-update",
        "readHistory": true,
        "conditionalRead": "not-supported",
        "referencePolicy": ["literal", "local"],
        "searchInclude": includes,
        "searchRevInclude": revincludes,
        "searchParam": params,
        "operation": operations,
    });
    if !read_only {
        r["updateCreate"] = json!(true);
        r["conditionalCreate"] = json!(true);
        r["conditionalUpdate"] = json!(true);
        r["conditionalDelete"] = json!("single");
    }
    r
}

/// The statement.
pub(crate) fn statement(store: &FhirStore) -> Value {
    let read_only = store.read_only();
    let system: &[&str] = if read_only {
        &["search-system", "history-system"]
    } else {
        &["transaction", "batch", "search-system", "history-system"]
    };
    let mut rest = json!({
        "mode": "server",
        "resource": types::RESOURCE_TYPES.iter().map(|t| resource(t, read_only)).collect::<Vec<_>>(),
        "interaction": codes(system),
        "searchParam": search_params(COMMON),
        "operation": [
            {"name": "versions", "definition": "http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions"},
            {"name": "ping", "definition": "urn:auth-sandbox:OperationDefinition:ping"},
            {"name": "export", "definition": BULK_EXPORT}
        ],
    });
    if let Some(token) = store.token_url() {
        rest["security"] = json!({
            "service": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }]}],
            "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token}]}]
        });
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "instantiates": [BULK_DATA],
        "software": {"name": "auth-sandbox FHIR store"},
        "implementation": {"description": "auth-sandbox: an in-memory FHIR R4 server for tests", "url": store.base()},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    })
}
