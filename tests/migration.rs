//! migrate_to against real hypervisors: the host's libvirtd as the source
//! and a private libvirtd (its own mount namespace) as the target, real QEMU
//! guests, migration data over tcp://127.0.0.1. Where the source's libvirtd
//! must restart, the roles swap: the host's libvirtd, which other tests
//! share, is never restarted. Through the library API; the
//! agent binary's migrate_to/migrate_from pair is tested by the lead.
//!
//! Timings are printed (`--nocapture`), never asserted, except generous
//! upper bounds that prove "returned before the operation timeout".

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use virtguard::hypervisor::domain_xml::DomainConfig;
use virtguard::hypervisor::Hypervisor;
use virtguard::ocf::{Action, OcfEnv, OcfResult, OcfStatus};
use virtguard::vdomain::Params;
use virtguard::vdomain::migration::migrate_to;
use virtguard::host::Host;
use virtguard::vdomain::{Identity, Vm};

use support::{GuestGuard, GuestMode, PrivateHypervisor, HOST_URI};

const SOURCE_NODE: &str = "node1";
const TARGET_NODE: &str = "node2";
const BOOT_BOUND: Duration = Duration::from_secs(90);

/// One migrate_to call as Pacemaker would make it on the source node.
struct Call {
    params: Vec<(String, String)>,
    timeout: Duration,
    source_uri: String,
}

impl Call {
    fn new(guest: &GuestGuard, target: &PrivateHypervisor, timeout: Duration) -> Call {
        Call::between(guest, HOST_URI, &target.uri, timeout)
    }

    fn between(guest: &GuestGuard, source_uri: &str, target_uri: &str, timeout: Duration) -> Call {
        let params = vec![
            ("config".to_owned(), guest.xml.to_string_lossy().into_owned()),
            ("hypervisor".to_owned(), source_uri.to_owned()),
            ("remoteuri".to_owned(), target_uri.to_owned()),
            ("migrateuri".to_owned(), format!("tcp://127.0.0.1:{}", support::free_port())),
        ];
        Call { params, timeout, source_uri: source_uri.to_owned() }
    }

    fn set(mut self, name: &str, value: &str) -> Call {
        self.params.retain(|(n, _)| n != name);
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    fn run(&self) -> (OcfResult, Duration) {
        virtguard::log::init("vm-test");
        let map: HashMap<String, String> = self.params.iter().cloned().collect();
        let params = Params::from_lookup(|name| map.get(name).cloned()).expect("valid parameters");
        let timeout_ms = self.timeout.as_millis().to_string();
        let env_map: HashMap<&str, &str> = [
            ("OCF_RESOURCE_INSTANCE", "vm-test"),
            ("OCF_RESKEY_CRM_meta_timeout", timeout_ms.as_str()),
            ("OCF_RESKEY_CRM_meta_migrate_source", SOURCE_NODE),
            ("OCF_RESKEY_CRM_meta_migrate_target", TARGET_NODE),
        ]
        .into_iter()
        .collect();
        let env = OcfEnv::from_lookup(&|name| env_map.get(name).map(|v| v.to_string()));
        let config_path = PathBuf::from(&map["config"]);
        let config_xml = std::fs::read_to_string(&config_path).expect("the guest's XML");
        let local = virtguard::hypervisor::connect(Some(&self.source_uri)).expect("the source's libvirtd");
        let started = Instant::now();
        let deadline = env.deadline(Action::MigrateTo);
        let vm = Vm {
            action: Action::MigrateTo,
            params: &params,
            env: &env,
            deadline,
            operation: deadline,
            config_path,
            domain: DomainConfig::parse(&config_xml).expect("a domain XML"),
            identity: Identity::Config(config_xml),
            hv: Ok(&local),
            host: &Host::real(),
        };
        let result = migrate_to(&vm);
        let took = started.elapsed();
        eprintln!("migrate_to -> {result:?} after {:.2} s", took.as_secs_f64());
        (result, took)
    }
}

fn state(uri: &str, name: &str) -> Option<String> {
    support::domstate(uri, name).map(|(state, _)| state)
}

fn assert_runs_only_on(name: &str, on: &str, not_on: &str) {
    assert_eq!(state(on, name).as_deref(), Some("running"), "{name} should run on {on}");
    let elsewhere = state(not_on, name);
    assert!(
        elsewhere.is_none() || elsewhere.as_deref() == Some("shut off"),
        "{name} should not be active on {not_on}: {elsewhere:?}"
    );
}

fn figure(what: &str, took: Duration) {
    eprintln!("FIGURE {what}: {:.2} s", took.as_secs_f64());
}

/// The host's libvirtd as source and a fresh private one as target.
fn lab(tag: &str) -> PrivateHypervisor {
    support::ensure_libvirtd();
    if !nix::unistd::Uid::effective().is_root() {
        support::missing_prerequisite("private hypervisors need root");
    }
    PrivateHypervisor::start(tag)
}

/// A guest started (transient, as the agent starts it) on the host.
fn started_on_host(guest: GuestGuard, target: &PrivateHypervisor) -> GuestGuard {
    started_on(guest, HOST_URI, &target.uri)
}

/// A guest started (transient) on `uri`, cleaned up there and on `other_uri`.
fn started_on(mut guest: GuestGuard, uri: &str, other_uri: &str) -> GuestGuard {
    guest.track(uri);
    guest.track(other_uri);
    let xml = guest.xml.to_string_lossy().into_owned();
    support::virsh_ok(uri, &["create", &xml]);
    guest
}

/// A Linux guest that rewrites its RAM forever, booted and busy.
fn dirty_guest_on_host(target: &PrivateHypervisor) -> GuestGuard {
    dirty_guest_on(HOST_URI, &target.uri)
}

fn dirty_guest_on(uri: &str, other_uri: &str) -> GuestGuard {
    let guest = started_on(support::acpi_guest("migdirty", GuestMode::Dirty), uri, other_uri);
    assert!(guest.wait_ready(BOOT_BOUND), "the dirty guest did not boot; console:\n{}", guest.console_text());
    guest
}

/// Waits until `uri` shows `name`'s migration job moving data.
fn wait_for_migration_job(uri: &str, name: &str) {
    let under_way = support::wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let info = support::virsh(uri, &["domjobinfo", name]);
        String::from_utf8_lossy(&info.stdout).contains("Data processed")
    });
    assert!(under_way, "the migration job never showed up");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn running_guest_migrates_and_then_runs_on_the_target_only() {
    let target = lab("migok");
    let guest = started_on_host(support::firmware_guest("migok"), &target);

    let (result, took) = Call::new(&guest, &target, Duration::from_secs(120)).set("migration_downtime", "300").run();

    assert_eq!(result, Ok(OcfStatus::Success));
    assert_runs_only_on(&guest.name, &target.uri, HOST_URI);
    figure("migrate_to of a 64 MiB firmware guest", took);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn peer_to_peer_migration_with_a_bandwidth_cap_succeeds() {
    let target = lab("migp2p");
    let guest = started_on_host(support::firmware_guest("migp2p"), &target);

    let call = Call::new(&guest, &target, Duration::from_secs(120))
        .set("migrate_options", "--p2p --auto-converge")
        .set("migration_speed", "100");
    let (result, took) = call.run();

    assert_eq!(result, Ok(OcfStatus::Success));
    assert_runs_only_on(&guest.name, &target.uri, HOST_URI);
    figure("migrate_to --p2p of a 64 MiB firmware guest", took);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_migration_that_cannot_converge_is_aborted_before_the_timeout() {
    let target = lab("migslow");
    let guest = dirty_guest_on_host(&target);
    let timeout = Duration::from_secs(30);

    let (result, took) = Call::new(&guest, &target, timeout).set("migration_speed", "1").run();

    let error = result.expect_err("a 1 MiB/s migration of a busy 128 MiB guest cannot finish in 30 s");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    assert!(took < timeout, "returned after {took:?}, the timeout is {timeout:?}");
    let reason = &error.reason;
    assert!(reason.contains("aborted at") && reason.contains("before the 30s timeout"), "{reason}");
    assert!(reason.ends_with(&format!("{} still runs on {SOURCE_NODE}", guest.name)), "{reason}");
    // The cap applied from the first byte: at 1 MiB/s, 25 s move well under half of 128 MiB.
    let percent: u32 = reason.split("aborted at ").nth(1).and_then(|r| r.split('%').next()).unwrap().parse().unwrap();
    assert!(percent < 50, "{percent}% in sync: the bandwidth cap did not apply from the start ({reason})");
    assert_runs_only_on(&guest.name, HOST_URI, &target.uri);
    figure("migrate_to aborted (30 s timeout)", took);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn killing_the_target_hypervisor_during_the_migration_leaves_the_guest_on_the_source() {
    kill_target_during_migration("migkill", "");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn killing_the_target_hypervisor_during_a_peer_to_peer_migration_leaves_the_guest_on_the_source() {
    kill_target_during_migration("migkillp2p", "--p2p");
}

/// This process drives a plain migration and notices the lost target
/// through keepalive; with `--p2p` the source's libvirtd notices it.
fn kill_target_during_migration(tag: &str, migrate_options: &str) {
    let target = lab(tag);
    let guest = dirty_guest_on_host(&target);
    let timeout = Duration::from_secs(60);
    let call = Call::new(&guest, &target, timeout)
        .set("migration_speed", "1")
        .set("migration_downtime", "1234")
        .set("migrate_options", migrate_options);

    let (result, took) = std::thread::scope(|scope| {
        let migration = scope.spawn(|| call.run());
        // Kill the target's libvirtd once the job is visibly under way.
        wait_for_migration_job(HOST_URI, &guest.name);
        // Both limits are in force while the job runs: set before it, not during it.
        let downtime = support::virsh_ok(HOST_URI, &["migrate-getmaxdowntime", &guest.name]);
        assert_eq!(downtime.trim(), "1234");
        let speed = support::virsh_ok(HOST_URI, &["migrate-getspeed", &guest.name]);
        assert_eq!(speed.trim(), "1");
        std::thread::sleep(Duration::from_secs(1));
        target.kill_daemon();
        migration.join().expect("migrate_to did not panic")
    });

    let error = result.expect_err("the target is gone");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    assert!(took < timeout - Duration::from_secs(20), "noticed only after {took:?}");
    assert!(error.reason.contains(&format!("{} still runs on {SOURCE_NODE}", guest.name)), "{}", error.reason);
    assert_eq!(state(HOST_URI, &guest.name).as_deref(), Some("running"));
    figure(&format!("migrate_to {migrate_options} with the target's libvirtd killed"), took);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn restarting_the_source_hypervisor_during_the_migration_is_answered_at_once() {
    source_daemon_dies_during_migration("migsrcrst", "", SourceDaemonFate::Restarted);
}

/// Killed, not restarted with SIGTERM: a libvirtd that runs a peer-to-peer
/// migration itself did not stop within the lab script's 15 s on SIGTERM.
#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn killing_and_restarting_the_source_hypervisor_during_a_peer_to_peer_migration_is_answered_at_once() {
    source_daemon_dies_during_migration("migsrcp2p", "--p2p", SourceDaemonFate::KilledThenStarted);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn killing_and_restarting_the_source_hypervisor_during_the_migration_is_answered_at_once() {
    source_daemon_dies_during_migration("migsrckill", "", SourceDaemonFate::KilledThenStarted);
}

#[derive(Debug, Clone, Copy)]
enum SourceDaemonFate {
    /// SIGTERM, then started again: `systemctl restart libvirtd`.
    Restarted,
    /// SIGKILL, then started again after a pause: a crash and its restart.
    KilledThenStarted,
}

/// Source and target are private libvirtds: the host's is shared with other
/// tests and must not restart, and with `--p2p` the source's libvirtd, in
/// its own mount namespace, would reach itself at qemu:///system. Every
/// connection to the source closes mid-migration; migrate_to must ask the
/// restarted daemon where the guest is rather than wait for its timeout,
/// and find it still running on the source.
fn source_daemon_dies_during_migration(tag: &str, migrate_options: &str, fate: SourceDaemonFate) {
    let source = lab(tag);
    let target = PrivateHypervisor::start(&format!("{tag}t"));
    let guest = dirty_guest_on(&source.uri, &target.uri);
    let timeout = Duration::from_secs(60);
    let call = Call::between(&guest, &source.uri, &target.uri, timeout)
        .set("migration_speed", "1")
        .set("migrate_options", migrate_options);

    let (result, took, down_at) = std::thread::scope(|scope| {
        let started = Instant::now();
        let migration = scope.spawn(|| call.run());
        wait_for_migration_job(&source.uri, &guest.name);
        std::thread::sleep(Duration::from_secs(1));
        let down_at = started.elapsed();
        match fate {
            SourceDaemonFate::Restarted => source.restart_daemon(),
            SourceDaemonFate::KilledThenStarted => {
                source.kill_daemon();
                std::thread::sleep(Duration::from_secs(3));
                source.restart_daemon();
            }
        }
        eprintln!("source libvirtd {fate:?} {:.2} s after migrate_to began; answering again at {:.2} s",
            down_at.as_secs_f64(), started.elapsed().as_secs_f64());
        let (result, took) = migration.join().expect("migrate_to did not panic");
        (result, took, down_at)
    });

    let error = result.expect_err("the migration cannot have completed at 1 MiB/s");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    // A closed connection is noticed at once (issue 19: it once took until
    // the cutoff, 56 s of 60): what remains is the daemon's own restart
    // (about 2 s, 3 s more after a kill) and one look over a fresh
    // connection. 10 s is several times that, far from the 54 s cutoff.
    // When migrate_to answered, not when this thread got round to joining
    // it: restart_daemon's own wait (slow on a loaded machine) is not the
    // agent's time.
    let after_fault = took.saturating_sub(down_at);
    assert!(
        after_fault < Duration::from_secs(10),
        "migrate_to answered {after_fault:?} after the source's libvirtd went down ({took:?} in all): {}",
        error.reason
    );
    assert!(
        error.reason.ends_with(&format!("{} still runs on {SOURCE_NODE}", guest.name)),
        "the restarted source should have been asked again: {}\n{}",
        error.reason,
        source.log_tail(20)
    );
    assert_runs_only_on(&guest.name, &source.uri, &target.uri);
    figure(
        &format!("migrate_to {migrate_options} with the source's libvirtd {fate:?} (60 s timeout), after the fault"),
        after_fault,
    );
    figure(&format!("migrate_to {migrate_options} with the source's libvirtd {fate:?} (60 s timeout), in all"), took);
}

/// A frozen (SIGSTOPped) source libvirtd answers nothing and closes
/// nothing: every call to it must give up in time, and with neither the
/// source's word nor the guest on the target there is no success to report.
/// Once migrate_to has returned the frozen daemon is killed and started
/// again. Ignored: when the frozen daemon is continued or killed, the calls
/// this process left waiting on it (the migration call, bounded calls given
/// up) end, and libvirt's client library crashed this test process
/// (SIGSEGV) in most runs, taking every other test of the binary with it.
/// migrate_to itself returned in time in every run
/// (`cargo test --release --test migration freezing -- --ignored --nocapture`).
/// The agent binary, which exits as soon as migrate_to returns, is run
/// against the same faults in tests/agent_frozen_libvirtd.rs.
#[test]
#[ignore = "libvirt's client crashes this process (SIGSEGV) when the frozen daemon's connections end under waiting threads"]
fn freezing_the_source_hypervisor_during_the_migration_fails_before_the_timeout() {
    let source = lab("migsrcstop");
    let target = PrivateHypervisor::start("migsrcstopt");
    let guest = dirty_guest_on(&source.uri, &target.uri);
    let timeout = Duration::from_secs(30);
    let call = Call::between(&guest, &source.uri, &target.uri, timeout).set("migration_speed", "1");
    let daemon = nix::unistd::Pid::from_raw(source.libvirtd_pid().expect("the source's libvirtd runs") as i32);

    let (result, took) = std::thread::scope(|scope| {
        let migration = scope.spawn(|| call.run());
        wait_for_migration_job(&source.uri, &guest.name);
        std::thread::sleep(Duration::from_secs(1));
        nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGSTOP).expect("stopping our own libvirtd");
        let outcome = migration.join();
        source.kill_daemon();
        source.restart_daemon();
        outcome.expect("migrate_to did not panic")
    });

    let error = result.expect_err("a frozen source can confirm nothing");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    assert!(took < timeout, "returned after {took:?}, the timeout is {timeout:?}");
    assert!(!error.reason.contains(&format!("runs on {TARGET_NODE} now")), "{}", error.reason);
    figure("migrate_to with the source's libvirtd SIGSTOPped (30 s timeout)", took);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn preflight_refuses_an_unreachable_target_and_leaves_the_guest_alone() {
    let target = lab("migunr");
    let guest = started_on_host(support::firmware_guest("migunr"), &target);
    let nowhere = format!("qemu+unix:///system?socket={}/no-such-sock", target.dir.display());

    let (result, _) = Call::new(&guest, &target, Duration::from_secs(30)).set("remoteuri", &nowhere).run();

    let error = result.expect_err("nobody listens there");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    assert!(error.reason.starts_with(&format!("not migrating {} to {TARGET_NODE}", guest.name)), "{}", error.reason);
    assert!(error.reason.contains("did not answer"), "{}", error.reason);
    assert!(error.reason.ends_with(&format!("still runs on {SOURCE_NODE}")), "{}", error.reason);
    assert_runs_only_on(&guest.name, HOST_URI, &target.uri);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn preflight_gives_up_on_a_hanging_target_in_time() {
    let target = lab("mighang");
    let guest = started_on_host(support::firmware_guest("mighang"), &target);
    let daemon = target.libvirtd_pid().expect("the private libvirtd runs");
    let timeout = Duration::from_secs(20);

    let pid = nix::unistd::Pid::from_raw(daemon as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stopping our own libvirtd");
    let (result, took) = Call::new(&guest, &target, timeout).run();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("continuing our own libvirtd");

    let error = result.expect_err("a stopped libvirtd never answers");
    assert!(error.reason.contains("did not answer") && error.reason.contains("no answer within"), "{}", error.reason);
    assert!(took < timeout, "returned after {took:?}");
    assert_runs_only_on(&guest.name, HOST_URI, &target.uri);
    figure("pre-flight against a stopped libvirtd (20 s timeout)", took);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn preflight_refuses_when_the_domain_is_already_active_on_the_target() {
    let target = lab("migdup");
    let guest = started_on_host(support::firmware_guest("migdup"), &target);
    let xml = guest.xml.to_string_lossy().into_owned();
    support::virsh_ok(&target.uri, &["create", &xml]);

    let (result, _) = Call::new(&guest, &target, Duration::from_secs(30)).run();

    let error = result.expect_err("the guest already runs on the target");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    assert!(error.reason.contains("already active there (running"), "{}", error.reason);
    assert_eq!(state(HOST_URI, &guest.name).as_deref(), Some("running"));
    assert_eq!(state(&target.uri, &guest.name).as_deref(), Some("running"));
}

/// Post-copy needs userfaultfd in the target's QEMU. QEMU 7.2 asks the
/// kernel directly, which refuses unprivileged callers while
/// `vm.unprivileged_userfaultfd` is 0; so this test's private target runs
/// QEMU as root, a change that stays inside its own directory. Root needs no
/// file ownership changes, and must not make any: the guest's kernel is a
/// lab file other guests use at the same time.
fn let_target_qemu_use_userfaultfd(target: &PrivateHypervisor) {
    let unprivileged = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd").unwrap_or_default();
    if unprivileged.trim() == "1" {
        return;
    }
    let conf = target.dir.join("etc/libvirt/qemu.conf");
    let mut text = std::fs::read_to_string(&conf).expect("the private qemu.conf");
    text.push_str("\nuser = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n");
    std::fs::write(&conf, text).expect("writing the private qemu.conf");
    target.restart_daemon();
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn postcopy_takes_over_when_precopy_cannot_converge() {
    let target = lab("migpost");
    let_target_qemu_use_userfaultfd(&target);
    let guest = dirty_guest_on_host(&target);
    let timeout = Duration::from_secs(30);

    // 128 MiB at 16 MiB/s: pre-copy cannot keep up with the guest, post-copy needs ~8 s.
    let call = Call::new(&guest, &target, timeout).set("migrate_options", "--postcopy --bandwidth=16");
    let (result, took) = call.run();

    assert_eq!(result, Ok(OcfStatus::Success));
    assert!(took < timeout, "returned after {took:?}");
    assert_runs_only_on(&guest.name, &target.uri, HOST_URI);
    figure("migrate_to of a busy guest with --postcopy (30 s timeout)", took);
}

#[test]
fn unknown_migrate_options_are_a_configuration_error_before_anything_happens() {
    let mut params = HashMap::new();
    params.insert("config", "/nonexistent.xml");
    params.insert("migrate_options", "--p2p --warp-speed");
    let params = Params::from_lookup(|n| params.get(n).map(|v| v.to_string())).unwrap();
    let error = virtguard::vdomain::migration::validate(&params).unwrap_err().to_string();
    assert!(error.contains("--warp-speed"), "{error}");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_local_guest_that_is_not_running_is_refused() {
    let target = lab("mignot");
    let guest = support::firmware_guest("mignot");
    let (result, _) = Call::new(&guest, &target, Duration::from_secs(30)).run();
    let error = result.expect_err("nothing to migrate");
    assert_eq!(error.status, OcfStatus::ErrGeneric);
    assert!(error.reason.contains("not active locally"), "{}", error.reason);
    let local = virtguard::hypervisor::connect(Some(HOST_URI)).unwrap();
    assert_eq!(local.state(&guest.name).unwrap(), None);
}
