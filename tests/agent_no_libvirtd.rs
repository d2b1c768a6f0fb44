//! The agent when libvirtd is gone or frozen: monitor answers from the
//! emulator process in /proc, stop still stops the guest in time instead of
//! timing out into fencing. Each test has a private libvirtd of its own, so
//! killing or freezing it disturbs nobody.

mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{agent, ensure_libvirtd, firmware_guest, process_alive, wait_for, Frozen, GuestGuard, PrivateHypervisor};

fn env_for<'a>(guest: &'a GuestGuard, hv: &'a PrivateHypervisor, timeout_ms: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OCF_RESKEY_config", guest.xml.to_str().unwrap()),
        ("OCF_RESKEY_hypervisor", hv.uri.as_str()),
        ("OCF_RESKEY_CRM_meta_timeout", timeout_ms),
        ("OCF_RESKEY_CRM_meta_interval", "10000"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
    ]
}

fn started_guest(hv: &PrivateHypervisor, label: &str) -> (GuestGuard, u32) {
    let mut guest = firmware_guest(label);
    guest.track(&hv.uri);
    let start = agent("start", &env_for(&guest, hv, "30000"));
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    let pid = hv.qemu_pid(&guest.name).expect("qemu pid of the started guest");
    (guest, pid)
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn libvirtd_down_monitor_and_stop_use_the_emulator_process() {
    ensure_libvirtd();
    let hv = PrivateHypervisor::start("down");
    let (guest, qemu) = started_guest(&hv, "vg-nolv");
    hv.kill_daemon();
    assert!(process_alive(qemu), "killing libvirtd must leave the guest running");

    let env = env_for(&guest, &hv, "20000");
    let monitor = agent("monitor", &env);
    assert_eq!(monitor.code, 0, "the guest runs although libvirtd is down: {}", monitor.stderr);
    assert!(monitor.stderr.contains(&format!("emulator pid {qemu}")), "{}", monitor.stderr);

    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop must succeed without libvirtd: {}", stop.stderr);
    assert!(stop.elapsed < Duration::from_secs(20), "{:?}", stop.elapsed);
    assert!(wait_for(Duration::from_secs(5), Duration::from_millis(50), || !process_alive(qemu)), "qemu {qemu} survived the stop");
    assert_eq!(agent("monitor", &env).code, 7, "stopped, libvirtd still down");

    // libvirtd comes back and finds the guest gone.
    hv.restart_daemon();
    assert_eq!(agent("monitor", &env).code, 7);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn frozen_libvirtd_cannot_carry_stop_or_monitor_past_the_timeout() {
    ensure_libvirtd();
    let hv = PrivateHypervisor::start("frozen");
    let (guest, qemu) = started_guest(&hv, "vg-frozen");
    let daemon = hv.libvirtd_pid().expect("libvirtd pid") as i32;
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    let _frozen = Frozen(daemon);

    let env = env_for(&guest, &hv, "8000");
    let monitor = agent("monitor", &env);
    assert_eq!(monitor.code, 0, "a frozen daemon must not fail a running guest: {}", monitor.stderr);
    assert!(monitor.elapsed < Duration::from_secs(8), "{:?}", monitor.elapsed);

    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.elapsed < Duration::from_secs(8), "stop must beat the 8 s timeout: {:?}", stop.elapsed);
    assert!(stop.stderr.contains("stopping its emulator process directly"), "{}", stop.stderr);
    assert!(wait_for(Duration::from_secs(5), Duration::from_millis(50), || !process_alive(qemu)), "qemu {qemu} survived");
}

/// A node that has neither the config nor any memory of the guest looks for
/// a guest carrying the resource's owner tag before it may answer "not
/// running". That look-up happens before the watchdog is armed, so it is
/// bounded on its own: a frozen libvirtd must not turn a probe into a
/// timeout, nor a stop into fencing.
#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn frozen_libvirtd_cannot_hold_the_owner_tag_lookup_past_the_timeout() {
    ensure_libvirtd();
    let hv = PrivateHypervisor::start("frozentag");
    let (guest, _qemu) = started_guest(&hv, "vg-frztag");
    let daemon = hv.libvirtd_pid().expect("libvirtd pid") as i32;
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    let frozen = Frozen(daemon);

    let missing = guest.dir.join("not-mounted-here.xml");
    let mut env = env_for(&guest, &hv, "8000");
    env.retain(|(k, _)| !matches!(*k, "OCF_RESKEY_config" | "OCF_RESOURCE_INSTANCE" | "OCF_RESKEY_CRM_meta_interval"));
    // Another resource name: nothing is remembered for it on this node.
    env.extend([("OCF_RESKEY_config", missing.to_str().unwrap()), ("OCF_RESOURCE_INSTANCE", "never-here"), ("OCF_RESKEY_CRM_meta_interval", "0")]);

    let probe = agent("monitor", &env);
    assert_eq!(probe.code, 7, "no config, no memory, libvirt silent: the OCF probe rule: {}", probe.stderr);
    assert!(probe.elapsed < Duration::from_secs(8), "the probe must beat its 8 s timeout: {:?}", probe.elapsed);
    assert!(probe.stderr.contains("cannot look for a guest tagged with never-here"), "{}", probe.stderr);

    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.elapsed < Duration::from_secs(8), "stop must beat its 8 s timeout: {:?}", stop.elapsed);
    drop(frozen);
}
