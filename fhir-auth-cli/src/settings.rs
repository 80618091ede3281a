//! Merges flags, environment variables (both already folded by clap, flag first)
//! and a named profile from a TOML config file into one [`Settings`], with every
//! secret moved into auth-core's redacting, zeroizing types straight away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auth_core::{ClientSecret, DeviceSecret, SecretValue};
use serde::Deserialize;

use crate::cli::{Opts, PROVIDERS};
use crate::error::CliError;

/// The config file: `[profiles.NAME]` tables whose keys are the long option names.
///
/// ```toml
/// default-profile = "aidbox-dev"
/// [profiles.aidbox-dev]
/// provider = "aidbox"
/// token-url = "https://box.example/auth/token"
/// client-id = "api-client"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile; same names and meanings as the flags.
#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Profile {
    pub provider: Option<String>,
    pub token_url: Option<String>,
    pub fhir_base: Option<String>,
    pub client_id: Option<String>,
    // Secrets are read as text (auth-core's secret types do not deserialize) and
    // moved into those types in `Settings::resolve`.
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    pub auth_method: Option<String>,
    pub device_id: Option<String>,
    pub device_secret: Option<String>,
    pub santedb_version: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub audience: Option<String>,
    pub research_study: Option<String>,
    pub partner_id: Option<String>,
    pub subscription_key: Option<String>,
    pub private_key: Option<PathBuf>,
    pub key_id: Option<String>,
    pub alg: Option<String>,
    pub dpop: Option<bool>,
    pub dpop_key: Option<PathBuf>,
    pub store: Option<String>,
    pub store_key: Option<String>,
}

// Hand-written so a profile's secrets can never reach a log through `{:?}`.
impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// Everything a connection needs, merged and typed.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub provider: Option<String>,
    pub token_url: Option<String>,
    pub fhir_base: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<ClientSecret>,
    pub scope: Option<String>,
    pub auth_method: Option<String>,
    pub device_id: Option<String>,
    pub device_secret: Option<DeviceSecret>,
    pub santedb_version: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub audience: Option<String>,
    pub research_study: Option<String>,
    pub partner_id: Option<String>,
    pub subscription_key: Option<SecretValue>,
    pub private_key: Option<PathBuf>,
    pub key_id: Option<String>,
    pub alg: Option<String>,
    /// DPoP on (`--dpop`, or a `--dpop-key`).
    pub dpop: bool,
    pub dpop_key: Option<PathBuf>,
    pub store: Option<String>,
    pub store_key: Option<String>,
}

/// An empty variable (`FHIR_AUTH_SCOPE=`) means "not set": it must not hide the
/// profile's value.
fn unset_if_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl Settings {
    /// Flags and variables (`opts`) first, then the profile, if any.
    pub(crate) fn resolve(opts: &mut Opts) -> Result<Self, CliError> {
        let profile = load_profile(opts.profile.as_deref(), opts.config.as_deref())?.unwrap_or_default();
        let client_secret = opts.client_secret.take().filter(|v| !v.is_empty());
        let device_secret = opts.device_secret.take().filter(|v| !v.is_empty());
        let subscription_key = opts.subscription_key.take().filter(|v| !v.is_empty());
        let settings = Self {
            provider: opts.provider.clone().or(profile.provider),
            token_url: unset_if_empty(opts.token_url.clone()).or(profile.token_url),
            fhir_base: unset_if_empty(opts.fhir_base.clone()).or(profile.fhir_base),
            client_id: unset_if_empty(opts.client_id.clone()).or(profile.client_id),
            client_secret: client_secret.or(profile.client_secret.map(ClientSecret::new)),
            scope: unset_if_empty(opts.scope.clone()).or(profile.scope),
            auth_method: unset_if_empty(opts.auth_method.clone()).or(profile.auth_method),
            device_id: unset_if_empty(opts.device_id.clone()).or(profile.device_id),
            device_secret: device_secret.or(profile.device_secret.map(DeviceSecret::new)),
            santedb_version: unset_if_empty(opts.santedb_version.clone()).or(profile.santedb_version),
            client_cert: opts.client_cert.clone().or(profile.client_cert),
            client_key: opts.client_key.clone().or(profile.client_key),
            ca_cert: opts.ca_cert.clone().or(profile.ca_cert),
            audience: unset_if_empty(opts.audience.clone()).or(profile.audience),
            research_study: unset_if_empty(opts.research_study.clone()).or(profile.research_study),
            partner_id: unset_if_empty(opts.partner_id.clone()).or(profile.partner_id),
            subscription_key: subscription_key.or(profile.subscription_key.map(SecretValue::new)),
            private_key: match opts.private_key.as_slice() {
                [] => profile.private_key,
                [one] => Some(one.clone()),
                _ => {
                    return Err(CliError::config(
                        "--private-key is given once for a connection (several are for `keys jwks`)",
                    ));
                }
            },
            key_id: unset_if_empty(opts.key_id.clone()).or(profile.key_id),
            alg: unset_if_empty(opts.alg.clone()).or(profile.alg),
            dpop: opts.dpop
                || opts.dpop_key.is_some()
                || profile.dpop == Some(true)
                || profile.dpop_key.is_some(),
            dpop_key: opts.dpop_key.clone().or(profile.dpop_key),
            store: unset_if_empty(opts.store.clone()).or(profile.store),
            store_key: unset_if_empty(opts.store_key.clone()).or(profile.store_key),
        };
        settings.check_values()?;
        Ok(settings)
    }

    /// Profile values did not pass through clap's value parsers: check them here so
    /// a typo in the file is the same exit 2 as a typo on the command line.
    fn check_values(&self) -> Result<(), CliError> {
        let one_of = |name: &str, value: &Option<String>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v.as_str()) => Err(CliError::config(format!(
                "`{v}` is not a valid {name} (expected one of: {})",
                allowed.join(", ")
            ))),
            _ => Ok(()),
        };
        one_of("provider", &self.provider, &PROVIDERS)?;
        one_of("auth-method", &self.auth_method, &["basic", "post", "json"])?;
        one_of("santedb-version", &self.santedb_version, &["2", "3"])?;
        one_of("alg", &self.alg, &["RS384", "ES384"])
    }
}

/// The config file to read: explicit (must exist), else the default location if
/// it exists.
fn config_path(explicit: Option<&Path>) -> Option<(PathBuf, bool)> {
    if let Some(p) = explicit {
        return Some((p.to_owned(), true));
    }
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some((dir.join("fhir-auth").join("config.toml"), false))
}

fn load_profile(name: Option<&str>, explicit: Option<&Path>) -> Result<Option<Profile>, CliError> {
    let Some((path, required)) = config_path(explicit) else {
        return match name {
            Some(n) => Err(CliError::config(format!("profile `{n}` requested but no config file was found"))),
            None => Ok(None),
        };
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required && name.is_none() => return Ok(None),
        Err(e) => return Err(CliError::io(format!("cannot read the config file {}", path.display()), e)),
    };
    let mut file: ConfigFile = toml::from_str(&text).map_err(|e| {
        // The message can quote a value, and values include secrets: the position only.
        let at = e.span().map(|span| {
            let before = text.get(..span.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        CliError::config(format!(
            "the config file {} is not valid{} (a wrong key, or a value of the wrong type)",
            path.display(),
            at.unwrap_or_default()
        ))
    })?;
    let Some(name) = name.map(str::to_owned).or(file.default_profile.clone()) else { return Ok(None) };
    match file.profiles.remove(&name) {
        Some(p) => Ok(Some(p)),
        None => Err(CliError::config(format!("no profile `{name}` in {}", path.display()))),
    }
}
