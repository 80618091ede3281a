//! FHIR `instant`s (datatypes.html#instant: `YYYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`,
//! seconds and a zone required), read and written with [`jiff`], so calendar
//! arithmetic (leap years, month lengths, offsets) is a kept crate's, not ours.
//!
//! ```
//! use auth_fhir::instant::{format_instant, parse_instant};
//!
//! let at = parse_instant("2024-02-29T10:00:00.5+01:00").unwrap();
//! assert_eq!(format_instant(at), "2024-02-29T09:00:00.500Z");
//! assert!(parse_instant("2023-02-29T10:00:00Z").is_none()); // no such day
//! assert!(parse_instant("2024-02-29").is_none()); // a date, not an instant
//! ```

pub use jiff::Timestamp;

/// Reads a FHIR `instant`; `None` for anything else (a date, a time without
/// seconds or zone, a day that does not exist, an offset beyond ±14:00).
pub fn parse_instant(text: &str) -> Option<Timestamp> {
    // jiff's parsers accept more than FHIR (lowercase `t`, bracketed zone names,
    // a comma before the fraction): the shape is checked first, byte by byte.
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut zone = text.get(19..)?;
    if let Some(fraction) = zone.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        zone = &fraction[n..];
    }
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':'
            && zone.bytes().enumerate().all(|(i, c)| i == 0 || i == 3 || c.is_ascii_digit()));
    if !zone_ok {
        return None;
    }
    let at: Timestamp = text.parse().ok()?;
    // FHIR's grammar stops at ±14:00, where the world's zones do.
    let offset_ok = zone == "Z" || {
        let (h, m) = (zone[1..3].parse::<u8>().ok()?, zone[4..6].parse::<u8>().ok()?);
        m < 60 && (h < 14 || (h == 14 && m == 0))
    };
    offset_ok.then_some(at)
}

/// Writes `at` as a FHIR `instant` in UTC to the millisecond:
/// `2024-05-01T12:00:00.123Z` (what servers write in `meta.lastUpdated`).
pub fn format_instant(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_need_seconds_and_a_zone() {
        for good in [
            "2024-01-31T00:00:00Z",
            "2024-01-31T10:20:30.123+02:00",
            "2024-01-31T10:20:30-05:00",
            "2024-02-29T23:59:59.999999999Z",
            "2024-01-31T10:20:30+14:00",
        ] {
            assert!(parse_instant(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "2024-01-31",
            "2024-01-31T00:00:00",
            "2024-01-31T00:00Z",
            "yesterday",
            "2024-01-31T00:00:00.Z",
            "2024-1-31T00:00:00Z",
            "2024-01-31t00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-31T24:00:00Z",
            "2024-01-31T00:00:00+15:00",
            "2024-01-31T00:00:00+0200",
            "2024-01-31T00:00:00Z[Europe/Paris]",
            "2024-01-31T00:00:00,5Z",
        ] {
            assert!(parse_instant(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn formatted_in_utc_to_the_millisecond() {
        let at = parse_instant("2024-01-01T00:30:00.1234-01:00");
        assert_eq!(at.map(format_instant).as_deref(), Some("2024-01-01T01:30:00.123Z"));
        assert_eq!(format_instant(Timestamp::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
