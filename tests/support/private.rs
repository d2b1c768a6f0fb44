//! Private hypervisors: a libvirtd of its own per test, in a mount namespace,
//! driven by tests/lab/private-libvirtd.sh.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use super::guest::{ioerror_guest_in_namespace, GuestGuard};
use super::run::{describe, run_bounded};
use super::virsh::{process_alive, qemu_pid_in};
use super::{lab_script, scratch_root};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const DIR_PREFIX: &str = "privhv-";

/// A libvirtd (with its virtlogd) in a mount namespace of its own, reachable
/// from the test at `uri`. Dropping it destroys its guests, ends every process
/// of its namespace and removes its directory.
#[derive(Debug)]
pub struct PrivateHypervisor {
    /// `qemu+unix:///system?socket=<dir>/libvirt-sock`
    pub uri: String,
    /// Holds its sockets, pid files, libvirt directories and `log/libvirtd.log`.
    pub dir: PathBuf,
}

impl PrivateHypervisor {
    /// Starts one; `tag` only makes its directory recognisable. Panics when it
    /// cannot (call `ensure_libvirtd()` first: it names a missing prerequisite).
    pub fn start(tag: &str) -> Self {
        Self::try_start(tag).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(tag: &str) -> Result<Self, String> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(stop_orphans);
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: the socket path must fit in sun_path (108 bytes).
        let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
        let dir = scratch_root().join(format!("{DIR_PREFIX}{}-{n}-{tag}", std::process::id()));
        let output = script("start", &dir);
        if !output.status.success() {
            let _ = script("stop", &dir);
            return Err(format!("private-libvirtd.sh start {}: {}", dir.display(), describe(&output)));
        }
        let uri = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(PrivateHypervisor { uri, dir })
    }

    /// SIGKILL to libvirtd alone: its guests keep running.
    pub fn kill_daemon(&self) {
        let output = script("kill-daemon", &self.dir);
        assert!(output.status.success(), "kill-daemon: {}", describe(&output));
    }

    /// Starts libvirtd again in the same namespace (stopping it first if it
    /// runs) and waits until it answers.
    pub fn restart_daemon(&self) {
        let output = script("restart-daemon", &self.dir);
        assert!(output.status.success(), "restart-daemon: {}", describe(&output));
    }

    /// The process that keeps the namespace alive (for `nsenter -t <pid> -m`).
    pub fn namespace_pid(&self) -> u32 {
        self.read_pid("holder.pid").expect("the namespace holder pid")
    }

    /// libvirtd's pid while it runs.
    pub fn libvirtd_pid(&self) -> Option<u32> {
        self.read_pid("libvirtd.pid").filter(|pid| process_alive(*pid))
    }

    /// The pid of the QEMU process of `name` on this hypervisor.
    pub fn qemu_pid(&self, name: &str) -> Option<u32> {
        qemu_pid_in(&self.dir.join("run-libvirt/qemu"), name)
    }

    /// An ioerror guest whose tiny filesystem is mounted inside this
    /// hypervisor's namespace (a mount made by the test after the namespace
    /// exists would not be seen there). Cleaned up on this URI too.
    pub fn ioerror_guest(&self, name: &str) -> GuestGuard {
        let mut guest = ioerror_guest_in_namespace(name, &scratch_root(), Some(self.namespace_pid()));
        guest.track(&self.uri);
        guest
    }

    /// The tail of its libvirtd log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("log/libvirtd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn read_pid(&self, file: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }
}

impl Drop for PrivateHypervisor {
    fn drop(&mut self) {
        let output = script("stop", &self.dir);
        if !output.status.success() {
            eprintln!("[support] stopping the private hypervisor in {} failed: {}", self.dir.display(), describe(&output));
        }
    }
}

fn script(action: &str, dir: &Path) -> std::process::Output {
    let mut command = Command::new("sh");
    command.arg(lab_script("private-libvirtd.sh")).arg(action).arg(dir);
    run_bounded(command, SCRIPT_TIMEOUT)
}

/// Stops private hypervisors left behind by test processes that died
/// without running their destructors.
fn stop_orphans() {
    let Ok(entries) = std::fs::read_dir(scratch_root()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else { continue };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|pid| !process_alive(pid)) {
            let _ = script("stop", &entry.path());
        }
    }
}
