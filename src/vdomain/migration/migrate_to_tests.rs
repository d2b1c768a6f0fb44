//! migrate_to's decisions against two in-memory hypervisors on a manual
//! clock: pre-flight refusals, the abort at the cutoff, the switch to
//! post-copy, a lost target, and where the guest is said to be afterwards.
//! A two-minute operation takes milliseconds, and every time is exact.

use std::time::Duration;

use crate::deadline::{Clock, Deadline};
use crate::hypervisor::fake::{running, Call, FakeHypervisor, MigrationScript, Op};
use crate::hypervisor::state::reason;
use crate::hypervisor::{DomainState, HvError, StateKind};
use crate::ocf::{Action, OcfError, OcfResult, OcfStatus};
use crate::vdomain::tests::{case, vm_with, NAME};

use super::migrate_to;

const TARGET_URI: &str = "qemu+ssh://node2/system";
const MIB: u64 = 1 << 20;

/// The source with the guest running, the target it can reach, one clock.
struct Lab {
    clock: Clock,
    source: FakeHypervisor,
    target: FakeHypervisor,
}

impl Lab {
    fn new(script: MigrationScript) -> Lab {
        let clock = Clock::manual();
        let target = FakeHypervisor::new().with_clock(clock).with_uri(TARGET_URI);
        let source = FakeHypervisor::new()
            .with_clock(clock)
            .with_uri("qemu:///system")
            .with_domain(NAME, running(), false)
            .with_peer(TARGET_URI, &target)
            .migrating_like(script);
        Lab { clock, source, target }
    }

    /// migrate_to with a 120 s timeout; the result and the time it took.
    fn migrate(&self, params: &[(&str, &str)]) -> (OcfResult, Duration) {
        let mut params = params.to_vec();
        params.push(("remoteuri", "qemu+ssh://%n/system"));
        let meta = [
            ("OCF_RESKEY_CRM_meta_migrate_source", "node1"),
            ("OCF_RESKEY_CRM_meta_migrate_target", "node2"),
            ("OCF_RESKEY_CRM_meta_timeout", "120000"),
        ];
        let c = case(&params, &meta);
        let mut vm = vm_with(&c, Action::MigrateTo, Ok(&self.source));
        vm.deadline = Deadline::after_on(self.clock, Duration::from_secs(120));
        let result = migrate_to(&vm);
        (result, vm.deadline.elapsed())
    }

    fn state(side: &FakeHypervisor) -> Option<DomainState> {
        side.domain(NAME).map(|d| d.state).filter(|s| s.is_active())
    }

    fn assert_only_on_source(&self) {
        assert_eq!(Lab::state(&self.source).map(|s| s.kind), Some(StateKind::Running));
        assert_eq!(Lab::state(&self.target), None);
    }
}

fn converging() -> MigrationScript {
    MigrationScript { memory: 64 * MIB, bytes_per_sec: 16 * MIB, ..MigrationScript::default() }
}

/// The guest dirties memory as fast as the link carries it.
fn never_converging(memory: u64) -> MigrationScript {
    MigrationScript { memory, bytes_per_sec: 16 * MIB, dirty_bytes_per_sec: 16 * MIB, ..MigrationScript::default() }
}

fn reason_of(result: OcfResult) -> String {
    let OcfError { status, reason } = result.expect_err("migrate_to should fail");
    assert_eq!(status, OcfStatus::ErrGeneric);
    reason
}

fn called(side: &FakeHypervisor, wanted: impl Fn(&Call) -> bool) -> bool {
    side.calls().iter().any(wanted)
}

#[test]
fn a_guest_that_converges_moves_and_runs_on_the_target_only() {
    let lab = Lab::new(converging());
    let (result, took) = lab.migrate(&[("migration_downtime", "250")]);
    assert_eq!(result, Ok(OcfStatus::Success));
    assert_eq!(Lab::state(&lab.source), None);
    assert_eq!(Lab::state(&lab.target), Some(DomainState::new(StateKind::Running, reason::RUNNING_MIGRATED)));
    assert!(lab.source.calls().contains(&Call::SetMaxDowntime(NAME.into(), 250)));
    assert!(lab.source.calls().contains(&Call::Migrate { name: NAME.into(), remote_uri: TARGET_URI.into() }));
    assert!(!called(&lab.source, |c| matches!(c, Call::AbortJob(_) | Call::StartPostcopy(_))));
    // 64 MiB at 16 MiB/s.
    assert_eq!(took, Duration::from_secs(4));
}

#[test]
fn an_unreachable_target_is_refused_before_anything_is_sent() {
    let lab = Lab::new(converging());
    let lonely = FakeHypervisor::new().with_clock(lab.clock).with_domain(NAME, running(), false);
    let lab = Lab { source: lonely, ..lab };
    let reason = reason_of(lab.migrate(&[]).0);
    assert!(reason.starts_with(&format!("not migrating {NAME} to node2: the hypervisor at {TARGET_URI} did not answer")), "{reason}");
    assert!(reason.ends_with(&format!("{NAME} still runs on node1")), "{reason}");
    assert!(!called(&lab.source, |c| matches!(c, Call::Migrate { .. })));
}

#[test]
fn a_guest_already_active_on_the_target_is_refused() {
    let lab = Lab::new(converging());
    let paused = DomainState::new(StateKind::Paused, reason::PAUSED_MIGRATION);
    lab.target.clone().with_domain(NAME, paused, false);
    let reason = reason_of(lab.migrate(&[]).0);
    assert!(reason.contains("it is already active there (paused (migration))"), "{reason}");
    assert!(!called(&lab.source, |c| matches!(c, Call::Migrate { .. })));
    assert_eq!(lab.target.domain(NAME).map(|d| d.state), Some(paused), "the target's guest is left alone");
}

#[test]
fn a_guest_not_running_here_is_refused() {
    let lab = Lab::new(converging());
    lab.source.set_state(NAME, DomainState::new(StateKind::Shutoff, reason::SHUTOFF_SHUTDOWN));
    let reason = reason_of(lab.migrate(&[]).0);
    assert!(reason.contains("migrate_to: not active locally (shut off (shutdown))"), "{reason}");
    assert!(!called(&lab.source, |c| matches!(c, Call::OpenConnection(_))));
}

#[test]
fn a_network_that_cannot_start_on_the_target_is_refused() {
    let lab = Lab::new(converging());
    // The clone shares the target's world.
    lab.target.clone().failing(Op::EnsureNetwork, HvError::other("network 'default' is not defined"));
    let xml = format!(
        "<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory>\
         <devices><interface type='network'><source network='default'/></interface></devices></domain>"
    );
    let c = case(&[("remoteuri", "qemu+ssh://%n/system"), ("start_resources", "true")], &[
        ("OCF_RESKEY_CRM_meta_migrate_source", "node1"),
        ("OCF_RESKEY_CRM_meta_migrate_target", "node2"),
    ]);
    let mut vm = vm_with(&c, Action::MigrateTo, Ok(&lab.source));
    vm.domain = crate::hypervisor::domain_xml::DomainConfig::parse(&xml).unwrap();
    vm.deadline = Deadline::after_on(lab.clock, Duration::from_secs(120));
    let reason = reason_of(migrate_to(&vm));
    assert!(reason.contains("network default on node2: network 'default' is not defined"), "{reason}");
    assert!(!called(&lab.source, |c| matches!(c, Call::Migrate { .. })));
}

#[test]
fn a_migration_that_cannot_converge_is_aborted_at_the_cutoff() {
    let lab = Lab::new(never_converging(256 * MIB));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(
        reason.starts_with(&format!("{NAME}: migration to node2 aborted at 75% (iteration ")),
        "{reason}"
    );
    assert!(reason.ends_with(&format!("before the 120s timeout; {NAME} still runs on node1")), "{reason}");
    assert!(lab.source.calls().contains(&Call::AbortJob(NAME.into())));
    // The cutoff keeps 10% of the timeout (12 s) for the abort and the look around.
    assert!(took >= Duration::from_secs(108) && took < Duration::from_secs(120), "{took:?}");
    lab.assert_only_on_source();
}

#[test]
fn postcopy_takes_over_when_precopy_cannot_converge() {
    let lab = Lab::new(never_converging(1024 * MIB));
    let (result, took) = lab.migrate(&[("migrate_options", "--postcopy")]);
    assert_eq!(result, Ok(OcfStatus::Success));
    assert!(lab.source.calls().contains(&Call::StartPostcopy(NAME.into())));
    assert!(!called(&lab.source, |c| matches!(c, Call::AbortJob(_))));
    assert_eq!(Lab::state(&lab.source), None);
    assert_eq!(Lab::state(&lab.target).map(|s| s.kind), Some(StateKind::Running));
    // 256 MiB left at 16 MiB/s needs 16 s: the switch comes late, but in time.
    assert!(took > Duration::from_secs(60) && took < Duration::from_secs(108), "{took:?}");
}

#[test]
fn a_lost_target_is_aborted_at_once_and_the_guest_stays() {
    let lab = Lab::new(never_converging(256 * MIB));
    lab.target.clone().losing_connection_after(Duration::from_secs(3));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(reason.contains("the connection to node2's hypervisor was lost"), "{reason}");
    assert!(reason.ends_with(&format!("{NAME} still runs on node1 (node2 did not answer: End of file while reading data: Input/output error)")), "{reason}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(Lab::state(&lab.source).map(|s| s.kind), Some(StateKind::Running));
}

#[test]
fn a_failed_migration_that_paused_the_guest_resumes_it_here() {
    let script = MigrationScript {
        fails: Some((Duration::from_secs(2), HvError::other("internal error: qemu unexpectedly closed the monitor"))),
        failure_pauses_source: true,
        ..converging()
    };
    let lab = Lab::new(script);
    let reason = reason_of(lab.migrate(&[]).0);
    assert!(
        reason.starts_with(&format!("{NAME}: migration to node2 failed at 43% (iteration 1): internal error: qemu unexpectedly closed the monitor")),
        "{reason}"
    );
    assert!(reason.ends_with(&format!("{NAME} still runs on node1")), "{reason}");
    assert!(lab.source.calls().contains(&Call::Resume(NAME.into())));
    lab.assert_only_on_source();
}

#[test]
fn a_job_that_hangs_after_the_abort_is_reported_as_such_in_time() {
    let lab = Lab::new(MigrationScript { hangs_after_abort: true, ..never_converging(256 * MIB) });
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(reason.contains("libvirt has not ended the job yet"), "{reason}");
    // The abort waits until the hard limit (half the margin before the end) and no longer.
    assert_eq!(took, Duration::from_secs(114), "{took:?}");
}

/// `systemctl restart libvirtd` on the source in the middle of pre-copy: the
/// migration call fails at once, every connection to the source is closed,
/// and the daemon answers new ones `down_for` later.
fn source_restarting(script: MigrationScript, at: Duration, down_for: Duration) -> Lab {
    let lab = Lab::new(script);
    lab.source.clone().restarting_daemon_after(at, down_for);
    lab
}

fn local_connections(lab: &Lab) -> usize {
    lab.source.calls().iter().filter(|c| matches!(c, Call::OpenConnection(uri) if uri == "qemu:///system")).count()
}

#[test]
fn a_source_restart_mid_migration_is_answered_over_a_fresh_connection_at_once() {
    let lab = source_restarting(never_converging(256 * MIB), Duration::from_secs(3), Duration::from_secs(4));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(
        reason.starts_with(&format!("{NAME}: migration to node2 failed at ")) && reason.contains("client socket is closed"),
        "{reason}"
    );
    assert!(reason.ends_with(&format!("; {NAME} still runs on node1")), "{reason}");
    // Failed at 3 s, answered as soon as the daemon took connections again
    // at 7 s: not at the cutoff (108 s), nor after the settle time (119 s).
    assert!(took >= Duration::from_secs(7) && took < Duration::from_secs(8), "{took:?}");
    assert!(local_connections(&lab) >= 2, "the control connection and a fresh one: {:?}", lab.source.calls());
    lab.assert_only_on_source();
}

/// The systemd lab's case (issue 19): the migration call does not return
/// when the source's daemon restarts. The closed control connection must
/// stop the watch at once; the restarted daemon, asked over a fresh
/// connection, then says where the guest is. Before, the driver kept
/// polling the dead connection until the cutoff (108 s of 120 s).
#[test]
fn a_source_restart_that_leaves_the_migration_call_hanging_is_noticed_at_once() {
    let script = MigrationScript { call_outlives_restart: true, ..never_converging(256 * MIB) };
    let lab = source_restarting(script, Duration::from_secs(3), Duration::from_secs(4));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(
        reason.starts_with(&format!("{NAME}: migration to node2 interrupted at "))
            && reason.contains("the connection to node1's hypervisor was closed"),
        "{reason}"
    );
    assert!(reason.ends_with(&format!("; {NAME} still runs on node1")), "{reason}");
    assert!(!called(&lab.source, |c| matches!(c, Call::AbortJob(_))), "no abort over the closed connection");
    // Closed at 3 s, noticed at the next poll; the daemon takes connections again at 7 s.
    assert!(took >= Duration::from_secs(7) && took < Duration::from_secs(8), "{took:?}");
    lab.assert_only_on_source();
}

/// The systemd lab's target restart (issue 19): the migration call fails
/// at once, the guest still runs here, and a new connection to the target
/// hangs on the socket systemd keeps open while its libvirtd restarts. One
/// short attempt, not a first connection's 15 s, may delay the answer.
#[test]
fn a_target_restart_behind_a_socket_delays_the_answer_by_one_short_attempt_at_most() {
    let lab = Lab::new(never_converging(256 * MIB));
    lab.target.clone().restarting_daemon_behind_a_socket_after(Duration::from_secs(3), Duration::from_secs(30));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(reason.contains("the connection to node2's hypervisor was lost"), "{reason}");
    assert!(reason.contains(&format!("{NAME} still runs on node1 (node2 did not answer")), "{reason}");
    // Lost at 3 s, seen at the next poll (3.25 s), one reconnect attempt of
    // 3 s: 6.25 s (with a first connection's 15 s budget it was 18.25 s).
    assert!(took <= Duration::from_millis(6250), "{took:?}");
    lab.assert_only_on_source();
}

/// The same socket on the source's side: the look keeps trying, one short
/// attempt after another, and answers as soon as the daemon is back.
#[test]
fn a_source_restart_behind_a_socket_is_answered_once_the_daemon_is_back() {
    let script = MigrationScript { call_outlives_restart: true, ..never_converging(256 * MIB) };
    let lab = Lab::new(script);
    lab.source.clone().restarting_daemon_behind_a_socket_after(Duration::from_secs(3), Duration::from_secs(7));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(reason.ends_with(&format!("; {NAME} still runs on node1")), "{reason}");
    // Back at 10 s; the attempt that began before then waits for it.
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(11), "{took:?}");
    lab.assert_only_on_source();
}

#[test]
fn a_source_restart_that_leaves_the_guest_paused_resumes_it_over_the_fresh_connection() {
    let script = MigrationScript { failure_pauses_source: true, ..never_converging(256 * MIB) };
    let lab = source_restarting(script, Duration::from_secs(3), Duration::from_secs(2));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(reason.ends_with(&format!("; {NAME} still runs on node1")), "{reason}");
    assert!(lab.source.calls().contains(&Call::Resume(NAME.into())));
    assert!(took < Duration::from_secs(6), "{took:?}");
    lab.assert_only_on_source();
}

#[test]
fn a_source_restart_right_after_the_switch_over_is_success() {
    // 64 MiB at 16 MiB/s is done at 4 s; the daemon restarts at that moment.
    let lab = source_restarting(converging(), Duration::from_secs(4), Duration::from_secs(1));
    let (result, took) = lab.migrate(&[]);
    assert_eq!(result, Ok(OcfStatus::Success));
    // The fresh connection at 5 s shows the source let go.
    assert_eq!(took, Duration::from_secs(5));
    assert_eq!(Lab::state(&lab.source), None);
    assert_eq!(Lab::state(&lab.target).map(|s| s.kind), Some(StateKind::Running));
}

#[test]
fn a_completed_migration_counts_when_the_source_stays_silent_and_the_guest_runs_on_the_target() {
    let lab = source_restarting(converging(), Duration::from_secs(4), Duration::from_secs(600));
    let (result, took) = lab.migrate(&[]);
    assert_eq!(result, Ok(OcfStatus::Success));
    // The short look after a success (5 s), no longer.
    assert_eq!(took, Duration::from_secs(4) + super::CONFIRM_SUCCESS);
}

#[test]
fn a_source_that_does_not_come_back_gets_the_conservative_answer_before_the_timeout() {
    let lab = source_restarting(never_converging(256 * MIB), Duration::from_secs(3), Duration::from_secs(600));
    let (result, took) = lab.migrate(&[]);
    let reason = reason_of(result);
    assert!(
        reason.ends_with(&format!(
            "location of {NAME} unknown: node1 says unknown (internal error: client socket is closed), node2 says not active"
        )),
        "{reason}"
    );
    // Looked until the settle limit, one second before the timeout.
    assert!(took >= Duration::from_secs(119) && took < Duration::from_secs(120), "{took:?}");
    assert_eq!(Lab::state(&lab.target), None);
}
