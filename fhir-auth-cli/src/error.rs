//! The CLI's failures and the exit code each one maps to. Scripts branch on the
//! code, so the mapping is part of the interface: 2 usage or configuration,
//! 3 authentication, 4 FHIR, 5 network.

use std::fmt;

use auth_core::ErrorKind;

/// Exit code for usage or configuration problems (also what clap uses).
pub(crate) const EXIT_CONFIG: u8 = 2;
/// Exit code when the token endpoint (or the API, about the token) refused us.
pub(crate) const EXIT_AUTH: u8 = 3;
/// Exit code when the FHIR server answered an error status.
pub(crate) const EXIT_FHIR: u8 = 4;
/// Exit code when a server could not be reached in time.
pub(crate) const EXIT_NETWORK: u8 = 5;
/// Exit code for anything else (a store or internal error): not a promise to scripts.
pub(crate) const EXIT_OTHER: u8 = 1;

/// Everything that ends a command unsuccessfully.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Usage or configuration the CLI itself refuses.
    Config(String),
    /// A feature the command line names but the workspace does not have yet.
    NotAvailable(String),
    /// A failure reported by the library.
    Core(auth_core::Error),
    /// Local I/O (reading a file, binding a port).
    Io { what: String, source: std::io::Error },
    /// A FHIR server whose paging cannot be followed to an end.
    Paging(String),
    /// Credentials that "worked" but gave nothing usable (a token issued already
    /// expired): an authentication failure for whoever asked.
    Auth(String),
    /// The command's overall deadline passed while it waited for `what`.
    Timeout { after: std::time::Duration, what: String },
}

impl CliError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    pub(crate) fn fhir_paging(message: impl Into<String>) -> Self {
        Self::Paging(message.into())
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }

    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::NotAvailable(_) => EXIT_CONFIG,
            // A file that cannot be read is a configuration problem of the caller.
            Self::Io { .. } => EXIT_CONFIG,
            Self::Core(e) => exit_code_of(e),
            Self::Paging(_) => EXIT_FHIR,
            Self::Auth(_) => EXIT_AUTH,
            Self::Timeout { .. } => EXIT_NETWORK,
        }
    }
}

/// Maps the library's error classes onto the CLI's exit codes.
pub(crate) fn exit_code_of(error: &auth_core::Error) -> u8 {
    match error.kind() {
        ErrorKind::Configuration => EXIT_CONFIG,
        ErrorKind::OAuth | ErrorKind::Unauthorized | ErrorKind::InsufficientScope => EXIT_AUTH,
        // A malformed answer from the token endpoint means we got no usable
        // credentials: an authentication failure from the caller's point of view.
        // The FHIR runtime reports its own malformed answers under "FHIR search".
        ErrorKind::InvalidResponse if is_token_endpoint(error) => EXIT_AUTH,
        ErrorKind::InvalidResponse | ErrorKind::Api => EXIT_FHIR,
        ErrorKind::Transport | ErrorKind::Timeout | ErrorKind::Unavailable => EXIT_NETWORK,
        _ => EXIT_OTHER,
    }
}

// auth-core names the exchange in the message ("token request"); the FHIR
// runtime says "FHIR request"/"FHIR search". No accessor exposes it, so the
// message is the only place to tell them apart.
fn is_token_endpoint(error: &auth_core::Error) -> bool {
    error.to_string().starts_with("invalid response from token request")
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) => write!(f, "{m}"),
            Self::Paging(m) => write!(f, "search paging: {m}"),
            Self::NotAvailable(m) => write!(f, "{m}: not available yet"),
            Self::Auth(m) => write!(f, "authentication failed: {m}"),
            Self::Timeout { after, what } => write!(
                f,
                "timed out after {:.1} s waiting for {what} (--timeout or FHIR_AUTH_TIMEOUT waits longer)",
                after.as_secs_f64()
            ),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::Core(e) => match e.oauth_error() {
                // RFC 6749 §5.2: the code and description are what an operator needs.
                Some(o) => {
                    write!(
                        f,
                        "authentication failed: the token endpoint answered `{}` (HTTP {})",
                        o.code, o.status
                    )?;
                    if let Some(d) = &o.description {
                        write!(f, ": {d}")?;
                    }
                    Ok(())
                }
                None => write!(f, "{e}"),
            },
        }
    }
}

impl std::error::Error for CliError {}

impl From<auth_core::Error> for CliError {
    fn from(e: auth_core::Error) -> Self {
        Self::Core(e)
    }
}
