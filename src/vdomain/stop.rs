//! stop: must succeed, in time, whatever state things are in: a failed stop
//! gets the node fenced. Graceful shutdown for a budget, then destroy; with
//! libvirtd unreachable, stop the emulator process directly.

use std::time::Duration;

use crate::host::emulator::terminate;
use crate::hypervisor::{HvErrorKind, Hypervisor, ShutdownModes};
use crate::ocf::{Deadline, OcfError, OcfResult, OcfStatus};

use super::observe::{emulator_of, observe, Observation};
use super::start::snapshot_file;
use super::vm::Vm;
use super::{config_file, ownership, watchdog};

/// Time kept for destroy after the graceful attempt: a sixth of the
/// timeout, at least 3 s and at most 15 s.
pub fn destroy_reserve(total: Duration) -> Duration {
    (total / 6).clamp(Duration::from_secs(3), Duration::from_secs(15))
}

pub fn stop(vm: &Vm) -> OcfResult {
    let result = stop_domain(vm);
    if result.is_ok() {
        ownership::forget(&vm.files());
        if vm.params.sync_config_on_stop {
            if let Err(e) = vm.host.services().push_config(&vm.config_path.to_string_lossy(), &vm.deadline.before(Duration::from_millis(500))) {
                tracing::warn!("csync2 could not distribute {}: {e}", vm.config_path.display());
            }
        }
    }
    result
}

fn stop_domain(vm: &Vm) -> OcfResult {
    let name = vm.name();
    match observe(vm, &vm.deadline.fraction(0.15)) {
        Observation::Libvirt { state: None, .. } => {
            tracing::info!("{name} is not defined here: already stopped");
            return Ok(OcfStatus::Success);
        }
        Observation::Libvirt { state: Some(s), .. } if !s.is_active() => {
            tracing::info!("{name} is already stopped ({s})");
            return Ok(OcfStatus::Success);
        }
        Observation::ProcessGone { .. } => return Ok(OcfStatus::Success),
        Observation::ProcessAlive { process, why } => return kill_emulator(vm, process.pid, &why),
        Observation::Libvirt { .. } => {}
    }
    let hv = match &vm.hv {
        Ok(hv) => *hv,
        Err(e) => return kill_by_process(vm, &e.to_string()),
    };
    // While the domain still exists: a transient one is gone once stopped.
    config_file::save_if_asked(vm);
    if vm.params.force_stop {
        return destroy(vm, hv);
    }
    if let Some(dir) = &vm.params.snapshot {
        let file = snapshot_file(dir, name);
        match hv.save(name, &file) {
            Ok(()) => {
                tracing::info!("saved {name} to {}", file.display());
                return Ok(OcfStatus::Success);
            }
            Err(e) => tracing::warn!("cannot save {name} to {}: {e}; shutting it down instead", file.display()),
        }
    }
    let graceful = vm.deadline.before(destroy_reserve(vm.deadline.total()));
    if shutdown_gracefully(vm, hv, &graceful) {
        return Ok(OcfStatus::Success);
    }
    destroy(vm, hv)
}

/// Requests a shutdown (again every few seconds: an early request can be
/// lost while the guest boots) until the domain is off or the budget is
/// spent. False when it is still active: then it must be destroyed.
fn shutdown_gracefully(vm: &Vm, hv: &dyn Hypervisor, budget: &Deadline) -> bool {
    let name = vm.name();
    let modes = vm.params.shutdown_mode.as_deref().map(ShutdownModes::parse).transpose().ok().flatten().unwrap_or_default();
    let is_off = || match hv.state(name) {
        Ok(None) => true,
        Ok(Some(s)) => !s.is_active(),
        Err(_) => false,
    };
    let clock = budget.clock();
    let mut next_request = clock.now();
    let mut refused = false;
    let stopped = budget.poll(Duration::from_millis(200), || {
        if clock.now() >= next_request {
            match hv.shutdown(name, modes) {
                Ok(()) => tracing::info!("requested a graceful shutdown of {name} (modes {:#x})", modes.0),
                // A paused guest cannot shut itself down; libvirt says "not running".
                Err(e) if matches!(e.kind, HvErrorKind::NoDomain | HvErrorKind::NotRunning) => {
                    if is_off() {
                        return Some(());
                    }
                    tracing::warn!("libvirt refuses a graceful shutdown of {name}: {e}");
                    refused = true;
                    return Some(());
                }
                Err(e) => tracing::warn!("shutdown request for {name} failed: {e}"),
            }
            next_request += Duration::from_secs(5);
        }
        is_off().then_some(())
    });
    if stopped.is_some() && !refused {
        tracing::info!("{name} shut down gracefully after {:.1}s", budget.elapsed().as_secs_f64());
        true
    } else {
        if !refused {
            tracing::warn!("{name} did not shut down within {:.1}s; destroying it", budget.total().as_secs_f64());
        }
        false
    }
}

fn destroy(vm: &Vm, hv: &dyn Hypervisor) -> OcfResult {
    let name = vm.name();
    match hv.destroy(name) {
        Ok(()) => tracing::info!("destroyed {name}"),
        Err(e) if matches!(e.kind, HvErrorKind::NoDomain | HvErrorKind::NotRunning) => {}
        Err(e) if e.kind == HvErrorKind::Unreachable => return kill_by_process(vm, &e.to_string()),
        Err(e) => tracing::warn!("destroy of {name} failed: {e}"),
    }
    let gone = vm.deadline.before(Duration::from_millis(300)).poll(Duration::from_millis(100), || match hv.state(name) {
        Ok(None) => Some(true),
        Ok(Some(s)) if !s.is_active() => Some(true),
        Err(e) if e.kind == HvErrorKind::Unreachable => Some(false),
        _ => None,
    });
    match gone {
        Some(true) => Ok(OcfStatus::Success),
        _ => kill_by_process(vm, "destroy did not stop the domain"),
    }
}

fn kill_by_process(vm: &Vm, why: &str) -> OcfResult {
    match emulator_of(vm) {
        Some(process) => kill_emulator(vm, process.pid, why),
        None => {
            tracing::info!("{why}; no emulator process of {} exists: stopped", vm.name());
            Ok(OcfStatus::Success)
        }
    }
}

fn kill_emulator(vm: &Vm, pid: i32, why: &str) -> OcfResult {
    tracing::warn!("{why}; stopping {} by signalling its emulator (pid {pid})", vm.name());
    if terminate(vm.host.processes(), pid, &watchdog::signal_deadline(&vm.operation)) {
        Ok(OcfStatus::Success)
    } else {
        Err(OcfError::generic(format!("emulator pid {pid} of {} survived SIGKILL", vm.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroy_reserve_scales_with_the_timeout() {
        assert_eq!(destroy_reserve(Duration::from_secs(90)), Duration::from_secs(15));
        assert_eq!(destroy_reserve(Duration::from_secs(30)), Duration::from_secs(5));
        assert_eq!(destroy_reserve(Duration::from_secs(6)), Duration::from_secs(3));
        assert_eq!(destroy_reserve(Duration::from_secs(600)), Duration::from_secs(15));
    }
}
