//! `fhir-auth keys`: signing keys for SMART Backend Services (`private_key_jwt`)
//! and the public JWK Set to host at the client's registered JWK Set URL.
//!
//! Rotation with these: `keys generate` a new key, host `keys jwks` of the old
//! and the new one, wait until servers have fetched it again (the set's
//! max-age), sign with the new key, and once the old key's last assertions have
//! expired (minutes) host the set of the new key alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use auth_core::PrivateKeyPem;
use auth_core::jwks::jwks_of;
use auth_core::keys::{JwsAlgorithm, PrivateKey};

use crate::cli::KeysCommand;
use crate::error::CliError;
use crate::output::out_json;

/// What `keys jwks` reads a key as: SMART's two algorithms (an EC key's curve
/// decides; an RSA key is RS384).
const SMART_ALGS: [JwsAlgorithm; 2] = [JwsAlgorithm::Es384, JwsAlgorithm::Rs384];

/// Runs `keys generate` or `keys jwks`, with `--alg` and `--private-key` from
/// the global options.
pub(crate) fn run(action: KeysCommand, alg: Option<&str>, private_keys: &[PathBuf]) -> Result<(), CliError> {
    match action {
        KeysCommand::Generate { kid, out } => generate(&kid, &out, alg),
        KeysCommand::Jwks => jwks(private_keys),
    }
}

fn generate(kid: &str, out: &Path, alg: Option<&str>) -> Result<(), CliError> {
    let alg = match alg {
        Some("RS384") => JwsAlgorithm::Rs384,
        Some("ES384") => JwsAlgorithm::Es384,
        _ => {
            return Err(CliError::config(
                "--alg RS384 or --alg ES384 is required: SMART servers accept both",
            ));
        }
    };
    // The kid names the file: nothing that could leave the directory.
    let safe = !kid.is_empty()
        && kid.len() <= 128
        && !kid.starts_with('.')
        && kid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !safe {
        return Err(CliError::config(format!(
            "`{kid}` cannot be a key id here: letters, digits, `-`, `_` and `.` (not first), at most 128"
        )));
    }
    let pem = PrivateKey::generate_pem(alg)?;
    let key = PrivateKey::from_pem(&pem, alg)?.with_kid(kid);
    std::fs::create_dir_all(out).map_err(|e| CliError::io(format!("cannot create {}", out.display()), e))?;
    let path = out.join(format!("{kid}.pem"));
    write_private(&path, pem.expose_secret().as_bytes())?;
    eprintln!("wrote the private key to {} (readable by you only); its public JWK Set:", path.display());
    out_json(&jwks_of([&key])?);
    Ok(())
}

/// Writes a new file readable by its owner only; an existing key is never
/// overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} exists already; a key is never overwritten", path.display())
        } else {
            format!("cannot write {}", path.display())
        };
        CliError::io(what, e)
    })?;
    file.write_all(bytes).map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))
}

fn jwks(private_keys: &[PathBuf]) -> Result<(), CliError> {
    if private_keys.is_empty() {
        return Err(CliError::config("give the keys with --private-key F (repeat it for each key)"));
    }
    let mut keys = Vec::new();
    for path in private_keys {
        let kid = path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty()).ok_or_else(|| {
            CliError::config(format!("{}: no file name to take the key id from", path.display()))
        })?;
        let pem = std::fs::read_to_string(path)
            .map(PrivateKeyPem::new)
            .map_err(|e| CliError::io(format!("cannot read the private key {}", path.display()), e))?;
        let key = PrivateKey::from_pem_any(&pem, &SMART_ALGS)
            .map_err(|e| CliError::config(format!("{}: {e}", path.display())))?;
        keys.push(key.with_kid(kid));
    }
    out_json(&jwks_of(&keys)?);
    Ok(())
}
