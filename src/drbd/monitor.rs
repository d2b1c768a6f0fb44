//! What a running guest should hear about its DRBD volumes: a lost local
//! disk, lost quorum, suspended I/O. Pure, like the gate.
//!
//! The choice: a finding is a *failure* when the guest can no longer write
//! (no quorum: DRBD's on-no-quorum is io-error or suspend-io, either way no
//! write completes; suspended I/O; no local disk and no connected UpToDate
//! peer; the resource gone). It is *degraded* when writes still complete
//! but the redundancy is reduced (local disk lost, data served by an
//! UpToDate peer over the network).

use serde::Serialize;

use super::model::{DiskState, DrbdState, Resource, Volume};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// The local backing disk is Diskless, Failed or Detaching.
    LostLocalDisk,
    LostQuorum,
    IoSuspended,
    /// The resource is not in the DRBD state any more.
    ResourceGone,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub resource: String,
    pub volume: Option<u32>,
    pub problem: Problem,
    /// False: the guest's writes fail or hang, so the monitor reports a failure.
    pub guest_can_write: bool,
    pub message: String,
}

impl Finding {
    pub fn is_failure(&self) -> bool {
        !self.guest_can_write
    }
}

pub fn findings(state: &DrbdState, resources: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in resources {
        let Some(r) = state.resource(name) else {
            out.push(Finding {
                resource: name.clone(),
                volume: None,
                problem: Problem::ResourceGone,
                guest_can_write: false,
                message: format!("{name}: no longer in the DRBD state of this node: the guest cannot write"),
            });
            continue;
        };
        if !r.suspended.is_empty() {
            out.push(Finding {
                resource: name.clone(),
                volume: None,
                problem: Problem::IoSuspended,
                guest_can_write: false,
                message: format!("{name}: I/O suspended ({}): the guest's writes hang", r.suspended.join(",")),
            });
        }
        for v in &r.volumes {
            if v.quorum == Some(false) {
                out.push(Finding {
                    resource: name.clone(),
                    volume: Some(v.number),
                    problem: Problem::LostQuorum,
                    guest_can_write: false,
                    message: format!("{name}/{}: lost quorum: the guest's writes fail or hang", v.number),
                });
            }
            if v.disk.lacks_local_disk() && v.client != Some(true) {
                out.push(lost_disk(r, v));
            }
        }
    }
    out
}

fn lost_disk(r: &Resource, v: &Volume) -> Finding {
    let server = r.peers.iter().find(|p| {
        p.is_connected()
            && p.volume(v.number).is_some_and(|pv| pv.peer_disk == DiskState::UpToDate && pv.replication.is_replicating())
    });
    let (guest_can_write, message) = match server {
        Some(p) => (
            true,
            format!("{}/{}: local disk {}: degraded, I/O goes to {} (UpToDate)", r.name, v.number, v.disk, p.label()),
        ),
        None => (
            false,
            format!("{}/{}: local disk {} and no connected UpToDate peer: the guest cannot write", r.name, v.number, v.disk),
        ),
    };
    Finding { resource: r.name.clone(), volume: Some(v.number), problem: Problem::LostLocalDisk, guest_can_write, message }
}
