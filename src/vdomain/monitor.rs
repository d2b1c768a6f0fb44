//! monitor/status, and the wait for a healthy domain that start and
//! migrate_from share.

use std::time::{Duration, SystemTime};

use crate::hypervisor::Health;
use crate::ocf::outcome::invalid_environment;
use crate::ocf::{Deadline, OcfError, OcfResult, OcfStatus};

use super::observe::{observe, Observation};
use super::vm::Vm;
use super::{config_file, guest_health, ownership, scripts, utilization};

pub fn monitor(vm: &Vm) -> OcfResult {
    let probe = vm.env.is_probe(vm.action);
    ownership::check_renamed(vm)?;
    // Leave room after the state query for the scripts and the bookkeeping.
    let observation = observe(vm, &vm.deadline.fraction(0.5));
    match observation {
        Observation::Libvirt { health: Health::Running, .. } | Observation::ProcessAlive { .. } => {
            if let Observation::Libvirt { state, .. } = observation {
                guest_health::monitor_check(vm, state, SystemTime::now())?;
            }
            scripts::run_all(vm.params, &vm.deadline.before(Duration::from_millis(500)))?;
            if matches!(observation, Observation::Libvirt { .. }) {
                after_healthy(vm);
            } else if let Err(e) = ownership::remember(vm) {
                tracing::error!("{}", e.reason);
            }
            drbd_health(vm)
        }
        Observation::Libvirt { health: Health::Stopped, .. } => {
            ownership::check_renamed_by_tag(vm)?;
            Err(OcfError::not_running(format!("{} is not running", vm.name())))
        }
        Observation::Libvirt { health: Health::Failed(reason), state } => {
            let active = state.is_some_and(|s| s.is_active());
            if !active {
                ownership::check_renamed_by_tag(vm)?;
            }
            if probe && !active {
                Err(OcfError::not_running(format!("{} is not running: {reason}", vm.name())))
            } else {
                Err(OcfError::generic(format!("{}: {reason}", vm.name())))
            }
        }
        Observation::Libvirt { health: Health::Transitional, .. } => {
            Err(OcfError::generic(format!("libvirt reports no state for {}", vm.name())))
        }
        Observation::ProcessGone { why } => {
            Err(OcfError::not_running(format!("{} is not running ({why})", vm.name())))
        }
    }
}

/// monitor and probe when validation found `invalid` (a parameter, the
/// node, the monitor depth) but the config still names the guest. Whether
/// the guest runs is what Pacemaker acts on, so that is looked at first,
/// exactly as the valid monitor does, and probe and recurring monitor give
/// the same answer for a guest that runs:
/// - it runs and is healthy: OCF_DEGRADED (190) with the problem as exit
///   reason. Pacemaker counts 190 as running and recovers nothing, and
///   crm_mon shows the reason. A failure (1) here would make Pacemaker stop
///   the guest and start it again, and that start fails the same validation:
///   an outage caused by, say, a typo in a migration option. The checks the
///   invalid setting is about (monitor scripts, guest agent) are not run:
///   the operator must fix the configuration, which is what 190 says;
/// - it is active but failed, or libvirt keeps reporting no state: 1, as
///   with valid parameters;
/// - it does not run: the usual invalid-environment rules (probe 7,
///   recurring monitor 1).
pub fn monitor_despite(vm: &Vm, invalid: OcfError) -> OcfResult {
    let probe = vm.env.is_probe(vm.action);
    ownership::check_renamed(vm)?;
    let observation = observe(vm, &vm.deadline.fraction(0.5));
    match &observation {
        Observation::Libvirt { health: Health::Running, .. } | Observation::ProcessAlive { .. } => {}
        Observation::Libvirt { health: Health::Failed(reason), state } if state.is_some_and(|s| s.is_active()) => {
            return Err(OcfError::generic(format!("{}: {reason}; besides, {}", vm.name(), invalid.reason)));
        }
        Observation::Libvirt { health: Health::Transitional, .. } => {
            return Err(OcfError::generic(format!("libvirt reports no state for {}", vm.name())));
        }
        Observation::Libvirt { .. } => {
            ownership::check_renamed_by_tag(vm)?;
            return Err(invalid_environment(vm.action, probe, invalid));
        }
        Observation::ProcessGone { .. } => return Err(invalid_environment(vm.action, probe, invalid)),
    }
    match &vm.hv {
        Ok(hv) if matches!(observation, Observation::Libvirt { .. }) => ownership::adopt(vm, *hv),
        _ => {
            if let Err(e) = ownership::remember(vm) {
                tracing::error!("{}", e.reason);
            }
        }
    }
    // DRBD trouble under the guest is a failure whatever else is wrong.
    drbd_health(vm)?;
    Err(OcfError::new(OcfStatus::Degraded, format!("{} runs here, but {}", vm.name(), invalid.reason)))
}

/// The DRBD volumes under a running guest. Lost quorum or suspended I/O
/// means the guest's writes fail or hang: a failure. A lost local disk while
/// a connected peer is UpToDate keeps the guest writing over the network:
/// degraded (Pacemaker shows it, nothing moves). State that cannot be read
/// is logged, never a failure of a guest that runs.
fn drbd_health(vm: &Vm) -> OcfResult {
    let devices: Vec<&str> = vm.domain.block_devices().collect();
    let explicit = vm.params.drbd_resources.as_deref();
    let findings = match crate::drbd::monitor_findings(vm.host.drbd(), &devices, explicit, &vm.deadline.before(Duration::from_millis(300))) {
        Ok(findings) => findings,
        Err(e) => {
            tracing::warn!("{e}");
            return Ok(OcfStatus::Success);
        }
    };
    if let Some(failure) = findings.iter().find(|f| f.is_failure()) {
        return Err(OcfError::generic(format!("{}: {}", vm.name(), failure.message)));
    }
    if findings.is_empty() {
        Ok(OcfStatus::Success)
    } else {
        Ok(OcfStatus::Degraded)
    }
}

/// Bookkeeping of a healthy domain: its memory and owner tag, utilization,
/// the config file (when asked). None of it fails the monitor (DRBD health,
/// which may, is `drbd_health`).
fn after_healthy(vm: &Vm) {
    if let Ok(hv) = &vm.hv {
        ownership::adopt(vm, *hv);
    }
    utilization::publish(vm, &vm.deadline.before(Duration::from_millis(500)));
    config_file::save_if_asked(vm);
}

/// Waits until the domain runs and its monitor scripts pass. A domain that
/// fails (paused on I/O error, crashed) ends the wait at once; an absent one
/// does too unless `absent_is_fatal` is false (migrate_from: not arrived yet).
pub fn wait_until_healthy(vm: &Vm, deadline: &Deadline, absent_is_fatal: bool) -> OcfResult<()> {
    let mut step = Duration::from_millis(100);
    let mut last;
    loop {
        let observation = observe(vm, deadline);
        match &observation {
            Observation::Libvirt { health: Health::Running, .. } => {
                match scripts::run_all(vm.params, deadline) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.reason,
                }
            }
            Observation::Libvirt { health: Health::Failed(reason), .. } => {
                return Err(OcfError::generic(format!("{}: {reason}", vm.name())));
            }
            Observation::Libvirt { health: Health::Stopped, .. } if absent_is_fatal => {
                return Err(OcfError::generic(format!("{} stopped right after it was started", vm.name())));
            }
            Observation::Libvirt { health, state } => {
                last = match state {
                    Some(s) => format!("domain {s}"),
                    None => format!("{health:?}").to_lowercase(),
                }
            }
            Observation::ProcessAlive { why, .. } | Observation::ProcessGone { why } => last = why.clone(),
        }
        if !deadline.sleep(step) {
            return Err(OcfError::generic(format!(
                "{} did not become healthy within {}s: {last}",
                vm.name(),
                deadline.total().as_secs()
            )));
        }
        step = (step * 2).min(Duration::from_secs(1));
    }
}
