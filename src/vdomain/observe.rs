//! Where the domain stands: asked of libvirt, or, when libvirt cannot
//! answer, read from the emulator process among the node's processes.

use std::path::PathBuf;
use std::time::Duration;

use crate::host::emulator::{find_emulator, EmulatorProcess};
use crate::hypervisor::state::classify;
use crate::hypervisor::{DomainState, Health, HvError, HvErrorKind};
use crate::ocf::Deadline;

use super::state_files::StateKey;
use super::vm::Vm;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Libvirt { health: Health, state: Option<DomainState> },
    /// libvirt did not answer; this emulator process runs the domain.
    ProcessAlive { process: EmulatorProcess, why: String },
    /// libvirt did not answer and no emulator process runs the domain.
    ProcessGone { why: String },
}

/// The emulator image to match: the config's, or the one cached at start.
pub fn emulator_hint(vm: &Vm) -> Option<PathBuf> {
    vm.domain.emulator.clone().map(PathBuf::from).or_else(|| vm.files().read(StateKey::Emulator).map(PathBuf::from))
}

/// The emulator process running domain `name`, by the process table alone.
pub fn process_of(vm: &Vm, name: &str) -> Option<EmulatorProcess> {
    find_emulator(vm.host.processes(), name, None)
}

/// The emulator process of this call's domain.
pub fn emulator_of(vm: &Vm) -> Option<EmulatorProcess> {
    find_emulator(vm.host.processes(), vm.name(), emulator_hint(vm).as_deref())
}

/// Asks libvirt, retrying "no state" and passing errors until `deadline`;
/// falls back to the emulator process when libvirt is unreachable or keeps
/// failing.
pub fn observe(vm: &Vm, deadline: &Deadline) -> Observation {
    let hv = match &vm.hv {
        Ok(hv) => *hv,
        Err(e) => return from_processes(vm, e),
    };
    let mut last_error: Option<HvError> = None;
    let mut last_state = None;
    let answer = deadline.poll(Duration::from_millis(200), || match hv.state(vm.name()) {
        Ok(state) => {
            last_state = state;
            match classify(state) {
                Health::Transitional => None,
                health => Some(Observation::Libvirt { health, state }),
            }
        }
        Err(e) if e.kind == HvErrorKind::Unreachable => Some(from_processes(vm, &e)),
        Err(e) => {
            tracing::warn!("libvirt: cannot read the state of {}: {e}", vm.name());
            last_error = Some(e);
            None
        }
    });
    if let Some(answer) = answer {
        return answer;
    }
    match last_error {
        Some(e) => from_processes(vm, &e),
        None => Observation::Libvirt { health: Health::Transitional, state: last_state },
    }
}

fn from_processes(vm: &Vm, error: &HvError) -> Observation {
    let why = format!("libvirt at {} did not answer ({error})", vm.params.hypervisor.as_deref().unwrap_or("the default URI"));
    match emulator_of(vm) {
        Some(process) => {
            tracing::warn!("{why}; emulator pid {} of {} is alive", process.pid, vm.name());
            Observation::ProcessAlive { process, why }
        }
        None => {
            tracing::warn!("{why}; no emulator process of {} exists", vm.name());
            Observation::ProcessGone { why }
        }
    }
}
