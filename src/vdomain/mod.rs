//! The VirtualDomain actions, and the fixed pipeline that leads to them:
//! usage and meta-data before any check, then parameters, validation with
//! the probe/monitor/stop rules, then the action.

pub(crate) mod config_file;
pub(crate) mod cow;
pub(crate) mod guest_health;
pub(crate) mod migrate_from;
pub(crate) mod missing_config;
pub(crate) mod monitor;
pub(crate) mod observe;
pub(crate) mod ownership;
pub(crate) mod scripts;
pub(crate) mod start;
pub(crate) mod state_files;
pub(crate) mod stop;
pub(crate) mod systemd;
pub(crate) mod utilization;
pub(crate) mod validate;
pub(crate) mod watchdog;

#[cfg(test)]
mod tests;

pub mod migration;

use std::path::PathBuf;

use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::{HvError, Hypervisor};
use crate::ocf::dispatch::{finish, invalid_environment, USAGE};
use crate::ocf::params::{ParamType, TABLE};
use crate::ocf::{env, metadata, Action, Deadline, OcfError, OcfEnv, OcfResult, OcfStatus, Params};

use state_files::{StateFiles, StateKey};
use validate::{check_node, check_params, config_path, load_config, param_errors, LoadedConfig};

/// Everything an action needs about the resource it manages, built once per
/// call by the dispatcher after validation.
pub struct Vm<'a> {
    pub action: Action,
    pub params: &'a Params,
    pub env: &'a OcfEnv,
    /// The deadline the action works to: the operation's, less the share
    /// kept for the watchdog (`watchdog::working_deadline`).
    pub deadline: Deadline,
    /// Ends when Pacemaker would kill the operation (`CRM_meta_timeout`).
    /// Only waiting for a signalled emulator to die may run past `deadline`
    /// (see `watchdog::signal_deadline`).
    pub operation: Deadline,
    pub config_path: PathBuf,
    /// The config file's text as read at the start of the call.
    pub config_xml: String,
    pub domain: DomainConfig,
    /// The local hypervisor, or why it cannot be reached.
    pub hv: Result<&'a dyn Hypervisor, HvError>,
}

impl<'a> Vm<'a> {
    pub fn name(&self) -> &str {
        &self.domain.name
    }

    pub fn files(&self) -> StateFiles {
        StateFiles::new(&self.env.state_dir, &self.env.instance)
    }

    /// The same call for another domain of this resource (an old name
    /// remembered after the config was replaced).
    pub fn for_domain(&self, name: &str) -> Vm<'a> {
        Vm {
            action: self.action,
            params: self.params,
            env: self.env,
            deadline: self.deadline,
            operation: self.operation,
            config_path: self.config_path.clone(),
            config_xml: String::new(),
            domain: DomainConfig::named(name),
            hv: self.hv.clone(),
        }
    }
}

/// The agent entry point: `action` is argv[1] as Pacemaker passes it.
pub fn run_agent(action: Option<&str>) -> OcfStatus {
    let env = OcfEnv::from_process();
    crate::log::init(&env.instance);
    let Some(word) = action else {
        eprintln!("{USAGE}");
        return OcfStatus::ErrArgs;
    };
    let Some(action) = Action::parse(word) else {
        eprintln!("{USAGE}");
        return finish(Err(OcfError::new(OcfStatus::ErrUnimplemented, format!("unknown action '{word}'"))));
    };
    match action {
        Action::MetaData => {
            print!("{}", metadata::render());
            OcfStatus::Success
        }
        Action::Usage => {
            println!("{USAGE}");
            OcfStatus::Success
        }
        _ => finish(run_action(action, &env, env::params_from_process())),
    }
}

fn run_action(action: Action, env: &OcfEnv, params: Result<Params, Vec<crate::ocf::params::ParamError>>) -> OcfResult {
    if action == Action::Stop {
        return stop_whatever_we_can(env, params.map_err(|e| param_errors(&e)));
    }
    let probe = env.is_probe(action);
    let invalid = |e: OcfError| invalid_environment(action, probe, e);
    let params = params.map_err(|e| invalid(param_errors(&e)))?;
    let path = config_path(&params).map_err(invalid)?;
    check_params(&params).map_err(invalid)?;
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(unreadable) => return missing_config::run(action, env, &params, &path, unreadable),
    };
    check_node(&params, &config).map_err(invalid)?;
    guest_health::check_config(&params, env, action, &config.domain.name, &config.xml).map_err(invalid)?;
    if action == Action::ValidateAll {
        validate::check_drbd_fencing(&params, &config, &env.deadline(action))?;
        return Ok(OcfStatus::Success);
    }
    with_vm(action, env, &params, config, |vm| match action {
        Action::Start => start::start(vm),
        Action::Monitor | Action::Status => monitor::monitor(vm),
        Action::MigrateFrom => migrate_from::migrate_from(vm),
        Action::MigrateTo => migrate_to(vm),
        Action::Stop | Action::MetaData | Action::ValidateAll | Action::Usage => unreachable!("handled above"),
    })
}

/// Arms the watchdog for the operation, connects to libvirt (once per call)
/// and runs `act` on the resulting context.
fn with_vm(
    action: Action,
    env: &OcfEnv,
    params: &Params,
    config: LoadedConfig,
    act: impl FnOnce(&Vm) -> OcfResult,
) -> OcfResult {
    let deadline = env.deadline(action);
    let files = StateFiles::new(&env.state_dir, &env.instance);
    let emulator = config.domain.emulator.clone().or_else(|| files.read(StateKey::Emulator)).map(PathBuf::from);
    watchdog::arm(action, deadline, config.domain.name.clone(), emulator);
    let hv = crate::hypervisor::connect(params.hypervisor.as_deref());
    let vm = Vm {
        action,
        params,
        env,
        deadline: watchdog::working_deadline(&deadline),
        operation: deadline,
        config_path: config.path,
        config_xml: config.xml,
        domain: config.domain,
        hv: hv.as_ref().map(|h| h as &dyn Hypervisor).map_err(Clone::clone),
    };
    act(&vm)
}

/// Stop never gives up on a broken environment: it stops the domain named by
/// the config and, when the config is gone or names another domain, the one
/// this resource runs here (remembered under HA_RSCTMP, or else found by its
/// owner tag). Only when none is known can nothing be running: success.
fn stop_whatever_we_can(env: &OcfEnv, params: Result<Params, OcfError>) -> OcfResult {
    let params = params.unwrap_or_else(|e| {
        tracing::warn!("{}; stopping with default settings", e.reason);
        text_params_only()
    });
    let remembered = StateFiles::new(&env.state_dir, &env.instance).read(StateKey::Domain);
    let (config, others) = match config_path(&params).and_then(|p| load_config(&p)) {
        Ok(config) => {
            let old = remembered.filter(|old| *old != config.domain.name);
            if let Some(old) = &old {
                tracing::warn!("config {} now names {}; stopping {old} too, which this resource ran here", config.path.display(), config.domain.name);
            }
            (config, old)
        }
        Err(e) => {
            let found = remembered.map(|name| (name, "which this resource runs here")).or_else(|| {
                let budget = env.deadline(Action::Stop).fraction(0.3).remaining();
                missing_config::tagged_here_within(params.hypervisor.as_deref(), &env.instance, budget)
                    .map(|name| (name, "which carries this resource's owner tag"))
            });
            let Some((name, why)) = found else {
                tracing::info!("{}; no guest of this resource is known here: it cannot be running", e.reason);
                return Ok(OcfStatus::Success);
            };
            tracing::warn!("{}; stopping {name}, {why}", e.reason);
            let path = params.config.clone().unwrap_or_default().into();
            (LoadedConfig { path, xml: String::new(), domain: DomainConfig::named(&name) }, None)
        }
    };
    with_vm(Action::Stop, env, &params, config, |vm| {
        if let Some(old) = &others {
            stop::stop(&vm.for_domain(old))?;
        }
        stop::stop(vm)
    })
}

/// The parameters with only the free-text ones taken from the environment
/// (they cannot be malformed) and every other one at its default.
fn text_params_only() -> Params {
    Params::from_lookup(|name| {
        let text = TABLE.iter().any(|p| p.name == name && p.kind == ParamType::String);
        if text {
            std::env::var(format!("OCF_RESKEY_{name}")).ok()
        } else {
            None
        }
    })
    .expect("defaults and free text always parse")
}

fn migrate_to(vm: &Vm) -> OcfResult {
    let hv = vm.hv.as_ref().map_err(|e| OcfError::generic(format!("cannot migrate {}: {e}", vm.name())))?;
    // The target recognises the guest by its tag even without the config.
    if let Err(e) = ownership::ensure_tagged(vm, *hv, true) {
        tracing::warn!("cannot tag {} with its owner before the migration: {e}", vm.name());
    }
    // Saved while the domain is still here: after the move it is the target's.
    config_file::save_if_asked(vm);
    migration::migrate_to(vm)
}


/// The DRBD gate for this domain's disks (or the `drbd_resources` named).
pub fn drbd_gate(vm: &Vm, purpose: &crate::drbd::Purpose) -> OcfResult<()> {
    let devices: Vec<&str> = vm.domain.block_devices().collect();
    let params = crate::drbd::GateParams {
        allow_diskless: vm.params.drbd_allow_diskless,
        require_fencing: vm.params.drbd_require_fencing,
    };
    crate::drbd::gate_domain(&devices, vm.params.drbd_resources.as_deref(), purpose, &params, &vm.deadline)
    .map_err(drbd_refusal)
}

/// A DRBD gate error as the action reports it: missing DRBD tools are
/// OCF_ERR_INSTALLED (the node cannot run the guest), the rest a failure.
fn drbd_refusal(e: crate::drbd::DrbdError) -> OcfError {
    let status = if e.tools_missing() { OcfStatus::ErrInstalled } else { OcfStatus::ErrGeneric };
    OcfError::new(status, e.to_string())
}
