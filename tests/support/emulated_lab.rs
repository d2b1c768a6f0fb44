//! The lifecycle of a lab of emulated nodes (tests/lab/drbd-nodes.sh,
//! tests/lab/drbd-cluster.sh), seen from the test: each lab lives in a
//! directory named after the test process, and its script's `down` stops it.

use std::path::Path;
use std::process::Command;

use super::command_port::CommandPort;

/// Stops the lab in `dir` with `script down`. The directory is kept after a
/// panic, for what the nodes logged.
pub fn take_down(script: &Path, dir: &Path, ports: &[CommandPort]) {
    for port in ports {
        port.reconnect();
    }
    let stopped = Command::new("sh").arg(script).arg("down").arg(dir).status();
    if !matches!(stopped, Ok(s) if s.success()) {
        eprintln!("{} down {} failed: {stopped:?}", script.display(), dir.display());
    }
    if !std::thread::panicking() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The emulators run daemonized, so a test process killed outright (no
/// unwinding, no Drop) leaves them behind: stop the labs under `root` named
/// `<prefix><pid>` whose test process is gone.
pub fn sweep_stale(root: &Path, prefix: &str, script: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = Command::new("sh").arg(script).arg("down").arg(entry.path()).status();
        let _ = std::fs::remove_dir_all(entry.path());
    }
}
