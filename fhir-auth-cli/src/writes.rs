//! What changes a server: `create`, `update`, `delete`, `patch`, `transaction`.
//! Files are read as JSON with every decimal kept as written (`1.50` stays
//! `1.50`), and resources are printed as the server returned them.

use std::io::Read;
use std::path::Path;

use auth_fhir::{Created, JsonResource, SearchParams};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::commands::check_type;
use crate::connect::Connection;
use crate::error::CliError;
use crate::output::{Style, out, out_json};

/// What a write names: one resource, or the ones matching a search.
#[derive(Debug, PartialEq)]
enum Target<'a> {
    /// `Patient/123`.
    Instance(&'a str, &'a str),
    /// `Patient?identifier=x|1`.
    Matching(&'a str, SearchParams),
}

impl<'a> Target<'a> {
    fn parse(text: &'a str) -> Result<Self, CliError> {
        if let Some((resource_type, query)) = text.split_once('?') {
            check_type(resource_type)?;
            let condition = SearchParams::from_query(query);
            if condition.is_empty() || condition.pairs().iter().any(|(k, _)| k.is_empty()) {
                return Err(CliError::config(format!("`{text}` has no search parameters after `?`")));
            }
            return Ok(Self::Matching(resource_type, condition));
        }
        match text.split_once('/') {
            Some((resource_type, id)) if !id.is_empty() && !id.contains('/') => {
                check_type(resource_type)?;
                Ok(Self::Instance(resource_type, id))
            }
            _ => Err(CliError::config(format!("`{text}` is neither <Type>/<id> nor '<Type>?name=value'"))),
        }
    }

    fn resource_type(&self) -> &'a str {
        match self {
            Self::Instance(t, _) | Self::Matching(t, _) => t,
        }
    }
}

/// Reads `file` (`-`: standard input) as JSON of type `T`. serde's message can
/// quote the file's contents: only the position is reported.
fn read_json<T: DeserializeOwned>(file: &Path, expected: &str) -> Result<T, CliError> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("cannot read standard input", e))?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| CliError::io(format!("cannot read {}", file.display()), e))?;
    }
    serde_json::from_str(&text).map_err(|e| {
        CliError::config(format!(
            "{} is not {expected} (line {}, column {})",
            file.display(),
            e.line(),
            e.column()
        ))
    })
}

/// Reads a resource of type `resource_type` from `file`.
fn read_resource(file: &Path, resource_type: &str) -> Result<JsonResource, CliError> {
    let resource: Map<String, Value> = read_json(file, "a JSON object")?;
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(JsonResource(resource)),
        Some(t) => Err(CliError::config(format!("the file holds a {t}, not a {resource_type}"))),
        None => Err(CliError::config("the file has no resourceType")),
    }
}

/// What a create or conditional update returned: the server's resource, or (when
/// it sent none) the one sent with the id and version the server gave it.
fn shown(created: Created<JsonResource>, sent: JsonResource) -> Value {
    let mut shown = created.resource.map(|r| r.0).unwrap_or(sent.0);
    if let Some(id) = &created.id {
        shown.insert("id".into(), json!(id));
    }
    if let Some(v) = &created.version_id
        && let Value::Object(meta) = shown.entry("meta").or_insert_with(|| json!({}))
    {
        meta.insert("versionId".into(), json!(v));
    }
    Value::Object(shown)
}

/// `fhir-auth create Type --file path`.
pub(crate) async fn create(conn: &Connection, resource_type: &str, file: &Path) -> Result<(), CliError> {
    check_type(resource_type)?;
    let resource = read_resource(file, resource_type)?;
    let created = conn.fhir().await?.create(&resource).await?;
    out_json(&shown(created, resource));
    Ok(())
}

/// `fhir-auth update Type/id --file F [--if-match V]` or `update 'Type?k=v' --file F`.
pub(crate) async fn update(
    conn: &Connection,
    target: &str,
    file: &Path,
    if_match: Option<&str>,
) -> Result<(), CliError> {
    let target = Target::parse(target)?;
    let mut resource = read_resource(file, target.resource_type())?;
    let fhir = conn.fhir().await?;
    match target {
        Target::Instance(_, id) => {
            match resource.0.get("id").and_then(Value::as_str) {
                Some(own) if own != id => {
                    return Err(CliError::config(format!("the file's id is `{own}`, not `{id}`")));
                }
                Some(_) => {}
                None => {
                    resource.0.insert("id".into(), json!(id));
                }
            }
            out_json(&fhir.update(&resource, if_match).await?);
        }
        Target::Matching(_, condition) => {
            if if_match.is_some() {
                return Err(CliError::config("--if-match names one version: use it with <Type>/<id>"));
            }
            let created = fhir.update_where(&resource, &condition).await?;
            out_json(&shown(created, resource));
        }
    }
    Ok(())
}

/// `fhir-auth delete Type/id` or `delete 'Type?k=v'`.
pub(crate) async fn delete(conn: &Connection, target: &str, json_out: bool) -> Result<(), CliError> {
    let parsed = Target::parse(target)?;
    let fhir = conn.fhir().await?;
    match &parsed {
        Target::Instance(resource_type, id) => fhir.delete(resource_type, id).await?,
        Target::Matching(resource_type, condition) => fhir.delete_where(resource_type, condition).await?,
    }
    if json_out {
        out_json(&json!({"deleted": target}));
    } else {
        out(&format!("{} deleted {target}", Style::stdout().green("✓")));
    }
    Ok(())
}

/// `fhir-auth patch Type/id --file F [--if-match V]`, F a JSON Patch array.
pub(crate) async fn patch(
    conn: &Connection,
    target: &str,
    file: &Path,
    if_match: Option<&str>,
) -> Result<(), CliError> {
    let Target::Instance(resource_type, id) = Target::parse(target)? else {
        return Err(CliError::config("patch names one resource: <Type>/<id>"));
    };
    let patch: json_patch::Patch = read_json(file, "a JSON Patch (an array of operations)")?;
    let patched = conn.fhir().await?.patch_json(resource_type, id, &patch, if_match).await?;
    out_json(&patched);
    Ok(())
}

/// `fhir-auth transaction --file F`: the response Bundle, as JSON. A rejected
/// transaction is an error (exit 4); a batch whose entries failed is not: each
/// entry's status is in the Bundle, and the failures are listed on stderr too.
pub(crate) async fn transaction(conn: &Connection, file: &Path, json_out: bool) -> Result<(), CliError> {
    let bundle = read_resource(file, "Bundle")?;
    let response = conn.fhir().await?.transaction_json(&bundle).await?;
    out_json(&response.bundle);
    if !json_out {
        let failed: Vec<_> = response.entries.iter().enumerate().filter(|(_, e)| !e.is_success()).collect();
        for (i, entry) in &failed {
            let why = entry
                .outcome
                .as_ref()
                .and_then(|o| o.issue.first())
                .map(|issue| {
                    let text = |v: &Option<String>| v.clone().unwrap_or_default();
                    format!(": {} {}", text(&issue.severity), text(&issue.code))
                })
                .unwrap_or_default();
            eprintln!("entry {} failed with HTTP {}{why}", i + 1, entry.status);
        }
        eprintln!(
            "{} of {} entries succeeded",
            response.entries.len() - failed.len(),
            response.entries.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_one_resource_or_a_search() {
        assert_eq!(Target::parse("Patient/1").ok(), Some(Target::Instance("Patient", "1")));
        let Ok(Target::Matching(t, c)) = Target::parse("Patient?identifier=x%7C1&name=a") else {
            panic!("a conditional target")
        };
        assert_eq!((t, c.pairs()[0].1.as_str()), ("Patient", "x|1"));
        for bad in ["Patient", "Patient/", "Patient/1/2", "patient/1", "Patient?", "Patient?=x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
