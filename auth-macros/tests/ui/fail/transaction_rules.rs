#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_fhir::{SearchParams, Transaction, TransactionResponse};

// A transaction posts one Bundle to the base: no path, no query.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[transaction]
    pub async fn nothing_to_send(&self) -> Result<TransactionResponse>;

    #[transaction]
    pub async fn with_query(&self, #[body] tx: &Transaction, #[query] mode: &str, #[params] p: &SearchParams) -> Result<TransactionResponse>;

    #[transaction]
    pub async fn with_path(&self, #[body] tx: &Transaction, id: &str) -> Result<TransactionResponse>;

    #[transaction("Bundle")]
    pub async fn with_a_path(&self, #[body] tx: &Transaction) -> Result<TransactionResponse>;

    #[transaction]
    pub async fn two(&self, #[body] a: &Transaction, #[body] b: &Transaction) -> Result<TransactionResponse>;

    #[transaction]
    pub async fn if_match(&self, #[body] tx: &Transaction, #[if_match] v: &str) -> Result<TransactionResponse>;
}

fn main() {}
