//! Where the token manager gets the time from.
//!
//! Two readings: wall-clock time for expiry (JWT `exp` is seconds since the epoch),
//! and a monotonic reading for backoff deadlines, so an NTP step or a resumed VM
//! cannot stretch a 1 s backoff into an hour. Tests swap in a [`ManualClock`] and
//! move time by hand: the manager never sleeps on the clock, it only compares
//! against it, so virtual time needs no cooperation from the async runtime.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Time elapsed since an arbitrary fixed origin; never goes backwards.
    fn monotonic(&self) -> Duration;

    /// The wall-clock time, allowed to lag by a few milliseconds.
    ///
    /// The token manager reads the clock on every request to check the cached
    /// token; that check needs no precision, and a precise reading is most of its
    /// cost. Defaults to [`Clock::now`].
    fn now_coarse(&self) -> SystemTime {
        self.now()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    /// `CLOCK_REALTIME_COARSE` on Linux: the kernel's last tick (1–4 ms old), read
    /// without touching the time-stamp counter.
    #[cfg(target_os = "linux")]
    fn now_coarse(&self) -> SystemTime {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        match (u64::try_from(t.tv_sec), u32::try_from(t.tv_nsec)) {
            (Ok(s), Ok(n)) => later(SystemTime::UNIX_EPOCH, Duration::new(s, n)),
            // Before 1970: the precise reading copes with that.
            _ => SystemTime::now(),
        }
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use auth_core::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now().duration_since(start).ok(), Some(Duration::from_secs(90)));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Readings>>,
}

#[derive(Debug)]
struct Readings {
    wall: SystemTime,
    monotonic: Duration,
}

impl ManualClock {
    /// A clock stopped at the current wall-clock time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock stopped at `start`.
    pub fn starting_at(start: SystemTime) -> Self {
        Self { now: Arc::new(Mutex::new(Readings { wall: start, monotonic: Duration::ZERO })) }
    }

    fn readings(&self) -> std::sync::MutexGuard<'_, Readings> {
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves both readings forward.
    pub fn advance(&self, by: Duration) {
        let mut r = self.readings();
        r.wall = r.wall.checked_add(by).unwrap_or(r.wall);
        r.monotonic = r.monotonic.saturating_add(by);
    }

    /// Steps the wall clock to `to` (which may be in the past), as NTP might; the
    /// monotonic reading does not move.
    pub fn set(&self, to: SystemTime) {
        self.readings().wall = to;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.readings().wall
    }

    fn monotonic(&self) -> Duration {
        self.readings().monotonic
    }
}

/// `t + d`, saturating instead of panicking on overflow.
pub(crate) fn later(t: SystemTime, d: Duration) -> SystemTime {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d).or_else(|| t.checked_add(CENTURY.min(d))).unwrap_or(t)
}

/// `t - d`, saturating at the epoch instead of panicking.
pub(crate) fn earlier(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Seconds as a `Duration`; negative, NaN and huge values become zero or the cap.
pub(crate) fn secs(x: f64, cap: Duration) -> Duration {
    if x.is_nan() || x <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(x).unwrap_or(cap).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_reading_trails_the_precise_one_by_at_most_a_few_ticks() {
        for _ in 0..1000 {
            let before = SystemClock.now();
            let coarse = SystemClock.now_coarse();
            let after = SystemClock.now();
            // The coarse clock is the last tick: never ahead of a reading taken after
            // it, and behind one taken before it by less than a tick (≤ 10 ms at HZ=100).
            assert!(coarse <= after, "coarse reading ahead of the precise clock");
            let lag = before.duration_since(coarse).unwrap_or(Duration::ZERO);
            assert!(lag < Duration::from_millis(50), "coarse reading {lag:?} behind");
        }
    }
}
