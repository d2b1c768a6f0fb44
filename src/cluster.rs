//! Cluster-side effects, always through `exec`: utilization attributes
//! (crm_resource) and config distribution (csync2).

use crate::exec::{self, ExecError};
use crate::deadline::Deadline;

pub fn set_utilization(instance: &str, attribute: &str, value: &str, deadline: &Deadline) -> Result<(), ExecError> {
    exec::run(
        "crm_resource",
        &["--resource", instance, "--utilization", "--set-parameter", attribute, "--parameter-value", value],
        deadline,
    )
    .map(drop)
}

pub fn delete_utilization(instance: &str, attribute: &str, deadline: &Deadline) -> Result<(), ExecError> {
    exec::run("crm_resource", &["--resource", instance, "--utilization", "--delete-parameter", attribute], deadline)
        .map(drop)
}

pub fn csync2_push(path: &str, deadline: &Deadline) -> Result<(), ExecError> {
    exec::run("csync2", &["-x", path], deadline).map(drop)
}
