//! Where the expansion reaches the FHIR runtime (`__private`, `FhirClient`,
//! `SearchParams`) when the block does not say (`crate = "…"` always wins).
//!
//! A proc macro cannot use `$crate`, and the runtime is not this crate anyway: it
//! is `auth-fhir`, which an application may depend on directly (perhaps renamed)
//! or only through the `fhir-auth` facade. So the user's `Cargo.toml` is read
//! (with `proc-macro-crate`, which also follows `workspace = true`) to see which.

use proc_macro_crate::FoundCrate;
use proc_macro2::Span;
use syn::{Ident, PathSegment};

/// The facade: the runtime is its `fhir` module.
const FACADE: &str = "fhir-auth";
/// The runtime itself.
const RUNTIME: &str = "auth-fhir";
/// What the runtime is called when nothing better is known.
const RUNTIME_NAME: &str = "auth_fhir";

/// The runtime's path as seen from the crate being compiled, read from its
/// `Cargo.toml`.
pub(crate) fn from_manifest() -> syn::Path {
    resolve(|name| proc_macro_crate::crate_name(name).ok())
}

/// In order:
/// - the facade, under the name the user gave it: `::fhir_auth::fhir`;
/// - `auth-fhir`, under the name the user gave it: `::auth_fhir`;
/// - `::auth_fhir` otherwise. That covers `auth-fhir` being the crate compiled
///   (`FoundCrate::Itself`: its doctests and examples are crates of their own,
///   which see it as `auth_fhir`), and a crate that depends on neither, for
///   which rustc's error then names the missing crate.
///
/// The facade being the crate compiled falls through to its own `auth-fhir`
/// dependency, which its library code can reach too.
fn resolve(lookup: impl Fn(&str) -> Option<FoundCrate>) -> syn::Path {
    if let Some(FoundCrate::Name(name)) = lookup(FACADE)
        && let Some(facade) = ident(&name)
    {
        return path(&[facade, Ident::new("fhir", Span::call_site())]);
    }
    if let Some(FoundCrate::Name(name)) = lookup(RUNTIME)
        && let Some(runtime) = ident(&name)
    {
        return path(&[runtime]);
    }
    path(&[Ident::new(RUNTIME_NAME, Span::call_site())])
}

/// A dependency's name as an identifier; `None` for one that is not (a
/// keyword), so the next candidate is tried instead of emitting broken tokens.
fn ident(name: &str) -> Option<Ident> {
    syn::parse_str::<Ident>(name).ok()
}

/// `::a::b`: absolute, so a local module of the same name cannot shadow it.
fn path(segments: &[Ident]) -> syn::Path {
    syn::Path {
        leading_colon: Some(Default::default()),
        segments: segments.iter().cloned().map(PathSegment::from).collect(),
    }
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;

    use super::*;

    fn resolved(found: &[(&str, FoundCrate)]) -> String {
        resolve(|name| found.iter().find(|(n, _)| *n == name).map(|(_, f)| f.clone()))
            .to_token_stream()
            .to_string()
            .replace(' ', "")
    }

    fn name(n: &str) -> FoundCrate {
        FoundCrate::Name(n.to_owned())
    }

    #[test]
    fn the_facade_first() {
        assert_eq!(
            resolved(&[(FACADE, name("fhir_auth")), (RUNTIME, name("auth_fhir"))]),
            "::fhir_auth::fhir"
        );
        assert_eq!(resolved(&[(FACADE, name("fhir"))]), "::fhir::fhir");
    }

    #[test]
    fn then_the_runtime_as_renamed() {
        assert_eq!(resolved(&[(RUNTIME, name("auth_fhir"))]), "::auth_fhir");
        assert_eq!(resolved(&[(RUNTIME, name("rt"))]), "::rt");
    }

    #[test]
    fn itself_and_nothing_are_auth_fhir() {
        assert_eq!(resolved(&[(RUNTIME, FoundCrate::Itself)]), "::auth_fhir");
        assert_eq!(resolved(&[]), "::auth_fhir");
        // The facade's own tests: through its `auth-fhir` dependency.
        assert_eq!(resolved(&[(FACADE, FoundCrate::Itself), (RUNTIME, name("auth_fhir"))]), "::auth_fhir");
    }

    #[test]
    fn a_name_that_is_no_identifier_is_skipped() {
        assert_eq!(resolved(&[(FACADE, name("type")), (RUNTIME, name("rt"))]), "::rt");
    }

    /// The real lookup, on this crate's own manifest, where `auth-fhir` is a
    /// dev-dependency given as `workspace = true`: found by name, not by falling
    /// back.
    #[test]
    fn this_crates_manifest() {
        assert_eq!(proc_macro_crate::crate_name(RUNTIME).ok(), Some(name("auth_fhir")));
        assert!(proc_macro_crate::crate_name(FACADE).is_err());
        assert_eq!(from_manifest().to_token_stream().to_string().replace(' ', ""), "::auth_fhir");
    }

    /// Set in the child processes of `resolved_in`.
    const PROBE: &str = "AUTH_MACROS_RUNTIME_PROBE";

    /// In a child process of `resolved_in` only: prints what the lookup finds
    /// for the manifest in `CARGO_MANIFEST_DIR`.
    #[test]
    fn probe() {
        if std::env::var_os(PROBE).is_some() {
            println!("RESOLVED={}", from_manifest().to_token_stream().to_string().replace(' ', ""));
        }
    }

    /// What the lookup finds in a fresh directory holding `files` (each with an
    /// empty `src/lib.rs` beside it), for the package in `package_dir`.
    /// `proc-macro-crate` reads `CARGO_MANIFEST_DIR`, which a test cannot change in
    /// its own process (no `unsafe` here), so a child running `probe` reads it.
    fn resolved_in(case: &str, files: &[(&str, String)], package_dir: &str) -> String {
        let root = std::env::temp_dir().join(format!("auth-macros-runtime-{}-{case}", std::process::id()));
        for (path, text) in files {
            let path = root.join(path);
            let dir = path.parent().unwrap();
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(dir.join("src/lib.rs"), "").unwrap();
            std::fs::write(&path, text).unwrap();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "runtime::tests::probe", "--nocapture", "--test-threads=1"])
            .env(PROBE, "1")
            .env("CARGO_MANIFEST_DIR", root.join(package_dir))
            // For `cargo locate-project`, which finds the workspace's manifest.
            .env("CARGO", std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The harness prints `test … ... ` before the probe's line.
        let found = stdout.split("RESOLVED=").nth(1).and_then(|rest| rest.split_whitespace().next());
        found.unwrap_or_else(|| panic!("{case}: no answer from the probe: {stdout}")).to_owned()
    }

    fn package(name: &str, dependencies: &str) -> String {
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n{dependencies}")
    }

    #[test]
    fn users_manifests() {
        let deps = |text: &str| vec![("Cargo.toml", package("app", text))];
        let facade_renamed =
            "[dependencies]\nfhir = { package = \"fhir-auth\", version = \"0.1\" }\nauth-fhir = \"0.1\"\n";
        assert_eq!(resolved_in("facade-renamed", &deps(facade_renamed), ""), "::fhir::fhir");
        assert_eq!(
            resolved_in("facade", &deps("[dependencies]\nfhir-auth = \"0.1\"\n"), ""),
            "::fhir_auth::fhir"
        );
        let runtime_renamed = "[dev-dependencies]\nrt = { package = \"auth-fhir\", version = \"0.1\" }\n";
        assert_eq!(resolved_in("runtime-renamed", &deps(runtime_renamed), ""), "::rt");
        let itself = vec![("Cargo.toml", package("auth-fhir", ""))];
        assert_eq!(resolved_in("itself", &itself, ""), "::auth_fhir");
        assert_eq!(resolved_in("neither", &deps("[dependencies]\nserde = \"1\"\n"), ""), "::auth_fhir");
        let workspace = vec![
            (
                "Cargo.toml",
                "[workspace]\nmembers = [\"app\"]\n\n[workspace.dependencies]\nfa = { package = \"fhir-auth\", version = \"0.1\" }\n"
                    .to_owned(),
            ),
            ("app/Cargo.toml", package("app", "[dependencies]\nfa.workspace = true\n")),
        ];
        assert_eq!(resolved_in("workspace", &workspace, "app"), "::fa::fhir");
    }
}
