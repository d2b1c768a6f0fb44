//! Live migration through libvirt: the migration call on a thread of its
//! own, the job's figures, abort and post-copy, and our typed options mapped
//! to libvirt's flags and parameters. Every call that may wait on the target
//! is bounded (`migration::within`) or watched, so a target that does not
//! answer cannot hold the agent past its deadline.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Once};
use std::time::Duration;

use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::sys;

use super::libvirt::LibvirtHypervisor;
use super::libvirt_error::hv_error;
use super::libvirt_raw::{self, JobFigures};
use super::migration::{
    within, JobSample, LiveMigration, MigrateOptions, MigrationCall, MigrationPlan, Peer, PostcopyPolicy,
};
use super::{HvError, HvErrorKind, HvResult};

/// Keepalive on the connection to the target: a peer that stops answering
/// for about `interval * (count + 1)` seconds is declared dead and every call
/// waiting on it fails, instead of hanging until TCP gives up.
const KEEPALIVE_INTERVAL_SECS: i32 = 3;
const KEEPALIVE_COUNT: u32 = 3;

/// libvirt's keepalive needs an event loop in this process. Registered once,
/// before the first connection that wants keepalive is opened.
fn ensure_event_loop() {
    static START: Once = Once::new();
    START.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::warn!("cannot start libvirt's event loop, no keepalive on the target connection: {e}");
            return;
        }
        let spawned = std::thread::Builder::new().name("libvirt-events".into()).spawn(|| loop {
            if virt::event::event_run_default_impl().is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start libvirt's event loop thread: {e}");
        }
    });
}

impl LiveMigration for LibvirtHypervisor {
    /// Opens `uri`, giving up after `budget`, with keepalive on the connection.
    fn open_connection(&self, uri: &str, budget: Duration) -> HvResult<Peer> {
        ensure_event_loop();
        let owned = uri.to_owned();
        let opened = within(budget, move || LibvirtHypervisor::connect(Some(&owned)))?;
        if let Err(e) = opened.conn().set_keep_alive(KEEPALIVE_INTERVAL_SECS, KEEPALIVE_COUNT) {
            tracing::debug!("no keepalive on {uri}: {e}");
        }
        Ok(Peer::new(self.clone(), Arc::new(opened), LibvirtHypervisor::migrate))
    }

    fn is_alive(&self) -> bool {
        // Keepalive and the event loop close a dead connection.
        self.conn().is_alive().unwrap_or(true)
    }

    fn set_max_downtime(&self, name: &str, millis: u64) -> HvResult<()> {
        self.domain(name)?.migrate_set_max_downtime(millis, 0).map_err(hv_error)
    }

    fn job_stats(&self, name: &str) -> HvResult<Option<JobSample>> {
        let figures = libvirt_raw::job_stats(&self.domain(name)?)?;
        Ok(figures.is_active().then(|| sample_of(&figures)))
    }

    fn abort_job(&self, name: &str) -> HvResult<()> {
        libvirt_raw::abort_job(&self.domain(name)?)
    }

    fn start_postcopy(&self, name: &str) -> HvResult<()> {
        libvirt_raw::migrate_start_postcopy(&self.domain(name)?)
    }

    fn resume(&self, name: &str) -> HvResult<()> {
        self.domain(name)?.resume().map_err(hv_error)
    }
}

impl LibvirtHypervisor {
    /// Starts migrating `name` to `target` (see [`Peer::new`]).
    fn migrate(&self, name: &str, target: &LibvirtHypervisor, plan: &MigrationPlan) -> HvResult<Box<dyn MigrationCall>> {
        let destination = if plan.options.p2p {
            Destination::PeerToPeer(plan.remote_uri.clone())
        } else {
            Destination::Connection(target.conn().clone())
        };
        let call = LibvirtMigrationCall::start(self.domain(name)?, destination, parameters(plan), flags(&plan.options))?;
        Ok(Box::new(call))
    }
}

/// How the migration call reaches the target.
enum Destination {
    /// This process drives the migration over its own connection to the
    /// target (`virDomainMigrate3`).
    Connection(Connect),
    /// The source's libvirtd connects to this URI itself (`--p2p`,
    /// `virDomainMigrateToURI3`).
    PeerToPeer(String),
}

/// The migration call running on its own thread.
struct LibvirtMigrationCall {
    result: Receiver<HvResult<()>>,
    done: Option<HvResult<()>>,
}

impl LibvirtMigrationCall {
    fn start(domain: Domain, destination: Destination, params: MigrateParameters, flags: u32) -> HvResult<Self> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("libvirt-migrate".into())
            .spawn(move || {
                let result = match &destination {
                    Destination::Connection(target) => domain.migrate3(target, params, flags).map(drop).map_err(hv_error),
                    Destination::PeerToPeer(uri) => domain.migrate_to_uri3(Some(uri), params, flags).map_err(hv_error),
                };
                let _ = tx.send(result);
            })
            .map_err(|e| HvError::other(format!("cannot start the migration thread: {e}")))?;
        Ok(LibvirtMigrationCall { result: rx, done: None })
    }
}

impl MigrationCall for LibvirtMigrationCall {
    fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>> {
        if self.done.is_none() {
            self.done = match self.result.recv_timeout(timeout) {
                Ok(result) => Some(result),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    Some(Err(HvError::new(HvErrorKind::Other, "the migration thread ended without a result")))
                }
            };
        }
        self.done.clone()
    }
}

/// The `VIR_MIGRATE_*` flags for `options`. Always live: the guest keeps running.
fn flags(options: &MigrateOptions) -> u32 {
    let bits = [
        (true, sys::VIR_MIGRATE_LIVE),
        (options.p2p, sys::VIR_MIGRATE_PEER2PEER),
        (options.tunnelled, sys::VIR_MIGRATE_TUNNELLED),
        (options.persistent, sys::VIR_MIGRATE_PERSIST_DEST),
        (options.undefine_source, sys::VIR_MIGRATE_UNDEFINE_SOURCE),
        (options.auto_converge, sys::VIR_MIGRATE_AUTO_CONVERGE),
        (options.compressed, sys::VIR_MIGRATE_COMPRESSED),
        (options.unsafe_, sys::VIR_MIGRATE_UNSAFE),
        (options.abort_on_error, sys::VIR_MIGRATE_ABORT_ON_ERROR),
        (options.copy_storage_all, sys::VIR_MIGRATE_NON_SHARED_DISK),
        (options.copy_storage_inc, sys::VIR_MIGRATE_NON_SHARED_INC),
        (options.change_protection, sys::VIR_MIGRATE_CHANGE_PROTECTION),
        (options.tls, sys::VIR_MIGRATE_TLS),
        (options.parallel, sys::VIR_MIGRATE_PARALLEL),
        (options.postcopy != PostcopyPolicy::Never, sys::VIR_MIGRATE_POSTCOPY),
    ];
    bits.iter().filter(|(on, _)| *on).fold(0, |acc, (_, bit)| acc | *bit)
}

/// The typed parameters for `virDomainMigrate3`, in the `virt` crate's form.
fn parameters(plan: &MigrationPlan) -> MigrateParameters {
    let o = &plan.options;
    MigrateParameters {
        uri: plan.data_uri.clone(),
        bandwidth: plan.bandwidth,
        bandwidth_postcopy: o.postcopy_bandwidth,
        listen_address: o.listen_address.clone(),
        parallel_connections: o.parallel_connections.map(|n| n as i32),
        auto_converge_initial: o.auto_converge_initial.map(|n| n as i32),
        auto_converge_increment: o.auto_converge_increment.map(|n| n as i32),
        compression: o.compression_methods.first().cloned(),
        migrate_disks: o.migrate_disks.clone(),
        disks_port: o.disks_port.map(|n| n as i32),
        tls_destination: o.tls_destination.clone(),
        ..Default::default()
    }
}

/// libvirt's figures in ours; memory figures fall back to the data figures
/// (which include disks) when a driver reports only those.
fn sample_of(job: &JobFigures) -> JobSample {
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

    fn parse(text: &str) -> MigrateOptions {
        MigrateOptions::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn empty_is_a_plain_live_migration() {
        assert_eq!(flags(&MigrateOptions::default()), sys::VIR_MIGRATE_LIVE);
    }

    #[test]
    fn every_switch_sets_its_flag() {
        let cases = [
            ("--p2p", sys::VIR_MIGRATE_PEER2PEER),
            ("--p2p --tunnelled", sys::VIR_MIGRATE_PEER2PEER | sys::VIR_MIGRATE_TUNNELLED),
            ("--persistent", sys::VIR_MIGRATE_PERSIST_DEST),
            ("--undefinesource", sys::VIR_MIGRATE_UNDEFINE_SOURCE),
            ("--auto-converge", sys::VIR_MIGRATE_AUTO_CONVERGE),
            ("--compressed", sys::VIR_MIGRATE_COMPRESSED),
            ("--unsafe", sys::VIR_MIGRATE_UNSAFE),
            ("--abort-on-error", sys::VIR_MIGRATE_ABORT_ON_ERROR),
            ("--copy-storage-all", sys::VIR_MIGRATE_NON_SHARED_DISK),
            ("--copy-storage-inc", sys::VIR_MIGRATE_NON_SHARED_INC),
            ("--change-protection", sys::VIR_MIGRATE_CHANGE_PROTECTION),
            ("--tls", sys::VIR_MIGRATE_TLS),
            ("--parallel", sys::VIR_MIGRATE_PARALLEL),
            ("--postcopy", sys::VIR_MIGRATE_POSTCOPY),
            ("--postcopy-after-precopy", sys::VIR_MIGRATE_POSTCOPY),
            ("--verbose", 0),
        ];
        for (text, bits) in cases {
            assert_eq!(flags(&parse(text)), sys::VIR_MIGRATE_LIVE | bits, "{text}");
        }
    }

    #[test]
    fn libvirt_parameters_carry_the_typed_values() {
        let plan = MigrationPlan {
            remote_uri: "qemu+tcp://node2/system".into(),
            data_uri: Some("tcp://127.0.0.1:49152".into()),
            bandwidth: Some(1),
            max_downtime: Some(300),
            options: parse("--parallel --parallel-connections=3 --listen-address=127.0.0.1"),
        };
        let p = parameters(&plan);
        assert_eq!(p.uri.as_deref(), Some("tcp://127.0.0.1:49152"));
        assert_eq!(p.bandwidth, Some(1));
        assert_eq!(p.parallel_connections, Some(3));
        assert_eq!(p.listen_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.compression, None);
        assert_eq!(p.dest_name, None);
    }

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
