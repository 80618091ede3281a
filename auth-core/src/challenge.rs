//! Lenient parsing of `WWW-Authenticate` (RFC 7235 §4.1, RFC 6750 §3).
//!
//! Real servers are not RFC-exact: SanteDB's RestSrvr sends
//! `bearer realm="x" error="invalid_token"` (lowercase scheme, parameters separated
//! by spaces only), so the scheme is compared case-insensitively and both commas and
//! whitespace separate parameters.

use std::fmt;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

/// One challenge: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// The scheme as sent (`Bearer`, `bearer`, `Basic`, …).
    pub scheme: String,
    /// Parameters in order; names lowercased (they are case-insensitive).
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Whether the scheme is `name`, ignoring ASCII case.
    pub fn is_scheme(&self, name: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(name)
    }

    /// A parameter by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The RFC 6750 `error` code.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    /// `error_description`.
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }

    /// `scope`: the scope the resource needs.
    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    /// `realm`.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// True for `error="invalid_token"`: the token is expired, revoked or malformed and
    /// a new one may work.
    pub fn is_invalid_token(&self) -> bool {
        self.error().is_some_and(|e| e.eq_ignore_ascii_case("invalid_token"))
    }

    /// True for `error="insufficient_scope"`: a new token with the same scopes will not help.
    pub fn is_insufficient_scope(&self) -> bool {
        self.error().is_some_and(|e| e.eq_ignore_ascii_case("insufficient_scope"))
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        for (i, (k, v)) in self.params.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        Ok(())
    }
}

/// Parses one `WWW-Authenticate` value, which may hold several challenges.
///
/// Never fails: text that cannot be understood is skipped.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let (token, after) = split_token(rest);
        if token.is_empty() {
            // A stray character such as `"` or `=`: skip it.
            let mut chars = rest.chars();
            chars.next();
            rest = chars.as_str();
            continue;
        }
        let after_ws = after.trim_start();
        if let Some(value_part) = after_ws.strip_prefix('=').filter(|v| !v.starts_with('=')) {
            let (value, remaining) = read_value(value_part.trim_start());
            match out.last_mut() {
                Some(challenge) => challenge.params.push((token.to_ascii_lowercase(), value)),
                // Parameters before any scheme: keep them under an empty scheme.
                None => out.push(Challenge {
                    scheme: String::new(),
                    params: vec![(token.to_ascii_lowercase(), value)],
                }),
            }
            rest = remaining;
        } else if after_ws.starts_with('=') {
            // token68 (`Negotiate abc==`): the padding belongs to the token; skip it.
            rest = after_ws.trim_start_matches('=');
        } else {
            out.push(Challenge { scheme: token.to_owned(), params: Vec::new() });
            rest = after;
        }
    }
    out
}

/// Every challenge in every `WWW-Authenticate` header of a response.
pub fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// The challenge that speaks about our bearer token: the first `Bearer` one, else the
/// first that carries an `error` parameter.
pub fn bearer_challenge(headers: &HeaderMap) -> Option<Challenge> {
    challenge_for(headers, "Bearer")
}

/// The challenge that speaks about a token sent with `scheme` (`Bearer`,
/// `DPoP`): the first of that scheme, else the first that carries an `error`
/// parameter.
pub fn challenge_for(headers: &HeaderMap, scheme: &str) -> Option<Challenge> {
    let all = challenges(headers);
    let own = all.iter().position(|c| c.is_scheme(scheme));
    let with_error = all.iter().position(|c| c.error().is_some());
    own.or(with_error).map(|i| all[i].clone())
}

fn split_token(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '"').unwrap_or(s.len());
    s.split_at(end)
}

fn read_value(s: &str) -> (String, &str) {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                c => value.push(c),
            }
        }
        // Unterminated quote: take everything.
        (value, "")
    } else {
        let end = s.find(|c: char| c.is_whitespace() || c == ',').unwrap_or(s.len());
        (s[..end].to_owned(), &s[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Challenge {
        let all = parse_challenges(v);
        assert_eq!(all.len(), 1, "{v} → {all:?}");
        all.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn rfc_6750_form() {
        let c = one(
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        );
        assert!(c.is_scheme("bearer"));
        assert_eq!(c.realm(), Some("example"));
        assert!(c.is_invalid_token());
        assert_eq!(c.error_description(), Some("The access token expired"));
    }

    #[test]
    fn santedb_space_separated_lowercase() {
        let c = one(
            r#"bearer realm="santedb.local" error="invalid_token" error_description="Invalid bearer token""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert!(c.is_invalid_token());
        assert_eq!(c.error_description(), Some("Invalid bearer token"));
    }

    #[test]
    fn unquoted_values_and_insufficient_scope() {
        let c = one("BEARER error=insufficient_scope, scope=\"system/Patient.rs system/Observation.rs\"");
        assert!(c.is_insufficient_scope());
        assert!(!c.is_invalid_token());
        assert_eq!(c.scope(), Some("system/Patient.rs system/Observation.rs"));
    }

    #[test]
    fn several_challenges_and_escapes() {
        let all = parse_challenges(r#"Basic realm="a\"b", Bearer error="invalid_token", Negotiate abc=="#);
        let schemes: Vec<_> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "Negotiate"]);
        assert_eq!(all[0].realm(), Some("a\"b"));
        assert!(all[1].is_invalid_token());
    }

    #[test]
    fn garbage_does_not_panic() {
        for v in ["", "=", "\"", "Bearer error=\"unterminated", ",,, ,", "= = =", "a=\"\\", "é=ü"] {
            let _ = parse_challenges(v);
        }
        assert_eq!(one("Bearer").params.len(), 0);
    }

    #[test]
    fn bearer_is_preferred() {
        let mut h = HeaderMap::new();
        h.append(WWW_AUTHENTICATE, "Basic realm=\"x\"".parse().unwrap_or_else(|_| unreachable!()));
        h.append(
            WWW_AUTHENTICATE,
            "Bearer error=\"invalid_token\"".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(bearer_challenge(&h).is_some_and(|c| c.is_invalid_token()));
    }
}
