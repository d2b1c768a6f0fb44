//! VirtualDomain with the DRBD gate, against real guests, with the DRBD state
//! replayed by the fake drbdsetup (no DRBD kernel module exists here).

mod support;

use support::{agent, agent_wrapped, domstate, drbd_node, ensure_libvirtd, firmware_guest, GuestGuard, HOST_URI};

const FAKE_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/drbd/bin");
const PATH_WITH_FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/drbd/bin:/usr/sbin:/usr/bin:/sbin:/bin");

fn env_for<'a>(guest: &'a GuestGuard, fixture: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    assert!(std::path::Path::new(FAKE_BIN).join("drbdsetup").exists());
    let mut env = vec![
        ("OCF_RESKEY_config", guest.xml.to_str().unwrap()),
        ("OCF_RESKEY_hypervisor", HOST_URI),
        ("OCF_RESKEY_CRM_meta_timeout", "20000"),
        ("OCF_RESKEY_force_stop", "true"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
        ("PATH", PATH_WITH_FAKE),
        ("VIRTGUARD_FAKE_DRBD_FIXTURE", fixture),
    ];
    env.extend_from_slice(extra);
    env
}

/// A guest whose disk is a DRBD volume, found through its by-res path.
fn guest_on_drbd(label: &str) -> GuestGuard {
    let guest = firmware_guest(label);
    let xml = std::fs::read_to_string(&guest.xml).unwrap().replace(
        "<devices>",
        "<devices>\n<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/drbd/by-res/r0/0'/><target dev='vda' bus='virtio'/></disk>",
    );
    std::fs::write(&guest.xml, xml).unwrap();
    guest
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn start_on_stale_data_is_refused_before_anything_runs() {
    ensure_libvirtd();
    for (fixture, state) in [("outdated", "Outdated"), ("sync-target", "Inconsistent"), ("peer-primary", "Primary")] {
        let guest = guest_on_drbd("vg-drbd-no");
        let start = agent("start", &env_for(&guest, fixture, &[]));
        assert_eq!(start.code, 1, "{fixture}: a refusal must let Pacemaker try another node: {}", start.stderr);
        let reason = start.exit_reason().unwrap_or_default();
        assert!(reason.contains("r0") && reason.contains(state), "{fixture}: exit reason '{reason}'");
        assert_eq!(domstate(HOST_URI, &guest.name), None, "{fixture}: nothing may be started");
    }
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn unreadable_drbd_state_never_allows_a_start() {
    ensure_libvirtd();
    for fixture in ["garbage", "truncated", "empty"] {
        let guest = guest_on_drbd("vg-drbd-bad");
        let start = agent("start", &env_for(&guest, fixture, &[]));
        assert_ne!(start.code, 0, "{fixture}: {}", start.stderr);
        assert!(start.exit_reason().unwrap_or_default().contains("DRBD"), "{fixture}: {}", start.stderr);
        assert_eq!(domstate(HOST_URI, &guest.name), None);
    }
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn start_on_up_to_date_data_runs_and_monitor_watches_the_volume() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-drbd-ok");
    // Named explicitly (the guest's own disk is not a DRBD device here).
    let extra = [("OCF_RESKEY_drbd_resources", "r0"), ("OCF_RESKEY_CRM_meta_interval", "10000")];
    let start = agent("start", &env_for(&guest, "healthy-2node", &extra));
    assert_eq!(start.code, 0, "{}", start.stderr);
    assert_eq!(domstate(HOST_URI, &guest.name).map(|s| s.0).as_deref(), Some("running"));

    assert_eq!(agent("monitor", &env_for(&guest, "running-primary", &extra)).code, 0);
    let detached = agent("monitor", &env_for(&guest, "running-detached", &extra));
    assert_eq!(detached.code, 190, "lost local disk, peer UpToDate: degraded: {}", detached.stderr);
    let no_quorum = agent("monitor", &env_for(&guest, "no-quorum", &extra));
    assert_eq!(no_quorum.code, 1, "lost quorum: the guest cannot write: {}", no_quorum.stderr);
    assert!(no_quorum.exit_reason().unwrap_or_default().contains("r0"), "{}", no_quorum.stderr);
    assert_eq!(agent("stop", &env_for(&guest, "running-primary", &extra)).code, 0);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn drbd_disks_without_drbd_userland_is_an_installation_error() {
    ensure_libvirtd();
    let guest = guest_on_drbd("vg-drbd-none");
    let mut env = env_for(&guest, "outdated", &[]);
    // An empty bin directory first on PATH and the real tools out of reach.
    let empty = guest.dir.join("emptybin");
    std::fs::create_dir_all(&empty).unwrap();
    let path = format!("{}:/bin", empty.display());
    env.retain(|(k, _)| *k != "PATH");
    env.push(("PATH", &path));
    // And no /proc/drbd on the node.
    let node = drbd_node(None);
    let start = agent_wrapped(&node.iter().map(String::as_str).collect::<Vec<_>>(), "start", &env);
    assert_eq!(start.code, 5, "{}", start.stderr);
    assert_eq!(domstate(HOST_URI, &guest.name), None);
}
