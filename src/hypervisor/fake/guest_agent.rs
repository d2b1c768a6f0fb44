//! The fake's QEMU guest agents: how each domain's agent answers.

use std::time::Duration;

use super::super::{GuestFilesystems, HvError, HvResult};
use super::{Call, FakeHypervisor};

/// How a fake domain's QEMU guest agent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeAgent {
    /// The domain has no guest agent channel.
    NoChannel,
    /// The channel exists and an agent answers every command.
    Answering,
    /// The agent answers a ping, but listing the file systems hangs (a
    /// wedged mount): libvirt gives up after its bound.
    FilesystemsHung,
    /// The agent answers and reports its file systems frozen.
    FilesystemsFrozen,
    /// The channel exists but no agent holds it (killed, never installed).
    NotConnected,
    /// The agent holds the channel but answers nothing (SIGSTOP, hung OS):
    /// libvirt gives up after its bound.
    Frozen,
}

impl FakeHypervisor {
    /// How the guest agent of domain `name` behaves from now on.
    pub fn set_guest_agent(&self, name: &str, agent: FakeAgent) {
        self.world().agents.insert(name.to_owned(), agent);
    }

    fn unresponsive(why: &str) -> HvError {
        HvError::other(format!("Guest agent is not responding: {why}"))
    }

    /// The agent of a running domain, when it answers at all.
    pub(super) fn ask_agent(&self, name: &str, question: &'static str, bound: Duration) -> HvResult<FakeAgent> {
        self.enter(Call::GuestAgent { name: name.to_owned(), question, bound })?;
        self.active(name)?;
        let agent = self.world().agents.get(name).copied().unwrap_or(FakeAgent::NoChannel);
        match agent {
            FakeAgent::NoChannel => Err(HvError::other("argument unsupported: QEMU guest agent is not configured")),
            FakeAgent::NotConnected => Err(Self::unresponsive("QEMU guest agent is not connected")),
            FakeAgent::Frozen => Err(Self::unresponsive("Guest agent not available for now")),
            FakeAgent::Answering | FakeAgent::FilesystemsHung | FakeAgent::FilesystemsFrozen => Ok(agent),
        }
    }

    pub(super) fn agent_filesystems(&self, name: &str, bound: Duration) -> HvResult<GuestFilesystems> {
        match self.ask_agent(name, "filesystems", bound)? {
            FakeAgent::FilesystemsHung => Err(Self::unresponsive("Guest agent not available for now")),
            FakeAgent::FilesystemsFrozen => Ok(GuestFilesystems { count: 1, frozen: true }),
            _ => Ok(GuestFilesystems { count: 1, frozen: false }),
        }
    }
}
