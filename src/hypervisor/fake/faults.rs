//! Faults the fake is told to show: failing operations, a connection that
//! dies, a daemon that restarts. Every call passes through here first.

use std::time::{Duration, Instant};

use super::super::{HvError, HvErrorKind, HvResult};
use super::{Call, FakeHypervisor, Op, World};

/// A restart of the fake's daemon: every connection open at `down` is
/// closed, new ones are refused until `up`.
#[derive(Debug, Clone, Copy)]
pub(super) struct DaemonRestart {
    pub(super) down: Instant,
    pub(super) up: Instant,
    /// New connections hang until `up` (a socket systemd keeps open)
    /// instead of being refused.
    pub(super) connects_hang: bool,
}

impl FakeHypervisor {
    /// Makes every call of operation `op` fail with `error`.
    pub fn failing(self, op: Op, error: HvError) -> Self {
        self.world().failures.insert(op, error);
        self
    }


    /// The connection to this fake dies `after` from now on its clock.
    pub fn losing_connection_after(self, after: Duration) -> Self {
        let mut w = self.world();
        w.lost_at = Some(w.clock.now() + after);
        drop(w);
        self
    }

    /// The daemon restarts `after` from now on its clock, as `systemctl
    /// restart libvirtd` does: every connection open then is closed for good
    /// (calls fail with "client socket is closed", `is_alive` is false), new
    /// connections are refused for `down_for`, then accepted. A migration
    /// under way fails at that moment and the guest stays here, as libvirt's
    /// recovery of an unfinished outgoing migration leaves it.
    pub fn restarting_daemon_after(self, after: Duration, down_for: Duration) -> Self {
        let mut w = self.world();
        let down = w.clock.now() + after;
        w.restart = Some(DaemonRestart { down, up: down + down_for, connects_hang: false });
        drop(w);
        self
    }

    /// [`FakeHypervisor::restarting_daemon_after`] behind a listening
    /// socket that stays open, as systemd's socket units keep it: a new
    /// connection is not refused while the daemon is down but waits, until
    /// the daemon is up or the caller's budget is spent.
    pub fn restarting_daemon_behind_a_socket_after(self, after: Duration, down_for: Duration) -> Self {
        let mut w = self.world();
        let down = w.clock.now() + after;
        w.restart = Some(DaemonRestart { down, up: down + down_for, connects_hang: true });
        drop(w);
        self
    }

    pub(super) fn enter(&self, call: Call) -> HvResult<()> {
        let mut w = self.world();
        if self.closed_by_restart(&w) {
            w.calls.push(call);
            return Err(closed_by_restart());
        }
        drop(w);
        self.enter_without_connection(call)
    }

    /// Records `call` and applies the injected failures, whether or not this
    /// connection is still open (opening a new one does not need it).
    pub(super) fn enter_without_connection(&self, call: Call) -> HvResult<()> {
        let mut w = self.world();
        let op = call.op();
        w.calls.push(call);
        if w.lost_at.is_some_and(|at| w.clock.now() >= at) {
            return Err(HvError::new(HvErrorKind::Unreachable, "End of file while reading data: Input/output error"));
        }
        match w.failures.get(&op) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Whether a daemon restart has closed this connection.
    pub(super) fn closed_by_restart(&self, w: &World) -> bool {
        w.restart.is_some_and(|r| w.clock.now() >= r.down && self.opened.is_none_or(|opened| opened < r.down))
    }

}

/// What libvirt's client library says on a connection its daemon closed.
pub(super) fn closed_by_restart() -> HvError {
    HvError::other("internal error: client socket is closed")
}
