//! Placeholder: the msk emulator is being written.

use axum::Router;

use super::SandboxConfig;

/// The msk emulator.
#[derive(Debug)]
pub struct MskEmulator {
    base: String,
}

impl MskEmulator {
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
