//! The JWT `exp` decoding path: `jwt_exp` on arbitrary text, and on well-formed
//! three-part tokens whose payload is the fuzzer's bytes (so the claims parser is
//! reached, not just the base64 gate). Never panics; an exp is always finite.
#![no_main]

use auth_core::token::jwt_exp;
use libfuzzer_sys::fuzz_target;

const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"HS256","typ":"JWT"}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        let take = chunk.len() + 1;
        for i in 0..take {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(exp) = jwt_exp(text) {
            assert!(exp.is_finite());
        }
    }
    // The payload as claims JSON inside a syntactically valid token.
    let token = format!("{HEADER}.{}.c2ln", b64url(data));
    if let Some(exp) = jwt_exp(&token) {
        assert!(exp.is_finite());
    }
});
