//! The fixed pipeline of a VirtualDomain call: usage and meta-data before
//! any check, then parameters, validation with the probe/monitor/stop rules,
//! then the action. The top of vdomain: nothing below imports it.

use std::path::PathBuf;

use crate::host::Host;
use crate::ocf::outcome::{finish, invalid_environment};
use crate::ocf::params::ParamType;
use crate::ocf::{metadata, Action, OcfError, OcfEnv, OcfResult, OcfStatus};

use super::params::{Params, TABLE, VIRTUAL_DOMAIN};
use super::state_files::{StateFiles, StateKey};
use super::validate::{self, check_node, check_params, config_path, load_config, param_errors};
use super::vm::{with_vm, with_vm_noting, LoadedConfig};
use super::{guest_health, migrate_from, migrate_to, missing_config, monitor, ownership, start, stop};

/// The agent entry point: `action` is argv[1] as Pacemaker passes it.
pub fn run_agent(action: Option<&str>) -> OcfStatus {
    let env = OcfEnv::from_process();
    crate::log::init(&env.instance);
    let usage = format!("usage: {} {{{}}}", VIRTUAL_DOMAIN.name, VIRTUAL_DOMAIN.actions);
    let Some(word) = action else {
        eprintln!("{usage}");
        return OcfStatus::ErrArgs;
    };
    let Some(action) = Action::parse(word) else {
        eprintln!("{usage}");
        return finish(Err(OcfError::new(OcfStatus::ErrUnimplemented, format!("unknown action '{word}'"))));
    };
    match action {
        Action::MetaData => {
            print!("{}", metadata::render(&VIRTUAL_DOMAIN));
            OcfStatus::Success
        }
        Action::Usage => {
            println!("{usage}");
            OcfStatus::Success
        }
        _ => {
            let raw = |name: &str| std::env::var(format!("OCF_RESKEY_{name}")).ok();
            finish(run_action(action, &env, &raw, &Host::real()))
        }
    }
}

/// One agent call after usage and meta-data: `raw(name)` is the text of
/// `OCF_RESKEY_<name>`.
pub(crate) fn run_action(action: Action, env: &OcfEnv, raw: &dyn Fn(&str) -> Option<String>, host: &Host) -> OcfResult {
    if action == Action::ReloadAgent {
        return reload_agent(env, raw, host);
    }
    let params = Params::from_lookup(raw);
    if action == Action::Stop {
        return stop_whatever_we_can(env, params.map_err(|e| param_errors(&e)), raw, host);
    }
    if matches!(action, Action::Monitor | Action::Status) {
        return monitor_whatever_is_wrong(action, env, params.map_err(|e| param_errors(&e)), raw, host);
    }
    let probe = env.is_probe(action);
    let invalid = |e: OcfError| invalid_environment(action, probe, e);
    let params = params.map_err(|e| invalid(param_errors(&e)))?;
    let path = config_path(&params).map_err(invalid)?;
    check_params(&params).map_err(invalid)?;
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(unreadable) => return missing_config::run(action, env, &params, &path, unreadable, host),
    };
    check_node(&params, &config).map_err(invalid)?;
    guest_health::check_config(&params, env, action, &config.domain.name, config.text()).map_err(invalid)?;
    if action == Action::ValidateAll {
        validate::check_drbd_fencing(host.drbd(), &params, &config, &host.deadline(env, action))?;
        return Ok(OcfStatus::Success);
    }
    with_vm(action, env, &params, config, host, |vm| match action {
        Action::Start => start::start(vm),
        Action::MigrateFrom => migrate_from::migrate_from(vm),
        Action::MigrateTo => migrate_to::migrate_to(vm),
        Action::Monitor
        | Action::Status
        | Action::Stop
        | Action::MetaData
        | Action::ValidateAll
        | Action::ReloadAgent
        | Action::Usage => {
            unreachable!("handled above")
        }
    })
}

/// monitor and probe look for the guest before they judge the parameters:
/// a parameter that does not stop the agent from finding the guest (a
/// migration option, the shutdown mode, the monitor depth...) must never
/// make a running guest look stopped (issue 23). Only the config parameter
/// and the hypervisor URI find the guest, and both are free text, so they
/// are known even when another parameter does not parse. Whatever else is
/// wrong is reported by `monitor::monitor_despite`: running-but-degraded
/// when the guest runs, the invalid-environment rules when it does not.
///
/// Why 190 (degraded) and not 1: after `crm_resource --refresh` a probe
/// answering 1 makes Pacemaker recover the guest, stop then start, and the
/// start fails the same validation: an outage for a typo in a migration
/// option. Not a silent 0 either: the typo must show in `crm_mon`.
fn monitor_whatever_is_wrong(
    action: Action,
    env: &OcfEnv,
    params: Result<Params, OcfError>,
    raw: &dyn Fn(&str) -> Option<String>,
    host: &Host,
) -> OcfResult {
    let mut problems = Vec::new();
    let params = params.unwrap_or_else(|e| {
        problems.push(e);
        text_params_only(raw)
    });
    let path = match config_path(&params) {
        Ok(path) => path,
        // No usable config path: the guest can still be known here.
        Err(unset) => {
            let path = PathBuf::from(params.config.clone().unwrap_or_default());
            return missing_config::run(action, env, &params, &path, unset, host);
        }
    };
    problems.extend(check_params(&params).err());
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(unreadable) => return missing_config::run(action, env, &params, &path, unreadable, host),
    };
    problems.extend(check_node(&params, &config).err());
    problems.extend(guest_health::check_config(&params, env, action, &config.domain.name, config.text()).err());
    let mut problems = problems.into_iter();
    let Some(first) = problems.next() else {
        return with_vm(action, env, &params, config, host, monitor::monitor);
    };
    let invalid = problems.fold(first, |all, next| OcfError::new(all.status, format!("{}; {}", all.reason, next.reason)));
    let problem = Some(invalid.reason.clone());
    with_vm_noting(action, env, &params, config, host, problem, |vm| monitor::monitor_despite(vm, invalid))
}

/// Stop never gives up on a broken environment: it stops the domain named by
/// the config and, when the config is gone or names another domain, the one
/// this resource runs here (remembered under HA_RSCTMP, or else found by its
/// owner tag). Only when none is known can nothing be running: success.
fn stop_whatever_we_can(
    env: &OcfEnv,
    params: Result<Params, OcfError>,
    raw: &dyn Fn(&str) -> Option<String>,
    host: &Host,
) -> OcfResult {
    let params = params.unwrap_or_else(|e| {
        tracing::warn!("{}; stopping with default settings", e.reason);
        text_params_only(raw)
    });
    let remembered = StateFiles::new(&env.state_dir, &env.instance).read(StateKey::Domain);
    let (config, others) = match config_path(&params).and_then(|p| load_config(&p)) {
        Ok(config) => {
            // Not remembered here: a domain carrying this resource's tag
            // under another name is the guest of a replaced config.
            let remembered = remembered.or_else(|| {
                let budget = host.deadline(env, Action::Stop).fraction(0.3).remaining();
                ownership::tagged_here_within(host, params.hypervisor.as_deref(), &env.instance, budget)
            });
            let old = remembered.filter(|old| *old != config.domain.name);
            if let Some(old) = &old {
                tracing::warn!("config {} now names {}; stopping {old} too, which this resource ran here", config.path.display(), config.domain.name);
            }
            (config, old)
        }
        Err(e) => {
            let found = remembered.map(|name| (name, "which this resource runs here")).or_else(|| {
                let budget = host.deadline(env, Action::Stop).fraction(0.3).remaining();
                ownership::tagged_here_within(host, params.hypervisor.as_deref(), &env.instance, budget)
                    .map(|name| (name, "which carries this resource's owner tag"))
            });
            let Some((name, why)) = found else {
                tracing::info!("{}; no guest of this resource is known here: it cannot be running", e.reason);
                return Ok(OcfStatus::Success);
            };
            tracing::warn!("{}; stopping {name}, {why}", e.reason);
            let path = params.config.clone().unwrap_or_default().into();
            (LoadedConfig::named(path, &name), None)
        }
    };
    with_vm(Action::Stop, env, &params, config, host, |vm| {
        if let Some(old) = &others {
            stop::stop(&vm.for_domain(old))?;
        }
        stop::stop(vm)
    })
}

/// reload-agent (OCF 1.1): Pacemaker calls it instead of a stop and a start
/// when only reloadable parameters changed, on the node where the guest
/// runs. There is nothing to apply: the agent keeps no state in memory
/// between calls and every action reads its parameters afresh, and what
/// HA_RSCTMP remembers holds no reloadable parameter (utilization holds what
/// was published, which the next monitor compares with what the new values
/// want; the guest agent's memory holds times). The new values are judged
/// as validate-all judges them, and a bad one is a warning, not the answer:
/// Pacemaker records reload-agent as the guest's start, and any other
/// answer than 0 (a failure, even 190) marks it failed and has it stopped,
/// an outage for a typo in a setting that only a later migration or stop
/// reads. The monitor that Pacemaker runs right after reports a malformed
/// value as degraded (190) with the same reason, as after a reprobe
/// (README, "Exit codes"), and a start or a migration refuses what
/// validate-all refuses.
fn reload_agent(env: &OcfEnv, raw: &dyn Fn(&str) -> Option<String>, host: &Host) -> OcfResult {
    match run_action(Action::ValidateAll, env, raw, host) {
        Ok(_) => tracing::info!("reload-agent: the next actions use {}", reloadable_given(raw)),
        Err(refused) => tracing::warn!(
            "reload-agent: {} (the running guest is left alone; a start or a migration refuses this)",
            refused.reason
        ),
    }
    Ok(OcfStatus::Success)
}

/// The reloadable parameters `raw` sets, as `name=value` (what the
/// operator changed is among them), or "the defaults".
fn reloadable_given(raw: &dyn Fn(&str) -> Option<String>) -> String {
    let given: Vec<String> = TABLE
        .iter()
        .filter(|p| p.reloadable)
        .filter_map(|p| raw(p.name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(|v| format!("{}={v}", p.name)))
        .collect();
    if given.is_empty() {
        "the defaults of the reloadable parameters".into()
    } else {
        given.join(" ")
    }
}

/// The parameters with only the free-text ones taken from `raw` (they
/// cannot be malformed) and every other one at its default.
fn text_params_only(raw: &dyn Fn(&str) -> Option<String>) -> Params {
    Params::from_lookup(|name| {
        let text = TABLE.iter().any(|p| p.name == name && p.kind == ParamType::String);
        if text {
            raw(name)
        } else {
            None
        }
    })
    .expect("defaults and free text always parse")
}
