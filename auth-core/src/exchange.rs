//! One authenticated exchange, whatever the HTTP stack: attach the bearer and the
//! vendor's extras, judge the answer, drop a rejected token and replay once with a
//! fresh one. [`AuthClient`](crate::AuthClient), the tower layer and the
//! reqwest-middleware all run this one flow; each only says how its requests are
//! sent and its responses read ([`Transport`]).
//!
//! "The token is bad" means a 401, any status whose `WWW-Authenticate` carries
//! `error="invalid_token"` (SanteDB answers an invalid bearer with 403), or a gRPC
//! answer whose headers carry `grpc-status: 16` (UNAUTHENTICATED, sent in the
//! headers as a trailers-only response, as gRPC servers do for a call refused
//! before any message). A 403 with `insufficient_scope` is final: a new token with
//! the same scopes would not help. The profile's judge has the last word.

use std::future::Future;

use http::header::{AUTHORIZATION, HeaderMap};
use http::{HeaderValue, StatusCode};
use tracing::Instrument;

use crate::challenge::{Challenge, bearer_challenge};
use crate::client::Authenticator;
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

    /// Puts `token`'s bearer and `profile`'s extras on `request` (see [`attach_headers`]
    /// and [`missing_query`]).
    fn attach(request: &mut Self::Request, token: &Token, profile: &ApiProfile);

    /// Sends `request`.
    fn send(
        &mut self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;

    /// The response's status.
    fn status(response: &Self::Response) -> StatusCode;

    /// The response's headers.
    fn headers(response: &Self::Response) -> &HeaderMap;

    /// Reads the first [`REJECTION_BODY_CAP`] bytes of a rejection for its judge,
    /// and keeps the response whole: if the judge hands it back to the caller, its
    /// body is what was read followed by the rest, still unread.
    fn read_for_judging(
        response: Self::Response,
    ) -> impl Future<Output = Result<(Self::Response, Vec<u8>), Self::Error>> + Send;
}

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
    let response = match send(transport, request, &token, profile).await {
        Ok(response) => response,
        Err(error) => return Outcome::Transport(error),
    };
    let challenge = match verdict(T::status(&response), T::headers(&response)) {
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
    let response = match send(transport, replay, &fresh, profile).await {
        Ok(response) => response,
        Err(error) => return Outcome::Transport(error),
    };
    match verdict(T::status(&response), T::headers(&response)) {
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

async fn send<T: Transport>(
    transport: &mut T,
    mut request: T::Request,
    token: &Token,
    profile: &ApiProfile,
) -> Result<T::Response, T::Error> {
    T::attach(&mut request, token, profile);
    transport.send(request).await
}

/// Sets `Authorization: Bearer …` (marked sensitive) and adds the profile's
/// headers the request does not already carry.
pub(crate) fn attach_headers(headers: &mut HeaderMap, token: &Token, profile: &ApiProfile) {
    headers.insert(AUTHORIZATION, token.bearer_header());
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

fn verdict(status: StatusCode, headers: &HeaderMap) -> Verdict {
    let grpc_unauthenticated = headers.get("grpc-status").is_some_and(is_unauthenticated);
    if status.is_success() && !grpc_unauthenticated {
        return Verdict::Accepted;
    }
    let challenge = bearer_challenge(headers);
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
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn verdicts() {
        let ok = StatusCode::OK;
        assert!(matches!(verdict(ok, &HeaderMap::new()), Verdict::Accepted));
        assert!(matches!(verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new()), Verdict::Rejected(None)));
        let santedb = headers(&[("www-authenticate", r#"bearer realm="x" error="invalid_token""#)]);
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &santedb), Verdict::Rejected(Some(_))));
        let scope = headers(&[("www-authenticate", r#"Bearer error="insufficient_scope""#)]);
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &scope), Verdict::InsufficientScope(_)));
        assert!(matches!(verdict(StatusCode::FORBIDDEN, &HeaderMap::new()), Verdict::Accepted));
        assert!(matches!(verdict(StatusCode::NOT_FOUND, &HeaderMap::new()), Verdict::Accepted));
        // gRPC: the status rides in the headers of an HTTP 200.
        assert!(matches!(verdict(ok, &headers(&[("grpc-status", "16")])), Verdict::Rejected(None)));
        assert!(matches!(verdict(ok, &headers(&[("grpc-status", "0")])), Verdict::Accepted));
        assert!(matches!(verdict(ok, &headers(&[("grpc-status", "7")])), Verdict::Accepted));
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
}
