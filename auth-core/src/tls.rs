//! The trust every HTTP client of this library is built with: rustls, the Mozilla
//! root set compiled in (the certificates of the `webpki-roots` set, from the
//! `webpki-root-certs` crate), plus the private CAs you add; never the operating
//! system's store. A client identity (mutual TLS) is presented when given.
//!
//! The trust is the same on every machine and cannot be widened by whatever else
//! is installed in the system store (or `SSL_CERT_FILE`). Certificate verification
//! cannot be turned off.
//!
//! # Crypto provider
//!
//! rustls' cryptography comes from a provider chosen by this crate's features:
//!
//! - `ring` (the default): *ring* for TLS and RustCrypto for JWT signatures, both
//!   quick to build;
//! - `aws-lc`: aws-lc-rs for both, for those who need its FIPS-validated module. It
//!   wins when both features are enabled. (FIPS mode itself needs aws-lc-rs' `fips`
//!   feature: install `rustls::crypto::default_fips_provider()` before building a
//!   client, and it is used.)
//!
//! [`client_builder`] installs that provider as the process default unless the
//! application installed one first, which is then used.

use std::sync::{Arc, Once};

use reqwest::{Certificate, ClientBuilder, Identity};
use rustls::crypto::CryptoProvider;

use crate::error::{Error, Result};

/// The provider this crate's features choose: aws-lc-rs with `aws-lc`, else *ring*.
fn featured_provider() -> Option<CryptoProvider> {
    #[cfg(feature = "aws-lc")]
    return Some(rustls::crypto::aws_lc_rs::default_provider());
    #[cfg(all(feature = "ring", not(feature = "aws-lc")))]
    return Some(rustls::crypto::ring::default_provider());
    #[cfg(not(any(feature = "ring", feature = "aws-lc")))]
    None
}

/// Makes this crate's crypto provider the process default, unless the application
/// installed one already (theirs stays). Once per process; [`client_builder`] calls it.
///
/// With both the `ring` and `aws-lc` features, jsonwebtoken cannot pick a backend by
/// itself: this installs aws-lc-rs for it too.
pub fn install_default_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if CryptoProvider::get_default().is_none()
            && let Some(provider) = featured_provider()
        {
            // Losing a race to another installer is fine: theirs is used.
            let _ = provider.install_default();
        }
        #[cfg(all(feature = "ring", feature = "aws-lc"))]
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

/// The rustls crypto provider this library's clients use: the process default
/// (see [`install_default_provider`]).
pub fn crypto_provider() -> Result<Arc<CryptoProvider>> {
    install_default_provider();
    CryptoProvider::get_default().cloned().ok_or_else(|| {
        Error::configuration(
            "no TLS crypto provider: enable auth-core's `ring` or `aws-lc` feature, \
             or install a rustls CryptoProvider before building a client",
        )
    })
}

/// The number of compiled-in (webpki) roots every client trusts.
pub fn webpki_root_count() -> usize {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
}

/// The roots a client built by [`client_builder`] trusts: the webpki roots, then
/// `extra` (private CAs).
pub fn trusted_roots(extra: &[Certificate]) -> Result<Vec<Certificate>> {
    let mut roots = Vec::with_capacity(webpki_root_count() + extra.len());
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        roots.push(
            Certificate::from_der(der).map_err(|e| {
                Error::configuration(format!("cannot load the built-in root certificates: {e}"))
            })?,
        );
    }
    roots.extend(extra.iter().cloned());
    Ok(roots)
}

/// A `reqwest` client builder that trusts exactly the webpki roots plus
/// `extra_roots`, and presents `identity` (mutual TLS) if given. Add timeouts,
/// redirects and the like, then `build()`.
///
/// Use it for a client you hand to
/// [`AuthClientBuilder::http_client`](crate::AuthClientBuilder::http_client) to keep the
/// library's trust.
pub fn client_builder(extra_roots: &[Certificate], identity: Option<&Identity>) -> Result<ClientBuilder> {
    // reqwest builds its TLS configuration with the process default provider.
    crypto_provider()?;
    let builder = reqwest::Client::builder().tls_backend_rustls().tls_certs_only(trusted_roots(extra_roots)?);
    Ok(match identity {
        Some(identity) => builder.identity(identity.clone()),
        None => builder,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_trust_store_is_the_webpki_set_plus_the_added_cas() {
        assert!(webpki_root_count() > 100, "the Mozilla set has well over 100 roots");
        assert_eq!(trusted_roots(&[]).unwrap().len(), webpki_root_count());
        let first = Certificate::from_der(&webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]).unwrap();
        assert_eq!(trusted_roots(&[first.clone(), first]).unwrap().len(), webpki_root_count() + 2);
    }

    #[test]
    fn every_built_in_root_is_accepted_by_the_client() {
        // reqwest parses every root into rustls' store when it builds: a root that
        // rustls could not use would fail here rather than on a user's machine.
        client_builder(&[], None).unwrap().build().unwrap();
    }
}
