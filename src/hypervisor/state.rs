//! libvirt domain states and reasons, and what each one means for an HA
//! agent. This table is documented in the README; keep both in step.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    NoState,
    Running,
    Blocked,
    Paused,
    Shutdown,
    Shutoff,
    Crashed,
    PmSuspended,
}

impl StateKind {
    /// libvirt's `virDomainState` numbering (stable ABI).
    pub fn from_libvirt(code: u32) -> Option<StateKind> {
        Some(match code {
            0 => StateKind::NoState,
            1 => StateKind::Running,
            2 => StateKind::Blocked,
            3 => StateKind::Paused,
            4 => StateKind::Shutdown,
            5 => StateKind::Shutoff,
            6 => StateKind::Crashed,
            7 => StateKind::PmSuspended,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StateKind::NoState => "no state",
            StateKind::Running => "running",
            StateKind::Blocked => "blocked",
            StateKind::Paused => "paused",
            StateKind::Shutdown => "in shutdown",
            StateKind::Shutoff => "shut off",
            StateKind::Crashed => "crashed",
            StateKind::PmSuspended => "pmsuspended",
        }
    }

    /// Reason names per state, indexed by libvirt's reason code.
    fn reasons(self) -> &'static [&'static str] {
        match self {
            StateKind::Running => &[
                "unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
                "migration canceled", "save canceled", "wakeup", "crashed", "post-copy", "post-copy failed",
            ],
            StateKind::Paused => &[
                "unknown", "user", "migration", "save", "dump", "I/O error", "watchdog", "from snapshot",
                "shutting down", "snapshot", "crashed", "starting up", "post-copy", "post-copy failed",
                "API error",
            ],
            StateKind::Shutoff => &[
                "unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
                "from snapshot", "daemon",
            ],
            StateKind::Crashed => &["unknown", "panicked"],
            StateKind::Shutdown => &["unknown", "user"],
            StateKind::NoState | StateKind::Blocked | StateKind::PmSuspended => &["unknown"],
        }
    }
}

/// libvirt's reason codes (`virDomain<State>Reason`, stable ABI) that a
/// decision depends on, named once; [`StateKind::reasons`] holds every
/// code's name.
pub mod reason {
    pub const RUNNING_BOOTED: u32 = 1;
    pub const RUNNING_MIGRATED: u32 = 2;
    pub const RUNNING_RESTORED: u32 = 3;
    pub const RUNNING_UNPAUSED: u32 = 5;
    pub const RUNNING_MIGRATION_CANCELED: u32 = 6;
    pub const RUNNING_POSTCOPY: u32 = 10;
    pub const RUNNING_POSTCOPY_FAILED: u32 = 11;
    pub const PAUSED_MIGRATION: u32 = 2;
    pub const PAUSED_IOERROR: u32 = 5;
    pub const PAUSED_WATCHDOG: u32 = 6;
    pub const PAUSED_CRASHED: u32 = 10;
    pub const PAUSED_POSTCOPY: u32 = 12;
    pub const PAUSED_POSTCOPY_FAILED: u32 = 13;
    pub const PAUSED_API_ERROR: u32 = 14;
    pub const SHUTOFF_SHUTDOWN: u32 = 1;
    pub const SHUTOFF_DESTROYED: u32 = 2;
    pub const SHUTOFF_CRASHED: u32 = 3;
    pub const SHUTOFF_MIGRATED: u32 = 4;
    pub const SHUTOFF_SAVED: u32 = 5;
    pub const SHUTOFF_FAILED: u32 = 6;
}

/// A domain's state and libvirt's reason code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainState {
    pub kind: StateKind,
    pub reason: u32,
}

impl DomainState {
    pub fn new(kind: StateKind, reason: u32) -> Self {
        DomainState { kind, reason }
    }

    pub fn reason_name(&self) -> &'static str {
        self.kind.reasons().get(self.reason as usize).copied().unwrap_or("unknown")
    }

    /// The domain exists in the hypervisor as a process (not shut off).
    pub fn is_active(&self) -> bool {
        self.kind != StateKind::Shutoff
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.name(), self.reason_name())
    }
}

/// What a state means for Pacemaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving (or deliberately held: operator pause, migration, save).
    Running,
    /// Not running on this node: absent or shut off normally.
    Stopped,
    /// The domain exists but cannot serve; the text names the reason.
    Failed(String),
    /// A state libvirt reports while it is between states; ask again.
    Transitional,
}

/// The state/reason table. `None` is "no such domain".
pub fn classify(state: Option<DomainState>) -> Health {
    let Some(state) = state else { return Health::Stopped };
    let failed = || Health::Failed(format!("domain {state}"));
    match state.kind {
        StateKind::Running => match state.reason {
            // Neither side has the whole guest.
            reason::RUNNING_POSTCOPY_FAILED => failed(),
            _ => Health::Running,
        },
        StateKind::Blocked | StateKind::Shutdown => Health::Running,
        StateKind::Paused => match state.reason {
            reason::PAUSED_IOERROR
            | reason::PAUSED_WATCHDOG
            | reason::PAUSED_CRASHED
            | reason::PAUSED_POSTCOPY_FAILED
            | reason::PAUSED_API_ERROR => failed(),
            _ => Health::Running,
        },
        StateKind::Shutoff => match state.reason {
            // Crashed, or stopped by the hypervisor on an internal failure.
            reason::SHUTOFF_CRASHED | reason::SHUTOFF_FAILED => failed(),
            _ => Health::Stopped,
        },
        StateKind::Crashed => failed(),
        StateKind::PmSuspended => failed(),
        StateKind::NoState => Health::Transitional,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(kind: StateKind, reason: u32) -> Health {
        classify(Some(DomainState::new(kind, reason)))
    }

    #[test]
    fn operator_and_migration_pauses_are_running() {
        for reason in [0, 1, 2, 3, 4, 7, 8, 9, 11, 12] {
            assert_eq!(health(StateKind::Paused, reason), Health::Running, "paused reason {reason}");
        }
    }

    #[test]
    fn io_error_and_crashes_are_failures_that_name_the_reason() {
        assert_eq!(health(StateKind::Paused, 5), Health::Failed("domain paused (I/O error)".into()));
        assert_eq!(health(StateKind::Paused, 10), Health::Failed("domain paused (crashed)".into()));
        assert_eq!(health(StateKind::Crashed, 1), Health::Failed("domain crashed (panicked)".into()));
        assert_eq!(health(StateKind::Shutoff, 6), Health::Failed("domain shut off (failed)".into()));
        assert!(matches!(health(StateKind::Paused, 6), Health::Failed(_)));
        assert!(matches!(health(StateKind::PmSuspended, 0), Health::Failed(_)));
    }

    #[test]
    fn absent_and_clean_shutoff_are_stopped() {
        assert_eq!(classify(None), Health::Stopped);
        for reason in [0, 1, 2, 4, 5, 7, 8] {
            assert_eq!(health(StateKind::Shutoff, reason), Health::Stopped, "shutoff reason {reason}");
        }
    }

    #[test]
    fn named_reasons_match_the_name_table() {
        use reason::*;
        let named = [
            (StateKind::Running, RUNNING_BOOTED, "booted"),
            (StateKind::Running, RUNNING_MIGRATED, "migrated"),
            (StateKind::Running, RUNNING_RESTORED, "restored"),
            (StateKind::Running, RUNNING_UNPAUSED, "unpaused"),
            (StateKind::Running, RUNNING_MIGRATION_CANCELED, "migration canceled"),
            (StateKind::Running, RUNNING_POSTCOPY, "post-copy"),
            (StateKind::Running, RUNNING_POSTCOPY_FAILED, "post-copy failed"),
            (StateKind::Paused, PAUSED_MIGRATION, "migration"),
            (StateKind::Paused, PAUSED_IOERROR, "I/O error"),
            (StateKind::Paused, PAUSED_WATCHDOG, "watchdog"),
            (StateKind::Paused, PAUSED_CRASHED, "crashed"),
            (StateKind::Paused, PAUSED_POSTCOPY, "post-copy"),
            (StateKind::Paused, PAUSED_POSTCOPY_FAILED, "post-copy failed"),
            (StateKind::Paused, PAUSED_API_ERROR, "API error"),
            (StateKind::Shutoff, SHUTOFF_SHUTDOWN, "shutdown"),
            (StateKind::Shutoff, SHUTOFF_DESTROYED, "destroyed"),
            (StateKind::Shutoff, SHUTOFF_CRASHED, "crashed"),
            (StateKind::Shutoff, SHUTOFF_MIGRATED, "migrated"),
            (StateKind::Shutoff, SHUTOFF_SAVED, "saved"),
            (StateKind::Shutoff, SHUTOFF_FAILED, "failed"),
        ];
        for (kind, code, name) in named {
            assert_eq!(DomainState::new(kind, code).reason_name(), name, "{kind:?} {code}");
        }
    }

    #[test]
    fn running_like_states() {
        assert_eq!(health(StateKind::Running, 1), Health::Running);
        assert_eq!(health(StateKind::Blocked, 0), Health::Running);
        assert_eq!(health(StateKind::Shutdown, 1), Health::Running);
        assert_eq!(health(StateKind::NoState, 0), Health::Transitional);
        assert_eq!(DomainState::new(StateKind::Paused, 99).reason_name(), "unknown");
    }
}
