//! Turns [`Settings`] into a token manager and a FHIR client, with the vendor's
//! source from auth-providers (or the generic RFC 6749 one for `oauth2`).

use std::sync::Arc;
use std::time::Duration;

use auth_core::client::same_origin_redirects;
use auth_core::dpop::Dpop;
use auth_core::keys::{JwsAlgorithm, PrivateKey};
use auth_core::oauth2::OAuth2Source;
use auth_core::request::ClientAuthMethod;
use auth_core::store::{RedisStore, StoreKey};
use auth_core::{
    ApiProfile, AuthClient, Authenticator, CredentialSource, EndpointOptions, PrivateKeyPem, TokenManager,
};
use auth_fhir::FhirClient;
use auth_providers::aidbox::{AidboxAuthStyle, AidboxSource};
use auth_providers::graphnet::GraphnetSource;
use auth_providers::msk::MskSource;
use auth_providers::santedb::{SanteDbSource, SanteDbVersion};
use auth_providers::smart::{SigningAlgorithm, SmartSource};
use reqwest::{Certificate, Identity};
use zeroize::Zeroizing;

use crate::deadline;
use crate::error::CliError;
use crate::output::note;
use crate::settings::Settings;

/// A ready connection: tokens, and the FHIR server they are for.
#[derive(Debug)]
pub(crate) struct Connection {
    pub provider: String,
    pub auth: Arc<dyn Authenticator>,
    /// The HTTP client for API calls (carries the CA and client certificate).
    api_http: reqwest::Client,
    /// What the vendor's API wants on every request.
    profile: ApiProfile,
    fhir_base: Option<String>,
    /// The token URL, when known before the first request (SMART may discover it).
    token_url: Option<String>,
}

impl Connection {
    /// The FHIR client, with a token already in hand (so a deadline that passes
    /// can say whether the identity provider or the FHIR server kept us); fails
    /// with exit 2 when no FHIR base is known.
    pub(crate) async fn fhir(&self) -> Result<FhirClient, CliError> {
        let base = self.fhir_base()?;
        let api = AuthClient::builder(self.auth.clone())
            .http_client(self.api_http.clone())
            .profile(self.profile.clone())
            .build()?;
        // Built first: it refuses a base the token must not travel to.
        let fhir = FhirClient::new(api, base)?;
        self.token().await?;
        deadline::waiting_for(format!("the FHIR server at {}", shown(base)));
        Ok(fhir)
    }

    /// A token from the manager (fetched once per process: the store is in memory).
    pub(crate) async fn token(&self) -> Result<std::sync::Arc<auth_core::Token>, CliError> {
        deadline::waiting_for(match &self.token_url {
            Some(url) => format!("the token endpoint {}", shown(url)),
            None => format!(
                "the SMART configuration and token endpoint of {}",
                self.fhir_base.as_deref().unwrap_or("the server")
            ),
        });
        Ok(self.auth.token().await?)
    }

    /// The FHIR base; exit 2 when none is known.
    pub(crate) fn fhir_base(&self) -> Result<&str, CliError> {
        self.fhir_base.as_deref().ok_or_else(|| {
            CliError::config("a FHIR base URL is required: --fhir-base or FHIR_AUTH_FHIR_BASE")
        })
    }

    /// The HTTP client of API calls (trust and client certificate), for requests
    /// made by hand (`doctor`).
    pub(crate) fn api_http(&self) -> &reqwest::Client {
        &self.api_http
    }

    /// What the vendor's API wants on every request.
    pub(crate) fn profile(&self) -> &ApiProfile {
        &self.profile
    }

    /// The token URL as configured (`None` when SMART discovers it).
    pub(crate) fn token_url(&self) -> Option<&str> {
        self.token_url.as_deref()
    }
}

fn required<'a>(value: &'a Option<String>, flag: &str, var: &str) -> Result<&'a str, CliError> {
    value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| CliError::config(format!("--{flag} (or {var}) is required")))
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Zeroizing<String>, CliError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| CliError::io(format!("cannot read the {what} {}", path.display()), e))
}

/// The store `--store` names: `None` for the default in-memory one.
fn shared_store(settings: &Settings) -> Result<Option<RedisStore>, CliError> {
    match settings.store.as_deref() {
        None | Some("memory") => {
            if settings.store_key.is_some() {
                note("note: --store-key applies to shared stores only; ignored with the memory store");
            }
            Ok(None)
        }
        Some(url) if url.starts_with("redis://") => {
            let encoded = settings.store_key.as_deref().ok_or_else(|| {
                CliError::config("--store-key (or FHIR_AUTH_STORE_KEY) is required with a Redis store: base64 of 32 random bytes")
            })?;
            // One key id for every process sharing the store, so each can read
            // what another wrote.
            let key = StoreKey::from_base64("fhir-auth", encoded)?;
            Ok(Some(RedisStore::builder(url, key).build()?))
        }
        Some(url) if url.starts_with("rediss://") => {
            Err(CliError::NotAvailable("TLS to Redis (rediss://)".into()))
        }
        Some(other) => Err(CliError::config(format!(
            "unknown --store `{}` (expected `memory` or a redis:// URL)",
            other.split('@').next_back().unwrap_or_default()
        ))),
    }
}

/// The DPoP key `settings` ask for: the `--dpop-key` file, or a new ES256 key
/// for this run.
fn dpop(settings: &Settings) -> Result<Option<Dpop>, CliError> {
    if !settings.dpop {
        return Ok(None);
    }
    let Some(path) = &settings.dpop_key else { return Ok(Some(Dpop::generate()?)) };
    let pem = read_file(path, "DPoP key")?;
    let key = PrivateKey::from_pem_any(
        &PrivateKeyPem::new(pem.as_str()),
        &[JwsAlgorithm::Es256, JwsAlgorithm::Es384, JwsAlgorithm::Rs256],
    )
    .map_err(|e| CliError::config(format!("--dpop-key {}: {e}", path.display())))?;
    Ok(Some(Dpop::new(key)))
}

/// `builder` binding its tokens to `dpop`'s key, if there is one.
fn with_dpop<B: EndpointOptions>(builder: B, dpop: &Option<Dpop>) -> B {
    match dpop {
        Some(dpop) => builder.dpop(dpop.clone()),
        None => builder,
    }
}

/// A token manager for `source`, on the shared store if there is one.
fn manage<S: CredentialSource>(source: S, store: &Option<RedisStore>) -> Arc<dyn Authenticator> {
    match store {
        None => Arc::new(TokenManager::new(source)),
        Some(store) => Arc::new(TokenManager::builder(source).store(store.clone()).build()),
    }
}

/// Builds the connection `settings` describe.
pub(crate) fn connect(settings: Settings) -> Result<Connection, CliError> {
    let provider = settings
        .provider
        .clone()
        .ok_or_else(|| CliError::config("--provider (or FHIR_AUTH_PROVIDER) is required"))?;
    let store = shared_store(&settings)?;
    let dpop = dpop(&settings)?;
    if provider == "smart" {
        return smart(settings, provider, &store, &dpop);
    }
    // Options only the SMART provider reads: said once, not silently dropped.
    if settings.private_key.is_some() || settings.key_id.is_some() || settings.alg.is_some() {
        note("note: --private-key, --key-id and --alg apply to --provider smart only; ignored");
    }

    let token_url = required(&settings.token_url, "token-url", "FHIR_AUTH_TOKEN_URL")?.to_owned();
    let client_id = required(&settings.client_id, "client-id", "FHIR_AUTH_CLIENT_ID")?.to_owned();
    let secret = settings
        .client_secret
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::config("--client-secret (or FHIR_AUTH_CLIENT_SECRET) is required"))?;
    let scopes: Vec<String> =
        settings.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_owned).collect();

    let ca_pem = settings.ca_cert.as_deref().map(|p| read_file(p, "CA certificate")).transpose()?;
    let ca = ca_pem
        .as_ref()
        .map(|pem| {
            Certificate::from_pem(pem.as_bytes())
                .map_err(|_| CliError::config("--ca-cert is not a PEM certificate"))
        })
        .transpose()?;
    let client_pem = match (&settings.client_cert, &settings.client_key) {
        (Some(c), Some(k)) => Some((read_file(c, "client certificate")?, read_file(k, "client key")?)),
        (None, None) => None,
        _ => return Err(CliError::config("--client-cert and --client-key go together")),
    };
    let identity = client_pem
        .as_ref()
        .map(|(cert, key)| {
            // reqwest wants the key and the certificate in one PEM buffer.
            let both = Zeroizing::new(format!("{}\n{}", key.as_str(), cert.as_str()));
            Identity::from_pem(both.as_bytes())
                .map_err(|_| CliError::config("--client-cert/--client-key are not a PEM certificate and key"))
        })
        .transpose()?;
    // API calls may need the same trust and client certificate as token requests.
    let api_http = {
        let roots: Vec<_> = ca.iter().cloned().collect();
        auth_core::tls::client_builder(&roots, identity.as_ref())?
            .timeout(Duration::from_secs(30))
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| CliError::config(format!("cannot build the HTTP client: {e}")))?
    };
    let auth_method = settings.auth_method.as_deref();

    type Parts = (Arc<dyn Authenticator>, reqwest::Client, ApiProfile, Option<String>);
    let (auth, api_http, profile, default_base): Parts = match provider.as_str() {
        "santedb" => {
            let root = token_url.strip_suffix("/auth/oauth2_token").unwrap_or(&token_url).to_owned();
            let version = match settings.santedb_version.as_deref() {
                Some("2") => SanteDbVersion::V2,
                _ => SanteDbVersion::V3,
            };
            let mut b =
                SanteDbSource::builder(root, client_id, secret).version(version).token_url(&token_url);
            if !scopes.is_empty() {
                b = b.scopes(scopes);
            }
            match (&settings.device_id, &settings.device_secret) {
                (Some(id), Some(s)) => b = b.device(id.clone(), s.clone()),
                (None, None) => {}
                _ => return Err(CliError::config("--device-id and --device-secret go together")),
            }
            if let Some((cert, key)) = &client_pem {
                b = b.client_certificate(cert.as_str(), PrivateKeyPem::new(key.as_str()));
            }
            if let Some(pem) = &ca_pem {
                b = b.root_certificate_pem(pem.as_bytes());
            }
            if let Some(base) = &settings.fhir_base {
                b = b.fhir_base(base.clone());
            }
            let source = with_dpop(b, &dpop).build()?;
            let base = source.fhir_base().to_string();
            // SanteDB's own API client carries its mutual-TLS identity.
            let http = source.api_http_client().clone();
            let profile = source.api_profile();
            (manage(source, &store), http, profile, Some(base))
        }
        "aidbox" => {
            // Aidbox is addressed by the box's URL; the token URL sits under it.
            let base = token_url.strip_suffix("/auth/token").map(str::to_owned).unwrap_or_else(|| {
                settings
                    .fhir_base
                    .as_deref()
                    .and_then(|f| f.trim_end_matches('/').strip_suffix("/fhir"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| origin_of(&token_url))
            });
            let style = match auth_method {
                Some("json") => AidboxAuthStyle::Json,
                Some("post") => AidboxAuthStyle::FormPost,
                _ => AidboxAuthStyle::BasicForm,
            };
            let mut b =
                AidboxSource::builder(base, client_id, secret).token_url(&token_url).auth_style(style);
            if !scopes.is_empty() {
                b = b.scopes(scopes);
            }
            if let Some(a) = &settings.audience {
                b = b.audience(a.clone());
            }
            if let Some(ca) = &ca {
                b = b.add_root_certificate(ca.clone());
            }
            let source = with_dpop(b, &dpop).build()?;
            let base = source.fhir_base().to_string();
            let profile = source.api_profile();
            (manage(source, &store), api_http, profile, Some(base))
        }
        "msk" => {
            let partner = required(&settings.partner_id, "partner-id", "FHIR_AUTH_PARTNER_ID")?;
            let study = required(&settings.research_study, "research-study", "FHIR_AUTH_RESEARCH_STUDY")?;
            let mut b = MskSource::builder(origin_of(&token_url), client_id, secret)
                .token_url(&token_url)
                .partner_id(partner)
                .research_study(study);
            if let Some(base) = &settings.fhir_base {
                b = b.fhir_base(base.clone());
            }
            if !scopes.is_empty() {
                b = b.scope(scopes.join(" "));
            }
            if let Some(ca) = &ca {
                b = b.add_root_certificate(ca.clone());
            }
            let source = with_dpop(b, &dpop).build()?;
            let base = source.fhir_base().to_string();
            let profile = source.api_profile();
            (manage(source, &store), api_http, profile, Some(base))
        }
        "graphnet" => {
            let key = settings.subscription_key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
                CliError::config(
                    "--subscription-key (or FHIR_AUTH_SUBSCRIPTION_KEY) is required for Graphnet",
                )
            })?;
            let mut b = GraphnetSource::builder(&token_url, client_id, secret, key);
            if let Some(ca) = &ca {
                b = b.add_root_certificate(ca.clone());
            }
            if let Some(id) = &identity {
                b = b.identity(id.clone());
            }
            let source = with_dpop(b, &dpop).build()?;
            let profile = source.api_profile();
            (manage(source, &store), api_http, profile, None)
        }
        _ => {
            let method = match auth_method {
                Some("post") => ClientAuthMethod::ClientSecretPost,
                Some("json") => ClientAuthMethod::JsonBody,
                _ => ClientAuthMethod::ClientSecretBasic,
            };
            let mut b = OAuth2Source::builder(&token_url, client_id, secret).auth_method(method);
            if !scopes.is_empty() {
                b = b.scopes(scopes);
            }
            if let Some(a) = &settings.audience {
                b = b.audience(a.clone());
            }
            if let Some(ca) = &ca {
                b = b.add_root_certificate(ca.clone());
            }
            if let Some(id) = &identity {
                b = b.identity(id.clone());
            }
            let source = with_dpop(b, &dpop).build()?;
            let profile = source.api_profile();
            (manage(source, &store), api_http, profile, None)
        }
    };
    let fhir_base = settings.fhir_base.clone().or(default_base);
    Ok(Connection { provider, auth, api_http, profile, fhir_base, token_url: Some(token_url) })
}

/// SMART Backend Services: a signed assertion instead of a client secret, and the
/// token URL discovered from the FHIR base when `--token-url` is absent.
fn smart(
    settings: Settings,
    provider: String,
    store: &Option<RedisStore>,
    dpop: &Option<Dpop>,
) -> Result<Connection, CliError> {
    let client_id = required(&settings.client_id, "client-id", "FHIR_AUTH_CLIENT_ID")?.to_owned();
    let key_path = settings.private_key.as_deref().ok_or_else(|| {
        CliError::config("--private-key (or FHIR_AUTH_PRIVATE_KEY) is required for SMART: a PEM file")
    })?;
    let key_id = required(&settings.key_id, "key-id", "FHIR_AUTH_KEY_ID")?.to_owned();
    let alg = SigningAlgorithm::parse(required(&settings.alg, "alg", "FHIR_AUTH_ALG")?)?;
    let scope = required(&settings.scope, "scope", "FHIR_AUTH_SCOPE")?;
    if settings.client_secret.as_ref().is_some_and(|s| !s.is_empty()) {
        note("note: --client-secret is not used by --provider smart (it signs with --private-key); ignored");
    }
    let pem = read_file(key_path, "private key")?;
    let mut b = SmartSource::builder(client_id, PrivateKeyPem::new(pem.as_str()), alg, key_id)
        .scopes(scope.split_whitespace());
    drop(pem);
    match (&settings.token_url, &settings.fhir_base) {
        (Some(url), _) if !url.trim().is_empty() => b = b.token_url(url.clone()),
        (_, Some(base)) => b = b.fhir_base(base.clone()),
        _ => {
            return Err(CliError::config(
                "--token-url or --fhir-base is required for SMART (the token URL is discovered from \
                 {fhir-base}/.well-known/smart-configuration)",
            ));
        }
    }
    let ca = match settings.ca_cert.as_deref() {
        Some(path) => {
            let pem = read_file(path, "CA certificate")?;
            Some(
                Certificate::from_pem(pem.as_bytes())
                    .map_err(|_| CliError::config("--ca-cert is not a PEM certificate"))?,
            )
        }
        None => None,
    };
    let roots: Vec<_> = ca.iter().cloned().collect();
    if let Some(ca) = ca {
        b = b.add_root_certificate(ca);
    }
    let api_http = auth_core::tls::client_builder(&roots, None)?
        .timeout(Duration::from_secs(30))
        .redirect(same_origin_redirects())
        .build()
        .map_err(|e| CliError::config(format!("cannot build the HTTP client: {e}")))?;
    let source = with_dpop(b, dpop).build()?;
    let profile = source.api_profile();
    let auth = manage(source, store);
    let token_url = settings.token_url.filter(|u| !u.trim().is_empty());
    Ok(Connection { provider, auth, api_http, profile, fhir_base: settings.fhir_base, token_url })
}

/// `url` fit for a message: no user info, query or fragment (they can carry
/// credentials).
pub(crate) fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

/// `scheme://host:port` of `url` (the URL itself when it does not parse: the
/// builders then report it properly).
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}
