//! `parse_token_response` on arbitrary bytes, under each expiry policy a source can
//! configure. It must never panic, and a token it accepts must have a bounded
//! lifetime and a Debug output without the token value.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use auth_core::token::{ExpiresInUnit, ExpiryPolicy, MAX_LIFETIME, ParseOptions, parse_token_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options; the rest is the response body.
    let Some((&selector, body)) = data.split_first() else { return };
    let mut policy = ExpiryPolicy::default();
    if selector & 1 != 0 {
        policy = policy.with_unit(ExpiresInUnit::Milliseconds);
    }
    if selector & 2 != 0 {
        policy = policy.with_expires_in_first(true);
    }
    if selector & 4 != 0 {
        policy = policy.with_jwt_exp(false);
    }
    if selector & 8 != 0 {
        // No clamping at all: the crate's own 10-year ceiling must still hold.
        policy = policy.with_bounds(Duration::ZERO, Duration::MAX);
    }
    let mut options = ParseOptions::default().with_expiry(policy);
    if selector & 16 != 0 {
        options = options.accept_token_type("urn:ietf:params:oauth:token-type:jwt");
    }
    // Received at a fixed instant, or at the epoch itself (no time before it).
    let received_at =
        if selector & 32 != 0 { UNIX_EPOCH } else { UNIX_EPOCH + Duration::from_secs(1_700_000_000) };

    if let Ok(token) = parse_token_response(body, received_at, &options) {
        assert!(token.lifetime() <= MAX_LIFETIME, "lifetime {:?}", token.lifetime());
        assert!(token.expires_at() >= token.issued_at());
        let value = token.access_token().expose_secret();
        assert!(!value.is_empty());
        // Debug shows server text that is not secret: the names of unknown fields,
        // the scope, the token type. A server can spell the token into those (this
        // target's first find: a field named `e<token>…`), so they are taken out.
        // What remains is looked at for the token as a derived Debug would print it,
        // quoted: unquoted, it can be Debug's own words (its second find: a token
        // that was literally `access_token`, the name of the field).
        let mut debug = format!("{token:?}");
        let shown = token.extra().keys().map(String::as_str).chain(token.scope());
        for text in shown.chain([token.token_type()]) {
            debug = debug.replace(&format!("{text:?}"), "");
        }
        assert!(!debug.contains(&format!("{value:?}")), "Debug shows the access token");
        let header = token.bearer_header();
        assert!(header.is_sensitive());
    }
});
