//! The driver's [`MigrationJob`] over the hypervisor interface: the
//! migration call as the backend started it, watched, aborted and switched
//! to post-copy through a connection of its own, each call bounded.

use std::time::Duration;

use crate::hypervisor::migration::{bounded, MigrationCall};
use crate::hypervisor::{HvErrorKind, HvResult, SharedHypervisor};

use super::job::MigrationJob;
use super::progress::JobSample;

pub struct RunningJob {
    pub name: String,
    /// The source for statistics, abort and post-copy, on a connection of
    /// its own: a call queued behind the long-running migration call on
    /// the same connection may wait for it.
    pub control: SharedHypervisor,
    pub call: Box<dyn MigrationCall>,
    /// The connection the migration call itself uses to reach the target
    /// (`None` for `--p2p`, where the source's hypervisor watches its own).
    pub target: Option<SharedHypervisor>,
}

impl MigrationJob for RunningJob {
    fn sample(&mut self, budget: Duration) -> HvResult<Option<JobSample>> {
        let name = self.name.clone();
        match bounded(&self.control, budget, move |hv| hv.job_stats(&name)) {
            // The guest left for the target (gone, or shut off here): its job is over.
            Err(e) if matches!(e.kind, HvErrorKind::NoDomain | HvErrorKind::NotRunning) => Ok(None),
            other => other,
        }
    }

    fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>> {
        self.call.wait(timeout)
    }

    fn abort(&mut self, budget: Duration) -> HvResult<()> {
        let name = self.name.clone();
        bounded(&self.control, budget, move |hv| hv.abort_job(&name))
    }

    fn start_postcopy(&mut self, budget: Duration) -> HvResult<()> {
        let name = self.name.clone();
        bounded(&self.control, budget, move |hv| hv.start_postcopy(&name))
    }

    fn target_alive(&mut self) -> bool {
        self.target.as_ref().is_none_or(|t| t.is_alive())
    }

    /// The control connection has keepalive and libvirt's event loop
    /// behind it (`open_connection`): a daemon that closed it, or stopped
    /// answering, shows here at once, not only when a call fails.
    fn source_alive(&mut self) -> bool {
        self.control.is_alive()
    }
}
