//! The node's services that an action calls besides libvirt: systemd (the
//! shutdown ordering that keeps guests alive until Pacemaker moved them),
//! Pacemaker's crm_resource (utilization attributes) and csync2 (the config
//! pushed to the other nodes). Behind a trait so that the in-process tests
//! run start and stop without touching the test machine's systemd or CIB.

use crate::cluster;
use crate::deadline::Deadline;
use crate::exec::ExecError;

pub trait Services: Send + Sync {
    /// Before a guest starts or arrives here: a host shutdown stops
    /// Pacemaker before the guests and libvirt (`systemd::ensure_ordering`).
    fn order_guests_before_libvirt(&self, deadline: &Deadline);
    fn set_utilization(&self, instance: &str, attribute: &str, value: &str, deadline: &Deadline) -> Result<(), ExecError>;
    fn delete_utilization(&self, instance: &str, attribute: &str, deadline: &Deadline) -> Result<(), ExecError>;
    /// `csync2 -x path`: the file goes to the other nodes.
    fn push_config(&self, path: &str, deadline: &Deadline) -> Result<(), ExecError>;
}

/// This node's systemd, crm_resource and csync2, each run through `exec`.
pub struct RealServices;

impl Services for RealServices {
    fn order_guests_before_libvirt(&self, deadline: &Deadline) {
        super::systemd::ensure_ordering(deadline)
    }

    fn set_utilization(&self, instance: &str, attribute: &str, value: &str, deadline: &Deadline) -> Result<(), ExecError> {
        cluster::set_utilization(instance, attribute, value, deadline)
    }

    fn delete_utilization(&self, instance: &str, attribute: &str, deadline: &Deadline) -> Result<(), ExecError> {
        cluster::delete_utilization(instance, attribute, deadline)
    }

    fn push_config(&self, path: &str, deadline: &Deadline) -> Result<(), ExecError> {
        cluster::csync2_push(path, deadline)
    }
}
