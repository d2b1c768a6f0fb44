//! Operation deadlines on the monotonic clock, and the clock itself, which
//! tests replace with one they move by hand: a wait of minutes then takes
//! microseconds and a test can tell exactly when something happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a deadline reads the time and how it waits.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The monotonic system clock; waiting sleeps.
    #[default]
    System,
    /// A clock that only moves when something waits on it: waiting advances
    /// it at once. Shared by everything a test builds from it.
    Manual(&'static ManualClock),
}

/// The state of a [`Clock::Manual`].
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    advanced_nanos: AtomicU64,
}

impl Clock {
    /// A new manual clock. Each one lives as long as the process (a few
    /// bytes): deadlines that read it stay `Copy`.
    pub fn manual() -> Clock {
        Clock::Manual(Box::leak(Box::new(ManualClock { origin: Instant::now(), advanced_nanos: AtomicU64::new(0) })))
    }

    pub fn now(self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(m) => m.origin + Duration::from_nanos(m.advanced_nanos.load(Ordering::SeqCst)),
        }
    }

    /// Waits `step`: sleeps on the system clock, moves a manual one forward.
    pub fn sleep(self, step: Duration) {
        match self {
            Clock::System => std::thread::sleep(step),
            Clock::Manual(m) => {
                let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
                m.advanced_nanos.fetch_add(nanos, Ordering::SeqCst);
            }
        }
    }

    /// Whether both read the same time: the system clock, or one manual clock.
    pub fn same_as(self, other: Clock) -> bool {
        match (self, other) {
            (Clock::System, Clock::System) => true,
            (Clock::Manual(a), Clock::Manual(b)) => std::ptr::eq(a, b),
            _ => false,
        }
    }

    /// How long since `earlier` on this clock.
    pub fn since(self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

/// When Pacemaker will kill this operation, minus nothing: callers keep their
/// own margins with [`Deadline::before`].
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    started: Instant,
    end: Instant,
    clock: Clock,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self::after_on(Clock::System, budget)
    }

    /// A deadline `budget` from now on `clock`.
    pub fn after_on(clock: Clock, budget: Duration) -> Self {
        let started = clock.now();
        Deadline { started, end: started + budget, clock }
    }

    /// The same deadline on the system clock, for waiting on something real
    /// (a process, the kernel) that a manual clock would not wait for.
    pub fn in_real_time(&self) -> Deadline {
        match self.clock {
            Clock::System => *self,
            Clock::Manual(_) => {
                let now = Instant::now();
                let started = now.checked_sub(self.elapsed()).unwrap_or(now);
                Deadline { started, end: now + self.remaining(), clock: Clock::System }
            }
        }
    }

    /// The clock this deadline reads; what it derives shares it.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The deadline of the running operation: `CRM_meta_timeout` (ms) when
    /// Pacemaker gave one, else the action's advertised default.
    /// It runs from `started`, when the agent was called: Pacemaker's timer
    /// started then, so work done before the deadline is asked for counts.
    /// `started` is an instant of `clock`.
    pub fn for_operation(clock: Clock, started: Instant, timeout_ms: Option<u64>, default: Duration) -> Self {
        let budget = timeout_ms.map(Duration::from_millis).unwrap_or(default);
        Deadline { started, end: started + budget, clock }
    }

    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(self.clock.now())
    }

    pub fn elapsed(&self) -> Duration {
        self.clock.since(self.started)
    }

    pub fn total(&self) -> Duration {
        self.end - self.started
    }

    pub fn expired(&self) -> bool {
        self.clock.now() >= self.end
    }

    /// A deadline `margin` earlier than this one (never before its start).
    pub fn before(&self, margin: Duration) -> Deadline {
        let end = self.end.checked_sub(margin).unwrap_or(self.started).max(self.started);
        Deadline { end, ..*self }
    }

    /// A deadline that ends after `fraction` of this one's total budget.
    pub fn fraction(&self, fraction: f64) -> Deadline {
        let budget = self.total().mul_f64(fraction.clamp(0.0, 1.0));
        Deadline { end: self.started + budget, ..*self }
    }

    /// Sleeps `step`, or less when the deadline comes first; false once expired.
    pub fn sleep(&self, step: Duration) -> bool {
        let remaining = self.remaining();
        if remaining.is_zero() {
            return false;
        }
        self.clock.sleep(step.min(remaining));
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
    fn a_manual_clock_moves_only_when_waited_on() {
        let clock = Clock::manual();
        let d = Deadline::after_on(clock, Duration::from_secs(3600));
        assert_eq!(d.elapsed(), Duration::ZERO);
        let polls = std::cell::Cell::new(0);
        let got: Option<()> = d.poll(Duration::from_secs(60), || {
            polls.set(polls.get() + 1);
            None
        });
        assert!(got.is_none() && d.expired());
        assert_eq!(d.elapsed(), Duration::from_secs(3600));
        assert_eq!(polls.get(), 62, "a probe each minute from 0 to 60, and a last one once expired");
        assert_eq!(d.before(Duration::from_secs(1)).clock().now(), clock.now());
    }

    #[test]
    fn real_time_keeps_what_is_left() {
        let clock = Clock::manual();
        let d = Deadline::after_on(clock, Duration::from_secs(60));
        clock.sleep(Duration::from_secs(20));
        let real = d.in_real_time();
        assert!(matches!(real.clock(), Clock::System));
        assert!(real.remaining() <= Duration::from_secs(40) && real.remaining() > Duration::from_secs(39));
        assert!(real.elapsed() >= Duration::from_secs(20));
    }

    #[test]
    fn default_applies_without_meta_timeout() {
        let d = Deadline::for_operation(Clock::System, Instant::now(), None, Duration::from_secs(90));
        assert_eq!(d.total(), Duration::from_secs(90));
        let d = Deadline::for_operation(Clock::System, Instant::now(), Some(20_000), Duration::from_secs(90));
        assert_eq!(d.total(), Duration::from_secs(20));
    }

    #[test]
    fn an_operation_deadline_counts_from_the_call_not_from_when_it_is_asked_for() {
        let called = Instant::now() - Duration::from_secs(3);
        let d = Deadline::for_operation(Clock::System, called, Some(4_000), Duration::from_secs(90));
        assert!(d.remaining() <= Duration::from_secs(1), "{:?} left of 4 s, 3 s after the call", d.remaining());
    }
}
