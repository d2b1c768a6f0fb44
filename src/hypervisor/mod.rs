//! The side-effecting backend behind a small interface: the VirtualDomain
//! actions talk to a `Hypervisor`, the real one is libvirt, and tests can
//! substitute the in-memory `FakeHypervisor`.

pub mod domain_xml;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod guest_agent;
mod libvirt;
mod libvirt_error;
mod libvirt_migrate;
mod libvirt_raw;
pub mod migration;
pub mod owner_tag;
pub mod state;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

pub use guest_agent::GuestFilesystems;
pub use migration::{LiveMigration, SharedHypervisor};
pub use state::{DomainState, Health, StateKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HvErrorKind {
    /// The domain does not exist on this hypervisor.
    NoDomain,
    /// The hypervisor cannot be reached (daemon down, socket missing).
    Unreachable,
    /// The operation does not apply to the domain's state (e.g. not running).
    NotRunning,
    Other,
}

/// A failed hypervisor call, with libvirt's own message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvError {
    pub kind: HvErrorKind,
    pub message: String,
}

impl HvError {
    pub fn new(kind: HvErrorKind, message: impl Into<String>) -> Self {
        HvError { kind, message: message.into() }
    }
    /// Any failure without a kind of its own; `{:#}` keeps an anyhow
    /// error's whole chain of context.
    pub fn other(message: impl fmt::Display) -> Self {
        Self::new(HvErrorKind::Other, format!("{message:#}"))
    }
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HvError {}

pub type HvResult<T> = Result<T, HvError>;

/// Connects to the real hypervisor, libvirt, at `uri` (libvirt's default
/// when `None`): one connection per agent call.
pub fn connect(uri: Option<&str>) -> HvResult<impl Hypervisor + Send + Sync> {
    libvirt::LibvirtHypervisor::connect(uri)
}

/// Shutdown methods accepted by `shutdown_mode`, as libvirt flag bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownModes(pub u32);

impl ShutdownModes {
    pub const NAMES: [(&'static str, u32); 5] =
        [("acpi", 1), ("agent", 2), ("initctl", 4), ("signal", 8), ("paravirt", 16)];

    /// Parses `acpi`, `agent,acpi`, ... (commas or spaces); empty means the default.
    pub fn parse(text: &str) -> anyhow::Result<ShutdownModes> {
        let mut bits = 0;
        for word in text.split([',', ' ']).map(str::trim).filter(|w| !w.is_empty()) {
            let (_, bit) = Self::NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word))
                .with_context(|| format!("unknown shutdown mode '{word}' (use acpi, agent, initctl, signal or paravirt)"))?;
            bits |= bit;
        }
        Ok(ShutdownModes(bits))
    }
}

/// Everything the actions do to guests. Migration is in [`LiveMigration`],
/// which every hypervisor implements too.
pub trait Hypervisor: LiveMigration {
    /// The URI actually connected to.
    fn uri(&self) -> String;
    /// `None` when no domain of that name exists.
    fn state(&self, name: &str) -> HvResult<Option<DomainState>>;
    /// Creates and starts a transient domain from its XML.
    fn create_transient(&self, xml: &str) -> HvResult<()>;
    fn define(&self, xml: &str) -> HvResult<()>;
    fn start_defined(&self, name: &str) -> HvResult<()>;
    fn undefine(&self, name: &str) -> HvResult<()>;
    /// Asks the guest to shut down; returns once the request is sent.
    fn shutdown(&self, name: &str, modes: ShutdownModes) -> HvResult<()>;
    fn destroy(&self, name: &str) -> HvResult<()>;
    /// Saves the RAM state to `path`; the domain stops.
    fn save(&self, name: &str, path: &Path) -> HvResult<()>;
    fn restore(&self, path: &Path) -> HvResult<()>;
    /// The definition libvirt would use for the next boot.
    fn inactive_xml(&self, name: &str) -> HvResult<String>;
    /// Starts the storage pool if inactive, refreshes it if active.
    fn ensure_pool_active(&self, pool: &str) -> HvResult<()>;
    fn ensure_network_active(&self, network: &str) -> HvResult<()>;
    /// Names of the domains that are active (running, paused, ...) here.
    fn active_domains(&self) -> HvResult<Vec<String>>;
    /// The resource instance the domain's owner tag names (`owner_tag`).
    fn owner(&self, name: &str) -> HvResult<Option<String>>;
    /// Tags the running domain with its owner, live: the tag migrates with it.
    fn set_owner(&self, name: &str, instance: &str) -> HvResult<()>;
    /// Whether the domain's QEMU guest agent answers `guest-ping` within
    /// `bound` (whole seconds, at least one; libvirt's first exchange with
    /// an agent it is not yet in step with takes up to 5 s whatever the
    /// bound). An agent that answers with an error has answered. A backend
    /// without a path to the guest agent errs, which reads as a silent agent.
    fn guest_agent_ping(&self, name: &str, bound: Duration) -> HvResult<()> {
        let _ = bound;
        Err(HvError::other(format!("{name}: no guest agent path through {}", self.uri())))
    }
    /// The guest's file systems as its agent sees them (two agent commands,
    /// each within `bound`): listing them makes the guest kernel walk its
    /// mounts and stat each one.
    fn guest_filesystems(&self, name: &str, bound: Duration) -> HvResult<GuestFilesystems> {
        let _ = bound;
        Err(HvError::other(format!("{name}: no guest agent path through {}", self.uri())))
    }
}
