//! FHIR `instant` and `dateTime` values as milliseconds since the Unix epoch:
//! written as `meta.lastUpdated` (datatypes.html#instant: `YYYY-MM-DDThh:mm:ss.sss+zz:zz`)
//! and read as search values, which may be given at any precision
//! (search.html#date: a value stands for the whole range its precision covers).

use std::time::{SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// A FHIR `instant` in UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
pub(crate) fn format(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
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
    let year = number(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(m) => Some(number(m, 2).filter(|m| (1..=12).contains(m))?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(number(d, 2).filter(|d| (1..=31).contains(d))?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let Some(time) = time else {
        return Some(match (month, day) {
            (None, _) => (days_from_civil(year, 1, 1) * DAY_MS, days_from_civil(year + 1, 1, 1) * DAY_MS),
            (Some(m), None) => {
                let (ny, nm) = if m == 12 { (year + 1, 1) } else { (year, m + 1) };
                (days_from_civil(year, m, 1) * DAY_MS, days_from_civil(ny, nm, 1) * DAY_MS)
            }
            (Some(m), Some(d)) => {
                let start = days_from_civil(year, m, d) * DAY_MS;
                (start, start + DAY_MS)
            }
        });
    };
    let (month, day) = (month?, day?);
    // The zone: `Z`, `+hh:mm` or `-hh:mm`; a `+` that arrived in a query string
    // unescaped was decoded to a space, and is read back as `+`.
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-', ' ']) {
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = zone.get(1..)?.split_once(':')?;
        (clock, sign * (number(zh, 2)? * 60 + number(zm, 2)?) * 60_000)
    } else {
        (time, 0)
    };
    let mut fields = clock.split(':');
    let hour = number(fields.next()?, 2).filter(|h| *h < 24)?;
    let minute = number(fields.next()?, 2).filter(|m| *m < 60)?;
    let (second, millis, width) = match fields.next() {
        None => (0, 0, 60_000),
        Some(sec) => {
            let (whole, fraction) = match sec.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (sec, None),
            };
            let second = number(whole, 2).filter(|s| *s < 60)?;
            match fraction {
                None => (second, 0, 1000),
                Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                    let padded: String = f.chars().chain("000".chars()).take(3).collect();
                    (second, padded.parse::<i64>().ok()?, 1)
                }
                Some(_) => return None,
            }
        }
    };
    if fields.next().is_some() {
        return None;
    }
    let start = days_from_civil(year, month, day) * DAY_MS
        + hour * 3_600_000
        + minute * 60_000
        + second * 1000
        + millis
        - offset_ms;
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
        for bad in
            ["", "24", "2024-13", "2024-01-01T", "2024-01-01T25:00Z", "garbage", "2024-01-01T10:00:00.Z"]
        {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
