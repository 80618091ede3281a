//! The trust every HTTP client of this library is built with: rustls, the Mozilla
//! root set compiled in (the certificates of the `webpki-roots` set, from the
//! `webpki-root-certs` crate), plus the private CAs you add; never the operating
//! system's store. A client identity (mutual TLS) is presented when given.
//!
//! The trust is the same on every machine and cannot be widened by whatever else
//! is installed in the system store (or `SSL_CERT_FILE`). Certificate verification
//! cannot be turned off.

use reqwest::{Certificate, ClientBuilder, Identity};

use crate::error::{Error, Result};

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
