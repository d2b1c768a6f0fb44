//! The guard that keeps the test suite off the host's configuration: the
//! first test of a process that touches real components takes a fingerprint
//! of every host file the suite could change by mistake, and when the process
//! ends the fingerprint is taken again; any difference fails the test binary,
//! naming the file. Tests that need their own copy of such a file get it in a
//! private mount namespace (see `tests/agent_storage.rs`, csync2), or a
//! private libvirtd (`PrivateHypervisor`) with its own /etc/libvirt. The host's
//! libvirtd is started before the first fingerprint: its first start rewrites
//! package-owned files there, and that must not count as a test's change.
//!
//! Part of `tests/support` (`support::host_files`).

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What the suite must leave exactly as it found it: package-owned and
/// operator-owned configuration of the programs the tests drive.
pub const WATCHED: &[&str] = &[
    "/etc/csync2.cfg",
    "/etc/libvirt",
    "/etc/corosync",
    "/etc/pacemaker",
    "/etc/hosts",
    "/usr/lib/ocf/resource.d",
];

/// What `ocf/install.sh` installs on purpose (the agent under test).
pub const INSTALLED_BY_THE_SUITE: &[&str] = &["/usr/lib/ocf/resource.d/virtguard"];

/// One file as the guard sees it: same inode and same bytes, or a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    File { inode: u64, mode: u32, checksum: u64 },
    Symlink { inode: u64, target: PathBuf },
    Directory { mode: u32 },
    Other { inode: u64 },
}

pub type Fingerprint = BTreeMap<PathBuf, Facts>;

/// Walks `roots` (files or directories; missing ones are recorded as
/// absent by their absence), skipping everything under `excluded`.
pub fn fingerprint(roots: &[&str], excluded: &[&str]) -> Fingerprint {
    let mut found = Fingerprint::new();
    for root in roots {
        visit(Path::new(root), excluded, &mut found);
    }
    found
}

fn visit(path: &Path, excluded: &[&str], found: &mut Fingerprint) {
    if excluded.iter().any(|e| path.starts_with(e)) {
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let kind = meta.file_type();
    let facts = if kind.is_symlink() {
        Facts::Symlink { inode: meta.ino(), target: std::fs::read_link(path).unwrap_or_default() }
    } else if kind.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                visit(&entry.path(), excluded, found);
            }
        }
        Facts::Directory { mode: meta.mode() }
    } else if kind.is_file() {
        Facts::File { inode: meta.ino(), mode: meta.mode(), checksum: checksum(path) }
    } else {
        Facts::Other { inode: meta.ino() }
    };
    found.insert(path.to_path_buf(), facts);
}

fn checksum(path: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    match std::fs::read(path) {
        Ok(bytes) => hasher.write(&bytes),
        // Unreadable now but readable later (or the reverse) is a change too.
        Err(e) => hasher.write(e.to_string().as_bytes()),
    }
    hasher.finish()
}

/// One line per file that was created, removed or changed between the two.
pub fn differences(before: &Fingerprint, after: &Fingerprint) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => lines.push(format!("removed: {}", path.display())),
            Some(new) if new != old => lines.push(format!("changed: {} ({})", path.display(), what_changed(old, new))),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        lines.push(format!("created: {}", path.display()));
    }
    lines
}

fn what_changed(old: &Facts, new: &Facts) -> &'static str {
    match (old, new) {
        (Facts::File { inode: a, checksum: x, .. }, Facts::File { inode: b, checksum: y, .. }) if a == b && x != y => "content",
        (Facts::File { checksum: x, .. }, Facts::File { checksum: y, .. }) if x != y => "replaced, other content",
        (Facts::File { inode: a, .. }, Facts::File { inode: b, .. }) if a != b => "replaced by another file",
        (Facts::File { .. }, Facts::File { .. }) | (Facts::Directory { .. }, Facts::Directory { .. }) => "mode",
        (Facts::Symlink { .. }, Facts::Symlink { .. }) => "link",
        _ => "type",
    }
}

static BEFORE: OnceLock<Fingerprint> = OnceLock::new();

/// Takes the fingerprint once per process and arranges the comparison at
/// exit. Cheap after the first call: call it from every entry point into
/// real components.
pub fn watch_host_files() {
    BEFORE.get_or_init(|| {
        // libvirtd's first start on a machine is the daemon's own change to
        // /etc/libvirt, not a test's: let it happen before the snapshot. When
        // it cannot start here, the tests that need it say why
        // (`ensure_libvirtd`); the others do not need it, and a build without
        // the lab has no test that does.
        if cfg!(feature = "lab") {
            let _ = super::start_host_libvirtd();
        }
        // SAFETY: registers a plain `extern "C" fn` without captured state.
        let registered = unsafe { nix::libc::atexit(compare_at_exit) };
        assert_eq!(registered, 0, "cannot register the host-file check");
        fingerprint(WATCHED, INSTALLED_BY_THE_SUITE)
    });
}

/// Leaves out what another test process, still running, has defined on the
/// shared host libvirtd (`vgt-<label>-<pid>-<n>` names): that process's own
/// guard judges it, and test binaries run side by side on a developer's
/// machine. What this process or a finished one left behind still counts.
pub fn not_of_other_tests(found: &Fingerprint) -> Fingerprint {
    let others = |path: &Path| {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        super::owner_pid_of(&stem).is_some_and(|pid| pid != std::process::id() && super::process_alive(pid))
    };
    found.iter().filter(|(path, _)| !others(path)).map(|(p, f)| (p.clone(), f.clone())).collect()
}

extern "C" fn compare_at_exit() {
    let Some(before) = BEFORE.get() else {
        return;
    };
    let changed = differences(&not_of_other_tests(before), &not_of_other_tests(&fingerprint(WATCHED, INSTALLED_BY_THE_SUITE)));
    if changed.is_empty() {
        return;
    }
    eprintln!("\nFAILED: this test binary changed the host's configuration (tests must use a private copy):");
    for line in &changed {
        eprintln!("  {line}");
    }
    // Unwinding or exit() from inside an atexit handler is not allowed.
    // SAFETY: _exit ends the process at once, which is what we want here.
    unsafe { nix::libc::_exit(101) };
}
