//! Writing the domain config without ever truncating it: a temporary file in
//! the same directory, fsync, rename over the old one, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

use crate::hypervisor::Hypervisor;

use super::Vm;

pub fn atomic_write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.virtguard-{}", file_name.to_string_lossy(), std::process::id()));
    let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the domain's inactive definition to `config` when it differs from
/// what is there. Returns whether the file changed.
pub fn save_if_changed(hv: &dyn Hypervisor, name: &str, config: &Path) -> anyhow::Result<bool> {
    let xml = hv.inactive_xml(name).with_context(|| format!("cannot read the definition of {name}"))?;
    if fs::read_to_string(config).is_ok_and(|current| current == xml) {
        return Ok(false);
    }
    atomic_write(config, xml.as_bytes())
        .with_context(|| format!("cannot save the definition of {name} to {}", config.display()))?;
    tracing::info!("saved the definition of {name} to {}", config.display());
    Ok(true)
}

/// `save_config_on_stop` (or `sync_config_on_stop`): writes the definition
/// back when it changed. A failure is logged; it never fails the action.
pub fn save_if_asked(vm: &Vm) {
    if !(vm.params.save_config_on_stop || vm.params.sync_config_on_stop) {
        return;
    }
    // A domain known only by name (config gone, or naming another domain
    // now) is not what the config path holds: never write it there.
    if vm.config_xml.is_empty() {
        return;
    }
    if let Ok(hv) = &vm.hv {
        if let Err(e) = save_if_changed(*hv, vm.name(), &vm.config_path) {
            tracing::warn!("{e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_keeps_mode() {
        let dir = std::env::temp_dir().join(format!("vg-cfg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vm.xml");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = std::env::temp_dir().join(format!("vg-cfg-fail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vm.xml");
        fs::write(&path, "old").unwrap();
        // A directory where the temporary file must go makes the write fail.
        let blocker = dir.join(format!(".vm.xml.virtguard-{}", std::process::id()));
        fs::create_dir(&blocker).unwrap();
        assert!(atomic_write(&path, b"new").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "only the old file and the blocker");
        fs::remove_dir_all(&dir).unwrap();
    }
}
