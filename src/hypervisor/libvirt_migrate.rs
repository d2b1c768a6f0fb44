//! libvirt calls for live migration, each one bounded: a target that does
//! not answer must not hold the agent past its deadline.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Once};
use std::time::Duration;

use virt::domain::{Domain, MigrateParameters};

use super::libvirt::{hv_error, LibvirtHypervisor};
use super::libvirt_raw::{self, JobFigures};
use super::{HvError, HvErrorKind, HvResult};

/// Keepalive on the connection to the target: a peer that stops answering
/// for about `interval * (count + 1)` seconds is declared dead and every call
/// waiting on it fails, instead of hanging until TCP gives up.
pub const KEEPALIVE_INTERVAL_SECS: i32 = 3;
pub const KEEPALIVE_COUNT: u32 = 3;

/// libvirt's keepalive needs an event loop in this process. Registered once,
/// before the first connection that wants keepalive is opened.
pub fn ensure_event_loop() {
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

/// Runs `call` on its own thread and waits at most `budget` for it. `None`
/// when it did not return in time; the thread is then left behind (the
/// agent process ends soon after, and nothing waits for it).
pub fn call_bounded<T: Send + 'static>(budget: Duration, call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("libvirt-call".into()).spawn(move || {
        let _ = tx.send(call());
    });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(budget).ok()
}

/// Opens `uri`, giving up after `budget`, with keepalive on the connection.
pub fn connect_bounded(uri: &str, budget: Duration) -> HvResult<Arc<LibvirtHypervisor>> {
    ensure_event_loop();
    let owned = uri.to_owned();
    let opened = call_bounded(budget, move || LibvirtHypervisor::connect(Some(&owned))).ok_or_else(|| {
        HvError::new(HvErrorKind::Unreachable, format!("no answer within {:.1}s", budget.as_secs_f64()))
    })??;
    if let Err(e) = opened.conn().set_keep_alive(KEEPALIVE_INTERVAL_SECS, KEEPALIVE_COUNT) {
        tracing::debug!("no keepalive on {uri}: {e}");
    }
    Ok(Arc::new(opened))
}

/// `virDomainMigrateSetMaxDowntime`, in milliseconds. QEMU keeps it as a
/// migration parameter, so set before the job starts it applies from the
/// first byte.
pub fn set_max_downtime(domain: &Domain, millis: u64) -> HvResult<()> {
    domain.migrate_set_max_downtime(millis, 0).map_err(hv_error)
}

/// How the migration call reaches the target.
pub enum Destination {
    /// This process drives the migration over its own connection to the
    /// target (`virDomainMigrate3`).
    Connection(Arc<LibvirtHypervisor>),
    /// The source's libvirtd connects to this URI itself (`--p2p`,
    /// `virDomainMigrateToURI3`).
    PeerToPeer(String),
}

/// The migration call running on its own thread.
pub struct MigrationCall {
    result: Receiver<HvResult<()>>,
    done: Option<HvResult<()>>,
}

impl MigrationCall {
    /// Starts migrating `domain`; returns at once.
    pub fn start(domain: Domain, destination: Destination, params: MigrateParameters, flags: u32) -> HvResult<MigrationCall> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("libvirt-migrate".into())
            .spawn(move || {
                let result = match &destination {
                    Destination::Connection(target) => {
                        domain.migrate3(target.conn(), params, flags).map(drop).map_err(hv_error)
                    }
                    Destination::PeerToPeer(uri) => {
                        domain.migrate_to_uri3(Some(uri), params, flags).map_err(hv_error)
                    }
                };
                let _ = tx.send(result);
            })
            .map_err(|e| HvError::other(format!("cannot start the migration thread: {e}")))?;
        Ok(MigrationCall { result: rx, done: None })
    }

    /// The call's result, waiting at most `timeout`; `None` while it runs.
    pub fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>> {
        if self.done.is_none() {
            self.done = match self.result.recv_timeout(timeout) {
                Ok(result) => Some(result),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    Some(Err(HvError::other("the migration thread ended without a result")))
                }
            };
        }
        self.done.clone()
    }
}

/// The figures of the domain's active job, `None` when none is active.
pub fn active_job(domain: &Domain) -> HvResult<Option<JobFigures>> {
    let figures = libvirt_raw::job_stats(domain)?;
    Ok(figures.is_active().then_some(figures))
}
