//! migrate_from (target side): the migration was driven by the source;
//! confirm within the deadline that the domain runs here and is healthy.

use std::time::{Duration, SystemTime};

use crate::ocf::{OcfResult, OcfStatus};

use super::vm::Vm;
use super::{config_file, drbd_gate, guest_health, monitor, ownership, utilization};

pub fn migrate_from(vm: &Vm) -> OcfResult {
    let source = vm.env.migrate_source.as_deref().unwrap_or("the source node");
    drbd_gate::check(vm, &crate::drbd::Purpose::MigrateTarget { source: source.to_owned() })?;
    // As for start: a domain running here under another resource's tag is
    // that resource's guest, never taken over (nor remembered) by a
    // migration that claims it arrived.
    if let Ok(hv) = &vm.hv {
        ownership::refuse_foreign(vm, *hv)?;
    }
    // Before the wait: should it fail, the stop that follows must still find the guest.
    ownership::remember(vm)?;
    // A node that only ever received guests by migration (one just rebooted:
    // the drop-in lives in /run) needs the shutdown ordering as much as one that started them.
    vm.host.services().order_guests_before_libvirt(&vm.deadline);
    monitor::wait_until_healthy(vm, &vm.deadline.before(Duration::from_millis(500)), false).map_err(|mut e| {
        e.reason = format!("migration from {source}: {}", e.reason);
        e
    })?;
    guest_health::after_start(vm, &vm.deadline.before(Duration::from_millis(500)), SystemTime::now)
        .map_err(|mut e| {
            e.reason = format!("migration from {source}: {}", e.reason);
            e
        })?;
    ownership::remember_emulator_from_libvirt(vm);
    config_file::save_if_asked(vm);
    utilization::publish(vm, &vm.deadline);
    tracing::info!("{} arrived from {source}", vm.name());
    Ok(OcfStatus::Success)
}
