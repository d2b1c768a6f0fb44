//! The domain XML of every test guest, and whether this host can run one
//! under KVM. Each kind of guest (firmware-only, ACPI Linux, agent guest, the
//! cluster lab's guest) is one set of choices on [`GuestXml`]; the cluster
//! lab's shell writes its guest in `lab_guest_xml` (tests/cluster/lab.sh), and
//! `tests/lab_smoke.rs` proves that [`GuestXml::cluster_lab`] builds the same
//! bytes.

use std::fs;
use std::path::{Path, PathBuf};

/// The emulator the lab's guests name when they name one.
pub const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// Whether /dev/kvm can be opened for use.
pub fn kvm_usable() -> bool {
    fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

/// Hardware virtualization or emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    Kvm,
    /// TCG: slower, but Linux guests hit emulation failures under this
    /// machine's nested KVM.
    Qemu,
}

impl DomainType {
    /// KVM when [`kvm_usable`], TCG otherwise.
    pub fn best_on_this_host() -> Self {
        if kvm_usable() {
            DomainType::Kvm
        } else {
            DomainType::Qemu
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

/// What the guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// No kernel: SeaBIOS finds nothing to boot and, told never to reboot,
    /// waits there for ever (ignoring ACPI power-off).
    BiosForever,
    /// Boots the first disk; without one it stays in the BIOS as well (the
    /// cluster lab's guest).
    FirstDisk,
    /// A Linux kernel and initramfs given directly.
    Kernel { kernel: PathBuf, initrd: PathBuf, cmdline: String },
}

/// One guest's domain XML; the setters name what differs between test guests.
#[derive(Debug, Clone)]
pub struct GuestXml {
    domain_type: DomainType,
    name: String,
    memory_mib: u32,
    boot: Boot,
    preserve_on_crash: bool,
    emulator: bool,
    disks: Vec<String>,
    console: Option<PathBuf>,
    virtio_channels: Vec<String>,
    panic_device: bool,
    extra_devices: String,
}

impl GuestXml {
    /// One vCPU, `memory_mib` of RAM, destroyed on power-off and crash,
    /// restarted on reboot, no devices but what the setters add.
    pub fn new(name: &str, domain_type: DomainType, memory_mib: u32, boot: Boot) -> Self {
        GuestXml {
            domain_type,
            name: name.to_owned(),
            memory_mib,
            boot,
            preserve_on_crash: false,
            emulator: false,
            disks: Vec::new(),
            console: None,
            virtio_channels: Vec::new(),
            panic_device: false,
            extra_devices: String::new(),
        }
    }

    /// The guest that `lab_guest_xml` in tests/cluster/lab.sh writes.
    pub fn cluster_lab(name: &str, domain_type: DomainType) -> Self {
        GuestXml::new(name, domain_type, 64, Boot::FirstDisk).emulator()
    }

    /// Names [`EMULATOR`] (a private libvirtd with another default would
    /// otherwise pick its own).
    pub fn emulator(mut self) -> Self {
        self.emulator = true;
        self
    }

    /// A `<disk>` element, written as given.
    pub fn disk(mut self, disk_xml: &str) -> Self {
        self.disks.push(disk_xml.to_owned());
        self
    }

    /// ttyS0 goes to this file.
    pub fn console(mut self, path: &Path) -> Self {
        self.console = Some(path.to_owned());
        self
    }

    /// A virtio-serial port named `port_name` (libvirt picks the socket).
    pub fn virtio_channel(mut self, port_name: &str) -> Self {
        self.virtio_channels.push(port_name.to_owned());
        self
    }

    /// The channel qemu-ga listens on.
    pub fn guest_agent_channel(self) -> Self {
        self.virtio_channel("org.qemu.guest_agent.0")
    }

    /// An ISA pvpanic device, and a crashed guest stays (crashed) instead of
    /// vanishing, so that a panic can be seen.
    pub fn panic_preserved(mut self) -> Self {
        self.panic_device = true;
        self.preserve_on_crash = true;
        self
    }

    /// More devices, written as given, after all the others.
    pub fn extra_devices(mut self, devices_xml: &str) -> Self {
        self.extra_devices = devices_xml.to_owned();
        self
    }

    pub fn build(&self) -> String {
        let mut xml = format!(
            "<domain type='{}'>\n  <name>{}</name>\n  <memory unit='MiB'>{}</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n",
            self.domain_type.as_str(),
            xml_escape(&self.name),
            self.memory_mib
        );
        match &self.boot {
            Boot::BiosForever => xml.push_str("    <bios rebootTimeout='-1'/>\n"),
            Boot::FirstDisk => xml.push_str("    <boot dev='hd'/>\n"),
            Boot::Kernel { kernel, initrd, cmdline } => {
                xml.push_str(&format!(
                    "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n",
                    xml_escape(&kernel.to_string_lossy()),
                    xml_escape(&initrd.to_string_lossy()),
                    xml_escape(cmdline)
                ));
            }
        }
        let on_crash = if self.preserve_on_crash { "preserve" } else { "destroy" };
        xml.push_str(&format!(
            "  </os>\n  <features><acpi/></features>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>{on_crash}</on_crash>\n  <devices>\n"
        ));
        let mut devices = Vec::new();
        if self.emulator {
            devices.push(format!("<emulator>{EMULATOR}</emulator>"));
        }
        devices.extend(self.disks.iter().cloned());
        if let Some(console) = &self.console {
            devices.push(format!(
                "<serial type='file'><source path='{}'/><target port='0'/></serial>",
                xml_escape(&console.to_string_lossy())
            ));
        }
        for port in &self.virtio_channels {
            devices.push(format!("<channel type='unix'><target type='virtio' name='{}'/></channel>", xml_escape(port)));
        }
        if self.panic_device {
            devices.push("<panic model='isa'/>".to_owned());
        }
        if !self.extra_devices.is_empty() {
            devices.push(self.extra_devices.clone());
        }
        devices.push("<memballoon model='none'/>".to_owned());
        for device in devices {
            xml.push_str("    ");
            xml.push_str(&device);
            xml.push('\n');
        }
        xml.push_str("  </devices>\n</domain>\n");
        xml
    }
}
