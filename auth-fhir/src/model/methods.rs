//! Hand-written methods of generated types: building a Patient, reading and setting
//! an extension's value.

use serde_json::Value;

use super::{Extension, HumanName, Identifier, Patient};

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

/// Whether `key` names a value of an extension (`valueString`, `valueCodeableConcept`).
fn is_value_key(key: &str) -> bool {
    key.strip_prefix("value").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
}

impl Extension {
    /// An extension with no value yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), ..Self::default() }
    }

    /// The value: its key (`valueString`, `valueCodeableConcept`, …) and its JSON.
    ///
    /// An extension's `value[x]` has some fifty types; it is kept as the JSON it came
    /// as, which is lossless and cheap. Read it into a type of this crate when its
    /// type is known: `serde_json::from_value::<CodeableConcept>(value.clone())`.
    pub fn value(&self) -> Option<(&str, &Value)> {
        self.extra.iter().find(|(k, _)| is_value_key(k)).map(|(k, v)| (k.as_str(), v))
    }

    /// Sets the value under `key` (`valueString`, …), replacing any value it had.
    pub fn with_value(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.retain(|k, _| !is_value_key(k));
        self.extra.insert(key.into(), value.into());
        self
    }
}
