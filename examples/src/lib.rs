//! Small programs for application developers and provider authors, each runnable
//! against the embedded sandbox with no setup:
//!
//! | program | shows |
//! |---|---|
//! | `cargo run -p examples --example quickstart` | the token engine: herd, replay, refresh ahead and an identity provider outage on virtual time |
//! | `cargo run -p examples --example patient_client` | a typed FHIR client written with `#[authenticated_api]` |
//! | `cargo run -p examples --example custom_provider` | a credential source of your own, with the whole engine behind it |
