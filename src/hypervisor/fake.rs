//! An in-memory hypervisor for in-process tests of the decision logic (built
//! for the unit tests only: it is no part of the library). It records every call as a typed [`Call`], keeps time on the
//! clock it is given (a manual one makes a two-minute migration take
//! milliseconds) and migrates guests to other fakes it is told about.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::deadline::Clock;

use super::domain_xml::DomainConfig;
use super::migration::{JobSample, LiveMigration, MigrationCall, MigrationPlan, SharedHypervisor};
use super::owner_tag::owner_in_domain_xml;
use super::state::{reason, DomainState, StateKind};
use super::{GuestFilesystems, HvError, HvErrorKind, HvResult, Hypervisor, ShutdownModes};

#[derive(Debug, Clone)]
pub struct FakeDomain {
    pub state: DomainState,
    pub persistent: bool,
    pub xml: String,
    /// Whether a shutdown request stops it (a firmware-only guest ignores ACPI).
    pub obeys_shutdown: bool,
    /// The owner tag: read from the XML it was created from, or set live.
    pub owner: Option<String>,
}

/// How a fake domain's QEMU guest agent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeAgent {
    /// The domain has no guest agent channel.
    NoChannel,
    /// The channel exists and an agent answers every command.
    Answering,
    /// The agent answers a ping, but listing the file systems hangs (a
    /// wedged mount): libvirt gives up after its bound.
    FilesystemsHung,
    /// The agent answers and reports its file systems frozen.
    FilesystemsFrozen,
    /// The channel exists but no agent holds it (killed, never installed).
    NotConnected,
    /// The agent holds the channel but answers nothing (SIGSTOP, hung OS):
    /// libvirt gives up after its bound.
    Frozen,
}

/// One call made on the fake, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    State(String),
    Create(String),
    Define(String),
    Start(String),
    Undefine(String),
    Shutdown(String, ShutdownModes),
    Destroy(String),
    Save(String, PathBuf),
    Restore(PathBuf),
    InactiveXml(String),
    EnsurePool(String),
    EnsureNetwork(String),
    OpenConnection(String),
    SetMaxDowntime(String, u64),
    Migrate { name: String, remote_uri: String },
    JobStats(String),
    AbortJob(String),
    StartPostcopy(String),
    Resume(String),
    ActiveDomains,
    Owner(String),
    SetOwner(String, String),
    /// A guest agent command (`ping`, `filesystems`) with its bound.
    GuestAgent { name: String, question: &'static str, bound: Duration },
}

/// What a [`Call`] does, without its arguments: the key
/// [`FakeHypervisor::failing`] injects a failure by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    State,
    Create,
    Define,
    Start,
    Undefine,
    Shutdown,
    Destroy,
    Save,
    Restore,
    InactiveXml,
    EnsurePool,
    EnsureNetwork,
    OpenConnection,
    SetMaxDowntime,
    Migrate,
    JobStats,
    AbortJob,
    StartPostcopy,
    Resume,
    ActiveDomains,
    Owner,
    SetOwner,
    GuestAgent,
}

impl Call {
    pub fn op(&self) -> Op {
        match self {
            Call::State(_) => Op::State,
            Call::Create(_) => Op::Create,
            Call::Define(_) => Op::Define,
            Call::Start(_) => Op::Start,
            Call::Undefine(_) => Op::Undefine,
            Call::Shutdown(..) => Op::Shutdown,
            Call::Destroy(_) => Op::Destroy,
            Call::Save(..) => Op::Save,
            Call::Restore(_) => Op::Restore,
            Call::InactiveXml(_) => Op::InactiveXml,
            Call::EnsurePool(_) => Op::EnsurePool,
            Call::EnsureNetwork(_) => Op::EnsureNetwork,
            Call::OpenConnection(_) => Op::OpenConnection,
            Call::SetMaxDowntime(..) => Op::SetMaxDowntime,
            Call::Migrate { .. } => Op::Migrate,
            Call::JobStats(_) => Op::JobStats,
            Call::AbortJob(_) => Op::AbortJob,
            Call::StartPostcopy(_) => Op::StartPostcopy,
            Call::Resume(_) => Op::Resume,
            Call::ActiveDomains => Op::ActiveDomains,
            Call::Owner(_) => Op::Owner,
            Call::SetOwner(..) => Op::SetOwner,
            Call::GuestAgent { .. } => Op::GuestAgent,
        }
    }
}

/// How a migration on the fake behaves. Memory goes over at
/// `bytes_per_sec` while the guest dirties it again at
/// `dirty_bytes_per_sec`: pre-copy converges only when the link is faster.
#[derive(Debug, Clone)]
pub struct MigrationScript {
    /// Guest memory, bytes.
    pub memory: u64,
    pub bytes_per_sec: u64,
    pub dirty_bytes_per_sec: u64,
    /// The migration call fails with this error after this long.
    pub fails: Option<(Duration, HvError)>,
    /// The failure leaves the guest paused on the source, as a failed
    /// switch-over does.
    pub failure_pauses_source: bool,
    /// After an abort the migration call never returns.
    pub hangs_after_abort: bool,
    /// A daemon restart on the source does not end the migration call: it
    /// never returns (libvirt's client-driven migration can be left waiting
    /// on the target, as in the systemd lab). The restarted daemon cancels
    /// the job all the same: the guest stays here.
    pub call_outlives_restart: bool,
}

impl Default for MigrationScript {
    fn default() -> Self {
        MigrationScript {
            memory: 64 << 20,
            bytes_per_sec: 16 << 20,
            dirty_bytes_per_sec: 0,
            fails: None,
            failure_pauses_source: false,
            hangs_after_abort: false,
            call_outlives_restart: false,
        }
    }
}

/// A migration under way on the fake.
struct Migration {
    name: String,
    target: FakeHypervisor,
    started: Instant,
    /// When post-copy began, and how much was left to send then.
    postcopy: Option<(Instant, u64)>,
    aborted: bool,
    result: Option<HvResult<()>>,
}

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

/// A restart of the fake's daemon: every connection open at `down` is
/// closed, new ones are refused until `up`.
#[derive(Debug, Clone, Copy)]
struct DaemonRestart {
    down: Instant,
    up: Instant,
    /// New connections hang until `up` (a socket systemd keeps open)
    /// instead of being refused.
    connects_hang: bool,
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

    pub fn with_domain(self, name: &str, state: DomainState, persistent: bool) -> Self {
        self.world().domains.insert(
            name.to_owned(),
            FakeDomain {
                state,
                persistent,
                xml: format!("<domain><name>{name}</name></domain>"),
                obeys_shutdown: true,
                owner: None,
            },
        );
        self
    }

    pub fn ignoring_shutdown(self) -> Self {
        let mut w = self.world();
        w.obeys_shutdown_on_create = false;
        for d in w.domains.values_mut() {
            d.obeys_shutdown = false;
        }
        drop(w);
        self
    }

    /// Created and started domains end up in `state` instead of running.
    pub fn booting_into(self, state: DomainState) -> Self {
        self.world().boot_state = Some(state);
        self
    }

    /// Makes every call of operation `op` fail with `error`.
    pub fn failing(self, op: Op, error: HvError) -> Self {
        self.world().failures.insert(op, error);
        self
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

    /// Makes `peer` reachable at `uri` (it keeps its own world).
    pub fn with_peer(self, uri: &str, peer: &FakeHypervisor) -> Self {
        self.world().peers.insert(uri.to_owned(), peer.clone());
        self
    }

    /// How migrations from this fake behave.
    pub fn migrating_like(self, script: MigrationScript) -> Self {
        self.world().script = script;
        self
    }

    /// The connection to this fake dies `after` from now on its clock.
    pub fn losing_connection_after(self, after: Duration) -> Self {
        let mut w = self.world();
        w.lost_at = Some(w.clock.now() + after);
        drop(w);
        self
    }

    /// The daemon restarts `after` from now on its clock, as `systemctl
    /// restart libvirtd` does: every connection open then is closed for good
    /// (calls fail with "client socket is closed", `is_alive` is false), new
    /// connections are refused for `down_for`, then accepted. A migration
    /// under way fails at that moment and the guest stays here, as libvirt's
    /// recovery of an unfinished outgoing migration leaves it.
    pub fn restarting_daemon_after(self, after: Duration, down_for: Duration) -> Self {
        let mut w = self.world();
        let down = w.clock.now() + after;
        w.restart = Some(DaemonRestart { down, up: down + down_for, connects_hang: false });
        drop(w);
        self
    }

    /// [`FakeHypervisor::restarting_daemon_after`] behind a listening
    /// socket that stays open, as systemd's socket units keep it: a new
    /// connection is not refused while the daemon is down but waits, until
    /// the daemon is up or the caller's budget is spent.
    pub fn restarting_daemon_behind_a_socket_after(self, after: Duration, down_for: Duration) -> Self {
        let mut w = self.world();
        let down = w.clock.now() + after;
        w.restart = Some(DaemonRestart { down, up: down + down_for, connects_hang: true });
        drop(w);
        self
    }

    pub fn script_states(&self, states: impl IntoIterator<Item = HvResult<Option<DomainState>>>) {
        self.world().scripted.extend(states);
    }

    pub fn set_state(&self, name: &str, state: DomainState) {
        if let Some(d) = self.world().domains.get_mut(name) {
            d.state = state;
        }
    }

    pub fn set_inactive_xml(&self, name: &str, xml: &str) {
        if let Some(d) = self.world().domains.get_mut(name) {
            d.xml = xml.to_owned();
        }
    }

    /// Puts an owner tag into the definition of domain `name`, whatever its
    /// state (`set_owner` tags only a running domain, as libvirt does live).
    pub fn tag_definition(&self, name: &str, owner: &str) {
        if let Some(d) = self.world().domains.get_mut(name) {
            d.owner = Some(owner.to_owned());
        }
    }

    /// How the guest agent of domain `name` behaves from now on.
    pub fn set_guest_agent(&self, name: &str, agent: FakeAgent) {
        self.world().agents.insert(name.to_owned(), agent);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    pub fn domain(&self, name: &str) -> Option<FakeDomain> {
        self.world().domains.get(name).cloned()
    }

    fn enter(&self, call: Call) -> HvResult<()> {
        let mut w = self.world();
        if self.closed_by_restart(&w) {
            w.calls.push(call);
            return Err(closed_by_restart());
        }
        drop(w);
        self.enter_without_connection(call)
    }

    /// Records `call` and applies the injected failures, whether or not this
    /// connection is still open (opening a new one does not need it).
    fn enter_without_connection(&self, call: Call) -> HvResult<()> {
        let mut w = self.world();
        let op = call.op();
        w.calls.push(call);
        if w.lost_at.is_some_and(|at| w.clock.now() >= at) {
            return Err(HvError::new(HvErrorKind::Unreachable, "End of file while reading data: Input/output error"));
        }
        match w.failures.get(&op) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Whether a daemon restart has closed this connection.
    fn closed_by_restart(&self, w: &World) -> bool {
        w.restart.is_some_and(|r| w.clock.now() >= r.down && self.opened.is_none_or(|opened| opened < r.down))
    }

    fn no_domain(name: &str) -> HvError {
        HvError::new(HvErrorKind::NoDomain, format!("Domain not found: no domain with matching name '{name}'"))
    }

    fn not_running() -> HvError {
        HvError::new(HvErrorKind::NotRunning, "Requested operation is not valid: domain is not running")
    }

    /// Takes the domain off: a transient one disappears, a persistent one is shut off.
    fn power_off(&self, name: &str, reason: u32) {
        power_off(&mut self.world(), name, reason);
    }

    fn active(&self, name: &str) -> HvResult<FakeDomain> {
        match self.domain(name) {
            Some(d) if d.state.is_active() => Ok(d),
            Some(_) => Err(Self::not_running()),
            None => Err(Self::no_domain(name)),
        }
    }
}

/// What libvirt's client library says on a connection its daemon closed.
fn closed_by_restart() -> HvError {
    HvError::other("internal error: client socket is closed")
}

fn power_off(w: &mut World, name: &str, reason: u32) {
    let persistent = w.domains.get(name).is_some_and(|d| d.persistent);
    if persistent {
        if let Some(d) = w.domains.get_mut(name) {
            d.state = DomainState::new(StateKind::Shutoff, reason);
        }
    } else {
        w.domains.remove(name);
    }
}

impl Hypervisor for FakeHypervisor {
    fn uri(&self) -> String {
        self.world().uri.clone()
    }

    fn state(&self, name: &str) -> HvResult<Option<DomainState>> {
        self.enter(Call::State(name.to_owned()))?;
        if let Some(next) = self.world().scripted.pop_front() {
            return next;
        }
        Ok(self.domain(name).map(|d| d.state))
    }


    fn create_transient(&self, xml: &str) -> HvResult<()> {
        let config = DomainConfig::parse(xml).map_err(HvError::other)?;
        self.enter(Call::Create(config.name.clone()))?;
        let mut w = self.world();
        if w.domains.contains_key(&config.name) {
            return Err(HvError::other(format!("operation failed: domain '{}' already exists", config.name)));
        }
        let obeys_shutdown = w.obeys_shutdown_on_create;
        let state = w.boot_state.unwrap_or_else(running);
        w.domains.insert(
            config.name,
            FakeDomain { state, persistent: false, xml: xml.to_owned(), obeys_shutdown, owner: owner_in_domain_xml(xml) },
        );
        Ok(())
    }

    fn define(&self, xml: &str) -> HvResult<()> {
        let config = DomainConfig::parse(xml).map_err(HvError::other)?;
        self.enter(Call::Define(config.name.clone()))?;
        let mut w = self.world();
        let obeys_shutdown = w.obeys_shutdown_on_create;
        let entry = w.domains.entry(config.name).or_insert(FakeDomain {
            state: DomainState::new(StateKind::Shutoff, 0),
            persistent: true,
            xml: xml.to_owned(),
            obeys_shutdown,
            owner: None,
        });
        entry.persistent = true;
        entry.xml = xml.to_owned();
        entry.owner = owner_in_domain_xml(xml);
        Ok(())
    }

    fn start_defined(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Start(name.to_owned()))?;
        let mut w = self.world();
        let state = w.boot_state.unwrap_or_else(running);
        let d = w.domains.get_mut(name).ok_or_else(|| Self::no_domain(name))?;
        d.state = state;
        Ok(())
    }

    fn undefine(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Undefine(name.to_owned()))?;
        let mut w = self.world();
        let d = w.domains.get_mut(name).ok_or_else(|| Self::no_domain(name))?;
        if d.state.is_active() {
            d.persistent = false;
        } else {
            w.domains.remove(name);
        }
        Ok(())
    }

    fn shutdown(&self, name: &str, modes: ShutdownModes) -> HvResult<()> {
        self.enter(Call::Shutdown(name.to_owned(), modes))?;
        let domain = self.active(name)?;
        // Like libvirt: a paused guest cannot act on a shutdown request.
        if domain.state.kind == StateKind::Paused {
            return Err(Self::not_running());
        }
        if domain.obeys_shutdown {
            self.power_off(name, reason::SHUTOFF_SHUTDOWN);
        }
        Ok(())
    }

    fn destroy(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Destroy(name.to_owned()))?;
        self.active(name)?;
        self.power_off(name, reason::SHUTOFF_DESTROYED);
        Ok(())
    }

    fn save(&self, name: &str, path: &Path) -> HvResult<()> {
        self.enter(Call::Save(name.to_owned(), path.to_path_buf()))?;
        let d = self.active(name)?;
        self.world().saved.insert(path.to_path_buf(), d);
        std::fs::write(path, b"fake saved state").map_err(|e| HvError::other(e.to_string()))?;
        self.power_off(name, reason::SHUTOFF_SAVED);
        Ok(())
    }

    fn restore(&self, path: &Path) -> HvResult<()> {
        self.enter(Call::Restore(path.to_path_buf()))?;
        let mut w = self.world();
        let mut d = w.saved.remove(path).ok_or_else(|| HvError::other(format!("cannot read {}", path.display())))?;
        d.state = DomainState::new(StateKind::Running, reason::RUNNING_RESTORED);
        let name = DomainConfig::parse(&d.xml).map(|c| c.name).map_err(HvError::other)?;
        w.domains.insert(name, d);
        Ok(())
    }

    fn inactive_xml(&self, name: &str) -> HvResult<String> {
        self.enter(Call::InactiveXml(name.to_owned()))?;
        self.domain(name).map(|d| d.xml).ok_or_else(|| Self::no_domain(name))
    }

    fn ensure_pool_active(&self, pool: &str) -> HvResult<()> {
        self.enter(Call::EnsurePool(pool.to_owned()))
    }

    fn ensure_network_active(&self, network: &str) -> HvResult<()> {
        self.enter(Call::EnsureNetwork(network.to_owned()))
    }

    fn active_domains(&self) -> HvResult<Vec<String>> {
        self.enter(Call::ActiveDomains)?;
        Ok(self.world().domains.iter().filter(|(_, d)| d.state.is_active()).map(|(n, _)| n.clone()).collect())
    }

    fn owner(&self, name: &str) -> HvResult<Option<String>> {
        self.enter(Call::Owner(name.to_owned()))?;
        self.domain(name).map(|d| d.owner).ok_or_else(|| Self::no_domain(name))
    }

    fn set_owner(&self, name: &str, instance: &str) -> HvResult<()> {
        self.enter(Call::SetOwner(name.to_owned(), instance.to_owned()))?;
        self.active(name)?;
        if let Some(d) = self.world().domains.get_mut(name) {
            d.owner = Some(instance.to_owned());
        }
        Ok(())
    }

    fn guest_agent_ping(&self, name: &str, bound: Duration) -> HvResult<()> {
        self.ask_agent(name, "ping", bound).map(drop)
    }

    fn guest_filesystems(&self, name: &str, bound: Duration) -> HvResult<GuestFilesystems> {
        match self.ask_agent(name, "filesystems", bound)? {
            FakeAgent::FilesystemsHung => Err(Self::unresponsive("Guest agent not available for now")),
            FakeAgent::FilesystemsFrozen => Ok(GuestFilesystems { count: 1, frozen: true }),
            _ => Ok(GuestFilesystems { count: 1, frozen: false }),
        }
    }
}


impl FakeHypervisor {
    fn unresponsive(why: &str) -> HvError {
        HvError::other(format!("Guest agent is not responding: {why}"))
    }

    /// The agent of a running domain, when it answers at all.
    fn ask_agent(&self, name: &str, question: &'static str, bound: Duration) -> HvResult<FakeAgent> {
        self.enter(Call::GuestAgent { name: name.to_owned(), question, bound })?;
        self.active(name)?;
        let agent = self.world().agents.get(name).copied().unwrap_or(FakeAgent::NoChannel);
        match agent {
            FakeAgent::NoChannel => Err(HvError::other("argument unsupported: QEMU guest agent is not configured")),
            FakeAgent::NotConnected => Err(Self::unresponsive("QEMU guest agent is not connected")),
            FakeAgent::Frozen => Err(Self::unresponsive("Guest agent not available for now")),
            FakeAgent::Answering | FakeAgent::FilesystemsHung | FakeAgent::FilesystemsFrozen => Ok(agent),
        }
    }
}

/// The progress of a migration at `now`: (bytes left, bytes sent, pass).
fn progress(script: &MigrationScript, m: &Migration, now: Instant) -> (u64, u64, u64) {
    let rate = script.bytes_per_sec.max(1);
    if let Some((since, left)) = m.postcopy {
        let sent = (now.saturating_duration_since(since).as_secs_f64() * rate as f64) as u64;
        let precopy_sent = (since.saturating_duration_since(m.started).as_secs_f64() * rate as f64) as u64;
        return (left.saturating_sub(sent), precopy_sent + sent, 1 + precopy_sent / script.memory.max(1));
    }
    let secs = now.saturating_duration_since(m.started).as_secs_f64();
    let sent = (secs * rate as f64) as u64;
    let gained = rate.saturating_sub(script.dirty_bytes_per_sec);
    let left = if gained > 0 {
        script.memory.saturating_sub((secs * gained as f64) as u64)
    } else {
        // The guest dirties memory as fast as it goes: a quarter never gets across.
        script.memory.saturating_sub(sent).max(script.memory / 4)
    };
    (left, sent, 1 + sent / script.memory.max(1))
}

/// When the migration under way ends on its own, and how.
fn next_end(script: &MigrationScript, m: &Migration) -> Option<(Instant, HvResult<()>)> {
    let rate = script.bytes_per_sec.max(1) as f64;
    let done = match m.postcopy {
        Some((since, left)) => Some(since + Duration::from_secs_f64(left as f64 / rate)),
        None => {
            let gained = script.bytes_per_sec.saturating_sub(script.dirty_bytes_per_sec);
            (gained > 0).then(|| m.started + Duration::from_secs_f64(script.memory as f64 / gained as f64))
        }
    };
    let failure = script.fails.as_ref().map(|(after, e)| (m.started + *after, Err(e.clone())));
    match (done, failure) {
        (Some(at), Some((fail_at, e))) if fail_at < at => Some((fail_at, e)),
        (Some(at), _) => Some((at, Ok(()))),
        (None, failure) => failure,
    }
}

/// The fake's migration call: waiting on it moves the fake's clock.
struct FakeMigrationCall {
    source: FakeHypervisor,
}

impl FakeMigrationCall {
    /// Ends the migration with `result`: the guest moves on success.
    fn finish(&self, result: HvResult<()>) -> HvResult<()> {
        let mut w = self.source.world();
        let script = w.script.clone();
        let Some(m) = w.migration.as_mut() else { return result };
        m.result = Some(result.clone());
        let (name, target, postcopy, aborted) = (m.name.clone(), m.target.clone(), m.postcopy.is_some(), m.aborted);
        let domain = w.domains.get(&name).cloned();
        match (&result, domain) {
            (Ok(()), Some(d)) => {
                power_off(&mut w, &name, reason::SHUTOFF_MIGRATED);
                drop(w);
                let arrived = DomainState::new(StateKind::Running, reason::RUNNING_MIGRATED);
                target.world().domains.insert(name, FakeDomain { state: arrived, persistent: false, ..d });
            }
            (Err(_), Some(_)) if postcopy => {
                let failed = DomainState::new(StateKind::Paused, reason::PAUSED_POSTCOPY_FAILED);
                w.domains.entry(name).and_modify(|d| d.state = failed);
            }
            (Err(_), Some(_)) => {
                let state = if script.failure_pauses_source && !aborted {
                    DomainState::new(StateKind::Paused, reason::PAUSED_MIGRATION)
                } else {
                    DomainState::new(StateKind::Running, reason::RUNNING_MIGRATION_CANCELED)
                };
                w.domains.entry(name).and_modify(|d| d.state = state);
            }
            (_, None) => {}
        }
        result
    }
}

impl MigrationCall for FakeMigrationCall {
    fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>> {
        let w = self.source.world();
        let clock = w.clock;
        let m = w.migration.as_ref()?;
        if let Some(result) = &m.result {
            return Some(result.clone());
        }
        if m.aborted {
            let hangs = w.script.hangs_after_abort;
            drop(w);
            if hangs {
                clock.sleep(timeout);
                return None;
            }
            let canceled = HvError::other("operation aborted: migration out job: canceled by client");
            return Some(self.finish(Err(canceled)));
        }
        let mut end = next_end(&w.script, m);
        // A daemon restart before the job's own end ends the call, or
        // leaves it waiting for ever.
        if let Some(down) = w.restart.map(|r| r.down).filter(|down| *down >= m.started) {
            if end.as_ref().is_none_or(|(at, _)| down < *at) {
                end = (!w.script.call_outlives_restart).then(|| (down, Err(closed_by_restart())));
            }
        }
        drop(w);
        let now = clock.now();
        match end {
            Some((at, result)) if at <= now + timeout => {
                clock.sleep(at.saturating_duration_since(now));
                Some(self.finish(result))
            }
            _ => {
                clock.sleep(timeout);
                None
            }
        }
    }
}

impl LiveMigration for FakeHypervisor {
    fn open_connection(&self, uri: &str, budget: Duration) -> HvResult<SharedHypervisor> {
        self.enter_without_connection(Call::OpenConnection(uri.to_owned()))?;
        let w = self.world();
        let daemon = if uri == w.uri {
            self.clone()
        } else {
            match w.peers.get(uri) {
                Some(peer) => peer.clone(),
                None => {
                    return Err(HvError::new(HvErrorKind::Unreachable, format!("unable to connect to '{uri}': no such fake")))
                }
            }
        };
        drop(w);
        let there = daemon.world();
        let mut now = there.clock.now();
        if let Some(r) = there.restart.filter(|r| r.connects_hang && (r.down..r.up).contains(&now)) {
            let clock = there.clock;
            drop(there);
            let wait = r.up.saturating_duration_since(now);
            if wait > budget {
                clock.sleep(budget);
                return Err(HvError::new(HvErrorKind::Unreachable, format!("no answer within {:.1}s", budget.as_secs_f64())));
            }
            clock.sleep(wait);
            now = clock.now();
            return Ok(Arc::new(FakeHypervisor { opened: Some(now), ..daemon }));
        }
        if there.restart.is_some_and(|r| (r.down..r.up).contains(&now)) {
            return Err(HvError::new(
                HvErrorKind::Unreachable,
                "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused",
            ));
        }
        drop(there);
        Ok(Arc::new(FakeHypervisor { opened: Some(now), ..daemon }))
    }

    fn is_alive(&self) -> bool {
        let w = self.world();
        w.lost_at.is_none_or(|at| w.clock.now() < at) && !self.closed_by_restart(&w)
    }

    fn set_max_downtime(&self, name: &str, millis: u64) -> HvResult<()> {
        self.enter(Call::SetMaxDowntime(name.to_owned(), millis))?;
        self.active(name).map(drop)
    }

    fn migrate(&self, name: &str, target: &SharedHypervisor, plan: &MigrationPlan) -> HvResult<Box<dyn MigrationCall>> {
        self.enter(Call::Migrate { name: name.to_owned(), remote_uri: plan.remote_uri.clone() })?;
        self.active(name)?;
        let target = target
            .as_any()
            .downcast_ref::<FakeHypervisor>()
            .ok_or_else(|| HvError::other("the migration target is not a fake"))?
            .clone();
        let mut w = self.world();
        let started = w.clock.now();
        w.migration = Some(Migration { name: name.to_owned(), target, started, postcopy: None, aborted: false, result: None });
        drop(w);
        Ok(Box::new(FakeMigrationCall { source: self.clone() }))
    }

    fn job_stats(&self, name: &str) -> HvResult<Option<JobSample>> {
        self.enter(Call::JobStats(name.to_owned()))?;
        self.active(name)?;
        let w = self.world();
        let Some(m) = w.migration.as_ref().filter(|m| m.name == name && m.result.is_none()) else { return Ok(None) };
        let (left, sent, pass) = progress(&w.script, m, w.clock.now());
        Ok(Some(JobSample {
            mem_total: w.script.memory,
            mem_remaining: left,
            data_processed: sent,
            data_remaining: left,
            bytes_per_sec: Some(w.script.bytes_per_sec),
            iteration: Some(pass),
            dirty_bytes_per_sec: Some(w.script.dirty_bytes_per_sec),
            ..JobSample::default()
        }))
    }

    fn abort_job(&self, name: &str) -> HvResult<()> {
        self.enter(Call::AbortJob(name.to_owned()))?;
        let mut w = self.world();
        match w.migration.as_mut().filter(|m| m.name == name && m.result.is_none()) {
            Some(m) => {
                m.aborted = true;
                Ok(())
            }
            None => Err(HvError::other("Requested operation is not valid: no job is active on the domain")),
        }
    }

    fn start_postcopy(&self, name: &str) -> HvResult<()> {
        self.enter(Call::StartPostcopy(name.to_owned()))?;
        let mut w = self.world();
        let now = w.clock.now();
        let script = w.script.clone();
        let Some(m) = w.migration.as_mut().filter(|m| m.name == name && m.result.is_none() && !m.aborted) else {
            return Err(HvError::other("Requested operation is not valid: no job is active on the domain"));
        };
        let (left, _, _) = progress(&script, m, now);
        m.postcopy = Some((now, left));
        let target = m.target.clone();
        let Some(d) = w.domains.get_mut(name) else { return Err(Self::no_domain(name)) };
        d.state = DomainState::new(StateKind::Paused, reason::PAUSED_POSTCOPY);
        let moved = FakeDomain { state: DomainState::new(StateKind::Running, reason::RUNNING_POSTCOPY), ..d.clone() };
        drop(w);
        target.world().domains.insert(name.to_owned(), moved);
        Ok(())
    }

    fn resume(&self, name: &str) -> HvResult<()> {
        self.enter(Call::Resume(name.to_owned()))?;
        let mut w = self.world();
        match w.domains.get_mut(name) {
            Some(d) if d.state.kind == StateKind::Paused => {
                d.state = DomainState::new(StateKind::Running, reason::RUNNING_UNPAUSED);
                Ok(())
            }
            Some(_) => Err(HvError::other("Requested operation is not valid: domain is not paused")),
            None => Err(Self::no_domain(name)),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
