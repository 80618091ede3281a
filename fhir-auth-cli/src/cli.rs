//! The command line. Every connection option is global (accepted before or after
//! the subcommand) and has an environment variable; the names are an interface
//! other programs depend on, so they must stay stable.

use std::path::PathBuf;

use auth_core::{ClientSecret, DeviceSecret, SecretValue};
use clap::{Args, Parser, Subcommand};

// Secrets are parsed straight into auth-core's redacting types, so not even a
// `{:?}` of the options can show one.
fn client_secret(s: &str) -> Result<ClientSecret, std::convert::Infallible> {
    Ok(ClientSecret::new(s))
}
fn device_secret(s: &str) -> Result<DeviceSecret, std::convert::Infallible> {
    Ok(DeviceSecret::new(s))
}
fn secret_value(s: &str) -> Result<SecretValue, std::convert::Infallible> {
    Ok(SecretValue::new(s))
}

pub(crate) const PROVIDERS: [&str; 6] = ["santedb", "aidbox", "msk", "graphnet", "smart", "oauth2"];

#[derive(Debug, Parser)]
#[command(
    name = "fhir-auth",
    version,
    about = "Get OAuth 2.0 client-credentials tokens and talk to FHIR servers.",
    long_about = "Get OAuth 2.0 client-credentials tokens and talk to FHIR servers.\n\n\
                  Without a subcommand, runs the offline demo against the embedded sandbox.\n\
                  Options may also come from FHIR_AUTH_* environment variables or a profile\n\
                  in a TOML config file; a flag beats its variable, which beats the profile.\n\n\
                  Exit codes: 0 success, 2 usage or configuration, 3 authentication,\n\
                  4 FHIR error, 5 network.",
    after_long_help = "Config file (TOML), keys named like the long options:\n\n  \
                       default-profile = \"box\"\n  \
                       [profiles.box]\n  \
                       provider = \"aidbox\"\n  \
                       token-url = \"https://box.example/auth/token\"\n  \
                       client-id = \"api-client\"\n\n\
                       Keep secrets in FHIR_AUTH_CLIENT_SECRET (or the file, readable by you only): \
                       flags are visible to other users in the process list."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub opts: Opts,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Walk every vendor of the embedded sandbox: token, create, read, search, page (the default).
    Demo,
    /// Serve the vendor emulators on loopback until Ctrl-C.
    Sandbox {
        /// Port of the plain-HTTP listener (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Fetch a token and describe it (never the token itself unless --reveal).
    Token,
    /// Read one resource: `read Patient/123`.
    Read {
        /// `<Type>/<id>`
        reference: String,
    },
    /// Search a resource type: `search Patient name=chalmers _count=10 --all`.
    Search {
        /// The resource type.
        resource_type: String,
        /// Search parameters as `name=value`.
        params: Vec<String>,
        /// Follow every `next` link and merge the pages.
        #[arg(long)]
        all: bool,
    },
    /// Create a resource from a JSON file (`-` for standard input).
    Create {
        /// The resource type.
        resource_type: String,
        /// The resource as FHIR JSON.
        #[arg(long)]
        file: PathBuf,
    },
    /// Update a resource (`Patient/123`), or the one matching a search
    /// (`'Patient?identifier=x|1'`, created if none does); prints the result.
    Update {
        /// `<Type>/<id>` or `'<Type>?name=value'`.
        target: String,
        /// The resource as FHIR JSON (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
        /// Only if the server still has this version (a stale one exits 4).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Delete a resource (`Patient/123`) or what matches a search (`'Patient?identifier=x|1'`).
    Delete {
        /// `<Type>/<id>` or `'<Type>?name=value'`.
        target: String,
    },
    /// Apply a JSON Patch (a file holding an array of operations); prints the patched resource.
    Patch {
        /// `<Type>/<id>`.
        target: String,
        /// The JSON Patch (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
        /// Only if the server still has this version (a stale one exits 4).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Every version of a resource (`Patient/123`) or of a type (`Patient`), newest first.
    History {
        /// `<Type>/<id>` or `<Type>`.
        target: String,
        /// Follow every `next` link and merge the pages.
        #[arg(long)]
        all: bool,
    },
    /// Bulk Data export into a directory: `DIR/<Type>.ndjson`, `DIR/errors.ndjson`,
    /// `DIR/manifest.json`. Interrupted, the same command takes the same job up
    /// again (no second kick-off); only `--cancel` deletes the job on the server.
    /// Exit codes: 0 complete, 2 usage, 3 authentication, 4 the server refused the
    /// kick-off or the job failed, 5 network.
    Export {
        /// The directory to write to (and keep the job's state in).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Patient-level export (`Patient/$export`).
        #[arg(long, conflicts_with = "group")]
        patient: bool,
        /// Group-level export (`Group/ID/$export`).
        #[arg(long, value_name = "ID")]
        group: Option<String>,
        /// Only these resource types (comma-separated).
        #[arg(long = "type", value_name = "T1,T2", value_delimiter = ',')]
        types: Vec<String>,
        /// Only resources changed after this FHIR instant.
        #[arg(long, value_name = "INSTANT")]
        since: Option<String>,
        /// A `_typeFilter` search (`Observation?status=final`); repeatable.
        #[arg(long = "type-filter", value_name = "QUERY")]
        type_filter: Vec<String>,
        /// Kick off with POST and a Parameters body instead of GET.
        #[arg(long)]
        post: bool,
        /// Also send the token to files on this origin when the manifest requires it; repeatable.
        #[arg(long, value_name = "URL")]
        trust_origin: Vec<String>,
        /// Delete the job kept in DIR on the server, and its state.
        #[arg(long)]
        cancel: bool,
    },
    /// Send a Bundle of type transaction or batch; prints the response Bundle. A
    /// rejected transaction exits 4; a batch whose entries failed exits 0.
    Transaction {
        /// The Bundle as FHIR JSON (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
    },
    /// Probe what the server really does (token lifetime and its unit, how a bad
    /// token is refused, Retry-After, paging links, FHIR version, SMART
    /// configuration, clock skew) and say what to configure.
    Doctor,
    /// Print a shell completion script: `fhir-auth completions bash > ~/.local/share/bash-completion/completions/fhir-auth`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Signing keys for SMART Backend Services (`private_key_jwt`) and the JWK Set
    /// to host at the client's registered JWK Set URL.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

/// `fhir-auth keys …`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Write a new private key to DIR/<KID>.pem (PKCS#8, readable by you only)
    /// for --alg (RS384 or ES384), and print its public JWK Set.
    Generate {
        /// The key id (`kid`) servers find the key by; also the file's name.
        #[arg(long)]
        kid: String,
        /// The directory to write the key to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the public JWK Set of every --private-key (each named by its file
    /// name without `.pem`, as `keys generate` writes it): keep the new key and
    /// the old one in it while rotating.
    Jwks,
}

/// Connection options. Everything is optional here: what is required depends on
/// the provider and is checked once flags, variables and the profile are merged.
#[derive(Debug, Default, Clone, Args)]
pub(crate) struct Opts {
    /// Vendor of the identity provider and FHIR server.
    #[arg(long, global = true, env = "FHIR_AUTH_PROVIDER", value_parser = PROVIDERS)]
    pub provider: Option<String>,
    /// Token endpoint URL.
    #[arg(long, global = true, env = "FHIR_AUTH_TOKEN_URL")]
    pub token_url: Option<String>,
    /// FHIR base URL (derived from the token URL where the vendor defines one).
    #[arg(long, global = true, env = "FHIR_AUTH_FHIR_BASE")]
    pub fhir_base: Option<String>,
    /// OAuth 2.0 client id.
    #[arg(long, global = true, env = "FHIR_AUTH_CLIENT_ID")]
    pub client_id: Option<String>,
    /// OAuth 2.0 client secret (prefer the variable: flags show up in `ps`).
    #[arg(long, global = true, env = "FHIR_AUTH_CLIENT_SECRET", hide_env_values = true, allow_hyphen_values = true, value_parser = client_secret)]
    pub client_secret: Option<ClientSecret>,
    /// Space-separated scopes to ask for.
    #[arg(long, global = true, env = "FHIR_AUTH_SCOPE")]
    pub scope: Option<String>,
    /// How the client authenticates at the token endpoint (aidbox, oauth2).
    #[arg(long, global = true, env = "FHIR_AUTH_AUTH_METHOD", value_parser = ["basic", "post", "json"])]
    pub auth_method: Option<String>,
    /// SanteDB device (node) id.
    #[arg(long, global = true, env = "FHIR_AUTH_DEVICE_ID")]
    pub device_id: Option<String>,
    /// SanteDB device (node) secret.
    #[arg(long, global = true, env = "FHIR_AUTH_DEVICE_SECRET", hide_env_values = true, allow_hyphen_values = true, value_parser = device_secret)]
    pub device_secret: Option<DeviceSecret>,
    /// SanteDB server generation.
    #[arg(long, global = true, env = "FHIR_AUTH_SANTEDB_VERSION", value_parser = ["2", "3"])]
    pub santedb_version: Option<String>,
    /// Client certificate for mutual TLS (PEM file).
    #[arg(long, global = true, env = "FHIR_AUTH_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// Private key of the client certificate (PEM file).
    #[arg(long, global = true, env = "FHIR_AUTH_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Extra root certificate to trust (PEM file).
    #[arg(long, global = true, env = "FHIR_AUTH_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// `audience` parameter of the token request (aidbox, oauth2).
    #[arg(long, global = true, env = "FHIR_AUTH_AUDIENCE")]
    pub audience: Option<String>,
    /// MSK research study (`researchstudy`).
    #[arg(long, global = true, env = "FHIR_AUTH_RESEARCH_STUDY")]
    pub research_study: Option<String>,
    /// MSK partner id (`x-partnerid`).
    #[arg(long, global = true, env = "FHIR_AUTH_PARTNER_ID")]
    pub partner_id: Option<String>,
    /// Graphnet APIM subscription key.
    #[arg(long, global = true, env = "FHIR_AUTH_SUBSCRIPTION_KEY", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_value)]
    pub subscription_key: Option<SecretValue>,
    /// SMART backend services signing key (PEM file); repeat for `keys jwks`.
    #[arg(long, global = true, env = "FHIR_AUTH_PRIVATE_KEY")]
    pub private_key: Vec<PathBuf>,
    /// SMART backend services key id (`kid`).
    #[arg(long, global = true, env = "FHIR_AUTH_KEY_ID")]
    pub key_id: Option<String>,
    /// SMART backend services signing algorithm.
    #[arg(long, global = true, env = "FHIR_AUTH_ALG", value_parser = ["RS384", "ES384"])]
    pub alg: Option<String>,
    /// Bind tokens to a key of this run (DPoP, RFC 9449): a proof with every
    /// token request and API call, so a leaked token is useless without the key.
    #[arg(long, global = true, env = "FHIR_AUTH_DPOP", value_parser = clap::builder::BoolishValueParser::new())]
    pub dpop: bool,
    /// The DPoP key (PEM: EC P-256 for ES256, the default, or RSA for RS256)
    /// instead of a new one per run; implies --dpop.
    #[arg(long, global = true, env = "FHIR_AUTH_DPOP_KEY")]
    pub dpop_key: Option<PathBuf>,
    /// Where tokens are kept: `memory` (default).
    #[arg(long, global = true, env = "FHIR_AUTH_STORE")]
    pub store: Option<String>,
    /// Key prefix in a shared store.
    #[arg(
        long,
        global = true,
        env = "FHIR_AUTH_STORE_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub store_key: Option<String>,
    /// Named profile in the config file.
    #[arg(long, global = true, env = "FHIR_AUTH_PROFILE")]
    pub profile: Option<String>,
    /// Config file (default: $XDG_CONFIG_HOME/fhir-auth/config.toml or ~/.config/fhir-auth/config.toml).
    #[arg(long, global = true, env = "FHIR_AUTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true, env = "FHIR_AUTH_JSON")]
    pub json: bool,
    /// Print the access token too (it is a credential: keep it out of logs; no
    /// environment variable on purpose, so it is never on by accident).
    #[arg(long, global = true)]
    pub reveal: bool,
    /// Overall deadline of the command: seconds, or `500ms`, `30s`, `2m` (`0`: none).
    /// Default 15 s, except for `export`, `sandbox`, `demo` and `--all`, which wait
    /// as long as it takes unless given one.
    #[arg(long, global = true, env = "FHIR_AUTH_TIMEOUT", value_name = "DURATION", value_parser = crate::deadline::parse_timeout)]
    pub timeout: Option<std::time::Duration>,
    /// No progress and no notes on stderr (warnings and errors still show).
    #[arg(long, short, global = true, env = "FHIR_AUTH_QUIET")]
    pub quiet: bool,
}

impl Opts {
    /// Whether any option names a server to talk to (from a flag or a variable).
    pub(crate) fn names_a_server(&self) -> bool {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.is_empty());
        self.provider.is_some() || set(&self.token_url) || set(&self.fhir_base) || set(&self.client_id)
    }
}
