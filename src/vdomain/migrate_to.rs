//! migrate_to: what the source does around the live migration itself
//! (`migration`): the guest carries its owner tag to the target, and the
//! config is saved while the domain is still here.

use crate::ocf::{OcfError, OcfResult};

use super::vm::Vm;
use super::{config_file, migration, ownership};

pub fn migrate_to(vm: &Vm) -> OcfResult {
    let hv = vm.hv.as_ref().map_err(|e| OcfError::generic(format!("cannot migrate {}: {e}", vm.name())))?;
    // The target recognises the guest by its tag even without the config.
    if let Err(e) = ownership::ensure_tagged(vm, *hv, true) {
        tracing::warn!("cannot tag {} with its owner before the migration: {e}", vm.name());
    }
    // Saved while the domain is still here: after the move it is the target's.
    config_file::save_if_asked(vm);
    migration::migrate_to(vm)
}
