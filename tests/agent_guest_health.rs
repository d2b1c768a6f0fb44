//! Guest health against a real QEMU guest agent (qemu-ga from Debian's
//! package, inside the lab guest): monitor at OCF_CHECK_LEVEL 10 with a
//! killed and a frozen agent, the grace, level 0 unchanged, start that waits
//! for the agent, a missing channel, a real kernel panic seen through
//! pvpanic, and an i6300esb watchdog that fires (pause: failure; reset: the
//! guest boots again and counts as running).

mod support;

use std::time::Duration;

use support::{agent, agent_guest, domstate, ensure_libvirtd, firmware_guest, wait_for, AgentGuest, GuestAgentKind, HOST_URI};

const BOOT: Duration = Duration::from_secs(90);

fn env_for<'a>(guest: &'a AgentGuest, timeout_ms: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OCF_RESKEY_config", guest.guard.xml.to_str().unwrap()),
        ("OCF_RESKEY_hypervisor", HOST_URI),
        ("OCF_RESKEY_CRM_meta_timeout", timeout_ms),
        ("OCF_RESOURCE_INSTANCE", guest.guard.name.as_str()),
    ];
    env.extend_from_slice(extra);
    env
}

/// A recurring monitor at `level`.
fn monitor_env<'a>(base: &[(&'a str, &'a str)], level: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = base.to_vec();
    env.push(("OCF_RESKEY_CRM_meta_interval", "10000"));
    env.push(("OCF_CHECK_LEVEL", level));
    env
}

fn started(label: &str, kind: GuestAgentKind) -> AgentGuest {
    let guest = agent_guest(label, kind, "");
    let env = env_for(&guest, "90000", &[]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    guest
}

/// Runs monitors at `level` until one fails, each within its timeout; returns
/// the exit reason of the failure and how many monitors passed before it.
fn monitor_until_failure(env: &[(&str, &str)], timeout_ms: u64) -> (String, usize) {
    let mut passed = 0;
    let mut reason = None;
    let ended = wait_for(Duration::from_secs(120), Duration::from_millis(500), || {
        let run = agent("monitor", env);
        eprintln!("monitor: exit {} in {:?}", run.code, run.elapsed);
        assert!(run.elapsed < Duration::from_millis(timeout_ms), "a monitor took {:?}: {}", run.elapsed, run.stderr);
        match run.code {
            0 => {
                assert!(run.stderr.contains("guest agent did not answer"), "a silent agent must warn: {}", run.stderr);
                passed += 1;
                false
            }
            1 => {
                reason = run.exit_reason();
                true
            }
            other => panic!("monitor exited {other}: {}", run.stderr),
        }
    });
    assert!(ended, "the monitor never failed on a silent agent");
    (reason.expect("a failed monitor gives an exit reason"), passed)
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_killed_agent_fails_level_ten_after_the_grace_and_level_zero_never() {
    ensure_libvirtd();
    let guest = started("vg-ga-kill", GuestAgentKind::Running);
    assert!(guest.wait_agent(BOOT), "qemu-ga never answered; console:\n{}", guest.guard.console_text());
    let base = env_for(&guest, "30000", &[("OCF_RESKEY_guest_agent_grace", "10")]);
    let level10 = monitor_env(&base, "10");
    let level0 = monitor_env(&base, "0");
    let healthy = agent("monitor", &level10);
    assert_eq!(healthy.code, 0, "level 10 with an answering agent: {}", healthy.stderr);
    assert_eq!(agent("monitor", &monitor_env(&base, "20")).code, 0, "level 20 with an answering agent");

    guest.control("agent-kill");
    let (reason, passed) = monitor_until_failure(&level10, 30_000);
    assert!(passed >= 1, "the first missed answer must only warn");
    assert!(reason.contains("guest agent silent for") && reason.contains("the guest OS is not responding"), "{reason}");
    assert!(reason.contains("(last answer ") && reason.contains(" UTC)"), "{reason}");
    let silent_secs: u64 = reason.split("silent for ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(silent_secs > 10, "failed before the grace ran out: {reason}");

    // Level 0 asks libvirt only: the "hung" guest runs as far as it can see.
    let plain = agent("monitor", &level0);
    assert_eq!(plain.code, 0, "level 0: {}", plain.stderr);
    assert!(!plain.stderr.contains("guest agent"), "level 0 must not ask the agent: {}", plain.stderr);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_frozen_agent_fails_after_the_grace_with_every_monitor_in_time_and_recovers() {
    ensure_libvirtd();
    let guest = started("vg-ga-stop", GuestAgentKind::Running);
    assert!(guest.wait_agent(BOOT), "qemu-ga never answered; console:\n{}", guest.guard.console_text());
    let base = env_for(&guest, "20000", &[("OCF_RESKEY_guest_agent_grace", "8")]);
    let level10 = monitor_env(&base, "10");
    assert_eq!(agent("monitor", &level10).code, 0);

    guest.control("agent-stop");
    let (reason, passed) = monitor_until_failure(&level10, 20_000);
    assert!(passed >= 1, "the first missed answer must only warn");
    assert!(reason.contains("guest agent silent for"), "{reason}");

    guest.control("agent-cont");
    let back = wait_for(Duration::from_secs(60), Duration::from_millis(500), || agent("monitor", &level10).code == 0);
    assert!(back, "the monitor did not pass again once the agent answered");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn start_waits_for_the_agent_and_fails_within_its_deadline_without_one() {
    ensure_libvirtd();
    let with_agent = agent_guest("vg-ga-wait", GuestAgentKind::Running, "");
    let env = env_for(&with_agent, "90000", &[("OCF_RESKEY_wait_for_guest_agent", "true")]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start with wait_for_guest_agent: {}", start.stderr);
    assert!(with_agent.agent_answers(), "start returned before the guest agent answered");

    let without = agent_guest("vg-ga-none", GuestAgentKind::NotInstalled, "");
    let env = env_for(&without, "25000", &[("OCF_RESKEY_wait_for_guest_agent", "true")]);
    let start = agent("start", &env);
    assert_eq!(start.code, 1, "start without an agent: {}", start.stderr);
    assert!(start.elapsed < Duration::from_secs(25), "start overran its timeout: {:?}", start.elapsed);
    let reason = start.exit_reason().unwrap_or_default();
    assert!(reason.contains("guest agent did not answer within"), "{reason}");

    // The same guest, running: its agent never answered since it started.
    let plain = env_for(&without, "30000", &[("OCF_RESKEY_guest_agent_grace", "0")]);
    let start = agent("start", &plain);
    assert_eq!(start.code, 0, "start without waiting: {}", start.stderr);
    let run = agent("monitor", &monitor_env(&plain, "10"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.exit_reason().unwrap_or_default().contains("never answered since"), "{}", run.stderr);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_missing_agent_channel_is_a_configuration_error_at_depth_ten() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-ga-nochan");
    let config = guest.xml.to_str().unwrap();
    let env = [("OCF_RESKEY_config", config), ("OCF_RESKEY_hypervisor", HOST_URI), ("OCF_CHECK_LEVEL", "10")];
    let run = agent("validate-all", &env);
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(run.exit_reason().unwrap_or_default().contains("name='org.qemu.guest_agent.0'"), "{}", run.stderr);
    assert_eq!(agent("validate-all", &env[..2]).code, 0, "level 0 needs no channel");
    let wait = [env[0], env[1], ("OCF_RESKEY_wait_for_guest_agent", "1")];
    assert_eq!(agent("validate-all", &wait).code, 6);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_kernel_panic_through_pvpanic_fails_the_monitor_as_crashed_panicked() {
    ensure_libvirtd();
    let guest = started("vg-ga-panic", GuestAgentKind::Running);
    assert!(guest.wait_agent(BOOT), "qemu-ga never answered; console:\n{}", guest.guard.console_text());
    guest.control("panic");
    let crashed = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        domstate(HOST_URI, &guest.guard.name).is_some_and(|(state, _)| state == "crashed")
    });
    assert!(crashed, "no crashed state after the panic: {:?}", domstate(HOST_URI, &guest.guard.name));
    let env = env_for(&guest, "30000", &[]);
    let run = agent("monitor", &monitor_env(&env, "0"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.exit_reason().unwrap_or_default().contains("crashed (panicked)"), "{}", run.stderr);
}

/// Starts a guest whose i6300esb watchdog does `action`, arms the watchdog
/// from inside the guest and never feeds it.
fn watchdog_fired(label: &str, action: &str) -> AgentGuest {
    let guest = agent_guest(label, GuestAgentKind::Running, &format!("<watchdog model='i6300esb' action='{action}'/>"));
    let env = env_for(&guest, "90000", &[]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    assert!(guest.wait_agent(BOOT), "qemu-ga never answered; console:\n{}", guest.guard.console_text());
    guest.control("watchdog-arm");
    guest
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_watchdog_that_pauses_the_guest_fails_the_monitor() {
    ensure_libvirtd();
    let guest = watchdog_fired("vg-ga-wdpause", "pause");
    let paused = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        domstate(HOST_URI, &guest.guard.name).is_some_and(|(state, reason)| state == "paused" && reason == "watchdog")
    });
    assert!(paused, "not paused by the watchdog: {:?}", domstate(HOST_URI, &guest.guard.name));
    let env = env_for(&guest, "30000", &[]);
    let run = agent("monitor", &monitor_env(&env, "0"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.exit_reason().unwrap_or_default().contains("paused (watchdog)"), "{}", run.stderr);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_watchdog_reset_counts_as_running_again() {
    ensure_libvirtd();
    let guest = watchdog_fired("vg-ga-wdreset", "reset");
    // The guest boots a second time inside the same QEMU.
    let rebooted = wait_for(Duration::from_secs(90), Duration::from_millis(200), || {
        guest.guard.console_text().matches(support::AGENT_UP_MARKER).count() >= 2
    });
    assert!(rebooted, "no second boot after the watchdog reset; console:\n{}", guest.guard.console_text());
    assert_eq!(domstate(HOST_URI, &guest.guard.name).map(|s| s.0).as_deref(), Some("running"));
    let env = env_for(&guest, "30000", &[]);
    let run = agent("monitor", &monitor_env(&env, "0"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(guest.wait_agent(BOOT), "the agent did not come back after the reset");
    assert_eq!(agent("monitor", &monitor_env(&env, "10")).code, 0);
}
