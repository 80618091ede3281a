//! SMART v2 scopes (`system/Patient.rs`): what each endpoint needs, derived from
//! its interaction and resource type or declared with `#[scope(…)]`, and the
//! client's least-privilege set, merged per resource type.
//!
//! | interaction | letter |
//! |---|---|
//! | read, vread, history of one resource | `r` |
//! | search (GET `Type`, POST `Type/_search`), history of a type | `s` |
//! | create (POST `Type`) | `c` |
//! | update, conditional update, patch | `u` |
//! | delete, conditional delete | `d` |
//! | an operation on a type or one resource | `r` on that type |
//!
//! SMART defines no scopes for operations or transactions (scopes-and-launch-
//! context: "authorize each inner request"): an operation on a type or one
//! resource is taken to read that type, and one that does more (or reaches other
//! types: `$everything`) declares its scopes; an endpoint whose path names no
//! resource type (a transaction, an operation or the history of the whole
//! server) must. `metadata` (the CapabilityStatement) needs none.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Meta};

use crate::attr::Kind;
use crate::template::{Segment, Template};

/// The letters of SMART v2 permissions, in the order a scope lists them.
const LETTERS: &str = "cruds";

/// What an endpoint needs, if the macro can tell.
pub(crate) enum Derived {
    /// This permission on this resource type (`("Patient", 'r')`).
    Needs(String, char),
    /// Nothing (`metadata`).
    Nothing,
    /// The path names no resource type: the endpoint must declare its scopes.
    Unknown,
}

/// `#[scope(…)]` as written on an endpoint.
pub(crate) enum Declared {
    /// `#[scope(none)]`: the endpoint needs no scope.
    Nothing,
    /// `#[scope("system/Patient.rs", …)]`, each checked.
    Scopes(Vec<String>),
}

/// Whether `attr` is `#[scope(…)]`, which the macro removes.
pub(crate) fn is_scope(attr: &Attribute) -> bool {
    attr.path().is_ident("scope")
}

/// Reads the `#[scope(…)]` attributes of an endpoint: at most one.
pub(crate) fn declared(attrs: &[Attribute]) -> syn::Result<Option<Declared>> {
    let mut found: Option<(Declared, Span)> = None;
    for attr in attrs.iter().filter(|a| is_scope(a)) {
        if found.is_some() {
            return Err(syn::Error::new(
                attr.span(),
                "an endpoint has at most one #[scope(…)]: list every scope in it",
            ));
        }
        found = Some((parse(attr)?, attr.span()));
    }
    Ok(found.map(|(d, _)| d))
}

fn parse(attr: &Attribute) -> syn::Result<Declared> {
    let usage = || {
        syn::Error::new(
            attr.span(),
            "#[scope] takes SMART v2 scopes, #[scope(\"system/Patient.rs\", \"system/Observation.r\")], or #[scope(none)] for an endpoint that needs none",
        )
    };
    let Meta::List(list) = &attr.meta else { return Err(usage()) };
    if let Ok(ident) = list.parse_args::<syn::Ident>() {
        return if ident == "none" { Ok(Declared::Nothing) } else { Err(usage()) };
    }
    let literals = list
        .parse_args_with(syn::punctuated::Punctuated::<LitStr, syn::Token![,]>::parse_terminated)
        .map_err(|_| usage())?;
    if literals.is_empty() {
        return Err(usage());
    }
    let mut scopes = Vec::new();
    for lit in literals {
        let scope = lit.value();
        if let Some(problem) = problem(&scope) {
            return Err(syn::Error::new(lit.span(), format!("`{scope}` is not a SMART v2 scope: {problem}")));
        }
        scopes.push(scope);
    }
    Ok(Declared::Scopes(scopes))
}

/// What is wrong with a declared scope, if anything.
fn problem(scope: &str) -> Option<String> {
    let shape = || "expected `<context>/<Type>.<permissions>`, e.g. `system/Patient.rs`".to_owned();
    let Some((context, rest)) = scope.split_once('/') else { return Some(shape()) };
    if !matches!(context, "system" | "user" | "patient") {
        return Some(format!("the context is `system`, `user` or `patient`, not `{context}`"));
    }
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let Some((resource, letters)) = rest.split_once('.') else { return Some(shape()) };
    let is_type = resource.starts_with(|c: char| c.is_ascii_uppercase())
        && resource.chars().all(|c| c.is_ascii_alphanumeric());
    if resource != "*" && !is_type {
        return Some(format!("`{resource}` is not a resource type (or `*`)"));
    }
    if !in_order(letters) {
        return Some(format!(
            "the permissions are letters of `{LETTERS}`, in that order, each once; not `{letters}`"
        ));
    }
    None
}

/// Whether `letters` is a non-empty subsequence of `cruds`.
fn in_order(letters: &str) -> bool {
    let mut rest = LETTERS;
    !letters.is_empty()
        && letters.chars().all(|c| match rest.find(c) {
            Some(at) => {
                rest = &rest[at + 1..];
                true
            }
            None => false,
        })
}

/// What an endpoint of `kind` on `template` needs.
pub(crate) fn derive(kind: Kind, template: &Template) -> Derived {
    let Some(resource) = template.resource_type.clone() else {
        let metadata = matches!(template.segments.as_slice(), [Segment::Literal(s)] if s == "metadata");
        return if kind == Kind::Get && metadata { Derived::Nothing } else { Derived::Unknown };
    };
    let literal = |i: usize| template.segments.get(i).and_then(Segment::literal);
    let len = template.segments.len();
    let instance = template.is_instance();
    let letter = match kind {
        Kind::Get if len == 1 => Some('s'),
        Kind::Get if instance => Some('r'),
        // vread: Type/{id}/_history/{vid}
        Kind::Get if len == 4 && literal(2) == Some("_history") => Some('r'),
        Kind::Get if len == 2 && literal(1) == Some("_search") => Some('s'),
        Kind::Post if len == 1 => Some('c'),
        Kind::Post if len == 2 && literal(1) == Some("_search") => Some('s'),
        Kind::Put | Kind::Patch if len == 1 || instance => Some('u'),
        Kind::Delete if len == 1 || instance => Some('d'),
        Kind::History if instance => Some('r'),
        Kind::History if len == 1 => Some('s'),
        Kind::Operation => Some('r'),
        _ => None,
    };
    match letter {
        Some(letter) => Derived::Needs(resource, letter),
        None => Derived::Unknown,
    }
}

/// The scopes of a client: each endpoint's declared scopes, else its derived
/// need, merged per context and resource type into one scope with its letters in
/// `cruds` order (SMART's shortest form: `system/Patient.rs`, not
/// `system/Patient.r system/Patient.s`). A declared scope with a query
/// (`system/Observation.rs?category=…`) is kept as it is. Sorted.
pub(crate) fn merge<'a>(needs: impl IntoIterator<Item = (&'a Derived, Option<&'a Declared>)>) -> Vec<String> {
    let mut letters: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut verbatim: Vec<String> = Vec::new();
    let mut add = |context: &str, resource: &str, more: &str| {
        let entry = letters.entry((context.to_owned(), resource.to_owned())).or_default();
        entry.push_str(more);
    };
    for (derived, declared) in needs {
        match (declared, derived) {
            (Some(Declared::Nothing), _) => {}
            (Some(Declared::Scopes(scopes)), _) => {
                for scope in scopes {
                    let split = scope
                        .split_once('/')
                        .filter(|(_, rest)| !rest.contains('?'))
                        .and_then(|(context, rest)| rest.split_once('.').map(|(r, l)| (context, r, l)));
                    match split {
                        Some((context, resource, more)) => add(context, resource, more),
                        None => verbatim.push(scope.clone()),
                    }
                }
            }
            (None, Derived::Needs(resource, letter)) => add("system", resource, &letter.to_string()),
            (None, Derived::Nothing | Derived::Unknown) => {}
        }
    }
    let mut scopes: Vec<String> = letters
        .into_iter()
        .map(|((context, resource), have)| {
            let ordered: String = LETTERS.chars().filter(|c| have.contains(*c)).collect();
            format!("{context}/{resource}.{ordered}")
        })
        .chain(verbatim)
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_syntax() {
        for good in [
            "system/Patient.rs",
            "system/*.rs",
            "user/Observation.cruds",
            "system/Observation.rs?category=x|y",
        ] {
            assert!(problem(good).is_none(), "{good}");
        }
        for bad in [
            "Patient.rs",
            "admin/Patient.r",
            "system/Patient",
            "system/Patient.sr",
            "system/Patient.rr",
            "system/Patient.",
            "system/patient.r",
            "system/Patient.x",
        ] {
            assert!(problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn merged_per_type_in_cruds_order() {
        let needs = [
            Derived::Needs("Patient".into(), 's'),
            Derived::Needs("Patient".into(), 'r'),
            Derived::Needs("Observation".into(), 'c'),
            Derived::Needs("Patient".into(), 'r'),
            Derived::Unknown,
        ];
        let declared = [
            Declared::Scopes(vec!["system/Encounter.d".into(), "system/Patient.c".into()]),
            Declared::Scopes(vec!["system/Observation.rs?category=laboratory".into()]),
            Declared::Nothing,
        ];
        let pairs =
            needs.iter().map(|d| (d, None)).chain(declared.iter().map(|d| (&Derived::Unknown, Some(d))));
        assert_eq!(
            merge(pairs),
            [
                "system/Encounter.d",
                "system/Observation.c",
                "system/Observation.rs?category=laboratory",
                "system/Patient.crs"
            ]
        );
    }
}
