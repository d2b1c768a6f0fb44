//! The processes of this node, as far as the agent looks at them: only to
//! find and stop a domain's emulator when libvirtd cannot. Behind a trait so
//! that the in-process tests can put an emulator beside a dead libvirtd
//! (`FakeProcesses`) without starting one; the agent reads /proc.

use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::deadline::Deadline;

/// The two signals a stop sends: the polite one, then the one that cannot
/// be ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// What the agent reads of the node's processes, and the one thing it does
/// to them.
pub trait Processes: Send + Sync {
    /// Every process id there is now.
    fn pids(&self) -> Vec<i32>;
    /// The NUL-separated command line; None once the process is gone.
    fn cmdline(&self, pid: i32) -> Option<Vec<u8>>;
    /// The program image, when it can be read.
    fn exe(&self, pid: i32) -> Option<PathBuf>;
    /// Whether the process still runs (a zombie does not).
    fn alive(&self, pid: i32) -> bool;
    /// Err when the process cannot be signalled (gone, or not ours to signal).
    fn signal(&self, pid: i32, signal: Signal) -> Result<(), String>;
    /// The deadline to wait on for a signalled process to exit. A real
    /// process exits in real time, whatever clock the caller keeps; the fake
    /// keeps the caller's.
    fn exit_deadline(&self, deadline: &Deadline) -> Deadline;
}

/// The real process table: /proc, and kill(2).
pub struct ProcFs {
    root: PathBuf,
}

impl ProcFs {
    pub fn new() -> ProcFs {
        ProcFs::at("/proc")
    }

    /// A process table laid out like /proc under `root` (tests write one).
    pub fn at(root: impl AsRef<Path>) -> ProcFs {
        ProcFs { root: root.as_ref().to_path_buf() }
    }
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new()
    }
}

impl Processes for ProcFs {
    fn pids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        entries.flatten().filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok()).collect()
    }

    fn cmdline(&self, pid: i32) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(pid.to_string()).join("cmdline")).ok()
    }

    fn exe(&self, pid: i32) -> Option<PathBuf> {
        std::fs::read_link(self.root.join(pid.to_string()).join("exe")).ok()
    }

    fn alive(&self, pid: i32) -> bool {
        // A zombie still answers signal 0; look at its state instead.
        match std::fs::read_to_string(self.root.join(pid.to_string()).join("stat")) {
            Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    fn signal(&self, pid: i32, signal: Signal) -> Result<(), String> {
        let signal = match signal {
            Signal::Term => nix::sys::signal::Signal::SIGTERM,
            Signal::Kill => nix::sys::signal::Signal::SIGKILL,
        };
        kill(Pid::from_raw(pid), signal).map_err(|e| e.to_string())
    }

    fn exit_deadline(&self, deadline: &Deadline) -> Deadline {
        deadline.in_real_time()
    }
}
