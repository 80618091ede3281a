//! A light, hand-written FHIR R4 model: the resources a client needs to talk about
//! patients, bundles and errors, and nothing that costs minutes of build time.
//!
//! Every type keeps the elements it does not model in `extra`, so a
//! read-modify-update never drops data the server sent (extensions, `_birthDate`,
//! elements of newer FHIR versions). Any other resource type is a [`JsonResource`].

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The name of a resource type, known at compile time.
///
/// Separate from [`Resource`] so a resource's `resourceType` element can name its
/// own type without a cycle in the trait bounds.
pub trait ResourceType {
    /// `resourceType` as FHIR spells it (`"Patient"`); `"Resource"` for a resource of
    /// any type ([`JsonResource`]).
    const TYPE: &'static str;
    /// The type of the resources it is about: itself, or for a [`Bundle`] its entries'.
    const CONTENT: &'static str = Self::TYPE;
}

/// A FHIR resource this crate can read and write.
pub trait Resource: ResourceType + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The resource's type (for [`JsonResource`], the one in its JSON).
    fn resource_type(&self) -> &str {
        Self::TYPE
    }

    /// The logical id, if it has one.
    fn id(&self) -> Option<&str>;

    /// `meta.versionId`, if present.
    fn version_id(&self) -> Option<&str>;
}

/// The `resourceType` element of a typed resource: always `R::TYPE` on the way out,
/// and anything else is refused on the way in.
pub struct TypeTag<R>(PhantomData<fn() -> R>);

impl<R> Default for TypeTag<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<R> Clone for TypeTag<R> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<R> PartialEq for TypeTag<R> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<R: ResourceType> fmt::Debug for TypeTag<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(R::TYPE)
    }
}

impl<R: ResourceType> Serialize for TypeTag<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(R::TYPE)
    }
}

impl<'de, R: ResourceType> Deserialize<'de> for TypeTag<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let found = String::deserialize(d)?;
        if found == R::TYPE {
            Ok(Self::default())
        } else if !found.is_empty() && found.len() <= 64 && found.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Err(D::Error::custom(format!("expected resourceType `{}`, found `{found}`", R::TYPE)))
        } else {
            // Not a type name: whatever it is, it is the server's data, not ours to quote.
            Err(D::Error::custom(format!("expected resourceType `{}`, found something else", R::TYPE)))
        }
    }
}

fn is_empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

macro_rules! element {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Elements this model does not name, kept as they came.
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }
    };
}

element!(
    /// Metadata about a resource (`Meta`).
    Meta {
        /// Version of the resource, set by the server.
        #[serde(skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
        /// When the resource last changed.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_updated: Option<String>,
        /// Profiles the resource claims to conform to.
        #[serde(default, skip_serializing_if = "is_empty")]
        profile: Vec<String>,
        /// Security labels.
        #[serde(default, skip_serializing_if = "is_empty")]
        security: Vec<Coding>,
        /// Tags.
        #[serde(default, skip_serializing_if = "is_empty")]
        tag: Vec<Coding>,
    }
);

element!(
    /// A code from a code system (`Coding`).
    Coding {
        /// The code system.
        #[serde(skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        /// The code.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Human-readable text for the code.
        #[serde(skip_serializing_if = "Option::is_none")]
        display: Option<String>,
    }
);

element!(
    /// Codes plus text (`CodeableConcept`).
    CodeableConcept {
        /// The codes.
        #[serde(default, skip_serializing_if = "is_empty")]
        coding: Vec<Coding>,
        /// Plain text.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    }
);

element!(
    /// An identifier such as a medical record number (`Identifier`).
    Identifier {
        /// `usual`, `official`, `temp`, `secondary`, `old`.
        #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
        use_: Option<String>,
        /// What kind of identifier it is.
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        type_: Option<CodeableConcept>,
        /// The namespace of the value.
        #[serde(skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        /// The value.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    }
);

element!(
    /// A person's name (`HumanName`).
    HumanName {
        /// `usual`, `official`, `nickname`, …
        #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
        use_: Option<String>,
        /// The full name as text.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Family name.
        #[serde(skip_serializing_if = "Option::is_none")]
        family: Option<String>,
        /// Given names.
        #[serde(default, skip_serializing_if = "is_empty")]
        given: Vec<String>,
        /// Prefixes (`Dr`).
        #[serde(default, skip_serializing_if = "is_empty")]
        prefix: Vec<String>,
        /// Suffixes.
        #[serde(default, skip_serializing_if = "is_empty")]
        suffix: Vec<String>,
    }
);

element!(
    /// A phone number, email address, … (`ContactPoint`).
    ContactPoint {
        /// `phone`, `email`, …
        #[serde(skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        /// The number or address.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// `home`, `work`, `mobile`, …
        #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
        use_: Option<String>,
        /// Preference order (1 = highest).
        #[serde(skip_serializing_if = "Option::is_none")]
        rank: Option<u32>,
    }
);

element!(
    /// A postal address (`Address`).
    Address {
        /// `home`, `work`, …
        #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
        use_: Option<String>,
        /// The address as text.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Street lines.
        #[serde(default, skip_serializing_if = "is_empty")]
        line: Vec<String>,
        /// City.
        #[serde(skip_serializing_if = "Option::is_none")]
        city: Option<String>,
        /// State or region.
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        /// Postal code.
        #[serde(skip_serializing_if = "Option::is_none")]
        postal_code: Option<String>,
        /// Country.
        #[serde(skip_serializing_if = "Option::is_none")]
        country: Option<String>,
    }
);

element!(
    /// A reference to another resource (`Reference`).
    Reference {
        /// Relative or absolute URL (`Organization/1`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The type referred to.
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        type_: Option<String>,
        /// Text alternative.
        #[serde(skip_serializing_if = "Option::is_none")]
        display: Option<String>,
    }
);

element!(
    /// An extension; its `value[x]` stays in `extra` (`valueString`, `valueCoding`, …).
    Extension {
        /// What the extension means.
        url: String,
        /// Nested extensions.
        #[serde(default, skip_serializing_if = "is_empty")]
        extension: Vec<Extension>,
    }
);

element!(
    /// A patient (`Patient`).
    Patient {
        /// Always `Patient`.
        resource_type: TypeTag<Patient>,
        /// Logical id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Metadata.
        #[serde(skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
        /// Extensions.
        #[serde(default, skip_serializing_if = "is_empty")]
        extension: Vec<Extension>,
        /// Identifiers (MRN, national id, …).
        #[serde(default, skip_serializing_if = "is_empty")]
        identifier: Vec<Identifier>,
        /// Whether the record is in active use.
        #[serde(skip_serializing_if = "Option::is_none")]
        active: Option<bool>,
        /// Names.
        #[serde(default, skip_serializing_if = "is_empty")]
        name: Vec<HumanName>,
        /// Phone numbers, email addresses.
        #[serde(default, skip_serializing_if = "is_empty")]
        telecom: Vec<ContactPoint>,
        /// `male`, `female`, `other`, `unknown`.
        #[serde(skip_serializing_if = "Option::is_none")]
        gender: Option<String>,
        /// Date of birth (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
        #[serde(skip_serializing_if = "Option::is_none")]
        birth_date: Option<String>,
        /// Addresses.
        #[serde(default, skip_serializing_if = "is_empty")]
        address: Vec<Address>,
        /// Marital status.
        #[serde(skip_serializing_if = "Option::is_none")]
        marital_status: Option<CodeableConcept>,
        /// Nominated primary care providers.
        #[serde(default, skip_serializing_if = "is_empty")]
        general_practitioner: Vec<Reference>,
        /// The organisation that keeps the record.
        #[serde(skip_serializing_if = "Option::is_none")]
        managing_organization: Option<Reference>,
    }
);

impl ResourceType for Patient {
    const TYPE: &'static str = "Patient";
}

impl Resource for Patient {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn version_id(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.version_id.as_deref())
    }
}

impl Patient {
    /// An empty patient.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a name.
    pub fn with_name(
        mut self,
        family: impl Into<String>,
        given: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.name.push(HumanName {
            family: Some(family.into()),
            given: given.into_iter().map(Into::into).collect(),
            ..HumanName::default()
        });
        self
    }

    /// Adds an identifier.
    pub fn with_identifier(mut self, system: impl Into<String>, value: impl Into<String>) -> Self {
        self.identifier.push(Identifier {
            system: Some(system.into()),
            value: Some(value.into()),
            ..Identifier::default()
        });
        self
    }
}

element!(
    /// One problem in an [`OperationOutcome`].
    OperationOutcomeIssue {
        /// `fatal`, `error`, `warning`, `information`.
        #[serde(default)]
        severity: String,
        /// The issue type (`not-found`, `invalid`, `conflict`, …).
        #[serde(default)]
        code: String,
        /// Coded details.
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<CodeableConcept>,
        /// Diagnostic text.
        #[serde(skip_serializing_if = "Option::is_none")]
        diagnostics: Option<String>,
        /// FHIRPath expressions of the elements concerned.
        #[serde(default, skip_serializing_if = "is_empty")]
        expression: Vec<String>,
    }
);

element!(
    /// What went wrong, as a FHIR server reports it (`OperationOutcome`).
    OperationOutcome {
        /// Always `OperationOutcome`.
        resource_type: TypeTag<OperationOutcome>,
        /// Logical id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The problems.
        #[serde(default)]
        issue: Vec<OperationOutcomeIssue>,
    }
);

impl ResourceType for OperationOutcome {
    const TYPE: &'static str = "OperationOutcome";
}

impl Resource for OperationOutcome {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn version_id(&self) -> Option<&str> {
        None
    }
}

element!(
    /// A link of a [`Bundle`] (`self`, `next`, `previous`).
    BundleLink {
        /// The relation.
        relation: String,
        /// The URL.
        url: String,
    }
);

element!(
    /// How an entry came to be in a search result.
    BundleSearch {
        /// `match`, `include` or `outcome`.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        /// Relevance score.
        #[serde(skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
    }
);

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
        let kind = value.get("resourceType").and_then(Value::as_str);
        if R::TYPE == JsonResource::TYPE || kind == Some(R::TYPE) {
            R::deserialize(value).map(Self::Typed).map_err(D::Error::custom)
        } else {
            Ok(Self::Other(value))
        }
    }
}

/// One entry of a [`Bundle`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "R: Resource", serialize = "R: Serialize"))]
#[non_exhaustive]
pub struct BundleEntry<R> {
    /// Absolute URL of the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    /// The resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<EntryResource<R>>,
    /// Search information.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<BundleSearch>,
    /// Elements this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<R> BundleEntry<R> {
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

/// A container of resources (`Bundle`): search results, history, transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "R: Resource", serialize = "R: Serialize"))]
#[non_exhaustive]
pub struct Bundle<R> {
    /// Always `Bundle`.
    pub resource_type: TypeTag<BundleTag>,
    /// Logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `searchset`, `history`, `transaction`, …
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Number of matches in the whole search (not just this page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Links (`self`, `next`, `previous`).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub link: Vec<BundleLink>,
    /// Entries.
    #[serde(default = "Vec::new", skip_serializing_if = "is_empty")]
    pub entry: Vec<BundleEntry<R>>,
    /// Elements this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The type name of every [`Bundle`], whatever it contains.
#[derive(Debug, Clone, Copy)]
pub struct BundleTag;

impl ResourceType for BundleTag {
    const TYPE: &'static str = "Bundle";
}

impl<R> Bundle<R> {
    /// The URL of a link by relation.
    pub fn link(&self, relation: &str) -> Option<&str> {
        self.link.iter().find(|l| l.relation == relation).map(|l| l.url.as_str())
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
        None
    }
}

/// A resource of any type, as JSON; for every type this model does not write out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonResource(pub Map<String, Value>);

impl JsonResource {
    /// A resource of type `resource_type` with no other elements.
    pub fn new(resource_type: &str) -> Self {
        let mut m = Map::new();
        m.insert("resourceType".into(), Value::String(resource_type.to_owned()));
        Self(m)
    }
}

impl ResourceType for JsonResource {
    const TYPE: &'static str = "Resource";
}

impl Resource for JsonResource {
    fn resource_type(&self) -> &str {
        self.0.get("resourceType").and_then(Value::as_str).unwrap_or(Self::TYPE)
    }
    fn id(&self) -> Option<&str> {
        self.0.get("id").and_then(Value::as_str)
    }
    fn version_id(&self) -> Option<&str> {
        self.0.get("meta").and_then(|m| m.get("versionId")).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_elements_survive_a_round_trip() {
        let input = json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "3", "source": "#x"},
            "name": [{"family": "Chalmers", "given": ["Peter"], "_family": {"extension": []}}],
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "multipleBirthInteger": 2,
            "extension": [{"url": "http://example.org/x", "valueString": "y"}],
            "contact": [{"name": {"family": "Du Marché"}}]
        });
        let p: Patient = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(p.id(), Some("p1"));
        assert_eq!(p.version_id(), Some("3"));
        assert_eq!(p.birth_date.as_deref(), Some("1974-12-25"));
        assert_eq!(serde_json::to_value(&p).unwrap(), input);
    }

    #[test]
    fn the_wrong_resource_type_is_refused() {
        let e = serde_json::from_value::<Patient>(json!({"resourceType": "Observation"})).unwrap_err();
        assert!(e.to_string().contains("expected resourceType `Patient`, found `Observation`"), "{e}");
        assert!(serde_json::from_value::<Patient>(json!({"id": "x"})).is_err(), "resourceType is required");
    }

    #[test]
    fn bundles_keep_other_entries_apart() {
        let b: Bundle<Patient> = serde_json::from_value(json!({
            "resourceType": "Bundle", "type": "searchset", "total": 2,
            "link": [{"relation": "next", "url": "http://x/Patient?_page=2"}],
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "1"}, "search": {"mode": "match"}},
                {"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}},
                {"resource": {"resourceType": "Patient", "id": "2"}}
            ]
        }))
        .unwrap();
        assert_eq!(b.matches().filter_map(|p| p.id()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(b.next_link(), Some("http://x/Patient?_page=2"));
        assert!(matches!(b.entry[1].resource, Some(EntryResource::Other(_))));
    }

    #[test]
    fn json_resources_take_any_type() {
        let r: JsonResource =
            serde_json::from_value(json!({"resourceType": "Observation", "id": "o1"})).unwrap();
        assert_eq!((r.resource_type(), r.id()), ("Observation", Some("o1")));
    }
}
