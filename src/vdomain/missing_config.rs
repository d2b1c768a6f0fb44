//! monitor, probe and migrate_from when the config file cannot be read
//! (shared storage not mounted here, yet or any more). The config used to
//! be the only way to know the domain, so a running guest looked stopped and
//! Pacemaker started it a second time elsewhere. Now the domain is known
//! from what this node remembered, or from the owner tag the guest carries,
//! and a guest that runs here is reported as running-but-failed: Pacemaker
//! then stops it here (stop finds it the same way) before it starts it
//! anywhere else. Only when neither knows a guest do the usual
//! invalid-environment rules apply (a probe answers "not running").
//!
//! Why 1 and not 0 with a warning: a 0 keeps Pacemaker managing a guest
//! this node can neither restart nor migrate (every later start, migrate
//! and validation here fails), and the failure shows only later. A 7 is
//! what made the classic agent run a guest twice (resource-agents issues
//! 1231 and 856).
//!
//! migrate_from of a guest that arrived tagged with this resource fails
//! rather than completes because a node without the config can neither
//! restart, save nor migrate the guest again; after a failed migrate_from
//! Pacemaker stops the resource on both nodes and starts it where it can,
//! and the stop here finds the guest it remembered.

use std::path::Path;

use crate::host::Host;
use crate::hypervisor::migration::within;
use crate::ocf::outcome::invalid_environment;
use crate::ocf::{Action, OcfEnv, OcfError, OcfResult};
use crate::vdomain::Params;

use super::observe::{observe, Observation};
use super::state_files::{StateFiles, StateKey};
use super::ownership;
use super::vm::{with_vm, LoadedConfig, Vm};

/// Runs `action` without a config; `unreadable` says why it cannot be read.
pub fn run(action: Action, env: &OcfEnv, params: &Params, path: &Path, unreadable: OcfError, host: &Host) -> OcfResult {
    let probe = env.is_probe(action);
    if !matches!(action, Action::Monitor | Action::Status | Action::MigrateFrom) {
        return Err(invalid_environment(action, probe, unreadable));
    }
    let Some(name) = known_domain(action, env, params, host) else {
        return Err(invalid_environment(action, probe, unreadable));
    };
    let config = LoadedConfig::named(path.to_path_buf(), &name);
    with_vm(action, env, params, config, host, |vm| match action {
        Action::MigrateFrom => Err(arrived(vm)),
        _ => monitor(vm, probe, unreadable),
    })
}

/// The domain of this resource on this node: remembered, or else the one
/// whose owner tag names the resource (migrate_from waits a while for it
/// to arrive).
fn known_domain(action: Action, env: &OcfEnv, params: &Params, host: &Host) -> Option<String> {
    if let Some(name) = StateFiles::new(&env.state_dir, &env.instance).read(StateKey::Domain) {
        return Some(name);
    }
    // Asked before the watchdog is armed: a frozen libvirtd must not hold
    // the action past its deadline, so the whole look-up is bounded.
    let deadline = host.deadline(env, action);
    let budget = deadline.fraction(0.6).remaining();
    let uri = params.hypervisor.clone();
    let instance = env.instance.clone();
    let wait = deadline.fraction(0.5);
    let host = host.clone();
    let found = within(budget, move || {
        let hv = host.connect(uri.as_deref())?;
        Ok(if action == Action::MigrateFrom {
            ownership::wait_for_owned(&*hv, &instance, &wait)
        } else {
            ownership::tagged_here(&*hv, &instance)
        })
    });
    found.unwrap_or_else(|e| {
        tracing::warn!("cannot look for a guest tagged with {}: {e}", env.instance);
        None
    })
}

/// "vm1 runs here but its config /x/vm1.xml is missing", or why it is unusable.
fn config_problem(vm: &Vm) -> String {
    let path = vm.config_path.display();
    if vm.config_path.as_os_str().is_empty() {
        "its config parameter is not set".to_owned()
    } else if !vm.config_path.is_absolute() {
        format!("its config {path} is not an absolute path")
    } else if vm.config_path.exists() {
        format!("its config {path} cannot be used")
    } else {
        format!("its config {path} is missing")
    }
}

/// monitor/probe: the known domain runs here (or is active, failed): that
/// is a failure to recover from, never "not running". Not active: the usual
/// rules (probe 7, recurring monitor 1).
pub fn monitor(vm: &Vm, probe: bool, unreadable: OcfError) -> OcfResult {
    let active = match observe(vm, &vm.deadline.fraction(0.5)) {
        Observation::Libvirt { state, .. } => state.is_some_and(|s| s.is_active()),
        Observation::ProcessAlive { .. } => true,
        Observation::ProcessGone { .. } => false,
    };
    if !active {
        return Err(invalid_environment(vm.action, probe, unreadable));
    }
    if let Err(e) = ownership::remember(vm) {
        tracing::error!("{}", e.reason);
    }
    tracing::error!("{}", unreadable.reason);
    Err(OcfError::generic(format!("{} runs here but {}", vm.name(), config_problem(vm))))
}

/// migrate_from: the guest arrived but this node cannot manage it. The
/// migration fails; it is remembered first, so that the stop Pacemaker runs
/// here next finds and stops it (never left running on both nodes).
pub fn arrived(vm: &Vm) -> OcfError {
    let source = vm.env.migrate_source.as_deref().unwrap_or("the source node");
    if let Err(e) = ownership::remember(vm) {
        tracing::error!("{}", e.reason);
    }
    OcfError::generic(format!("{} arrived from {source} but {} here; it must be stopped here", vm.name(), config_problem(vm)))
}
