//! Shutdown ordering on systemd hosts: the cluster's resources must stop
//! before the libvirt daemons do, whether the host runs the monolithic
//! libvirtd or the modular virtqemud.
//!
//! start and migrate_from write a drop-in that orders
//! `resource-agents-deps.target` (and so Pacemaker, which is ordered after
//! it) after both daemon layouts' units and after
//! `virt-guest-shutdown.target`, and they start that target. libvirt orders
//! every guest's machine scope before `virt-guest-shutdown.target`; but
//! systemd applies an ordering only between units that get a stop job, and
//! an inactive target gets none. Without the start, `systemctl poweroff`
//! stops the guests' scopes (SIGTERM to QEMU) while Pacemaker is still
//! migrating them: the systemd lab (`tests/cluster_systemd.rs`) showed all
//! three guests of a node killed that way. migrate_from does the same as
//! start because a node that only received guests (one just rebooted: the
//! drop-in lives in `/run`) needs the same protection.

use std::path::Path;

use crate::exec;
use crate::ocf::Deadline;

pub const RUNTIME_UNIT_DIR: &str = "/run/systemd/system";
const DROP_IN_DIR: &str = "resource-agents-deps.target.d";
const DROP_IN_FILE: &str = "99-virtguard-VirtualDomain.conf";
/// libvirt orders every guest's machine scope before this target; the drop-in
/// makes resource-agents-deps.target (and so Pacemaker) wait for it.
const GUEST_SHUTDOWN_TARGET: &str = "virt-guest-shutdown.target";

pub fn drop_in_text() -> String {
    "# Written by virtguard: stop cluster-managed guests before libvirt goes away.\n\
     [Unit]\n\
     After=libvirtd.service virtqemud.service virtlogd.service virtlockd.service virtproxyd.service\n\
     Wants=virt-guest-shutdown.target\n"
        .to_owned()
}

/// Writes the drop-in under `unit_dir` when systemd runs (that directory
/// exists) and it is missing or different; true when systemd must reload.
pub fn write_drop_in(unit_dir: &Path) -> std::io::Result<bool> {
    if !unit_dir.is_dir() {
        return Ok(false);
    }
    let dir = unit_dir.join(DROP_IN_DIR);
    let path = dir.join(DROP_IN_FILE);
    let text = drop_in_text();
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(false);
    }
    std::fs::create_dir_all(&dir)?;
    crate::atomic_write::atomic_write(&path, text.as_bytes())?;
    Ok(true)
}

/// Called before a guest starts or arrives here: from then on a shutdown of
/// this host stops Pacemaker (which migrates the guest away) before systemd
/// stops the guest's machine scope or the libvirt daemons.
pub fn ensure_ordering(deadline: &Deadline) {
    if !Path::new(RUNTIME_UNIT_DIR).is_dir() {
        return;
    }
    match write_drop_in(Path::new(RUNTIME_UNIT_DIR)) {
        Ok(true) => {
            if let Err(e) = exec::run("systemctl", &["daemon-reload"], deadline) {
                tracing::warn!("systemd ordering written but not loaded: {e}");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot write the systemd ordering drop-in: {e}"),
    }
    // An ordering binds only units that get a stop job at shutdown, and an
    // inactive target gets none: without this, systemd stops the machine
    // scopes (SIGTERM to QEMU) while Pacemaker is still migrating the guests
    // away (seen in the systemd lab, tests/cluster_systemd.rs). The drop-in's
    // Wants= cannot start it: resource-agents-deps.target started at boot,
    // long before the drop-in (in /run) was written.
    if let Err(e) = exec::run("systemctl", &["start", GUEST_SHUTDOWN_TARGET], deadline) {
        tracing::warn!("cannot start {GUEST_SHUTDOWN_TARGET}; a host shutdown may stop guests before Pacemaker moves them: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_after_both_daemon_layouts() {
        let text = drop_in_text();
        assert!(text.contains("libvirtd.service") && text.contains("virtqemud.service"));
    }

    #[test]
    fn writes_only_when_systemd_runs_and_only_once() {
        let root = std::env::temp_dir().join(format!("vg-systemd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert!(!write_drop_in(&root).unwrap(), "no systemd: nothing written");
        assert!(!root.exists());
        std::fs::create_dir_all(&root).unwrap();
        assert!(write_drop_in(&root).unwrap());
        assert!(!write_drop_in(&root).unwrap(), "unchanged: no reload");
        let written = std::fs::read_to_string(root.join(DROP_IN_DIR).join(DROP_IN_FILE)).unwrap();
        assert_eq!(written, drop_in_text());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
