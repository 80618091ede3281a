//! Lenient token-response parsing, over real HTTP: what real servers send, and what
//! must be refused with a typed error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::oauth2::OAuth2Source;
use auth_core::source::FetchContext;
use auth_core::token::ExpirySource;
use auth_core::{CredentialSource, ErrorKind, ResponseProblem};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior, fake_jwt};
use serde_json::json;

const HTML: &str = "<html><body>Sign in</body></html>";

enum Want {
    /// A token whose lifetime is this many seconds (±2 s), decided by this source.
    Lifetime(u64, ExpirySource),
    Problem(ResponseProblem),
}

#[tokio::test]
async fn lenient_parsing_table() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let exp_in = |secs: u64| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + secs;
    let jwt = fake_jwt(&json!({"sub": "x", "exp": exp_in(900)}));

    let cases: Vec<(&str, String, Want)> = vec![
        (
            "null refresh_token",
            r#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":null}"#.into(),
            Want::Lifetime(3600, ExpirySource::ExpiresIn),
        ),
        (
            "string expires_in",
            r#"{"access_token":"a","token_type":"Bearer","expires_in":"1800"}"#.into(),
            Want::Lifetime(1800, ExpirySource::ExpiresIn),
        ),
        (
            "lowercase bearer",
            r#"{"access_token":"a","token_type":"bearer","expires_in":60}"#.into(),
            Want::Lifetime(60, ExpirySource::ExpiresIn),
        ),
        (
            "capitalised Bearer",
            r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#.into(),
            Want::Lifetime(60, ExpirySource::ExpiresIn),
        ),
        (
            "no expires_in, JWT exp",
            format!(r#"{{"access_token":"{jwt}","token_type":"Bearer"}}"#),
            Want::Lifetime(900, ExpirySource::AccessTokenExp),
        ),
        (
            "JWT exp earlier than expires_in",
            format!(r#"{{"access_token":"{jwt}","expires_in":3600}}"#),
            Want::Lifetime(900, ExpirySource::AccessTokenExp),
        ),
        (
            "nothing at all",
            r#"{"access_token":"a","token_type":"Bearer"}"#.into(),
            Want::Lifetime(300, ExpirySource::Default),
        ),
        (
            "every optional null",
            r#"{"access_token":"a","token_type":null,"expires_in":null,"scope":null,"id_token":null}"#.into(),
            Want::Lifetime(300, ExpirySource::Default),
        ),
        (
            "extra fields",
            r#"{"access_token":"a","expires_in":60,"consented_on":1610000000,"patient":"123"}"#.into(),
            Want::Lifetime(60, ExpirySource::ExpiresIn),
        ),
        (
            "missing access_token",
            r#"{"token_type":"Bearer","expires_in":3600}"#.into(),
            Want::Problem(ResponseProblem::MissingAccessToken),
        ),
        (
            "empty access_token",
            r#"{"access_token":"","token_type":"Bearer"}"#.into(),
            Want::Problem(ResponseProblem::EmptyAccessToken),
        ),
        (
            "mac token_type",
            r#"{"access_token":"a","token_type":"mac"}"#.into(),
            Want::Problem(ResponseProblem::UnsupportedTokenType { token_type: "mac".into() }),
        ),
        (
            "HTML page",
            HTML.into(),
            Want::Problem(ResponseProblem::NotJson {
                content_type: Some("text/html".into()),
                len: HTML.len(),
            }),
        ),
    ];
    for (name, body, want) in cases {
        let content_type = if body.starts_with('<') { "text/html" } else { "application/json" };
        idp.set_behavior(TokenBehavior::Raw { status: 200, content_type: content_type.into(), body });
        match (source.fetch(&FetchContext::default()).await, want) {
            (Ok(token), Want::Lifetime(secs, from)) => {
                let got = token.lifetime().as_secs();
                assert!(got.abs_diff(secs) <= 2, "{name}: lifetime {got}, want {secs}");
                assert_eq!(token.expiry_source(), from, "{name}");
            }
            (Err(e), Want::Problem(p)) => {
                assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{name}");
                assert_eq!(e.response_problem(), Some(&p), "{name}");
                assert!(!e.is_retryable(), "{name}");
            }
            (Ok(_), Want::Problem(p)) => panic!("{name}: accepted, want {p:?}"),
            (Err(e), Want::Lifetime(..)) => panic!("{name}: refused: {e}"),
        }
    }
}

#[tokio::test]
async fn vendor_fields_survive() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    idp.set_behavior(TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: r#"{"access_token":"a","token_type":"bearer","expires_in":1799984,"consented_on":1610000000}"#
            .into(),
    });
    let ms = auth_core::ExpiryPolicy::default().with_unit(auth_core::ExpiresInUnit::Milliseconds);
    let source = OAuth2Source::builder(idp.token_url(), id, secret).expiry(ms).build().unwrap();
    let token = source.fetch(&FetchContext::default()).await.unwrap();
    assert_eq!(token.extra().get("consented_on"), Some(&json!(1610000000)));
    // SanteDB 2.x: 1 799 984 ms is 30 minutes, not 20 days.
    assert!(token.lifetime().abs_diff(Duration::from_secs(1799)) <= Duration::from_secs(2));
}
