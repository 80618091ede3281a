// The SMART v2 scopes a client's endpoints need, checked at compile time: this
// case only builds if each constant lists exactly the scopes named here.
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, JsonResource, Observation, Patient, Transaction, TransactionResponse};
use auth_macros::authenticated_api;
use serde_json::Value;

/// `a` and `b` hold the same strings in the same order (`==` on `&str` is not
/// `const`).
const fn same(a: &[&str], b: &[&str]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        let (x, y) = (a[i].as_bytes(), b[i].as_bytes());
        if x.len() != y.len() {
            return false;
        }
        let mut j = 0;
        while j < x.len() {
            if x[j] != y[j] {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// Read and search on Patient merge into one scope; create on Observation.
pub struct Narrow {
    fhir: FhirClient,
}

#[authenticated_api]
impl Narrow {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;

    #[get("Patient")]
    pub async fn search(&self, #[query] name: &str) -> Result<Bundle<Patient>>;

    #[post("Observation")]
    pub async fn record(&self, #[body] o: &Observation) -> Result<Created<Observation>>;
}

const _: () = assert!(same(Narrow::SCOPES, &["system/Observation.c", "system/Patient.rs"]));

/// Every interaction's letter, in `cruds` order per type; vread and the history
/// of one resource read, the history of a type searches; `metadata` needs none.
pub struct Every {
    fhir: FhirClient,
}

#[authenticated_api]
impl Every {
    #[get("Patient/{id}/_history/{vid}")]
    pub async fn vread(&self, id: &str, vid: &str) -> Result<Patient>;

    #[history("Patient/{id}")]
    pub async fn versions(&self, id: &str) -> Result<Bundle<Patient>>;

    #[put("Patient/{id}")]
    pub async fn update(&self, id: &str, #[body] p: &Patient) -> Result<Patient>;

    #[patch("Patient/{id}")]
    pub async fn patch(&self, id: &str, #[body] ops: &Value) -> Result<Patient>;

    #[delete("Encounter/{id}")]
    pub async fn delete(&self, id: &str) -> Result<()>;

    #[history("Observation")]
    pub async fn observation_changes(&self) -> Result<Bundle<Observation>>;

    #[post("Observation/_search")]
    pub async fn search_by_post(&self, #[query] code: &str) -> Result<Bundle<Observation>>;

    #[get("metadata")]
    pub async fn capabilities(&self) -> Result<JsonResource>;
}

const _: () = assert!(same(Every::SCOPES, &["system/Encounter.d", "system/Observation.s", "system/Patient.ru"]));

/// What the macro cannot derive is declared, and merged with the rest; a
/// declared scope replaces the derived one (`$everything` reads every type).
pub struct Declared {
    fhir: FhirClient,
}

#[authenticated_api]
impl Declared {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;

    #[transaction]
    #[scope("system/Patient.c", "system/Observation.c")]
    pub async fn submit(&self, #[body] bundle: &Transaction) -> Result<TransactionResponse>;

    #[operation("Patient/{id}/$everything")]
    #[scope("system/*.r")]
    pub async fn everything(&self, id: &str) -> Result<Bundle<JsonResource>>;

    #[operation("$ping")]
    #[scope(none)]
    pub async fn ping(&self) -> Result<JsonResource>;

    #[get("Observation")]
    #[scope("system/Observation.rs?category=laboratory")]
    pub async fn labs(&self) -> Result<Bundle<Observation>>;
}

const _: () = assert!(same(
    Declared::SCOPES,
    &["system/*.r", "system/Observation.c", "system/Observation.rs?category=laboratory", "system/Patient.cr"]
));

fn main() {}
