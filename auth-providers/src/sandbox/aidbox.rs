//! Placeholder: the aidbox emulator is being written.

use axum::Router;

use super::SandboxConfig;

/// The aidbox emulator.
#[derive(Debug)]
pub struct AidboxEmulator {
    base: String,
}

impl AidboxEmulator {
    pub(crate) async fn start(public_base: &str, config: &SandboxConfig) -> std::io::Result<Self> {
        let _ = config;
        Ok(Self { base: public_base.to_owned() })
    }

    pub(crate) fn router(&self) -> Router {
        Router::new()
    }

    /// The emulator's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }
}
