//! The fake's live migration: a job whose progress follows the clock, the
//! call that ends it, and the guest's move to the target fake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::migration::{JobSample, LiveMigration, MigrationCall, MigrationPlan, Peer};
use super::super::state::{reason, DomainState, StateKind};
use super::super::{HvError, HvErrorKind, HvResult};
use super::domains::power_off;
use super::faults::closed_by_restart;
use super::{Call, FakeDomain, FakeHypervisor};

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
pub(super) struct Migration {
    name: String,
    target: FakeHypervisor,
    started: Instant,
    /// When post-copy began, and how much was left to send then.
    postcopy: Option<(Instant, u64)>,
    aborted: bool,
    result: Option<HvResult<()>>,
}

impl FakeHypervisor {
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

impl FakeHypervisor {
    /// `target` as a connection opened by this one.
    fn peer(&self, target: FakeHypervisor) -> Peer {
        Peer::new(self.clone(), Arc::new(target), FakeHypervisor::migrate)
    }

    /// Starts migrating `name` to `target` (see [`Peer::new`]).
    fn migrate(&self, name: &str, target: &FakeHypervisor, plan: &MigrationPlan) -> HvResult<Box<dyn MigrationCall>> {
        self.enter(Call::Migrate { name: name.to_owned(), remote_uri: plan.remote_uri.clone() })?;
        self.active(name)?;
        let target = target.clone();
        let mut w = self.world();
        let started = w.clock.now();
        w.migration = Some(Migration { name: name.to_owned(), target, started, postcopy: None, aborted: false, result: None });
        drop(w);
        Ok(Box::new(FakeMigrationCall { source: self.clone() }))
    }
}

impl LiveMigration for FakeHypervisor {
    fn open_connection(&self, uri: &str, budget: Duration) -> HvResult<Peer> {
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
            return Ok(self.peer(FakeHypervisor { opened: Some(now), ..daemon }));
        }
        if there.restart.is_some_and(|r| (r.down..r.up).contains(&now)) {
            return Err(HvError::new(
                HvErrorKind::Unreachable,
                "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused",
            ));
        }
        drop(there);
        Ok(self.peer(FakeHypervisor { opened: Some(now), ..daemon }))
    }

    fn is_alive(&self) -> bool {
        let w = self.world();
        w.lost_at.is_none_or(|at| w.clock.now() < at) && !self.closed_by_restart(&w)
    }

    fn set_max_downtime(&self, name: &str, millis: u64) -> HvResult<()> {
        self.enter(Call::SetMaxDowntime(name.to_owned(), millis))?;
        self.active(name).map(drop)
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
    }}
