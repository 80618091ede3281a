//! A [`reqwest_middleware::Middleware`] that authenticates the requests of a
//! `reqwest_middleware::ClientWithMiddleware`. Feature `reqwest-middleware`.
//!
//! The same flow as [`AuthClient`] (one implementation, in
//! `exchange.rs`): the bearer and the [`ApiProfile`]'s extras on every request,
//! the profile's judge on every rejection, the rejected token dropped and the
//! request replayed once with a fresh one, if its body can be sent again (reqwest's
//! `try_clone`: any body but a stream). With a DPoP-bound token, every attempt
//! (the replay and the answer to a `use_dpop_nonce` challenge included) carries a
//! new proof for the request's method and URL (see [`crate::dpop`]).
//!
//! ```no_run
//! # use auth_core::{TokenManager, oauth2::OAuth2Source};
//! # use auth_core::middleware::AuthMiddleware;
//! # fn demo(source: OAuth2Source) {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     // Outer middleware (retries, tracing) first: each retry then goes through
//!     // authentication again, with the token current at that moment.
//!     .with(AuthMiddleware::new(TokenManager::new(source)))
//!     .build();
//! # let _ = client; }
//! ```
//!
//! **What a caller gets back.** Unlike [`AuthClient`], which
//! turns a final rejection into an [`Error`](crate::Error), the middleware hands the server's
//! own answer back (a 401 after the replay, a 403 `insufficient_scope`), as every
//! other middleware in the chain expects; `error_for_status` still tells. It fails
//! with `reqwest_middleware::Error::Middleware` holding an [`Error`](crate::Error) (downcast it)
//! when no token can be had, for plain `http://` to another host, and when the
//! profile's judge calls a rejection a configuration mistake.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::Extensions;
use reqwest::header::HeaderMap;
use reqwest::{Method, Request, Response, StatusCode};
use reqwest_middleware::Next;
use url::Url;

use crate::client::{AuthClient, Authenticator, attach_to_reqwest, read_reqwest_for_judging};
use crate::exchange::{Outcome, Transport, exchange};
use crate::profile::ApiProfile;
use crate::token::Token;

/// Authenticates every request of a `ClientWithMiddleware` (see the [module](self)).
#[derive(Clone)]
pub struct AuthMiddleware {
    auth: Arc<dyn Authenticator>,
    profile: ApiProfile,
    allow_insecure_http: bool,
}

impl fmt::Debug for AuthMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthMiddleware")
            .field("auth", &self.auth)
            .field("profile", &self.profile)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl AuthMiddleware {
    /// A middleware taking its tokens from `auth` (a [`TokenManager`](crate::TokenManager),
    /// or an `Arc<dyn Authenticator>` shared with other clients), with an empty profile.
    pub fn new(auth: impl Authenticator) -> Self {
        Self { auth: Arc::new(auth), profile: ApiProfile::default(), allow_insecure_http: false }
    }

    /// A middleware with `client`'s authenticator, profile and http setting.
    pub fn from_client(client: &AuthClient) -> Self {
        Self {
            auth: client.authenticator().clone(),
            profile: client.profile().clone(),
            allow_insecure_http: client.allows_insecure_http(),
        }
    }

    /// What the vendor's API wants on every request, and how its rejections are
    /// judged (default: nothing added, every rejection trusted).
    pub fn profile(mut self, profile: ApiProfile) -> Self {
        self.profile = profile;
        self
    }

    /// Allows sending the token over plain `http://` to hosts other than loopback
    /// (refused by default). Only for closed test networks.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }
}

#[async_trait]
impl reqwest_middleware::Middleware for AuthMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        crate::endpoint::check_scheme(request.url(), self.allow_insecure_http)
            .map_err(reqwest_middleware::Error::middleware)?;
        let replay = request.try_clone();
        let mut transport = Chain { next, extensions };
        match exchange(&*self.auth, &self.profile, &mut transport, request, replay).await {
            Outcome::Answer(response) | Outcome::Refused(_, response) => Ok(response),
            Outcome::Failed(error) => Err(reqwest_middleware::Error::middleware(error)),
            Outcome::Transport(error) => Err(error),
        }
    }
}

/// The rest of the middleware chain as the [`Transport`] of an exchange.
struct Chain<'a, 'e> {
    next: Next<'a>,
    extensions: &'e mut Extensions,
}

impl Transport for Chain<'_, '_> {
    type Request = Request;
    type Response = Response;
    type Error = reqwest_middleware::Error;

    fn attach(request: &mut Request, token: &Token, profile: &ApiProfile) {
        attach_to_reqwest(request, token, profile);
    }

    fn method(request: &Request) -> &Method {
        request.method()
    }

    fn url(request: &Request) -> Option<Url> {
        Some(request.url().clone())
    }

    fn headers_mut(request: &mut Request) -> &mut HeaderMap {
        request.headers_mut()
    }

    async fn split(&mut self, request: Request) -> reqwest_middleware::Result<(Request, Option<Request>)> {
        let copy = request.try_clone();
        Ok((request, copy))
    }

    async fn send(&mut self, request: Request) -> reqwest_middleware::Result<Response> {
        self.next.clone().run(request, self.extensions).await
    }

    fn status(response: &Response) -> StatusCode {
        response.status()
    }

    fn headers(response: &Response) -> &HeaderMap {
        response.headers()
    }

    fn answered_from(response: &Response) -> Option<&Url> {
        Some(response.url())
    }

    async fn read_for_judging(response: Response) -> reqwest_middleware::Result<(Response, Vec<u8>)> {
        Ok(read_reqwest_for_judging(response).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_profile_secrets() {
        let profile = ApiProfile::new().secret_header("x-api-key", &crate::SecretValue::new("canary-key"));
        let Ok(profile) = profile else { panic!("a valid header was refused") };
        let source = crate::oauth2::OAuth2Source::builder(
            "https://idp.example/token",
            "c",
            crate::ClientSecret::new("canary-secret"),
        )
        .build();
        let Ok(source) = source else { panic!("a valid source was refused") };
        let middleware = AuthMiddleware::new(crate::TokenManager::new(source)).profile(profile);
        let debug = format!("{middleware:?}");
        assert!(!debug.contains("canary"), "{debug}");
    }
}
