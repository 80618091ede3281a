//! `Bundle<R>`: search results, history, transactions and batches, generic over the
//! type of the entries the caller expects. Hand-written, as the runtime pages and
//! filters through it; its plain parts (links, an entry's search, request and
//! response) are generated with the rest of the model.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::codec::{FromJson, JsonError, Object, ObjectOut, object, take};
use super::{
    BundleEntryRequest, BundleEntryResponse, BundleEntrySearch, BundleLink, Extension, Identifier,
    JsonResource, Meta, Resource, ResourceType, Signature, TypeTag,
};

/// The former name of [`BundleEntrySearch`].
pub type BundleSearch = BundleEntrySearch;

/// The resource of a bundle entry: of the bundle's type, or another one (an
/// `OperationOutcome` with search mode `outcome`, an `_include`d resource).
#[derive(Debug, Clone, PartialEq)]
pub enum EntryResource<R> {
    /// Of the expected type.
    Typed(R),
    /// Of another type, kept as JSON.
    Other(Value),
}

impl<R: Serialize> Serialize for EntryResource<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Typed(r) => r.serialize(s),
            Self::Other(v) => v.serialize(s),
        }
    }
}

impl<'de, R: Resource> Deserialize<'de> for EntryResource<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(value).map_err(|e| serde::de::Error::custom(e.within("resource")))
    }
}

impl<R: Resource> FromJson for EntryResource<R> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let kind = value.get("resourceType").and_then(Value::as_str);
        if R::TYPE != JsonResource::TYPE && kind != Some(R::TYPE) {
            return Ok(Self::Other(value));
        }
        R::deserialize(value).map(Self::Typed).map_err(|e| {
            // This crate's types say where, never what; a type of the caller's own
            // (serde's derived messages quote values) gets a message of ours.
            let text = e.to_string();
            if text.strip_prefix(R::TYPE).is_some_and(|rest| rest.starts_with(['.', ':'])) {
                JsonError::new(text)
            } else {
                JsonError::new(format!("does not read as a `{}`", R::TYPE))
            }
        })
    }
}

/// One entry of a [`Bundle`]: a resource, how a search found it, or in a
/// transaction, batch or history, the request and the server's response.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleEntry<R> {
    /// Unique id for inter-element referencing.
    pub id: Option<String>,
    /// Extensions.
    pub extension: Vec<Extension>,
    /// Extensions that cannot be ignored.
    pub modifier_extension: Vec<Extension>,
    /// Links about this entry.
    pub link: Vec<BundleLink>,
    /// Absolute URL of the resource (`urn:uuid:…` in a transaction).
    pub full_url: Option<String>,
    /// The resource.
    pub resource: Option<EntryResource<R>>,
    /// Search information: `match`, `include` or `outcome`, and a score.
    pub search: Option<BundleEntrySearch>,
    /// In a transaction or batch, what to do with the entry (method, URL, conditions).
    pub request: Option<BundleEntryRequest>,
    /// In a transaction or batch response, or a history, what the server did.
    pub response: Option<BundleEntryResponse>,
    /// Elements this model does not name, kept as they came.
    pub extra: Map<String, Value>,
}

impl<R> Default for BundleEntry<R> {
    fn default() -> Self {
        Self {
            id: None,
            extension: Vec::new(),
            modifier_extension: Vec::new(),
            link: Vec::new(),
            full_url: None,
            resource: None,
            search: None,
            request: None,
            response: None,
            extra: Map::new(),
        }
    }
}

impl<R> BundleEntry<R> {
    /// An entry holding `resource`.
    pub fn new(resource: R) -> Self {
        Self { resource: Some(EntryResource::Typed(resource)), ..Self::default() }
    }

    /// The resource, if it is of the bundle's type.
    pub fn typed(&self) -> Option<&R> {
        match &self.resource {
            Some(EntryResource::Typed(r)) => Some(r),
            _ => None,
        }
    }

    /// Whether the entry is a search match (no mode given counts as a match).
    pub fn is_match(&self) -> bool {
        self.search_mode().is_none_or(|m| m == "match")
    }

    /// The search mode (`match`, `include`, `outcome`), if given.
    pub fn search_mode(&self) -> Option<&str> {
        self.search.as_ref().and_then(|s| s.mode.as_deref())
    }
}

impl<R: Resource> FromJson for BundleEntry<R> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut map = object(value)?;
        Ok(Self {
            id: take(&mut map, "id")?,
            extension: take(&mut map, "extension")?,
            modifier_extension: take(&mut map, "modifierExtension")?,
            link: take(&mut map, "link")?,
            full_url: take(&mut map, "fullUrl")?,
            resource: take(&mut map, "resource")?,
            search: take(&mut map, "search")?,
            request: take(&mut map, "request")?,
            response: take(&mut map, "response")?,
            extra: map,
        })
    }
}

impl<R: Serialize> Serialize for BundleEntry<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut head = ObjectOut::new();
        head.field("id", &self.id);
        head.field("extension", &self.extension);
        head.field("modifierExtension", &self.modifier_extension);
        head.field("link", &self.link);
        head.field("fullUrl", &self.full_url);
        let mut tail = ObjectOut::new();
        tail.field("search", &self.search);
        tail.field("request", &self.request);
        tail.field("response", &self.response);
        let resource = self.resource.as_ref().map(|r| ("resource", r));
        write_object(s, &head, resource, &tail, &self.extra)
    }
}

impl<'de, R: Resource> Deserialize<'de> for BundleEntry<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::codec::deserialize(d, "BundleEntry")
    }
}

/// A container of resources (`Bundle`): search results, history, transactions.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle<R> {
    /// Always `Bundle`.
    pub resource_type: TypeTag<BundleTag>,
    /// Logical id.
    pub id: Option<String>,
    /// Metadata.
    pub meta: Option<Meta>,
    /// A set of rules under which this content was created.
    pub implicit_rules: Option<String>,
    /// Language of the resource content.
    pub language: Option<String>,
    /// Persistent identifier for the bundle.
    pub identifier: Option<Identifier>,
    /// `searchset`, `history`, `transaction`, `transaction-response`, `batch`,
    /// `batch-response`, `document`, `message`, `collection`.
    pub type_: Option<String>,
    /// When the bundle was assembled.
    pub timestamp: Option<String>,
    /// Number of matches in the whole search (not just this page).
    pub total: Option<u32>,
    /// Links (`self`, `next`, `previous`).
    pub link: Vec<BundleLink>,
    /// Entries.
    pub entry: Vec<BundleEntry<R>>,
    /// Digital signature.
    pub signature: Option<Signature>,
    /// Elements this model does not name, kept as they came.
    pub extra: Map<String, Value>,
}

impl<R> Default for Bundle<R> {
    fn default() -> Self {
        Self {
            resource_type: TypeTag::default(),
            id: None,
            meta: None,
            implicit_rules: None,
            language: None,
            identifier: None,
            type_: None,
            timestamp: None,
            total: None,
            link: Vec::new(),
            entry: Vec::new(),
            signature: None,
            extra: Map::new(),
        }
    }
}

/// The type name of every [`Bundle`], whatever it contains.
#[derive(Debug, Clone, Copy)]
pub struct BundleTag;

impl ResourceType for BundleTag {
    const TYPE: &'static str = "Bundle";
}

impl<R> Bundle<R> {
    /// An empty bundle of type `type_` (`transaction`, `batch`, `collection`, …).
    pub fn new(type_: impl Into<String>) -> Self {
        Self { type_: Some(type_.into()), ..Self::default() }
    }

    /// The URL of a link by relation.
    pub fn link(&self, relation: &str) -> Option<&str> {
        self.link.iter().find(|l| l.relation.as_deref() == Some(relation)).and_then(|l| l.url.as_deref())
    }

    /// The `next` page's URL.
    pub fn next_link(&self) -> Option<&str> {
        self.link("next")
    }

    /// The search matches of the bundle's type.
    pub fn matches(&self) -> impl Iterator<Item = &R> {
        self.entry.iter().filter(|e| e.is_match()).filter_map(BundleEntry::typed)
    }

    /// The matches, taken out of the bundle.
    pub fn into_matches(self) -> impl Iterator<Item = R> {
        self.entry.into_iter().filter(|e| e.is_match()).filter_map(|e| match e.resource {
            Some(EntryResource::Typed(r)) => Some(r),
            _ => None,
        })
    }
}

impl<R: Resource> ResourceType for Bundle<R> {
    const TYPE: &'static str = "Bundle";
    const CONTENT: &'static str = R::TYPE;
}

impl<R: Resource> Resource for Bundle<R> {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn version_id(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.version_id.as_deref())
    }
}

impl<R: Resource> FromJson for Bundle<R> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut map = object(value)?;
        let resource_type = TypeTag::take(&mut map)?;
        Ok(Self {
            resource_type,
            id: take(&mut map, "id")?,
            meta: take(&mut map, "meta")?,
            implicit_rules: take(&mut map, "implicitRules")?,
            language: take(&mut map, "language")?,
            identifier: take(&mut map, "identifier")?,
            type_: take(&mut map, "type")?,
            timestamp: take(&mut map, "timestamp")?,
            total: take(&mut map, "total")?,
            link: take(&mut map, "link")?,
            entry: take(&mut map, "entry")?,
            signature: take(&mut map, "signature")?,
            extra: map,
        })
    }
}

impl<R: Serialize> Serialize for Bundle<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut head = ObjectOut::new();
        head.field("resourceType", &self.resource_type);
        head.field("id", &self.id);
        head.field("meta", &self.meta);
        head.field("implicitRules", &self.implicit_rules);
        head.field("language", &self.language);
        head.field("identifier", &self.identifier);
        head.field("type", &self.type_);
        head.field("timestamp", &self.timestamp);
        head.field("total", &self.total);
        head.field("link", &self.link);
        let mut tail = ObjectOut::new();
        tail.field("signature", &self.signature);
        let entry = (!self.entry.is_empty()).then_some(("entry", &self.entry));
        write_object(s, &head, entry, &tail, &self.extra)
    }
}

impl<'de, R: Resource> Deserialize<'de> for Bundle<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::codec::deserialize(d, "Bundle")
    }
}

/// Writes an object whose one generic element sits between plain ones, then the
/// `extra` elements no written key shadows.
fn write_object<S: Serializer, T: Serialize + ?Sized>(
    s: S,
    head: &ObjectOut<'_>,
    middle: Option<(&str, &T)>,
    tail: &ObjectOut<'_>,
    extra: &Object,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(None)?;
    let mut written: Vec<&str> = Vec::new();
    for (key, value) in head.entries() {
        map.serialize_entry(key, value)?;
        written.push(key);
    }
    if let Some((key, value)) = middle {
        map.serialize_entry(key, value)?;
        written.push(key);
    }
    for (key, value) in tail.entries() {
        map.serialize_entry(key, value)?;
        written.push(key);
    }
    for (key, value) in extra {
        if !written.contains(&key.as_str()) {
            map.serialize_entry(key, value)?;
        }
    }
    map.end()
}
