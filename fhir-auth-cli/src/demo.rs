//! `fhir-auth` / `fhir-auth demo`: the embedded sandbox, every vendor walked through
//! token → create → read → search → page → patch → history → transaction with a
//! generated client, offline.

use std::time::SystemTime;

use auth_core::{ErrorKind, Result};
use auth_fhir::model::ObservationValue;
use auth_fhir::patch::Patch;
use auth_fhir::{
    Bundle, CodeableConcept, Created, FhirClient, Observation, Patient, Quantity, Transaction,
    TransactionResponse,
};
use auth_macros::authenticated_api;
use auth_sandbox::{Sandbox, SandboxConfig, SanteDbEmulator};

use crate::connect::{Connection, connect};
use crate::error::CliError;
use crate::output::{Progress, Style, out};
use crate::settings::Settings;

/// The typed client the demo runs on: the macro writes the bodies, so every call
/// gets its token from the manager and carries the vendor's extras.
struct Patients {
    fhir: FhirClient,
}

#[authenticated_api]
impl Patients {
    #[get("Patient/{id}")]
    async fn read(&self, id: &str) -> Result<Patient>;
    #[get("Patient")]
    async fn search(&self, #[query] name: &str) -> Result<Bundle<Patient>>;
    #[get("Patient")]
    async fn list(&self, #[query("_count")] count: u32) -> Result<Bundle<Patient>>;
    #[post("Patient")]
    async fn create(&self, #[body] patient: &Patient) -> Result<Created<Patient>>;
    #[patch("Patient/{id}")]
    async fn patch(
        &self,
        id: &str,
        #[body] ops: &Patch,
        #[if_match] version: Option<&str>,
    ) -> Result<Patient>;
    #[history("Patient/{id}")]
    async fn versions(&self, id: &str) -> Result<Bundle<Patient>>;
    #[transaction]
    #[scope("system/Patient.c", "system/Observation.c")]
    async fn submit(&self, #[body] bundle: &Transaction) -> Result<TransactionResponse>;
}

/// The settings a user would pass for each vendor of `sandbox`, so the demo runs
/// through the same connection code as `fhir-auth token` and friends.
pub(crate) fn vendor_settings(sandbox: &Sandbox) -> Vec<(&'static str, Settings)> {
    let s = sandbox.santedb();
    let a = sandbox.aidbox();
    let (aidbox_id, aidbox_secret) = a.credentials();
    let m = sandbox.msk();
    let g = sandbox.graphnet();
    vec![
        (
            "SanteDB 3.x",
            Settings {
                provider: Some("santedb".into()),
                token_url: Some(s.token_url()),
                fhir_base: Some(s.fhir_base()),
                client_id: Some(s.client_id().to_owned()),
                client_secret: Some(s.client_secret()),
                device_id: Some(s.device_id().to_owned()),
                device_secret: Some(s.device_secret()),
                ..Settings::default()
            },
        ),
        (
            "Aidbox",
            Settings {
                provider: Some("aidbox".into()),
                token_url: Some(a.token_url()),
                fhir_base: Some(a.fhir_base()),
                client_id: Some(aidbox_id),
                client_secret: Some(aidbox_secret),
                ..Settings::default()
            },
        ),
        (
            "MSK",
            Settings {
                provider: Some("msk".into()),
                token_url: Some(m.token_url()),
                fhir_base: Some(m.fhir_base()),
                client_id: Some(m.client_id().to_owned()),
                client_secret: Some(m.client_secret()),
                partner_id: Some(m.partner_id().to_owned()),
                research_study: Some(m.research_study().to_owned()),
                ..Settings::default()
            },
        ),
        (
            "Graphnet",
            Settings {
                provider: Some("graphnet".into()),
                token_url: Some(g.token_url()),
                fhir_base: Some(g.fhir_base()),
                client_id: Some(g.client_id().to_owned()),
                client_secret: Some(g.client_secret()),
                subscription_key: Some(g.subscription_key()),
                ..Settings::default()
            },
        ),
    ]
}

fn token_requests(sandbox: &Sandbox, vendor: &str) -> u64 {
    match vendor {
        "santedb" => sandbox.santedb().token_requests_for(SanteDbEmulator::CLIENT_ID),
        "aidbox" => sandbox.aidbox().token_requests(),
        "msk" => sandbox.msk().token_requests(),
        _ => sandbox.graphnet().token_requests(),
    }
}

pub(crate) async fn run() -> std::result::Result<(), CliError> {
    let s = Style::stdout();
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .map_err(|e| CliError::io("cannot start the sandbox", e))?;
    out(&format!(
        "{} every vendor against the embedded sandbox at {} (offline)\n",
        s.bold("fhir-auth demo:"),
        sandbox.base_url()
    ));
    let mut first_failure: Option<CliError> = None;
    let mut passed = 0;
    let vendors = vendor_settings(&sandbox);
    let total = vendors.len();
    for (label, settings) in vendors {
        out(&s.bold(&format!("● {label}")));
        let provider = settings.provider.clone().unwrap_or_default();
        match walk(connect(settings), s).await {
            Ok(()) => passed += 1,
            Err(e) => {
                out(&format!("  {} {}", s.red("✗"), e));
                first_failure.get_or_insert(e);
            }
        }
        out(&s.dim(&format!("  token requests: {}\n", token_requests(&sandbox, &provider))));
    }
    let verdict = format!("{passed}/{total} vendors passed");
    out(&if passed == total { s.green(&verdict) } else { s.red(&verdict) });
    first_failure.map_or(Ok(()), Err)
}

fn step(s: Style, name: &str, detail: &str) {
    out(&format!("  {} {:<11} {detail}", s.green("✓"), name));
}

async fn walk(
    conn: std::result::Result<Connection, CliError>,
    s: Style,
) -> std::result::Result<(), CliError> {
    let conn = conn?;
    let patients = Patients { fhir: conn.fhir().await? };
    let mut progress = Progress::new();

    progress.update("  … fetching a token");
    let token = conn.auth.token().await?;
    progress.clear();
    let remaining = token.remaining(SystemTime::now()).as_secs();
    step(s, "token", &format!("{}, expires in {remaining} s", token.token_type()));

    progress.update("  … creating a Patient");
    let created = patients.create(&Patient::new().with_name("Chalmers", ["Nora"])).await;
    progress.clear();
    let (id, version) = match created {
        Ok(c) => {
            let id = c.id.unwrap_or_default();
            step(s, "create", &format!("Patient/{id}"));
            (Some(id), c.version_id)
        }
        // MSK's research API is read-only by design: the refusal is the expected
        // answer, shown as such, and the walk continues with a seeded patient.
        Err(e) if e.kind() == ErrorKind::Api && e.status() == Some(405) => {
            out(&format!(
                "  {} {:<11} refused: read-only API (HTTP 405), as documented",
                s.yellow("–"),
                "create"
            ));
            (None, None)
        }
        Err(e) => return Err(e.into()),
    };
    let writable = id.is_some();

    progress.update("  … searching");
    let found = patients.search("chalmers").await?;
    progress.clear();
    let matches: Vec<&Patient> = found.matches().collect();
    step(s, "search", &format!("name=chalmers → {} match(es)", matches.len()));

    let id = match id.or_else(|| matches.first().and_then(|p| p.id.clone())) {
        Some(id) => id,
        None => return Err(CliError::config("the sandbox has no patient to read")),
    };
    progress.update("  … reading");
    let patient = patients.read(&id).await?;
    progress.clear();
    let name = patient
        .name
        .first()
        .map(|n| format!("{} {}", n.given.join(" "), n.family.clone().unwrap_or_default()))
        .unwrap_or_default();
    step(s, "read", &format!("Patient/{id}: {}", name.trim()));

    let mut page = patients.list(2).await?;
    let (mut pages, mut seen) = (1, page.matches().count());
    while let Some(next) = patients.fhir.next_page(&page).await? {
        pages += 1;
        seen += next.matches().count();
        progress.update(&format!("  … page {pages}"));
        page = next;
    }
    progress.clear();
    step(s, "page", &format!("_count=2 → {pages} pages, {seen} patients"));
    if writable {
        changes(&patients, &id, version.as_deref(), s, &mut progress).await?;
    }
    Ok(())
}

/// On a server that takes writes: a JSON Patch under If-Match, the history it
/// made, and a transaction whose Observation points at its Patient by urn:uuid.
async fn changes(
    patients: &Patients,
    id: &str,
    version: Option<&str>,
    s: Style,
    progress: &mut Progress,
) -> std::result::Result<(), CliError> {
    progress.update("  … patching");
    let ops: Patch =
        serde_json::from_value(serde_json::json!([{"op": "add", "path": "/gender", "value": "female"}]))
            .map_err(|e| CliError::config(format!("the demo's patch: {e}")))?;
    let patched = patients.patch(id, &ops, version).await?;
    progress.clear();
    let now = patched.meta.as_ref().and_then(|m| m.version_id.clone()).unwrap_or_default();
    step(s, "patch", &format!("gender=female under If-Match {} → version {now}", version.unwrap_or("-")));

    let history = patients.versions(id).await?;
    step(s, "history", &format!("Patient/{id} → {} versions", history.entry.len()));

    progress.update("  … sending a transaction");
    let mut tx = Transaction::new();
    let patient = tx.create(&Patient::new().with_name("Chalmers", ["Ada"]))?;
    let observation = Observation {
        status: Some("final".into()),
        code: Some(CodeableConcept { text: Some("body weight".into()), ..CodeableConcept::default() }),
        subject: Some(patient.reference()),
        value: Some(ObservationValue::Quantity(Quantity {
            value: Some("71.50".parse().map_err(|_| CliError::config("the demo's decimal"))?),
            unit: Some("kg".into()),
            ..Quantity::default()
        })),
        ..Observation::default()
    };
    let weight = tx.create(&observation)?;
    let response = patients.submit(&tx).await?;
    progress.clear();
    let stored: Observation =
        patients.fhir.read(response.outcome(&weight).and_then(|o| o.id()).unwrap_or_default()).await?;
    let subject = stored.subject.as_ref().and_then(|r| r.reference.clone()).unwrap_or_default();
    let value = match &stored.value {
        Some(ObservationValue::Quantity(q)) => {
            q.value.as_ref().map(|d| d.as_str().to_owned()).unwrap_or_default()
        }
        _ => String::new(),
    };
    step(s, "transaction", &format!("Patient + Observation → subject {subject}, {value} kg as written"));
    Ok(())
}
