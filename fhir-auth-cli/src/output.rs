//! Presentation: colour through `anstream` (stripped when the stream is no
//! terminal, under `NO_COLOR`, forced by `CLICOLOR_FORCE`), progress through
//! `indicatif` (on a terminal only, never with `--quiet`), notes that `--quiet`
//! silences, and RFC 3339 times through `jiff`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anstyle::{AnsiColor, Effects};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--quiet`: no progress, no notes. Process-wide, like the flag.
static QUIET: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A note for the operator on stderr (an option ignored, a step taken), unless
/// `--quiet`. Warnings and errors are not notes: they always show.
pub(crate) fn note(text: &str) {
    if !quiet() {
        let _ = writeln!(anstream::stderr().lock(), "{text}");
    }
}

/// Whether live progress may be drawn: stderr is a terminal and not `--quiet`.
pub(crate) fn live_progress() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// Text styles. Styled text carries ANSI codes; [`out`] writes through
/// `anstream`, which keeps or strips them for the terminal at hand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style;

impl Style {
    /// Styles for what goes to stdout (through [`out`]).
    pub(crate) fn stdout() -> Self {
        Self
    }

    fn paint(self, style: anstyle::Style, text: &str) -> String {
        format!("{style}{text}{style:#}")
    }

    pub(crate) fn bold(self, t: &str) -> String {
        self.paint(anstyle::Style::new().effects(Effects::BOLD), t)
    }
    pub(crate) fn green(self, t: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), t)
    }
    pub(crate) fn red(self, t: &str) -> String {
        self.paint(AnsiColor::Red.on_default(), t)
    }
    pub(crate) fn yellow(self, t: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), t)
    }
    pub(crate) fn dim(self, t: &str) -> String {
        self.paint(anstyle::Style::new().effects(Effects::DIMMED), t)
    }
    pub(crate) fn cyan(self, t: &str) -> String {
        self.paint(AnsiColor::Cyan.on_default(), t)
    }
}

/// A live one-line spinner on stderr; hidden unless [`live_progress`], so piped
/// output and logs stay clean.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub(crate) fn new() -> Self {
        if !live_progress() {
            return Self { bar: ProgressBar::hidden() };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}") {
            bar.set_style(style);
        }
        // The spinner turns while a slow page is awaited (a ticker thread, so only
        // when something is drawn).
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    pub(crate) fn update(&mut self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    pub(crate) fn clear(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `2026-11-23T20:06:14Z`: to the second, in UTC.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        // Out of jiff's range (beyond year 9999): no token lives that long.
        Err(_) => "(out of range)".to_owned(),
    }
}

/// Writes a line to stdout, ignoring a closed pipe (`fhir-auth … | head` is not an error).
pub(crate) fn out(line: &str) {
    let mut o = anstream::stdout().lock();
    let _ = writeln!(o, "{line}");
}

/// Pretty JSON to stdout.
pub(crate) fn out_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => out(&s),
        Err(e) => eprintln!("error: cannot write JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn rfc3339_handles_leap_days_and_the_epoch() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_464_939_750)), "2026-11-23T20:15:39Z");
    }

    #[test]
    fn styles_wrap_text_in_codes_that_anstream_strips() {
        let green = Style::stdout().green("ok");
        assert!(green.starts_with("\x1b[32m") && green.contains("ok"), "{green:?}");
        let mut stripped = Vec::new();
        let mut stream = anstream::StripStream::new(&mut stripped);
        let _ = write!(stream, "{green}");
        assert_eq!(String::from_utf8_lossy(&stripped), "ok");
    }
}
