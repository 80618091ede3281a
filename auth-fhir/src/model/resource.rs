//! What makes a type a resource the runtime can read and write ([`ResourceType`],
//! [`Resource`]), the `resourceType` element of a typed resource ([`TypeTag`]),
//! and the resource of any type, as JSON ([`JsonResource`]).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::codec::{FromJson, JsonError, Object, Out, ToJson, object};

/// The name of a resource type, known at compile time.
///
/// Separate from [`Resource`] so a resource's `resourceType` element can name its
/// own type without a cycle in the trait bounds.
pub trait ResourceType {
    /// `resourceType` as FHIR spells it (`"Patient"`); `"Resource"` for a resource of
    /// any type ([`JsonResource`]).
    const TYPE: &'static str;
    /// The type of the resources it is about: itself, or for a [`Bundle`](super::Bundle) its entries'.
    const CONTENT: &'static str = Self::TYPE;
}

/// A FHIR resource this crate can read and write.
///
/// Every typed resource of this crate implements it; so can a type of your own
/// (see the crate documentation).
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

impl<R: ResourceType> TypeTag<R> {
    /// Checks the `resourceType` found. The message names the type found only when
    /// it looks like a type name: anything else is the server's data, not ours to quote.
    fn check(found: Option<&str>) -> Result<Self, String> {
        match found {
            Some(found) if found == R::TYPE => Ok(Self::default()),
            Some(found)
                if !found.is_empty()
                    && found.len() <= 64
                    && found.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Err(format!("expected resourceType `{}`, found `{found}`", R::TYPE))
            }
            Some(_) => Err(format!("expected resourceType `{}`, found something else", R::TYPE)),
            None => Err(format!("expected resourceType `{}`, found none", R::TYPE)),
        }
    }

    /// Reads and checks `resourceType` out of a resource's elements.
    pub(crate) fn take(map: &mut Object) -> Result<Self, JsonError> {
        let found = map.remove("resourceType");
        Self::check(found.as_ref().map(|v| v.as_str().unwrap_or_default())).map_err(JsonError::bare)
    }
}

impl<R: ResourceType> ToJson for TypeTag<R> {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Str(R::TYPE))
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
        Self::check(Some(&found)).map_err(D::Error::custom)
    }
}

/// A resource of any type, as JSON; for every type this model does not write out.
///
/// Numbers keep their text (`1.50` stays `1.50`): serde_json's `arbitrary_precision`
/// is on.
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

impl FromJson for JsonResource {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        object(value).map(Self)
    }
}

impl ToJson for JsonResource {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Map(&self.0))
    }
}
