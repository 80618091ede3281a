//! One authenticated exchange, whatever the HTTP stack: attach the token and the
//! vendor's extras (and, for a DPoP-bound token, a proof), judge the answer, drop a
//! rejected token and replay once with a fresh one. [`AuthClient`](crate::AuthClient),
//! the tower layer and the reqwest-middleware all run this one flow; each only says
//! how its requests are sent, copied and read ([`Transport`]).
//!
//! "The token is bad" means a 401, any status whose `WWW-Authenticate` carries
//! `error="invalid_token"` (SanteDB answers an invalid bearer with 403), or a gRPC
//! answer whose headers carry `grpc-status: 16` (UNAUTHENTICATED, sent in the
//! headers as a trailers-only response, as gRPC servers do for a call refused
//! before any message). A 403 with `insufficient_scope` is final: a new token with
//! the same scopes would not help. The profile's judge has the last word. The
//! challenge that speaks about the token is the one of the scheme it went with
//! (`Bearer`, or `DPoP` for a DPoP-bound token).
//!
//! **DPoP** (RFC 9449, see [`crate::dpop`]). A DPoP-bound token goes as
//! `Authorization: DPoP <token>` with a `DPoP` proof of the authenticator's key
//! ([`Authenticator::dpop`]) made for that send: `htm` and `htu` from the request
//! as it goes out (the URL without query or fragment), `ath`, the origin's latest
//! nonce, and a fresh `jti`, the retries' included. Every answer's `DPoP-Nonce` is
//! kept for its origin. A `401` with `WWW-Authenticate: DPoP
//! error="use_dpop_nonce"` is answered by exactly one more send with a new proof
//! carrying the nonce (RFC 9449 §9): that is not a rejected token, and is neither
//! counted nor judged as one. The copy it sends comes from the one kept for the
//! replay, so a body that cannot be sent twice gets neither.

use std::future::Future;

use http::header::{AUTHORIZATION, HeaderMap};
use http::{HeaderValue, Method, StatusCode};
use tracing::Instrument;
use url::Url;

use crate::challenge::{Challenge, challenge_for, challenges};
use crate::client::Authenticator;
use crate::dpop::{self, DPOP, Dpop};
use crate::error::Error;
use crate::manager::Invalidation;
use crate::profile::{ApiProfile, Rejection, RejectionVerdict};
use crate::token::Token;

/// How one HTTP stack sends a request and reads an answer; the flow does the rest.
pub(crate) trait Transport {
    /// The stack's request.
    type Request: Send;
    /// The stack's response.
    type Response: Send;
    /// The stack's own failures (a connection refused, a body that broke).
    type Error: Send;

    /// Puts `token`'s `Authorization` and `profile`'s extras on `request` (see
    /// [`attach_headers`] and [`missing_query`]).
    fn attach(request: &mut Self::Request, token: &Token, profile: &ApiProfile);

    /// The request's method: a DPoP proof's `htm`.
    fn method(request: &Self::Request) -> &Method;

    /// The request's absolute URL: a DPoP proof's `htu` (less query and
    /// fragment) and the origin whose nonce it carries. `None` when the request
    /// does not name its origin (a tonic request, whose channel adds it).
    fn url(request: &Self::Request) -> Option<Url>;

    /// The request's headers, to put a DPoP proof in.
    fn headers_mut(request: &mut Self::Request) -> &mut HeaderMap;

    /// `request` and, if its body can be sent again, a copy of it (for the
    /// retry a DPoP nonce challenge asks for).
    fn split(
        &mut self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Split<Self::Request>, Self::Error>> + Send;

    /// Sends `request`.
    fn send(
        &mut self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;

    /// The response's status.
    fn status(response: &Self::Response) -> StatusCode;

    /// The response's headers.
    fn headers(response: &Self::Response) -> &HeaderMap;

    /// The URL that answered, when the stack knows it (reqwest's, after
    /// redirects); otherwise the request's URL stands for it.
    fn answered_from(response: &Self::Response) -> Option<&Url> {
        let _ = response;
        None
    }

    /// Reads the first [`REJECTION_BODY_CAP`] bytes of a rejection for its judge,
    /// and keeps the response whole: if the judge hands it back to the caller, its
    /// body is what was read followed by the rest, still unread.
    fn read_for_judging(
        response: Self::Response,
    ) -> impl Future<Output = Result<(Self::Response, Vec<u8>), Self::Error>> + Send;
}

/// A request and, if its body can be sent again, a copy of it.
pub(crate) type Split<R> = (R, Option<R>);

/// Cap on what of a rejection's body is read for judging: an error document's
/// first 64 KiB say what it is about.
pub(crate) const REJECTION_BODY_CAP: usize = 64 * 1024;

/// How an exchange ended.
pub(crate) enum Outcome<R, E> {
    /// An answer for the caller as it is: accepted, or judged not about the token.
    Answer(R),
    /// The token was refused for good: still rejected after the replay, rejected
    /// while rejections are held off, not replayable, or lacking scope. The error
    /// is what [`AuthClient`](crate::AuthClient) returns; a layer in someone
    /// else's stack hands the response back instead.
    Refused(Error, R),
    /// No token could be had, or the profile's judge called the rejection a
    /// configuration mistake.
    Failed(Error),
    /// The stack failed to send or read.
    Transport(E),
}

/// Sends `request` with a token, and `replay` (a copy of it, if its body can be
/// sent twice) once more with a fresh token if the first was rejected.
pub(crate) async fn exchange<T: Transport>(
    auth: &dyn Authenticator,
    profile: &ApiProfile,
    transport: &mut T,
    request: T::Request,
    replay: Option<T::Request>,
) -> Outcome<T::Response, T::Error> {
    let token = match auth.token().await {
        Ok(token) => token,
        Err(error) => return Outcome::Failed(error),
    };
    let dpop = match proof_key(auth, &token) {
        Ok(dpop) => dpop,
        Err(error) => return Outcome::Failed(error),
    };
    let mut replay = replay;
    let spare = Spare::CopyOf(&mut replay);
    let response = match send(transport, request, spare, &token, dpop, profile).await {
        Ok(response) => response,
        Err(stop) => return stop,
    };
    let challenge = match verdict(T::status(&response), T::headers(&response), &token) {
        Verdict::Accepted => return Outcome::Answer(response),
        Verdict::InsufficientScope(challenge) => {
            return Outcome::Refused(Error::insufficient_scope(challenge), response);
        }
        Verdict::Rejected(challenge) => challenge,
    };
    let status = T::status(&response).as_u16();
    let (response, judged) = if profile.wants_rejection_body() {
        let (response, read) = match T::read_for_judging(response).await {
            Ok(read) => read,
            Err(error) => return Outcome::Transport(error),
        };
        let judged = profile.judge_rejection(&Rejection::new(status, challenge.as_ref(), &read));
        (response, judged)
    } else {
        (response, profile.judge_rejection(&Rejection::new(status, challenge.as_ref(), &[])))
    };
    match judged {
        RejectionVerdict::TokenRejected => {}
        RejectionVerdict::NotTokenRelated => return Outcome::Answer(response),
        RejectionVerdict::Configuration(message) => return Outcome::Failed(Error::configuration(message)),
    }
    auth.token_rejected();
    if let Invalidation::Held { retry_after } = auth.invalidate(&token).await {
        // A fresh token was already tried for this rejection, in vain: no replay.
        return Outcome::Refused(Error::unauthorized_held(status, challenge, retry_after), response);
    }
    let Some(replay) = replay else {
        tracing::debug!(status, "token rejected; request body cannot be replayed");
        return Outcome::Refused(Error::unauthorized(status, challenge), response);
    };
    // The connection is given back before the replay, not held through it.
    drop(response);
    auth.replaying();
    replay_once(auth, profile, transport, replay)
        .instrument(tracing::debug_span!("token_replay", status))
        .await
}

async fn replay_once<T: Transport>(
    auth: &dyn Authenticator,
    profile: &ApiProfile,
    transport: &mut T,
    replay: T::Request,
) -> Outcome<T::Response, T::Error> {
    tracing::debug!("token rejected; replaying once with a fresh token");
    let fresh = match auth.token().await {
        Ok(token) => token,
        Err(error) => return Outcome::Failed(error),
    };
    let dpop = match proof_key(auth, &fresh) {
        Ok(dpop) => dpop,
        Err(error) => return Outcome::Failed(error),
    };
    // A proven replay may meet a nonce challenge too: keep a copy for its retry.
    let (replay, spare) = match dpop {
        Some(_) => match transport.split(replay).await {
            Ok((replay, copy)) => (replay, copy),
            Err(error) => return Outcome::Transport(error),
        },
        None => (replay, None),
    };
    let response = match send(transport, replay, Spare::Own(spare), &fresh, dpop, profile).await {
        Ok(response) => response,
        Err(stop) => return stop,
    };
    match verdict(T::status(&response), T::headers(&response), &fresh) {
        Verdict::Accepted => Outcome::Answer(response),
        Verdict::InsufficientScope(challenge) => {
            Outcome::Refused(Error::insufficient_scope(challenge), response)
        }
        Verdict::Rejected(challenge) => {
            auth.token_rejected();
            let status = T::status(&response).as_u16();
            let error = match auth.replacement_rejected(&fresh).await {
                Some(hold) => Error::unauthorized_held(status, challenge, hold),
                None => Error::unauthorized(status, challenge),
            };
            Outcome::Refused(error, response)
        }
    }
}

/// The key that proves `token`: `None` for a token that is not DPoP-bound (a
/// bearer token goes without a proof, even from an authenticator with DPoP that
/// [allows bearer tokens](Dpop::allow_bearer)).
fn proof_key<'a>(auth: &'a dyn Authenticator, token: &Token) -> Result<Option<&'a Dpop>, Error> {
    match (token.is_dpop(), auth.dpop()) {
        (false, _) => Ok(None),
        (true, Some(dpop)) => Ok(Some(dpop)),
        (true, None) => Err(Error::configuration(
            "the token is DPoP-bound, but the authenticator has no DPoP key to prove it with",
        )),
    }
}

/// Where the request for a DPoP nonce retry comes from.
enum Spare<'a, R> {
    /// A copy of the request kept for the token replay, which stays kept.
    CopyOf(&'a mut Option<R>),
    /// This one, which nothing else needs.
    Own(Option<R>),
}

/// Why a send did not give a response: the exchange ends with this outcome.
type Stop<T> = Outcome<<T as Transport>::Response, <T as Transport>::Error>;

/// Sends `request` with `token`. A DPoP-bound token goes with a proof, and a
/// server's `use_dpop_nonce` challenge is answered by sending once more (a copy
/// taken from `spare`) with its nonce in a new proof: that is not a rejected token.
async fn send<T: Transport>(
    transport: &mut T,
    request: T::Request,
    spare: Spare<'_, T::Request>,
    token: &Token,
    dpop: Option<&Dpop>,
    profile: &ApiProfile,
) -> Result<T::Response, Stop<T>> {
    let Some(dpop) = dpop else {
        return send_once(transport, request, token, profile).await;
    };
    let (response, url) = send_proven(transport, request, token, dpop, profile).await?;
    let origin = T::answered_from(&response).unwrap_or(&url);
    dpop.remember_nonce(origin, T::headers(&response));
    if !is_nonce_challenge(T::status(&response), T::headers(&response)) || dpop.nonce(origin).is_none() {
        return Ok(response);
    }
    let again = match spare {
        Spare::Own(spare) => spare,
        Spare::CopyOf(kept) => match take_copy(transport, kept).await {
            Ok(copy) => copy,
            Err(error) => return Err(Outcome::Transport(error)),
        },
    };
    let Some(again) = again else {
        tracing::debug!("the server asks for a DPoP nonce; the request body cannot be sent again");
        return Ok(response);
    };
    tracing::debug!("the server asks for a DPoP nonce; sending once more with it");
    drop(response);
    let (response, url) = send_proven(transport, again, token, dpop, profile).await?;
    dpop.remember_nonce(T::answered_from(&response).unwrap_or(&url), T::headers(&response));
    Ok(response)
}

/// A copy of the request in `kept`, which keeps it; if it cannot be copied, the
/// request itself (and no replay is left).
async fn take_copy<T: Transport>(
    transport: &mut T,
    kept: &mut Option<T::Request>,
) -> Result<Option<T::Request>, T::Error> {
    let Some(request) = kept.take() else { return Ok(None) };
    let (request, copy) = transport.split(request).await?;
    Ok(match copy {
        Some(copy) => {
            *kept = Some(request);
            Some(copy)
        }
        None => Some(request),
    })
}

/// Attaches `token` and the profile's extras, and sends.
async fn send_once<T: Transport>(
    transport: &mut T,
    mut request: T::Request,
    token: &Token,
    profile: &ApiProfile,
) -> Result<T::Response, Stop<T>> {
    T::attach(&mut request, token, profile);
    transport.send(request).await.map_err(Outcome::Transport)
}

/// [`send_once`] with a new proof of `dpop`'s key, made last, for the method
/// and URL as they go out. The URL comes back with the response.
async fn send_proven<T: Transport>(
    transport: &mut T,
    mut request: T::Request,
    token: &Token,
    dpop: &Dpop,
    profile: &ApiProfile,
) -> Result<(T::Response, Url), Stop<T>> {
    T::attach(&mut request, token, profile);
    let url = prove::<T>(&mut request, token, dpop).map_err(Outcome::Failed)?;
    let response = transport.send(request).await.map_err(Outcome::Transport)?;
    Ok((response, url))
}

/// Puts a new proof on `request`; its URL.
fn prove<T: Transport>(request: &mut T::Request, token: &Token, dpop: &Dpop) -> Result<Url, Error> {
    let Some(url) = T::url(request) else {
        return Err(Error::configuration(
            "a DPoP proof names the request's URL (htu), but this request's URI has no scheme and \
             host: give the client the server's origin (for tonic, `Grpc::with_origin`)",
        ));
    };
    let proof = dpop.proof(T::method(request), &url, Some(token.access_token()))?;
    T::headers_mut(request).insert(DPOP, proof);
    Ok(url)
}

/// Sets `Authorization: Bearer …` (or `DPoP …` for a DPoP-bound token; marked
/// sensitive) and adds the profile's headers the request does not already carry.
pub(crate) fn attach_headers(headers: &mut HeaderMap, token: &Token, profile: &ApiProfile) {
    headers.insert(AUTHORIZATION, token.authorization_header());
    for (name, value) in profile.headers() {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The profile's query parameters that `query` (a request's query string) does
/// not already have. A server's paging links often carry the vendor's parameters
/// already (MSK's next links hold `researchstudy`): only what is missing is added.
/// Allocates nothing when the profile has no query parameters.
pub(crate) fn missing_query<'p>(
    profile: &'p ApiProfile,
    query: Option<&str>,
) -> impl Iterator<Item = (&'p str, &'p str)> {
    profile.expose_query().filter(move |(name, _)| {
        !query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == *name))
    })
}

enum Verdict {
    Accepted,
    Rejected(Option<Challenge>),
    InsufficientScope(Challenge),
}

/// gRPC's UNAUTHENTICATED status code.
const GRPC_UNAUTHENTICATED: &[u8] = b"16";

/// Whether an answer is RFC 9449 §9's nonce challenge: 401 and
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
fn is_nonce_challenge(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && challenges(headers)
            .iter()
            .any(|c| c.is_scheme(dpop::SCHEME) && c.error() == Some(dpop::USE_DPOP_NONCE))
}

fn verdict(status: StatusCode, headers: &HeaderMap, token: &Token) -> Verdict {
    let grpc_unauthenticated = headers.get("grpc-status").is_some_and(is_unauthenticated);
    if status.is_success() && !grpc_unauthenticated {
        return Verdict::Accepted;
    }
    // The challenge of the scheme the token went with speaks about it.
    let scheme = if token.is_dpop() { dpop::SCHEME } else { "Bearer" };
    let challenge = challenge_for(headers, scheme);
    match challenge {
        Some(c) if c.is_insufficient_scope() => Verdict::InsufficientScope(c),
        Some(c) if c.is_invalid_token() => Verdict::Rejected(Some(c)),
        c if status == StatusCode::UNAUTHORIZED || grpc_unauthenticated => Verdict::Rejected(c),
        _ => Verdict::Accepted,
    }
}

fn is_unauthenticated(value: &HeaderValue) -> bool {
    value.as_bytes() == GRPC_UNAUTHENTICATED
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::secret::AccessToken;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    fn token(value: &str, token_type: &str) -> Token {
        let now = SystemTime::now();
        Token::new(AccessToken::new(value), now, now + Duration::from_secs(300))
            .unwrap()
            .with_token_type(token_type)
    }

    #[test]
    fn verdicts() {
        let bearer = &token("t", "Bearer");
        let ok = StatusCode::OK;
        assert!(matches!(verdict(ok, &HeaderMap::new(), bearer), Verdict::Accepted));
        assert!(matches!(
            verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new(), bearer),
            Verdict::Rejected(None)
        ));
        let santedb = headers(&[("www-authenticate", r#"bearer realm="x" error="invalid_token""#)]);
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &santedb, bearer), Verdict::Rejected(Some(_))));
        let scope = headers(&[("www-authenticate", r#"Bearer error="insufficient_scope""#)]);
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &scope, bearer), Verdict::InsufficientScope(_)));
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &HeaderMap::new(), bearer), Verdict::Accepted));
        assert!(matches!(verdict(StatusCode::NOT_FOUND, &HeaderMap::new(), bearer), Verdict::Accepted));
        // gRPC: the status rides in the headers of an HTTP 200.
        assert!(matches!(verdict(ok, &headers(&[("grpc-status", "16")]), bearer), Verdict::Rejected(None)));
        assert!(matches!(verdict(ok, &headers(&[("grpc-status", "0")]), bearer), Verdict::Accepted));
        assert!(matches!(verdict(ok, &headers(&[("grpc-status", "7")]), bearer), Verdict::Accepted));
    }

    #[test]
    fn the_challenge_of_the_tokens_scheme_speaks_about_it() {
        let (bearer, bound) = (&token("t", "Bearer"), &token("t", "DPoP"));
        let both = headers(&[(
            "www-authenticate",
            r#"Bearer error="insufficient_scope", DPoP error="invalid_token", algs="ES256""#,
        )]);
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &both, bearer), Verdict::InsufficientScope(_)));
        let Verdict::Rejected(Some(challenge)) = verdict(StatusCode::FORBIDDEN, &both, bound) else {
            panic!("the DPoP challenge rejects the DPoP token");
        };
        assert!(challenge.is_scheme("DPoP"));
        let nonce = headers(&[("www-authenticate", r#"DPoP error="use_dpop_nonce""#)]);
        assert!(is_nonce_challenge(StatusCode::UNAUTHORIZED, &nonce));
        assert!(!is_nonce_challenge(StatusCode::BAD_REQUEST, &nonce), "a token endpoint's, not an API's");
        let bearer_nonce = headers(&[("www-authenticate", r#"Bearer error="use_dpop_nonce""#)]);
        assert!(!is_nonce_challenge(StatusCode::UNAUTHORIZED, &bearer_nonce));
    }

    #[test]
    fn only_missing_query_parameters_are_added() {
        let profile = ApiProfile::new().query("_format", "json").query("researchstudy", "s 1");
        let all: Vec<_> = missing_query(&profile, None).collect();
        assert_eq!(all, [("_format", "json"), ("researchstudy", "s 1")]);
        let some: Vec<_> = missing_query(&profile, Some("page=2&researchstudy=s%201")).collect();
        assert_eq!(some, [("_format", "json")]);
        assert_eq!(missing_query(&ApiProfile::new(), Some("a=b")).count(), 0);
    }

    /// An authenticator handing out `tokens` in turn (the last one again and
    /// again), with `dpop` as its key.
    #[derive(Debug)]
    struct Tokens {
        tokens: Mutex<VecDeque<Arc<Token>>>,
        dpop: Option<Dpop>,
        rejected: Mutex<u32>,
    }

    impl Tokens {
        fn new(tokens: Vec<Token>, dpop: Option<Dpop>) -> Self {
            let tokens = tokens.into_iter().map(Arc::new).collect();
            Self { tokens: Mutex::new(tokens), dpop, rejected: Mutex::new(0) }
        }
    }

    #[async_trait::async_trait]
    impl Authenticator for Tokens {
        async fn token(&self) -> crate::Result<Arc<Token>> {
            let mut tokens = self.tokens.lock().unwrap();
            let token = tokens.front().cloned().unwrap();
            if tokens.len() > 1 {
                tokens.pop_front();
            }
            Ok(token)
        }
        async fn invalidate(&self, _: &Token) -> Invalidation {
            Invalidation::Dropped
        }
        fn token_rejected(&self) {
            *self.rejected.lock().unwrap() += 1;
        }
        fn dpop(&self) -> Option<&Dpop> {
            self.dpop.as_ref()
        }
    }

    /// A request: method, URL, headers, and whether its body can be copied.
    #[derive(Debug)]
    struct Sent {
        method: Method,
        url: Url,
        headers: HeaderMap,
        copyable: bool,
    }

    /// A server answering from a script, keeping what it was sent.
    struct Scripted {
        answers: VecDeque<(StatusCode, HeaderMap)>,
        sent: Vec<Sent>,
    }

    impl Transport for Scripted {
        type Request = Sent;
        type Response = (StatusCode, HeaderMap);
        type Error = Error;

        fn attach(request: &mut Sent, token: &Token, profile: &ApiProfile) {
            attach_headers(&mut request.headers, token, profile);
        }
        fn method(request: &Sent) -> &Method {
            &request.method
        }
        fn url(request: &Sent) -> Option<Url> {
            Some(request.url.clone())
        }
        fn headers_mut(request: &mut Sent) -> &mut HeaderMap {
            &mut request.headers
        }
        async fn split(&mut self, request: Sent) -> crate::Result<(Sent, Option<Sent>)> {
            let copy = request.copyable.then(|| Sent {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                copyable: true,
            });
            Ok((request, copy))
        }
        async fn send(&mut self, request: Sent) -> crate::Result<(StatusCode, HeaderMap)> {
            self.sent.push(request);
            Ok(self.answers.pop_front().unwrap_or((StatusCode::OK, HeaderMap::new())))
        }
        fn status(response: &(StatusCode, HeaderMap)) -> StatusCode {
            response.0
        }
        fn headers(response: &(StatusCode, HeaderMap)) -> &HeaderMap {
            &response.1
        }
        async fn read_for_judging(response: Self::Response) -> crate::Result<(Self::Response, Vec<u8>)> {
            Ok((response, Vec::new()))
        }
    }

    fn claims(request: &Sent) -> serde_json::Value {
        let proof = request.headers.get(DPOP).unwrap().to_str().unwrap();
        let payload = URL_SAFE_NO_PAD.decode(proof.split('.').nth(1).unwrap()).unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    fn get(url: &str, copyable: bool) -> Sent {
        Sent { method: Method::GET, url: Url::parse(url).unwrap(), headers: HeaderMap::new(), copyable }
    }

    async fn run(
        auth: &Tokens,
        answers: Vec<(StatusCode, HeaderMap)>,
        request: Sent,
    ) -> (Outcome<(StatusCode, HeaderMap), Error>, Vec<Sent>) {
        let mut transport = Scripted { answers: answers.into(), sent: Vec::new() };
        let replay = transport.split(request).await.unwrap();
        let outcome = exchange(auth, &ApiProfile::new(), &mut transport, replay.0, replay.1).await;
        (outcome, transport.sent)
    }

    fn nonce_challenge(nonce: &'static str) -> (StatusCode, HeaderMap) {
        let h = headers(&[("www-authenticate", r#"DPoP error="use_dpop_nonce""#), ("dpop-nonce", nonce)]);
        (StatusCode::UNAUTHORIZED, h)
    }

    #[tokio::test]
    async fn a_nonce_challenge_gets_one_retry_with_a_new_proof_and_is_no_rejection() {
        let dpop = Dpop::generate().unwrap();
        let auth = Tokens::new(vec![token("bound", "DPoP")], Some(dpop.clone()));
        let request = get("https://rs.example/fhir/Patient/7?_elements=id#top", true);
        let (outcome, sent) = run(&auth, vec![nonce_challenge("n-1")], request).await;
        assert!(matches!(outcome, Outcome::Answer((StatusCode::OK, _))));
        assert_eq!(sent.len(), 2, "the challenge, then exactly one retry");
        assert_eq!(sent[0].headers[AUTHORIZATION], "DPoP bound");
        let (first, second) = (claims(&sent[0]), claims(&sent[1]));
        assert_eq!(
            (&first["htm"], &first["htu"]),
            (&"GET".into(), &"https://rs.example/fhir/Patient/7".into())
        );
        assert_eq!(first["ath"], crate::keys::sha256_base64url(b"bound"));
        assert!(first.get("nonce").is_none());
        assert_eq!(second["nonce"], "n-1");
        assert_ne!(first["jti"], second["jti"], "a fresh jti for the retry");
        assert_eq!(*auth.rejected.lock().unwrap(), 0, "a nonce challenge rejects no token");
        // Kept for the origin: the next request carries it at once.
        assert_eq!(dpop.nonce(&Url::parse("https://rs.example/other").unwrap()).as_deref(), Some("n-1"));

        // Asked again after the retry: no second retry; judged as a rejection of
        // the token, replayed once with a fresh one (which gets its own retry).
        let auth = Tokens::new(vec![token("old", "DPoP"), token("new", "DPoP")], Some(dpop.clone()));
        let answers = vec![nonce_challenge("n-2"), nonce_challenge("n-3"), nonce_challenge("n-4")];
        let (outcome, sent) = run(&auth, answers, get("https://rs.example/fhir/Patient/8", true)).await;
        assert!(matches!(outcome, Outcome::Answer((StatusCode::OK, _))));
        let nonces: Vec<_> = sent.iter().map(|s| claims(s)["nonce"].as_str().map(str::to_owned)).collect();
        assert_eq!(
            nonces,
            [Some("n-1"), Some("n-2"), Some("n-3"), Some("n-4")].map(|n| n.map(str::to_owned))
        );
        let tokens: Vec<_> =
            sent.iter().map(|s| s.headers[AUTHORIZATION].to_str().unwrap().to_owned()).collect();
        assert_eq!(tokens, ["DPoP old", "DPoP old", "DPoP new", "DPoP new"]);
        assert_eq!(*auth.rejected.lock().unwrap(), 1);

        // A body that cannot be sent twice: the challenge is the answer.
        let auth = Tokens::new(vec![token("bound", "DPoP")], Some(Dpop::generate().unwrap()));
        let (outcome, sent) =
            run(&auth, vec![nonce_challenge("n-5")], get("https://rs.example/x", false)).await;
        assert!(matches!(outcome, Outcome::Refused(_, (StatusCode::UNAUTHORIZED, _))));
        assert_eq!(sent.len(), 1);
    }

    #[tokio::test]
    async fn a_bearer_token_goes_without_a_proof_and_a_bound_one_needs_the_key() {
        let with_key = Tokens::new(vec![token("plain", "Bearer")], Some(Dpop::generate().unwrap()));
        let (outcome, sent) = run(&with_key, vec![], get("https://rs.example/x", true)).await;
        assert!(matches!(outcome, Outcome::Answer(_)));
        assert_eq!(sent[0].headers[AUTHORIZATION], "Bearer plain");
        assert!(!sent[0].headers.contains_key(DPOP));

        let keyless = Tokens::new(vec![token("bound", "DPoP")], None);
        let (outcome, sent) = run(&keyless, vec![], get("https://rs.example/x", true)).await;
        let Outcome::Failed(error) = outcome else { panic!("a bound token sent without its key") };
        assert_eq!(error.kind(), crate::ErrorKind::Configuration);
        assert!(sent.is_empty());
    }
}
