//! # auth-sandbox
//!
//! Stand-ins for the servers this workspace talks to, served over real HTTP(S) on
//! loopback: an emulator of every vendor, as strict as the real servers as
//! documented, and a generic test identity provider. They are for tests, demos and
//! `fhir-auth sandbox`, **never for production**: their credentials are published
//! test values, their keys are generated at start and nothing is persisted.
//!
//! | module | what it holds |
//! |---|---|
//! | `santedb` | [`SanteDbEmulator`]: OAuth service (`/auth/oauth2_token`, `/auth/signout`), device credentials, a mutual-TLS listener of its own, FHIR in JSON or XML |
//! | `aidbox` | [`AidboxEmulator`]: `/auth/token` (client credentials, rotating refresh tokens), Sessions, FHIR |
//! | `msk` | [`MskEmulator`]: IBM API Connect's token endpoint and Blaze's FHIR API (partner id, research study) |
//! | `graphnet` | [`GraphnetEmulator`]: token endpoint, and FHIR behind Azure APIM's subscription key |
//! | `smart` | [`SmartEmulator`]: SMART Backend Services (`private_key_jwt` assertions, discovery) |
//! | [`idp`] | [`TestIdentityProvider`]: a generic OAuth 2.0 token endpoint and protected API, with scripted answers, on a port of its own |
//! | [`tokens`] | [`TokenRegistry`]: the clients, issued tokens and request counts every one of them keeps |
//! | [`faults`] | [`Faults`]: latency, 5xx, dropped connections and hangs, per emulator |
//! | [`fhir`] | [`FhirStore`](fhir::FhirStore): the in-memory FHIR R4 server the emulators share (any resource type, history, batch and transaction, PATCH, operations) |
//! | [`tls`] | the certificate authority and mutual-TLS listener behind SanteDB's HTTPS port |
//!
//! One plain-HTTP port serves the vendor emulators, each under a path prefix
//! (`/santedb`, `/aidbox`, `/msk`, `/graphnet`, `/smart`); SanteDB's mutual-TLS
//! endpoint listens on a second port of its own. The test identity provider is
//! started on its own ([`TestIdentityProvider::start`]).
//!
//! Every one of them offers the same accessors where they apply: `base_url()`,
//! `token_url()`, `fhir_base()`, `client_id()`, `client_secret()` and `credentials()`
//! (SMART signs with a key instead: `key_id()`, `private_key()`), `registry()`,
//! `faults()` (every route) and `idp_faults()` (the identity provider only),
//! `token_requests()`, `api_requests()` and `api_rejections()` (counts), and
//! `token_log()` / `api_log()` (what arrived, as `<Emulator>TokenRequest` /
//! `<Emulator>ApiRequest` records whose `Debug` never shows a secret).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use auth_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! println!("Aidbox token URL: {}", sandbox.aidbox().token_url());
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]
// Emulator handlers bail out early with the vendor's error answer; a `Response`
// as the error of those helpers reads best, and their size does not matter here.
#![allow(clippy::result_large_err)]

pub mod faults;
pub mod fhir;
pub mod idp;
pub mod tls;
pub mod tokens;

mod aidbox;
mod graphnet;
mod msk;
mod santedb;
mod smart;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use auth_core::clock::{Clock, SystemClock};
use axum::Router;
use tokio::task::JoinHandle;

pub use aidbox::{AidboxEmulator, AidboxSessionRequest, AidboxTokenRequest};
pub use faults::Faults;
pub use graphnet::{GraphnetApiRequest, GraphnetEmulator, GraphnetTokenRequest};
pub use idp::TestIdentityProvider;
pub use msk::{MskApiRequest, MskEmulator, MskTokenRequest};
pub use santedb::{SanteDbApiRequest, SanteDbEmulator, SanteDbServerVersion, SanteDbTokenRequest};
pub use smart::{KeyAlgorithm, SmartEmulator, SmartTokenRequest};
pub use tokens::TokenRegistry;

/// Settings shared by every emulator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// Port of the plain-HTTP listener (0: any free port).
    pub port: u16,
    /// Lifetime of issued tokens (default 5 minutes; short ones for tests).
    pub token_lifetime: Duration,
    /// The clock tokens expire on (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
    /// Put in front of every opaque token value issued (default empty): a known
    /// canary that tests search logs and errors for. JWTs are left whole.
    pub token_marker: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            port: 0,
            token_lifetime: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
            token_marker: String::new(),
        }
    }
}

impl SandboxConfig {
    /// Listens on `port` (0: any free port).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Issues tokens that live `lifetime`.
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Judges expiry on `clock`.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Starts every opaque access and refresh token value with `marker` (a secret
    /// canary for leak tests); JWTs stay JWTs.
    pub fn with_token_marker(mut self, marker: impl Into<String>) -> Self {
        self.token_marker = marker.into();
        self
    }
}

/// The running emulators. They stop when this is dropped.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    santedb: SanteDbEmulator,
    aidbox: AidboxEmulator,
    msk: MskEmulator,
    graphnet: GraphnetEmulator,
    smart: SmartEmulator,
    server: JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Sandbox {
    /// Starts every emulator on loopback.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Self> {
        // Every emulator writes its tokens' lifetime (`exp`, `expires_in`) from this:
        // capped once here, so an absurd setting cannot overflow one of them.
        let token_lifetime = config.token_lifetime.min(tokens::MAX_SANDBOX_LIFETIME);
        let config = SandboxConfig { token_lifetime, ..config };
        // Clients of this server (a plain `reqwest::Client::new()` in tests and demos
        // included) need the process' TLS crypto provider: the library's.
        auth_core::tls::install_default_provider();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let santedb = SanteDbEmulator::start(&format!("{base}/santedb"), &config).await?;
        let aidbox = AidboxEmulator::start(&format!("{base}/aidbox"), &config).await?;
        let msk = MskEmulator::start(&format!("{base}/msk"), &config).await?;
        let graphnet = GraphnetEmulator::start(&format!("{base}/graphnet"), &config).await?;
        let smart = SmartEmulator::start(&format!("{base}/smart"), &config).await?;
        let app = Router::new()
            .nest("/santedb", santedb.router())
            .nest("/aidbox", aidbox.router())
            .nest("/msk", msk.router())
            .nest("/graphnet", graphnet.router())
            .nest("/smart", smart.router());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        Ok(Self { addr, santedb, aidbox, msk, graphnet, smart, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The plain-HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SanteDB emulator.
    pub fn santedb(&self) -> &SanteDbEmulator {
        &self.santedb
    }

    /// The Aidbox emulator.
    pub fn aidbox(&self) -> &AidboxEmulator {
        &self.aidbox
    }

    /// The MSK emulator.
    pub fn msk(&self) -> &MskEmulator {
        &self.msk
    }

    /// The Graphnet emulator.
    pub fn graphnet(&self) -> &GraphnetEmulator {
        &self.graphnet
    }

    /// The SMART Backend Services emulator.
    pub fn smart(&self) -> &SmartEmulator {
        &self.smart
    }

    /// Serves until the process is stopped (for a standalone sandbox).
    pub async fn run_forever(self) {
        std::future::pending::<()>().await;
        drop(self);
    }
}
