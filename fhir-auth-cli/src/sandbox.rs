//! `fhir-auth sandbox`: the vendor emulators as a standalone server.

use auth_sandbox::{Sandbox, SandboxConfig, SanteDbEmulator};

use crate::error::CliError;
use crate::output::{Style, out};

pub(crate) async fn run(port: u16) -> Result<(), CliError> {
    let sandbox = Sandbox::start(SandboxConfig::default().with_port(port))
        .await
        .map_err(|e| CliError::io(format!("cannot start the sandbox on port {port}"), e))?;
    let st = Style::stdout();
    // These are the sandbox's own test values (the vendors' documentation
    // examples), not secrets of any real system, so printing them is the point.
    let s = sandbox.santedb();
    out(&st.bold("SanteDB"));
    out(&format!("  token URL     {}", s.token_url()));
    out(&format!("  FHIR base     {}", s.fhir_base()));
    out(&format!("  mTLS token    {}  FHIR {}", s.mtls_token_url(), s.mtls_fhir_base()));
    out(&format!("  client        {} / {}", SanteDbEmulator::CLIENT_ID, SanteDbEmulator::CLIENT_SECRET));
    out(&format!("  device        {} / {}", SanteDbEmulator::DEVICE_ID, SanteDbEmulator::DEVICE_SECRET));
    let a = sandbox.aidbox();
    let (id, secret) = a.credentials();
    out(&st.bold("Aidbox"));
    out(&format!("  token URL     {}", a.token_url()));
    out(&format!("  FHIR base     {}", a.fhir_base()));
    out(&format!("  client        {id} / {}", secret.expose_secret()));
    let m = sandbox.msk();
    out(&st.bold("MSK"));
    out(&format!("  token URL     {}", m.token_url()));
    out(&format!("  FHIR base     {}", m.fhir_base()));
    out(&format!("  client        {} / {}", m.client_id(), m.client_secret().expose_secret()));
    out(&format!("  partner id    {}  research study {}", m.partner_id(), m.research_study()));
    let g = sandbox.graphnet();
    out(&st.bold("Graphnet"));
    out(&format!("  token URL     {}", g.token_url()));
    out(&format!("  FHIR base     {}", g.fhir_base()));
    out(&format!("  client        {} / {}", g.client_id(), g.client_secret().expose_secret()));
    out(&format!("  subscription  {}", g.subscription_key().expose_secret()));
    let sm = sandbox.smart();
    out(&st.bold("SMART Backend Services"));
    out(&format!("  token URL     {}", sm.token_url()));
    out(&format!("  FHIR base     {}", sm.fhir_base()));
    out(&format!("  client        {}  key id {}", sm.client_id(), sm.key_id()));
    // Unlike the others, the SMART client's private key is no published value: it
    // is generated at start and lives only in this process, so it is not printed.
    out("  private key   generated at start, not printed: SmartEmulator::private_key() in auth-sandbox");
    out(&format!("serving on {} until Ctrl-C", sandbox.base_url()));
    tokio::signal::ctrl_c().await.map_err(|e| CliError::io("cannot wait for Ctrl-C", e))?;
    Ok(())
}
