//! Issue 14, the built agent against real guests: a guest whose config file
//! is missing (shared storage not mounted), replaced, or never seen on this
//! node is never reported "not running" while it runs, and stop finds it.

mod support;

use std::time::Duration;

use support::{
    agent, domstate, ensure_libvirtd, firmware_guest, migrate_live, process_alive, rsctmp_for_this_test, scratch_dir,
    virsh, virsh_ok, wait_for, ConfigAway, GuestGuard, PrivateHypervisor, HOST_URI,
};
use virtguard::hypervisor::owner_tag;

fn env_for<'a>(guest: &'a GuestGuard, uri: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OCF_RESKEY_config", guest.xml.to_str().unwrap()),
        ("OCF_RESKEY_hypervisor", uri),
        ("OCF_RESKEY_CRM_meta_timeout", "20000"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
    ];
    env.extend_from_slice(extra);
    env
}

const RECURRING: (&str, &str) = ("OCF_RESKEY_CRM_meta_interval", "10000");

fn with<'a>(env: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    env.iter().chain(extra).copied().collect()
}

/// The resource the guest's owner tag names, as libvirt reports it.
fn owner_tag_of(uri: &str, name: &str) -> Option<String> {
    let out = virsh(uri, &["metadata", name, "--uri", owner_tag::NAMESPACE]);
    out.status.success().then(|| owner_tag::owner_of_element(&String::from_utf8_lossy(&out.stdout))).flatten()
}

/// A fresh HA_RSCTMP: a node (or boot) that remembers nothing.
fn empty_state_dir(label: &str) -> String {
    let dir = rsctmp_for_this_test().join(label);
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}

fn running(uri: &str, guest: &GuestGuard) -> bool {
    domstate(uri, &guest.name).is_some_and(|(state, _)| state == "running")
}

fn leak<T: ?Sized>(value: Box<T>) -> &'static T {
    Box::leak(value)
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn config_missing_probe_and_monitor_report_the_running_guest_and_stop_stops_it() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-own-gone");
    let env = env_for(&guest, HOST_URI, &[]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    assert_eq!(owner_tag_of(HOST_URI, &guest.name).as_deref(), Some(guest.name.as_str()), "start writes the owner tag");

    let away = ConfigAway::new(&guest.xml);
    let expected = format!("{} runs here but its config {} is missing", guest.name, guest.xml.display());
    let probe = agent("monitor", &env);
    assert_eq!((probe.code, probe.exit_reason()), (1, Some(expected.clone())), "probe: {}", probe.stderr);
    let mut recurring = env.clone();
    recurring.push(RECURRING);
    let monitor = agent("monitor", &recurring);
    assert_eq!((monitor.code, monitor.exit_reason()), (1, Some(expected)), "monitor: {}", monitor.stderr);
    assert!(running(HOST_URI, &guest), "nothing may stop the guest but stop");

    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
    assert_eq!(domstate(HOST_URI, &guest.name), None, "stop found it by the remembered name");
    let after = agent("monitor", &env);
    assert_eq!(after.code, 7, "stopped, config still missing: a probe says not running: {}", after.stderr);
    drop(away);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_guest_started_by_the_classic_agent_is_adopted_and_later_found_by_its_tag() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-own-adopt");
    // What the classic agent does: a transient domain from the config, no tag.
    virsh_ok(HOST_URI, &["create", guest.xml.to_str().unwrap()]);
    assert_eq!(owner_tag_of(HOST_URI, &guest.name), None);

    let mut env = env_for(&guest, HOST_URI, &[]);
    env.push(RECURRING);
    let monitor = agent("monitor", &env);
    assert_eq!(monitor.code, 0, "{}", monitor.stderr);
    assert_eq!(owner_tag_of(HOST_URI, &guest.name).as_deref(), Some(guest.name.as_str()), "the first monitor tags it");
    let memory = rsctmp_for_this_test().join(format!("virtguard-{}.domain", guest.name));
    assert_eq!(std::fs::read_to_string(&memory).unwrap().trim(), guest.name, "and remembers it");

    // Config gone and nothing remembered (another boot's memory, a renamed
    // state file): the tag alone identifies the guest.
    let _away = ConfigAway::new(&guest.xml);
    let no_memory = leak(empty_state_dir("probe").into_boxed_str());
    let probe = agent("monitor", &with(&env_for(&guest, HOST_URI, &[]), &[("HA_RSCTMP", no_memory)]));
    assert_eq!(probe.code, 1, "probe: {}", probe.stderr);
    assert!(probe.exit_reason().unwrap_or_default().contains("runs here but its config"), "{}", probe.stderr);

    let no_memory = leak(empty_state_dir("stop").into_boxed_str());
    let stop = agent("stop", &with(&env_for(&guest, HOST_URI, &[]), &[("HA_RSCTMP", no_memory)]));
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
    assert!(stop.stderr.contains("owner tag"), "{}", stop.stderr);
    assert_eq!(domstate(HOST_URI, &guest.name), None, "stop found it by its tag");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_node_that_never_ran_it_still_answers_not_running() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-own-never");
    let _away = ConfigAway::new(&guest.xml);
    let env = env_for(&guest, HOST_URI, &[]);
    let probe = agent("monitor", &env);
    assert_eq!(probe.code, 7, "probe without config, memory or tagged guest: {}", probe.stderr);
    let mut recurring = env.clone();
    recurring.push(RECURRING);
    assert_eq!(agent("monitor", &recurring).code, 1, "a recurring monitor reports the invalid environment");
    assert_eq!(agent("stop", &env).code, 0);
    assert_eq!(agent("start", &env).code, 5, "start: not installed here");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_state_directory_that_cannot_be_written_aborts_the_start_before_anything_runs() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-own-full");
    // A directory below a regular file cannot be created: like a full /run.
    let blocker = scratch_dir(&format!("{}-state", guest.name)).join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let state = blocker.join("rsctmp");
    let env = with(&env_for(&guest, HOST_URI, &[]), &[("HA_RSCTMP", leak(state.to_string_lossy().into_owned().into_boxed_str()))]);
    let start = agent("start", &env);
    assert_eq!(start.code, 1, "{}", start.stderr);
    assert!(start.exit_reason().unwrap_or_default().starts_with(&format!("cannot remember {}", guest.name)), "{}", start.stderr);
    assert_eq!(domstate(HOST_URI, &guest.name), None, "no guest may run that the agent could lose");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_replaced_config_is_reported_with_both_names_and_stop_stops_the_old_guest() {
    ensure_libvirtd();
    let old = firmware_guest("vg-own-old");
    let new = firmware_guest("vg-own-new");
    let env = env_for(&old, HOST_URI, &[]);
    assert_eq!(agent("start", &env).code, 0);
    // The file at the configured path now describes another domain.
    std::fs::copy(&new.xml, &old.xml).unwrap();

    let mut recurring = env.clone();
    recurring.push(RECURRING);
    let monitor = agent("monitor", &recurring);
    let expected = format!("config {} now names {}, but this resource runs {} here; stop {} first", old.xml.display(), new.name, old.name, old.name);
    assert_eq!((monitor.code, monitor.exit_reason()), (1, Some(expected)), "{}", monitor.stderr);
    assert_eq!(agent("monitor", &env).code, 1, "the probe too");
    let start = agent("start", &env);
    assert_eq!(start.code, 1, "{}", start.stderr);
    assert_eq!(domstate(HOST_URI, &new.name), None, "the new name is never started next to the old guest");

    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(domstate(HOST_URI, &old.name), None, "stop stopped the remembered guest");
    assert_eq!(agent("monitor", &recurring).code, 7);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_guest_running_under_another_resource_is_not_started_again() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-own-two");
    let first = env_for(&guest, HOST_URI, &[]);
    assert_eq!(agent("start", &first).code, 0);
    let second = with(&first, &[("OCF_RESOURCE_INSTANCE", "vg-own-second-resource")]);
    let start = agent("start", &second);
    assert_eq!(start.code, 6, "{}", start.stderr);
    assert_eq!(
        start.exit_reason(),
        Some(format!("{} already runs here under resource {}; resource vg-own-second-resource cannot manage it too", guest.name, guest.name))
    );
    assert!(running(HOST_URI, &guest));
    assert_eq!(owner_tag_of(HOST_URI, &guest.name).as_deref(), Some(guest.name.as_str()));
    assert_eq!(agent("stop", &first).code, 0);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn migrate_from_without_config_fails_so_that_stop_stops_the_arrived_guest() {
    ensure_libvirtd();
    let target = PrivateHypervisor::start("ownmig");
    let mut guest = firmware_guest("vg-own-mig");
    guest.track(&target.uri);
    let source_env = env_for(&guest, HOST_URI, &[]);
    assert_eq!(agent("start", &source_env).code, 0);
    let moved = migrate_live(HOST_URI, &target.uri, &guest.name, &[]);
    assert!(moved.status.success(), "virsh migrate: {}", String::from_utf8_lossy(&moved.stderr));
    assert_eq!(owner_tag_of(&target.uri, &guest.name).as_deref(), Some(guest.name.as_str()), "the tag travelled");

    // The target node has no config and never saw the guest.
    let missing = scratch_dir(&format!("{}-target", guest.name)).join("not-mounted.xml");
    let missing = leak(missing.to_string_lossy().into_owned().into_boxed_str());
    let target_state = leak(empty_state_dir("target").into_boxed_str());
    let target_env: Vec<(&str, &str)> = vec![
        ("OCF_RESKEY_config", missing),
        ("OCF_RESKEY_hypervisor", target.uri.as_str()),
        ("OCF_RESKEY_CRM_meta_timeout", "20000"),
        ("OCF_RESKEY_CRM_meta_migrate_source", "node1"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
        ("HA_RSCTMP", target_state),
    ];
    let probe = agent("monitor", &target_env);
    assert_eq!(probe.code, 1, "a probe on the target finds the arrived guest by its tag: {}", probe.stderr);
    std::fs::remove_dir_all(target_state).unwrap();
    let migrate_from = agent("migrate_from", &target_env);
    assert_eq!(migrate_from.code, 1, "{}", migrate_from.stderr);
    assert_eq!(
        migrate_from.exit_reason(),
        Some(format!("{} arrived from node1 but its config {missing} is missing here; it must be stopped here", guest.name))
    );
    let stop = agent("stop", &target_env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(domstate(&target.uri, &guest.name), None, "never left running on the target");
    assert_eq!(domstate(HOST_URI, &guest.name), None);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn libvirtd_down_and_config_missing_the_emulator_is_found_by_the_remembered_name() {
    ensure_libvirtd();
    let hv = PrivateHypervisor::start("ownproc");
    let mut guest = firmware_guest("vg-own-proc");
    guest.track(&hv.uri);
    let env = env_for(&guest, &hv.uri, &[]);
    assert_eq!(agent("start", &env).code, 0);
    let qemu = hv.qemu_pid(&guest.name).expect("qemu pid");
    hv.kill_daemon();
    let _away = ConfigAway::new(&guest.xml);

    let probe = agent("monitor", &env);
    assert_eq!(probe.code, 1, "{}", probe.stderr);
    assert_eq!(probe.exit_reason(), Some(format!("{} runs here but its config {} is missing", guest.name, guest.xml.display())));
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(wait_for(Duration::from_secs(5), Duration::from_millis(50), || !process_alive(qemu)), "qemu {qemu} survived the stop");
    assert_eq!(agent("monitor", &env).code, 7);
    hv.restart_daemon();
}
