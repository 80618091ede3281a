//! FHIR `instant` and `dateTime` values as milliseconds since the Unix epoch:
//! written as `meta.lastUpdated` (datatypes.html#instant: `YYYY-MM-DDThh:mm:ss.sss+zz:zz`)
//! and read as search values, which may be given at any precision
//! (search.html#date: a value stands for the whole range its precision covers).

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use jiff::{Timestamp, ToSpan};

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A FHIR `instant` in UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
pub(crate) fn format(ms: i64) -> String {
    // Out of jiff's range (±9999 years) only for nonsense clocks: the bound then.
    let at = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX });
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn ms_of(at: DateTime, offset: Offset) -> Option<i64> {
    Some(offset.to_timestamp(at).ok()?.as_millisecond())
}

/// An HTTP-date (`Last-Modified`) for `ms`.
pub(crate) fn http_date(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

fn number(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// The range `[start, end)` in milliseconds a FHIR `date`, `dateTime` or `instant`
/// stands for: `2024` is the whole year, `2024-05-01T10:00Z` a minute. A time without
/// a zone is read as UTC. `None` for anything that is not such a value.
pub(crate) fn parse_range(text: &str) -> Option<(i64, i64)> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = i16::try_from(number(parts.next()?, 4)?).ok()?;
    let month = match parts.next() {
        Some(m) => Some(i8::try_from(number(m, 2)?).ok()?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(i8::try_from(number(d, 2)?).ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let Some(time) = time else {
        let utc = Offset::UTC;
        let (start, next) = match (month, day) {
            (None, _) => {
                let start = Date::new(year, 1, 1).ok()?;
                (start, start.checked_add(1.year()).ok()?)
            }
            (Some(m), None) => {
                let start = Date::new(year, m, 1).ok()?;
                (start, start.checked_add(1.month()).ok()?)
            }
            (Some(m), Some(d)) => {
                let start = Date::new(year, m, d).ok()?;
                (start, start.checked_add(1.day()).ok()?)
            }
        };
        return Some((ms_of(start.into(), utc)?, ms_of(next.into(), utc)?));
    };
    let (month, day) = (month?, day?);
    // The zone: `Z`, `+hh:mm` or `-hh:mm`; a `+` that arrived in a query string
    // unescaped was decoded to a space, and is read back as `+`.
    let (clock, offset) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, Offset::UTC)
    } else if let Some(at) = time.rfind(['+', '-', ' ']) {
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = zone.get(1..)?.split_once(':')?;
        let seconds = sign * (number(zh, 2)? * 60 + number(zm, 2)?) * 60;
        (clock, Offset::from_seconds(i32::try_from(seconds).ok()?).ok()?)
    } else {
        (time, Offset::UTC)
    };
    let mut fields = clock.split(':');
    let hour = number(fields.next()?, 2)?;
    let minute = number(fields.next()?, 2)?;
    let (second, nanos, width) = match fields.next() {
        None => (0, 0, 60_000),
        Some(sec) => {
            let (whole, fraction) = match sec.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (sec, None),
            };
            let second = number(whole, 2)?;
            match fraction {
                None => (second, 0, 1000),
                Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                    let padded: String = f.chars().chain("000".chars()).take(3).collect();
                    (second, padded.parse::<i64>().ok()? * 1_000_000, 1)
                }
                Some(_) => return None,
            }
        }
    };
    if fields.next().is_some() {
        return None;
    }
    // jiff refuses an hour, minute or second out of range, and a day the month lacks.
    let at = DateTime::new(
        year,
        month,
        day,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        i32::try_from(nanos).ok()?,
    )
    .ok()?;
    let start = ms_of(at, offset)?;
    Some((start, start + width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_precision() {
        let (start, end) = parse_range("2024-02-29T23:59:58.5Z").unwrap();
        assert_eq!(format(start), "2024-02-29T23:59:58.500Z");
        assert_eq!(end - start, 1);
        let (y0, y1) = parse_range("2024").unwrap();
        assert_eq!(
            (format(y0), format(y1)),
            ("2024-01-01T00:00:00.000Z".into(), "2025-01-01T00:00:00.000Z".into())
        );
        let (m0, m1) = parse_range("2023-12").unwrap();
        assert_eq!(format(m1 - 1), "2023-12-31T23:59:59.999Z");
        assert!(m0 < m1);
        assert_eq!(parse_range("2024-01-01T10:00:00+01:00"), parse_range("2024-01-01T09:00:00Z"));
        assert_eq!(parse_range("2024-01-01T10:00:00 01:00"), parse_range("2024-01-01T09:00:00Z"));
        // Leap years are jiff's business now: 2024-02 has 29 days, 2100 is no leap year.
        let (f0, f1) = parse_range("2024-02").unwrap();
        assert_eq!(f1 - f0, 29 * 86_400_000);
        assert_eq!(parse_range("2100-02-29"), None);
        for bad in [
            "",
            "24",
            "2024-13",
            "2024-01-01T",
            "2024-01-01T25:00Z",
            "garbage",
            "2024-01-01T10:00:00.Z",
            "2023-02-29",
            "2024-04-31T10:00Z",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
