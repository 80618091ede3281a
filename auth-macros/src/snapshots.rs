//! Expansion snapshots: what the macro writes for representative inputs, pretty
//! printed and compared with the files in `tests/expand/`. Set
//! `UPDATE_SNAPSHOTS=1` to rewrite them after an intended change.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;

/// The expansion, with `::auth_fhir` standing for what the user's `Cargo.toml`
/// would give (`runtime.rs` has its own tests), so the snapshots do not depend on
/// this crate's manifest.
fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    crate::expand::authenticated_api(attr, item, || syn::parse_quote!(::auth_fhir))
}

fn check(name: &str, attr: TokenStream, item: TokenStream) {
    let expanded = expand(attr, item);
    let file: syn::File = syn::parse2(expanded).expect("the expansion is valid Rust");
    let pretty = prettyplease::unparse(&file);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expand").join(format!("{name}.expanded.rs"));
    // Only `1` rewrites: `UPDATE_SNAPSHOTS=0` (or empty) must compare, as it reads.
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&path, &pretty).expect("snapshot written");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(pretty, want, "expansion of {name} changed; rerun with UPDATE_SNAPSHOTS=1 if intended");
}

#[test]
fn read_and_search() {
    check(
        "read_and_search",
        quote!(),
        quote! {
            impl Patients {
                #[get("Patient/{id}")]
                pub async fn read(&self, id: &str) -> Result<Patient>;

                #[get("Patient")]
                pub async fn search(&self, #[query] name: &str, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;
            }
        },
    );
}

#[test]
fn writes_with_headers_and_bodies() {
    check(
        "writes",
        quote!(client = api),
        quote! {
            impl Patients {
                #[post("Patient")]
                pub async fn create(&self, #[body] patient: &Patient, #[header("If-None-Exist")] condition: Option<&str>) -> Result<Created<Patient>>;

                #[put("Patient/{id}")]
                pub async fn update(&self, id: &str, #[body] patient: &Patient, #[header("If-Match")] version: &str) -> Result<Patient>;

                #[delete("Patient/{id}")]
                pub async fn delete(&self, id: &str) -> Result<()>;

                fn helper(&self) -> u32 { 1 }
            }
        },
    );
}

#[test]
fn patch_conditional_history_operations_transaction() {
    check(
        "fhir_kinds",
        quote!(),
        quote! {
            impl Records {
                #[patch("Patient/{id}")]
                pub async fn patch(&self, id: &str, #[body] ops: &Patch, #[if_match] version: Option<&str>) -> Result<Patient>;

                #[delete("Patient/{id}")]
                pub async fn delete(&self, id: &str, #[if_match] version: &str) -> Result<()>;

                #[put("Patient")]
                pub async fn upsert(&self, #[query] identifier: &str, #[body] p: &Patient) -> Result<Created<Patient>>;

                #[delete("Patient")]
                pub async fn delete_where(&self, #[params] condition: &SearchParams) -> Result<()>;

                #[history("Patient/{id}")]
                pub async fn versions(&self, id: &str, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;

                #[history("Patient")]
                pub async fn type_history(&self) -> Result<Bundle<Patient>>;

                #[history]
                #[scope("system/*.s")]
                pub async fn changes(&self, #[query("_since")] since: &str) -> Result<FhirResponse>;

                #[operation("Patient/{id}/$everything")]
                pub async fn everything(&self, id: &str) -> Result<Bundle<JsonResource>>;

                #[operation("Patient/$match")]
                pub async fn find(&self, #[body] input: &JsonResource) -> Result<Bundle<Patient>>;

                #[operation("$versions", get)]
                #[scope(none)]
                pub async fn versions_supported(&self, #[params] p: &SearchParams) -> Result<JsonResource>;

                #[transaction]
                #[scope("system/Patient.cu", "system/Observation.c")]
                pub async fn submit(&self, #[body] bundle: &Transaction) -> Result<TransactionResponse>;
            }
        },
    );
}

#[test]
fn errors_come_with_a_fallback() {
    check(
        "errors",
        quote!(),
        quote! {
            impl Patients {
                #[get("Patient/{id}")]
                pub async fn read(&self, pid: &str) -> Result<Patient>;
            }
        },
    );
}

#[test]
fn errors_with_every_kind_of_item() {
    // One endpoint is fine, one has a body, one a bad path, one no endpoint
    // attribute; the constant and the helper are kept as they are. The fallback
    // stubs every endpoint and removes the macro's attributes.
    check(
        "fallback",
        quote!(),
        quote! {
            impl<T: Clone> Patients<T> {
                const LIMIT: u32 = 10;

                /// Documented.
                #[get("Patient/{id}")]
                pub async fn read(&self, id: &str) -> Result<Patient>;

                #[get("Patient/{id}")]
                pub async fn with_body(&self, id: &str) -> Result<Patient> { todo!() }

                #[get("/Patient")]
                pub async fn search(&self, #[query] name: &str) -> Result<Bundle<Patient>>;

                pub async fn forgotten(&self, #[body] p: &Patient) -> Result<()>;

                fn helper(&self) -> u32 { 1 }
            }
        },
    );
}

#[test]
fn a_crate_option_is_the_only_runtime_path() {
    check(
        "custom_crate",
        quote!(crate = "my_reexport::fhir"),
        quote! {
            impl Patients {
                #[put("Patient/{id}")]
                pub async fn update(&self, id: &str, #[body] p: &Patient, #[query] mode: Option<&str>, #[params] extra: &SearchParams, #[header("If-Match")] v: &str) -> Result<Patient>;
            }
        },
    );
}

#[test]
fn nothing_but_the_crate_option_names_the_runtime() {
    let expanded = crate::expand::authenticated_api(
        quote!(crate = "my_reexport::fhir"),
        quote! {
            impl Patients {
                #[get("Patient/{id}")]
                pub async fn read(&self, id: &str) -> Result<Patient>;
                #[post("Patient")]
                pub async fn create(&self, #[body] p: &Patient, #[query] q: Option<u32>, #[header("X-A")] a: &str) -> Result<Created<Patient>>;
            }
        },
        || panic!("the default runtime is not looked up when `crate` is given"),
    )
    .to_string();
    assert!(!expanded.contains("auth_fhir"), "{expanded}");
    assert!(expanded.contains("my_reexport :: fhir :: __private"), "{expanded}");
    assert!(expanded.contains("my_reexport :: fhir :: FhirClient"), "{expanded}");
    assert!(expanded.contains("my_reexport :: fhir :: SearchParams"), "{expanded}");
}
