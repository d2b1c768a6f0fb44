//! The real [`MigrationJob`]: a libvirt migration call on a worker thread,
//! watched, aborted and switched to post-copy through the source domain.

use std::sync::Arc;
use std::time::Duration;

use virt::domain::Domain;
use virt::sys;

use crate::hypervisor::libvirt::LibvirtHypervisor;
use crate::hypervisor::libvirt_migrate::{self, MigrationCall};
use crate::hypervisor::libvirt_raw::{self, JobFigures};
use crate::hypervisor::{HvError, HvErrorKind, HvResult};

use super::job::MigrationJob;
use super::progress::JobSample;

pub struct LibvirtJob {
    /// The source domain for statistics, abort and post-copy, on a
    /// connection of its own: a call queued behind the long-running
    /// migration call on the same connection may wait for it.
    pub domain: Domain,
    pub call: MigrationCall,
    /// The connection the migration call itself uses to reach the target
    /// (`None` for `--p2p`, where the source's libvirtd watches its own).
    pub target: Option<Arc<LibvirtHypervisor>>,
}

impl LibvirtJob {
    /// Runs `call` on the watched domain, giving up after `budget`.
    fn bounded<T: Send + 'static>(
        &self,
        budget: Duration,
        call: impl FnOnce(&Domain) -> HvResult<T> + Send + 'static,
    ) -> Result<T, HvError> {
        let domain = self.domain.clone();
        libvirt_migrate::call_bounded(budget, move || call(&domain)).unwrap_or_else(|| {
            Err(HvError::other(format!("no answer within {:.1}s", budget.as_secs_f64())))
        })
    }
}

impl MigrationJob for LibvirtJob {
    fn sample(&mut self, budget: Duration) -> Result<Option<JobSample>, String> {
        match self.bounded(budget, libvirt_migrate::active_job) {
            Ok(stats) => Ok(stats.map(|s| sample_of(&s))),
            // The guest left for the target (gone, or shut off here): its job is over.
            Err(e) if matches!(e.kind, HvErrorKind::NoDomain | HvErrorKind::NotRunning) => Ok(None),
            Err(e) => Err(e.message),
        }
    }

    fn wait(&mut self, timeout: Duration) -> Option<Result<(), String>> {
        self.call.wait(timeout).map(|r| r.map_err(|e| e.message))
    }

    fn abort(&mut self, budget: Duration) -> Result<(), String> {
        self.bounded(budget, libvirt_raw::abort_job).map_err(|e| e.message)
    }

    fn start_postcopy(&mut self, budget: Duration) -> Result<(), String> {
        self.bounded(budget, libvirt_raw::migrate_start_postcopy).map_err(|e| e.message)
    }

    fn target_alive(&mut self) -> bool {
        // Keepalive and the event loop close a dead connection; a failed
        // query of the flag itself is no proof of death.
        self.target.as_ref().is_none_or(|t| t.conn().is_alive().unwrap_or(true))
    }
}

/// libvirt's figures in ours; memory figures fall back to the data figures
/// (which include disks) when a driver reports only those.
pub fn sample_of(job: &JobFigures) -> JobSample {
    let get = |field| job.get(field);
    let page = get(sys::VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE).filter(|p| *p > 0).unwrap_or(4096);
    JobSample {
        mem_total: get(sys::VIR_DOMAIN_JOB_MEMORY_TOTAL).or(get(sys::VIR_DOMAIN_JOB_DATA_TOTAL)).unwrap_or(0),
        mem_remaining: get(sys::VIR_DOMAIN_JOB_MEMORY_REMAINING).or(get(sys::VIR_DOMAIN_JOB_DATA_REMAINING)).unwrap_or(0),
        data_processed: get(sys::VIR_DOMAIN_JOB_DATA_PROCESSED).or(get(sys::VIR_DOMAIN_JOB_MEMORY_PROCESSED)).unwrap_or(0),
        data_remaining: get(sys::VIR_DOMAIN_JOB_DATA_REMAINING).or(get(sys::VIR_DOMAIN_JOB_MEMORY_REMAINING)).unwrap_or(0),
        bytes_per_sec: get(sys::VIR_DOMAIN_JOB_MEMORY_BPS),
        iteration: get(sys::VIR_DOMAIN_JOB_MEMORY_ITERATION),
        expected_downtime_ms: get(sys::VIR_DOMAIN_JOB_DOWNTIME),
        dirty_bytes_per_sec: get(sys::VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE).map(|pages| pages.saturating_mul(page)),
        postcopy_requests: get(sys::VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_figures_map_to_ours() {
        let figures = |pairs: &[(&std::ffi::CStr, u64)]| JobFigures {
            job_type: 2,
            figures: pairs.iter().map(|(k, v)| (k.to_str().unwrap().to_owned(), *v)).collect(),
        };
        let job = figures(&[
            (sys::VIR_DOMAIN_JOB_MEMORY_TOTAL, 64 << 20),
            (sys::VIR_DOMAIN_JOB_MEMORY_REMAINING, 16 << 20),
            (sys::VIR_DOMAIN_JOB_DATA_PROCESSED, 100 << 20),
            (sys::VIR_DOMAIN_JOB_DATA_REMAINING, 16 << 20),
            (sys::VIR_DOMAIN_JOB_MEMORY_BPS, 1 << 20),
            (sys::VIR_DOMAIN_JOB_MEMORY_ITERATION, 3),
            (sys::VIR_DOMAIN_JOB_DOWNTIME, 300),
            (sys::VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, 256),
            (sys::VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE, 4096),
        ]);
        assert!(job.is_active());
        let s = sample_of(&job);
        assert_eq!(s.percent(), 75);
        assert_eq!(s.iteration, Some(3));
        assert_eq!(s.dirty_bytes_per_sec, Some(1 << 20));
        assert_eq!(s.expected_downtime_ms, Some(300));
        let only_data = figures(&[(sys::VIR_DOMAIN_JOB_DATA_TOTAL, 100), (sys::VIR_DOMAIN_JOB_DATA_REMAINING, 50)]);
        assert_eq!(sample_of(&only_data).percent(), 50);
        assert!(!JobFigures::default().is_active());
    }
}
