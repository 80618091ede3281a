//! End-to-end tests of the `fhir-auth` binary: spawned as a process, pointed at the
//! sandbox running inside the test on a free loopback port, through flags,
//! environment variables and profiles. Every output is checked for secrets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use auth_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fhir-auth");

/// Every variable the CLI reads, cleared so the developer's shell cannot leak in.
const VARS: [&str; 32] = [
    "FHIR_AUTH_PROVIDER",
    "FHIR_AUTH_TOKEN_URL",
    "FHIR_AUTH_FHIR_BASE",
    "FHIR_AUTH_CLIENT_ID",
    "FHIR_AUTH_CLIENT_SECRET",
    "FHIR_AUTH_SCOPE",
    "FHIR_AUTH_AUTH_METHOD",
    "FHIR_AUTH_DEVICE_ID",
    "FHIR_AUTH_DEVICE_SECRET",
    "FHIR_AUTH_SANTEDB_VERSION",
    "FHIR_AUTH_CLIENT_CERT",
    "FHIR_AUTH_CLIENT_KEY",
    "FHIR_AUTH_CA_CERT",
    "FHIR_AUTH_AUDIENCE",
    "FHIR_AUTH_RESEARCH_STUDY",
    "FHIR_AUTH_PARTNER_ID",
    "FHIR_AUTH_SUBSCRIPTION_KEY",
    "FHIR_AUTH_PRIVATE_KEY",
    "FHIR_AUTH_KEY_ID",
    "FHIR_AUTH_ALG",
    "FHIR_AUTH_DPOP",
    "FHIR_AUTH_DPOP_KEY",
    "FHIR_AUTH_STORE",
    "FHIR_AUTH_STORE_KEY",
    "FHIR_AUTH_PROFILE",
    "FHIR_AUTH_CONFIG",
    "FHIR_AUTH_TIMEOUT",
    "FHIR_AUTH_QUIET",
    "XDG_CONFIG_HOME",
    "NO_COLOR",
    "CLICOLOR_FORCE",
    "CLICOLOR",
];

const VENDORS: [&str; 4] = ["santedb", "aidbox", "msk", "graphnet"];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fhir-auth-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str], env: &[(&str, String)]) -> Run {
    let mut cmd = Command::new(BIN);
    for v in VARS {
        cmd.env_remove(v);
    }
    // No default config file of the developer's.
    cmd.env("HOME", temp_dir("home"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    let run = Run {
        code: status.code().expect("the CLI was killed by a signal (a panic would be exit 101)"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert_ne!(run.code, 101, "the CLI panicked: {}", run.stderr);
    run
}

/// The secrets the sandbox's clients use; none may appear in any output.
fn secrets(sb: &Sandbox) -> Vec<String> {
    vec![
        sb.santedb().client_secret().expose_secret().to_owned(),
        sb.santedb().device_secret().expose_secret().to_owned(),
        sb.aidbox().credentials().1.expose_secret().to_owned(),
        sb.msk().client_secret().expose_secret().to_owned(),
        sb.graphnet().client_secret().expose_secret().to_owned(),
        sb.graphnet().subscription_key().expose_secret().to_owned(),
    ]
}

/// No secret and no token: every sandbox access token or id token is a JWT
/// (`eyJ…`) or, for Aidbox, the value the emulator last issued.
fn assert_clean(sb: &Sandbox, run: &Run) {
    let all = run.all();
    for s in secrets(sb) {
        assert!(!all.contains(&s), "a secret leaked into the output:\n{all}");
    }
    assert!(!all.contains("eyJ"), "a JWT leaked into the output:\n{all}");
    if let Some(token) =
        sb.aidbox().last_response().and_then(|r| r["access_token"].as_str().map(str::to_owned))
    {
        assert!(!all.contains(&token), "an Aidbox token leaked into the output:\n{all}");
    }
}

/// What a user sets to reach `vendor` of the sandbox, as environment variables.
fn vendor_env(sb: &Sandbox, vendor: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![("FHIR_AUTH_PROVIDER", vendor.to_owned())];
    match vendor {
        "santedb" => {
            let s = sb.santedb();
            env.extend([
                ("FHIR_AUTH_TOKEN_URL", s.token_url()),
                ("FHIR_AUTH_FHIR_BASE", s.fhir_base()),
                ("FHIR_AUTH_CLIENT_ID", s.client_id().to_owned()),
                ("FHIR_AUTH_CLIENT_SECRET", s.client_secret().expose_secret().to_owned()),
                ("FHIR_AUTH_DEVICE_ID", s.device_id().to_owned()),
                ("FHIR_AUTH_DEVICE_SECRET", s.device_secret().expose_secret().to_owned()),
            ]);
        }
        "aidbox" => {
            let a = sb.aidbox();
            let (id, secret) = a.credentials();
            env.extend([
                ("FHIR_AUTH_TOKEN_URL", a.token_url()),
                ("FHIR_AUTH_CLIENT_ID", id),
                ("FHIR_AUTH_CLIENT_SECRET", secret.expose_secret().to_owned()),
            ]);
        }
        "msk" => {
            let m = sb.msk();
            env.extend([
                ("FHIR_AUTH_TOKEN_URL", m.token_url()),
                ("FHIR_AUTH_FHIR_BASE", m.fhir_base()),
                ("FHIR_AUTH_CLIENT_ID", m.client_id().to_owned()),
                ("FHIR_AUTH_CLIENT_SECRET", m.client_secret().expose_secret().to_owned()),
                ("FHIR_AUTH_PARTNER_ID", m.partner_id().to_owned()),
                ("FHIR_AUTH_RESEARCH_STUDY", m.research_study().to_owned()),
            ]);
        }
        _ => {
            let g = sb.graphnet();
            env.extend([
                ("FHIR_AUTH_TOKEN_URL", g.token_url()),
                ("FHIR_AUTH_FHIR_BASE", g.fhir_base()),
                ("FHIR_AUTH_CLIENT_ID", g.client_id().to_owned()),
                ("FHIR_AUTH_CLIENT_SECRET", g.client_secret().expose_secret().to_owned()),
                ("FHIR_AUTH_SUBSCRIPTION_KEY", g.subscription_key().expose_secret().to_owned()),
            ]);
        }
    }
    env
}

/// The same settings as `--flag value` pairs.
fn vendor_flags(sb: &Sandbox, vendor: &str) -> Vec<String> {
    vendor_env(sb, vendor)
        .into_iter()
        .flat_map(|(k, v)| {
            let flag =
                format!("--{}", k.trim_start_matches("FHIR_AUTH_").to_ascii_lowercase().replace('_', "-"));
            [flag, v]
        })
        .collect()
}

fn with(env: &[(&'static str, String)], name: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| *k != name).cloned().collect();
    env.push((name, value.to_owned()));
    env
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.unwrap()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_walks_every_vendor_offline_with_or_without_the_subcommand() {
    let sb = sandbox().await; // only for the secret list: the demo starts its own
    for args in [&[][..], &["demo"][..]] {
        let r = run(args, &[]);
        assert_eq!(r.code, 0, "{}", r.all());
        for vendor in ["SanteDB", "Aidbox", "MSK", "Graphnet"] {
            assert!(r.stdout.contains(vendor), "{}", r.stdout);
        }
        // Each step's success line, per vendor (MSK's API is read-only: no create).
        for (step, vendors) in [
            ("✓ token", 4),
            ("✓ create", 3),
            ("✓ search", 4),
            ("✓ read", 4),
            ("✓ page", 4),
            ("✓ patch", 3),
            ("→ 2 versions", 3),
            ("71.50 kg as written", 3),
        ] {
            assert_eq!(r.stdout.matches(step).count(), vendors, "step {step}:\n{}", r.stdout);
        }
        // The demo's own sandbox issued its tokens, unknown here: no long
        // token-like word may appear at all.
        let output = r.all();
        let long_words: Vec<&str> = output
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .filter(|w| w.len() >= 32)
            .collect();
        assert!(long_words.is_empty(), "token-like output: {long_words:?}");
        assert_eq!(r.stdout.matches("token requests: 1").count(), 4, "{}", r.stdout);
        assert!(r.stdout.contains("4/4 vendors passed"));
        // Piped: no colour codes, no progress line.
        assert!(!r.all().contains('\x1b'), "escape codes on a pipe");
        assert_clean(&sb, &r);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_subcommand_prints_every_vendor_and_serves() {
    let mut child = Command::new(BIN)
        .args(["sandbox", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("serving on");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    assert_eq!(text.matches("token URL").count(), 5, "{text}");
    assert_eq!(text.matches("FHIR base").count(), 5, "{text}");
    assert!(text.contains("api-client / verysecret"), "test credentials printed:\n{text}");
    assert!(text.contains("/smart/auth/token"), "the SMART emulator is listed:\n{text}");
    assert!(text.contains("sandbox-backend-client  key id sandbox-key-1"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "the generated SMART key is not printed:\n{text}");
    // The printed URLs work: fetch an Aidbox token from the standalone server.
    let token_url = lines.iter().filter(|l| l.contains("token URL")).nth(1).unwrap();
    let token_url = token_url.split_whitespace().last().unwrap().to_owned();
    let r = run(
        &["token", "--provider", "aidbox", "--token-url", &token_url, "--client-id", "api-client"],
        &[("FHIR_AUTH_CLIENT_SECRET", "verysecret".to_owned())],
    );
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(r.code, 0, "{}", r.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_json_for_every_vendor_describes_without_revealing() {
    let sb = sandbox().await;
    for vendor in VENDORS {
        let r = run(&["token", "--json"], &vendor_env(&sb, vendor));
        assert_eq!(r.code, 0, "{vendor}: {}", r.all());
        let j = r.json();
        assert!(j["token_type"].as_str().unwrap().eq_ignore_ascii_case("bearer"), "{vendor}: {j}");
        let expires_at = j["expires_at"].as_str().unwrap();
        assert!(
            expires_at.len() == 20 && expires_at.ends_with('Z') && &expires_at[10..11] == "T",
            "{expires_at}"
        );
        // The sandbox grants 300 s; the refresh margin must not shorten it.
        let expires_in = j["expires_in"].as_u64().unwrap();
        assert!((290..=300).contains(&expires_in), "{vendor}: expires_in {expires_in}");
        assert!(j.get("scope").is_some(), "{vendor}: scope key");
        assert!(j.get("access_token").is_none(), "{vendor}: token without --reveal");
        assert_clean(&sb, &r);
    }
    // JWTs are decoded: Graphnet's access token, SanteDB's id_token.
    let g = run(&["token", "--json"], &vendor_env(&sb, "graphnet")).json();
    assert!(g["claims"]["authorised_apis"].is_array(), "{g}");
    let s = run(&["token", "--json"], &vendor_env(&sb, "santedb")).json();
    assert!(s.get("claims").is_some() || s.get("id_token_claims").is_some(), "{s}");
    // Human output is clean too. Each invocation fetched its own token (memory store).
    let before = sb.aidbox().token_requests();
    let h = run(&["token"], &vendor_env(&sb, "aidbox"));
    assert_eq!(h.code, 0);
    assert!(h.stdout.contains("expires at"));
    assert_clean(&sb, &h);
    assert_eq!(sb.aidbox().token_requests(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reveal_prints_the_token() {
    let sb = sandbox().await;
    let r = run(&["token", "--json", "--reveal"], &vendor_env(&sb, "aidbox"));
    assert_eq!(r.code, 0, "{}", r.all());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let issued = sb.aidbox().last_response().unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token, issued);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_read_search_for_every_vendor() {
    let sb = sandbox().await;
    let dir = temp_dir("create");
    let file = dir.join("patient.json");
    std::fs::write(&file, r#"{"resourceType":"Patient","name":[{"family":"Quimby","given":["Cli"]}]}"#)
        .unwrap();
    let file = file.to_str().unwrap().to_owned();
    for vendor in VENDORS {
        let env = vendor_env(&sb, vendor);
        let created = run(&["create", "Patient", "--file", &file], &env);
        let id = if vendor == "msk" {
            // MSK's API is read-only: the server's 405 is a FHIR error, exit 4.
            assert_eq!(created.code, 4, "{}", created.all());
            "pat-1".to_owned()
        } else {
            assert_eq!(created.code, 0, "{vendor}: {}", created.all());
            let j = created.json();
            assert_eq!(j["name"][0]["family"], "Quimby");
            j["id"].as_str().unwrap().to_owned()
        };
        assert_clean(&sb, &created);

        let read = run(&["read", &format!("Patient/{id}")], &env);
        assert_eq!(read.code, 0, "{vendor}: {}", read.all());
        assert_eq!(read.json()["id"], id.as_str());
        assert_clean(&sb, &read);

        let search = run(&["search", "Patient", "name=chalmers", "--json"], &env);
        assert_eq!(search.code, 0, "{vendor}: {}", search.all());
        let bundle = search.json();
        assert_eq!(bundle["resourceType"], "Bundle");
        assert!(!bundle["entry"].as_array().unwrap().is_empty(), "{vendor}: {bundle}");
        assert_clean(&sb, &search);

        // --all merges every page: `_count=2` pages add up to the total.
        let all = run(&["search", "Patient", "_count=2", "--all", "--json"], &env);
        assert_eq!(all.code, 0, "{vendor}: {}", all.all());
        let merged = all.json();
        let entries = merged["entry"].as_array().unwrap().len();
        assert!(entries > 2, "{vendor}: only {entries} entries merged");
        let total =
            merged["total"].as_u64().unwrap_or_else(|| panic!("{vendor}: the merged bundle has a total"));
        assert_eq!(entries as u64, total, "{vendor}");
        assert!(merged["link"].as_array().is_none_or(|l| l.iter().all(|l| l["relation"] != "next")));
        let one_page = run(&["search", "Patient", "_count=2"], &env);
        assert_eq!(one_page.code, 0);
        assert!(one_page.stdout.contains("more pages"), "{}", one_page.stdout);
        assert_clean(&sb, &all);
    }
}

/// FHIR decimals keep their precision: `1.50` is sent, stored and printed as `1.50`,
/// never through an `f64` (which would make it `1.5`).
#[tokio::test(flavor = "multi_thread")]
async fn create_keeps_decimals_as_written() {
    let sb = sandbox().await;
    let env = vendor_env(&sb, "aidbox");
    let file = temp_dir("decimals").join("patient.json");
    std::fs::write(
        &file,
        r#"{"resourceType":"Patient","name":[{"family":"Decimal"}],
            "extension":[{"url":"http://example.org/weight","valueQuantity":{"value":71.50,"unit":"kg"}},
                         {"url":"http://example.org/score","valueDecimal":0.100}]}"#,
    )
    .unwrap();
    let created = run(&["create", "Patient", "--file", file.to_str().unwrap()], &env);
    assert_eq!(created.code, 0, "{}", created.all());
    assert!(created.stdout.contains("71.50") && created.stdout.contains("0.100"), "{}", created.stdout);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = run(&["read", &format!("Patient/{id}")], &env);
    assert_eq!(read.code, 0, "{}", read.all());
    assert!(
        read.stdout.contains("\"value\": 71.50") && read.stdout.contains("\"valueDecimal\": 0.100"),
        "{}",
        read.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_name_the_failure() {
    let sb = sandbox().await;
    let aidbox = vendor_env(&sb, "aidbox");

    // 2: configuration and usage.
    for (args, env, says) in [
        (vec!["token"], vec![], "--provider"),
        (vec!["token"], with(&aidbox, "FHIR_AUTH_CLIENT_ID", ""), "--client-id"),
        (vec!["token", "--provider", "smart"], aidbox.clone(), "--private-key"),
        (vec!["token", "--store", "redis://127.0.0.1:1"], aidbox.clone(), "--store-key"),
        (
            vec!["token", "--store", "redis://127.0.0.1:1", "--store-key", "c2hvcnQ="],
            aidbox.clone(),
            "32 bytes",
        ),
        (vec!["token", "--provider", "nope"], aidbox.clone(), "nope"),
        (vec!["token", "--no-such-flag"], aidbox.clone(), "no-such-flag"),
        (vec!["read", "Patient"], aidbox.clone(), "<Type>/<id>"),
        (vec!["create", "Patient", "--file", "/nonexistent/p.json"], aidbox.clone(), "cannot read"),
        (vec!["token"], with(&vendor_env(&sb, "msk"), "FHIR_AUTH_PARTNER_ID", ""), "--partner-id"),
    ] {
        let r = run(&args, &env);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert_clean(&sb, &r);
    }

    // 3: the token endpoint refused; the RFC 6749 code is printed.
    for vendor in VENDORS {
        let r = run(&["token"], &with(&vendor_env(&sb, vendor), "FHIR_AUTH_CLIENT_SECRET", "wrong-secret"));
        assert_eq!(r.code, 3, "{vendor}: {}", r.all());
        assert!(r.stderr.contains("authentication failed"), "{vendor}: {}", r.stderr);
        assert!(r.stderr.contains("invalid_client"), "{vendor}: the RFC 6749 code is printed: {}", r.stderr);
        assert!(!r.all().contains("wrong-secret"), "{vendor}: the wrong secret was echoed");
        assert_clean(&sb, &r);
    }
    let r = run(&["token"], &with(&aidbox, "FHIR_AUTH_CLIENT_SECRET", "wrong-secret"));
    assert!(r.stderr.contains("invalid_client"), "{}", r.stderr);

    // 4: a FHIR error, with the server's OperationOutcome.
    for vendor in VENDORS {
        let r = run(&["read", "Patient/does-not-exist"], &vendor_env(&sb, vendor));
        assert_eq!(r.code, 4, "{vendor}: {}", r.all());
        assert!(
            r.all().contains("OperationOutcome") || r.stderr.contains("HTTP 404"),
            "{vendor}: {}",
            r.all()
        );
        assert_clean(&sb, &r);
    }

    // 5: nothing listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = run(
        &["token"],
        &with(&aidbox, "FHIR_AUTH_TOKEN_URL", &format!("http://127.0.0.1:{closed}/auth/token")),
    );
    assert_eq!(r.code, 5, "{}", r.all());
    assert_clean(&sb, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_beat_variables_and_go_before_or_after_the_subcommand() {
    let sb = sandbox().await;
    let good = sb.aidbox().credentials().1.expose_secret().to_owned();
    // Flags only, after the subcommand, then before it.
    for vendor in VENDORS {
        let flags = vendor_flags(&sb, vendor);
        let mut after = vec!["token".to_owned()];
        after.extend(flags.iter().cloned());
        let mut before = flags.clone();
        before.push("token".to_owned());
        for args in [after, before] {
            let r = run(&strs(&args), &[]);
            assert_eq!(r.code, 0, "{vendor} {args:?}: {}", r.all());
            assert_clean(&sb, &r);
        }
    }
    // A wrong variable loses to a right flag…
    let env = with(&vendor_env(&sb, "aidbox"), "FHIR_AUTH_CLIENT_SECRET", "wrong-secret");
    let r = run(&["token", "--client-secret", &good], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    // …and a wrong flag beats a right variable.
    let r = run(&["--client-secret", "wrong-secret", "token"], &vendor_env(&sb, "aidbox"));
    assert_eq!(r.code, 3, "{}", r.all());
    assert_clean(&sb, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_fill_in_below_variables_and_flags() {
    let sb = sandbox().await;
    let a = sb.aidbox();
    let (id, secret) = a.credentials();
    let dir = temp_dir("profiles");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "default-profile = \"box\"\n\
             [profiles.box]\nprovider = \"aidbox\"\ntoken-url = \"{}\"\nclient-id = \"{id}\"\nclient-secret = \"{}\"\n\
             [profiles.stale]\nprovider = \"aidbox\"\ntoken-url = \"{}\"\nclient-id = \"{id}\"\nclient-secret = \"wrong-secret\"\n\
             [profiles.typo]\nprovider = \"aidbx\"\n",
            a.token_url(),
            secret.expose_secret(),
            a.token_url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let cfg = [("FHIR_AUTH_CONFIG", config.clone())];

    // The default profile, a named one by flag, and by variable.
    assert_eq!(run(&["token"], &cfg).code, 0);
    assert_eq!(run(&["token", "--profile", "box"], &cfg).code, 0);
    let by_var = run(&["token"], &[cfg[0].clone(), ("FHIR_AUTH_PROFILE", "stale".to_owned())]);
    assert_eq!(by_var.code, 3, "{}", by_var.all());
    // A variable beats the profile; a flag beats both.
    let fixed = [cfg[0].clone(), ("FHIR_AUTH_CLIENT_SECRET", secret.expose_secret().to_owned())];
    assert_eq!(run(&["token", "--profile", "stale"], &fixed).code, 0);
    assert_eq!(run(&["token", "--profile", "stale", "--client-secret", "wrong-secret"], &fixed).code, 3);
    // Unknown profile, bad value in a profile, missing file: configuration errors.
    for args in [vec!["token", "--profile", "missing"], vec!["token", "--profile", "typo"]] {
        let r = run(&args, &cfg);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
    }
    let r = run(&["token", "--config", "/nonexistent/fhir-auth.toml"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    for r in [run(&["token"], &cfg), by_var] {
        assert_clean(&sb, &r);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_options_reach_the_sources() {
    let sb = sandbox().await;
    // SanteDB 2.x: device header and millisecond `expires_in` follow --santedb-version.
    sb.santedb().set_version(auth_sandbox::SanteDbServerVersion::V2);
    let v2 = with(&vendor_env(&sb, "santedb"), "FHIR_AUTH_SANTEDB_VERSION", "2");
    let r = run(&["token", "--json"], &v2);
    assert_eq!(r.code, 0, "{}", r.all());
    let expires_in = r.json()["expires_in"].as_u64().unwrap();
    assert!((290..=300).contains(&expires_in), "2.x milliseconds misread: {expires_in}");
    assert_eq!(run(&["read", "Patient/pat-1"], &v2).code, 0);
    sb.santedb().set_version(auth_sandbox::SanteDbServerVersion::V3);

    // Aidbox's three client authentication styles.
    for method in ["basic", "post", "json"] {
        let r = run(&["token", "--auth-method", method], &vendor_env(&sb, "aidbox"));
        assert_eq!(r.code, 0, "{method}: {}", r.all());
    }

    // The generic RFC 6749 source, against Aidbox's standard endpoint.
    let env = with(
        &with(&vendor_env(&sb, "aidbox"), "FHIR_AUTH_PROVIDER", "oauth2"),
        "FHIR_AUTH_FHIR_BASE",
        &sb.aidbox().fhir_base(),
    );
    for args in [vec!["token"], vec!["read", "Patient/pat-1"], vec!["search", "Patient", "name=chalmers"]] {
        let r = run(&args, &env);
        assert_eq!(r.code, 0, "oauth2 {args:?}: {}", r.all());
        assert_clean(&sb, &r);
    }

    // SanteDB over mutual TLS: the node authenticates with a client certificate,
    // the server's certificate chains to --ca-cert.
    let s = sb.santedb();
    let dir = temp_dir("mtls");
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&ca, s.ca_cert_pem()).unwrap();
    std::fs::write(&cert, s.client_cert_pem()).unwrap();
    std::fs::write(&key, s.client_key_pem().expose_secret()).unwrap();
    let mut env: Vec<_> =
        vendor_env(&sb, "santedb").into_iter().filter(|(k, _)| !k.starts_with("FHIR_AUTH_DEVICE")).collect();
    env = with(&env, "FHIR_AUTH_TOKEN_URL", &s.mtls_token_url());
    env = with(&env, "FHIR_AUTH_FHIR_BASE", &s.mtls_fhir_base());
    env = with(&env, "FHIR_AUTH_CA_CERT", ca.to_str().unwrap());
    env = with(&env, "FHIR_AUTH_CLIENT_CERT", cert.to_str().unwrap());
    env = with(&env, "FHIR_AUTH_CLIENT_KEY", key.to_str().unwrap());
    for args in [vec!["token"], vec!["read", "Patient/pat-1"]] {
        let r = run(&args, &env);
        assert_eq!(r.code, 0, "mTLS {args:?}: {}", r.all());
        assert!(!r.all().contains("PRIVATE KEY"), "the key leaked");
        assert_clean(&sb, &r);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn help_names_every_variable_and_hides_secret_values() {
    let sb = sandbox().await;
    let r = run(&["token", "--help"], &vendor_env(&sb, "graphnet"));
    assert_eq!(r.code, 0);
    for var in &VARS[..26] {
        assert!(r.stdout.contains(var), "{var} not documented in --help");
    }
    assert_clean(&sb, &r);
}

/// Findings of the CLI review, each pinned down.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_leaks_nothing_and_ends() {
    let sb = sandbox().await;
    let aidbox = vendor_env(&sb, "aidbox");
    let without_secret: Vec<(&'static str, String)> =
        aidbox.iter().filter(|(k, _)| *k != "FHIR_AUTH_CLIENT_SECRET").cloned().collect();

    // A secret that starts with `-` is a value, not an option clap echoes back.
    let r = run(&["token", "--client-secret", "--S3cr3tXyz"], &without_secret);
    assert_eq!(r.code, 3, "taken as a (wrong) secret: {}", r.all());
    assert!(!r.all().contains("S3cr3tXyz"), "{}", r.all());

    // A TOML type error names the position, never the value.
    let dir = temp_dir("toml-type-error");
    let config = dir.join("config.toml");
    std::fs::write(&config, "[profiles.p]\nclient-secret = 98765432123\n").unwrap();
    let r = run(&["token", "--profile", "p", "--config", config.to_str().unwrap()], &without_secret);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!r.all().contains("98765432123"), "{}", r.all());
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);

    // A file to create whose content is not an object is not quoted back.
    let file = dir.join("s.json");
    std::fs::write(&file, r#""verysecret-in-file""#).unwrap();
    let r = run(&["create", "Patient", "--file", file.to_str().unwrap()], &aidbox);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!r.all().contains("verysecret-in-file"), "{}", r.all());

    // The token never travels over plain http to another host: refused before sending.
    let r = run(&["read", "Patient/1"], &with(&aidbox, "FHIR_AUTH_FHIR_BASE", "http://192.0.2.2:38572/fhir"));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("refusing plain http://"), "{}", r.stderr);

    // Connection options without a subcommand are a mistake, not a demo.
    let r = run(&["--provider", "aidbox"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("without a subcommand"), "{}", r.stderr);

    // An empty variable does not hide the profile's value.
    let (id, secret) = sb.aidbox().credentials();
    std::fs::write(
        &config,
        format!(
            "[profiles.p]\nprovider = \"aidbox\"\ntoken-url = \"{}\"\nclient-id = \"{id}\"\nclient-secret = \"{}\"\n",
            sb.aidbox().token_url(),
            secret.expose_secret()
        ),
    )
    .unwrap();
    let r = run(
        &["token", "--profile", "p", "--config", config.to_str().unwrap()],
        &[("FHIR_AUTH_CLIENT_SECRET", String::new()), ("FHIR_AUTH_SCOPE", String::new())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_clean(&sb, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_next_link_ends_with_a_fhir_error() {
    use axum::extract::State;
    let sb = sandbox().await;
    // A FHIR server whose next link points back to the page itself.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/fhir/Patient",
            axum::routing::get(|State(base): State<String>| async move {
                axum::Json(serde_json::json!({
                    "resourceType": "Bundle", "type": "searchset",
                    "link": [{"relation": "next", "url": format!("{base}/Patient?page=1")}],
                    "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}]
                }))
            }),
        )
        .with_state(base.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (id, secret) = sb.aidbox().credentials();
    let env = vec![
        ("FHIR_AUTH_PROVIDER", "oauth2".to_owned()),
        ("FHIR_AUTH_TOKEN_URL", sb.aidbox().token_url()),
        ("FHIR_AUTH_CLIENT_ID", id),
        ("FHIR_AUTH_CLIENT_SECRET", secret.expose_secret().to_owned()),
        ("FHIR_AUTH_FHIR_BASE", base),
    ];
    let bin = BIN.to_owned();
    let args = ["search", "Patient", "--all", "--json"];
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let _ = &bin;
            run(&args, &env)
        }),
    )
    .await
    .expect("search --all ends on a looping next link")
    .unwrap();
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("loops"), "{}", r.stderr);
}

/// A private redis-server on a free port, stopped on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    /// On a port that was free a moment ago; if another process took it in
    /// between, this server exits at once and another port is tried.
    fn start() -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed (.ci/run installs it)");
            for _ in 0..200 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break; // exited: the port was taken
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_processes_sharing_redis_make_one_token_request() {
    let sb = sandbox().await;
    let redis = PrivateRedis::start();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of 32 bytes
    let mut env = vendor_env(&sb, "aidbox");
    env.push(("FHIR_AUTH_STORE", format!("redis://127.0.0.1:{}/", redis.port)));
    env.push(("FHIR_AUTH_STORE_KEY", key.to_owned()));
    // Eight separate OS processes, started together.
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(BIN)
                .args(["token", "--json"])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(!text.contains(key), "the store key was printed");
    }
    assert_eq!(sb.aidbox().token_requests(), 1, "one token request for the whole fleet of processes");
}

/// A SMART authorization server in miniature: a discovery document naming the
/// given algorithms, and a token endpoint that accepts any ES384 assertion from
/// client `smart-client` (its signature is checked by the auth-providers tests and
/// the oidc-provider conformance suite) and refuses everything else.
async fn smart_server(algs: &'static [&'static str]) -> String {
    use axum::routing::{get, post};
    use axum::{Form, Json, Router};
    use std::collections::HashMap;
    let addr = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let token_url = addr.clone();
    let app = Router::new()
        .route(
            "/fhir/.well-known/smart-configuration",
            get(move || {
                let url = token_url.get().cloned().unwrap_or_default();
                async move {
                    Json(serde_json::json!({
                        "token_endpoint": format!("{url}/token"),
                        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                        "token_endpoint_auth_signing_alg_values_supported": algs,
                    }))
                }
            }),
        )
        .route(
            "/token",
            post(|Form(form): Form<HashMap<String, String>>| async move {
                use auth_core::token::{jwt_claims, jwt_header};
                let assertion = form.get("client_assertion").cloned().unwrap_or_default();
                let (header, claims) = (jwt_header(&assertion), jwt_claims(&assertion));
                let ok = header.is_some_and(|h| h["alg"] == "ES384")
                    && form.get("scope").map(String::as_str) == Some("system/Patient.rs")
                    && claims.is_some_and(|c| c["iss"] == "smart-client");
                if ok {
                    (
                        axum::http::StatusCode::OK,
                        Json(serde_json::json!({"access_token": "smart-opaque-token", "token_type": "Bearer", "expires_in": 300})),
                    )
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "invalid_client"})))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    addr.set(base.clone()).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn smart_backend_services_discovers_signs_and_maps_exit_codes() {
    let dir = temp_dir("smart");
    let key = dir.join("smart-es384.pem");
    let generated = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out"])
        .arg(&key)
        .status()
        .expect("openssl is required for this test");
    assert!(generated.success());
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let key_text = std::fs::read_to_string(&key).unwrap();
    let base = smart_server(&["ES384"]).await;
    let fhir = format!("{base}/fhir");
    let env = |client: &str, key: &PathBuf, alg: &str| {
        vec![
            ("FHIR_AUTH_PROVIDER", "smart".to_owned()),
            ("FHIR_AUTH_CLIENT_ID", client.to_owned()),
            ("FHIR_AUTH_PRIVATE_KEY", key.display().to_string()),
            ("FHIR_AUTH_KEY_ID", "key-1".to_owned()),
            ("FHIR_AUTH_ALG", alg.to_owned()),
            ("FHIR_AUTH_SCOPE", "system/Patient.rs".to_owned()),
            ("FHIR_AUTH_FHIR_BASE", fhir.clone()),
        ]
    };
    let body = key_text.lines().nth(1).unwrap().to_owned();

    // Discovery, then a token: exit 0, and neither key nor assertion in the output.
    let ok = run(&["token", "--json"], &env("smart-client", &key, "ES384"));
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(!ok.all().contains(&body) && !ok.all().contains("eyJ"), "{}", ok.all());
    // The same with --token-url and flags instead of variables.
    let flags = run(
        &[
            "token",
            "--provider",
            "smart",
            "--token-url",
            &format!("{base}/token"),
            "--client-id",
            "smart-client",
            "--private-key",
            key.to_str().unwrap(),
            "--key-id",
            "k",
            "--alg",
            "ES384",
            "--scope",
            "system/Patient.rs",
        ],
        &[],
    );
    assert_eq!(flags.code, 0, "{}", flags.all());

    // 3: the server refuses the client.
    let refused = run(&["token"], &env("someone-else", &key, "ES384"));
    assert_eq!(refused.code, 3, "{}", refused.all());
    assert!(refused.stderr.contains("invalid_client"), "{}", refused.stderr);

    // 2: configuration: the key does not fit the algorithm, a garbage key, an
    // algorithm the server does not offer (RS384 with this EC key fails first, so
    // use a server offering RS384 only), a missing key id.
    let wrong_alg = run(&["token"], &env("smart-client", &key, "RS384"));
    assert_eq!(wrong_alg.code, 2, "{}", wrong_alg.all());
    let bad_key = run(&["token"], &env("smart-client", &garbage, "ES384"));
    assert_eq!(bad_key.code, 2, "{}", bad_key.all());
    assert!(!bad_key.all().contains("AAAA"), "{}", bad_key.all());
    let rs_only = smart_server(&["RS384"]).await;
    let unsupported = run(
        &["token"],
        &with(&env("smart-client", &key, "ES384"), "FHIR_AUTH_FHIR_BASE", &format!("{rs_only}/fhir")),
    );
    assert_eq!(unsupported.code, 2, "{}", unsupported.all());
    assert!(unsupported.stderr.contains("ES384"), "{}", unsupported.stderr);
    let no_kid = run(&["token"], &with(&env("smart-client", &key, "ES384"), "FHIR_AUTH_KEY_ID", ""));
    assert_eq!(no_kid.code, 2, "{}", no_kid.all());
    assert!(no_kid.stderr.contains("--key-id"), "{}", no_kid.stderr);
}

/// `update`, `delete`, `patch`, `history` and `transaction`, exactly as the
/// command line promises them, against a writable emulator.
#[tokio::test(flavor = "multi_thread")]
async fn update_delete_patch_history_and_transaction() {
    let sb = sandbox().await;
    let env = vendor_env(&sb, "aidbox");
    let dir = temp_dir("writes");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let patient = write(
        "p.json",
        r#"{"resourceType":"Patient","identifier":[{"system":"urn:cli","value":"u-1"}],"name":[{"family":"Upsert"}],"gender":"male"}"#,
    );

    // Conditional update: creates (no match), then updates the same resource.
    let created = run(&["update", "Patient?identifier=urn:cli|u-1", "--file", &patient], &env);
    assert_eq!(created.code, 0, "{}", created.all());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["meta"]["versionId"], "1");
    let again = run(&["update", "Patient?identifier=urn:cli|u-1", "--file", &patient], &env);
    assert_eq!((again.code, again.json()["id"].as_str()), (0, Some(id.as_str())), "{}", again.all());
    assert_eq!(again.json()["meta"]["versionId"], "2");

    // Update by id under --if-match: the current version works, a stale one exits 4
    // with the server's OperationOutcome on stdout.
    let target = format!("Patient/{id}");
    let updated = run(&["update", &target, "--file", &patient, "--if-match", "2"], &env);
    assert_eq!(updated.code, 0, "{}", updated.all());
    assert_eq!(updated.json()["meta"]["versionId"], "3");
    let stale = run(&["update", &target, "--file", &patient, "--if-match", "1"], &env);
    assert_eq!(stale.code, 4, "{}", stale.all());
    assert_eq!(stale.json()["resourceType"], "OperationOutcome");

    // Patch: a JSON Patch file; the patched resource is printed; stale exits 4.
    let ops = write("ops.json", r#"[{"op":"replace","path":"/gender","value":"female"}]"#);
    let patched = run(&["patch", &target, "--file", &ops, "--if-match", "3"], &env);
    assert_eq!(patched.code, 0, "{}", patched.all());
    assert_eq!(patched.json()["gender"], "female");
    assert_eq!(run(&["patch", &target, "--file", &ops, "--if-match", "3"], &env).code, 4);
    let not_a_patch = write("bad.json", r#"{"op":"replace"}"#);
    assert_eq!(run(&["patch", &target, "--file", &not_a_patch], &env).code, 2);

    // History: one entry per version; --json a history Bundle, merged with --all.
    let history = run(&["history", &target, "--json"], &env);
    assert_eq!(history.code, 0, "{}", history.all());
    let bundle = history.json();
    assert_eq!(bundle["type"], "history");
    let versions: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["4", "3", "2", "1"]);
    let text = run(&["history", &target], &env);
    assert!(text.stdout.contains("v4") && text.stdout.contains("4 versions"), "{}", text.stdout);
    let type_history = run(&["history", "Patient", "--all", "--json"], &env);
    assert_eq!(type_history.code, 0, "{}", type_history.all());
    let merged = type_history.json();
    assert!(merged["entry"].as_array().unwrap().len() >= 4);
    assert!(merged["link"].as_array().is_none_or(|l| l.iter().all(|l| l["relation"] != "next")));

    // Transaction: the response Bundle; urn:uuid references come back resolved.
    let tx = write(
        "tx.json",
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:0b9e7c1e-6b7a-4f3e-9a55-1f2d3c4b5a69","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient"}},
            {"resource":{"resourceType":"Observation","status":"final","code":{"text":"dose"},"subject":{"reference":"urn:uuid:0b9e7c1e-6b7a-4f3e-9a55-1f2d3c4b5a69"},"valueQuantity":{"value":1.50,"unit":"mg"}},"request":{"method":"POST","url":"Observation"}}]}"#,
    );
    let done = run(&["transaction", "--file", &tx], &env);
    assert_eq!(done.code, 0, "{}", done.all());
    let response = done.json();
    assert_eq!(response["type"], "transaction-response");
    // Location: `[base]/Observation/<id>/_history/<v>`, absolute or relative.
    let location = response["entry"][1]["response"]["location"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = location.split("/_history").next().unwrap().rsplit('/').take(2).collect();
    let observation = format!("{}/{}", parts[1], parts[0]);
    let read = run(&["read", &observation], &env);
    let read_text = read.stdout.clone();
    assert!(read.json()["subject"]["reference"].as_str().unwrap().starts_with("Patient/"), "{read_text}");
    assert!(read_text.contains("1.50"), "the decimal as written: {read_text}");

    // A rejected transaction exits 4; the same entries as a batch exit 0 and say
    // which entry failed.
    let failing = r#"{"resourceType":"Bundle","type":"KIND","entry":[
        {"resource":{"resourceType":"Patient","name":[{"family":"Never"}]},"request":{"method":"POST","url":"Patient"}},
        {"request":{"method":"GET","url":"Patient/no-such-patient"}}]}"#;
    let rejected =
        run(&["transaction", "--file", &write("rej.json", &failing.replace("KIND", "transaction"))], &env);
    assert_eq!(rejected.code, 4, "{}", rejected.all());
    let batch =
        run(&["transaction", "--file", &write("batch.json", &failing.replace("KIND", "batch"))], &env);
    assert_eq!(batch.code, 0, "{}", batch.all());
    let batch_json = batch.json();
    let statuses: Vec<&str> = batch_json["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses[0].starts_with("201") && statuses[1].starts_with("404"), "{statuses:?}");
    assert!(batch.stderr.contains("entry 2 failed with HTTP 404"), "{}", batch.stderr);
    assert_eq!(run(&["transaction", "--file", &patient], &env).code, 2, "not a Bundle");

    // Delete by id and by condition: exit 0; the read after is a FHIR error.
    assert_eq!(run(&["delete", &target], &env).code, 0);
    assert_eq!(run(&["read", &target], &env).code, 4);
    let other = run(
        &[
            "update",
            "Patient?identifier=urn:cli|u-2",
            "--file",
            &write("p2.json", &std::fs::read_to_string(&patient).unwrap().replace("u-1", "u-2")),
        ],
        &env,
    );
    assert_eq!(other.code, 0, "{}", other.all());
    let deleted = run(&["delete", "Patient?identifier=urn:cli|u-2"], &env);
    assert_eq!(deleted.code, 0, "{}", deleted.all());
    assert_eq!(run(&["read", &format!("Patient/{}", other.json()["id"].as_str().unwrap())], &env).code, 4);
    for bad in [["delete", "Patient"], ["delete", "Patient?"]] {
        assert_eq!(run(&bad, &env).code, 2, "{bad:?}");
    }
    for r in [&created, &updated, &patched, &history, &done, &batch, &deleted] {
        assert_clean(&sb, r);
    }
}

/// `fhir-auth export` against Aidbox's FHIR server (any vendor's serves `$export`).
fn export_env(sb: &Sandbox) -> Vec<(&'static str, String)> {
    vendor_env(sb, "aidbox")
}

fn spawn(args: &[&str], env: &[(&str, String)]) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.env("HOME", temp_dir("home")).args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Files the export in `dir` finished, from its state file.
fn files_done(dir: &std::path::Path) -> usize {
    std::fs::read(dir.join(".fhir-auth-export/state/export.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["done"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Each line of synthetic file `n`: `syn-{n}-{i}`, 1024 bytes with its `\n`.
fn assert_synthetic(path: &std::path::Path, files: usize, lines_per_file: usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len(), files * lines_per_file * 1024, "{}", path.display());
    for (k, line) in bytes.chunks(1024).enumerate() {
        let v: Value = serde_json::from_slice(&line[..1023]).unwrap();
        assert_eq!(v["id"], format!("syn-{}-{}", k / lines_per_file + 1, k % lines_per_file), "line {k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_writes_each_type_the_errors_and_the_manifest_as_received() {
    let sb = sandbox().await;
    let store = sb.aidbox().fhir_store();
    // Parsed from text, so the decimal keeps its zero.
    store.seed((0..3).map(|i| {
        serde_json::from_str::<Value>(&format!(
            r#"{{"resourceType": "Observation", "id": "w{i}", "status": "final",
                "code": {{"text": "weight"}}, "valueQuantity": {{"value": 72.50, "unit": "kg"}}}}"#
        ))
        .unwrap()
    }));
    store.set_export_error_file(true);
    store.set_export_retry_after(0);
    let out = fresh_dir("export-basic");
    let env = export_env(&sb);
    let args = [
        "export",
        "--out",
        out.to_str().unwrap(),
        "--type",
        "Patient,Observation",
        "--type-filter",
        "Observation?status=final",
        "--json",
    ];
    let r = run(&args, &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_clean(&sb, &r);
    let seen = &store.export_jobs()[0].request;
    assert_eq!(seen.types, Some(vec!["Patient".to_owned(), "Observation".to_owned()]));
    assert_eq!(seen.type_filters, ["Observation?status=final"]);
    let summary = r.json();
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(summary["transactionTime"], manifest["transactionTime"]);
    let output = summary["output"].as_array().unwrap();
    let types: Vec<&str> = output.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Observation", "Patient"]);
    for o in output {
        let path = PathBuf::from(o["path"].as_str().unwrap());
        let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(o["count"].as_u64(), Some(lines), "{}", path.display());
        assert_eq!(path, out.join(format!("{}.ndjson", o["type"].as_str().unwrap())));
    }
    assert_eq!(output[1]["count"], store.count("Patient") as u64);
    let obs = std::fs::read_to_string(out.join("Observation.ndjson")).unwrap();
    assert_eq!(obs.lines().count(), 3);
    assert!(obs.lines().all(|l| l.contains(r#""value":72.50"#)), "bytes were re-serialised:\n{obs}");
    let errors = std::fs::read_to_string(out.join("errors.ndjson")).unwrap();
    assert!(errors.lines().all(|l| l.contains(r#""resourceType":"OperationOutcome""#)), "{errors}");
    assert_eq!(store.export_stats().kickoffs_accepted, 1);
    // Plain progress lines on stderr when it is not a terminal.
    assert!(r.stderr.contains("export kicked off") && r.stderr.contains("file "), "{}", r.stderr);

    // The same command again: already complete, nothing asked of the server.
    let again = run(&args, &env);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.json(), summary);
    assert_eq!(store.export_stats().kickoffs_accepted, 1);
    // Another request in the same directory is refused rather than mixed in.
    let other = run(&["export", "--out", out.to_str().unwrap(), "--patient"], &env);
    assert_eq!(other.code, 2, "{}", other.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_killed_while_polling_or_downloading_resumes_with_one_kick_off() {
    let sb = sandbox().await;
    let store = sb.aidbox().fhir_store();
    store.set_export_synthetic("Observation", 8, 128 * 1024);
    let env = export_env(&sb);
    let out = fresh_dir("export-resume");
    let args = ["export", "--out", out.to_str().unwrap(), "--since", "2020-01-01T00:00:00Z"];

    // Killed (SIGTERM) while polling: the job is not cancelled.
    store.set_export_ready_after_polls(3);
    store.set_export_retry_after(1);
    let mut child = spawn(&args, &env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.export_stats().status_polls < 1 {
        assert!(std::time::Instant::now() < deadline, "the export never polled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    child.wait().unwrap();
    assert_eq!(store.export_stats().cancels, 0);

    // Killed (SIGKILL) while downloading, after some files.
    store.set_export_retry_after(0);
    sb.aidbox().faults().set_latency(std::time::Duration::from_millis(150));
    let mut child = spawn(&args, &env);
    while files_done(&out) < 2 {
        assert!(
            std::time::Instant::now() < deadline + std::time::Duration::from_secs(20),
            "no file finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = files_done(&out);
    assert!(done_before < 8, "it finished before it was killed");

    // The same command finishes the same job.
    sb.aidbox().faults().set_latency(std::time::Duration::ZERO);
    let r = run(&args, &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("taken up again"), "{}", r.stderr);
    let stats = store.export_stats();
    assert_eq!(stats.kickoffs_accepted, 1, "a second kick-off");
    assert_eq!(stats.cancels, 0);
    // Files done before the kill were not fetched again (the one in flight may be).
    assert!(stats.file_requests_by_file.values().filter(|n| **n > 1).count() <= 1, "{stats:?}");
    assert_synthetic(&out.join("Observation.ndjson"), 8, 128);
    assert!(!out.join("errors.ndjson").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_cancel_deletes_the_job_and_failures_map_to_exit_codes() {
    let sb = sandbox().await;
    let store = sb.aidbox().fhir_store();
    let env = export_env(&sb);
    let out = fresh_dir("export-cancel");
    let dir = out.to_str().unwrap();
    // Never ready: kicked off, then killed while polling, then cancelled.
    store.set_export_ready_after_polls(1000);
    store.set_export_retry_after(1);
    let mut child = spawn(&["export", "--out", dir], &env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.export_stats().status_polls < 1 {
        assert!(std::time::Instant::now() < deadline, "the export never polled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let cancel = run(&["export", "--cancel", "--out", dir], &env);
    assert_eq!(cancel.code, 0, "{}", cancel.all());
    assert_eq!(store.export_stats().cancels, 1);
    assert!(!out.join(".fhir-auth-export").exists());
    let nothing = run(&["export", "--cancel", "--out", dir], &env);
    assert_eq!(nothing.code, 2, "{}", nothing.all());

    // Usage: 2. The server refuses the kick-off: 4, with its OperationOutcome.
    let usage = run(&["export", "--out", dir, "--patient", "--group", "g"], &env);
    assert_eq!(usage.code, 2, "{}", usage.all());
    let refused = run(&["export", "--out", dir, "--group", "no-such-group"], &env);
    assert_eq!(refused.code, 4, "{}", refused.all());
    assert!(refused.stdout.contains("OperationOutcome"), "{}", refused.all());
    // The job fails on the server: 4.
    store.set_export_ready_after_polls(0);
    store.fail_next_export();
    let failed = run(&["export", "--out", fresh_dir("export-failed").to_str().unwrap()], &env);
    assert_eq!(failed.code, 4, "{}", failed.all());
    // Nobody listening: 5.
    let dead = with(&env, "FHIR_AUTH_FHIR_BASE", "http://127.0.0.1:9/fhir");
    let network = run(&["export", "--out", fresh_dir("export-dead").to_str().unwrap()], &dead);
    assert_eq!(network.code, 5, "{}", network.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_memory_stays_bounded_whatever_the_size() {
    let time = std::path::Path::new("/usr/bin/time");
    assert!(time.exists(), "/usr/bin/time (Debian package `time`) is needed to measure peak memory");
    let sb = sandbox().await;
    let store = sb.aidbox().fhir_store();
    store.set_export_retry_after(0);
    // 256 MiB in two files.
    store.set_export_synthetic("Observation", 2, 128 * 1024 * 1024);
    let env = export_env(&sb);
    let out = fresh_dir("export-memory");
    let mut cmd = Command::new(time);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.env("HOME", temp_dir("home")).args([
        "-f",
        "maxrss_kb=%M",
        BIN,
        "export",
        "--out",
        out.to_str().unwrap(),
    ]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let kb: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no measurement: {stderr}"));
    assert_eq!(std::fs::metadata(out.join("Observation.ndjson")).unwrap().len(), 256 * 1024 * 1024);
    assert!(kb < 100 * 1024, "peak resident memory {kb} KiB for a 256 MiB export");
    let _ = std::fs::remove_dir_all(&out);
}

// ---------------------------------------------------------------------------
// `fhir-auth doctor`: each vendor's quirks, recovered from what its emulator does.

fn doctor(env: &[(&str, String)]) -> (Run, Value) {
    let r = run(&["doctor", "--json"], env);
    let profile = r.json();
    (r, profile)
}

/// What every emulator of the sandbox shares: a FHIR R4 store, a `Date` header on
/// the same clock, no throttling unless asked, paging on its own origin.
fn assert_sandbox_basics(vendor: &str, p: &Value) {
    assert_eq!(p["fhir_version"], "4.0.1", "{vendor}: {p}");
    assert!(p["clock_skew_seconds"].as_i64().unwrap().abs() <= 1, "{vendor}: {p}");
    assert_eq!(p["retry_after"], Value::Null, "{vendor}: nothing throttled: {p}");
    assert_eq!(p["next_links_same_origin"], true, "{vendor}: {p}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_santedb_answers_403_and_counts_milliseconds_in_2x() {
    let sb = sandbox().await;
    // 3.x: seconds, confirmed by the id token's exp; an unknown bearer gets 403.
    let (r, p) = doctor(&vendor_env(&sb, "santedb"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "seconds", "{p}");
    assert_eq!(p["jwt_exp_from"], "id_token", "{p}");
    assert_eq!(p["jwt_exp_agrees"], true, "{p}");
    assert_eq!(p["rejected_token_status"], 403, "{p}");
    assert_eq!(p["rejected_token_error"], "invalid_token", "{p}");
    assert_eq!(p["rejected_token_scheme"], "bearer", "lowercase, as SanteDB sends it: {p}");
    assert_sandbox_basics("santedb", &p);
    assert_eq!(p["suggested"]["provider"], "santedb", "{p}");
    assert_eq!(p["suggested"]["reasons"], Value::Array(vec![]), "{p}");
    assert_clean(&sb, &r);

    // 2.x: milliseconds; the doctor says so, and suggests --santedb-version 2.
    sb.santedb().set_version(auth_sandbox::SanteDbServerVersion::V2);
    let v2 = with(&vendor_env(&sb, "santedb"), "FHIR_AUTH_SANTEDB_VERSION", "2");
    let (r, p) = doctor(&v2);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "milliseconds", "{p}");
    assert_eq!(p["expires_in_unit_basis"], "jwt_exp", "{p}");
    assert_eq!(p["expires_in"].as_f64(), Some(300_000.0), "{p}");
    assert_eq!(p["jwt_exp_agrees"], true, "read in milliseconds, it agrees: {p}");
    assert_eq!(p["suggested"]["provider"], "santedb", "{p}");
    assert_eq!(p["suggested"]["options"]["santedb-version"], "2", "{p}");
    // The human profile names the unit.
    let text = run(&["doctor"], &v2);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(text.stdout.contains("expires_in 300000 → milliseconds"), "{}", text.stdout);
    assert!(text.stdout.contains("--santedb-version 2"), "{}", text.stdout);
    assert_clean(&sb, &text);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_aidbox_states_no_lifetime_and_sends_no_challenge() {
    let sb = sandbox().await;
    let (r, p) = doctor(&vendor_env(&sb, "aidbox"));
    assert_eq!(r.code, 0, "{}", r.all());
    // Aidbox's opaque tokens come without expires_in, and its 401 without WWW-Authenticate.
    assert_eq!(p["expires_in_unit"], "absent", "{p}");
    assert_eq!(p["jwt_exp_agrees"], Value::Null, "{p}");
    assert_eq!(p["rejected_token_status"], 401, "{p}");
    assert_eq!(p["rejected_token_error"], Value::Null, "{p}");
    assert_sandbox_basics("aidbox", &p);
    assert_eq!(p["suggested"]["provider"], "aidbox", "{p}");
    assert!(p["suggested"]["reasons"][0].as_str().unwrap().contains("stated nowhere"), "{p}");
    assert_clean(&sb, &r);

    // Asked to throttle, the server's 429 and its Retry-After are reported, and
    // waited out once rather than hammered.
    let store = sb.aidbox().fhir_store();
    store.throttle_next(
        1,
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        Some(auth_sandbox::fhir::RetryAfter::Seconds(1)),
    );
    let (r, p) = doctor(&vendor_env(&sb, "aidbox"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["retry_after"]["status"], 429, "{p}");
    assert_eq!(p["retry_after"]["retry_after_seconds"].as_f64(), Some(1.0), "{p}");
    assert_eq!(p["fhir_version"], "4.0.1", "the throttled request was made again: {p}");
    assert_eq!(store.throttled(), 1);
    let text = run(&["doctor"], &vendor_env(&sb, "aidbox"));
    assert!(text.stdout.contains("Retry-After     not observed"), "{}", text.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_msk_sees_the_gateways_bare_401_and_opaque_seconds() {
    let sb = sandbox().await;
    let (r, p) = doctor(&vendor_env(&sb, "msk"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "seconds", "{p}");
    assert_eq!(p["expires_in_unit_basis"], "rfc6749", "no JWT to confirm: {p}");
    assert_eq!(p["jwt_exp_agrees"], Value::Null, "opaque AAIg… tokens: {p}");
    // API Connect's own 401 document, no WWW-Authenticate.
    assert_eq!(p["rejected_token_status"], 401, "{p}");
    assert_eq!(p["rejected_token_error"], Value::Null, "{p}");
    // Blaze's links carry the study and partner id, on the same origin.
    assert_sandbox_basics("msk", &p);
    assert_eq!(p["suggested"]["provider"], "msk", "{p}");
    assert_clean(&sb, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_graphnet_reads_the_lifetime_from_the_jwt_alone() {
    let sb = sandbox().await;
    let (r, p) = doctor(&vendor_env(&sb, "graphnet"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "absent", "{p}");
    assert_eq!(p["jwt_exp_from"], "access_token", "{p}");
    let jwt = p["jwt_lifetime_seconds"].as_f64().unwrap();
    assert!((295.0..=300.0).contains(&jwt), "{p}");
    assert_eq!(p["jwt_exp_agrees"], Value::Null, "nothing to agree with: {p}");
    assert_eq!(p["rejected_token_status"], 401, "{p}");
    assert_eq!(p["rejected_token_error"], "invalid_token", "{p}");
    assert_sandbox_basics("graphnet", &p);
    assert_eq!(p["suggested"]["provider"], "graphnet", "{p}");
    assert_eq!(p["suggested"]["reasons"], Value::Array(vec![]), "{p}");
    assert_clean(&sb, &r);

    // As an unknown server (--provider oauth2, no subscription key): the JWT's
    // claims give Graphnet away, and the key is what is missing.
    let unknown: Vec<_> = with(&vendor_env(&sb, "graphnet"), "FHIR_AUTH_PROVIDER", "oauth2")
        .into_iter()
        .filter(|(k, _)| *k != "FHIR_AUTH_SUBSCRIPTION_KEY")
        .chain([("FHIR_AUTH_AUTH_METHOD", "post".to_owned())])
        .collect();
    let (r, p) = doctor(&unknown);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["suggested"]["provider"], "graphnet", "{p}");
    assert_eq!(p["suggested"]["options"]["subscription-key"], "<yours>", "{p}");
    assert_clean(&sb, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_smart_finds_the_configuration_even_without_a_token() {
    let sb = sandbox().await;
    let sm = sb.smart();
    let key = temp_dir("doctor-smart").join("key.pem");
    std::fs::write(&key, sm.private_key().expose_secret()).unwrap();
    let env = vec![
        ("FHIR_AUTH_PROVIDER", "smart".to_owned()),
        ("FHIR_AUTH_FHIR_BASE", sm.fhir_base()),
        ("FHIR_AUTH_CLIENT_ID", sm.client_id().to_owned()),
        ("FHIR_AUTH_PRIVATE_KEY", key.display().to_string()),
        ("FHIR_AUTH_KEY_ID", sm.key_id().to_owned()),
        ("FHIR_AUTH_ALG", "ES384".to_owned()),
        ("FHIR_AUTH_SCOPE", "system/Patient.rs".to_owned()),
    ];
    let (r, p) = doctor(&env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "seconds", "{p}");
    assert_eq!(p["jwt_exp_agrees"], Value::Null, "opaque: {p}");
    assert_eq!(p["rejected_token_status"], 401, "{p}");
    assert_eq!(p["rejected_token_error"], "invalid_token", "{p}");
    assert_eq!(p["smart_configuration"]["token_endpoint"], sm.token_url(), "{p}");
    assert_eq!(p["smart_configuration"]["token_endpoint_auth_methods_supported"][0], "private_key_jwt");
    assert_sandbox_basics("smart", &p);
    assert_eq!(p["suggested"]["provider"], "smart", "{p}");
    assert!(!r.all().contains("PRIVATE KEY"), "{}", r.all());

    // An unknown server to --provider oauth2: no token (it wants a signed
    // assertion), exit 3, but the profile still says what it is.
    let unknown = vec![
        ("FHIR_AUTH_PROVIDER", "oauth2".to_owned()),
        ("FHIR_AUTH_TOKEN_URL", sm.token_url()),
        ("FHIR_AUTH_FHIR_BASE", sm.fhir_base()),
        ("FHIR_AUTH_CLIENT_ID", sm.client_id().to_owned()),
        ("FHIR_AUTH_CLIENT_SECRET", "not-how-smart-works".to_owned()),
    ];
    let (r, p) = doctor(&unknown);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(p["token_error"].as_str().unwrap().contains("invalid_request"), "{p}");
    assert_eq!(p["rejected_token_status"], 401, "{p}");
    assert_eq!(p["suggested"]["provider"], "smart", "{p}");
    assert_eq!(p["suggested"]["options"]["alg"], "RS384", "the first algorithm offered: {p}");
    assert!(!r.all().contains("not-how-smart-works"), "{}", r.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_probes_an_unknown_server_with_oauth2() {
    use auth_sandbox::idp::TestIdentityProvider;
    let idp = TestIdentityProvider::start().await.unwrap();
    let env = vec![
        ("FHIR_AUTH_PROVIDER", "oauth2".to_owned()),
        ("FHIR_AUTH_TOKEN_URL", idp.token_url()),
        ("FHIR_AUTH_FHIR_BASE", idp.fhir_base()),
        ("FHIR_AUTH_CLIENT_ID", idp.client_id().to_owned()),
        ("FHIR_AUTH_CLIENT_SECRET", idp.client_secret().expose_secret().to_owned()),
    ];
    // JWTs whose exp agrees with expires_in: the defaults fit.
    idp.set_jwt(true);
    let (r, p) = doctor(&env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "seconds", "{p}");
    assert_eq!(p["jwt_exp_agrees"], true, "{p}");
    assert_eq!(p["rejected_token_status"], 401, "{p}");
    assert_eq!(p["rejected_token_error"], "invalid_token", "{p}");
    // Its API is no FHIR server: no CapabilityStatement, no searchset.
    assert_eq!(p["fhir_version"], Value::Null, "{p}");
    assert_eq!(p["next_links_same_origin"], Value::Null, "{p}");
    assert!(p["clock_skew_seconds"].as_i64().unwrap().abs() <= 1, "{p}");
    assert_eq!(p["suggested"]["provider"], "oauth2", "{p}");
    assert_eq!(p["suggested"]["reasons"], Value::Array(vec![]), "{p}");
    assert!(!r.all().contains("test-secret") && !r.all().contains("eyJ"), "{}", r.all());

    // A JWT whose exp says 300 s while expires_in says 3600: they disagree.
    idp.set_behavior(auth_sandbox::idp::TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: serde_json::json!({
            "access_token": auth_sandbox::idp::fake_jwt(&serde_json::json!({"exp": now_secs() + 300})),
            "token_type": "Bearer",
            "expires_in": 3600,
        })
        .to_string(),
    });
    let (r, p) = doctor(&env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["jwt_exp_agrees"], false, "{p}");
    assert!(p["suggested"]["reasons"][0].as_str().unwrap().contains("disagree"), "{p}");

    // Opaque tokens with expires_in in milliseconds: told by magnitude.
    idp.set_behavior(auth_sandbox::idp::TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: r#"{"access_token":"opaque-ms","token_type":"Bearer","expires_in":1799984}"#.to_owned(),
    });
    let (r, p) = doctor(&env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p["expires_in_unit"], "milliseconds", "{p}");
    assert_eq!(p["expires_in_unit_basis"], "magnitude", "{p}");
    assert!(p["suggested"]["reasons"][0].as_str().unwrap().contains("milliseconds"), "{p}");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------
// The CLI tells the truth quickly.

fn idp_env(idp: &auth_sandbox::idp::TestIdentityProvider) -> Vec<(&'static str, String)> {
    vec![
        ("FHIR_AUTH_PROVIDER", "oauth2".to_owned()),
        ("FHIR_AUTH_TOKEN_URL", idp.token_url()),
        ("FHIR_AUTH_FHIR_BASE", idp.fhir_base()),
        ("FHIR_AUTH_CLIENT_ID", idp.client_id().to_owned()),
        ("FHIR_AUTH_CLIENT_SECRET", idp.client_secret().expose_secret().to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_issued_expired_fails_with_exit_3_and_the_librarys_warning() {
    use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior, fake_jwt};
    let idp = TestIdentityProvider::start().await.unwrap();
    let env = idp_env(&idp);
    idp.set_behavior(TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: r#"{"access_token":"at-expired","token_type":"Bearer","expires_in":-3600}"#.to_owned(),
    });
    for args in [&["token"][..], &["token", "--json"][..]] {
        let r = run(args, &env);
        assert_eq!(r.code, 3, "{args:?}: {}", r.all());
        assert!(!r.stdout.contains('✓'), "no green check: {}", r.stdout);
        assert!(
            r.stderr.contains("issued a token that is already expired (expires_in: -3600)"),
            "{}",
            r.stderr
        );
        // The library's own warning, on stderr.
        assert!(r.stderr.contains("WARN") && r.stderr.contains("clamped"), "{}", r.stderr);
        assert!(!r.all().contains("at-expired") && !r.all().contains("test-secret"), "{}", r.all());
    }

    // A JWT whose exp passed an hour ago (expires_in says nothing).
    let jwt = fake_jwt(&serde_json::json!({"sub": "x", "exp": now_secs() - 3600}));
    idp.set_behavior(TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: serde_json::json!({"access_token": jwt, "token_type": "Bearer"}).to_string(),
    });
    let r = run(&["token"], &env);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("exp") && r.stderr.contains("clock"), "{}", r.stderr);
    assert!(r.stderr.contains("passed 3600 s") || r.stderr.contains("passed 3601 s"), "{}", r.stderr);
    assert!(!r.all().contains("eyJ"), "{}", r.all());
    // The doctor says the same, and fails the same way.
    let (d, p) = doctor(&env);
    assert_eq!(d.code, 3, "{}", d.all());
    assert!(p["token_expired_on_issue"].as_str().unwrap().contains("clock"), "{p}");

    // A JWT exp in milliseconds: the library's warning names the likely cause.
    let ms = fake_jwt(&serde_json::json!({"exp": (now_secs() + 300) * 1000}));
    idp.set_behavior(TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: serde_json::json!({"access_token": ms, "token_type": "Bearer"}).to_string(),
    });
    let r = run(&["token"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("looks like milliseconds"), "{}", r.stderr);

    // A healthy token: exit 0, the green check, and nothing on stderr.
    idp.set_behavior(TokenBehavior::Issue);
    let r = run(&["token"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains('✓') && r.stderr.is_empty(), "{}", r.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_never_answers_meets_the_deadline_with_exit_5() {
    use auth_sandbox::idp::TestIdentityProvider;
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.idp_faults().set_hang_rate(1.0);
    let env = idp_env(&idp);
    let timed = |args: &[&str], env: &[(&str, String)]| {
        let started = std::time::Instant::now();
        let r = run(args, env);
        (r, started.elapsed())
    };
    // By flag and by variable; the message names what it waited for.
    let (r, took) = timed(&["token", "--timeout", "1.5"], &env);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");
    assert!(r.stderr.contains("timed out after 1.5 s waiting for the token endpoint"), "{}", r.stderr);
    assert!(r.stderr.contains(&idp.token_url()), "{}", r.stderr);
    let (r, _) = timed(&["read", "Patient/1"], &with(&env, "FHIR_AUTH_TIMEOUT", "1s"));
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("timed out after 1.0 s waiting for the token endpoint"), "{}", r.stderr);
    // The FHIR server hangs (it takes the connection and never answers), not the
    // identity provider: said so.
    idp.idp_faults().clear();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_base = format!("http://{}/fhir", silent.local_addr().unwrap());
    let (r, _) =
        timed(&["read", "Patient/1", "--timeout", "2"], &with(&env, "FHIR_AUTH_FHIR_BASE", &silent_base));
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains(&format!("waiting for the FHIR server at {silent_base}")), "{}", r.stderr);
    drop(silent);
    // A bad duration is a usage error.
    assert_eq!(run(&["token", "--timeout", "soon"], &env).code, 2);
    // Without --timeout, one-shot commands still end: about 15 s.
    idp.idp_faults().set_hang_rate(1.0);
    let (r, took) = timed(&["token"], &env);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!((14..25).contains(&took.as_secs()), "{took:?}");
    assert!(r.stderr.contains("timed out after 15.0 s"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------
// Comfort: completions, --quiet, colour through anstream.

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&["completions", shell], &[]);
        assert_eq!(r.code, 0, "{shell}: {}", r.all());
        // fish spells options `-l timeout`.
        for word in ["fhir-auth", "doctor", "timeout", "quiet", "export"] {
            assert!(r.stdout.contains(word), "{shell}: {word} missing");
        }
    }
    assert_eq!(run(&["completions", "tcsh"], &[]).code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_silences_notes_and_colour_follows_the_environment() {
    let sb = sandbox().await;
    let env = vendor_env(&sb, "aidbox");
    let noisy = run(&["token", "--store-key", "x"], &env);
    assert_eq!(noisy.code, 0, "{}", noisy.all());
    assert!(noisy.stderr.contains("note: --store-key"), "{}", noisy.stderr);
    for quiet in [
        run(&["token", "--store-key", "x", "--quiet"], &env),
        run(&["token", "--store-key", "x"], &with(&env, "FHIR_AUTH_QUIET", "true")),
    ] {
        assert_eq!(quiet.code, 0, "{}", quiet.all());
        assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
    }
    // Piped: no escape codes; CLICOLOR_FORCE: colour anyway; NO_COLOR: none.
    assert!(!noisy.stdout.contains('\x1b'), "{}", noisy.stdout);
    let forced = run(&["token"], &with(&env, "CLICOLOR_FORCE", "1"));
    assert!(forced.stdout.contains("\x1b[32m✓"), "{:?}", forced.stdout);
    assert_clean(&sb, &forced);
    // --quiet drops export's progress lines too.
    sb.aidbox().fhir_store().set_export_retry_after(0);
    let out = fresh_dir("export-quiet");
    let r = run(&["export", "--out", out.to_str().unwrap(), "--quiet"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

/// Runs the CLI on a pseudo-terminal (util-linux `script`), stdout and stderr
/// together, as an operator at a terminal sees them.
fn run_on_terminal(args: &[&str], env: &[(&str, String)]) -> String {
    let line = std::iter::once(BIN).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    let mut cmd = Command::new("script");
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.env("HOME", temp_dir("home")).env("TERM", "xterm").args(["-qec", &line, "/dev/null"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script (util-linux) runs the CLI on a terminal");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_drawn_on_a_terminal_only_and_never_with_quiet() {
    let sb = sandbox().await;
    let env = vendor_env(&sb, "aidbox");
    // A page at a time, each held back a little, so the bar is seen moving.
    sb.aidbox().faults().set_latency(std::time::Duration::from_millis(60));
    let search = ["search", "Patient", "_count=1", "--all"];
    let shown = run_on_terminal(&search, &env);
    assert!(shown.contains("page 3: 3 entries so far"), "{shown}");
    assert!(shown.contains("\x1b[2K"), "the live line is redrawn in place: {shown:?}");
    assert!(shown.contains("\x1b[36mPatient"), "colour on a terminal: {shown:?}");
    let mut quiet = search.to_vec();
    quiet.push("--quiet");
    let hushed = run_on_terminal(&quiet, &env);
    assert!(!hushed.contains("entries so far") && hushed.contains("6 page(s)"), "{hushed}");
    let piped = run(&search, &env);
    assert!(!piped.all().contains("entries so far") && !piped.all().contains('\x1b'), "{}", piped.all());
    // export: the bar counts files on a terminal.
    sb.aidbox().faults().set_latency(std::time::Duration::ZERO);
    let store = sb.aidbox().fhir_store();
    store.set_export_retry_after(0);
    store.set_export_synthetic("Observation", 3, 64 * 1024);
    sb.aidbox().faults().set_latency(std::time::Duration::from_millis(100));
    let out = fresh_dir("export-terminal");
    let shown = run_on_terminal(&["export", "--out", out.to_str().unwrap()], &env);
    assert!(shown.contains("/3 files"), "{shown}");
    assert!(!shown.contains("file 1/3:"), "no plain lines on a terminal: {shown}");
    assert_clean(&sb, &Run { code: 0, stdout: shown, stderr: String::new() });
}

/// What the DPoP server below saw: the thumbprint of each proof's key, by path.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A token endpoint and a FHIR read that verify DPoP proofs (RFC 9449 §4.3:
/// signature by the embedded key, `typ`, `htm`, `htu`, and on the read `ath`
/// and the token's binding): a token bound to the proof's key, `DPoP` scheme.
async fn dpop_server() -> (String, Seen) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    let seen: Seen = Seen::default();
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    // The proof's key thumbprint, if the proof is good for `method` on `url`.
    fn verify(headers: &HeaderMap, method: &str, url: &str, token: Option<&str>) -> Option<String> {
        let proof = headers.get("dpop")?.to_str().ok()?;
        let header = jsonwebtoken::decode_header(proof).ok()?;
        let jwk = header.jwk.clone()?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(proof, &key, &v).ok()?.claims;
        let ath = token.map(|t| auth_core::keys::sha256_base64url(t.as_bytes()));
        let good = header.typ.as_deref() == Some("dpop+jwt")
            && claims["htm"] == method
            && claims["htu"] == url
            && claims["jti"].is_string()
            && claims["ath"].as_str().map(str::to_owned) == ath;
        good.then(|| auth_core::keys::jwk_thumbprint(&jwk))
    }
    let (token_base, token_seen) = (base.clone(), seen.clone());
    let (read_base, read_seen) = (base.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/token",
            post(move |headers: HeaderMap| {
                let url = format!("{}/token", token_base.get().cloned().unwrap_or_default());
                let seen = token_seen.clone();
                async move {
                    match verify(&headers, "POST", &url, None) {
                        Some(jkt) => {
                            seen.lock().unwrap().push(("/token".into(), jkt.clone()));
                            let body = serde_json::json!({"access_token": format!("bound-to-{jkt}"), "token_type": "DPoP", "expires_in": 300});
                            (StatusCode::OK, axum::Json(body))
                        }
                        None => (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_dpop_proof"}))),
                    }
                }
            }),
        )
        .route(
            "/fhir/Patient/{id}",
            get(move |headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<String>| {
                let url = format!("{}/fhir/Patient/{id}", read_base.get().cloned().unwrap_or_default());
                let seen = read_seen.clone();
                async move {
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|a| a.strip_prefix("DPoP "))
                        .map(str::to_owned)
                        .unwrap_or_default();
                    match verify(&headers, "GET", &url, Some(&token)) {
                        Some(jkt) if token == format!("bound-to-{jkt}") => {
                            seen.lock().unwrap().push((format!("/fhir/Patient/{id}"), jkt));
                            let patient = serde_json::json!({"resourceType": "Patient", "id": id});
                            (StatusCode::OK, axum::Json(patient))
                        }
                        _ => (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({}))),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    base.set(url.clone()).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_binds_tokens_and_proves_the_key_on_reads() {
    let (base, seen) = dpop_server().await;
    let env = vec![
        ("FHIR_AUTH_PROVIDER", "oauth2".to_owned()),
        ("FHIR_AUTH_TOKEN_URL", format!("{base}/token")),
        ("FHIR_AUTH_FHIR_BASE", format!("{base}/fhir")),
        ("FHIR_AUTH_CLIENT_ID", "dpop-client".to_owned()),
        ("FHIR_AUTH_CLIENT_SECRET", "dpop-secret-0123456789".to_owned()),
    ];

    // --dpop: a key of this run; the token is DPoP and bound to its thumbprint.
    let r = run(&["token", "--json", "--dpop"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let report = r.json();
    assert_eq!(report["token_type"], "DPoP", "{report}");
    let jkt = report["jkt"].as_str().expect("jkt").to_owned();
    assert_eq!(jkt.len(), 43, "a base64url SHA-256: {jkt}");
    assert_eq!(seen.lock().unwrap().last().cloned(), Some(("/token".to_owned(), jkt.clone())));
    // A new key each run.
    let again = run(&["token", "--json"], &with(&env, "FHIR_AUTH_DPOP", "1"));
    assert_eq!(again.code, 0, "{}", again.all());
    assert_ne!(again.json()["jkt"], jkt.as_str());

    // --dpop-key: that key, run after run.
    let dir = temp_dir("dpop");
    let key = dir.join("dpop.pem");
    let pem = auth_core::keys::PrivateKey::generate_pem(auth_core::keys::JwsAlgorithm::Es256).unwrap();
    std::fs::write(&key, pem.expose_secret()).unwrap();
    let expected = auth_core::keys::PrivateKey::from_pem(&pem, auth_core::keys::JwsAlgorithm::Es256)
        .unwrap()
        .thumbprint()
        .to_owned();
    let r = run(&["token", "--json", "--dpop-key", key.to_str().unwrap()], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["jkt"], expected.as_str());
    assert!(!r.all().contains(&pem.expose_secret()[30..60]), "the key leaked: {}", r.all());
    let r = run(&["token", "--json"], &with(&env, "FHIR_AUTH_DPOP_KEY", key.to_str().unwrap()));
    assert_eq!(r.json()["jkt"], expected.as_str());

    // read: `Authorization: DPoP` with a proof of the same key (and `ath`).
    let r = run(&["read", "Patient/42", "--dpop-key", key.to_str().unwrap()], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["id"], "42");
    assert_eq!(seen.lock().unwrap().last().cloned(), Some(("/fhir/Patient/42".to_owned(), expected.clone())));

    // Without DPoP this server gives no token: exit 3; a key that is no key: exit 2.
    assert_eq!(run(&["token"], &env).code, 3);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let r = run(&["token", "--dpop-key", junk.to_str().unwrap()], &env);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--dpop-key"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_generate_writes_a_private_key_and_jwks_publishes_only_public_keys() {
    let dir = temp_dir("keys");
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let es = run(&["keys", "generate", "--alg", "ES384", "--kid", "2026-11-es384", "--out", out], &[]);
    assert_eq!(es.code, 0, "{}", es.all());
    let set = es.json();
    assert_eq!(set["keys"][0]["kid"], "2026-11-es384", "{set}");
    assert_eq!((set["keys"][0]["kty"].as_str(), set["keys"][0]["crv"].as_str()), (Some("EC"), Some("P-384")));
    assert_eq!(set["keys"][0]["alg"], "ES384");
    let file = dir.join("2026-11-es384.pem");
    let pem = std::fs::read_to_string(&file).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!es.all().contains(&pem[30..60]), "the private key was printed");
    // Never overwritten.
    let again = run(&["keys", "generate", "--alg", "ES384", "--kid", "2026-11-es384", "--out", out], &[]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), pem);
    let rs = run(&["keys", "generate", "--alg", "RS384", "--kid", "2026-05-rs384", "--out", out], &[]);
    assert_eq!(rs.code, 0, "{}", rs.all());
    // Usage: an algorithm, a key id that names a file in DIR.
    assert_eq!(run(&["keys", "generate", "--kid", "x", "--out", out], &[]).code, 2);
    assert_eq!(run(&["keys", "generate", "--alg", "ES384", "--kid", "../x", "--out", out], &[]).code, 2);

    // The set to host while rotating: both keys, public members only.
    let old = dir.join("2026-05-rs384.pem");
    let r = run(
        &["keys", "jwks", "--private-key", old.to_str().unwrap(), "--private-key", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let set = r.json();
    let keys = set["keys"].as_array().unwrap();
    let kids: Vec<_> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["2026-05-rs384", "2026-11-es384"]);
    assert_eq!(keys[0]["alg"], "RS384");
    assert_eq!(keys[1], es.json()["keys"][0], "the same public key as generated");
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(key.get(private).is_none(), "`{private}` published: {key}");
        }
    }
    assert_eq!(run(&["keys", "jwks"], &[]).code, 2);
}
