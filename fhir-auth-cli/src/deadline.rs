//! The overall deadline of a command (`--timeout`, `FHIR_AUTH_TIMEOUT`), and what
//! the command was waiting for when it ran out, so the error can say so.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The deadline of one-shot commands when none is given: long enough for a slow
/// identity provider, short enough that a dead one is not mistaken for a hang.
pub(crate) const DEFAULT: Duration = Duration::from_secs(15);

/// What the command waits for right now, for the timeout's message.
static WAITING_FOR: Mutex<String> = Mutex::new(String::new());

/// Records what the command waits for from now on (a URL, never a credential).
pub(crate) fn waiting_for(what: impl Into<String>) {
    *WAITING_FOR.lock().unwrap_or_else(PoisonError::into_inner) = what.into();
}

/// What the command was waiting for, or a generic phrase before anything was sent.
pub(crate) fn current() -> String {
    let what = WAITING_FOR.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if what.is_empty() { "the command to finish".to_owned() } else { what }
}

/// Seconds (`15`, `2.5`), or a duration as jiff reads one (`500ms`, `30s`, `2m`,
/// `1m 30s`); `0` for no deadline.
pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration: seconds (`15`, `2.5`), or `500ms`, `30s`, `2m`");
    let secs = match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => n,
        Ok(_) => return Err(bad()),
        Err(_) => {
            let d: jiff::SignedDuration = text.parse().map_err(|_| bad())?;
            if d.is_negative() {
                return Err(bad());
            }
            d.as_secs_f64()
        }
    };
    // A day is longer than any command should be held up by one server.
    Duration::try_from_secs_f64(secs.min(86_400.0)).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_a_unit() {
        assert_eq!(parse_timeout("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout("48h"), Ok(Duration::from_secs(86_400)), "capped at a day");
        for bad in ["", "-1", "-5s", "soon", "NaN", "inf", "5 parsecs"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
