//! An in-memory hypervisor for in-process tests of the decision logic (built
//! for the unit tests only: it is no part of the library). It records every
//! call as a typed [`Call`], keeps time on the clock it is given (a manual one
//! makes a two-minute migration take milliseconds) and migrates guests to
//! other fakes it is told about. One file per job: the domain store, injected
//! faults, the migration simulation and the guest agent.

mod calls;
mod domains;
mod faults;
mod guest_agent;
mod migration;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::deadline::Clock;

use super::state::{reason, DomainState, StateKind};
use super::{HvError, HvResult};

pub use calls::{Call, Op};
pub use domains::FakeDomain;
use faults::DaemonRestart;
pub use guest_agent::FakeAgent;
use migration::Migration;
pub use migration::MigrationScript;

/// What every connection to one fake host sees.
struct World {
    domains: BTreeMap<String, FakeDomain>,
    /// States returned by the next `state()` calls, before the real one.
    scripted: VecDeque<HvResult<Option<DomainState>>>,
    saved: BTreeMap<PathBuf, FakeDomain>,
    failures: BTreeMap<Op, HvError>,
    calls: Vec<Call>,
    obeys_shutdown_on_create: bool,
    /// The state a created or started domain is in (running unless set).
    boot_state: Option<DomainState>,
    clock: Clock,
    uri: String,
    /// Other fakes reachable by URI (the migration target).
    peers: BTreeMap<String, FakeHypervisor>,
    /// From then on the connection is dead: calls fail, `is_alive` is false.
    lost_at: Option<Instant>,
    /// When the daemon restarts, if it does (see [`FakeHypervisor::restarting_daemon_after`]).
    restart: Option<DaemonRestart>,
    script: MigrationScript,
    migration: Option<Migration>,
    agents: BTreeMap<String, FakeAgent>,
}

/// The fake; clones share one world (like two connections to one host).
#[derive(Clone)]
pub struct FakeHypervisor {
    world: Arc<Mutex<World>>,
    /// When this connection was opened by `open_connection` (`None`: made
    /// by the test, there from the start): a daemon restart closes the
    /// connections opened before it.
    opened: Option<Instant>,
}

impl Default for FakeHypervisor {
    fn default() -> Self {
        Self::new()
    }
}

pub fn running() -> DomainState {
    DomainState::new(StateKind::Running, reason::RUNNING_BOOTED)
}

impl FakeHypervisor {
    pub fn new() -> Self {
        let world = World {
            domains: BTreeMap::new(),
            scripted: VecDeque::new(),
            saved: BTreeMap::new(),
            failures: BTreeMap::new(),
            calls: Vec::new(),
            obeys_shutdown_on_create: true,
            boot_state: None,
            clock: Clock::System,
            uri: "fake:///".into(),
            peers: BTreeMap::new(),
            lost_at: None,
            restart: None,
            script: MigrationScript::default(),
            migration: None,
            agents: BTreeMap::new(),
        };
        FakeHypervisor { world: Arc::new(Mutex::new(world)), opened: None }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps time on `clock`: migrations progress and connections die by it.
    pub fn with_clock(self, clock: Clock) -> Self {
        self.world().clock = clock;
        self
    }

    /// The URI this fake answers to.
    pub fn with_uri(self, uri: &str) -> Self {
        self.world().uri = uri.to_owned();
        self
    }


    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }
}
