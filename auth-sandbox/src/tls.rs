//! TLS for the emulators that need it: a certificate authority generated at run
//! time (nothing on disk, nothing that expires during a test run), server and
//! client certificates it signs, a rustls server configuration that demands a
//! client certificate from that CA, and serving an axum router over it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use auth_sandbox::tls::{CertificateAuthority, TlsServer, mtls_server_config};
//!
//! let ca = CertificateAuthority::new("Sandbox CA")?;
//! let server = ca.issue_server(&["127.0.0.1", "localhost"])?;
//! let client = ca.issue_client("EXAMPLE_DEVICE_NODE")?;
//! let config = mtls_server_config(&ca, &server)?;
//! let listener = TlsServer::serve(axum::Router::new(), config).await?;
//! println!("{} wants a certificate like {}", listener.base_url(), client.cert_pem());
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth_core::PrivateKeyPem;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

fn tls_error(what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// A certificate authority that lives in memory for as long as this value.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signing key stays out of sight; the certificate is public.
        f.debug_struct("CertificateAuthority")
            .field("cert_pem_len", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, issued by a [`CertificateAuthority`].
#[derive(Clone)]
pub struct IssuedCertificate {
    common_name: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: PrivateKeyPem,
    key_der: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("common_name", &self.common_name)
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

impl IssuedCertificate {
    /// The subject's common name.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate, DER (as it arrives in a TLS handshake).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &PrivateKeyPem {
        &self.key_pem
    }
}

impl CertificateAuthority {
    /// A new CA with a fresh ECDSA P-256 key.
    pub fn new(common_name: &str) -> io::Result<Self> {
        let key = KeyPair::generate().map_err(|e| tls_error("cannot generate the CA key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(|e| tls_error("cannot sign the CA certificate", e))?;
        Ok(Self { cert_pem: cert.pem(), cert_der: cert.der().clone(), issuer: Issuer::new(params, key) })
    }

    /// The CA certificate, PEM: what a client trusts to reach the server, and what the
    /// server trusts client certificates from.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue_server(&self, names: &[&str]) -> io::Result<IssuedCertificate> {
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params =
            CertificateParams::new(owned).map_err(|e| tls_error("invalid server certificate name", e))?;
        params.distinguished_name = name(names.first().copied().unwrap_or("localhost"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params)
    }

    /// A client certificate whose subject is `common_name` (a device id, say).
    pub fn issue_client(&self, common_name: &str) -> io::Result<IssuedCertificate> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> io::Result<IssuedCertificate> {
        let key = KeyPair::generate().map_err(|e| tls_error("cannot generate a key", e))?;
        let cert =
            params.signed_by(&key, &self.issuer).map_err(|e| tls_error("cannot sign a certificate", e))?;
        let common_name = match params.distinguished_name.get(&DnType::CommonName) {
            Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
            Some(rcgen::DnValue::PrintableString(s)) => s.as_str().to_owned(),
            _ => String::new(),
        };
        Ok(IssuedCertificate {
            common_name,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: PrivateKeyPem::new(key.serialize_pem()),
            key_der: Zeroizing::new(key.serialize_der()),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "auth-providers sandbox");
    dn
}

/// A server configuration presenting `server` and refusing, during the handshake,
/// any client without a certificate signed by `ca`.
pub fn mtls_server_config(
    ca: &CertificateAuthority,
    server: &IssuedCertificate,
) -> io::Result<Arc<ServerConfig>> {
    // The library's provider (ring, or aws-lc with auth-core's `aws-lc` feature).
    let provider = auth_core::tls::crypto_provider().map_err(|e| tls_error("no crypto provider", e))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der.clone()).map_err(|e| tls_error("cannot trust the CA", e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_error("cannot build the client certificate verifier", e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("no TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.to_vec())),
        )
        .map_err(|e| tls_error("cannot use the server certificate", e))?;
    // The sandbox serves HTTP/1.1 only (axum is built without http2 here).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An axum router served over TLS on a free loopback port. Stops when dropped.
pub struct TlsServer {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<()>,
    refused: Arc<AtomicU64>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("addr", &self.addr)
            .field("refused_handshakes", &self.refused_handshakes())
            .finish_non_exhaustive()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

impl TlsServer {
    /// Serves `router` with `config` on `127.0.0.1` at a free port. Handlers can read
    /// the client's certificate from the `Extension<Arc<axum_server::tls::TlsInfo>>`.
    pub async fn serve(router: Router, config: Arc<ServerConfig>) -> io::Result<Self> {
        Self::serve_on(std::net::TcpListener::bind(("127.0.0.1", 0))?, router, config).await
    }

    /// As [`TlsServer::serve`], on a listener bound already (so the router can know
    /// its own URL before serving).
    pub async fn serve_on(
        listener: std::net::TcpListener,
        router: Router,
        config: Arc<ServerConfig>,
    ) -> io::Result<Self> {
        auth_core::tls::install_default_provider();
        let addr = listener.local_addr()?;
        let refused = Arc::new(AtomicU64::new(0));
        let counter = refused.clone();
        let handle = Handle::new();
        let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(config))?
            .handle(handle.clone())
            // Called for connections that fail before HTTP starts: on this listener,
            // handshakes refused for a missing or untrusted client certificate.
            .accept_error_handler(move |_, error| {
                counter.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(%error, "TLS connection refused");
            });
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(router.into_make_service()).await {
                tracing::error!(error = %e, "sandbox TLS server stopped");
            }
        });
        Ok(Self { addr, handle, task, refused })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections refused before any HTTP was exchanged (failed handshakes).
    pub fn refused_handshakes(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}
