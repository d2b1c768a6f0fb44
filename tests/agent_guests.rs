//! The agent against real QEMU guests on the host's libvirtd, called as
//! Pacemaker calls it: start, stop (graceful and after the budget), monitor
//! and its state table, shutdown_mode, monitor_scripts.

mod support;

use std::time::Duration;

use support::{acpi_guest, agent, domstate, ensure_libvirtd, firmware_guest, virsh_ok, GuestGuard, GuestMode, HOST_URI};

fn env_for<'a>(guest: &'a GuestGuard, timeout_ms: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OCF_RESKEY_config", guest.xml.to_str().unwrap()),
        ("OCF_RESKEY_hypervisor", HOST_URI),
        ("OCF_RESKEY_CRM_meta_timeout", timeout_ms),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
    ];
    env.extend_from_slice(extra);
    env
}

fn recurring<'a>(mut env: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    env.push(("OCF_RESKEY_CRM_meta_interval", "10000"));
    env
}

fn state(guest: &GuestGuard) -> Option<(String, String)> {
    domstate(HOST_URI, &guest.name)
}

/// What libvirt wrote in the domain's log when QEMU went away.
fn shutdown_reason_logged(guest: &GuestGuard) -> Option<String> {
    let log = std::fs::read_to_string(format!("/var/log/libvirt/qemu/{}.log", guest.name)).ok()?;
    log.lines().rev().find_map(|l| l.split("shutting down, reason=").nth(1).map(|r| r.trim().to_owned()))
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn firmware_guest_lifecycle_and_destroy_after_the_graceful_budget() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fw-life");
    let env = env_for(&guest, "20000", &[]);

    let probe = agent("monitor", &env);
    assert_eq!(probe.code, 7, "probe before start: {}", probe.stderr);

    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    assert_eq!(state(&guest).map(|s| s.0).as_deref(), Some("running"));
    let again = agent("start", &env);
    assert_eq!(again.code, 0, "start of a running guest: {}", again.stderr);

    assert_eq!(agent("monitor", &env).code, 0);
    assert_eq!(agent("monitor", &recurring(env.clone())).code, 0);
    assert_eq!(agent("status", &env).code, 0);

    // It sits in the BIOS and ignores ACPI: graceful for a budget, then destroy,
    // all well inside the 20 s timeout.
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
    assert!(stop.elapsed < Duration::from_secs(20), "stop took {:?}", stop.elapsed);
    // The proof that a graceful shutdown was tried first is the agent's word
    // that libvirt accepted the request, before the line that gives up on it
    // and destroys: how long stop took says nothing about what it did.
    let requested = stop.stderr.find(&format!("requested a graceful shutdown of {}", guest.name));
    let gave_up = stop.stderr.find(&format!("{} did not shut down within", guest.name));
    let destroying = stop.stderr.find("destroying it");
    assert!(
        requested.is_some() && gave_up.is_some() && destroying.is_some() && requested < gave_up && gave_up <= destroying,
        "stop should request a graceful shutdown, wait for it, then destroy:\n{}",
        stop.stderr
    );
    assert_eq!(state(&guest), None, "a transient domain disappears when stopped");
    assert_eq!(shutdown_reason_logged(&guest).as_deref(), Some("destroyed"));

    assert_eq!(agent("monitor", &recurring(env.clone())).code, 7);
    assert_eq!(agent("stop", &env).code, 0, "stop of a stopped guest");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn acpi_guest_stops_gracefully() {
    ensure_libvirtd();
    let guest = acpi_guest("vg-acpi-stop", GuestMode::Idle);
    let env = env_for(&guest, "60000", &[]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    assert!(guest.wait_ready(Duration::from_secs(60)), "guest never got ready: {}", guest.console_text());
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
    assert!(stop.stderr.contains("shut down gracefully"), "{}", stop.stderr);
    assert!(!stop.stderr.contains("destroy"), "{}", stop.stderr);
    assert_eq!(shutdown_reason_logged(&guest).as_deref(), Some("shutdown"), "libvirt must record a shutdown");
    eprintln!("FIGURE graceful stop of the ACPI guest: {:.2} s", stop.elapsed.as_secs_f64());
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn shutdown_mode_reaches_libvirt() {
    ensure_libvirtd();
    // The guest has no guest agent: libvirt's refusal of mode "agent" proves
    // that the mode was passed (the classic agent silently dropped it).
    let guest = firmware_guest("vg-fw-mode");
    let env = env_for(&guest, "12000", &[("OCF_RESKEY_shutdown_mode", "agent")]);
    assert_eq!(agent("start", &env).code, 0);
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
    assert!(stop.stderr.contains("modes 0x2") || stop.stderr.to_lowercase().contains("agent"), "{}", stop.stderr);
    assert!(stop.stderr.contains("shutdown request for"), "libvirt's refusal must be logged: {}", stop.stderr);
    assert!(stop.elapsed < Duration::from_secs(12), "{:?}", stop.elapsed);
    assert_eq!(state(&guest), None);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn force_stop_destroys_at_once() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fw-force");
    let env = env_for(&guest, "30000", &[("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(agent("start", &env).code, 0);
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
    assert!(stop.elapsed < Duration::from_secs(10), "{:?}", stop.elapsed);
    assert!(!stop.stderr.contains("graceful"), "{}", stop.stderr);
    assert_eq!(state(&guest), None);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn operator_pause_is_running_but_an_io_error_pause_is_a_failure() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fw-pause");
    let env = env_for(&guest, "20000", &[]);
    assert_eq!(agent("start", &env).code, 0);
    virsh_ok(HOST_URI, &["suspend", &guest.name]);
    let monitor = agent("monitor", &recurring(env.clone()));
    assert_eq!(monitor.code, 0, "operator pause: {}", monitor.stderr);
    virsh_ok(HOST_URI, &["resume", &guest.name]);
    assert_eq!(agent("stop", &env).code, 0);

    let dir = support::scratch_dir(&format!("ioerror-{}", std::process::id()));
    let io_guest = support::ioerror_guest("vg-io", &dir);
    let env = env_for(&io_guest, "60000", &[]);
    // The guest may fail during start already (the agent notices) or a little later.
    let start = agent("start", &env);
    assert!(support::wait_for(Duration::from_secs(90), Duration::from_millis(200), || {
        domstate(HOST_URI, &io_guest.name).is_some_and(|(s, r)| s == "paused" && r == "I/O error")
    }), "guest never paused on an I/O error (start: {})", start.stderr);
    if start.code != 0 {
        assert!(start.exit_reason().unwrap_or_default().contains("I/O error"), "{}", start.stderr);
    }
    let monitor = agent("monitor", &recurring(env.clone()));
    assert_eq!(monitor.code, 1, "paused on I/O error must fail the monitor: {}", monitor.stderr);
    assert!(monitor.exit_reason().unwrap_or_default().contains("I/O error"), "{}", monitor.stderr);
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop of a failed guest: {}", stop.stderr);
    assert_eq!(domstate(HOST_URI, &io_guest.name), None, "{}", stop.stderr);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn monitor_scripts_pass_fail_and_hang() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fw-scripts");
    let dir = guest.dir.clone();
    let write_script = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&path).unwrap().permissions(), 0o755);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    };
    let ok = write_script("ok.sh", "exit 0");
    let bad = write_script("bad.sh", "echo 'service on port 80 is down' >&2; exit 2");
    let hang = write_script("hang.sh", "sleep 600");

    let env = env_for(&guest, "20000", &[("OCF_RESKEY_monitor_scripts", &ok)]);
    assert_eq!(agent("start", &env).code, 0, "start waits for passing scripts");
    assert_eq!(agent("monitor", &recurring(env.clone())).code, 0);

    let failing = env_for(&guest, "20000", &[("OCF_RESKEY_monitor_scripts", &bad)]);
    let run = agent("monitor", &recurring(failing));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.exit_reason().unwrap().contains("service on port 80 is down"), "{}", run.stderr);

    let hanging = env_for(&guest, "5000", &[("OCF_RESKEY_monitor_scripts", &hang)]);
    let run = agent("monitor", &recurring(hanging));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(5), "a hanging script must not outlive the timeout: {:?}", run.elapsed);
    assert!(run.exit_reason().unwrap().contains("did not finish"), "{}", run.stderr);

    assert_eq!(agent("stop", &env_for(&guest, "20000", &[("OCF_RESKEY_force_stop", "1")])).code, 0);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn start_failure_reports_libvirts_own_error() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fw-bad");
    // A memory size QEMU cannot give: libvirt's message must reach the exit reason.
    let xml = std::fs::read_to_string(&guest.xml).unwrap().replace("<memory unit='MiB'>64</memory>", "<memory unit='TiB'>64</memory>");
    std::fs::write(&guest.xml, xml).unwrap();
    let env = env_for(&guest, "30000", &[]);
    let start = agent("start", &env);
    assert_eq!(start.code, 1, "{}", start.stderr);
    let reason = start.exit_reason().unwrap();
    assert!(reason.starts_with(&format!("failed to start {}: ", guest.name)), "{reason}");
    assert!(reason.len() > format!("failed to start {}: ", guest.name).len() + 10, "no libvirt detail: {reason}");
    assert_eq!(state(&guest), None, "nothing half-started");
}

/// Every file under this test's HA_RSCTMP with its content: what the agent remembers.
fn remembered() -> Vec<(String, String)> {
    let dir = support::rsctmp_for_this_test();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// OCF 1.1 reload-agent on a running guest, called as Pacemaker calls it
/// after a change of reloadable parameters only: valid ones answer 0 and
/// leave the guest (same QEMU process, same libvirt domain id) and what the
/// agent remembers as they were; an invalid one answers 0 too (Pacemaker
/// would stop the guest for any other answer), with validate-all's reason
/// as a warning, leaves the guest running, and the monitor after it reports
/// the value as degraded (190) with that reason.
#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn reload_agent_leaves_the_running_guest_alone() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fw-reload");
    let env = env_for(&guest, "20000", &[("OCF_RESKEY_force_stop", "true")]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    assert_eq!(agent("monitor", &recurring(env.clone())).code, 0);
    let qemu_pid = || std::fs::read_to_string(format!("/run/libvirt/qemu/{}.pid", guest.name)).map(|p| p.trim().to_owned()).ok();
    let domid = || virsh_ok(HOST_URI, &["domid", &guest.name]).trim().to_owned();
    let (pid_before, id_before, memory_before) = (qemu_pid(), domid(), remembered());
    assert!(pid_before.is_some(), "no QEMU pid file for {}", guest.name);

    let changed = env_for(
        &guest,
        "10000",
        &[
            ("OCF_RESKEY_force_stop", "false"),
            ("OCF_RESKEY_migration_downtime", "300"),
            ("OCF_RESKEY_drbd_dual_primary", "true"),
            ("OCF_RESKEY_guest_agent_grace", "5"),
            ("OCF_RESKEY_shutdown_mode", "acpi"),
            ("OCF_RESKEY_autoset_utilization_cpu", "false"),
        ],
    );
    let reload = agent("reload-agent", &changed);
    assert_eq!(reload.code, 0, "reload-agent: {}", reload.stderr);
    assert_eq!(reload.exit_reason(), None);
    assert!(reload.stderr.contains("migration_downtime=300") && reload.stderr.contains("drbd_dual_primary=true"), "{}", reload.stderr);
    assert_eq!(state(&guest).map(|s| s.0).as_deref(), Some("running"));
    assert_eq!((qemu_pid(), domid()), (pid_before.clone(), id_before.clone()), "reload-agent touched the guest");
    assert_eq!(remembered(), memory_before, "reload-agent changed what the agent remembers");

    let mut bad = env.clone();
    bad.push(("OCF_RESKEY_migration_transport", "bogus"));
    let validate = agent("validate-all", &bad);
    let reload = agent("reload-agent", &bad);
    assert_eq!(validate.code, 6, "validate-all: {}", validate.stderr);
    assert_eq!((reload.code, reload.exit_reason()), (0, None), "reload-agent: {}", reload.stderr);
    let validate_reason = validate.exit_reason().unwrap_or_default();
    assert!(validate_reason.contains("migration_transport") && reload.stderr.contains(&validate_reason), "{}", reload.stderr);
    let monitor = agent("monitor", &recurring(bad.clone()));
    assert_eq!(monitor.code, 190, "the monitor after the reload: {}", monitor.stderr);
    assert!(monitor.exit_reason().unwrap_or_default().contains("migration_transport"), "{}", monitor.stderr);
    assert_eq!((qemu_pid(), domid()), (pid_before, id_before), "a refused reload-agent touched the guest");
    assert_eq!(remembered(), memory_before);

    assert_eq!(agent("stop", &env).code, 0);
    assert_eq!(state(&guest), None);
}
