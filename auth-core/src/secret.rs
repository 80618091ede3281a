//! Types for values that must never be printed: client secrets, device secrets,
//! private keys and the tokens an identity provider hands out.
//!
//! Every type here prints `Name([redacted])` for `Debug` and `[redacted]` for
//! `Display`, and wipes its memory on drop (it wraps [`secrecy::SecretString`],
//! which zeroizes). The only way to read the value is the explicit
//! `expose_secret()`, so a reviewer can grep for every place a secret leaves
//! its box.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        pub struct $name(SecretString);

        impl $name {
            /// Wraps a value. The `String` is moved in, not copied, so no stray
            /// copy is left behind by this call.
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::from(value.into()))
            }

            /// The secret itself. Call sites are the audit trail: keep them few.
            pub fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }

            /// True when the value is the empty string.
            pub fn is_empty(&self) -> bool {
                self.0.expose_secret().is_empty()
            }

            /// Compares with another value in time independent of where they differ.
            pub fn ct_eq(&self, other: &str) -> bool {
                constant_time_eq(self.expose_secret().as_bytes(), other.as_bytes())
            }
        }

        impl Clone for $name {
            fn clone(&self) -> Self {
                // `to_owned` allocates exactly `len` bytes, so turning it into the
                // boxed str inside SecretString does not reallocate and leave an
                // unzeroized copy behind.
                Self::new(self.expose_secret().to_owned())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value.to_owned())
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other.expose_secret())
            }
        }

        impl Eq for $name {}
    };
}

secret_type!(
    /// An OAuth 2.0 client secret (RFC 6749 §2.3.1).
    ClientSecret
);
secret_type!(
    /// A device (node) secret, as SanteDB uses to authenticate the calling machine.
    DeviceSecret
);
secret_type!(
    /// A private key in PEM form, used to sign client assertions.
    PrivateKeyPem
);
secret_type!(
    /// The value of an access token, as sent in `Authorization: Bearer …`.
    AccessToken
);
secret_type!(
    /// A refresh token (RFC 6749 §6).
    RefreshToken
);
secret_type!(
    /// An OpenID Connect id token.
    IdToken
);
secret_type!(
    /// Any other value that must not be logged, such as an API gateway's subscription key.
    SecretValue
);

/// Byte comparison whose running time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Replaces every occurrence of `secret` in `text` with `[redacted]`.
///
/// Used on text that came from a server (an `error_description`, say), because a
/// misbehaving server can echo back what it was sent.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        // Also as it travelled in a form body, in case the server echoes it encoded.
        let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for form in [*secret, encoded.as_str()] {
            if out.contains(form) {
                out = out.replace(form, "[redacted]");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = ClientSecret::new("hunter2-canary");
        assert_eq!(format!("{s:?}"), "ClientSecret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(ClientSecret([redacted]))");
        assert_eq!(s.expose_secret(), "hunter2-canary");
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(AccessToken::new("abc"), AccessToken::new("abc"));
        assert_ne!(AccessToken::new("abc"), AccessToken::new("abd"));
        assert_ne!(AccessToken::new("abc"), AccessToken::new("abcd"));
    }

    #[test]
    fn scrub_removes_echoed_secrets() {
        assert_eq!(scrub("bad secret s3cr3t-value given", &["s3cr3t-value"]), "bad secret [redacted] given");
        assert_eq!(scrub("got p%3As+x", &["p:s x"]), "got [redacted]");
        // Very short values would redact ordinary words; they are left alone.
        assert_eq!(scrub("a b c", &["a"]), "a b c");
    }
}
