//! The identity provider and protected API the harness measures against.
//!
//! It validates tokens the way `auth_sandbox::idp::TestIdentityProvider` does (a
//! token is accepted only if this server issued it and it has not expired), but it
//! speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port: one
//! process cannot hold 10,000 HTTP/1.1 sockets here, so the herd runs on HTTP/2
//! streams. It also counts per client id, so contenders running side by side are
//! told apart by the credentials they use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::task::JoinHandle;

/// Every client's secret: the harness measures token paths, not client registration.
pub const SECRET: &str = "bench-secret";

/// What the server saw from one client id.
#[derive(Debug, Default)]
pub struct ClientCounters {
    token_requests: AtomicU64,
    api_accepted: AtomicU64,
    api_rejected: AtomicU64,
    /// Arrival of each token request, seconds since the server started.
    token_times: Mutex<Vec<f64>>,
}

/// A copy of one client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Token requests received.
    pub token_requests: u64,
    /// API requests accepted.
    pub api_accepted: u64,
    /// API requests rejected with 401 for an expired token.
    pub api_rejected: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            token_requests: self.token_requests - earlier.token_requests,
            api_accepted: self.api_accepted - earlier.api_accepted,
            api_rejected: self.api_rejected - earlier.api_rejected,
        }
    }
}

struct Issued {
    expires_at: Instant,
    client: Arc<ClientCounters>,
}

struct Inner {
    started: Instant,
    delay_us: AtomicU64,
    lifetime_ms: AtomicU64,
    serial: AtomicU64,
    clients: Mutex<HashMap<String, Arc<ClientCounters>>>,
    issued: RwLock<HashMap<String, Issued>>,
    unknown_rejected: AtomicU64,
}

impl Inner {
    fn client(&self, id: &str) -> Arc<ClientCounters> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.entry(id.to_owned()).or_default().clone()
    }
}

/// The server; stops when dropped.
#[derive(Debug)]
pub struct BenchServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BenchServer {
    /// Starts on a free loopback port: tokens live 300 s, issued at once.
    pub async fn start() -> anyhow::Result<Self> {
        let inner = Arc::new(Inner {
            started: Instant::now(),
            delay_us: AtomicU64::new(0),
            lifetime_ms: AtomicU64::new(300_000),
            serial: AtomicU64::new(0),
            clients: Mutex::new(HashMap::new()),
            issued: RwLock::new(HashMap::new()),
            unknown_rejected: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/token", post(token_endpoint))
            .route("/api/{*path}", any(api_endpoint))
            .with_state(inner.clone());
        // The OS default backlog is too short for a cold herd's connection burst.
        let socket = tokio::net::TcpSocket::new_v4().context("socket")?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).context("bind a loopback port")?;
        let listener = socket.listen(4096).context("listen")?;
        let addr = listener.local_addr().context("bound address")?;
        let task = tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // hyper advertises 200 concurrent streams by default: a 10,000-caller
            // herd on one connection would then measure hyper's queue, not the caches.
            builder.http2().max_concurrent_streams(100_000).max_pending_accept_reset_streams(100_000);
            let builder = Arc::new(builder);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, inner, task })
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// A protected API URL.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/Patient/123", self.addr)
    }

    /// Delays every token response by `delay` (identity provider latency).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.delay_us.store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Lifetime of tokens issued from now on (whole seconds go into `expires_in`).
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.inner.lifetime_ms.store(lifetime.as_millis() as u64, Ordering::SeqCst);
    }

    /// A token valid for `lifetime` for `client`, issued without a token request:
    /// the static bearer of the physical-limit contender.
    pub fn mint(&self, client: &str, lifetime: Duration) -> String {
        let n = self.inner.serial.fetch_add(1, Ordering::SeqCst);
        let token = format!("static-{n}");
        let issued = Issued { expires_at: Instant::now() + lifetime, client: self.inner.client(client) };
        self.inner.issued.write().unwrap_or_else(PoisonError::into_inner).insert(token.clone(), issued);
        token
    }

    /// Counters of one client id.
    pub fn counts(&self, client: &str) -> Counts {
        let c = self.inner.client(client);
        Counts {
            token_requests: c.token_requests.load(Ordering::SeqCst),
            api_accepted: c.api_accepted.load(Ordering::SeqCst),
            api_rejected: c.api_rejected.load(Ordering::SeqCst),
        }
    }

    /// When `client`'s token requests arrived, seconds since the server started.
    pub fn token_times(&self, client: &str) -> Vec<f64> {
        self.inner.client(client).token_times.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Seconds since the server started, on the clock of [`BenchServer::token_times`].
    pub fn elapsed(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// API requests with a token this server never issued.
    pub fn unknown_rejected(&self) -> u64 {
        self.inner.unknown_rejected.load(Ordering::SeqCst)
    }
}

fn client_id(headers: &HeaderMap, body: &[u8]) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    if let Some(pair) = basic {
        let (id, secret) = pair.split_once(':')?;
        return Some((decode(id), decode(secret)));
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    Some((form.get("client_id")?.clone(), form.get("client_secret").cloned().unwrap_or_default()))
}

async fn token_endpoint(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((id, secret)) = client_id(&headers, &body) else {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    };
    let client = inner.client(&id);
    client.token_requests.fetch_add(1, Ordering::SeqCst);
    client
        .token_times
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(inner.started.elapsed().as_secs_f64());
    let delay = Duration::from_micros(inner.delay_us.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if secret != SECRET {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let lifetime = Duration::from_millis(inner.lifetime_ms.load(Ordering::SeqCst));
    let n = inner.serial.fetch_add(1, Ordering::SeqCst);
    let token = format!("at-{n}-{:016x}", fastrand::u64(..));
    // Expiry counts from the response, as TestIdentityProvider's does: a client
    // cannot know when the provider started its clock.
    let issued = Issued { expires_at: Instant::now() + lifetime, client };
    inner.issued.write().unwrap_or_else(PoisonError::into_inner).insert(token.clone(), issued);
    let mut response = axum::Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    }))
    .into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn api_endpoint(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let verdict = token.and_then(|token| {
        let issued = inner.issued.read().unwrap_or_else(PoisonError::into_inner);
        issued.get(token).map(|t| (Instant::now() < t.expires_at, t.client.clone()))
    });
    match verdict {
        Some((true, client)) => {
            client.api_accepted.fetch_add(1, Ordering::Relaxed);
            ([(header::CONTENT_TYPE, "application/fhir+json")], r#"{"resourceType":"Patient","id":"123"}"#)
                .into_response()
        }
        Some((false, client)) => {
            client.api_rejected.fetch_add(1, Ordering::Relaxed);
            invalid_token()
        }
        None => {
            inner.unknown_rejected.fetch_add(1, Ordering::Relaxed);
            invalid_token()
        }
    }
}

fn invalid_token() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            r#"Bearer realm="bench", error="invalid_token", error_description="expired""#,
        )],
    )
        .into_response()
}
