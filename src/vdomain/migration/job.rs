//! The bounded migration driver. The migration call runs elsewhere (a worker
//! thread in the libvirt implementation); this loop watches it, logs its
//! progress and decides, before the operation deadline, whether to keep
//! waiting, switch to post-copy, or abort. The decisions are pure functions
//! of what was observed, tested in-process against a scripted job.
//!
//! With `--postcopy` the switch comes as late as safely possible (see
//! [`POSTCOPY_WINDOW`], [`POSTCOPY_FIT`], [`POSTCOPY_SLACK`]). Late, because
//! pre-copy gets every chance to converge on its own: post-copy slows the
//! guest down while pages are fetched over the network, and a network
//! failure during post-copy loses the guest, because neither side has all of
//! its memory. Only when the post-copy phase is expected to finish before
//! the timeout, so that Pacemaker never kills an agent in the middle of it.

use std::time::Duration;

use tracing::{info, warn};

use crate::hypervisor::HvResult;
use crate::ocf::Deadline;

use super::options::PostcopyPolicy;
use super::progress::{self, JobSample, RateMeter};

/// What the driver needs from a running migration.
pub trait MigrationJob {
    /// Statistics of the running job; `Ok(None)` while no job is active
    /// (not begun yet, or just ended). Gives up after `budget`, like the
    /// two calls below: no call may carry the driver past its deadline.
    fn sample(&mut self, budget: Duration) -> HvResult<Option<JobSample>>;
    /// The migration call's result, waiting at most `timeout` for it.
    fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>>;
    /// Cancels the job; the guest keeps running on the source.
    fn abort(&mut self, budget: Duration) -> HvResult<()>;
    /// Moves execution to the target now; the rest of memory follows on demand.
    fn start_postcopy(&mut self, budget: Duration) -> HvResult<()>;
    /// Whether the target's hypervisor is still connected. A migration whose
    /// target went away cannot complete: it is aborted at once rather than at
    /// the deadline.
    fn target_alive(&mut self) -> bool;
    /// Whether the connection to the source's hypervisor (the one that
    /// samples, aborts and switches the job) is still open. A restarted or
    /// killed libvirtd closes it: the new daemon has taken the job over
    /// (cancelled it, or found it done), nothing more can be done over the
    /// old connection, and the migration call may not return for long.
    fn source_alive(&mut self) -> bool;
}

/// The time limits and choices of one run of the driver.
#[derive(Debug, Clone, Copy)]
pub struct DriverLimits {
    /// Pre-copy must have finished by then, or the job is aborted.
    pub cutoff: Deadline,
    /// Never wait beyond this (after an abort, or in post-copy).
    pub hard: Deadline,
    pub postcopy: PostcopyPolicy,
    pub poll: Duration,
    pub log_every: Duration,
}

/// What the driver saw at one poll.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobView {
    pub time_to_cutoff: Duration,
    pub iteration: Option<u64>,
    pub remaining_bytes: Option<u64>,
    /// Bytes per second.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Wait,
    StartPostcopy,
    Abort,
}

/// Post-copy is started when at most this many times the time it needs is
/// left: late enough that pre-copy had every chance to converge, early
/// enough that post-copy itself finishes before the deadline.
pub const POSTCOPY_WINDOW: f64 = 2.0;
/// Post-copy is only started when it is expected to need at most this
/// share of the time left: once started, it can no longer be undone.
pub const POSTCOPY_FIT: f64 = 0.8;
/// Added to the window for the switch itself (pausing, handing over state).
pub const POSTCOPY_SLACK: Duration = Duration::from_secs(2);
/// The longest wait for one statistics, abort or post-copy call.
pub const CALL_BUDGET: Duration = Duration::from_secs(5);

/// The driver's choice at one poll. Once post-copy runs there is nothing to
/// decide: aborting it would lose the guest.
pub fn decide(policy: PostcopyPolicy, postcopy_running: bool, obs: &JobView) -> Decision {
    if postcopy_running {
        return Decision::Wait;
    }
    let postcopy_fits = || match (obs.remaining_bytes, obs.rate) {
        (Some(remaining), Some(rate)) => {
            progress::time_to_send(remaining, rate).as_secs_f64() <= POSTCOPY_FIT * obs.time_to_cutoff.as_secs_f64()
        }
        _ => false,
    };
    let in_window = || match (obs.remaining_bytes, obs.rate) {
        (Some(remaining), Some(rate)) => {
            let need = progress::time_to_send(remaining, rate).mul_f64(POSTCOPY_WINDOW) + POSTCOPY_SLACK;
            obs.time_to_cutoff <= need
        }
        _ => false,
    };
    match policy {
        PostcopyPolicy::AfterFirstPass if obs.iteration.unwrap_or(0) >= 2 && postcopy_fits() => {
            return Decision::StartPostcopy
        }
        PostcopyPolicy::AfterFirstPass | PostcopyPolicy::BeforeDeadline if in_window() && postcopy_fits() => {
            return Decision::StartPostcopy
        }
        _ => {}
    }
    if obs.time_to_cutoff.is_zero() {
        Decision::Abort
    } else {
        Decision::Wait
    }
}

/// How a driven migration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The migration call returned success.
    Completed { postcopy: bool },
    /// The migration call failed on its own.
    Failed { error: String, postcopy: bool },
    /// The driver aborted it. `worker` is the migration call's result,
    /// `None` if it had not returned by the hard deadline.
    Aborted { cause: AbortCause, worker: Option<String>, abort_error: Option<String> },
    /// Post-copy was still running at the hard deadline.
    PostcopyUnfinished,
    /// The connection to the source's hypervisor closed (its libvirtd
    /// restarted or died) while the migration call had not returned: the
    /// driver stopped at once; where the guest is must be asked anew.
    SourceLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortCause {
    /// It would not have finished before the operation timeout.
    Deadline,
    /// The connection to the target's hypervisor broke.
    TargetLost,
}

/// Everything the driver learnt, for the exit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub last: Option<JobSample>,
}

/// Runs the watch loop until the migration call returns, is aborted, or the
/// hard deadline comes.
pub fn drive(job: &mut dyn MigrationJob, limits: &DriverLimits, label: &str) -> Report {
    let started = limits.hard.elapsed();
    let mut last: Option<JobSample> = None;
    let mut meter = RateMeter::default();
    let mut postcopy = false;
    let mut next_log = limits.log_every;
    let mut sample_errors = 0u32;
    loop {
        let step = limits.poll.min(limits.hard.remaining());
        if let Some(result) = job.wait(step) {
            let outcome = match result {
                Ok(()) => Outcome::Completed { postcopy },
                Err(error) => Outcome::Failed { error: error.message, postcopy },
            };
            return Report { outcome, last };
        }
        if limits.hard.expired() {
            let outcome = if postcopy {
                Outcome::PostcopyUnfinished
            } else {
                abort(job, limits, label, &last, AbortCause::Deadline)
            };
            return Report { outcome, last };
        }
        let since_start = limits.hard.elapsed().saturating_sub(started);
        match job.sample(CALL_BUDGET.min(limits.hard.remaining())) {
            Ok(Some(sample)) => {
                meter.update(since_start, &sample);
                last = Some(sample);
            }
            Ok(None) => {}
            Err(e) => {
                sample_errors += 1;
                if sample_errors == 1 || sample_errors % 20 == 0 {
                    warn!("{label}: cannot read the migration job's statistics: {e}");
                }
            }
        }
        if since_start >= next_log {
            next_log = since_start + limits.log_every;
            match &last {
                Some(s) => info!("{label}: {}", progress::describe(s, meter.rate(), limits.cutoff.remaining())),
                None => info!("{label}: waiting for the migration job to begin"),
            }
        }
        let obs = JobView {
            time_to_cutoff: limits.cutoff.remaining(),
            iteration: last.and_then(|s| s.iteration),
            remaining_bytes: last.map(|s| s.data_remaining.max(s.mem_remaining)),
            rate: meter.rate(),
        };
        if !postcopy && !job.target_alive() {
            return Report { outcome: abort(job, limits, label, &last, AbortCause::TargetLost), last };
        }
        if !postcopy && !job.source_alive() {
            // The call usually fails at the same moment; give it one poll
            // to say so, then stop: waiting for it could last until the
            // cutoff, and the job now belongs to the source's new daemon.
            let outcome = match job.wait(limits.poll.min(limits.hard.remaining())) {
                Some(Ok(())) => Outcome::Completed { postcopy },
                Some(Err(error)) => Outcome::Failed { error: error.message, postcopy },
                None => {
                    warn!("{label}: the connection to the source's hypervisor was closed (libvirtd restarted or died): not waiting for the migration call");
                    Outcome::SourceLost
                }
            };
            return Report { outcome, last };
        }
        match decide(limits.postcopy, postcopy, &obs) {
            Decision::Wait => {}
            Decision::StartPostcopy => match job.start_postcopy(CALL_BUDGET.min(limits.hard.remaining())) {
                Ok(()) => {
                    postcopy = true;
                    info!(
                        "{label}: switched to post-copy at {}: the guest now runs on the target",
                        last.map(|s| s.short()).unwrap_or_default()
                    );
                }
                Err(e) => warn!("{label}: cannot switch to post-copy: {e}"),
            },
            Decision::Abort => return Report { outcome: abort(job, limits, label, &last, AbortCause::Deadline), last },
        }
    }
}

fn abort(
    job: &mut dyn MigrationJob,
    limits: &DriverLimits,
    label: &str,
    last: &Option<JobSample>,
    cause: AbortCause,
) -> Outcome {
    let at = last.map(|s| s.short()).unwrap_or_else(|| "0%".into());
    let why = match cause {
        AbortCause::Deadline => "it cannot finish before the operation timeout",
        AbortCause::TargetLost => "the connection to the target's hypervisor is lost",
    };
    warn!("{label}: aborting the migration at {at}: {why}");
    let abort_error = job.abort(CALL_BUDGET.min(limits.hard.remaining())).err().map(|e| e.message);
    if let Some(e) = &abort_error {
        warn!("{label}: abort failed: {e}");
    }
    match job.wait(limits.hard.remaining()) {
        // It finished in the meantime: the abort came too late, which is fine.
        Some(Ok(())) => Outcome::Completed { postcopy: false },
        Some(Err(error)) => Outcome::Aborted { cause, worker: Some(error.message), abort_error },
        None => Outcome::Aborted { cause, worker: None, abort_error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::Clock;
    use crate::hypervisor::HvError;
    use std::collections::VecDeque;

    const MIB: u64 = 1 << 20;

    fn obs(secs_left: f64, remaining_mib: u64, rate_mib: f64, iteration: u64) -> JobView {
        JobView {
            time_to_cutoff: Duration::from_secs_f64(secs_left),
            iteration: Some(iteration),
            remaining_bytes: Some(remaining_mib * MIB),
            rate: Some(rate_mib * MIB as f64),
        }
    }

    #[test]
    fn precopy_only_waits_until_the_cutoff_then_aborts() {
        assert_eq!(decide(PostcopyPolicy::Never, false, &obs(30.0, 1000, 1.0, 5)), Decision::Wait);
        assert_eq!(decide(PostcopyPolicy::Never, false, &obs(0.0, 10, 100.0, 5)), Decision::Abort);
        assert_eq!(decide(PostcopyPolicy::Never, false, &JobView::default()), Decision::Abort);
    }

    #[test]
    fn postcopy_starts_late_but_in_time() {
        let p = PostcopyPolicy::BeforeDeadline;
        // 100 MiB at 10 MiB/s = 10 s; window opens at 2 * 10 + 2 = 22 s left.
        assert_eq!(decide(p, false, &obs(30.0, 100, 10.0, 3)), Decision::Wait);
        assert_eq!(decide(p, false, &obs(22.0, 100, 10.0, 3)), Decision::StartPostcopy);
        assert_eq!(decide(p, false, &obs(13.0, 100, 10.0, 3)), Decision::StartPostcopy);
        // Less than 10 / 0.8 = 12.5 s left: post-copy might not finish, so it is not started.
        assert_eq!(decide(p, false, &obs(12.0, 100, 10.0, 3)), Decision::Wait);
        assert_eq!(decide(p, false, &obs(0.0, 100, 10.0, 3)), Decision::Abort);
    }

    #[test]
    fn postcopy_never_starts_blind_or_hopeless() {
        let p = PostcopyPolicy::BeforeDeadline;
        let unknown_rate = JobView { rate: None, ..obs(5.0, 100, 1.0, 1) };
        assert_eq!(decide(p, false, &unknown_rate), Decision::Wait);
        assert_eq!(decide(p, false, &JobView { time_to_cutoff: Duration::ZERO, ..unknown_rate }), Decision::Abort);
        // 1 GiB at 1 MiB/s can never fit into 60 s: pre-copy keeps its chance, then abort.
        assert_eq!(decide(p, false, &obs(60.0, 1024, 1.0, 4)), Decision::Wait);
        assert_eq!(decide(p, false, &obs(0.0, 1024, 1.0, 4)), Decision::Abort);
    }

    #[test]
    fn postcopy_after_first_pass() {
        let p = PostcopyPolicy::AfterFirstPass;
        assert_eq!(decide(p, false, &obs(100.0, 100, 10.0, 1)), Decision::Wait);
        assert_eq!(decide(p, false, &obs(100.0, 100, 10.0, 2)), Decision::StartPostcopy);
        // Still only when it fits; otherwise the deadline rules apply.
        assert_eq!(decide(p, false, &obs(5.0, 100, 10.0, 2)), Decision::Wait);
        assert_eq!(decide(p, false, &obs(0.0, 100, 10.0, 2)), Decision::Abort);
    }

    #[test]
    fn running_postcopy_is_never_aborted() {
        for p in [PostcopyPolicy::Never, PostcopyPolicy::BeforeDeadline, PostcopyPolicy::AfterFirstPass] {
            assert_eq!(decide(p, true, &obs(0.0, 100, 1.0, 9)), Decision::Wait);
        }
    }

    /// A scripted migration: one sample per poll, a result after `finish_after`
    /// polls. Its waits move the manual clock the driver's deadlines read.
    struct Scripted {
        clock: Clock,
        samples: VecDeque<JobSample>,
        polls: u32,
        finish_after: Option<u32>,
        result_after_abort: Option<HvResult<()>>,
        aborted: bool,
        postcopy_at: Option<u32>,
        /// The worker hangs forever once aborted.
        hangs: bool,
        /// The target goes away at this poll.
        target_lost_at: Option<u32>,
        /// The abort call never answers (it gives up after its budget).
        abort_hangs: bool,
        /// The connection to the source closes at this poll; the call
        /// itself never returns.
        source_lost_at: Option<u32>,
    }

    impl Scripted {
        fn new(samples: Vec<JobSample>) -> Self {
            Scripted {
                clock: Clock::manual(),
                samples: samples.into(),
                polls: 0,
                finish_after: None,
                result_after_abort: Some(Err(HvError::other("operation aborted: migration out job: canceled by client"))),
                aborted: false,
                postcopy_at: None,
                hangs: false,
                target_lost_at: None,
                abort_hangs: false,
                source_lost_at: None,
            }
        }
    }

    impl MigrationJob for Scripted {
        fn sample(&mut self, _: Duration) -> HvResult<Option<JobSample>> {
            Ok(if self.samples.len() > 1 { self.samples.pop_front() } else { self.samples.front().copied() })
        }
        fn wait(&mut self, timeout: Duration) -> Option<HvResult<()>> {
            if self.aborted {
                if self.hangs {
                    self.clock.sleep(timeout);
                    return None;
                }
                return self.result_after_abort.clone();
            }
            self.polls += 1;
            if self.finish_after.is_some_and(|n| self.polls > n) {
                return Some(Ok(()));
            }
            self.clock.sleep(timeout);
            None
        }
        fn abort(&mut self, budget: Duration) -> HvResult<()> {
            self.aborted = true;
            if self.abort_hangs {
                self.clock.sleep(budget);
                return Err(HvError::other("no answer"));
            }
            Ok(())
        }
        fn start_postcopy(&mut self, _: Duration) -> HvResult<()> {
            self.postcopy_at = Some(self.polls);
            self.finish_after = Some(self.polls + 2);
            Ok(())
        }
        fn target_alive(&mut self) -> bool {
            self.target_lost_at.is_none_or(|n| self.polls < n)
        }
        fn source_alive(&mut self) -> bool {
            self.source_lost_at.is_none_or(|n| self.polls < n)
        }
    }

    fn limits(clock: Clock, cutoff_ms: u64, hard_ms: u64, postcopy: PostcopyPolicy) -> DriverLimits {
        let hard = Deadline::after_on(clock, Duration::from_millis(hard_ms));
        DriverLimits {
            cutoff: hard.before(Duration::from_millis(hard_ms - cutoff_ms)),
            hard,
            postcopy,
            poll: Duration::from_millis(10),
            log_every: Duration::from_millis(30),
        }
    }

    fn stuck_sample(iteration: u64) -> JobSample {
        JobSample {
            mem_total: 64 * MIB,
            mem_remaining: 24 * MIB,
            data_processed: 200 * MIB,
            data_remaining: 24 * MIB,
            bytes_per_sec: Some(MIB),
            iteration: Some(iteration),
            ..Default::default()
        }
    }

    #[test]
    fn a_migration_that_finishes_completes() {
        let mut job = Scripted::new(vec![stuck_sample(1)]);
        job.finish_after = Some(3);
        let l = limits(job.clock, 500, 800, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert_eq!(report.outcome, Outcome::Completed { postcopy: false });
        assert!(!job.aborted);
    }

    #[test]
    fn a_migration_that_cannot_converge_is_aborted_at_the_cutoff_and_reports_progress() {
        let mut job = Scripted::new(vec![stuck_sample(1), stuck_sample(2), stuck_sample(7)]);
        let l = limits(job.clock, 150, 400, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert!(job.aborted);
        // The poll that finds the cutoff passed aborts; the job ends at once.
        assert_eq!(l.hard.elapsed(), Duration::from_millis(150));
        assert!(matches!(
            report.outcome,
            Outcome::Aborted { cause: AbortCause::Deadline, worker: Some(ref e), abort_error: None } if e.contains("canceled")
        ));
        assert_eq!(report.last.unwrap().short(), "62% (iteration 7)");
    }

    #[test]
    fn a_hanging_worker_after_abort_is_bounded_by_the_hard_deadline() {
        let mut job = Scripted::new(vec![stuck_sample(3)]);
        job.hangs = true;
        let l = limits(job.clock, 100, 250, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert_eq!(report.outcome, Outcome::Aborted { cause: AbortCause::Deadline, worker: None, abort_error: None });
        assert_eq!(l.hard.elapsed(), Duration::from_millis(250), "waited for the worker until the hard deadline, no longer");
    }

    #[test]
    fn a_closed_source_connection_stops_the_driver_at_once_without_an_abort() {
        let mut job = Scripted::new(vec![stuck_sample(2)]);
        job.source_lost_at = Some(3);
        let l = limits(job.clock, 500, 800, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert_eq!(report.outcome, Outcome::SourceLost);
        assert!(!job.aborted, "nothing to abort over a closed connection");
        // Noticed at the third poll (30 ms), plus one poll's grace for the call's own error.
        assert_eq!(l.hard.elapsed(), Duration::from_millis(40));
    }

    #[test]
    fn a_call_that_fails_with_the_source_connection_reports_its_own_error() {
        let mut job = Scripted::new(vec![stuck_sample(2)]);
        job.source_lost_at = Some(3);
        job.finish_after = Some(3);
        let l = limits(job.clock, 500, 800, PostcopyPolicy::Never);
        assert_eq!(drive(&mut job, &l, "vm1").outcome, Outcome::Completed { postcopy: false });
    }

    #[test]
    fn a_hanging_abort_call_is_bounded_too() {
        let mut job = Scripted::new(vec![stuck_sample(3)]);
        job.hangs = true;
        job.abort_hangs = true;
        let l = limits(job.clock, 100, 250, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert_eq!(
            report.outcome,
            Outcome::Aborted { cause: AbortCause::Deadline, worker: None, abort_error: Some("no answer".into()) }
        );
        assert_eq!(l.hard.elapsed(), Duration::from_millis(250), "the abort call's budget ends at the hard deadline");
    }

    #[test]
    fn completion_racing_the_abort_counts_as_completed() {
        let mut job = Scripted::new(vec![stuck_sample(3)]);
        job.result_after_abort = Some(Ok(()));
        let l = limits(job.clock, 50, 200, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert_eq!(report.outcome, Outcome::Completed { postcopy: false });
    }

    #[test]
    fn a_lost_target_is_aborted_at_once() {
        let mut job = Scripted::new(vec![stuck_sample(2)]);
        job.target_lost_at = Some(3);
        let l = limits(job.clock, 5_000, 6_000, PostcopyPolicy::Never);
        let report = drive(&mut job, &l, "vm1");
        assert!(matches!(report.outcome, Outcome::Aborted { cause: AbortCause::TargetLost, .. }), "{report:?}");
        assert_eq!(l.hard.elapsed(), Duration::from_millis(30), "aborted at the third poll, not at the cutoff");
    }

    #[test]
    fn a_lost_target_in_postcopy_is_waited_for() {
        let s = JobSample { mem_remaining: 64 << 10, data_remaining: 64 << 10, ..stuck_sample(4) };
        let mut job = Scripted::new(vec![s]);
        job.target_lost_at = Some(2);
        let l = limits(job.clock, 200, 300, PostcopyPolicy::AfterFirstPass);
        let report = drive(&mut job, &DriverLimits { cutoff: l.hard, ..l }, "vm1");
        assert!(!job.aborted && job.postcopy_at.is_some(), "{report:?}");
        assert_eq!(report.outcome, Outcome::Completed { postcopy: true });
    }

    #[test]
    fn postcopy_is_started_instead_of_aborting() {
        // 4 MiB left at 1 MiB/s needs 4 s: it fits in a 10 s budget once the window opens at 10 s.
        let s = JobSample { mem_remaining: 4 * MIB, data_remaining: 4 * MIB, ..stuck_sample(4) };
        let mut job = Scripted::new(vec![s]);
        let hard = Deadline::after_on(job.clock, Duration::from_secs(12));
        let l = DriverLimits {
            cutoff: hard.before(Duration::from_secs(2)),
            hard,
            postcopy: PostcopyPolicy::BeforeDeadline,
            poll: Duration::from_millis(10),
            log_every: Duration::from_secs(2),
        };
        let report = drive(&mut job, &l, "vm1");
        assert_eq!(report.outcome, Outcome::Completed { postcopy: true });
        assert!(job.postcopy_at.is_some() && !job.aborted);
    }

    #[test]
    fn a_failure_of_the_migration_itself_is_reported_as_such() {
        struct Fails;
        impl MigrationJob for Fails {
            fn sample(&mut self, _: Duration) -> HvResult<Option<JobSample>> {
                Err(HvError::other("domain is not running"))
            }
            fn wait(&mut self, _: Duration) -> Option<HvResult<()>> {
                Some(Err(HvError::other("Cannot recv data: Connection reset by peer")))
            }
            fn abort(&mut self, _: Duration) -> HvResult<()> {
                panic!("nothing to abort")
            }
            fn start_postcopy(&mut self, _: Duration) -> HvResult<()> {
                panic!("no post-copy")
            }
            fn target_alive(&mut self) -> bool {
                true
            }
            fn source_alive(&mut self) -> bool {
                true
            }
        }
        let report = drive(&mut Fails, &limits(Clock::manual(), 100, 200, PostcopyPolicy::Never), "vm1");
        assert_eq!(
            report.outcome,
            Outcome::Failed { error: "Cannot recv data: Connection reset by peer".into(), postcopy: false }
        );
        assert_eq!(report.last, None);
    }
}
