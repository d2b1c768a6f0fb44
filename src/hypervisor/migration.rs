//! What live migration needs from a hypervisor, in our own terms: the
//! options as typed values (each backend maps them to its own flags and
//! parameters), the job's figures, and the calls that start, watch, abort
//! and switch a migration. The migration logic (`vdomain::migration`) sees
//! only this, so it runs against the in-memory fake as well as libvirt.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::{HvError, HvErrorKind, HvResult, Hypervisor};

/// A connection that calls may be made on from other threads: the target's
/// hypervisor, or a second connection to the local one.
pub type SharedHypervisor = Arc<dyn Hypervisor + Send + Sync>;

/// How the migration may use post-copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PostcopyPolicy {
    /// Pre-copy only; a migration that cannot finish in time is aborted.
    #[default]
    Never,
    /// `--postcopy`: switch to post-copy when pre-copy would not finish
    /// before the deadline but post-copy still can.
    BeforeDeadline,
    /// `--postcopy-after-precopy`: switch once the first full pass of
    /// memory has been sent.
    AfterFirstPass,
}

/// What migrate_options asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateOptions {
    pub p2p: bool,
    pub tunnelled: bool,
    pub persistent: bool,
    pub undefine_source: bool,
    pub auto_converge: bool,
    pub compressed: bool,
    pub unsafe_: bool,
    pub abort_on_error: bool,
    pub copy_storage_all: bool,
    pub copy_storage_inc: bool,
    pub change_protection: bool,
    pub tls: bool,
    pub parallel: bool,
    pub postcopy: PostcopyPolicy,
    /// The data URI, `%n` not yet replaced.
    pub migrateuri: Option<String>,
    pub listen_address: Option<String>,
    pub parallel_connections: Option<u32>,
    /// MiB/s.
    pub bandwidth: Option<u64>,
    /// MiB/s, for the post-copy phase.
    pub postcopy_bandwidth: Option<u64>,
    pub auto_converge_initial: Option<u32>,
    pub auto_converge_increment: Option<u32>,
    pub compression_methods: Vec<String>,
    pub migrate_disks: Vec<String>,
    pub disks_port: Option<u32>,
    pub tls_destination: Option<String>,
}

/// One migration as decided from the parameters: where to, how, how fast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationPlan {
    /// Where the target hypervisor is (for `--p2p`, the source's hypervisor
    /// connects to it; otherwise this process does).
    pub remote_uri: String,
    pub data_uri: Option<String>,
    /// MiB/s, from the first byte.
    pub bandwidth: Option<u64>,
    /// Milliseconds, set before the job starts.
    pub max_downtime: Option<u64>,
    pub options: MigrateOptions,
}

impl MigrationPlan {
    pub fn postcopy(&self) -> PostcopyPolicy {
        self.options.postcopy
    }
}

/// One look at a running migration job (a subset of libvirt's job stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobSample {
    /// Guest memory size in bytes.
    pub mem_total: u64,
    /// Memory bytes not yet in sync with the target (dirtied again counts).
    pub mem_remaining: u64,
    /// Bytes sent so far, all passes together.
    pub data_processed: u64,
    pub data_remaining: u64,
    /// Transfer rate libvirt reports, bytes per second.
    pub bytes_per_sec: Option<u64>,
    /// Pass over guest memory; 1 is the first full copy.
    pub iteration: Option<u64>,
    /// What the final stop-and-copy would cost now, in ms.
    pub expected_downtime_ms: Option<u64>,
    /// Bytes per second the guest dirties.
    pub dirty_bytes_per_sec: Option<u64>,
    /// Page faults served from the source in post-copy.
    pub postcopy_requests: Option<u64>,
}

/// Starts migrating guest `name` from `source` to `target` as the plan
/// says; returns at once. Both are the backend's own connection type.
pub type StartMigration<C> = fn(&C, &str, &C, &MigrationPlan) -> HvResult<Box<dyn MigrationCall>>;

/// [`StartMigration`] bound to its source and target connections.
type MigrateHere = dyn Fn(&str, &MigrationPlan) -> HvResult<Box<dyn MigrationCall>> + Send + Sync;

/// A connection opened by [`LiveMigration::open_connection`]: calls on the
/// hypervisor it reaches, and a migration to that hypervisor from the
/// connection that opened it. The backend knows both connections' type when
/// it opens this one, so the migration is started with its own types and
/// nothing has to find out later what a connection is.
#[derive(Clone)]
pub struct Peer {
    hypervisor: SharedHypervisor,
    receive: Arc<MigrateHere>,
}

impl Peer {
    /// `target`, opened by `source`; `start` is the backend's migration call.
    pub fn new<C>(source: C, target: Arc<C>, start: StartMigration<C>) -> Peer
    where
        C: Hypervisor + Send + Sync + 'static,
    {
        let to = Arc::clone(&target);
        Peer { hypervisor: target, receive: Arc::new(move |name, plan| start(&source, name, &to, plan)) }
    }

    /// The connection, for calls on the hypervisor it reaches.
    pub fn hypervisor(&self) -> &SharedHypervisor {
        &self.hypervisor
    }

    /// Starts migrating `name` here from the connection that opened this
    /// one, as `plan` says; returns at once.
    pub fn migrate_here(&self, name: &str, plan: &MigrationPlan) -> HvResult<Box<dyn MigrationCall>> {
        (self.receive)(name, plan)
    }
}

/// The migration half of the hypervisor interface (a supertrait of
/// [`Hypervisor`], so every hypervisor handle offers it).
pub trait LiveMigration {
    /// Opens another connection, to `uri`, giving up after `budget`; a peer
    /// that stops answering later is noticed (see [`LiveMigration::is_alive`]).
    /// A guest is migrated to it with [`Peer::migrate_here`].
    fn open_connection(&self, uri: &str, budget: Duration) -> HvResult<Peer>;
    /// Whether this connection still reaches its hypervisor. A failed check
    /// of the connection itself is no proof of death: it answers true.
    fn is_alive(&self) -> bool;
    /// The longest pause at the switch-over, in milliseconds; set before
    /// the job starts, it applies from the first byte.
    fn set_max_downtime(&self, name: &str, millis: u64) -> HvResult<()>;
    /// The figures of the domain's active job; `None` when none is active.
    fn job_stats(&self, name: &str) -> HvResult<Option<JobSample>>;
    /// Cancels the domain's job (a migration); the guest stays here.
    fn abort_job(&self, name: &str) -> HvResult<()>;
    /// Moves execution to the target now; the rest of memory follows on demand.
    fn start_postcopy(&self, name: &str) -> HvResult<()>;
    /// Lets a paused guest run again.
    fn resume(&self, name: &str) -> HvResult<()>;
}

/// A started migration call.
pub trait MigrationCall: Send {
    /// The call's result, waiting at most `timeout`; `None` while it runs.
    fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>>;
}

/// `query` on `side`, given up after `budget`: a hypervisor that does not
/// answer must not hold the agent past its deadline. The one way calls that
/// may hang (the target, or a source busy migrating) are made.
pub fn bounded<T: Send + 'static>(
    side: &SharedHypervisor,
    budget: Duration,
    query: impl FnOnce(&dyn Hypervisor) -> HvResult<T> + Send + 'static,
) -> HvResult<T> {
    let side = Arc::clone(side);
    within(budget, move || query(&*side))
}

/// Runs `call` on a thread of its own and waits at most `budget` for it. A
/// late call's thread is left behind (the agent process ends soon after,
/// and nothing waits for it).
pub(crate) fn within<T: Send + 'static>(budget: Duration, call: impl FnOnce() -> HvResult<T> + Send + 'static) -> HvResult<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bounded-call".into())
        .spawn(move || {
            let _ = tx.send(call());
        })
        .map_err(|e| HvError::other(format!("cannot start a thread for the call: {e}")))?;
    rx.recv_timeout(budget).unwrap_or_else(|_| {
        Err(HvError::new(HvErrorKind::Unreachable, format!("no answer within {:.1}s", budget.as_secs_f64())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_call_is_given_up_after_its_budget() {
        let answered = within(Duration::from_secs(5), || Ok(7));
        assert_eq!(answered, Ok(7));
        let (_keep, hold) = mpsc::channel::<()>();
        let silent = within(Duration::from_millis(1), move || {
            let _ = hold.recv();
            Ok(())
        });
        assert_eq!(silent.unwrap_err().kind, HvErrorKind::Unreachable);
    }
}
