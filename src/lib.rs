//! virtguard: a Pacemaker OCF resource agent for libvirt/KVM guests that is a
//! drop-in replacement for `ocf:heartbeat:VirtualDomain`, plus a DRBD gate.

pub mod adopt;
pub mod cli;
pub mod cluster;
pub mod drbd;
pub mod exec;
pub mod hypervisor;
pub mod log;
pub mod ocf;
pub mod vdomain;
