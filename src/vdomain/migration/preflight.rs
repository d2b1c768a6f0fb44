//! Everything checked before the first byte of guest memory is sent. A
//! refusal here leaves the guest running on the source, untouched.

use std::time::Duration;

use tracing::{debug, info};

use crate::hypervisor::migration::bounded;
use crate::hypervisor::migration::Peer;
use crate::hypervisor::Hypervisor;
use crate::ocf::{OcfError, OcfResult};
use crate::vdomain::vm::Vm;

use super::options::MigrationPlan;
use super::Limits;

/// Longest wait for the target's hypervisor to accept the connection.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(15);
/// Longest wait for one query to the target once connected.
pub const QUERY_BUDGET: Duration = Duration::from_secs(10);

/// The checks' shared facts, for error texts.
pub struct Context<'a> {
    pub name: &'a str,
    pub source_node: &'a str,
    pub target_node: &'a str,
}

impl Context<'_> {
    /// A refusal: says why, and that the guest was not touched.
    pub fn refuse(&self, why: impl std::fmt::Display) -> OcfError {
        OcfError::generic(format!(
            "not migrating {} to {}: {why}; {} still runs on {}",
            self.name, self.target_node, self.name, self.source_node
        ))
    }
}

/// Runs the pre-flight checks; returns the open connection to the target.
pub fn check(
    vm: &Vm<'_>,
    local: &dyn Hypervisor,
    plan: &MigrationPlan,
    ctx: &Context<'_>,
    limits: &Limits,
) -> OcfResult<Peer> {
    match local.state(ctx.name) {
        Ok(Some(state)) if state.is_active() => debug!("{}: local state {state}", ctx.name),
        Ok(Some(state)) => {
            return Err(OcfError::generic(format!("{}: migrate_to: not active locally ({state})", ctx.name)))
        }
        Ok(None) => return Err(OcfError::generic(format!("{}: migrate_to: not active locally", ctx.name))),
        Err(e) => {
            return Err(OcfError::generic(format!("{}: migrate_to: cannot read the local state: {e}", ctx.name)))
        }
    }

    let connect_budget = CONNECT_BUDGET.min(limits.cutoff.remaining() / 2);
    let remote = local
        .open_connection(&plan.remote_uri, connect_budget)
        .map_err(|e| ctx.refuse(format_args!("the hypervisor at {} did not answer: {e}", plan.remote_uri)))?;

    let query_budget = || QUERY_BUDGET.min(limits.cutoff.remaining()).max(Duration::from_millis(100));
    let name = ctx.name.to_owned();
    let state = bounded(remote.hypervisor(), query_budget(), move |r| r.state(&name))
    .map_err(|e| ctx.refuse(format_args!("cannot ask {} about {}: {e}", ctx.target_node, ctx.name)))?;
    if let Some(state) = state.filter(|s| s.is_active()) {
        return Err(ctx.refuse(format_args!("it is already active there ({state})")));
    }

    if vm.params.start_resources {
        for pool in vm.domain.pools() {
            info!("{}: making sure storage pool {pool} is active on {}", ctx.name, ctx.target_node);
            let p = pool.clone();
            bounded(remote.hypervisor(), query_budget(), move |r| r.ensure_pool_active(&p))
                .map_err(|e| ctx.refuse(format_args!("storage pool {pool} on {}: {e}", ctx.target_node)))?;
        }
        for network in &vm.domain.networks {
            info!("{}: making sure network {network} is active on {}", ctx.name, ctx.target_node);
            let n = network.clone();
            bounded(remote.hypervisor(), query_budget(), move |r| r.ensure_network_active(&n))
                .map_err(|e| ctx.refuse(format_args!("network {network} on {}: {e}", ctx.target_node)))?;
        }
    }

    drbd_preflight(vm, ctx.target_node).map_err(|e| ctx.refuse(e.reason))?;

    if limits.cutoff.expired() {
        return Err(ctx.refuse("the pre-flight checks used up the time for the migration"));
    }
    Ok(remote)
}

/// The DRBD gate for the source side of a migration to `target`, through
/// the agent's single DRBD hook.
fn drbd_preflight(vm: &Vm<'_>, target: &str) -> OcfResult<()> {
    crate::vdomain::drbd_gate::check(vm, &crate::drbd::Purpose::MigrateSource { target: target.to_owned() })
}
