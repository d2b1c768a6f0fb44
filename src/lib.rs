//! virtguard: a Pacemaker OCF resource agent for libvirt/KVM guests that is a
//! drop-in replacement for `ocf:heartbeat:VirtualDomain`, plus a DRBD gate.

pub mod adopt;
pub mod cli;
pub(crate) mod cluster;
pub mod deadline;
pub mod drbd;
pub(crate) mod exec;
pub mod hypervisor;
pub mod log;
pub mod ocf;
pub mod vdomain;
