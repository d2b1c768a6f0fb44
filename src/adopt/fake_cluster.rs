//! A two-node cluster as adopt sees it, for the in-process tests: it starts
//! from a captured `cibadmin --query` and `crm_mon` (tests/fixtures/adopt/),
//! applies adopt's changes to that state as the CIB manager would (meta
//! attributes, the version-guarded provider switch, is-managed in crm_mon's
//! view), answers a refresh with the new agent's probes after a delay on
//! the manual clock, and records every call as a typed [`ClusterCall`].
//! Faults: a call that fails (the run killed there), other writers that
//! bump the CIB's epoch, a probe that finds the guest elsewhere, an agent
//! whose validate-all refuses.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use crate::deadline::Clock;
use crate::exec::{ExecError, Output};

use super::cluster_tools::{ClusterTools, Step, SwitchError};
use super::fixture;
use super::state::{parse_cib, parse_crm_mon, Cib, CibVersion, Monitor, OpRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCall {
    ReadCib,
    ReadMonitor,
    Apply(Step),
    SwitchProvider { id: String, to: String, epoch: String },
    ValidateAll { id: String, to: String },
}

impl ClusterCall {
    /// A call that changes the cluster (what a kill can interrupt).
    fn writes(&self) -> bool {
        matches!(self, ClusterCall::Apply(_) | ClusterCall::SwitchProvider { .. })
    }
}

struct State {
    cib: Cib,
    mon: Monitor,
    /// Where each guest really runs (the probes report it).
    guests: HashMap<String, Option<String>>,
    /// Refreshed resources and when their probes land in the CIB.
    probes_due: Vec<(String, Instant)>,
    calls: Vec<ClusterCall>,
    /// The write (counted from 1) that fails, as a kill at that point would.
    fail_write: Option<usize>,
    writes: usize,
    /// How many guarded switches find the CIB changed by someone else first.
    concurrent_writers: usize,
    refused_by_validate: Option<String>,
}

pub struct FakeCluster {
    state: RefCell<State>,
    clock: Clock,
    /// How long after a refresh the new agent's probes are recorded.
    probe_delay: Duration,
}

impl FakeCluster {
    /// The cluster captured as `cib-<name>.xml` and `crm_mon-<name>.xml`.
    pub fn captured(name: &str) -> FakeCluster {
        let cib = parse_cib(&fixture(&format!("cib-{name}.xml"))).unwrap();
        let mon = parse_crm_mon(&fixture(&format!("crm_mon-{name}.xml"))).unwrap();
        let guests = mon.resources.iter().map(|r| (r.id.clone(), r.nodes.first().cloned())).collect();
        FakeCluster {
            state: RefCell::new(State {
                cib,
                mon,
                guests,
                probes_due: Vec::new(),
                calls: Vec::new(),
                fail_write: None,
                writes: 0,
                concurrent_writers: 0,
                refused_by_validate: None,
            }),
            clock: Clock::manual(),
            probe_delay: Duration::from_secs(3),
        }
    }

    pub fn probes_after(mut self, delay: Duration) -> FakeCluster {
        self.probe_delay = delay;
        self
    }

    /// The `n`th change (from 1) fails and is not applied.
    pub fn fail_write(&self, n: usize) {
        let mut state = self.state.borrow_mut();
        state.fail_write = Some(state.writes + n);
    }

    pub fn concurrent_writers(&self, n: usize) {
        self.state.borrow_mut().concurrent_writers = n;
    }

    pub fn refuse_validate(&self, reason: &str) {
        self.state.borrow_mut().refused_by_validate = Some(reason.into());
    }

    /// The guest of `id` actually runs on `node` (what its probes will find).
    pub fn guest_runs_on(&self, id: &str, node: Option<&str>) {
        self.state.borrow_mut().guests.insert(id.into(), node.map(str::to_owned));
    }

    pub fn calls(&self) -> Vec<ClusterCall> {
        self.state.borrow().calls.clone()
    }

    pub fn forget_calls(&self) {
        self.state.borrow_mut().calls.clear();
    }

    pub fn writes(&self) -> Vec<ClusterCall> {
        self.calls().into_iter().filter(ClusterCall::writes).collect()
    }

    pub fn provider(&self, id: &str) -> String {
        self.state.borrow().cib.primitive(id).unwrap().provider.clone()
    }

    pub fn meta(&self, id: &str, name: &str) -> Option<String> {
        self.state.borrow().cib.primitive(id).unwrap().meta(name).map(str::to_owned)
    }

    pub fn managed(&self, id: &str) -> bool {
        self.state.borrow().mon.resource(id).unwrap().managed
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    fn record(&self, call: ClusterCall) -> Result<(), ExecError> {
        let mut state = self.state.borrow_mut();
        let writes = call.writes();
        state.calls.push(call);
        if writes {
            state.writes += 1;
            if state.fail_write == Some(state.writes) {
                return Err(ExecError::Failed {
                    program: "crm_resource".into(),
                    output: Output { status: ExitStatusExt::from_raw(9), stdout: String::new(), stderr: "killed".into() },
                });
            }
        }
        Ok(())
    }

    fn land_due_probes(&self) {
        let now = self.clock.now();
        let mut state = self.state.borrow_mut();
        let due: Vec<String> = state.probes_due.iter().filter(|(_, at)| *at <= now).map(|(id, _)| id.clone()).collect();
        state.probes_due.retain(|(_, at)| *at > now);
        for id in due {
            let provider = state.cib.primitive(&id).unwrap().provider.clone();
            let runs_on = state.guests.get(&id).cloned().flatten();
            let records: Vec<OpRecord> = state
                .mon
                .online_nodes
                .iter()
                .map(|node| OpRecord {
                    resource: id.clone(),
                    provider: provider.clone(),
                    node: node.clone(),
                    id: format!("{id}_last_0"),
                    operation: "monitor".into(),
                    interval_ms: 0,
                    rc: if runs_on.as_deref() == Some(node) { 0 } else { 7 },
                    op_status: 0,
                })
                .collect();
            state.cib.history.extend(records);
        }
    }
}

fn bump_epoch(version: &mut CibVersion) {
    version.epoch = (version.epoch.parse::<u64>().unwrap() + 1).to_string();
}

impl ClusterTools for FakeCluster {
    fn read_cib(&self) -> anyhow::Result<Cib> {
        self.record(ClusterCall::ReadCib)?;
        self.land_due_probes();
        Ok(self.state.borrow().cib.clone())
    }

    fn read_monitor(&self) -> anyhow::Result<Monitor> {
        self.record(ClusterCall::ReadMonitor)?;
        Ok(self.state.borrow().mon.clone())
    }

    fn apply(&self, step: &Step) -> Result<(), ExecError> {
        self.record(ClusterCall::Apply(step.clone()))?;
        let probes_at = self.clock.now() + self.probe_delay;
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        match step {
            Step::SetMeta { id, name, value } => {
                let meta = &mut state.cib.primitives.iter_mut().find(|p| &p.id == id).unwrap().meta;
                meta.retain(|(k, _)| k != name);
                meta.push((name.clone(), value.clone()));
                if name == "is-managed" {
                    state.mon.resources.iter_mut().find(|r| &r.id == id).unwrap().managed = value != "false";
                }
            }
            Step::DeleteMeta { id, name } => {
                state.cib.primitives.iter_mut().find(|p| &p.id == id).unwrap().meta.retain(|(k, _)| k != name);
                if name == "is-managed" {
                    state.mon.resources.iter_mut().find(|r| &r.id == id).unwrap().managed = true;
                }
            }
            Step::Refresh { id } => {
                state.cib.history.retain(|op| &op.resource != id);
                state.probes_due.push((id.clone(), probes_at));
            }
        }
        bump_epoch(&mut state.cib.version);
        Ok(())
    }

    fn switch_provider(&self, id: &str, to: &str, version: &CibVersion) -> Result<(), SwitchError> {
        let call = ClusterCall::SwitchProvider { id: id.into(), to: to.into(), epoch: version.epoch.clone() };
        self.record(call).map_err(SwitchError::Other)?;
        let mut state = self.state.borrow_mut();
        if state.concurrent_writers > 0 {
            state.concurrent_writers -= 1;
            bump_epoch(&mut state.cib.version);
        }
        if state.cib.version != *version {
            return Err(SwitchError::Changed);
        }
        state.cib.primitives.iter_mut().find(|p| p.id == id).unwrap().provider = to.into();
        bump_epoch(&mut state.cib.version);
        Ok(())
    }

    fn validate_all(&self, id: &str, to: &str, _params: &[(String, String)]) -> anyhow::Result<()> {
        self.record(ClusterCall::ValidateAll { id: id.into(), to: to.into() })?;
        match &self.state.borrow().refused_by_validate {
            Some(reason) => anyhow::bail!("{reason}"),
            None => Ok(()),
        }
    }

    fn clock(&self) -> Clock {
        self.clock
    }
}
