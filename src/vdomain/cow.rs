//! Copy-on-write mode (backingfile/stateless/copyindirs): the domain's disk
//! is a qcow2 overlay next to the config file, on a read-only backing file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exec;
use crate::ocf::{Deadline, OcfError};
use crate::vdomain::Params;

/// `/etc/libvirt/qemu/vm1.xml` -> `/etc/libvirt/qemu/vm1.qcow2`. (The classic
/// agent cut the whole path at its first dot, which broke on dotted directories.)
pub fn overlay_path(config: &Path) -> PathBuf {
    config.with_extension("qcow2")
}

#[derive(Deserialize)]
struct ImageInfo {
    format: String,
}

fn image_format(backing: &str, deadline: &Deadline) -> Result<String, OcfError> {
    let out = exec::run("qemu-img", &["info", "--output=json", "--force-share", backing], deadline)
        .map_err(|e| OcfError::generic(format!("cannot inspect backingfile: {e}")))?;
    let info: ImageInfo = serde_json::from_str(&out.stdout)
        .map_err(|e| OcfError::generic(format!("qemu-img info {backing}: unexpected output: {e}")))?;
    Ok(info.format)
}

/// Creates the overlay when stateless mode asks for a fresh one, or when
/// there is none yet. Returns whether it was (re)created.
pub fn prepare_overlay(params: &Params, config: &Path, deadline: &Deadline) -> Result<bool, OcfError> {
    let Some(backing) = &params.backingfile else { return Ok(false) };
    let overlay = overlay_path(config);
    let reusable = std::fs::metadata(&overlay).is_ok_and(|m| m.len() > 0);
    if reusable && !params.stateless {
        return Ok(false);
    }
    let format = image_format(backing, deadline)?;
    let overlay_str = overlay.to_string_lossy();
    let tmp = format!("{overlay_str}.virtguard-new");
    let _ = std::fs::remove_file(&tmp);
    exec::run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", backing, "-F", &format, &tmp], deadline)
        .map_err(|e| OcfError::generic(format!("cannot create the overlay {overlay_str}: {e}")))?;
    std::fs::rename(&tmp, &overlay)
        .map_err(|e| OcfError::generic(format!("cannot put the overlay {overlay_str} in place: {e}")))?;
    tracing::info!("created overlay {overlay_str} on {backing}");
    Ok(true)
}

/// Copies `copyindirs` into the freshly created overlay of the defined,
/// not yet running domain.
pub fn copy_in(params: &Params, name: &str, uri: &str, deadline: &Deadline) -> Result<(), OcfError> {
    let Some(dirs) = &params.copyindirs else { return Ok(()) };
    let mut args: Vec<&str> = vec!["-c", uri, "-d", name];
    args.extend(dirs.split_whitespace());
    args.push("/");
    exec::run("virt-copy-in", &args, deadline).map(drop).map_err(|e| OcfError::generic(format!("copyindirs: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_sits_next_to_the_config() {
        assert_eq!(overlay_path(Path::new("/etc/libvirt/qemu/vm1.xml")), PathBuf::from("/etc/libvirt/qemu/vm1.qcow2"));
        assert_eq!(overlay_path(Path::new("/srv/v1.2/vm.a.xml")), PathBuf::from("/srv/v1.2/vm.a.qcow2"));
    }
}
