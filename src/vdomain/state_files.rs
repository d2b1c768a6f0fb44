//! Small per-resource facts remembered across calls under `HA_RSCTMP`
//! (cleared at boot): the domain name, the emulator, published utilization.

use std::io;
use std::path::{Path, PathBuf};

use super::config_file::atomic_write;

pub struct StateFiles {
    dir: PathBuf,
    instance: String,
}

impl StateFiles {
    pub fn new(dir: &Path, instance: &str) -> StateFiles {
        // Clone instances are named vm1:0; keep the name usable as a file name.
        let instance = instance.replace(['/', ':'], "_");
        StateFiles { dir: dir.to_path_buf(), instance }
    }

    pub fn path(&self, what: &str) -> PathBuf {
        self.dir.join(format!("virtguard-{}.{what}", self.instance))
    }

    pub fn read(&self, what: &str) -> Option<String> {
        std::fs::read_to_string(self.path(what)).ok().map(|s| s.trim_end().to_owned())
    }

    /// Writes only when the value differs, so that the steady state costs a read.
    pub fn write(&self, what: &str, value: &str) -> io::Result<()> {
        if self.read(what).as_deref() == Some(value) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        atomic_write(&self.path(what), format!("{value}\n").as_bytes())
    }

    pub fn remove(&self, what: &str) {
        let _ = std::fs::remove_file(self.path(what));
    }
}
