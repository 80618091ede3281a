//! `WWW-Authenticate` parsing: `parse_challenges` on arbitrary text, and the
//! header-map path (several values, bytes that are not UTF-8). Never panics; what
//! it returns can be displayed and parsed again.
#![no_main]

use auth_core::challenge::{bearer_challenge, challenges, parse_challenges};
use http::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for challenge in parse_challenges(&text) {
        let shown = challenge.to_string();
        let _ = parse_challenges(&shown);
        let _ = (challenge.is_invalid_token(), challenge.is_insufficient_scope(), challenge.scope());
    }
    // Each line a header value, as a server sending several headers would.
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    let all = challenges(&headers);
    if let Some(c) = bearer_challenge(&headers) {
        assert!(all.contains(&c));
    }
});
