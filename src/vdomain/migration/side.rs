//! One side of a migration as it is asked where the guest is: a connection
//! that is opened again when it was closed. A restarted libvirtd closes
//! every client connection and answers new ones a few seconds later, so a
//! closed connection says nothing about the guest; a fresh one does.

use std::time::Duration;

use tracing::{info, warn};

use crate::hypervisor::migration::bounded;
use crate::hypervisor::{DomainState, HvResult, SharedHypervisor};
use crate::ocf::Deadline;

use super::location::SideView;
use super::preflight::QUERY_BUDGET;

/// The shortest budget a call is given, even when `until` is about to pass.
const LEAST_BUDGET: Duration = Duration::from_millis(100);

/// One attempt to reconnect. A restarting libvirtd behind a socket that
/// stays open (systemd's socket units) takes the connection and answers
/// only when the new daemon is up, about 2 s here, or never for that
/// connection: an attempt that takes longer is given up, and the next look
/// tries again while time remains. With the 15 s of a first connection the
/// systemd lab's migration whose target restarted took 15.1 s to fail, the
/// source's own answer (still running here) waiting on the target's.
pub const RECONNECT_BUDGET: Duration = Duration::from_secs(3);

pub struct Side {
    conn: SharedHypervisor,
    /// Where a fresh connection goes.
    uri: String,
    /// Who this is, for the log: "node1".
    node: String,
    /// The last failed attempt to reconnect, logged once per distinct error.
    reconnect_error: Option<String>,
}

impl Side {
    pub fn new(conn: SharedHypervisor, uri: impl Into<String>, node: impl Into<String>) -> Side {
        Side { conn, uri: uri.into(), node: node.into(), reconnect_error: None }
    }

    /// The guest's state on this side, each call given up at `until` (and
    /// after a few seconds at most). A connection found closed is replaced
    /// by a fresh one first; a hypervisor that does not answer (frozen,
    /// unreachable) is not reconnected to: that would only wait again.
    pub fn look(&mut self, name: &str, until: &Deadline) -> SideView {
        match self.state(name, until) {
            Ok(state) => SideView::from_state(state),
            Err(e) if self.conn.is_alive() => SideView::Unknown(e.message),
            Err(e) => match self.reconnect(until) {
                true => self.state(name, until).map_or_else(|e| SideView::Unknown(e.message), SideView::from_state),
                false => SideView::Unknown(e.message),
            },
        }
    }

    /// `name` resumed on this side, over the current connection.
    pub fn resume(&self, name: &str, until: &Deadline) -> HvResult<()> {
        let name = name.to_owned();
        bounded(&self.conn, budget(QUERY_BUDGET, until), move |hv| hv.resume(&name))
    }

    fn state(&self, name: &str, until: &Deadline) -> HvResult<Option<DomainState>> {
        let name = name.to_owned();
        bounded(&self.conn, budget(QUERY_BUDGET, until), move |hv| hv.state(&name))
    }

    /// Opens a fresh connection in place of the closed one; false while the
    /// hypervisor does not accept one (still restarting).
    fn reconnect(&mut self, until: &Deadline) -> bool {
        match self.conn.open_connection(&self.uri, budget(RECONNECT_BUDGET, until)) {
            Ok(fresh) => {
                info!("the connection to {}'s hypervisor was closed; asking again over a new one", self.node);
                self.conn = fresh.hypervisor().clone();
                self.reconnect_error = None;
                true
            }
            Err(e) => {
                if self.reconnect_error.as_deref() != Some(e.message.as_str()) {
                    warn!("the connection to {}'s hypervisor was closed and a new one fails: {e}", self.node);
                    self.reconnect_error = Some(e.message);
                }
                false
            }
        }
    }
}

fn budget(most: Duration, until: &Deadline) -> Duration {
    most.min(until.remaining()).max(LEAST_BUDGET)
}
