//! Time as the domain sees it: a `Clock` the server and store ask for "now", so lease expiry can
//! be tested without sleeping.

use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};

/// A point in time, UTC, with millisecond precision (what every backend stores).
pub type Timestamp = DateTime<Utc>;

/// Source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// Truncates a timestamp to whole milliseconds, the precision stored everywhere.
pub fn to_millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// Builds a timestamp from milliseconds since the epoch (values out of range clamp to the epoch).
pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        from_millis(Utc::now().timestamp_millis())
    }
}

/// A clock that only moves when told to; for tests of time-based rules.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self { now: Mutex::new(from_millis(start.timestamp_millis())) }
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        *now = from_millis(now.timestamp_millis().saturating_add(ms));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
