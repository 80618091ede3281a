//! The sandbox as a standalone server: every vendor emulator on loopback, with its
//! URLs and test credentials printed, until Ctrl-C.
//!
//!     cargo run -p auth-providers --features sandbox --example sandbox -- [PORT]
//!
//! The credentials printed are the sandbox's own test values (the vendors'
//! documentation examples), not secrets of any real system.

use auth_providers::sandbox::{Sandbox, SandboxConfig, SanteDbEmulator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        None => 0,
        Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port number"))?,
    };
    let sandbox = Sandbox::start(SandboxConfig::default().with_port(port)).await?;

    let s = sandbox.santedb();
    println!("SanteDB   token {}  FHIR {}", s.token_url(), s.fhir_base());
    println!("          mTLS token {}  FHIR {}", s.mtls_token_url(), s.mtls_fhir_base());
    println!(
        "          client {} / {}  device {} / {}",
        SanteDbEmulator::CLIENT_ID,
        SanteDbEmulator::CLIENT_SECRET,
        SanteDbEmulator::DEVICE_ID,
        SanteDbEmulator::DEVICE_SECRET
    );
    let a = sandbox.aidbox();
    let (id, secret) = a.credentials();
    println!("Aidbox    token {}  FHIR {}", a.token_url(), a.fhir_base());
    println!("          client {id} / {}", secret.expose_secret());
    let m = sandbox.msk();
    println!("MSK       token {}  FHIR {}", m.token_url(), m.fhir_base_url());
    println!(
        "          client {} / {}  x-partnerid {}  researchstudy {}",
        m.client_id(),
        m.client_secret().expose_secret(),
        m.partner_id(),
        m.research_study()
    );
    let g = sandbox.graphnet();
    println!("Graphnet  token {}  FHIR {}", g.token_url(), g.fhir_base());
    println!(
        "          client {} / {}  Ocp-Apim-Subscription-Key {}",
        g.client_id(),
        g.client_secret().expose_secret(),
        g.subscription_key().expose_secret()
    );
    println!("serving on {} until Ctrl-C", sandbox.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
