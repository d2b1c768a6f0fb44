//! Small per-resource facts remembered across calls under `HA_RSCTMP`
//! (cleared at boot, which is right: a reboot stops every guest): the domain
//! this resource runs here, its emulator, whether its owner tag was seen,
//! the utilization last published. Each fact has a key; the key, not a
//! string spelt at every caller, names the file.

use std::io;
use std::path::{Path, PathBuf};

use crate::atomic_write::atomic_write;

/// What is remembered; one file per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey {
    /// The domain this resource started, received or found running here.
    /// Stop, monitor and probe use it when the config is gone or replaced.
    Domain,
    /// That domain's emulator binary, to find its process without libvirt.
    Emulator,
    /// The domain whose owner tag (see `ownership`) was confirmed on this
    /// node: the steady-state monitor then skips the libvirt call.
    OwnerTagged,
    /// A utilization attribute (`cpu`, `host_memory`, `hv_memory`) as last
    /// published by this node.
    Utilization(&'static str),
    /// When the guest agent last answered (Unix ms; see `guest_health`).
    AgentAnswered,
    /// When the current silence of the guest agent began (Unix ms).
    AgentSilentSince,
}

impl StateKey {
    fn file_suffix(self) -> String {
        match self {
            StateKey::Domain => "domain".into(),
            StateKey::Emulator => "emulator".into(),
            StateKey::OwnerTagged => "owner-tagged".into(),
            StateKey::Utilization(attribute) => format!("utilization-{attribute}"),
            StateKey::AgentAnswered => "agent-answered".into(),
            StateKey::AgentSilentSince => "agent-silent-since".into(),
        }
    }
}

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

    pub fn path(&self, key: StateKey) -> PathBuf {
        self.dir.join(format!("virtguard-{}.{}", self.instance, key.file_suffix()))
    }

    pub fn read(&self, key: StateKey) -> Option<String> {
        std::fs::read_to_string(self.path(key)).ok().map(|s| s.trim_end().to_owned()).filter(|s| !s.is_empty())
    }

    /// Writes only when the value differs, so that the steady state costs a read.
    pub fn write(&self, key: StateKey, value: &str) -> io::Result<()> {
        if self.read(key).as_deref() == Some(value) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        atomic_write(&self.path(key), format!("{value}\n").as_bytes())
    }

    pub fn remove(&self, key: StateKey) {
        let _ = std::fs::remove_file(self.path(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_distinct_files_and_keep_the_historic_names() {
        let files = StateFiles::new(Path::new("/run/resource-agents"), "vm1:0");
        assert_eq!(files.path(StateKey::Domain), PathBuf::from("/run/resource-agents/virtguard-vm1_0.domain"));
        assert_eq!(files.path(StateKey::Emulator), PathBuf::from("/run/resource-agents/virtguard-vm1_0.emulator"));
        assert_eq!(
            files.path(StateKey::Utilization("cpu")),
            PathBuf::from("/run/resource-agents/virtguard-vm1_0.utilization-cpu")
        );
        let all = [StateKey::Domain, StateKey::Emulator, StateKey::OwnerTagged, StateKey::Utilization("cpu")];
        let mut paths: Vec<PathBuf> = all.iter().map(|k| files.path(*k)).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), all.len());
    }
}
