//! The test lab for virtguard's black-box tests: real QEMU guests on the
//! host's libvirtd and on private libvirtd instances, and the built agent run
//! the way Pacemaker runs it. Use from a test file with `mod support;`.
//!
//! A missing prerequisite fails the test and names it ([`missing_prerequisite`]);
//! the tests that need the lab carry `#[cfg_attr(not(feature = "lab"), ignore)]`.

#![allow(dead_code, unused_imports)]

mod agent;
mod agent_guest;
pub mod agent_guest_xml;
pub mod cluster;
pub mod command_port;
pub mod emulated_lab;
mod drbd;
mod guest;
pub mod guest_xml;
mod guards;
pub mod host_files;
pub mod sampler;
pub mod scenarios;
mod private;
mod run;
mod virsh;

pub use agent::{agent, agent_symlink, agent_wrapped, exit_reason, rsctmp_for_this_test, AgentRun, DEFAULT_INSTANCE};
pub use guest::{
    acpi_guest, firmware_guest, ioerror_guest, ioerror_guest_in_namespace, GuestGuard, GuestMode, READY_MARKER,
};
pub use guest_xml::{kvm_usable, xml_escape, Boot, DomainType, GuestXml};
pub use drbd::{drbd_node, fixtures, fixture_text, state9, state9_text, state84, edited, names, XorShift};
pub use agent_guest::{agent_guest, AgentGuest, GuestAgentKind, AGENT_UP_MARKER};
pub use guards::{ConfigAway, Frozen};
pub use private::PrivateHypervisor;
pub use run::{describe, run_bounded};
/// Finds a program on PATH exactly as the agent does (and as `Command::new`
/// will when the test runs it).
pub use virtguard::exec_for_tests::find_program as which;

pub use virsh::{
    domstate, free_port, hypervisor_answers, migrate_live, parse_domstate, process_alive, qemu_pid_in,
    remove_domain, virsh, virsh_ok, virsh_timeout, HOST_URI, HOST_QEMU_RUN_DIR, VIRSH_TIMEOUT,
};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The asset cache: `$VIRTGUARD_LAB_DIR`, default `/var/tmp/virtguard-lab`.
pub fn lab_dir() -> PathBuf {
    std::env::var_os("VIRTGUARD_LAB_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/virtguard-lab"))
}

/// The lab's scripts (`guest-assets.sh`, `private-libvirtd.sh`).
pub fn lab_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab").join(name)
}

/// Builds the guest kernel + initramfs once per process (the script itself is
/// idempotent across processes) and returns the directory that holds
/// `vmlinuz` and `initrd.img`. Panics when they cannot be built.
pub fn ensure_assets() -> PathBuf {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS
        .get_or_init(|| {
            let mut command = Command::new("sh");
            command.arg(lab_script("guest-assets.sh")).env("VIRTGUARD_LAB_DIR", lab_dir());
            let output = run_bounded(command, Duration::from_secs(120));
            assert!(output.status.success(), "guest-assets.sh failed: {}", describe(&output));
            lab_dir()
        })
        .clone()
}

/// A prerequisite of the lab is missing: the test fails and names it. There
/// is no silent skip: building without the `lab` feature is the one way to
/// leave the lab tests out, and then cargo counts them as ignored.
pub fn missing_prerequisite(why: &str) -> ! {
    panic!(
        "test lab prerequisite missing: {why}\n(as root, `bash ocf/install-deps.sh` installs the lab; \
         `cargo test --no-default-features` leaves the lab tests out, listed as ignored)"
    )
}

/// Makes sure the host's `qemu:///system` answers (see
/// [`start_host_libvirtd`]) and removes what killed test processes left on
/// it. Fails the test, naming the missing piece, when that is impossible.
pub fn ensure_libvirtd() {
    host_files::watch_host_files();
    static CHECKED: Mutex<bool> = Mutex::new(false);
    let mut up = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if *up {
        return;
    }
    start_host_libvirtd().unwrap_or_else(|why| missing_prerequisite(&why));
    *up = true;
    sweep_orphan_guests();
}

/// Starts the host's `virtlogd -d` and `libvirtd -d` unless `qemu:///system`
/// answers already (they are left running for the rest of the suite), and
/// waits until it answers. libvirtd accepts its first client only once its
/// drivers are initialised, and on a machine where it never ran before that
/// initialisation rewrites the definitions its packages installed under
/// /etc/libvirt: the host-file guard calls this before its snapshot, so the
/// daemon's own first start is never taken for a test's change.
pub fn start_host_libvirtd() -> Result<(), String> {
    if hypervisor_answers(HOST_URI) {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err("qemu:///system does not answer and we are not root to start libvirtd".into());
    }
    for program in ["virtlogd", "libvirtd", "virsh", "qemu-system-x86_64"] {
        if which(program).is_none() {
            return Err(format!("qemu:///system does not answer and {program} is not installed"));
        }
    }
    // Other test processes may be doing the same right now.
    let _lock = lab_lock("libvirtd");
    if hypervisor_answers(HOST_URI) {
        return Ok(());
    }
    for daemon in ["virtlogd", "libvirtd"] {
        // Null stdio: the daemon must not hold the test's pipes open.
        let _ = Command::new(daemon).arg("-d").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    if wait_for(Duration::from_secs(30), Duration::from_millis(200), || hypervisor_answers(HOST_URI)) {
        Ok(())
    } else {
        Err("started virtlogd and libvirtd, but qemu:///system still does not answer after 30 s".into())
    }
}

/// The pid in a name made by [`unique_name`] (`vgt-<label>-<pid>-<n>...`).
pub fn owner_pid_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("vgt-")?;
    let mut parts = rest.rsplitn(3, '-');
    let last = parts.next()?;
    let pid = parts.next()?;
    parts.next()?;
    // `<n>` may carry a suffix (the `-disk` of a tiny filesystem).
    if last.parse::<usize>().is_ok() {
        pid.parse().ok()
    } else {
        owner_pid_of(name.rsplit_once('-')?.0)
    }
}

/// Removes what killed test processes left on the shared host: their
/// domains, tiny filesystems and scratch directories. Live owners are never
/// touched.
fn sweep_orphan_guests() {
    let orphan = |name: &str| owner_pid_of(name).is_some_and(|pid| !process_alive(pid));
    let listed = virsh(HOST_URI, &["list", "--all", "--name"]);
    for name in String::from_utf8_lossy(&listed.stdout).lines().map(str::trim) {
        if orphan(name) {
            eprintln!("[support] removing orphaned guest {name}");
            remove_domain(HOST_URI, name);
        }
    }
    let root = scratch_root();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        let path = Path::new(point);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.parent() == Some(root.as_path()) && orphan(&name) {
            let _ = run_bounded(
                {
                    let mut umount = Command::new("umount");
                    umount.arg("-l").arg(path);
                    umount
                },
                Duration::from_secs(10),
            );
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(&root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if orphan(&name) && !mounts.contains(&*entry.path().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Polls `condition` every `step` until it holds (true) or `timeout` passed
/// (false). It is always checked at least once, and once more at the end.
pub fn wait_for(timeout: Duration, step: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(step.min(deadline - now));
    }
}

/// `vgt-<label>-<pid>-<counter>`: unique on this machine among live test
/// processes, and recognisable as ours on the shared hypervisor.
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("vgt-{label}-{}-{n}", std::process::id())
}

/// Where tests keep their files: world-traversable, because QEMU runs as an
/// unprivileged user and must read what lives below.
pub fn scratch_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join("virtguard-tests");
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        set_mode(&root, 0o755);
        sweep_stale(&root);
        root
    })
    .clone()
}

/// `scratch_root()/<name>`, created (mode 0755) if missing.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch_root().join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    set_mode(&dir, 0o755);
    dir
}

/// An exclusive lock on `lab_dir()/.<name>.lock`, held until dropped.
pub fn lab_lock(name: &str) -> nix::fcntl::Flock<std::fs::File> {
    let dir = lab_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!(".{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, errno)| panic!("locking {}: {errno}", path.display()))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Removes per-process agent directories left by test processes that died.
fn sweep_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("rsctmp-").or_else(|| name.strip_prefix("agent-")) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Installs the binary under test as ocf:virtguard:VirtualDomain with
/// ocf/install.sh (once per process; serialized between processes).
pub fn install_agent() {
    host_files::watch_host_files();
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        missing_prerequisite("installing the agent under /usr/lib/ocf needs root");
    }
    let _lock = lab_lock("install-agent");
    let mut command = Command::new("bash");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ocf/install.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_virtguard"));
    let output = run_bounded(command, Duration::from_secs(120));
    assert!(output.status.success(), "ocf/install.sh: {}", describe(&output));
    *done = true;
}
