//! Secret canaries: a full flow at TRACE level with known secret values, then a
//! search for them in every log line, error message, Debug and Display output.

use auth_core::manager::{ManagerConfig, RetryPolicy};
use auth_core::oauth2::OAuth2Source;
use auth_core::request::ClientAuthMethod;
use auth_core::source::FetchContext;
use auth_core::{
    AccessToken, ApiProfile, AuthClient, ClientSecret, CredentialSource, DeviceSecret, IdToken,
    PrivateKeyPem, RefreshToken, SecretValue, TokenManager,
};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};

const CLIENT_SECRET: &str = "CANARY-client-secret-7f3a";
const ACCESS: &str = "CANARY-access-token-91bd";
const REFRESH: &str = "CANARY-refresh-token-c0de";
const ID: &str = "CANARY-id-token-5eed";
const SUB_KEY: &str = "CANARY-subscription-key-aa11";
const ALL: [&str; 5] = [CLIENT_SECRET, ACCESS, REFRESH, ID, SUB_KEY];

fn assert_clean(what: &str, text: &str) {
    for canary in ALL {
        assert!(!text.contains(canary), "{what} leaks {canary}:\n{text}");
    }
    assert!(!text.to_lowercase().contains("canary-"), "{what} leaks a canary:\n{text}");
}

/// The flow below installs a global TRACE subscriber: it runs in its own process.
#[test]
fn no_secret_appears_in_logs_errors_debug_or_display() {
    integration_tests::run_in_child("canary_engine::logs_errors_debug_and_display", |_| {});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in its own process by no_secret_appears_in_logs_errors_debug_or_display"]
async fn logs_errors_debug_and_display() {
    integration_tests::assert_child("canary_engine::logs_errors_debug_and_display");
    let logs = integration_tests::capture_all_logs();

    let idp = TestIdentityProvider::start().await.unwrap();
    idp.register_client("leak-check-client", CLIENT_SECRET);
    let token_body = format!(
        r#"{{"access_token":"{ACCESS}","token_type":"Bearer","expires_in":300,"refresh_token":"{REFRESH}","id_token":"{ID}"}}"#
    );
    idp.set_behavior(TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: token_body,
    });

    let profile = ApiProfile::new()
        .secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new(SUB_KEY))
        .unwrap()
        .secret_query("subscription-key", &SecretValue::new(SUB_KEY));
    let mut outputs: Vec<(String, String)> = Vec::new();
    for method in
        [ClientAuthMethod::ClientSecretBasic, ClientAuthMethod::ClientSecretPost, ClientAuthMethod::JsonBody]
    {
        let source =
            OAuth2Source::builder(idp.token_url(), "leak-check-client", ClientSecret::new(CLIENT_SECRET))
                .auth_method(method)
                .build()
                .unwrap();
        let mut config = ManagerConfig::default();
        config.retry = RetryPolicy::default();
        let manager = TokenManager::builder(source.clone()).config(config).build();
        let client = AuthClient::builder(manager.clone()).profile(profile.clone()).build().unwrap();
        outputs.push(("AuthClient Debug".into(), format!("{client:?}")));

        // Fetch, use, get rejected (the provider's API does not know these tokens),
        // replay, fail: every path that logs.
        let token = manager.token().await.unwrap();
        assert_eq!(token.access_token().expose_secret(), ACCESS, "the flow really used the canaries");
        let rejected = client.get(idp.api_url("Patient/1")).send().await.unwrap_err();
        outputs.push(("rejection Display".into(), rejected.to_string()));
        outputs.push(("rejection Debug".into(), format!("{rejected:?}")));
        outputs.push(("token Debug".into(), format!("{token:?}")));
        outputs.push(("token pretty Debug".into(), format!("{token:#?}")));
        outputs.push(("source Debug".into(), format!("{source:?}")));
        outputs.push(("manager Debug".into(), format!("{manager:?}")));
        outputs.push(("client Debug".into(), format!("{client:?}")));
        outputs.push(("cache key".into(), format!("{:?} {}", source.cache_key(), source.cache_key())));

        // A server that echoes the secret back in its error.
        idp.fail_next(
            1,
            TokenBehavior::Raw {
                status: 401,
                content_type: "application/json".into(),
                body: format!(
                    r#"{{"error":"invalid_client","error_description":"secret {CLIENT_SECRET} is wrong"}}"#
                ),
            },
        );
        let echoed = source.fetch(&FetchContext::default()).await.unwrap_err();
        outputs.push(("echoed error Display".into(), echoed.to_string()));
        outputs.push(("echoed error Debug".into(), format!("{echoed:?}")));
        // A 200 whose body is not a token response: the body is never quoted.
        idp.fail_next(
            1,
            TokenBehavior::Raw {
                status: 200,
                content_type: "text/plain".into(),
                body: format!("access_token={ACCESS}&refresh_token={REFRESH}"),
            },
        );
        let garbled = source.fetch(&FetchContext::default()).await.unwrap_err();
        outputs.push(("garbled error".into(), format!("{garbled} {garbled:?}")));
        // And a refresh grant.
        // Servers that echo the refresh token or the revoked access token back.
        idp.fail_next(
            1,
            TokenBehavior::Raw {
                status: 400,
                content_type: "application/json".into(),
                body: format!(
                    r#"{{"error":"invalid_grant","error_description":"refresh token {REFRESH} expired"}}"#
                ),
            },
        );
        let echoed = source.refresh(&FetchContext::default(), &RefreshToken::new(REFRESH)).await.unwrap_err();
        assert_eq!(echoed.oauth_error().map(|e| e.code.as_str().to_owned()), Some("invalid_grant".into()));
        outputs.push(("echoed refresh error".into(), format!("{echoed} {echoed:?}")));
        idp.fail_next(
            1,
            TokenBehavior::Raw {
                status: 400,
                content_type: "application/json".into(),
                body: format!(
                    r#"{{"error":"invalid_request","error_description":"cannot revoke {ACCESS}"}}"#
                ),
            },
        );
        let revoking =
            OAuth2Source::builder(idp.token_url(), "leak-check-client", ClientSecret::new(CLIENT_SECRET))
                .revocation_url(idp.token_url())
                .build()
                .unwrap();
        let echoed = revoking.revoke(&token).await.unwrap_err();
        outputs.push(("echoed revoke error".into(), format!("{echoed} {echoed:?}")));
        let refreshed = source.refresh(&FetchContext::default(), &RefreshToken::new(REFRESH)).await;
        assert!(refreshed.as_ref().is_ok_and(|t| t.is_some()), "the refresh grant ran");
        outputs.push(("refresh result".into(), format!("{refreshed:?}")));
    }

    for (name, text) in [
        ("ClientSecret", format!("{0:?} {0}", ClientSecret::new(CLIENT_SECRET))),
        ("DeviceSecret", format!("{0:?} {0}", DeviceSecret::new(CLIENT_SECRET))),
        ("PrivateKeyPem", format!("{0:?} {0}", PrivateKeyPem::new(CLIENT_SECRET))),
        ("AccessToken", format!("{0:?} {0}", AccessToken::new(ACCESS))),
        ("RefreshToken", format!("{0:?} {0}", RefreshToken::new(REFRESH))),
        ("IdToken", format!("{0:?} {0}", IdToken::new(ID))),
        ("SecretValue", format!("{0:?} {0}", SecretValue::new(SUB_KEY))),
        ("ApiProfile", format!("{profile:?}")),
        ("recorded requests", format!("{:?}", idp.token_log())),
    ] {
        outputs.push((name.into(), text));
    }
    for (name, text) in &outputs {
        assert_clean(name, text);
    }

    let logged = logs.text();
    assert!(logged.contains("token ready"), "TRACE logging was captured:\n{logged}");
    assert!(logged.contains("token rejected"), "the replay path was logged");
    assert_clean("the TRACE log", &logged);
    eprintln!("checked {} outputs and {} log lines", outputs.len(), logged.lines().count());
}
