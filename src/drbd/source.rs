//! Where the DRBD state comes from, and which DRBD is present.
//!
//! DRBD 9 when `drbdsetup events2 --now` answers; DRBD 8.4 when
//! `/proc/drbd` says `version: 8.x`. Overrides for tests and odd installs:
//! - `VIRTGUARD_DRBD_EVENTS2_FILE`: events2 text from this file, no drbdsetup run
//! - `VIRTGUARD_PROC_DRBD`: this file instead of `/proc/drbd`
//! - `VIRTGUARD_DRBD_SHOW_FILE`: `drbdsetup show` text from this file
//! - `VIRTGUARD_DRBD_BY_RES_DIR`: this directory instead of `/dev/drbd/by-res`

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::model::{DrbdState, Resource, StateOrigin};
use super::{events2, proc84, show};
use crate::exec::{self, ExecError};
use crate::deadline::Deadline;

pub const ENV_EVENTS2_FILE: &str = "VIRTGUARD_DRBD_EVENTS2_FILE";
pub const ENV_PROC_DRBD: &str = "VIRTGUARD_PROC_DRBD";
pub const ENV_SHOW_FILE: &str = "VIRTGUARD_DRBD_SHOW_FILE";
pub const ENV_BY_RES_DIR: &str = "VIRTGUARD_DRBD_BY_RES_DIR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The DRBD tools are missing (`OCF_ERR_INSTALLED` territory).
    NotInstalled(String),
    /// The state could not be obtained or understood.
    Unreadable(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotInstalled(m) | ReadError::Unreadable(m) => write!(f, "cannot read DRBD state: {m}"),
        }
    }
}

impl std::error::Error for ReadError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub events2_file: Option<PathBuf>,
    pub show_file: Option<PathBuf>,
    pub proc_drbd: PathBuf,
    pub by_res_dir: PathBuf,
    pub drbdsetup: String,
    pub drbdadm: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            events2_file: None,
            show_file: None,
            proc_drbd: PathBuf::from("/proc/drbd"),
            by_res_dir: PathBuf::from("/dev/drbd/by-res"),
            drbdsetup: "drbdsetup".to_owned(),
            drbdadm: "drbdadm".to_owned(),
        }
    }
}

impl Sources {
    pub fn from_env() -> Sources {
        Self::from_lookup(|name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<PathBuf>) -> Sources {
        let defaults = Sources::default();
        Sources {
            events2_file: lookup(ENV_EVENTS2_FILE),
            show_file: lookup(ENV_SHOW_FILE),
            proc_drbd: lookup(ENV_PROC_DRBD).unwrap_or(defaults.proc_drbd),
            by_res_dir: lookup(ENV_BY_RES_DIR).unwrap_or(defaults.by_res_dir),
            ..defaults
        }
    }

    /// The whole state. With `net_options`, also `allow-two-primaries` per
    /// connection (from `drbdsetup show`); left unknown when that fails.
    pub fn read(&self, net_options: bool, deadline: &Deadline) -> Result<DrbdState, ReadError> {
        let mut state = self.read_state(deadline)?;
        if net_options {
            self.add_net_options(&mut state, deadline);
        }
        Ok(state)
    }

    fn read_state(&self, deadline: &Deadline) -> Result<DrbdState, ReadError> {
        if let Some(file) = &self.events2_file {
            let text = read_file(file)?;
            let resources = events2::parse(&text).map_err(|e| ReadError::Unreadable(format!("{}: {e:#}", file.display())))?;
            return Ok(self.events2_state(resources, format!("file {}", file.display())));
        }
        let drbdsetup = exec::find_program(&self.drbdsetup);
        let events2_failure = match &drbdsetup {
            Some(_) => match exec::run(&self.drbdsetup, &["events2", "--now", "all"], deadline) {
                Ok(out) => {
                    let resources = events2::parse(&out.stdout)
                        .map_err(|e| ReadError::Unreadable(format!("drbdsetup events2 --now all: {e:#}")))?;
                    return Ok(self.events2_state(resources, "drbdsetup events2 --now all".to_owned()));
                }
                Err(e @ ExecError::TimedOut { .. }) => return Err(ReadError::Unreadable(e.to_string())),
                Err(e) => {
                    debug!("drbdsetup events2 failed, trying {}: {e}", self.proc_drbd.display());
                    e.to_string()
                }
            },
            None => format!("{} is not on PATH", self.drbdsetup),
        };
        let proc_text = match std::fs::read_to_string(&self.proc_drbd) {
            Ok(text) => text,
            Err(e) => {
                let why = format!("{events2_failure}; {}: {e} (is the drbd kernel module loaded?)", self.proc_drbd.display());
                return Err(if drbdsetup.is_none() { ReadError::NotInstalled(why) } else { ReadError::Unreadable(why) });
            }
        };
        let proc = proc84::parse(&proc_text).map_err(|e| ReadError::Unreadable(format!("{}: {e:#}", self.proc_drbd.display())))?;
        match proc.major() {
            Some(8) => Ok(self.state_84(&proc, deadline)),
            Some(9) if drbdsetup.is_none() => Err(ReadError::NotInstalled(format!(
                "DRBD {} is loaded but {events2_failure}",
                proc.version
            ))),
            _ => Err(ReadError::Unreadable(format!(
                "{events2_failure}; {} reports DRBD {}, which is neither 8.x nor readable via events2",
                self.proc_drbd.display(),
                proc.version
            ))),
        }
    }

    /// The state from events2 text. drbd-utils 9 answers `events2` on a DRBD
    /// 8.4 kernel as well (through drbdsetup-84), but it cannot know the
    /// peer's host name: it calls the one peer of every resource `peer` (and
    /// nothing at all in StandAlone). Taken as a name, that refused every
    /// migration ("no connection to <target>") and counted the migration
    /// source as a third Primary. 8.4 has exactly one peer per resource, so
    /// when /proc/drbd says 8.x the peer is unnamed, as it is when read from
    /// /proc/drbd: it stands for whichever node the caller means.
    fn events2_state(&self, mut resources: Vec<Resource>, from: String) -> DrbdState {
        let Some(version) = self.drbd84_version() else {
            return DrbdState { origin: StateOrigin::Events2 { from }, resources, unnamed_minors: Vec::new() };
        };
        for peer in resources.iter_mut().flat_map(|r| r.peers.iter_mut()) {
            peer.name = None;
        }
        DrbdState { origin: StateOrigin::Events2Drbd84 { version, from }, resources, unnamed_minors: Vec::new() }
    }

    /// The loaded module's version when it is DRBD 8.x; None without
    /// /proc/drbd (DRBD 9 fixtures, hosts without the module) or for 9.x.
    fn drbd84_version(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.proc_drbd).ok()?;
        let proc = proc84::parse(&text).ok()?;
        (proc.major() == Some(8)).then(|| proc.version.clone())
    }

    fn state_84(&self, proc: &proc84::ProcDrbd, deadline: &Deadline) -> DrbdState {
        let mut names = by_res_links(&self.by_res_dir);
        let mut from = format!("{} + {}", self.proc_drbd.display(), self.by_res_dir.display());
        if proc.minors.iter().any(|m| !names.contains_key(&m.minor)) {
            match self.names_from_drbdadm(deadline) {
                Ok(found) => {
                    for (minor, name) in found {
                        names.entry(minor).or_insert(name);
                    }
                    from = format!("{} + drbdadm", self.proc_drbd.display());
                }
                Err(e) => warn!("DRBD 8.4 minor names from drbdadm: {e:#}"),
            }
        }
        proc84::to_state(proc, &names, &from)
    }

    fn names_from_drbdadm(&self, deadline: &Deadline) -> anyhow::Result<proc84::MinorNames> {
        let run = |args: &[&str]| exec::run(&self.drbdadm, args, deadline).map(|o| o.stdout);
        let mut names = proc84::MinorNames::new();
        for resource in proc84::parse_sh_resources(&run(&["sh-resources"])?)? {
            proc84::parse_sh_dev(&resource, &run(&["sh-dev", &resource])?, &mut names)?;
        }
        Ok(names)
    }

    fn add_net_options(&self, state: &mut DrbdState, deadline: &Deadline) {
        let Some(text) = self.show_text(deadline) else { return };
        match text.and_then(|t| show::parse(&t)) {
            Ok(options) => show::apply(state, &options),
            Err(e) => warn!("allow-two-primaries unknown: drbdsetup show: {e:#}"),
        }
    }

    /// The fencing policies of every resource (rule F1), or why they cannot
    /// be read.
    pub fn read_fencing(&self, deadline: &Deadline) -> Result<Vec<show::FencingSetting>, String> {
        let text = self.show_text(deadline).ok_or_else(|| {
            format!("the state comes from {ENV_EVENTS2_FILE} and no {ENV_SHOW_FILE} gives the configuration")
        })?;
        text.and_then(|t| show::fencing(&t)).map_err(|e| format!("drbdsetup show: {e:#}"))
    }

    /// `drbdsetup show all` (or its file override); `None` when the state
    /// comes from a file without a show file: options read from the live
    /// system would not belong to that state.
    fn show_text(&self, deadline: &Deadline) -> Option<anyhow::Result<String>> {
        match (&self.show_file, &self.events2_file) {
            (Some(file), _) => Some(read_file(file).map_err(anyhow::Error::from)),
            (None, Some(_)) => None,
            (None, None) => Some(exec::run(&self.drbdsetup, &["show", "all"], deadline).map(|o| o.stdout).map_err(anyhow::Error::from)),
        }
    }
}


fn read_file(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|e| ReadError::Unreadable(format!("{}: {e}", path.display())))
}

/// `/dev/drbd/by-res/<res>/<vol> -> ../../drbdN` (and the single-volume
/// `by-res/<res> -> ../drbdN` of older udev rules).
pub fn by_res_links(dir: &Path) -> proc84::MinorNames {
    let mut names = proc84::MinorNames::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return names };
    let link_minor = |path: &Path| std::fs::read_link(path).ok().and_then(|t| t.to_str().and_then(proc84::minor_of_device));
    for entry in entries.flatten() {
        let Some(resource) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let path = entry.path();
        if let Some(minor) = link_minor(&path) {
            names.insert(minor, (resource, 0));
            continue;
        }
        let Ok(volumes) = std::fs::read_dir(&path) else { continue };
        for vol in volumes.flatten() {
            let number = vol.file_name().to_str().and_then(|v| v.parse::<u32>().ok());
            if let (Some(number), Some(minor)) = (number, link_minor(&vol.path())) {
                names.insert(minor, (resource.clone(), number));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_come_from_the_environment_names() {
        let s = Sources::from_lookup(|name| match name {
            ENV_EVENTS2_FILE => Some(PathBuf::from("/tmp/e")),
            ENV_PROC_DRBD => Some(PathBuf::from("/tmp/p")),
            _ => None,
        });
        assert_eq!(s.events2_file, Some(PathBuf::from("/tmp/e")));
        assert_eq!(s.proc_drbd, PathBuf::from("/tmp/p"));
        assert_eq!(s.by_res_dir, PathBuf::from("/dev/drbd/by-res"));
        assert_eq!(s.show_file, None);
    }

    #[test]
    fn by_res_links_name_minors() {
        let dir = std::env::temp_dir().join(format!("virtguard-byres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("r0")).unwrap();
        std::os::unix::fs::symlink("../../../drbd0", dir.join("r0/0")).unwrap();
        std::os::unix::fs::symlink("../../../drbd1", dir.join("r0/1")).unwrap();
        std::os::unix::fs::symlink("../../drbd5", dir.join("old")).unwrap();
        std::os::unix::fs::symlink("../../sda", dir.join("junk")).unwrap();
        let names = by_res_links(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names.get(&0), Some(&("r0".to_string(), 0)));
        assert_eq!(names.get(&1), Some(&("r0".to_string(), 1)));
        assert_eq!(names.get(&5), Some(&("old".to_string(), 0)));
        assert_eq!(names.len(), 3);
    }
}
