//! One agent call's context, built once after validation: the resource's
//! parameters and environment, its deadlines, the guest's config, and the
//! hypervisor and host it runs on. Every action takes a [`Vm`].

use std::path::PathBuf;

use crate::host::Host;
use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::{HvError, Hypervisor};
use crate::ocf::{Action, Deadline, OcfEnv, OcfResult};
use crate::vdomain::Params;

use super::state_files::{StateFiles, StateKey};
use super::watchdog;

/// How the agent knows the guest of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// By its config file: the text as read at the start of the call.
    Config(String),
    /// By name alone: the config is gone or names another domain now; the
    /// name was remembered here or found by this resource's owner tag.
    Name,
}

impl Identity {
    /// The config's text, when the guest is known by it.
    pub fn config_text(&self) -> Option<&str> {
        match self {
            Identity::Config(xml) => Some(xml),
            Identity::Name => None,
        }
    }
}

/// The guest's config as the dispatcher found it: read and parsed from its
/// file, or only the name the agent knows the guest by.
pub struct LoadedConfig {
    pub path: PathBuf,
    pub identity: Identity,
    pub domain: DomainConfig,
}

impl LoadedConfig {
    /// Domain `name`, known without its config (which `path` names).
    pub fn named(path: PathBuf, name: &str) -> LoadedConfig {
        LoadedConfig { path, identity: Identity::Name, domain: DomainConfig::named(name) }
    }

    /// The config's text; empty for a guest known by name alone.
    pub fn text(&self) -> &str {
        self.identity.config_text().unwrap_or_default()
    }
}

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
    pub identity: Identity,
    pub domain: DomainConfig,
    /// The local hypervisor, or why it cannot be reached.
    pub hv: Result<&'a dyn Hypervisor, HvError>,
    /// The rest of the node: its processes, its name.
    pub host: &'a Host,
}

impl<'a> Vm<'a> {
    pub fn name(&self) -> &str {
        &self.domain.name
    }

    /// Known by name alone: its config is gone, or names another domain now.
    pub fn known_only_by_name(&self) -> bool {
        self.identity == Identity::Name
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
            identity: Identity::Name,
            domain: DomainConfig::named(name),
            hv: self.hv.clone(),
            host: self.host,
        }
    }
}

/// Arms the watchdog for the operation, connects to libvirt (once per call)
/// and runs `act` on the resulting context.
pub(crate) fn with_vm(
    action: Action,
    env: &OcfEnv,
    params: &Params,
    config: LoadedConfig,
    host: &Host,
    act: impl FnOnce(&Vm) -> OcfResult,
) -> OcfResult {
    with_vm_noting(action, env, params, config, host, None, act)
}

/// [`with_vm`] for a monitor that already knows `problem` with the
/// configuration: the watchdog's answer from the emulator process keeps it.
pub(crate) fn with_vm_noting(
    action: Action,
    env: &OcfEnv,
    params: &Params,
    config: LoadedConfig,
    host: &Host,
    problem: Option<String>,
    act: impl FnOnce(&Vm) -> OcfResult,
) -> OcfResult {
    let deadline = host.deadline(env, action);
    let files = StateFiles::new(&env.state_dir, &env.instance);
    let emulator = config.domain.emulator.clone().or_else(|| files.read(StateKey::Emulator)).map(PathBuf::from);
    if host.watchdog() {
        let watched = watchdog::Watched { domain: config.domain.name.clone(), emulator, processes: host.shared_processes() };
        watchdog::arm(action, deadline, watched, problem);
    }
    let hv = host.connect(params.hypervisor.as_deref());
    let vm = Vm {
        action,
        params,
        env,
        deadline: watchdog::working_deadline(&deadline),
        operation: deadline,
        config_path: config.path,
        identity: config.identity,
        domain: config.domain,
        hv: hv.as_ref().map(|h| &**h as &dyn Hypervisor).map_err(Clone::clone),
        host,
    };
    act(&vm)
}
