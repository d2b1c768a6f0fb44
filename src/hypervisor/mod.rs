//! The side-effecting backend behind a small interface: the VirtualDomain
//! actions talk to a `Hypervisor`, the real one is libvirt, and tests can
//! substitute the in-memory `FakeHypervisor`.

pub mod domain_xml;
pub mod fake;
pub mod libvirt;
pub mod libvirt_migrate;
pub mod libvirt_raw;
pub mod owner_tag;
pub mod process;
pub mod state;

use std::fmt;
use std::path::Path;

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
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(HvErrorKind::Other, message)
    }
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HvError {}

pub type HvResult<T> = Result<T, HvError>;

/// Shutdown methods accepted by `shutdown_mode`, as libvirt flag bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownModes(pub u32);

impl ShutdownModes {
    pub const NAMES: [(&'static str, u32); 5] =
        [("acpi", 1), ("agent", 2), ("initctl", 4), ("signal", 8), ("paravirt", 16)];

    /// Parses `acpi`, `agent,acpi`, ... (commas or spaces); empty means the default.
    pub fn parse(text: &str) -> Result<ShutdownModes, String> {
        let mut bits = 0;
        for word in text.split([',', ' ']).map(str::trim).filter(|w| !w.is_empty()) {
            let (_, bit) = Self::NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word))
                .ok_or_else(|| format!("unknown shutdown mode '{word}' (use acpi, agent, initctl, signal or paravirt)"))?;
            bits |= bit;
        }
        Ok(ShutdownModes(bits))
    }
}

pub trait Hypervisor {
    /// The URI actually connected to.
    fn uri(&self) -> String;
    /// `None` when no domain of that name exists.
    fn state(&self, name: &str) -> HvResult<Option<DomainState>>;
    fn is_persistent(&self, name: &str) -> HvResult<bool>;
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
}
