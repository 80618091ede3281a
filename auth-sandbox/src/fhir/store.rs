//! The data: every version of every resource, keyed by type and id, and the order
//! they were written in (for type and system history). Cloned whole for a
//! transaction, which works on the copy and is committed only if every entry
//! succeeded (bundle.html#transaction: all or nothing).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Write, instant};

/// How a version came to be: its `Bundle.entry.request.method` and
/// `response.status` in a history Bundle (http.html#history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Update,
    /// An update of an id that had no live resource (http.html#upsert).
    UpdateCreate,
    Patch,
    Delete,
}

impl Kind {
    pub(crate) fn method(self) -> &'static str {
        match self {
            Kind::Create => "POST",
            Kind::Update | Kind::UpdateCreate => "PUT",
            Kind::Patch => "PATCH",
            Kind::Delete => "DELETE",
        }
    }

    pub(crate) fn status(self) -> &'static str {
        match self {
            Kind::Create | Kind::UpdateCreate => "201 Created",
            Kind::Update | Kind::Patch => "200 OK",
            Kind::Delete => "204 No Content",
        }
    }

    fn interaction(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update | Kind::UpdateCreate => "update",
            Kind::Patch => "patch",
            Kind::Delete => "delete",
        }
    }
}

/// One version of a resource.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) number: u64,
    /// `meta.lastUpdated`, in milliseconds since the epoch.
    pub(crate) updated: i64,
    pub(crate) kind: Kind,
    /// `None`: the resource was deleted by this version.
    pub(crate) resource: Option<Value>,
}

/// A resource's current state.
#[derive(Debug)]
pub(crate) enum Current<'a> {
    Missing,
    Deleted(&'a Version),
    Live(&'a Version),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Data {
    /// type → id → versions, oldest first.
    pub(crate) resources: BTreeMap<String, BTreeMap<String, Vec<Version>>>,
    /// (type, id, version) in the order written.
    pub(crate) log: Vec<(String, String, u64)>,
    next_id: u64,
    last_ms: i64,
    pub(crate) received: Vec<Value>,
    pub(crate) writes: Vec<Write>,
}

impl Data {
    pub(crate) fn versions(&self, t: &str, id: &str) -> Option<&Vec<Version>> {
        self.resources.get(t).and_then(|ids| ids.get(id))
    }

    pub(crate) fn version(&self, t: &str, id: &str, number: u64) -> Option<&Version> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.versions(t, id)?.get(index)
    }

    pub(crate) fn current(&self, t: &str, id: &str) -> Current<'_> {
        match self.versions(t, id).and_then(|v| v.last()) {
            None => Current::Missing,
            Some(v) if v.resource.is_none() => Current::Deleted(v),
            Some(v) => Current::Live(v),
        }
    }

    /// The live resources of one type (or of every type), by type and id.
    pub(crate) fn live<'a>(
        &'a self,
        t: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Version)> {
        self.resources.iter().filter(move |(name, _)| t.is_none_or(|t| t == name.as_str())).flat_map(
            |(name, ids)| {
                ids.iter().filter_map(move |(id, versions)| {
                    versions.last().filter(|v| v.resource.is_some()).map(|v| (name.as_str(), id.as_str(), v))
                })
            },
        )
    }

    /// A new id for a resource of type `t`, never used before in this store.
    pub(crate) fn new_id(&mut self, t: &str) -> String {
        // Patients keep the `pat-N` ids the emulators always gave them.
        let prefix = if t == "Patient" { "pat".to_owned() } else { t.to_ascii_lowercase() };
        loop {
            self.next_id += 1;
            let id = format!("{prefix}-{}", self.next_id);
            if self.versions(t, &id).is_none() {
                return id;
            }
        }
    }

    /// Time for a new version: now, but always after the previous one, so versions
    /// are ordered by `lastUpdated` and `_since` cuts between them cleanly.
    pub(crate) fn tick(&mut self) -> i64 {
        self.last_ms = instant::now_ms().max(self.last_ms + 1);
        self.last_ms
    }

    /// Writes a new version of `t/id` (`None`: a deletion) and returns it.
    pub(crate) fn write(&mut self, t: &str, id: &str, kind: Kind, resource: Option<Value>) -> Version {
        let updated = self.tick();
        let versions = self.resources.entry(t.to_owned()).or_default().entry(id.to_owned()).or_default();
        let number = versions.len() as u64 + 1;
        let resource = resource.map(|mut r| {
            stamp(&mut r, t, id, number, updated);
            r
        });
        let version = Version { number, updated, kind, resource };
        versions.push(version.clone());
        self.log.push((t.to_owned(), id.to_owned(), number));
        self.writes.push(Write {
            interaction: kind.interaction(),
            resource_type: t.to_owned(),
            id: id.to_owned(),
            version: number,
        });
        version
    }

    /// Adds a resource as it is, id kept (or assigned), outside the write log of
    /// interactions: what a test seeds is not something a client did.
    pub(crate) fn seed(&mut self, mut resource: Value) {
        let t = resource.get("resourceType").and_then(Value::as_str).unwrap_or("Patient").to_owned();
        let id = match resource.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => self.new_id(&t),
        };
        let updated = self.tick();
        let versions = self.resources.entry(t.clone()).or_default().entry(id.clone()).or_default();
        let number = versions.len() as u64 + 1;
        stamp(&mut resource, &t, &id, number, updated);
        versions.push(Version { number, updated, kind: Kind::Create, resource: Some(resource) });
        self.log.push((t, id, number));
    }
}

/// Sets what the server owns: `resourceType`, `id`, `meta.versionId`,
/// `meta.lastUpdated` (resource.html#Meta: the server assigns them).
fn stamp(resource: &mut Value, t: &str, id: &str, number: u64, updated: i64) {
    if let Value::Object(m) = resource {
        m.insert("resourceType".into(), json!(t));
        m.insert("id".into(), json!(id));
        let meta = m.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), json!(number.to_string()));
            meta.insert("lastUpdated".into(), json!(instant::format(updated)));
        }
    }
}
