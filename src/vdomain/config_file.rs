//! The domain's definition saved back to its config file
//! (`save_config_on_stop`), written atomically, and never over a config
//! that names another domain.

use std::fs;
use std::path::Path;

use anyhow::Context;

use crate::hypervisor::Hypervisor;

use crate::atomic_write::atomic_write;
use super::vm::Vm;

/// Writes the domain's inactive definition to `config` when it differs from
/// what is there. Returns whether the file changed.
pub fn save_if_changed(hv: &dyn Hypervisor, name: &str, config: &Path) -> anyhow::Result<bool> {
    let xml = hv.inactive_xml(name).with_context(|| format!("cannot read the definition of {name}"))?;
    if fs::read_to_string(config).is_ok_and(|current| current == xml) {
        return Ok(false);
    }
    atomic_write(config, xml.as_bytes())
        .with_context(|| format!("cannot save the definition of {name} to {}", config.display()))?;
    tracing::info!("saved the definition of {name} to {}", config.display());
    Ok(true)
}

/// `save_config_on_stop` (or `sync_config_on_stop`): writes the definition
/// back when it changed. A failure is logged; it never fails the action.
pub fn save_if_asked(vm: &Vm) {
    if !(vm.params.save_config_on_stop || vm.params.sync_config_on_stop) {
        return;
    }
    // A domain known only by name (config gone, or naming another domain
    // now) is not what the config path holds: never write it there.
    if vm.known_only_by_name() {
        return;
    }
    if let Ok(hv) = &vm.hv {
        if let Err(e) = save_if_changed(*hv, vm.name(), &vm.config_path) {
            tracing::warn!("{e:#}");
        }
    }
}
