//! Where the DRBD state comes from, and which DRBD is present: the
//! [`DrbdSource`] seam, this node's DRBD ([`Sources`]) and a recorded one
//! ([`Recorded`]) for the in-process tests.
//!
//! DRBD 9 when `drbdsetup events2 --now` answers; DRBD 8.4 when
//! `/proc/drbd` says `version: 8.x`. The tests of the built binary replay
//! captured output through a stand-in `drbdsetup` on PATH and give it a
//! `/proc/drbd` in a private mount namespace: the binary itself reads only
//! the node's own DRBD.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::model::{DrbdState, Resource, StateOrigin};
use super::{events2, proc84, show};
use crate::exec::{self, ExecError};
use crate::deadline::Deadline;

/// What the gate and the monitor read of DRBD.
pub trait DrbdSource: Send + Sync {
    /// The whole state. With `net_options`, also `allow-two-primaries` per
    /// connection (from `drbdsetup show`); left unknown when that fails.
    fn read(&self, net_options: bool, deadline: &Deadline) -> Result<DrbdState, ReadError>;
    /// The fencing policies of every resource (rule F1), or why they cannot
    /// be read.
    fn read_fencing(&self, deadline: &Deadline) -> Result<Vec<show::FencingSetting>, String>;
}

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

/// This node's DRBD: its tools and kernel files (other paths only for the
/// tests of each way of reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub proc_drbd: PathBuf,
    pub by_res_dir: PathBuf,
    pub drbdsetup: String,
    pub drbdadm: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            proc_drbd: PathBuf::from("/proc/drbd"),
            by_res_dir: PathBuf::from("/dev/drbd/by-res"),
            drbdsetup: "drbdsetup".to_owned(),
            drbdadm: "drbdadm".to_owned(),
        }
    }
}

impl DrbdSource for Sources {
    fn read(&self, net_options: bool, deadline: &Deadline) -> Result<DrbdState, ReadError> {
        let mut state = self.read_state(deadline)?;
        if net_options {
            add_net_options(&mut state, self.show_text(deadline));
        }
        Ok(state)
    }

    fn read_fencing(&self, deadline: &Deadline) -> Result<Vec<show::FencingSetting>, String> {
        self.show_text(deadline).and_then(|t| show::fencing(&t)).map_err(|e| format!("drbdsetup show: {e:#}"))
    }
}

impl Sources {
    fn read_state(&self, deadline: &Deadline) -> Result<DrbdState, ReadError> {
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

    fn show_text(&self, deadline: &Deadline) -> anyhow::Result<String> {
        Ok(exec::run(&self.drbdsetup, &["show", "all"], deadline)?.stdout)
    }
}

fn add_net_options(state: &mut DrbdState, show_text: anyhow::Result<String>) {
    match show_text.and_then(|t| show::parse(&t)) {
        Ok(options) => show::apply(state, &options),
        Err(e) => warn!("allow-two-primaries unknown: drbdsetup show: {e:#}"),
    }
}

/// A DRBD 9 state recorded as text (`drbdsetup events2 --now all`, and
/// `drbdsetup show all` when the configuration matters), for the
/// in-process tests: nothing is run or read from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Where the text came from, as the state's origin names it.
    pub from: String,
    pub events2: String,
    pub show: Option<String>,
}

impl DrbdSource for Recorded {
    fn read(&self, net_options: bool, _deadline: &Deadline) -> Result<DrbdState, ReadError> {
        let resources = events2::parse(&self.events2).map_err(|e| ReadError::Unreadable(format!("{}: {e:#}", self.from)))?;
        let mut state = DrbdState { origin: StateOrigin::Events2 { from: self.from.clone() }, resources, unnamed_minors: Vec::new() };
        if net_options {
            add_net_options(&mut state, self.show_text());
        }
        Ok(state)
    }

    fn read_fencing(&self, _deadline: &Deadline) -> Result<Vec<show::FencingSetting>, String> {
        self.show_text().and_then(|t| show::fencing(&t)).map_err(|e| format!("drbdsetup show: {e:#}"))
    }
}

impl Recorded {
    fn show_text(&self) -> anyhow::Result<String> {
        self.show.clone().ok_or_else(|| anyhow::anyhow!("{} has no recorded configuration", self.from))
    }
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
