//! The lab guest with a real qemu-ga, shared by the host-libvirtd tests
//! (`support::agent_guest`) and the cluster scenario (`tests/cluster.rs`).

use std::path::Path;

use super::guest_xml::{Boot, DomainType, GuestXml};

/// Which initramfs the guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAgentKind {
    /// qemu-ga runs in the guest (`initrd-agent.img`, `rdinit=/init.agent`).
    Running,
    /// The channel exists, but the guest has no agent (the plain initramfs).
    NotInstalled,
}

/// The virtio-serial port through which the test steers the guest.
pub const CONTROL_PORT: &str = "org.virtguard.lab.0";

/// A TCG guest (160 MiB) from the lab assets in `lab_dir`, with the guest
/// agent channel, the control port, a pvpanic device (`on_crash` preserve, so
/// a panic stays visible), its console in `console`, and `extra_devices`.
pub fn agent_guest_xml(name: &str, lab_dir: &Path, console: &Path, kind: GuestAgentKind, extra_devices: &str) -> String {
    let (initrd, rdinit) = match kind {
        GuestAgentKind::Running => ("initrd-agent.img", " rdinit=/init.agent"),
        GuestAgentKind::NotInstalled => ("initrd.img", ""),
    };
    let boot = Boot::Kernel {
        kernel: lab_dir.join("vmlinuz"),
        initrd: lab_dir.join(initrd),
        cmdline: format!("console=ttyS0{rdinit} vglab=idle"),
    };
    GuestXml::new(name, DomainType::Qemu, 160, boot)
        .emulator()
        .console(console)
        .guest_agent_channel()
        .virtio_channel(CONTROL_PORT)
        .panic_preserved()
        .extra_devices(extra_devices)
        .build()
}
