//! start: restore a saved state, or create the domain from its config
//! (define + start in copy-on-write mode), then wait until it is healthy.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::hypervisor::{owner_tag, Health, Hypervisor};
use crate::ocf::{OcfError, OcfResult, OcfStatus};

use super::observe::{observe, Observation};
use crate::atomic_write::atomic_write;
use super::vm::Vm;
use super::{cow, drbd_gate, guest_health, monitor, ownership, utilization};

pub fn snapshot_file(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(dir).join(format!("{name}.state"))
}

pub fn start(vm: &Vm) -> OcfResult {
    let hv = vm.hv.as_ref().map_err(|e| OcfError::generic(format!("cannot start {}: {e}", vm.name())))?;
    ownership::check_renamed(vm)?;
    match observe(vm, &vm.deadline.fraction(0.2)) {
        Observation::Libvirt { health: Health::Running, .. } => {
            ownership::refuse_foreign(vm, *hv)?;
            tracing::info!("{} is already running", vm.name());
            ownership::adopt(vm, *hv);
            return Ok(OcfStatus::Success);
        }
        Observation::Libvirt { health: Health::Failed(reason), state } if state.is_some_and(|s| s.is_active()) => {
            return Err(OcfError::generic(format!("{} is active but {reason}; it must be stopped first", vm.name())));
        }
        _ => {}
    }
    // Never a second instance of this resource's guest under the old name.
    ownership::check_renamed_by_tag(vm)?;
    vm.host.services().order_guests_before_libvirt(&vm.deadline);
    drbd_gate::check(vm, &crate::drbd::Purpose::Start)?;
    if vm.params.start_resources {
        start_pools_and_networks(vm, *hv)?;
    }

    // Remembered before anything runs: a start that fails half way, or a
    // config that disappears, must not leave a guest nobody knows of.
    ownership::remember(vm)?;
    let Some(config_xml) = vm.identity.config_text() else {
        return Err(OcfError::generic(format!("{} is known here by name only: there is no config to start it from", vm.name())));
    };
    let tagged_xml = owner_tag::tag_domain_xml(config_xml, &vm.env.instance)
        .map_err(|e| OcfError::generic(format!("cannot add the owner tag to {}: {e}", vm.config_path.display())))?;
    let restored = match &vm.params.snapshot {
        Some(dir) => restore_snapshot(vm, *hv, &snapshot_file(dir, vm.name()))?,
        None => false,
    };
    if !restored {
        ensure_undefined(vm, *hv)?;
        if vm.params.backingfile.is_some() {
            let fresh_overlay = cow::prepare_overlay(vm.params, &vm.config_path, &vm.deadline)?;
            hv.define(&tagged_xml).map_err(|e| failed("define", vm, e))?;
            if fresh_overlay {
                cow::copy_in(vm.params, vm.name(), &hv.uri(), &vm.deadline)?;
            }
            hv.start_defined(vm.name()).map_err(|e| failed("start", vm, e))?;
        } else {
            hv.create_transient(&tagged_xml).map_err(|e| failed("start", vm, e))?;
        }
    }
    // A restored guest carries the tag it was saved with, or none.
    if let Err(e) = ownership::ensure_tagged(vm, *hv, restored) {
        tracing::warn!("cannot tag {} with its owner: {e}", vm.name());
    }
    ownership::remember_emulator_from_libvirt(vm);
    monitor::wait_until_healthy(vm, &vm.deadline.before(Duration::from_millis(500)), true)?;
    guest_health::after_start(vm, &vm.deadline.before(Duration::from_millis(500)), SystemTime::now)?;
    utilization::publish(vm, &vm.deadline);
    tracing::info!("{} started", vm.name());
    Ok(OcfStatus::Success)
}

fn failed(what: &str, vm: &Vm, error: crate::hypervisor::HvError) -> OcfError {
    OcfError::generic(format!("failed to {what} {}: {error}", vm.name()))
}

/// Restores the saved RAM state; the file is removed once the guest runs
/// from it. A state file that cannot be restored is an error, never skipped:
/// booting afresh would silently throw the saved memory away.
fn restore_snapshot(vm: &Vm, hv: &dyn Hypervisor, file: &std::path::Path) -> OcfResult<bool> {
    if !file.exists() {
        return Ok(false);
    }
    hv.restore(file).map_err(|e| {
        OcfError::generic(format!("failed to restore {} from {}: {e}", vm.name(), file.display()))
    })?;
    if let Err(e) = std::fs::remove_file(file) {
        tracing::warn!("restored {} but cannot remove {}: {e}", vm.name(), file.display());
    }
    tracing::info!("restored {} from {}", vm.name(), file.display());
    Ok(true)
}

/// A start creates a transient domain, which needs the name to be free: a
/// stale inactive definition is removed. libvirt deletes its own copy of the
/// XML on undefine; when that copy is our config file, it is written back.
fn ensure_undefined(vm: &Vm, hv: &dyn Hypervisor) -> OcfResult<()> {
    let Some(state) = hv.state(vm.name()).map_err(|e| failed("look up", vm, e))? else { return Ok(()) };
    if state.is_active() {
        return Err(OcfError::generic(format!("{} is already active ({state})", vm.name())));
    }
    hv.undefine(vm.name()).map_err(|e| failed("undefine the stale definition of", vm, e))?;
    if let (false, Some(config_xml)) = (vm.config_path.exists(), vm.identity.config_text()) {
        atomic_write(&vm.config_path, config_xml.as_bytes())
            .map_err(|e| OcfError::generic(format!("cannot restore {}: {e}", vm.config_path.display())))?;
    }
    tracing::info!("removed the inactive definition of {} before creating it", vm.name());
    Ok(())
}

fn start_pools_and_networks(vm: &Vm, hv: &dyn Hypervisor) -> OcfResult<()> {
    for pool in vm.domain.pools() {
        hv.ensure_pool_active(&pool)
            .map_err(|e| OcfError::generic(format!("cannot start storage pool {pool}: {e}")))?;
    }
    for network in &vm.domain.networks {
        hv.ensure_network_active(network)
            .map_err(|e| OcfError::generic(format!("cannot start network {network}: {e}")))?;
    }
    Ok(())
}
