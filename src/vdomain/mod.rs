//! The VirtualDomain actions.

pub mod migration;

use std::path::PathBuf;

use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::{HvError, Hypervisor};
use crate::ocf::{Action, Deadline, OcfEnv, OcfStatus, Params};

/// Everything an action needs about the resource it manages, built once per
/// call by the dispatcher after validation.
pub struct Vm<'a> {
    pub action: Action,
    pub params: &'a Params,
    pub env: &'a OcfEnv,
    /// Ends when Pacemaker would kill the operation (`CRM_meta_timeout`).
    pub deadline: Deadline,
    pub config_path: PathBuf,
    /// The config file's text as read at the start of the call.
    pub config_xml: String,
    pub domain: DomainConfig,
    /// The local hypervisor, or why it cannot be reached.
    pub hv: Result<&'a dyn Hypervisor, HvError>,
}

impl Vm<'_> {
    pub fn name(&self) -> &str {
        &self.domain.name
    }
}

pub fn run_agent(_action: Option<&str>) -> OcfStatus {
    OcfStatus::ErrUnimplemented
}
