//! The tower layer over real connections: a hyper-util client against the test
//! identity provider's API, and a tonic client against a small gRPC server that
//! checks the bearer with the same provider and answers UNAUTHENTICATED to a
//! rejected token. One token for many calls; one replay after a rejection.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use auth_core::oauth2::OAuth2Source;
use auth_core::tower::AuthLayer;
use auth_core::{ApiProfile, ErrorKind, SecretValue, TokenManager};
use auth_sandbox::idp::{ApiBehavior, TestIdentityProvider};
use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use integration_tests::source;
use tower::{Layer, ServiceExt};

fn hyper_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: String) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test]
async fn hyper_util_many_calls_one_token_and_the_vendor_extras() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let profile = ApiProfile::new()
        .header("x-partnerid", "partner-7")
        .unwrap()
        .secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new("sub-key"))
        .unwrap()
        .query("_format", "json");
    let service = AuthLayer::new(TokenManager::new(source(&idp))).profile(profile).layer(hyper_client());
    for _ in 0..10 {
        let response = service.clone().oneshot(get(idp.api_url("Patient?name=x"))).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!((idp.token_requests(), idp.api_requests()), (1, 10), "one token for ten calls");
    let seen = idp.api_log().pop().unwrap();
    assert_eq!(seen.header("x-partnerid"), Some("partner-7"));
    assert_eq!(seen.header("ocp-apim-subscription-key"), Some("sub-key"));
    assert_eq!(seen.query.as_deref(), Some("name=x&_format=json"));

    // A URL that already carries the parameter keeps its own.
    service.clone().oneshot(get(idp.api_url("Patient?_format=json&page=2"))).await.unwrap();
    assert_eq!(idp.api_log().pop().unwrap().query.as_deref(), Some("_format=json&page=2"));
}

#[tokio::test]
async fn hyper_util_a_rejected_token_is_replaced_and_the_request_replayed_once() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::new(source(&idp));
    let service = AuthLayer::new(manager.clone()).layer(hyper_client());
    service.clone().oneshot(get(idp.api_url("Patient/1"))).await.unwrap();
    idp.revoke_all();

    // A POST with a body: the replay sends the same bytes again.
    let body = Full::new(Bytes::from_static(br#"{"resourceType":"Patient"}"#));
    let post = http::Request::post(idp.api_url("Patient")).body(body).unwrap();
    let response = service.clone().oneshot(post).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(idp.api_requests(), 3, "the first call, the rejected one and its replay");
    assert_eq!(idp.api_rejections(), 1);
    let stats = manager.stats();
    assert_eq!((stats.rejections, stats.replays, stats.invalidations), (1, 1, 1));
}

#[tokio::test]
async fn hyper_util_a_server_that_always_rejects_gets_one_replay_and_its_401_back() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_api_behavior(ApiBehavior::RejectAll);
    let service = AuthLayer::new(TokenManager::new(source(&idp))).layer(hyper_client());
    let response = service.clone().oneshot(get(idp.api_url("Patient/1"))).await.unwrap();
    assert_eq!(response.status(), 401, "the server's own answer, as the stack expects it");
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert_eq!(idp.api_requests(), 2, "the original and one replay, no loop");
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test]
async fn hyper_util_without_a_token_the_service_fails_with_the_crate_error() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, _) = idp.credentials();
    let wrong =
        OAuth2Source::builder(idp.token_url(), id, auth_core::ClientSecret::new("wrong")).build().unwrap();
    let service = AuthLayer::new(TokenManager::new(wrong)).layer(hyper_client());
    let error = service.oneshot(get(idp.api_url("Patient/1"))).await.unwrap_err();
    let error = error.downcast_ref::<auth_core::Error>().expect("the crate's error, boxed");
    assert_eq!(error.kind(), ErrorKind::OAuth);
    assert!(!error.to_string().contains("wrong"), "no secret in the error: {error}");
    assert_eq!(idp.api_requests(), 0, "nothing sent without a token");
}

#[tokio::test]
async fn plain_http_to_another_host_is_refused_before_a_token_is_fetched() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let service = AuthLayer::new(TokenManager::new(source(&idp))).layer(hyper_client());
    let error = service.oneshot(get("http://fhir.invalid/Patient/1".into())).await.unwrap_err();
    let error = error.downcast_ref::<auth_core::Error>().unwrap();
    assert_eq!(error.kind(), ErrorKind::Configuration);
    assert_eq!(idp.token_requests(), 0);
}

// ---- gRPC -----------------------------------------------------------------

/// Messages are raw bytes: no protobuf, no code generation.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `/test.Echo/Say`: echoes the message for a bearer the identity provider
/// issued and has not revoked; UNAUTHENTICATED otherwise, or always when told.
#[derive(Clone)]
struct Echo {
    idp: Arc<TestIdentityProvider>,
    reject_all: Arc<AtomicBool>,
}

impl tonic::server::UnaryService<Bytes> for Echo {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let registry = self.idp.registry();
        registry.count_api_request();
        let bearer = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if self.reject_all.load(Ordering::SeqCst) || registry.validate(bearer).is_err() {
            registry.count_api_rejection();
            return std::future::ready(Err(tonic::Status::unauthenticated("invalid token")));
        }
        std::future::ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let echo = self.clone();
        Box::pin(async move {
            if request.uri().path() != "/test.Echo/Say" {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            Ok(tonic::server::Grpc::new(RawCodec).unary(echo, request).await)
        })
    }
}

/// Serves [`Echo`] over HTTP/2 on a free loopback port; returns its address.
async fn grpc_server(echo: Echo) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(echo, incoming));
    addr
}

async fn say<T>(grpc: &mut tonic::client::Grpc<T>, message: &'static [u8]) -> Result<Bytes, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    grpc.ready().await.map_err(|e| tonic::Status::unknown(e.into().to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Say");
    let response = grpc.unary(tonic::Request::new(Bytes::from_static(message)), path, RawCodec).await?;
    Ok(response.into_inner())
}

async fn grpc_setup()
-> (Arc<TestIdentityProvider>, Arc<AtomicBool>, TokenManager<OAuth2Source>, std::net::SocketAddr) {
    let idp = Arc::new(TestIdentityProvider::start().await.unwrap());
    let reject_all = Arc::new(AtomicBool::new(false));
    let addr = grpc_server(Echo { idp: idp.clone(), reject_all: reject_all.clone() }).await;
    let manager = TokenManager::new(source(&idp));
    (idp, reject_all, manager, addr)
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn tonic_many_calls_one_token_and_one_replay_after_unauthenticated() {
    let (idp, _, manager, addr) = grpc_setup().await;
    // tonic's request body is not Clone: small, complete bodies are read ahead.
    let layer = AuthLayer::new(manager.clone()).buffer_bodies(64 * 1024, tonic::body::Body::new);
    let mut grpc = tonic::client::Grpc::new(layer.layer(channel(addr).await));
    for _ in 0..20 {
        assert_eq!(say(&mut grpc, b"hello").await.unwrap(), Bytes::from_static(b"hello"));
    }
    assert_eq!((idp.token_requests(), idp.api_requests()), (1, 20), "one token for twenty calls");

    // Every token forgotten: the next call is refused UNAUTHENTICATED once, a
    // new token is fetched and the call replayed with the same message.
    idp.revoke_all();
    assert_eq!(say(&mut grpc, b"again").await.unwrap(), Bytes::from_static(b"again"));
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(idp.api_requests(), 22, "the rejected call and its replay");
    assert_eq!(idp.api_rejections(), 1);
    let stats = manager.stats();
    assert_eq!((stats.rejections, stats.replays), (1, 1));
}

#[tokio::test]
async fn tonic_a_server_that_always_refuses_gets_one_replay_and_the_caller_its_status() {
    let (idp, reject_all, manager, addr) = grpc_setup().await;
    reject_all.store(true, Ordering::SeqCst);
    let layer = AuthLayer::new(manager).buffer_bodies(64 * 1024, tonic::body::Body::new);
    let mut grpc = tonic::client::Grpc::new(layer.layer(channel(addr).await));
    let status = say(&mut grpc, b"hello").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "the server's status, not a transport error");
    assert_eq!(idp.api_requests(), 2, "the call and one replay, no loop");
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test]
async fn a_body_that_is_still_streaming_is_sent_once_and_not_replayed() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::new(source(&idp));
    // A body whose bytes come later (an upload): nothing is held back for a replay.
    type Streamed = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;
    let client: Client<HttpConnector, Streamed> = Client::builder(TokioExecutor::new()).build_http();
    let rebuild =
        |b: auth_core::tower::BufferedBody<Streamed>| b.map_err(std::io::Error::other).boxed_unsync();
    let layer = AuthLayer::new(manager.clone()).buffer_bodies(64 * 1024, rebuild);
    let service = layer.layer(client);
    service.clone().oneshot(get_streamed(idp.api_url("x"), false)).await.unwrap();
    idp.revoke_all();

    let response = service.clone().oneshot(get_streamed(idp.api_url("Patient"), true)).await.unwrap();
    assert_eq!(response.status(), 401, "not replayable: the rejection is handed back");
    assert_eq!(idp.api_requests(), 2, "no replay");
    // The rejected token was dropped all the same: the next call gets a fresh one.
    let response = service.oneshot(get_streamed(idp.api_url("x"), false)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(manager.stats().replays, 0);
}

/// A POST whose body arrives after a pause when `late`, else at once.
fn get_streamed(
    url: String,
    late: bool,
) -> http::Request<http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>> {
    let chunks = futures_util::stream::once(async move {
        if late {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"{}")))
    });
    http::Request::post(url).body(http_body_util::StreamBody::new(chunks).boxed_unsync()).unwrap()
}
