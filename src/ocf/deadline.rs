//! Operation deadlines on the monotonic clock.

use std::time::{Duration, Instant};

/// When Pacemaker will kill this operation, minus nothing: callers keep their
/// own margins with [`Deadline::before`].
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    started: Instant,
    end: Instant,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        let started = Instant::now();
        Deadline { started, end: started + budget }
    }

    /// The deadline of the running operation: `CRM_meta_timeout` (ms) when
    /// Pacemaker gave one, else the action's advertised default.
    pub fn for_operation(timeout_ms: Option<u64>, default: Duration) -> Self {
        Self::after(timeout_ms.map(Duration::from_millis).unwrap_or(default))
    }

    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn total(&self) -> Duration {
        self.end - self.started
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    /// A deadline `margin` earlier than this one (never before its start).
    pub fn before(&self, margin: Duration) -> Deadline {
        let end = self.end.checked_sub(margin).unwrap_or(self.started).max(self.started);
        Deadline { started: self.started, end }
    }

    /// A deadline that ends after `fraction` of this one's total budget.
    pub fn fraction(&self, fraction: f64) -> Deadline {
        let budget = self.total().mul_f64(fraction.clamp(0.0, 1.0));
        Deadline { started: self.started, end: self.started + budget }
    }

    /// Sleeps `step`, or less when the deadline comes first; false once expired.
    pub fn sleep(&self, step: Duration) -> bool {
        let remaining = self.remaining();
        if remaining.is_zero() {
            return false;
        }
        std::thread::sleep(step.min(remaining));
        true
    }

    /// Polls `probe` every `step` until it returns `Some`, or the deadline expires.
    pub fn poll<T>(&self, step: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
        loop {
            if let Some(value) = probe() {
                return Some(value);
            }
            if !self.sleep(step) {
                return probe();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_never_goes_below_start() {
        let d = Deadline::after(Duration::from_millis(100));
        assert!(d.before(Duration::from_secs(5)).expired());
        assert!(!d.before(Duration::from_millis(10)).expired());
    }

    #[test]
    fn poll_gives_up_at_the_deadline() {
        let d = Deadline::after(Duration::from_millis(50));
        let got: Option<()> = d.poll(Duration::from_millis(10), || None);
        assert!(got.is_none());
        assert!(d.expired());
    }

    #[test]
    fn default_applies_without_meta_timeout() {
        let d = Deadline::for_operation(None, Duration::from_secs(90));
        assert_eq!(d.total(), Duration::from_secs(90));
        let d = Deadline::for_operation(Some(20_000), Duration::from_secs(90));
        assert_eq!(d.total(), Duration::from_secs(20));
    }
}
