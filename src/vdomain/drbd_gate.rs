//! The DRBD gate as the actions ask it: for the guest's own disks (or the
//! `drbd_resources` named), with the answer in OCF terms.

use crate::drbd::{DrbdError, GateParams, Purpose};
use crate::ocf::{OcfError, OcfResult, OcfStatus};

use super::params::Params;
use super::vm::Vm;

/// The DRBD gate for this domain's disks (or the `drbd_resources` named).
pub fn check(vm: &Vm, purpose: &Purpose) -> OcfResult<()> {
    let devices: Vec<&str> = vm.domain.block_devices().collect();
    crate::drbd::gate_domain(vm.host.drbd(), &devices, vm.params.drbd_resources.as_deref(), purpose, &gate_params(vm.params), &vm.deadline)
    .map_err(refusal)
}

/// The operator's DRBD choices among the agent's parameters.
pub(crate) fn gate_params(params: &Params) -> GateParams {
    GateParams {
        allow_diskless: params.drbd_allow_diskless,
        require_fencing: params.drbd_require_fencing,
        dual_primary: params.drbd_dual_primary,
    }
}

/// A DRBD gate error as the action reports it: missing DRBD tools are
/// OCF_ERR_INSTALLED (the node cannot run the guest), the rest a failure.
pub(crate) fn refusal(e: DrbdError) -> OcfError {
    let status = if e.tools_missing() { OcfStatus::ErrInstalled } else { OcfStatus::ErrGeneric };
    OcfError::new(status, e.to_string())
}
