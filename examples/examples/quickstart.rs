//! The quick start: an in-process identity provider and protected API on loopback,
//! and the token engine doing its job against them. No setup, no network.
//!
//!     cargo run -p examples --example quickstart
//!
//! Set `RUST_LOG=auth_core=debug` to watch the engine's own log lines.

use std::process::ExitCode;
use std::time::Duration;

use auth_core::clock::{Clock, ManualClock};

use auth_core::oauth2::OAuth2Source;
use auth_core::{AuthClient, RetryPolicy, TokenManager};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> auth_core::Result<()> {
    // Provider, source and manager share a manual clock, so minutes of token life
    // pass in an instant. HTTP is real.
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await?;
    idp.set_delay(Duration::from_millis(50));
    println!("identity provider  {}", idp.token_url());
    println!("protected API      {}\n", idp.api_url(""));

    let (client_id, secret) = idp.credentials();
    let source =
        OAuth2Source::builder(idp.token_url(), client_id, secret).scopes(["system/Patient.rs"]).build()?;
    // One attempt per fetch (the default makes 3, 100 ms apart, in real time), so
    // the counts below are refreshes, not attempts.
    let mut retry = RetryPolicy::default();
    retry.attempts = 1;
    let tokens = TokenManager::builder(source).clock(clock.clone()).retry(retry).build();
    let api = AuthClient::new(tokens.clone())?;

    step("1. 500 callers ask for a token at the same moment");
    let calls: Vec<_> = (0..500)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        if matches!(call.await, Ok(Ok(_))) {
            ok += 1;
        }
    }
    println!("   {ok} callers got a token; the provider saw {} token request", idp.token_requests());

    let token = tokens.token().await?;
    println!(
        "   the token: {:?} type `{}`, valid for {}s (from {:?}), scope {:?}",
        token.access_token(),
        token.token_type(),
        token.remaining(clock.now()).as_secs(),
        token.expiry_source(),
        token.scope().unwrap_or("-"),
    );

    step("2. 20 API calls reuse the cached token");
    for i in 0..20 {
        let response = api.get(idp.api_url(&format!("Patient/{i}"))).send().await?;
        if !response.status().is_success() {
            println!("   unexpected status {}", response.status());
        }
    }
    println!("   {} API calls, still {} token request", idp.api_requests(), idp.token_requests());

    step("3. the server revokes every token; the next call is replayed once with a new one");
    idp.revoke_all();
    let response = api.get(idp.api_url("Patient/42")).send().await?;
    println!(
        "   status {} after {} rejection; token requests now {}",
        response.status().as_u16(),
        idp.api_rejections(),
        idp.token_requests()
    );

    step("4. 250 s later (virtual time): callers get the current token at once, one background refresh");
    clock.advance(Duration::from_secs(250));
    let before = tokens.token().await?;
    wait_for(|| tokens.cached().is_some_and(|t| !t.same_value(&before))).await;
    println!("   token requests now {} (one refresh, nobody waited)", idp.token_requests());

    step("5. the identity provider goes down (503) near expiry: the valid token keeps being served");
    idp.set_behavior(TokenBehavior::Status(503));
    let failing_since = idp.token_requests();
    clock.advance(Duration::from_secs(240));
    let mut served = 0;
    for _ in 0..50 {
        clock.advance(Duration::from_secs(1));
        if tokens.token().await.is_ok() {
            served += 1;
        }
        // Let a background refresh finish before virtual time moves on.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "   {served} of 50 calls over 50 s served; {} refresh attempts, spaced by exponential backoff",
        idp.token_requests() - failing_since
    );
    clock.advance(Duration::from_secs(20));
    match tokens.token().await {
        Ok(_) => println!("   unexpectedly got a token"),
        Err(e) => println!("   once it expired: {e} (kind {:?}, retryable: {})", e.kind(), e.is_retryable()),
    }

    step("6. the provider recovers: after the backoff, a new token");
    idp.set_behavior(TokenBehavior::Issue);
    clock.advance(Duration::from_secs(60));
    let fresh = tokens.token().await?;
    println!("   new token valid for {}s", fresh.remaining(clock.now()).as_secs());
    let stats = tokens.stats();
    println!(
        "\ndone: {} token requests seen by the provider, {} failed fetches, {} invalidations",
        idp.token_requests(),
        stats.failures,
        stats.invalidations
    );
    Ok(())
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn step(title: &str) {
    println!("\n{title}");
}
