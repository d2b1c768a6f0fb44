//! What `adopt` asks of the cluster, as typed requests: read the CIB and
//! crm_mon's view, change one meta attribute, switch one provider under the
//! CIB's version, reprobe, run the target agent's validate-all. The binary
//! runs Pacemaker's tools ([`super::pacemaker::Pacemaker`]); the in-process
//! tests run the whole of adopt against a recorded cluster on a manual clock.

use crate::deadline::Clock;
use crate::exec::ExecError;

use super::state::{Cib, CibVersion, Monitor};

/// A change adopt makes through `crm_resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    SetMeta { id: String, name: String, value: String },
    DeleteMeta { id: String, name: String },
    /// Forget the resource's history, so that its (new) agent probes it.
    Refresh { id: String },
}

impl Step {
    pub fn set_meta(id: &str, name: &str, value: &str) -> Step {
        Step::SetMeta { id: id.into(), name: name.into(), value: value.into() }
    }

    pub fn delete_meta(id: &str, name: &str) -> Step {
        Step::DeleteMeta { id: id.into(), name: name.into() }
    }

    /// The `crm_resource` command line that makes this change.
    pub fn command_line(&self) -> Vec<String> {
        let words: Vec<&str> = match self {
            Step::SetMeta { id, name, value } => {
                vec!["crm_resource", "--resource", id, "--meta", "--set-parameter", name, "--parameter-value", value]
            }
            Step::DeleteMeta { id, name } => vec!["crm_resource", "--resource", id, "--meta", "--delete-parameter", name],
            Step::Refresh { id } => vec!["crm_resource", "--refresh", "--resource", id],
        };
        words.into_iter().map(str::to_owned).collect()
    }
}

/// The compare-and-swap of one primitive's provider: the XPath matches only
/// while the CIB still has the version that was read, and the CIB manager
/// evaluates it and applies the change as one request. `--modify` changes the
/// element in place; `--replace --xpath` would re-append it at the end of its
/// parent, reordering a group's members (their start order).
pub fn switch_provider_command_line(id: &str, to: &str, version: &CibVersion) -> Vec<String> {
    vec![
        "cibadmin".into(),
        "--modify".into(),
        "--xpath".into(),
        format!(
            "/cib[@admin_epoch='{}' and @epoch='{}']/configuration/resources//primitive[@id='{id}']",
            version.admin_epoch, version.epoch
        ),
        "--xml-text".into(),
        format!("<primitive id=\"{}\" provider=\"{}\"/>", quick_xml::escape::escape(id), quick_xml::escape::escape(to)),
    ]
}

#[derive(Debug)]
pub enum SwitchError {
    /// The CIB changed since it was read (cibadmin: No such device or address).
    Changed,
    Other(ExecError),
}

pub trait ClusterTools {
    fn read_cib(&self) -> anyhow::Result<Cib>;
    fn read_monitor(&self) -> anyhow::Result<Monitor>;
    fn apply(&self, step: &Step) -> Result<(), ExecError>;
    /// Sets `id`'s provider to `to` only while the CIB is at `version`.
    fn switch_provider(&self, id: &str, to: &str, version: &CibVersion) -> Result<(), SwitchError>;
    /// The target agent's validate-all with the resource's parameters, as
    /// Pacemaker would run it on this node. Err carries the agent's reason.
    fn validate_all(&self, id: &str, to: &str, params: &[(String, String)]) -> anyhow::Result<()>;
    /// The clock the wait for the new agent's probes reads.
    fn clock(&self) -> Clock;
}
