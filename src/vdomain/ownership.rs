//! Which guest belongs to this resource, kept in two places so that it is
//! never lost while the guest can run: the name remembered under
//! `HA_RSCTMP` (this node, this boot) and the owner tag inside the guest's
//! own definition (travels with a live migration; see
//! `hypervisor::owner_tag`). Monitor, probe and stop use them when the
//! config file is gone or names another domain.
//!
//! A start refused because another resource's guest runs here is a
//! configuration error (6), not a soft one: with 1 Pacemaker would try the
//! next node and create the same guest there. A probe or monitor that finds
//! the guest under another resource's tag still says running: "not running"
//! would let Pacemaker start it elsewhere, and "failed" would make it stop a
//! guest that may belong to a resource that still runs it (the tag can also
//! be stale: after a resource is renamed the guest keeps the old tag until
//! it is started again or migrated).

use crate::host::Host;
use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::migration::within;
use crate::hypervisor::{HvError, HvErrorKind, Hypervisor};
use crate::ocf::{Deadline, OcfError, OcfResult};

use super::state_files::{StateFiles, StateKey};
use super::vm::Vm;

/// Remembers the domain (and its emulator, when the config names it) before
/// anything may run. An error, not a warning: without the memory a missing
/// config would make the running guest look stopped.
pub fn remember(vm: &Vm) -> OcfResult<()> {
    let files = vm.files();
    files.write(StateKey::Domain, vm.name()).map_err(|e| {
        OcfError::generic(format!(
            "cannot remember {} in {}: {e}; refusing to run a guest this node could lose track of",
            vm.name(),
            files.path(StateKey::Domain).display()
        ))
    })?;
    if let Some(emulator) = &vm.domain.emulator {
        let _ = files.write(StateKey::Emulator, emulator);
    }
    Ok(())
}

/// The emulator of a config that names none (libvirt picks it): read from
/// libvirt once the domain exists, for the emulator-process fallback.
pub fn remember_emulator_from_libvirt(vm: &Vm) {
    if vm.domain.emulator.is_some() {
        return;
    }
    let emulator = (|| {
        let xml = vm.hv.as_ref().ok()?.inactive_xml(vm.name()).ok()?;
        DomainConfig::parse(&xml).ok()?.emulator
    })();
    if let Some(emulator) = emulator {
        let _ = vm.files().write(StateKey::Emulator, &emulator);
    }
}

/// Forgets the guest: only once it is stopped.
pub fn forget(files: &StateFiles) {
    files.remove(StateKey::Domain);
    files.remove(StateKey::OwnerTagged);
}

/// A guest found running and healthy (monitor, start of a running guest):
/// remember it, and tag it when it carries no tag (the classic agent, or an
/// older virtguard, started it). The tag is looked at once per guest and
/// node; afterwards a cached fact spares the monitor the libvirt call.
/// Failures are logged loudly, never a failure of a guest that runs.
pub fn adopt(vm: &Vm, hv: &dyn Hypervisor) {
    if let Err(e) = remember(vm) {
        tracing::error!("{}", e.reason);
    }
    match ensure_tagged(vm, hv, false) {
        Ok(()) => {}
        Err(e) => tracing::warn!("cannot tag {} with its owner {}: {e}", vm.name(), vm.env.instance),
    }
}

/// Makes sure the running domain carries this resource's tag. A tag of
/// another resource is kept and reported unless `take_over` (migrate_to:
/// Pacemaker just told this resource to move the guest, so it is the one
/// the target must recognise).
pub fn ensure_tagged(vm: &Vm, hv: &dyn Hypervisor, take_over: bool) -> Result<(), HvError> {
    let files = vm.files();
    if files.read(StateKey::OwnerTagged).as_deref() == Some(vm.name()) {
        return Ok(());
    }
    let instance = vm.env.instance.as_str();
    match hv.owner(vm.name())? {
        Some(owner) if owner == instance => {}
        Some(owner) if !take_over => {
            tracing::warn!(
                "{} carries the owner tag of resource {owner}, not {instance}: two resources name the same domain?",
                vm.name()
            );
            return Ok(());
        }
        previous => {
            hv.set_owner(vm.name(), instance)?;
            match previous {
                Some(owner) => tracing::warn!("{} now carries the owner tag of {instance} instead of {owner}", vm.name()),
                None => tracing::info!("tagged {} with its owner {instance}", vm.name()),
            }
        }
    }
    let _ = files.write(StateKey::OwnerTagged, vm.name());
    Ok(())
}

/// start of a domain that already runs here: refused when it carries the
/// tag of another resource. Two resources managing one domain is a
/// configuration error (6): Pacemaker then starts this one nowhere, where a
/// soft error would let it create the same guest on another node.
pub fn refuse_foreign(vm: &Vm, hv: &dyn Hypervisor) -> OcfResult<()> {
    match hv.owner(vm.name()) {
        Ok(Some(owner)) if owner != vm.env.instance => Err(OcfError::configured(format!(
            "{} already runs here under resource {owner}; resource {} cannot manage it too",
            vm.name(),
            vm.env.instance
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind == HvErrorKind::NoDomain => Ok(()),
        Err(e) => Err(OcfError::generic(format!("cannot read the owner of {}: {e}", vm.name()))),
    }
}

/// The config now names another domain than the one this resource runs (or
/// ran) here. While the old one is active that is reported, with both
/// names; the agent never silently follows the new name and loses the old
/// guest. An old domain that no longer runs is forgotten.
pub fn check_renamed(vm: &Vm) -> OcfResult<()> {
    let files = vm.files();
    let Some(old) = files.read(StateKey::Domain).filter(|old| old != vm.name()) else { return Ok(()) };
    let running = match &vm.hv {
        Ok(hv) => match hv.state(&old) {
            Ok(state) => state.is_some_and(|s| s.is_active()),
            // Unknown is not "stopped": keep the memory and report.
            Err(_) => true,
        },
        Err(_) => super::observe::process_of(vm, &old).is_some(),
    };
    if running {
        return Err(OcfError::generic(format!(
            "config {} now names {}, but this resource runs {old} here; stop {old} first",
            vm.config_path.display(),
            vm.name()
        )));
    }
    tracing::warn!("config {} now names {}; forgetting {old}, which no longer runs here", vm.config_path.display(), vm.name());
    forget(&files);
    Ok(())
}

/// The config names a domain that does not run here, yet another domain
/// carrying this resource's owner tag does, and this node does not remember
/// it (HA_RSCTMP was emptied, or an older virtguard started it): the config
/// was replaced. Same answer as [`check_renamed`], and the old domain is
/// remembered from now on, so that the stop Pacemaker sends next finds it.
/// Asked only once the config's domain is known not to run: the steady-state
/// monitor of a running guest makes no extra libvirt call.
pub fn check_renamed_by_tag(vm: &Vm) -> OcfResult<()> {
    let Ok(hv) = &vm.hv else { return Ok(()) };
    let Some(old) = tagged_here(*hv, &vm.env.instance).filter(|old| old != vm.name()) else {
        return Ok(());
    };
    if let Err(e) = vm.files().write(StateKey::Domain, &old) {
        tracing::error!("cannot remember {old}: {e}");
    }
    Err(OcfError::generic(format!(
        "config {} names {}, but {old}, which carries the owner tag of {}, runs here; stop {old} first",
        vm.config_path.display(),
        vm.name(),
        vm.env.instance
    )))
}

/// [`tagged_here`] on a connection of its own, given up after `budget`
/// (stop uses it before the watchdog is armed).
pub fn tagged_here_within(host: &Host, uri: Option<&str>, instance: &str, budget: std::time::Duration) -> Option<String> {
    let uri = uri.map(str::to_owned);
    let owner = instance.to_owned();
    let host = host.clone();
    within(budget, move || Ok(tagged_here(&*host.connect(uri.as_deref())?, &owner))).unwrap_or_else(|e| {
        tracing::warn!("cannot look for a guest tagged with {instance}: {e}");
        None
    })
}

/// The first active domain here tagged with `instance` (one, normally).
pub fn tagged_here(hv: &dyn Hypervisor, instance: &str) -> Option<String> {
    match owned_by(hv, instance) {
        Ok(names) => {
            if names.len() > 1 {
                tracing::error!("several domains here carry the owner tag of {instance}: {names:?}");
            }
            names.into_iter().next()
        }
        Err(e) => {
            tracing::warn!("cannot look for a guest tagged with {instance}: {e}");
            None
        }
    }
}

/// Active domains here whose tag names `instance`.
pub fn owned_by(hv: &dyn Hypervisor, instance: &str) -> Result<Vec<String>, HvError> {
    let mut owned = Vec::new();
    for name in hv.active_domains()? {
        match hv.owner(&name) {
            Ok(Some(owner)) if owner == instance => owned.push(name),
            Ok(_) => {}
            // Gone since the listing.
            Err(e) if e.kind == HvErrorKind::NoDomain => {}
            Err(e) => tracing::warn!("cannot read the owner tag of {name}: {e}"),
        }
    }
    Ok(owned)
}

/// Waits (within `deadline`) for a domain tagged with `instance` to be
/// active here: a guest arriving by live migration.
pub fn wait_for_owned(hv: &dyn Hypervisor, instance: &str, deadline: &Deadline) -> Option<String> {
    deadline.poll(std::time::Duration::from_millis(250), || match owned_by(hv, instance) {
        Ok(names) => names.into_iter().next(),
        Err(e) => {
            tracing::warn!("cannot list the domains: {e}");
            None
        }
    })
}
