//! FHIR's `decimal`: a number kept exactly as written.
//!
//! FHIR requires a decimal's precision to survive (`1.50` is not `1.5`: the
//! trailing zero says how precisely it was measured), and values beyond what an
//! `f64` holds exactly. So a [`Decimal`] is the number's text, checked against
//! FHIR's (and JSON's) number syntax, and written back as it came. That relies on
//! serde_json's `arbitrary_precision`, which this crate turns on.
//!
//! The one thing serde_json rewrites is an exponent's spelling: `1E-22` reads as
//! `1e-22` and `1e3` as `1e+3`. Digits, trailing zeros and the exponent's value are
//! kept, so the number and its precision are the same.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

use super::codec::{FromJson, JsonError, Out, ToJson};

/// A FHIR `decimal`, exactly as written: `1.50` stays `1.50` (an exponent is
/// spelt `e+`/`e-`: `1E3` becomes `1e+3`, the same number and digits).
///
/// Two decimals are equal when their text is: `1.50 != 1.5`. Compare
/// [`Decimal::to_f64`] for numeric equality.
///
/// ```
/// use auth_fhir::Decimal;
///
/// let d: Decimal = "1.50".parse()?;
/// assert_eq!(d.as_str(), "1.50");
/// assert_eq!(d.to_f64(), 1.5);
/// assert_eq!(serde_json::to_string(&d)?, "1.50");
/// assert!("1.5.0".parse::<Decimal>().is_err());
/// assert_eq!(Decimal::from(3_u32).as_str(), "3");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal(Number);

impl Decimal {
    /// The number as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The nearest `f64` (precision beyond it is lost; `as_str` keeps it).
    pub fn to_f64(&self) -> f64 {
        // The text is valid number syntax, which always reads as a (maybe infinite) f64.
        self.as_str().parse().unwrap_or(f64::NAN)
    }

    /// The JSON number.
    pub fn as_number(&self) -> &Number {
        &self.0
    }
}

/// The text is not a FHIR decimal (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecimalError(());

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a FHIR decimal (digits, an optional fraction and exponent, as in JSON)")
    }
}

impl std::error::Error for DecimalError {}

/// Whether `s` is a JSON number, which is what a FHIR decimal is.
fn is_number(s: &str) -> bool {
    fn digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    let mut b = s.as_bytes();
    if let [b'-', rest @ ..] = b {
        b = rest;
    }
    let int = digits(b);
    if int == 0 || (int > 1 && b[0] == b'0') {
        return false;
    }
    b = &b[int..];
    if let [b'.', rest @ ..] = b {
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        b = &rest[n..];
    }
    if let [b'e' | b'E', rest @ ..] = b {
        let rest = match rest {
            [b'+' | b'-', r @ ..] => r,
            r => r,
        };
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        b = &rest[n..];
    }
    b.is_empty()
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !is_number(s) {
            return Err(DecimalError(()));
        }
        // Read as JSON, the number keeps its text (serde_json's `arbitrary_precision`;
        // `Number::from_str` would rewrite `1e3` as `1e+3`).
        serde_json::from_str::<Number>(s).map(Self).map_err(|_| DecimalError(()))
    }
}

impl TryFrom<&str> for Decimal {
    type Error = DecimalError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<i64> for Decimal {
    fn from(n: i64) -> Self {
        Self(Number::from(n))
    }
}

impl From<u32> for Decimal {
    fn from(n: u32) -> Self {
        Self(Number::from(n))
    }
}

impl From<Decimal> for Number {
    fn from(d: Decimal) -> Self {
        d.0
    }
}

impl From<Decimal> for Value {
    fn from(d: Decimal) -> Self {
        Value::Number(d.0)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.as_str())
    }
}

impl FromJson for Decimal {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Number(n) => Ok(Self(n)),
            other => Err(JsonError::expected("a number", &other)),
        }
    }
}

impl ToJson for Decimal {
    fn to_json(&self) -> Option<Out<'_>> {
        Some(Out::Num(&self.0))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Number::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_text() {
        for text in ["0", "-0", "1.50", "0.0001", "1.000e-245", "12345678901234567890.123456789"] {
            let d: Decimal = text.parse().unwrap();
            assert_eq!(d.as_str(), text);
            assert_eq!(serde_json::to_string(&d).unwrap(), text);
            let back: Decimal = serde_json::from_str(text).unwrap();
            assert_eq!(back, d);
        }
        // serde_json spells every exponent `e+`/`e-`, parsed from JSON or from text alike.
        for (text, kept) in [("1e3", "1e+3"), ("-2.50E-10", "-2.50e-10"), ("1E+22", "1e+22")] {
            assert_eq!(text.parse::<Decimal>().unwrap().as_str(), kept);
            assert_eq!(serde_json::from_str::<Decimal>(text).unwrap().as_str(), kept);
        }
        assert_ne!("1.50".parse::<Decimal>().unwrap(), "1.5".parse::<Decimal>().unwrap());
        assert_eq!("1.50".parse::<Decimal>().unwrap().to_f64(), 1.5);
        assert_eq!(Decimal::try_from("7").unwrap(), Decimal::from(7_i64));
        assert_eq!(Decimal::from(-3_i64).as_str(), "-3");
    }

    #[test]
    fn what_is_not_a_number_is_refused() {
        for text in
            ["", "-", "01", "1.", ".5", "1e", "1e+", "+1", " 1", "1 ", "NaN", "inf", "1.5.0", "0x10", "1,5"]
        {
            assert!(text.parse::<Decimal>().is_err(), "{text:?}");
        }
    }
}
