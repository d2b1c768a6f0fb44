//! The fake's domain store: what is defined and running, and the calls
//! that create, start, stop, save and look at domains.

use std::path::Path;
use std::time::Duration;

use super::super::domain_xml::DomainConfig;
use super::super::owner_tag::owner_in_domain_xml;
use super::super::state::{reason, DomainState, StateKind};
use super::super::{GuestFilesystems, HvError, HvErrorKind, HvResult, Hypervisor, ShutdownModes};
use super::{running, Call, FakeHypervisor, World};

#[derive(Debug, Clone)]
pub struct FakeDomain {
    pub state: DomainState,
    pub persistent: bool,
    pub xml: String,
    /// Whether a shutdown request stops it (a firmware-only guest ignores ACPI).
    pub obeys_shutdown: bool,
    /// The owner tag: read from the XML it was created from, or set live.
    pub owner: Option<String>,
}

impl FakeHypervisor {
    pub fn with_domain(self, name: &str, state: DomainState, persistent: bool) -> Self {
        self.world().domains.insert(
            name.to_owned(),
            FakeDomain {
                state,
                persistent,
                xml: format!("<domain><name>{name}</name></domain>"),
                obeys_shutdown: true,
                owner: None,
            },
        );
        self
    }

    pub fn ignoring_shutdown(self) -> Self {
        let mut w = self.world();
        w.obeys_shutdown_on_create = false;
        for d in w.domains.values_mut() {
            d.obeys_shutdown = false;
        }
        drop(w);
        self
    }

    /// Created and started domains end up in `state` instead of running.
    pub fn booting_into(self, state: DomainState) -> Self {
        self.world().boot_state = Some(state);
        self
    }


    pub fn script_states(&self, states: impl IntoIterator<Item = HvResult<Option<DomainState>>>) {
        self.world().scripted.extend(states);
    }

    pub fn set_state(&self, name: &str, state: DomainState) {
        if let Some(d) = self.world().domains.get_mut(name) {
            d.state = state;
        }
    }

    pub fn set_inactive_xml(&self, name: &str, xml: &str) {
        if let Some(d) = self.world().domains.get_mut(name) {
            d.xml = xml.to_owned();
        }
    }

    /// Puts an owner tag into the definition of domain `name`, whatever its
    /// state (`set_owner` tags only a running domain, as libvirt does live).
    pub fn tag_definition(&self, name: &str, owner: &str) {
        if let Some(d) = self.world().domains.get_mut(name) {
            d.owner = Some(owner.to_owned());
        }
    }


    pub fn domain(&self, name: &str) -> Option<FakeDomain> {
        self.world().domains.get(name).cloned()
    }

    pub(super) fn no_domain(name: &str) -> HvError {
        HvError::new(HvErrorKind::NoDomain, format!("Domain not found: no domain with matching name '{name}'"))
    }

    fn not_running() -> HvError {
        HvError::new(HvErrorKind::NotRunning, "Requested operation is not valid: domain is not running")
    }

    /// Takes the domain off: a transient one disappears, a persistent one is shut off.
    fn power_off(&self, name: &str, reason: u32) {
        power_off(&mut self.world(), name, reason);
    }

    pub(super) fn active(&self, name: &str) -> HvResult<FakeDomain> {
        match self.domain(name) {
            Some(d) if d.state.is_active() => Ok(d),
            Some(_) => Err(Self::not_running()),
            None => Err(Self::no_domain(name)),
        }
    }
}

pub(super) fn power_off(w: &mut World, name: &str, reason: u32) {
    let persistent = w.domains.get(name).is_some_and(|d| d.persistent);
    if persistent {
        if let Some(d) = w.domains.get_mut(name) {
            d.state = DomainState::new(StateKind::Shutoff, reason);
        }
    } else {
        w.domains.remove(name);
    }
}

impl Hypervisor for FakeHypervisor {
    fn uri(&self) -> String {
        self.world().uri.clone()
    }

    fn state(&self, name: &str) -> HvResult<Option<DomainState>> {
        self.enter(Call::State(name.to_owned()))?;
        if let Some(next) = self.world().scripted.pop_front() {
            return next;
        }
        Ok(self.domain(name).map(|d| d.state))
    }


    fn create_transient(&self, xml: &str) -> HvResult<()> {
        let config = DomainConfig::parse(xml).map_err(HvError::other)?;
        self.enter(Call::Create(config.name.clone()))?;
        let mut w = self.world();
        if w.domains.contains_key(&config.name) {
            return Err(HvError::other(format!("operation failed: domain '{}' already exists", config.name)));
        }
        let obeys_shutdown = w.obeys_shutdown_on_create;
        let state = w.boot_state.unwrap_or_else(running);
        w.domains.insert(
            config.name,
            FakeDomain { state, persistent: false, xml: xml.to_owned(), obeys_shutdown, owner: owner_in_domain_xml(xml) },
        );
        Ok(())
    }

    fn define(&self, xml: &str) -> HvResult<()> {
        let config = DomainConfig::parse(xml).map_err(HvError::other)?;
        self.enter(Call::Define(config.name.clone()))?;
        let mut w = self.world();
        let obeys_shutdown = w.obeys_shutdown_on_create;
        let entry = w.domains.entry(config.name).or_insert(FakeDomain {
            state: DomainState::new(StateKind::Shutoff, 0),
            persistent: true,
            xml: xml.to_owned(),
            obeys_shutdown,
            owner: None,
        });
        entry.persistent = true;
        entry.xml = xml.to_owned();
        entry.owner = owner_in_domain_xml(xml);
        Ok(())
    }

    fn start_defined(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Start(name.to_owned()))?;
        let mut w = self.world();
        let state = w.boot_state.unwrap_or_else(running);
        let d = w.domains.get_mut(name).ok_or_else(|| Self::no_domain(name))?;
        d.state = state;
        Ok(())
    }

    fn undefine(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Undefine(name.to_owned()))?;
        let mut w = self.world();
        let d = w.domains.get_mut(name).ok_or_else(|| Self::no_domain(name))?;
        if d.state.is_active() {
            d.persistent = false;
        } else {
            w.domains.remove(name);
        }
        Ok(())
    }

    fn shutdown(&self, name: &str, modes: ShutdownModes) -> HvResult<()> {
        self.enter(Call::Shutdown(name.to_owned(), modes))?;
        let domain = self.active(name)?;
        // Like libvirt: a paused guest cannot act on a shutdown request.
        if domain.state.kind == StateKind::Paused {
            return Err(Self::not_running());
        }
        if domain.obeys_shutdown {
            self.power_off(name, reason::SHUTOFF_SHUTDOWN);
        }
        Ok(())
    }

    fn destroy(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Destroy(name.to_owned()))?;
        self.active(name)?;
        self.power_off(name, reason::SHUTOFF_DESTROYED);
        Ok(())
    }

    fn save(&self, name: &str, path: &Path) -> HvResult<()> {
        self.enter(Call::Save(name.to_owned(), path.to_path_buf()))?;
        let d = self.active(name)?;
        self.world().saved.insert(path.to_path_buf(), d);
        std::fs::write(path, b"fake saved state").map_err(|e| HvError::other(e.to_string()))?;
        self.power_off(name, reason::SHUTOFF_SAVED);
        Ok(())
    }

    fn restore(&self, path: &Path) -> HvResult<()> {
        self.enter(Call::Restore(path.to_path_buf()))?;
        let mut w = self.world();
        let mut d = w.saved.remove(path).ok_or_else(|| HvError::other(format!("cannot read {}", path.display())))?;
        d.state = DomainState::new(StateKind::Running, reason::RUNNING_RESTORED);
        let name = DomainConfig::parse(&d.xml).map(|c| c.name).map_err(HvError::other)?;
        w.domains.insert(name, d);
        Ok(())
    }

    fn inactive_xml(&self, name: &str) -> HvResult<String> {
        self.enter(Call::InactiveXml(name.to_owned()))?;
        self.domain(name).map(|d| d.xml).ok_or_else(|| Self::no_domain(name))
    }

    fn ensure_pool_active(&self, pool: &str) -> HvResult<()> {
        self.enter(Call::EnsurePool(pool.to_owned()))
    }

    fn ensure_network_active(&self, network: &str) -> HvResult<()> {
        self.enter(Call::EnsureNetwork(network.to_owned()))
    }

    fn active_domains(&self) -> HvResult<Vec<String>> {
        self.enter(Call::ActiveDomains)?;
        Ok(self.world().domains.iter().filter(|(_, d)| d.state.is_active()).map(|(n, _)| n.clone()).collect())
    }

    fn owner(&self, name: &str) -> HvResult<Option<String>> {
        self.enter(Call::Owner(name.to_owned()))?;
        self.domain(name).map(|d| d.owner).ok_or_else(|| Self::no_domain(name))
    }

    fn set_owner(&self, name: &str, instance: &str) -> HvResult<()> {
        self.enter(Call::SetOwner(name.to_owned(), instance.to_owned()))?;
        self.active(name)?;
        if let Some(d) = self.world().domains.get_mut(name) {
            d.owner = Some(instance.to_owned());
        }
        Ok(())
    }

    fn guest_agent_ping(&self, name: &str, bound: Duration) -> HvResult<()> {
        self.ask_agent(name, "ping", bound).map(drop)
    }

    fn guest_filesystems(&self, name: &str, bound: Duration) -> HvResult<GuestFilesystems> {
        self.agent_filesystems(name, bound)
    }
}
