//! Which DRBD resources back a domain: from its block devices, unless the
//! operator names them (`drbd_resources`).

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use super::model::DrbdState;
use super::proc84::minor_of_device;

const DRBD_DEV_PREFIX: &str = "/dev/drbd";

/// The explicit list when it has any names, else `None`.
pub fn explicit_names(explicit: Option<&str>) -> Option<Vec<String>> {
    let names: Vec<String> = explicit?.split_whitespace().map(str::to_owned).collect();
    (!names.is_empty()).then_some(names)
}

/// True for paths that DRBD provides; cheap, and never runs a program.
pub fn looks_like_drbd(path: &str) -> bool {
    path.starts_with(DRBD_DEV_PREFIX)
}

/// Resource names for the domain's block devices, or `explicit` (space
/// separated) when given. A DRBD path that cannot be tied to a resource is
/// an error: the gate must never wave through a disk it could not check.
pub fn resources_for_disks(block_devices: &[&str], explicit: Option<&str>, model: &DrbdState) -> anyhow::Result<Vec<String>> {
    if let Some(names) = explicit_names(explicit) {
        return Ok(dedup(names));
    }
    let mut names = Vec::new();
    for device in block_devices.iter().copied().filter(|d| looks_like_drbd(d)) {
        names.push(resource_of(device, model)?);
    }
    Ok(dedup(names))
}

fn resource_of(device: &str, model: &DrbdState) -> anyhow::Result<String> {
    if let Some(minor) = minor_of_device(device).filter(|_| Path::new(device).parent() == Some(Path::new("/dev"))) {
        return by_minor(device, minor, model);
    }
    if let Some(rest) = device.strip_prefix("/dev/drbd/by-res/") {
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let resource = parts.next().with_context(|| format!("{device}: no resource name after by-res/"))?;
        let volume = parts.next();
        if parts.next().is_some() {
            bail!("{device}: not /dev/drbd/by-res/<resource>[/<volume>]");
        }
        if let Some(volume) = volume {
            volume.parse::<u32>().map_err(|_| anyhow!("{device}: '{volume}' is not a volume number"))?;
        }
        return Ok(resource.to_owned());
    }
    if let Some(rest) = device.strip_prefix("/dev/drbd/by-disk/") {
        let backing = format!("/dev/{}", rest.trim_matches('/'));
        let owner = model
            .resources
            .iter()
            .find(|r| r.volumes.iter().any(|v| v.backing_dev.as_deref() == Some(backing.as_str())));
        if let Some(r) = owner {
            return Ok(r.name.clone());
        }
    }
    // Any other DRBD path (by-disk without backing_dev in the state, e.g. 8.4):
    // follow the udev link to /dev/drbdN.
    match std::fs::canonicalize(device) {
        Ok(real) => match real.to_str().and_then(|r| minor_of_device(r).filter(|_| real.parent() == Some(Path::new("/dev")))) {
            Some(minor) => by_minor(device, minor, model),
            None => Err(anyhow!("{device}: resolves to {}, not a /dev/drbdN device", real.display())),
        },
        Err(e) => Err(anyhow!("{device}: cannot tell which DRBD resource it belongs to ({e})")),
    }
}

fn by_minor(device: &str, minor: u32, model: &DrbdState) -> anyhow::Result<String> {
    match model.by_minor(minor) {
        Some((r, _)) => Ok(r.name.clone()),
        None if model.unnamed_minors.contains(&minor) => {
            Err(anyhow!("{device}: DRBD minor {minor} is up but its resource name is unknown (no /dev/drbd/by-res link, drbdadm sh-dev did not list it)"))
        }
        None => Err(anyhow!("{device}: no DRBD resource uses minor {minor} on this node")),
    }
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drbd::events2;
    use crate::drbd::model::StateOrigin;

    fn model() -> DrbdState {
        let text = "\
exists resource name:r0 role:Secondary suspended:no
exists resource name:web role:Secondary suspended:no
exists device name:r0 volume:0 minor:0 backing_dev:/dev/vg0/r0 disk:UpToDate client:no quorum:yes
exists device name:r0 volume:1 minor:1 backing_dev:/dev/vg0/r0b disk:UpToDate client:no quorum:yes
exists device name:web volume:0 minor:10 backing_dev:/dev/sdb1 disk:UpToDate client:no quorum:yes
exists -
";
        DrbdState { origin: StateOrigin::Events2 { from: "test".into() }, resources: events2::parse(text).unwrap(), unnamed_minors: vec![] }
    }

    #[test]
    fn maps_every_kind_of_drbd_path() {
        let m = model();
        let map = |d: &[&str]| resources_for_disks(d, None, &m);
        assert_eq!(map(&["/dev/drbd0"]).unwrap(), vec!["r0"]);
        assert_eq!(map(&["/dev/drbd10", "/dev/drbd1"]).unwrap(), vec!["web", "r0"]);
        assert_eq!(map(&["/dev/drbd/by-res/web/0"]).unwrap(), vec!["web"]);
        assert_eq!(map(&["/dev/drbd/by-res/r0"]).unwrap(), vec!["r0"]);
        assert_eq!(map(&["/dev/drbd/by-disk/vg0/r0b"]).unwrap(), vec!["r0"]);
        assert_eq!(map(&["/dev/drbd/by-disk/sdb1", "/dev/drbd0", "/dev/drbd1"]).unwrap(), vec!["web", "r0"]);
        assert_eq!(map(&["/dev/sda", "/var/lib/x.img"]).unwrap(), Vec::<String>::new());
        // A resource not in the state is returned: the gate refuses it by name.
        assert_eq!(map(&["/dev/drbd/by-res/other/0"]).unwrap(), vec!["other"]);
    }

    #[test]
    fn unmappable_drbd_paths_are_errors() {
        let m = model();
        let map = |d: &[&str]| resources_for_disks(d, None, &m);
        assert!(map(&["/dev/drbd7"]).unwrap_err().to_string().contains("minor 7"));
        assert!(map(&["/dev/drbd/by-res/"]).is_err());
        assert!(map(&["/dev/drbd/by-res/r0/x"]).is_err());
        assert!(map(&["/dev/drbd/by-res/r0/0/extra"]).is_err());
        assert!(map(&["/dev/drbd/by-disk/vg0/missing"]).is_err());
        assert!(map(&["/dev/drbdX"]).is_err());
    }

    #[test]
    fn explicit_names_override_detection() {
        let m = model();
        assert_eq!(resources_for_disks(&["/dev/drbd0"], Some(" web  r9 web "), &m).unwrap(), vec!["web", "r9"]);
        assert_eq!(resources_for_disks(&["/dev/drbd0"], Some("   "), &m).unwrap(), vec!["r0"]);
        assert_eq!(resources_for_disks(&["/dev/drbd7"], Some("web"), &m).unwrap(), vec!["web"]);
    }
}
