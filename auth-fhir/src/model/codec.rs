//! How the model reads and writes FHIR JSON: known keys to typed fields, every
//! variant key of a choice (`valueQuantity`, `valueString`, …) to its enum, and
//! everything else to the struct's `extra`, so nothing the server sent is lost.
//!
//! Why not serde derives:
//! * `#[serde(flatten)]` on an `Option<enum>` for a choice element loses the value
//!   (the key ends up in neither the field nor the catch-all map);
//! * derived `Deserialize`/`Serialize` code is generic over the (de)serializer, so
//!   every crate that reads a resource compiles the whole model's visitors again.
//!   Here the per-type code is plain functions from and to `serde_json::Value`,
//!   compiled once, in this crate; the serde impls of every type are three-line
//!   shims around the one generic step (`Value` in, [`Out`] out).
//!
//! Error messages name the element (`Observation.valueQuantity.value: expected a
//! number, found a string`), never the value: it may be patient data.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

pub(crate) type Object = Map<String, Value>;

static NULL: Value = Value::Null;

/// Why JSON does not read as a model type, and where.
#[derive(Debug)]
pub(crate) struct JsonError {
    /// `.valueQuantity.value`, `.name[0]`: filled in on the way back up.
    path: String,
    message: Cow<'static, str>,
    /// The message stands alone (the resourceType check, which the client quotes).
    bare: bool,
}

impl JsonError {
    pub(crate) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self { path: String::new(), message: message.into(), bare: false }
    }

    /// A mismatch: what was expected, and the JSON kind found (not its content).
    pub(crate) fn expected(what: &str, found: &Value) -> Self {
        Self::new(format!("expected {what}, found {}", kind(found)))
    }

    pub(crate) fn bare(message: String) -> Self {
        Self { path: String::new(), message: message.into(), bare: true }
    }

    pub(crate) fn at_key(mut self, key: &str) -> Self {
        self.path.insert_str(0, key);
        self.path.insert(0, '.');
        self
    }

    pub(crate) fn at_index(mut self, index: usize) -> Self {
        self.path.insert_str(0, &format!("[{index}]"));
        self
    }

    /// The message for a value of type `root`.
    pub(crate) fn within(&self, root: &str) -> String {
        if self.bare { self.message.to_string() } else { format!("{root}{}: {}", self.path, self.message) }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.within("value"))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A model type read from JSON.
pub(crate) trait FromJson: Sized {
    fn from_json(value: Value) -> Result<Self, JsonError>;

    /// The value of an absent element: `None`, an empty list; required ones have none.
    fn absent() -> Option<Self> {
        None
    }

    /// Whether it is a list (a repeating element).
    const REPEATS: bool = false;
}

/// A model type as JSON to write.
pub(crate) trait ToJson {
    /// `None`: nothing to write (an absent element, an empty list).
    fn to_json(&self) -> Option<Out<'_>>;
}

/// A choice element (`value[x]`): one of several keys, each with its own type.
pub(crate) trait Choice: Sized {
    /// Takes the first variant key present out of `map`; any other stays there.
    fn take(map: &mut Object) -> Result<Option<Self>, JsonError>;
    /// The key and value to write.
    fn to_json(&self) -> (&'static str, Option<Out<'_>>);
}

/// JSON on its way out, borrowing from the model: written by one generic
/// `Serialize`, in the model's element order (`resourceType` first).
#[derive(Debug)]
pub(crate) enum Out<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    /// A decimal, as written (serde_json's `arbitrary_precision`).
    Num(&'a Number),
    Json(&'a Value),
    Map(&'a Object),
    Object(Vec<(&'a str, Out<'a>)>),
    Array(Vec<Out<'a>>),
}

impl Serialize for Out<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Str(v) => s.serialize_str(v),
            Out::Bool(v) => s.serialize_bool(*v),
            Out::Int(v) => s.serialize_i64(*v),
            Out::Num(v) => v.serialize(s),
            Out::Json(v) => v.serialize(s),
            Out::Map(v) => v.serialize(s),
            Out::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Out::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// The elements of one object, in order.
pub(crate) struct ObjectOut<'a>(Vec<(&'a str, Out<'a>)>);

impl<'a> ObjectOut<'a> {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn field<T: ToJson>(&mut self, key: &'a str, value: &'a T) {
        if let Some(out) = value.to_json() {
            self.0.push((key, out));
        }
    }

    pub(crate) fn choice<C: Choice>(&mut self, value: &'a Option<C>) {
        if let Some((key, Some(out))) = value.as_ref().map(Choice::to_json) {
            self.0.push((key, out));
        }
    }

    /// Appends `extra`. A key written already is skipped: a typed field set by the
    /// caller wins over a stale copy in `extra`, and the object never repeats a key.
    pub(crate) fn extra(&mut self, extra: &'a Object) {
        let typed = self.0.len();
        for (key, value) in extra {
            if !self.0[..typed].iter().any(|(k, _)| *k == key) {
                self.0.push((key, Out::Json(value)));
            }
        }
    }

    pub(crate) fn entries(&self) -> &[(&'a str, Out<'a>)] {
        &self.0
    }

    pub(crate) fn done(self) -> Out<'a> {
        Out::Object(self.0)
    }
}

/// The object a struct is read from.
pub(crate) fn object(value: Value) -> Result<Object, JsonError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(JsonError::expected("an object", &other)),
    }
}

/// What a field cannot hold but `extra` can, kept there as it came instead of being
/// read: a list with `null`s in it (FHIR's list of primitives whose `_name` list
/// carries the extensions of the missing ones), `[]`, and `null` for an element that
/// does not repeat. (`null` for one that does is refused, as a list is expected.)
fn keep_as_is(value: &Value, repeats: bool) -> bool {
    match value {
        Value::Null => !repeats,
        Value::Array(items) => items.is_empty() || items.iter().any(Value::is_null),
        _ => false,
    }
}

/// Reads the element `key` out of `map` into a field.
pub(crate) fn take<T: FromJson>(map: &mut Object, key: &str) -> Result<T, JsonError> {
    match map.remove(key) {
        Some(value) if keep_as_is(&value, T::REPEATS) => {
            map.insert(key.to_owned(), value);
            T::absent().ok_or_else(|| JsonError::new("is required").at_key(key))
        }
        Some(value) => T::from_json(value).map_err(|e| e.at_key(key)),
        None => T::absent().ok_or_else(|| JsonError::new("is required").at_key(key)),
    }
}

/// The value of one variant key of a choice, if present.
pub(crate) fn take_variant(map: &mut Object, key: &str) -> Option<Value> {
    let value = map.remove(key)?;
    if keep_as_is(&value, false) {
        map.insert(key.to_owned(), value);
        return None;
    }
    Some(value)
}

pub(crate) fn take_choice<C: Choice>(map: &mut Object) -> Result<Option<C>, JsonError> {
    C::take(map)
}

/// `Deserialize` of every model type: the one generic step is reading a `Value`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: FromJson>(d: D, name: &str) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    T::from_json(value).map_err(|e| serde::de::Error::custom(e.within(name)))
}

/// `Serialize` of every model type.
pub(crate) fn serialize<S: Serializer, T: ToJson>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    match value.to_json() {
        Some(out) => out.serialize(s),
        None => s.serialize_unit(),
    }
}

// ---------------------------------------------------------------- primitives and wrappers

impl FromJson for String {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(JsonError::expected("a string", &other)),
        }
    }
}

impl ToJson for String {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Str(self))
    }
}

impl FromJson for bool {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(JsonError::expected("a boolean", &other)),
        }
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Bool(*self))
    }
}

fn integer(value: Value, what: &str) -> Result<i64, JsonError> {
    match &value {
        Value::Number(n) => n.as_i64().ok_or_else(|| JsonError::new(format!("expected {what}"))),
        other => Err(JsonError::expected(what, other)),
    }
}

impl FromJson for i32 {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let n = integer(value, "an integer")?;
        i32::try_from(n).map_err(|_| JsonError::new("expected an integer of 32 bits"))
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Int(i64::from(*self)))
    }
}

impl FromJson for u32 {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let n = integer(value, "an unsigned integer")?;
        u32::try_from(n).map_err(|_| JsonError::new("expected an unsigned integer of 32 bits"))
    }
}

impl ToJson for u32 {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Int(i64::from(*self)))
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        T::from_json(value).map(Some)
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Option<Out<'_>> {
        self.as_ref().and_then(ToJson::to_json)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item).map_err(|e| e.at_index(i)))
                .collect(),
            other => Err(JsonError::expected("an array", &other)),
        }
    }
    fn absent() -> Option<Self> {
        Some(Vec::new())
    }

    const REPEATS: bool = true;
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Option<Out<'_>> {
        if self.is_empty() {
            return None;
        }
        // An item with nothing to write is `null`, so the others keep their index.
        Some(Out::Array(self.iter().map(|item| item.to_json().unwrap_or(Out::Json(&NULL))).collect()))
    }
}

impl<T: FromJson> FromJson for Box<T> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        T::from_json(value).map(Box::new)
    }
}

impl<T: ToJson> ToJson for Box<T> {
    fn to_json(&self) -> Option<Out<'_>> {
        (**self).to_json()
    }
}

// ---------------------------------------------------------------- the macros the generated code calls

/// `Serialize` and `Deserialize` for a model type, through the codec.
macro_rules! serde_via_codec {
    ($name:ident) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::model::codec::serialize(self, s)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                $crate::model::codec::deserialize(d, stringify!($name))
            }
        }
    };
}

/// Reading and writing of a struct (a data type, a backbone element): each field
/// with its JSON key, or `choice` for a choice element; the rest is `extra`.
macro_rules! fhir_struct {
    ($name:ident { $($field:ident : $key:tt),* $(,)? }) => {
        impl $crate::model::codec::FromJson for $name {
            fn from_json(
                value: ::serde_json::Value,
            ) -> ::std::result::Result<Self, $crate::model::codec::JsonError> {
                let mut map = $crate::model::codec::object(value)?;
                // Fields are read in order, so `extra` is what the others left.
                Ok(Self { $($field: fhir_struct!(@take map $key),)* extra: map })
            }
        }

        impl $crate::model::codec::ToJson for $name {
            fn to_json(&self) -> ::std::option::Option<$crate::model::codec::Out<'_>> {
                let mut out = $crate::model::codec::ObjectOut::new();
                $(fhir_struct!(@put out self.$field, $key);)*
                out.extra(&self.extra);
                Some(out.done())
            }
        }

        serde_via_codec!($name);
    };
    (@take $map:ident choice) => {
        $crate::model::codec::take_choice(&mut $map)?
    };
    (@take $map:ident $key:literal) => {
        $crate::model::codec::take(&mut $map, $key)?
    };
    (@put $out:ident $value:expr, choice) => {
        $out.choice(&$value)
    };
    (@put $out:ident $value:expr, $key:literal) => {
        $out.field($key, &$value)
    };
}

/// A resource: a struct whose first element is `resourceType`, plus its
/// [`ResourceType`](crate::model::ResourceType) and [`Resource`](crate::model::Resource).
macro_rules! fhir_resource {
    ($name:ident { resource_type: "resourceType", $($field:ident : $key:tt),* $(,)? }) => {
        impl $crate::model::codec::FromJson for $name {
            fn from_json(
                value: ::serde_json::Value,
            ) -> ::std::result::Result<Self, $crate::model::codec::JsonError> {
                let mut map = $crate::model::codec::object(value)?;
                let resource_type = $crate::model::TypeTag::take(&mut map)?;
                Ok(Self { resource_type, $($field: fhir_struct!(@take map $key),)* extra: map })
            }
        }

        impl $crate::model::codec::ToJson for $name {
            fn to_json(&self) -> ::std::option::Option<$crate::model::codec::Out<'_>> {
                let mut out = $crate::model::codec::ObjectOut::new();
                out.field("resourceType", &self.resource_type);
                $(fhir_struct!(@put out self.$field, $key);)*
                out.extra(&self.extra);
                Some(out.done())
            }
        }

        serde_via_codec!($name);

        impl $crate::model::ResourceType for $name {
            const TYPE: &'static str = stringify!($name);
        }

        impl $crate::model::Resource for $name {
            fn id(&self) -> ::std::option::Option<&str> {
                self.id.as_deref()
            }
            fn version_id(&self) -> ::std::option::Option<&str> {
                self.meta.as_ref().and_then(|m| m.version_id.as_deref())
            }
        }
    };
}

/// A choice type: the enum, and which key each variant reads from and writes to.
macro_rules! fhir_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident($ty:ty) = $key:literal),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($(#[$vmeta])* $variant($ty),)*
        }

        impl $crate::model::codec::Choice for $name {
            fn take(
                map: &mut $crate::model::codec::Object,
            ) -> ::std::result::Result<::std::option::Option<Self>, $crate::model::codec::JsonError> {
                $(
                    if let Some(value) = $crate::model::codec::take_variant(map, $key) {
                        return <$ty as $crate::model::codec::FromJson>::from_json(value)
                            .map(|v| Some(Self::$variant(v)))
                            .map_err(|e| e.at_key($key));
                    }
                )*
                Ok(None)
            }

            fn to_json(
                &self,
            ) -> (&'static str, ::std::option::Option<$crate::model::codec::Out<'_>>) {
                match self {
                    $(Self::$variant(v) => ($key, $crate::model::codec::ToJson::to_json(v)),)*
                }
            }
        }
    };
}
