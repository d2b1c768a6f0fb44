//! An in-memory hypervisor for in-process tests of the decision logic. It is
//! compiled into the library (not behind cfg(test)) so integration tests can
//! use it too. It records every call.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use super::domain_xml::DomainConfig;
use super::owner_tag::owner_in_domain_xml;
use super::state::{DomainState, StateKind};
use super::{HvError, HvErrorKind, HvResult, Hypervisor, ShutdownModes};

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

#[derive(Default)]
struct World {
    domains: BTreeMap<String, FakeDomain>,
    /// States returned by the next `state()` calls, before the real one.
    scripted: VecDeque<HvResult<Option<DomainState>>>,
    saved: BTreeMap<PathBuf, FakeDomain>,
    failures: BTreeMap<&'static str, HvError>,
    calls: Vec<String>,
    obeys_shutdown_on_create: bool,
    /// The state a created or started domain is in (running unless set).
    boot_state: Option<DomainState>,
}

#[derive(Default)]
pub struct FakeHypervisor {
    world: RefCell<World>,
}

pub fn running() -> DomainState {
    DomainState::new(StateKind::Running, 1)
}

impl FakeHypervisor {
    pub fn new() -> Self {
        let fake = Self::default();
        fake.world.borrow_mut().obeys_shutdown_on_create = true;
        fake
    }

    pub fn with_domain(self, name: &str, state: DomainState, persistent: bool) -> Self {
        self.world.borrow_mut().domains.insert(
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
        let mut w = self.world.borrow_mut();
        w.obeys_shutdown_on_create = false;
        for d in w.domains.values_mut() {
            d.obeys_shutdown = false;
        }
        drop(w);
        self
    }

    /// Created and started domains end up in `state` instead of running.
    pub fn booting_into(self, state: DomainState) -> Self {
        self.world.borrow_mut().boot_state = Some(state);
        self
    }

    /// Makes operation `op` ("create", "destroy", "state", ...) fail with `error`.
    pub fn failing(self, op: &'static str, error: HvError) -> Self {
        self.world.borrow_mut().failures.insert(op, error);
        self
    }

    pub fn script_states(&self, states: impl IntoIterator<Item = HvResult<Option<DomainState>>>) {
        self.world.borrow_mut().scripted.extend(states);
    }

    pub fn set_state(&self, name: &str, state: DomainState) {
        if let Some(d) = self.world.borrow_mut().domains.get_mut(name) {
            d.state = state;
        }
    }

    pub fn set_inactive_xml(&self, name: &str, xml: &str) {
        if let Some(d) = self.world.borrow_mut().domains.get_mut(name) {
            d.xml = xml.to_owned();
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.world.borrow().calls.clone()
    }

    pub fn domain(&self, name: &str) -> Option<FakeDomain> {
        self.world.borrow().domains.get(name).cloned()
    }

    fn enter(&self, call: String, op: &'static str) -> HvResult<()> {
        let mut w = self.world.borrow_mut();
        w.calls.push(call);
        match w.failures.get(op) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn no_domain(name: &str) -> HvError {
        HvError::new(HvErrorKind::NoDomain, format!("Domain not found: no domain with matching name '{name}'"))
    }

    /// Takes the domain off: a transient one disappears, a persistent one is shut off.
    fn power_off(&self, name: &str, reason: u32) {
        let mut w = self.world.borrow_mut();
        let persistent = w.domains.get(name).is_some_and(|d| d.persistent);
        if persistent {
            if let Some(d) = w.domains.get_mut(name) {
                d.state = DomainState::new(StateKind::Shutoff, reason);
            }
        } else {
            w.domains.remove(name);
        }
    }

    fn active(&self, name: &str) -> HvResult<FakeDomain> {
        match self.domain(name) {
            Some(d) if d.state.is_active() => Ok(d),
            Some(_) => Err(HvError::new(HvErrorKind::NotRunning, "Requested operation is not valid: domain is not running")),
            None => Err(Self::no_domain(name)),
        }
    }
}

impl Hypervisor for FakeHypervisor {
    fn uri(&self) -> String {
        "fake:///".into()
    }

    fn state(&self, name: &str) -> HvResult<Option<DomainState>> {
        self.enter(format!("state {name}"), "state")?;
        if let Some(next) = self.world.borrow_mut().scripted.pop_front() {
            return next;
        }
        Ok(self.domain(name).map(|d| d.state))
    }

    fn is_persistent(&self, name: &str) -> HvResult<bool> {
        self.domain(name).map(|d| d.persistent).ok_or_else(|| Self::no_domain(name))
    }

    fn create_transient(&self, xml: &str) -> HvResult<()> {
        let config = DomainConfig::parse(xml).map_err(HvError::other)?;
        self.enter(format!("create {}", config.name), "create")?;
        let mut w = self.world.borrow_mut();
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
        self.enter(format!("define {}", config.name), "define")?;
        let mut w = self.world.borrow_mut();
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
        self.enter(format!("start {name}"), "start")?;
        let mut w = self.world.borrow_mut();
        let state = w.boot_state.unwrap_or_else(running);
        let d = w.domains.get_mut(name).ok_or_else(|| Self::no_domain(name))?;
        d.state = state;
        Ok(())
    }

    fn undefine(&self, name: &str) -> HvResult<()> {
        self.enter(format!("undefine {name}"), "undefine")?;
        let mut w = self.world.borrow_mut();
        let d = w.domains.get_mut(name).ok_or_else(|| Self::no_domain(name))?;
        if d.state.is_active() {
            d.persistent = false;
        } else {
            w.domains.remove(name);
        }
        Ok(())
    }

    fn shutdown(&self, name: &str, modes: ShutdownModes) -> HvResult<()> {
        self.enter(format!("shutdown {name} modes={}", modes.0), "shutdown")?;
        let domain = self.active(name)?;
        // Like libvirt: a paused guest cannot act on a shutdown request.
        if domain.state.kind == StateKind::Paused {
            return Err(HvError::new(HvErrorKind::NotRunning, "Requested operation is not valid: domain is not running"));
        }
        if domain.obeys_shutdown {
            self.power_off(name, 1);
        }
        Ok(())
    }

    fn destroy(&self, name: &str) -> HvResult<()> {
        self.enter(format!("destroy {name}"), "destroy")?;
        self.active(name)?;
        self.power_off(name, 2);
        Ok(())
    }

    fn save(&self, name: &str, path: &Path) -> HvResult<()> {
        self.enter(format!("save {name} {}", path.display()), "save")?;
        let d = self.active(name)?;
        self.world.borrow_mut().saved.insert(path.to_path_buf(), d);
        std::fs::write(path, b"fake saved state").map_err(|e| HvError::other(e.to_string()))?;
        self.power_off(name, 5);
        Ok(())
    }

    fn restore(&self, path: &Path) -> HvResult<()> {
        self.enter(format!("restore {}", path.display()), "restore")?;
        let mut w = self.world.borrow_mut();
        let mut d = w.saved.remove(path).ok_or_else(|| HvError::other(format!("cannot read {}", path.display())))?;
        d.state = DomainState::new(StateKind::Running, 3);
        let name = DomainConfig::parse(&d.xml).map(|c| c.name).map_err(HvError::other)?;
        w.domains.insert(name, d);
        Ok(())
    }

    fn inactive_xml(&self, name: &str) -> HvResult<String> {
        self.enter(format!("inactive_xml {name}"), "inactive_xml")?;
        self.domain(name).map(|d| d.xml).ok_or_else(|| Self::no_domain(name))
    }

    fn ensure_pool_active(&self, pool: &str) -> HvResult<()> {
        self.enter(format!("pool {pool}"), "pool")
    }

    fn ensure_network_active(&self, network: &str) -> HvResult<()> {
        self.enter(format!("network {network}"), "network")
    }

    fn active_domains(&self) -> HvResult<Vec<String>> {
        self.enter("list".into(), "list")?;
        Ok(self.world.borrow().domains.iter().filter(|(_, d)| d.state.is_active()).map(|(n, _)| n.clone()).collect())
    }

    fn owner(&self, name: &str) -> HvResult<Option<String>> {
        self.enter(format!("owner {name}"), "owner")?;
        self.domain(name).map(|d| d.owner).ok_or_else(|| Self::no_domain(name))
    }

    fn set_owner(&self, name: &str, instance: &str) -> HvResult<()> {
        self.enter(format!("set_owner {name} {instance}"), "set_owner")?;
        self.active(name)?;
        if let Some(d) = self.world.borrow_mut().domains.get_mut(name) {
            d.owner = Some(instance.to_owned());
        }
        Ok(())
    }
}
