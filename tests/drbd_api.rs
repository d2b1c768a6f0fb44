//! The API VirtualDomain calls: `gate_domain`, `check_fencing` and
//! `monitor_findings`, each given its DRBD source: a recorded DRBD 9 state
//! (`Recorded`), or this node's reader (`Sources`) pointed at fixtures and
//! stand-in tools, so tests can run in parallel.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{fixture_text, fixtures};
use virtguard::drbd::{gate_domain, monitor_findings, GateParams, Problem, Purpose, Recorded, Sources};
use virtguard::hypervisor::domain_xml::DomainConfig;
use virtguard::deadline::Deadline;

/// A scratch directory removed on drop, also when the test fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("virtguard-drbd-api-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// An executable script. Written by a child process, so that no writable
    /// descriptor of it can leak into a fork of another test thread (that
    /// would make exec fail with ETXTBSY).
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.0.join(name);
        let text = self.0.join(format!("{name}.txt"));
        std::fs::write(&text, format!("#!/bin/sh\n{body}\n")).unwrap();
        let status = std::process::Command::new("install").arg("-m").arg("755").arg(&text).arg(&path).status().unwrap();
        assert!(status.success());
        path.to_string_lossy().into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(20))
}

fn from_events2(name: &str) -> Recorded {
    Recorded { from: format!("{name}.events2"), events2: fixture_text(&format!("{name}.events2")), show: None }
}

fn with_show(recorded: Recorded, show: &str) -> Recorded {
    Recorded { show: Some(fixture_text(&format!("{show}.show"))), ..recorded }
}

/// DRBD 8.4: /proc/drbd from a fixture, names from by-res links in `scratch`.
fn from_proc84(name: &str, scratch: &Scratch, links: &[(&str, &str, &str)]) -> Sources {
    let by_res = scratch.path("by-res");
    for (res, vol, target) in links {
        std::fs::create_dir_all(by_res.join(res)).unwrap();
        std::os::unix::fs::symlink(target, by_res.join(res).join(vol)).unwrap();
    }
    Sources {
        proc_drbd: fixtures().join(format!("84-{name}.proc")),
        by_res_dir: by_res,
        // drbd-utils 8.x: no events2, so /proc/drbd it is. (drbd-utils 9 does
        // answer events2 on 8.4, through drbdsetup-84: see from_real84.)
        drbdsetup: scratch.script("drbdsetup-utils-8", "echo \"drbdsetup: unknown command '$1'\" >&2; exit 20"),
        drbdadm: "/nonexistent/drbdadm".into(),
    }
}

/// DRBD 8.4 as Debian 12 reads it: drbd-utils 9.22's drbdsetup answers
/// events2 and show with what the real 8.4.11 kernel printed
/// (tests/fixtures/drbd84-real/<state>), /proc/drbd says 8.4.11.
fn from_real84(state: &str, scratch: &Scratch) -> Sources {
    let real = fixtures().parent().unwrap().join("drbd84-real").join(state);
    let body = format!(
        "case $1 in events2) cat '{0}.events2' ;; show) cat '{0}.show' ;; *) exit 20 ;; esac",
        real.display()
    );
    Sources {
        proc_drbd: fixtures().parent().unwrap().join("drbd84-real").join(format!("{state}.proc")),
        by_res_dir: PathBuf::from("/nonexistent/by-res"),
        drbdsetup: scratch.script("drbdsetup", &body),
        drbdadm: "/nonexistent/drbdadm".into(),
    }
}

#[test]
fn real_84_through_events2_lets_a_dual_primary_migration_through_and_refuses_standalone() {
    let scratch = Scratch::new("real84");
    let disks = ["/dev/drbd0"];
    let to_beta = Purpose::MigrateSource { target: "beta".into() };
    let from_alpha = Purpose::MigrateTarget { source: "alpha".into() };
    gate_domain(&from_real84("primary-a2p.alpha", &scratch), &disks, None, &to_beta, &GateParams::default(), &deadline()).unwrap();
    gate_domain(&from_real84("peer-primary-a2p.beta", &scratch), &disks, None, &from_alpha, &GateParams::default(), &deadline()).unwrap();
    let refused = gate_domain(&from_real84("standalone.beta", &scratch), &disks, None, &Purpose::Start, &GateParams::default(), &deadline());
    assert!(
        matches!(&refused, Err(virtguard::drbd::DrbdError::Refused(r)) if r.iter().any(|r| r.contains("StandAlone"))),
        "{refused:?}"
    );
}

#[test]
fn without_drbd_disks_nothing_is_read_or_run() {
    let scratch = Scratch::new("nospawn");
    let log = scratch.path("calls.log");
    let spy = scratch.script("drbdsetup", &format!("echo \"$@\" >> {}; exit 20", log.display()));
    let sources = Sources {
        drbdsetup: spy.clone(),
        drbdadm: spy,
        proc_drbd: PathBuf::from("/nonexistent"),
        ..Sources::default()
    };
    let disks = ["/dev/sda", "/var/lib/libvirt/images/vm.qcow2", "/dev/mapper/vg-lv"];
    for purpose in [Purpose::Start, Purpose::MigrateSource { target: "b".into() }, Purpose::MigrateTarget { source: "a".into() }] {
        gate_domain(&sources, &disks, None, &purpose, &GateParams::default(), &deadline()).unwrap();
        gate_domain(&sources, &disks, Some("  "), &purpose, &GateParams::default(), &deadline()).unwrap();
    }
    assert!(monitor_findings(&sources, &disks, None, &deadline()).unwrap().is_empty());
    assert!(!log.exists(), "a program ran: {}", std::fs::read_to_string(&log).unwrap_or_default());
    // This node's own DRBD is not asked either.
    gate_domain(&Sources::default(), &disks, None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    // With a DRBD disk, the spy is asked.
    let _ = gate_domain(&sources, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "events2 --now all\n");
}

#[test]
fn allowed_state_lets_the_domain_start() {
    let s = from_events2("healthy-2node");
    for disk in ["/dev/drbd0", "/dev/drbd/by-res/r0/0", "/dev/drbd/by-res/r0", "/dev/drbd/by-disk/vg0/r0"] {
        gate_domain(&s, &[disk, "/dev/sdz"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    }
    gate_domain(&s, &[], Some("r0"), &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
}

#[test]
fn refusal_carries_all_reasons() {
    let s = from_events2("multi-volume-one-outdated");
    let err = gate_domain(&s, &["/dev/drbd1"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(!err.tools_missing());
    assert_eq!(
        err.to_string(),
        "r0/1: local disk Outdated, peer node2 UpToDate: refusing to start on stale data; \
         r0: peer node2 is Primary: refusing to start a second writer"
    );
    // The explicit list replaces detection: web is healthy.
    gate_domain(&from_events2("multi-volume"), &["/dev/drbd1"], Some("web"), &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    let err = gate_domain(&from_events2("multi-volume"), &[], Some("web r9"), &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.to_string().starts_with("r9: not configured on this node"), "{}", err);
}

#[test]
fn diskless_follows_the_parameter() {
    let s = from_events2("diskless-client");
    let err = gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.to_string().contains("drbd_allow_diskless is off"), "{}", err);
    gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams { allow_diskless: true, ..GateParams::default() }, &deadline()).unwrap();
}

#[test]
fn a_drbd_disk_that_maps_to_nothing_is_refused() {
    let err = gate_domain(&from_events2("healthy-2node"), &["/dev/drbd7"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(!err.tools_missing());
    assert!(err.to_string().contains("/dev/drbd7: no DRBD resource uses minor 7"), "{}", err);
}

#[test]
fn unreadable_state_is_an_error_never_success() {
    for bad in ["garbage", "truncated", "empty", "unknown-disk-state"] {
        let err = gate_domain(&from_events2(bad), &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
        assert!(!err.tools_missing(), "{bad}");
        assert!(err.to_string().starts_with("cannot read DRBD state: "), "{bad}: {}", err);
    }
    let err = monitor_findings(&from_events2("garbage"), &["/dev/drbd0"], None, &deadline()).unwrap_err();
    assert!(err.to_string().starts_with("cannot read DRBD state: "));
}

#[test]
fn missing_drbdsetup_means_tools_missing() {
    let s = Sources {
        drbdsetup: "/nonexistent/drbdsetup".into(),
        proc_drbd: PathBuf::from("/nonexistent/proc/drbd"),
        ..Sources::default()
    };
    let err = gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.tools_missing(), "{err}");
    // DRBD 9 loaded, but no drbdsetup to ask.
    let s = Sources { proc_drbd: fixtures().join("9-loaded.proc"), ..s };
    let err = gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.tools_missing(), "{err}");
}

#[test]
fn failing_drbdsetup_without_drbd_8_is_unreadable() {
    let scratch = Scratch::new("failing");
    let failing = scratch.script("drbdsetup", "echo 'Failed to modprobe drbd (No such file or directory)' >&2; exit 20");
    for proc in [PathBuf::from("/nonexistent"), fixtures().join("9-loaded.proc"), fixtures().join("garbage.events2")] {
        let s = Sources { drbdsetup: failing.clone(), proc_drbd: proc.clone(), ..Sources::default() };
        let err = gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
        assert!(!err.tools_missing(), "{}", proc.display());
        assert!(err.to_string().starts_with("cannot read DRBD state: "), "{}", err);
    }
}

#[test]
fn a_hung_drbdsetup_is_killed_at_the_deadline() {
    let scratch = Scratch::new("hung");
    let hung = scratch.script("drbdsetup", "exec sleep 60");
    let s = Sources { drbdsetup: hung, ..Sources::default() };
    let started = Instant::now();
    let err = gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &Deadline::after(Duration::from_millis(300)))
        .unwrap_err();
    assert!(!err.tools_missing());
    assert!(err.to_string().contains("did not finish"), "{}", err);
    assert!(started.elapsed() < Duration::from_secs(20), "returned only after {:?}", started.elapsed());
}

#[test]
fn drbd84_from_proc_and_by_res_links() {
    let scratch = Scratch::new("84links");
    let s = from_proc84("healthy", &scratch, &[("r0", "0", "../../../drbd0")]);
    gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    gate_domain(&s, &["/dev/drbd/by-res/r0/0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();

    let scratch = Scratch::new("84outdated");
    let s = from_proc84("outdated", &scratch, &[("r0", "0", "../../../drbd0")]);
    let err = gate_domain(&s, &["/dev/drbd0"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert_eq!(err.to_string(), "r0/0: local disk Outdated, no peer known UpToDate: refusing to start on stale data");
}

#[test]
fn drbd84_names_from_drbdadm() {
    let scratch = Scratch::new("84adm");
    let adm = scratch.script(
        "drbdadm",
        "case $1 in sh-resources) echo 'r0 web';; sh-dev) case $2 in r0) printf '/dev/drbd0\\n/dev/drbd1\\n';; web) echo /dev/drbd2;; esac;; esac",
    );
    let s = Sources {
        proc_drbd: fixtures().join("84-multi-volume.proc"),
        by_res_dir: scratch.path("no-links"),
        drbdsetup: "/nonexistent/drbdsetup".into(),
        drbdadm: adm,
    };
    gate_domain(&s, &["/dev/drbd1", "/dev/drbd2"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    // Without any names a DRBD disk cannot be checked, so it is refused.
    let s = Sources { drbdadm: "/nonexistent/drbdadm".into(), ..s };
    let err = gate_domain(&s, &["/dev/drbd1"], None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.to_string().contains("resource name is unknown"), "{}", err);
}

#[test]
fn migration_reads_allow_two_primaries() {
    let s = from_events2("running-primary");
    let purpose = Purpose::MigrateSource { target: "node2".into() };
    let err = gate_domain(&s, &["/dev/drbd0"], None, &purpose, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.to_string().contains("cannot tell whether allow-two-primaries"), "{}", err);
    gate_domain(&with_show(s.clone(), "to-node2-dual"), &["/dev/drbd0"], None, &purpose, &GateParams::default(), &deadline()).unwrap();
    let err = gate_domain(&with_show(s, "to-node2-single"), &["/dev/drbd0"], None, &purpose, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.to_string().contains("allow-two-primaries is off"), "{}", err);

    let s = with_show(from_events2("migration-incoming"), "to-node1-dual");
    gate_domain(&s, &["/dev/drbd0"], None, &Purpose::MigrateTarget { source: "node1".into() }, &GateParams::default(), &deadline()).unwrap();
}

#[test]
fn monitor_tells_degraded_from_failed() {
    let find = |fixture: &str, explicit: Option<&str>| monitor_findings(&from_events2(fixture), &["/dev/drbd0"], explicit, &deadline()).unwrap();

    assert!(find("healthy-2node", None).is_empty());
    assert!(find("running-primary", None).is_empty());
    assert!(find("diskless-client", None).is_empty(), "a diskless client never had a disk to lose");

    let degraded = find("running-detached", None);
    assert_eq!(degraded.len(), 1);
    assert_eq!(degraded[0].problem, Problem::LostLocalDisk);
    assert!(degraded[0].guest_can_write && !degraded[0].is_failure());
    assert_eq!(degraded[0].message, "r0/0: local disk Diskless: degraded, I/O goes to peer node2 (UpToDate)");

    let alone = find("running-detached-alone", None);
    assert_eq!(alone.len(), 1);
    assert!(alone[0].is_failure(), "{}", alone[0].message);

    let quorum = find("suspended-quorum", None);
    let problems: Vec<Problem> = quorum.iter().map(|f| f.problem).collect();
    assert_eq!(problems, vec![Problem::IoSuspended, Problem::LostQuorum]);
    assert!(quorum.iter().all(|f| f.is_failure()));

    let gone = find("healthy-2node", Some("r9"));
    assert_eq!(gone[0].problem, Problem::ResourceGone);
    assert!(gone[0].is_failure());
}

#[test]
fn disks_come_from_the_domain_xml() {
    let xml = "<domain type='kvm'><name>vm1</name><devices>\
        <disk type='block' device='disk'><source dev='/dev/drbd/by-res/r0/1'/><target dev='vda'/></disk>\
        <disk type='file' device='disk'><source file='/var/lib/libvirt/images/seed.iso'/></disk>\
        </devices></domain>";
    let config = DomainConfig::parse(xml).unwrap();
    let disks: Vec<&str> = config.block_devices().collect();
    let err = gate_domain(&from_events2("multi-volume-one-outdated"), &disks, None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap_err();
    assert!(err.to_string().starts_with("r0/1: local disk Outdated"), "{}", err);
    gate_domain(&from_events2("multi-volume"), &disks, None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
}

/// Rule F1 through the gate the agent runs: a start on a resource without a
/// fencing policy passes with a warning, and is refused when fencing is
/// required; the configuration check of validate-all says the same.
#[test]
fn a_start_without_fencing_warns_or_is_refused_by_f1() {
    use virtguard::drbd::{check_fencing, DrbdError};
    let disks = ["/dev/drbd0"];
    let required = GateParams { require_fencing: true, ..GateParams::default() };
    let unfenced = with_show(from_events2("healthy-2node"), "to-node2-single");
    gate_domain(&unfenced, &disks, None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    let err = gate_domain(&unfenced, &disks, None, &Purpose::Start, &required, &deadline()).unwrap_err();
    assert!(
        matches!(&err, DrbdError::Refused(r) if r.len() == 1 && r[0].starts_with("r0: fencing dont-care (connection to node2) (rule F1): refusing to start")),
        "{err:?}"
    );
    assert!(err.to_string().contains("rule F1"), "{err}");
    check_fencing(&unfenced, &disks, None, &GateParams::default(), &deadline()).unwrap();
    assert!(matches!(check_fencing(&unfenced, &disks, None, &required, &deadline()), Err(DrbdError::Refused(r)) if r[0].contains("rule F1")));
    // A domain without DRBD disks is not asked.
    check_fencing(&unfenced, &["/dev/sda"], None, &required, &deadline()).unwrap();

    // The state recorded without its configuration: the policy is unknown,
    // which counts as no fencing.
    let err = gate_domain(&from_events2("healthy-2node"), &disks, None, &Purpose::Start, &required, &deadline()).unwrap_err();
    assert!(err.to_string().contains("fencing policy unknown (drbdsetup show: healthy-2node.events2 has no recorded configuration)"), "{err}");

    // A migration is not asked: both copies are connected and UpToDate.
    let scratch = Scratch::new("f1");
    let to_beta = Purpose::MigrateSource { target: "beta".into() };
    gate_domain(&from_real84("primary-a2p.alpha", &scratch), &disks, None, &to_beta, &required, &deadline()).unwrap();
    // The real 8.4 kernel with the lab's `fencing resource-only`: passes.
    gate_domain(&from_real84("healthy.alpha", &scratch), &disks, None, &Purpose::Start, &required, &deadline()).unwrap();
    // The real kernel after the cable was cut under a writing Primary with
    // `fencing dont-care`: the survivor's older data passes every state
    // rule; F1 alone refuses it when fencing is required.
    let cut = from_real84("cut-no-fencing.beta", &scratch);
    gate_domain(&cut, &disks, None, &Purpose::Start, &GateParams::default(), &deadline()).unwrap();
    let err = gate_domain(&cut, &disks, None, &Purpose::Start, &required, &deadline()).unwrap_err();
    assert!(
        matches!(&err, DrbdError::Refused(r) if r.len() == 1 && r[0].starts_with("r0: fencing dont-care (volume 0) (rule F1): refusing to start")),
        "{err:?}"
    );
    // Rule F2: the same fenced resource is not fenced enough for both nodes Primary.
    let dual = GateParams { require_fencing: true, dual_primary: true, ..GateParams::default() };
    let err = gate_domain(&from_real84("healthy.alpha", &scratch), &disks, None, &Purpose::Start, &dual, &deadline()).unwrap_err();
    assert!(
        matches!(&err, DrbdError::Refused(r) if r.len() == 1 && r[0].starts_with("r0: fencing resource-only (volume 0) with drbd_dual_primary (rule F2): refusing to start")),
        "{err:?}"
    );
}
