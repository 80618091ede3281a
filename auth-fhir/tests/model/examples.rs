//! Proof that the typed model is lossless: every official FHIR R4 example (npm
//! `hl7.fhir.r4.examples` 4.0.1) of every typed resource, read into its type and
//! written back, is the same JSON. Numbers compare as text (serde_json's
//! `arbitrary_precision`): `1.50` against `1.5` is a difference.
//!
//! The harness installs the package with npm into `target/fhir-r4-examples-cache`
//! (reused when present). Without node and npm the test fails: it never skips,
//! because a skipped proof proves nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use auth_fhir::model::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("auth-fhir is in the workspace").to_owned()
}

fn run(cmd: &mut Command, what: &str) {
    let out =
        cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run it ({e}); it is required, not optional"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The examples, installed once per machine (the cache survives `cargo test` runs).
fn examples_dir() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("fhir-r4-examples-cache");
    let examples = dir.join("node_modules/hl7.fhir.r4.examples");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model/package.json");
    let wanted = std::fs::read(&manifest).expect("tests/model/package.json");
    let pinned = std::fs::read(dir.join("package.json")).is_ok_and(|p| p == wanted);
    if !pinned || !examples.join("package.json").exists() {
        run(Command::new("node").arg("--version"), "node");
        std::fs::create_dir_all(&dir).expect("cache dir");
        std::fs::write(dir.join("package.json"), &wanted).expect("write package.json");
        run(
            Command::new("npm").args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(&dir),
            "npm install hl7.fhir.r4.examples",
        );
    }
    let version: Value = serde_json::from_slice(
        &std::fs::read(examples.join("package.json")).expect("the package's manifest"),
    )
    .expect("the package's manifest is JSON");
    assert_eq!(version["version"], "4.0.1", "the examples of FHIR R4 4.0.1");
    examples
}

/// Reads `value` as `T`, writes it back; `Err` says where the JSON differs.
fn round_trip<T: Serialize + DeserializeOwned>(value: &Value, text: Option<&str>) -> Result<Value, String> {
    // From text when there is some: that is how a client reads a response.
    let typed: T = match text {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_value(value.clone()),
    }
    .map_err(|e| format!("does not read: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not write: {e}"))?;
    match first_difference(value, &back, String::new()) {
        None => Ok(back),
        Some(at) => Err(format!("differs at {at}")),
    }
}

/// The JSON pointer of the first place `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    if a == b {
        return None;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) if p == q => {}
                    (Some(p), Some(q)) => return first_difference(p, q, format!("{at}/{key}")),
                    (p, _) => {
                        let side = if p.is_some() { "dropped" } else { "added" };
                        return Some(format!("{at}/{key} ({side})"));
                    }
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, format!("{at}/{i}")))
        }
        _ => Some(format!("{at} ({a} became {b})")),
    }
}

/// Elements at the top of a resource that landed in `extra` although they are not
/// primitive extensions (`_name`): a gap in the model (the round trip would not see it).
fn untyped(extra: &Map<String, Value>) -> Result<(), String> {
    let gaps: Vec<&String> = extra.keys().filter(|k| !k.starts_with('_')).collect();
    if gaps.is_empty() { Ok(()) } else { Err(format!("elements left untyped: {gaps:?}")) }
}

macro_rules! typed {
    ($kind:expr, $value:expr, $text:expr, [$($t:ident),*]) => {
        match $kind {
            $(stringify!($t) => Some(round_trip::<$t>($value, $text).and_then(|back| {
                let typed: $t = serde_json::from_value(back).map_err(|e| format!("does not read back: {e}"))?;
                untyped(&typed.extra)
            })),)*
            "Bundle" => Some(round_trip::<Bundle<JsonResource>>($value, $text).map(drop)),
            _ => None,
        }
    };
}

/// Checks one resource if its type is typed: `None` when it is not.
fn check(kind: &str, value: &Value, text: Option<&str>) -> Option<Result<(), String>> {
    typed!(
        kind,
        value,
        text,
        [
            Patient,
            OperationOutcome,
            Parameters,
            CapabilityStatement,
            AllergyIntolerance,
            Binary,
            Condition,
            DiagnosticReport,
            Encounter,
            Group,
            Immunization,
            Location,
            MedicationRequest,
            Observation,
            Organization,
            Practitioner,
            PractitionerRole,
            Procedure
        ]
    )
}

/// The resource types [`check`] reads.
const TYPED: [&str; 19] = [
    "Patient",
    "OperationOutcome",
    "Parameters",
    "CapabilityStatement",
    "AllergyIntolerance",
    "Binary",
    "Condition",
    "DiagnosticReport",
    "Encounter",
    "Group",
    "Immunization",
    "Location",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Bundle",
];

#[derive(Default)]
struct Count {
    files: usize,
    nested: usize,
}

/// Every resource inside `value`, with its JSON pointer: where FHIR puts resources
/// (`contained`, a bundle entry's or a parameter's `resource`, a response's
/// `outcome`). Not any object with a `resourceType`: ExampleScenario's instances
/// have one too.
fn nested<'a>(value: &'a Value, at: &mut String, out: &mut Vec<(String, &'a Value)>) {
    let len = at.len();
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                at.push('/');
                at.push_str(key);
                let holds_resources = matches!(key.as_str(), "resource" | "contained" | "outcome");
                match v {
                    Value::Object(_) if holds_resources => out.push((at.clone(), v)),
                    Value::Array(items) if holds_resources => {
                        out.extend(items.iter().enumerate().map(|(i, r)| (format!("{at}/{i}"), r)));
                    }
                    _ => {}
                }
                nested(v, at, out);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push_str(&format!("/{i}"));
                nested(v, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

#[test]
fn every_official_example_of_every_typed_resource_round_trips() {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the examples")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json") && p.file_name().is_some_and(|n| n != "package.json")
        })
        .collect();
    files.sort();
    let mut counts: BTreeMap<String, Count> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let text = std::fs::read_to_string(path).expect("an example");
        // Most of the package is terminology and definitions: skip what names no typed
        // resource anywhere (a typed resource has `"resourceType": "Patient"` or the like).
        if !TYPED.iter().any(|kind| text.contains(&format!("\"{kind}\""))) {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
        let Some(kind) = value.get("resourceType").and_then(Value::as_str) else { continue };
        if let Some(result) = check(kind, &value, Some(&text)) {
            counts.entry(kind.to_owned()).or_default().files += 1;
            if let Err(e) = result {
                failures.push(format!("{name}: {e}"));
            }
        }
        let mut inner = Vec::new();
        nested(&value, &mut String::new(), &mut inner);
        for (at, resource) in inner {
            let Some(kind) = resource.get("resourceType").and_then(Value::as_str) else { continue };
            if let Some(result) = check(kind, resource, None) {
                counts.entry(kind.to_owned()).or_default().nested += 1;
                if let Err(e) = result {
                    failures.push(format!("{name}#{at} ({kind}): {e}"));
                }
            }
        }
    }

    println!("{:<22} {:>8} {:>8}", "resource", "files", "nested");
    for (kind, c) in &counts {
        println!("{kind:<22} {:>8} {:>8}", c.files, c.nested);
    }
    let (files_total, nested_total) = counts.values().fold((0, 0), |(f, n), c| (f + c.files, n + c.nested));
    println!("{:<22} {files_total:>8} {nested_total:>8}", "total");

    assert!(
        failures.is_empty(),
        "{} of the examples do not round-trip:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every typed resource was put to the test (the package's own counts, pinned).
    for kind in TYPED {
        let c = counts.get(kind).map_or(0, |c| c.files + c.nested);
        assert!(c > 0, "no example of {kind} was read");
    }
    assert!(files_total >= 279, "{files_total} files of typed resources; the package has 279");
}
