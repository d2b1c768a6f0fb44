//! virsh as the tests' independent witness of what libvirt thinks.

use std::process::{Command, Output};
use std::time::Duration;

use super::run::{describe, run_bounded};

/// The shared host hypervisor.
pub const HOST_URI: &str = "qemu:///system";

/// Bound for one virsh call; a live migration of a small guest fits easily.
pub const VIRSH_TIMEOUT: Duration = Duration::from_secs(120);

/// `virsh -c <uri> <args...>`, untranslated output, bounded by [`VIRSH_TIMEOUT`].
pub fn virsh(uri: &str, args: &[&str]) -> Output {
    virsh_timeout(uri, args, VIRSH_TIMEOUT)
}

pub fn virsh_timeout(uri: &str, args: &[&str], timeout: Duration) -> Output {
    let mut command = Command::new("virsh");
    command.env("LC_ALL", "C").arg("-q").arg("-c").arg(uri).args(args);
    run_bounded(command, timeout)
}

/// Like [`virsh`] but panics (with virsh's output) unless it succeeded;
/// returns stdout.
pub fn virsh_ok(uri: &str, args: &[&str]) -> String {
    let output = virsh(uri, args);
    assert!(output.status.success(), "virsh -c {uri} {}: {}", args.join(" "), describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// State and reason from `virsh domstate --reason`, e.g. `("paused", "I/O error")`;
/// None when the domain does not exist (or libvirt does not answer).
pub fn domstate(uri: &str, name: &str) -> Option<(String, String)> {
    let output = virsh(uri, &["domstate", "--reason", name]);
    if !output.status.success() {
        return None;
    }
    parse_domstate(&String::from_utf8_lossy(&output.stdout))
}

/// Parses `shut off (shutdown)` into `("shut off", "shutdown")`.
pub fn parse_domstate(text: &str) -> Option<(String, String)> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    match line.split_once(" (") {
        Some((state, rest)) => Some((state.trim().to_owned(), rest.trim_end_matches(')').trim().to_owned())),
        None => Some((line.to_owned(), String::new())),
    }
}

/// Whether `uri` answers at all.
pub fn hypervisor_answers(uri: &str) -> bool {
    virsh_timeout(uri, &["version"], Duration::from_secs(15)).status.success()
}

/// Destroys and undefines `name` on `uri`, ignoring "no such domain".
pub fn remove_domain(uri: &str, name: &str) {
    let _ = virsh_timeout(uri, &["destroy", name], Duration::from_secs(30));
    let _ = virsh_timeout(
        uri,
        &["undefine", "--managed-save", "--snapshots-metadata", "--checkpoints-metadata", name],
        Duration::from_secs(30),
    );
}

/// `virsh -c <from> migrate --live <name> <to> tcp://127.0.0.1:<free port> <extra...>`.
pub fn migrate_live(from_uri: &str, to_uri: &str, name: &str, extra: &[&str]) -> Output {
    let migrate_uri = format!("tcp://127.0.0.1:{}", free_port());
    let mut args = vec!["migrate", "--live", name, to_uri, &migrate_uri];
    args.extend_from_slice(extra);
    virsh(from_uri, &args)
}

/// A loopback TCP port that was free a moment ago (for migration URIs).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Where the host's libvirtd keeps QEMU pid files.
pub const HOST_QEMU_RUN_DIR: &str = "/run/libvirt/qemu";

/// The pid of the QEMU process behind `name`, from libvirt's pid file
/// under `run_dir` (`/run/libvirt/qemu` for the host daemon).
pub fn qemu_pid_in(run_dir: &std::path::Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(run_dir.join(format!("{name}.pid"))).ok()?;
    text.trim().parse().ok()
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
