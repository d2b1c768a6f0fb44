//! Proves the test lab with virsh alone (no agent): the guests behave as the
//! agent's tests assume. Timings are printed (`--nocapture`), never asserted,
//! except generous bounds that prove "it happened before we gave up".

mod support;

use std::time::{Duration, Instant};

use support::{GuestMode, HOST_URI};

const BOOT_BOUND: Duration = Duration::from_secs(60);
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

#[test]
fn agent_harness_runs_the_binary_as_virtual_domain() {
    let run = support::agent("meta-data", &[("OCF_RESKEY_config", "/nonexistent.xml")]);
    assert!(run.code >= 0, "the agent did not exit normally: {run:?}");
    assert!(run.elapsed < Duration::from_secs(60), "{run:?}");
    assert!(support::agent_symlink().ends_with("VirtualDomain"));
    assert!(support::rsctmp_for_this_test().is_dir());
}

#[test]
fn acpi_guest_boots_and_powers_off_on_shutdown() {
    if !support::ensure_libvirtd() {
        return;
    }
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
fn firmware_guest_ignores_acpi_shutdown() {
    if !support::ensure_libvirtd() {
        return;
    }
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
fn suspend_gives_paused_user() {
    if !support::ensure_libvirtd() {
        return;
    }
    let mut guest = support::firmware_guest("susp");
    guest.define_and_start(HOST_URI);
    support::virsh_ok(HOST_URI, &["suspend", &guest.name]);
    assert!(state_is(HOST_URI, &guest.name, "paused", "user"), "{:?}", support::domstate(HOST_URI, &guest.name));
    support::virsh_ok(HOST_URI, &["resume", &guest.name]);
    assert!(state_is(HOST_URI, &guest.name, "running", "unpaused"), "{:?}", support::domstate(HOST_URI, &guest.name));
}

#[test]
fn ioerror_guest_ends_paused_with_io_error() {
    if !support::ensure_libvirtd() {
        return;
    }
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
