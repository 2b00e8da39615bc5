//! The invocation's time budget. The handler computes it once from the runtime's deadline and hands each
//! step the instant by which it must be done.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
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

    /// The Lambda runtime gives the deadline as milliseconds since the Unix epoch. A value too small to be
    /// one (before 2001) is taken as milliseconds from now: `cargo lambda watch` 1.9 sends the timeout itself.
    pub fn from_epoch_millis(ms: u64) -> Self {
        const EPOCH_2001_MS: u64 = 978_307_200_000;
        if ms < EPOCH_2001_MS {
            return Self::after(Duration::from_millis(ms));
        }
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

/// The steps still waiting for an answer ("ec2:DescribeSubnets in eu-west-1", "the provider callback ..."),
/// so a timeout can say what it was waiting for.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Mutex<BTreeSet<String>>>);

impl InFlight {
    pub fn start(&self, what: String) -> InFlightGuard {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(what.clone());
        InFlightGuard(self.clone(), what)
    }
    pub fn pending(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

pub struct InFlightGuard(InFlight, String);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn epoch_and_relative_deadlines() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let epoch = Deadline::from_epoch_millis(now_ms + 30_000).remaining();
        assert!(
            epoch > Duration::from_secs(29) && epoch <= Duration::from_secs(30),
            "{epoch:?}"
        );
        let relative = Deadline::from_epoch_millis(600_000).remaining();
        assert!(relative > Duration::from_secs(599), "{relative:?}");
        assert!(Deadline::from_epoch_millis(now_ms - 5_000).is_past());
    }
}
