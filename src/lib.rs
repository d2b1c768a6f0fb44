//! virtguard: a Pacemaker OCF resource agent for libvirt/KVM guests that is a
//! drop-in replacement for `ocf:heartbeat:VirtualDomain`, plus a DRBD gate.

pub mod adopt;
pub(crate) mod atomic_write;
pub mod cli;
pub(crate) mod cluster;
pub mod deadline;
pub mod drbd;
pub(crate) mod exec;
/// For the integration tests only, not an API: tests/support runs its helper
/// programs and finds them on PATH with the agent's own code, so a test's
/// "is this tool there" agrees with the agent's and the bounded runner is
/// written once. Only these items, so the rest of exec stays crate-private
/// and the compiler keeps finding its dead code.
#[doc(hidden)]
pub mod exec_for_tests {
    pub use crate::exec::{find_program, run_command, ExecError, Output};
}
pub mod host;
pub mod hypervisor;
pub mod log;
pub mod ocf;
pub mod vdomain;
