//! The guest with a real QEMU guest agent (tests/lab/agent-guest-assets.sh),
//! and the host side of its control port: the test tells the guest to kill,
//! freeze or thaw its agent, or to panic.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::agent_guest_xml::{agent_guest_xml, CONTROL_PORT};
pub use super::agent_guest_xml::GuestAgentKind;
use super::guest::GuestGuard;
use super::run::{describe, run_bounded};
use super::virsh::{virsh_ok, virsh_timeout, HOST_URI};
use super::{ensure_assets, lab_dir, lab_script, wait_for};

/// Printed on ttyS0 once qemu-ga runs in the guest.
pub const AGENT_UP_MARKER: &str = "VGLAB-AGENT-UP";

/// A guest built by [`agent_guest`]; dropping it removes the domain.
pub struct AgentGuest {
    pub guard: GuestGuard,
}

fn ensure_agent_assets() -> PathBuf {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS
        .get_or_init(|| {
            ensure_assets();
            let mut command = Command::new("sh");
            command.arg(lab_script("agent-guest-assets.sh")).env("VIRTGUARD_LAB_DIR", lab_dir());
            let output = run_bounded(command, Duration::from_secs(180));
            assert!(output.status.success(), "agent-guest-assets.sh failed: {}", describe(&output));
            lab_dir()
        })
        .clone()
}

/// The lab guest with a real qemu-ga (see `agent_guest_xml`), plus `extra_devices`
/// (a watchdog, say).
pub fn agent_guest(label: &str, kind: GuestAgentKind, extra_devices: &str) -> AgentGuest {
    let guard = GuestGuard::new(label);
    let assets = ensure_agent_assets();
    guard.write_xml(&agent_guest_xml(&guard.name, &assets, &guard.console, kind, extra_devices));
    AgentGuest { guard }
}

impl AgentGuest {
    /// Waits until qemu-ga runs and libvirt gets answers from it.
    pub fn wait_agent(&self, timeout: Duration) -> bool {
        wait_for(timeout, Duration::from_millis(200), || {
            self.guard.console_text().contains(AGENT_UP_MARKER) && self.agent_answers()
        })
    }

    /// Whether libvirt gets the guest's time from the agent right now.
    pub fn agent_answers(&self) -> bool {
        virsh_timeout(HOST_URI, &["domtime", &self.guard.name], Duration::from_secs(15)).status.success()
    }

    /// Sends one control word (agent-kill, agent-stop, agent-cont, panic) and
    /// waits until the guest's console shows that it got it.
    pub fn control(&self, word: &str) {
        let xml = virsh_ok(HOST_URI, &["dumpxml", &self.guard.name]);
        let socket = xml
            .lines()
            .filter_map(|l| l.split("path='").nth(1).and_then(|rest| rest.split('\'').next()))
            .find(|path| path.ends_with(CONTROL_PORT))
            .unwrap_or_else(|| panic!("no control port socket in the live XML of {}", self.guard.name));
        let mut stream = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connecting {socket}: {e}"));
        stream.write_all(format!("{word}\n").as_bytes()).unwrap_or_else(|e| panic!("writing to {socket}: {e}"));
        let marker = format!("VGLAB-CONTROL {word}");
        let seen = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            self.guard.console_text().contains(&marker)
        });
        assert!(seen, "the guest did not take '{word}'; console:\n{}", self.guard.console_text());
    }
}
