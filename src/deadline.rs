//! The invocation's time budget. The handler computes it once from the runtime's deadline and hands each
//! step the instant by which it must be done.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    pub fn after(d: Duration) -> Self {
        Self(Instant::now() + d)
    }

    /// The Lambda runtime gives the deadline as milliseconds since the Unix epoch.
    pub fn from_epoch_millis(ms: u64) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::after(Duration::from_millis(ms.saturating_sub(now_ms)))
    }

    pub fn instant(self) -> Instant {
        self.0
    }

    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub fn is_past(self) -> bool {
        self.remaining().is_zero()
    }

    /// The same deadline moved earlier by `d` (never before now).
    pub fn earlier_by(self, d: Duration) -> Self {
        Self(self.0.checked_sub(d).unwrap_or(self.0).max(Instant::now()))
    }
}
