//! The domain XML of the lab guest with a real qemu-ga, shared by the
//! host-libvirtd tests (`support::agent_guest`) and the cluster scenario
//! (`tests/cluster.rs`), which include this file by path.

use std::path::Path;

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
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('\'', "&apos;");
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0{rdinit} vglab=idle</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>preserve</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='unix'><target type='virtio' name='{CONTROL_PORT}'/></channel>
    <panic model='isa'/>
    {extra_devices}
    <memballoon model='none'/>
  </devices>
</domain>
",
        name = escape(name),
        kernel = escape(&lab_dir.join("vmlinuz").to_string_lossy()),
        initrd = escape(&lab_dir.join(initrd).to_string_lossy()),
        console = escape(&console.to_string_lossy()),
    )
}
