//! Drop guards that undo a test's fault even when the test fails half way.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Moves a config out of the way, as an unmounted share would; back on drop.
pub struct ConfigAway {
    path: PathBuf,
    away: PathBuf,
}

impl ConfigAway {
    pub fn new(path: &Path) -> ConfigAway {
        let away = path.with_extension("away");
        std::fs::rename(path, &away).unwrap();
        ConfigAway { path: path.to_owned(), away }
    }
}

impl Drop for ConfigAway {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.away, &self.path);
    }
}

/// Resumes a stopped process (pid) on drop, so that a failing test leaves no
/// frozen daemon.
pub struct Frozen(pub i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}
