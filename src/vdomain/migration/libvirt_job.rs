//! The real [`MigrationJob`]: a libvirt migration call on a worker thread,
//! watched, aborted and switched to post-copy through the source domain.

use std::sync::Arc;
use std::time::Duration;

use virt::domain::{Domain, JobStats};

use crate::hypervisor::libvirt::LibvirtHypervisor;
use crate::hypervisor::libvirt_migrate::{self, MigrationCall};
use crate::hypervisor::{libvirt_raw, HvErrorKind};

use super::job::MigrationJob;
use super::progress::JobSample;

pub struct LibvirtJob {
    /// The source domain, for statistics, abort and post-copy.
    pub domain: Domain,
    pub call: MigrationCall,
    /// The connection the migration call itself uses to reach the target
    /// (`None` for `--p2p`, where the source's libvirtd watches its own).
    pub target: Option<Arc<LibvirtHypervisor>>,
}

impl MigrationJob for LibvirtJob {
    fn sample(&mut self) -> Result<Option<JobSample>, String> {
        match libvirt_migrate::active_job_stats(&self.domain) {
            Ok(stats) => Ok(stats.map(|s| sample_of(&s))),
            // The guest left for the target (gone, or shut off here): its job is over.
            Err(e) if matches!(e.kind, HvErrorKind::NoDomain | HvErrorKind::NotRunning) => Ok(None),
            Err(e) => Err(e.message),
        }
    }

    fn wait(&mut self, timeout: Duration) -> Option<Result<(), String>> {
        self.call.wait(timeout).map(|r| r.map_err(|e| e.message))
    }

    fn abort(&mut self) -> Result<(), String> {
        libvirt_raw::abort_job(&self.domain).map_err(|e| e.message)
    }

    fn start_postcopy(&mut self) -> Result<(), String> {
        libvirt_raw::migrate_start_postcopy(&self.domain).map_err(|e| e.message)
    }

    fn target_alive(&mut self) -> bool {
        // Keepalive and the event loop close a dead connection; a failed
        // query of the flag itself is no proof of death.
        self.target.as_ref().is_none_or(|t| t.conn().is_alive().unwrap_or(true))
    }
}

/// libvirt's figures in ours; memory figures fall back to the data figures
/// (which include disks) when a driver reports only those.
pub fn sample_of(s: &JobStats) -> JobSample {
    let page = s.mem_page_size.filter(|p| *p > 0).unwrap_or(4096);
    JobSample {
        mem_total: s.mem_total.or(s.data_total).unwrap_or(0),
        mem_remaining: s.mem_remaining.or(s.data_remaining).unwrap_or(0),
        data_processed: s.data_processed.or(s.mem_processed).unwrap_or(0),
        data_remaining: s.data_remaining.or(s.mem_remaining).unwrap_or(0),
        bytes_per_sec: s.mem_bps,
        iteration: s.mem_iteration,
        expected_downtime_ms: s.downtime,
        dirty_bytes_per_sec: s.mem_dirty_rate.map(|pages| pages.saturating_mul(page)),
        postcopy_requests: s.mem_postcopy_reqs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_figures_map_to_ours() {
        let stats = JobStats {
            r#type: 2,
            mem_total: Some(64 << 20),
            mem_remaining: Some(16 << 20),
            data_processed: Some(100 << 20),
            data_remaining: Some(16 << 20),
            mem_bps: Some(1 << 20),
            mem_iteration: Some(3),
            downtime: Some(300),
            mem_dirty_rate: Some(256),
            mem_page_size: Some(4096),
            ..Default::default()
        };
        let s = sample_of(&stats);
        assert_eq!(s.percent(), 75);
        assert_eq!(s.iteration, Some(3));
        assert_eq!(s.dirty_bytes_per_sec, Some(1 << 20));
        assert_eq!(s.expected_downtime_ms, Some(300));
        let only_data = JobStats { data_total: Some(100), data_remaining: Some(50), ..Default::default() };
        assert_eq!(sample_of(&only_data).percent(), 50);
    }
}
