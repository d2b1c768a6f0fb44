//! Proves the test lab with virsh alone (no agent): the guests behave as the
//! agent's tests assume. Timings are printed (`--nocapture`), never asserted,
//! except generous bounds that prove "it happened before we gave up".

mod support;

use std::time::{Duration, Instant};

use support::{GuestMode, HOST_URI};

const BOOT_BOUND: Duration = Duration::from_secs(120);
const STATE_BOUND: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn state_is(uri: &str, name: &str, state: &str, reason: &str) -> bool {
    support::domstate(uri, name).is_some_and(|(s, r)| s == state && r == reason)
}

fn figure(what: &str, took: Duration) {
    eprintln!("FIGURE {what}: {:.2} s", took.as_secs_f64());
}

#[test]
fn parses_domstate_with_and_without_reason() {
    assert_eq!(
        support::parse_domstate("paused (I/O error)\n\n"),
        Some(("paused".to_owned(), "I/O error".to_owned()))
    );
    assert_eq!(
        support::parse_domstate("shut off (shutdown)\n"),
        Some(("shut off".to_owned(), "shutdown".to_owned()))
    );
    assert_eq!(support::parse_domstate("running\n"), Some(("running".to_owned(), String::new())));
    assert_eq!(support::parse_domstate("\n"), None);
}

#[test]
fn extracts_the_last_exit_reason() {
    let stderr = "INFO: something\nocf-exit-reason:first\nnoise\nocf-exit-reason: domain vm1 is paused \n";
    assert_eq!(support::exit_reason(stderr), Some("domain vm1 is paused".to_owned()));
    assert_eq!(support::exit_reason("nothing here\n"), None);
}

/// The cluster lab's shell writes its guest itself (`lab_guest_xml` in
/// tests/cluster/lab.sh); this fails when that and the Rust builder drift.
#[test]
fn the_cluster_lab_shell_writes_the_guest_the_rust_builder_builds() {
    let lab_sh = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/lab.sh");
    for domain_type in [support::DomainType::Kvm, support::DomainType::Qemu] {
        let mut command = std::process::Command::new("bash");
        command
            .arg("-c")
            .arg(r#"source "$1" && lab_guest_xml "$2" "$3""#)
            .arg("bash")
            .arg(&lab_sh)
            .arg("vg-lab_guest-1")
            .arg(domain_type.as_str());
        let output = support::run_bounded(command, Duration::from_secs(30));
        assert!(output.status.success(), "lab_guest_xml: {}", support::describe(&output));
        let from_shell = String::from_utf8(output.stdout).unwrap();
        assert_eq!(from_shell, support::GuestXml::cluster_lab("vg-lab_guest-1", domain_type).build());
    }
}

#[test]
fn agent_harness_runs_the_binary_as_virtual_domain() {
    let run = support::agent("meta-data", &[("OCF_RESKEY_config", "/nonexistent.xml")]);
    assert!(run.code >= 0, "the agent did not exit normally: {run:?}");
    assert!(run.elapsed < Duration::from_secs(60), "{run:?}");
    assert!(support::agent_symlink().ends_with("VirtualDomain"));
    assert!(support::rsctmp_for_this_test().is_dir());
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn acpi_guest_boots_and_powers_off_on_shutdown() {
    support::ensure_libvirtd();
    let mut guest = support::acpi_guest("acpi", GuestMode::Idle);
    let started = Instant::now();
    guest.define_and_start(HOST_URI);
    assert!(guest.wait_ready(BOOT_BOUND), "no ready marker; console:\n{}", guest.console_text());
    figure("acpi guest boot (virsh start -> ready marker)", started.elapsed());

    let asked = Instant::now();
    support::virsh_ok(HOST_URI, &["shutdown", &guest.name]);
    assert!(
        support::wait_for(STATE_BOUND, POLL, || state_is(HOST_URI, &guest.name, "shut off", "shutdown")),
        "state {:?}; console:\n{}",
        support::domstate(HOST_URI, &guest.name),
        guest.console_text()
    );
    figure("acpi guest power-off (virsh shutdown -> shut off)", asked.elapsed());
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn firmware_guest_ignores_acpi_shutdown() {
    support::ensure_libvirtd();
    let mut guest = support::firmware_guest("fw");
    guest.define_and_start(HOST_URI);
    assert_eq!(support::domstate(HOST_URI, &guest.name).map(|s| s.0).as_deref(), Some("running"));
    support::virsh_ok(HOST_URI, &["shutdown", &guest.name]);
    let left_running = support::wait_for(Duration::from_secs(5), Duration::from_millis(250), || {
        support::domstate(HOST_URI, &guest.name).is_none_or(|(state, _)| state != "running")
    });
    assert!(!left_running, "the firmware guest reacted to ACPI: {:?}", support::domstate(HOST_URI, &guest.name));
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn suspend_gives_paused_user() {
    support::ensure_libvirtd();
    let mut guest = support::firmware_guest("susp");
    guest.define_and_start(HOST_URI);
    support::virsh_ok(HOST_URI, &["suspend", &guest.name]);
    assert!(state_is(HOST_URI, &guest.name, "paused", "user"), "{:?}", support::domstate(HOST_URI, &guest.name));
    support::virsh_ok(HOST_URI, &["resume", &guest.name]);
    assert!(state_is(HOST_URI, &guest.name, "running", "unpaused"), "{:?}", support::domstate(HOST_URI, &guest.name));
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn ioerror_guest_ends_paused_with_io_error() {
    support::ensure_libvirtd();
    let mut guest = support::ioerror_guest("ioerr", &support::scratch_root());
    let started = Instant::now();
    guest.define_and_start(HOST_URI);
    assert!(
        support::wait_for(BOOT_BOUND + STATE_BOUND, POLL, || state_is(HOST_URI, &guest.name, "paused", "I/O error")),
        "state {:?}; console:\n{}",
        support::domstate(HOST_URI, &guest.name),
        guest.console_text()
    );
    figure("ioerror guest (virsh start -> paused ioerror)", started.elapsed());
    let errors = support::virsh_ok(HOST_URI, &["domblkerror", &guest.name]);
    assert!(errors.contains("no space"), "domblkerror: {errors}");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn private_hypervisor_survives_a_daemon_kill_and_restarts() {
    support::ensure_libvirtd();
    let hypervisor = support::PrivateHypervisor::start("kill");
    let mut guest = support::firmware_guest("priv");
    guest.define_and_start(&hypervisor.uri);
    let qemu = hypervisor.qemu_pid(&guest.name).expect("qemu pid file");
    assert!(support::process_alive(qemu));

    hypervisor.kill_daemon();
    assert!(hypervisor.libvirtd_pid().is_none());
    assert!(!support::hypervisor_answers(&hypervisor.uri));
    assert!(support::process_alive(qemu), "killing libvirtd took the guest with it");

    hypervisor.restart_daemon();
    assert_eq!(
        support::domstate(&hypervisor.uri, &guest.name).map(|s| s.0).as_deref(),
        Some("running"),
        "{}",
        hypervisor.log_tail(20)
    );
    assert_eq!(hypervisor.qemu_pid(&guest.name), Some(qemu));
    // The host's libvirtd never saw it.
    assert!(support::domstate(HOST_URI, &guest.name).is_none());
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn live_migration_host_to_private() {
    support::ensure_libvirtd();
    let hypervisor = support::PrivateHypervisor::start("mig");
    let mut guest = support::acpi_guest("mig", GuestMode::Idle);
    guest.define_and_start(HOST_URI);
    guest.track(&hypervisor.uri);
    assert!(guest.wait_ready(BOOT_BOUND), "console:\n{}", guest.console_text());

    let started = Instant::now();
    let output = support::migrate_live(HOST_URI, &hypervisor.uri, &guest.name, &[]);
    assert!(output.status.success(), "{}\n{}", support::describe(&output), hypervisor.log_tail(20));
    figure("live migration host -> private (128 MiB TCG guest)", started.elapsed());
    assert!(state_is(&hypervisor.uri, &guest.name, "running", "migrated"), "{:?}", support::domstate(&hypervisor.uri, &guest.name));
    assert!(state_is(HOST_URI, &guest.name, "shut off", "migrated"), "{:?}", support::domstate(HOST_URI, &guest.name));

    // It is the same running guest: it still powers off on ACPI.
    support::virsh_ok(&hypervisor.uri, &["shutdown", &guest.name]);
    assert!(support::wait_for(STATE_BOUND, POLL, || support::domstate(&hypervisor.uri, &guest.name).is_none()));
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn live_migration_between_two_private_hypervisors() {
    support::ensure_libvirtd();
    let first = support::PrivateHypervisor::start("one");
    let second = support::PrivateHypervisor::start("two");
    let mut guest = support::firmware_guest("mig2");
    guest.define_and_start(&first.uri);
    guest.track(&second.uri);

    let started = Instant::now();
    let output = support::migrate_live(&first.uri, &second.uri, &guest.name, &["--persistent", "--undefinesource"]);
    assert!(output.status.success(), "{}\n{}", support::describe(&output), second.log_tail(20));
    figure("live migration private -> private (64 MiB firmware guest)", started.elapsed());
    assert!(state_is(&second.uri, &guest.name, "running", "migrated"), "{:?}", support::domstate(&second.uri, &guest.name));
    assert!(support::domstate(&first.uri, &guest.name).is_none());
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn ioerror_guest_inside_a_private_hypervisor() {
    support::ensure_libvirtd();
    let hypervisor = support::PrivateHypervisor::start("ioerr");
    let mut guest = hypervisor.ioerror_guest("pioerr");
    guest.define_and_start(&hypervisor.uri);
    assert!(
        support::wait_for(BOOT_BOUND + STATE_BOUND, POLL, || state_is(&hypervisor.uri, &guest.name, "paused", "I/O error")),
        "state {:?}; console:\n{}",
        support::domstate(&hypervisor.uri, &guest.name),
        guest.console_text()
    );
}

#[test]
fn unique_names_carry_their_owner_pid() {
    let name = support::unique_name("a-b");
    assert_eq!(support::owner_pid_of(&name), Some(std::process::id()));
    assert_eq!(support::owner_pid_of(&format!("{name}-disk")), Some(std::process::id()));
    assert_eq!(support::owner_pid_of("vgt-x-12-3"), Some(12));
    assert_eq!(support::owner_pid_of("other-x-12-3"), None);
    assert_eq!(support::owner_pid_of("vgt-12"), None);
}
