//! adopt's whole run in-process, on captured cluster states
//! (tests/fixtures/adopt/) held by [`FakeCluster`]: the switch and the way
//! back, the refusals, a run killed at each of its changes and then resumed
//! or rolled back, other writers racing the guarded switch, and probes that
//! disagree or do not come. The two-node lab (tests/cluster/adopt.rs) runs
//! the same against real Pacemaker.

use std::time::Duration;

use super::cluster_tools::Step;
use super::fake_cluster::{ClusterCall, FakeCluster};
use super::plan::MARKER;
use super::{run_with, Request};

const ALL: [&str; 3] = ["vga-1", "vga-2", "vga-3"];

fn request(to: &str, resources: &[&str]) -> Request {
    Request {
        to: to.into(),
        resources: resources.iter().map(|r| r.to_string()).collect(),
        all: resources.is_empty(),
        dry_run: false,
        probe_timeout: Duration::from_secs(60),
    }
}

fn adopt(cluster: &FakeCluster, to: &str, resources: &[&str]) -> u8 {
    run_with(&request(to, resources), cluster)
}

/// Every resource on `provider`, managed as before adopt and unmarked.
fn assert_settled(cluster: &FakeCluster, provider: &str) {
    for id in ALL {
        assert_eq!(cluster.provider(id), provider, "{id}");
        assert!(cluster.managed(id), "{id} left unmanaged");
        assert_eq!(cluster.meta(id, MARKER), None, "{id} left marked");
        assert_eq!(cluster.meta(id, "is-managed"), None, "{id}: is-managed was not set before adopt");
    }
}

#[test]
fn switches_every_resource_and_back_in_place() {
    let cluster = FakeCluster::captured("classic-running");
    let started = cluster.now();
    assert_eq!(adopt(&cluster, "virtguard", &[]), 0);
    assert_settled(&cluster, "virtguard");
    // The wait for the probes ran on the manual clock: one probe delay, polled.
    let waited = cluster.now() - started;
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(5), "{waited:?}");
    let first_writes: Vec<ClusterCall> = cluster.writes().into_iter().take(2).collect();
    assert_eq!(
        first_writes,
        [
            ClusterCall::Apply(Step::set_meta("vga-1", MARKER, "to=virtguard node=vg-node1 managed=-")),
            ClusterCall::Apply(Step::set_meta("vga-1", "is-managed", "false")),
        ],
        "the mark goes before is-managed=false"
    );
    cluster.forget_calls();
    assert_eq!(adopt(&cluster, "virtguard", &[]), 0, "nothing to do the second time");
    assert!(cluster.writes().is_empty());
    assert_eq!(adopt(&cluster, "heartbeat", &[]), 0);
    assert_settled(&cluster, "heartbeat");
}

#[test]
fn a_resource_set_unmanaged_before_stays_unmanaged() {
    let cluster = FakeCluster::captured("classic-running");
    use super::cluster_tools::ClusterTools;
    cluster.apply(&Step::set_meta("vga-3", "is-managed", "false")).unwrap();
    assert_eq!(adopt(&cluster, "virtguard", &["vga-3"]), 0);
    assert_eq!(cluster.provider("vga-3"), "virtguard");
    assert_eq!(cluster.meta("vga-3", "is-managed").as_deref(), Some("false"));
    assert_eq!(cluster.meta("vga-3", MARKER), None);
}

#[test]
fn refusals_change_nothing() {
    let failed = FakeCluster::captured("failed");
    assert_eq!(adopt(&failed, "virtguard", &["vga-3"]), 1, "failed actions");
    assert!(failed.writes().is_empty());

    let cluster = FakeCluster::captured("classic-running");
    assert_eq!(adopt(&cluster, "virtguard", &["vga-grp"]), 1, "a group as a whole");
    assert_eq!(adopt(&cluster, "virtguard", &["vga-1", "no-such"]), 1, "one unknown id refuses the lot");
    cluster.refuse_validate("config file missing on this node");
    assert_eq!(adopt(&cluster, "virtguard", &[]), 1, "the target agent's validate-all");
    assert!(cluster.writes().is_empty());
    assert_eq!(cluster.provider("vga-1"), "heartbeat");
}

#[test]
fn a_dry_run_only_reads() {
    let cluster = FakeCluster::captured("classic-running");
    assert_eq!(run_with(&Request { dry_run: true, ..request("virtguard", &[]) }, &cluster), 0);
    assert!(cluster.writes().is_empty());
}

/// The changes a whole run from the captured state makes.
fn writes_of_a_whole_run() -> usize {
    let cluster = FakeCluster::captured("classic-running");
    assert_eq!(adopt(&cluster, "virtguard", &[]), 0);
    cluster.writes().len()
}

#[test]
fn a_run_killed_at_any_change_is_finished_or_rolled_back_by_the_next() {
    let writes = writes_of_a_whole_run();
    assert_eq!(writes, 3 * 2 + 3 + 3 + 3 * 2, "mark and unmanage, switch, refresh, manage and unmark, per resource");
    for killed_at in 1..=writes {
        for rerun_to in ["virtguard", "heartbeat"] {
            let cluster = FakeCluster::captured("classic-running");
            cluster.fail_write(killed_at);
            assert_eq!(adopt(&cluster, "virtguard", &[]), 2, "killed at change {killed_at}");
            assert_eq!(adopt(&cluster, rerun_to, &[]), 0, "rerun to {rerun_to} after a kill at change {killed_at}");
            assert_settled(&cluster, rerun_to);
        }
    }
}

#[test]
fn the_guarded_switch_retries_other_writers_then_gives_up_unmanaged() {
    let cluster = FakeCluster::captured("classic-running");
    cluster.concurrent_writers(2);
    assert_eq!(adopt(&cluster, "virtguard", &["vga-1"]), 0);
    let switches = cluster.calls().into_iter().filter(|c| matches!(c, ClusterCall::SwitchProvider { .. })).count();
    assert_eq!(switches, 3, "two lost races, then the switch");
    assert_settled_one(&cluster, "vga-1", "virtguard");

    let cluster = FakeCluster::captured("classic-running");
    cluster.concurrent_writers(5);
    assert_eq!(adopt(&cluster, "virtguard", &["vga-1"]), 2);
    assert_eq!(cluster.provider("vga-1"), "heartbeat");
    assert!(!cluster.managed("vga-1"), "left unmanaged, marked, for a rerun");
    assert!(cluster.meta("vga-1", MARKER).is_some());
    assert_eq!(adopt(&cluster, "virtguard", &["vga-1"]), 0);
    assert_settled_one(&cluster, "vga-1", "virtguard");
}

fn assert_settled_one(cluster: &FakeCluster, id: &str, provider: &str) {
    assert_eq!(cluster.provider(id), provider);
    assert!(cluster.managed(id));
    assert_eq!(cluster.meta(id, MARKER), None);
}

#[test]
fn a_probe_that_finds_the_guest_elsewhere_leaves_it_unmanaged() {
    let cluster = FakeCluster::captured("classic-running");
    cluster.guest_runs_on("vga-2", Some("vg-node1"));
    assert_eq!(adopt(&cluster, "virtguard", &[]), 2);
    assert!(!cluster.managed("vga-2") && cluster.meta("vga-2", MARKER).is_some());
    assert!(cluster.managed("vga-1") && cluster.managed("vga-3"), "the others are confirmed and managed again");
}

#[test]
fn probes_that_do_not_come_leave_it_unmanaged_at_the_timeout() {
    let cluster = FakeCluster::captured("classic-running").probes_after(Duration::from_secs(600));
    let started = cluster.now();
    assert_eq!(adopt(&cluster, "virtguard", &["vga-1"]), 2);
    let waited = cluster.now() - started;
    assert!(waited >= Duration::from_secs(60) && waited < Duration::from_secs(61), "{waited:?}");
    assert!(!cluster.managed("vga-1"));
}

#[test]
fn a_captured_interrupted_switch_is_finished() {
    let cluster = FakeCluster::captured("interrupted");
    assert_eq!(adopt(&cluster, "virtguard", &["vga-2"]), 0);
    assert_settled_one(&cluster, "vga-2", "virtguard");
    assert!(!cluster.calls().iter().any(|c| matches!(c, ClusterCall::SwitchProvider { .. })), "already on virtguard");
}
