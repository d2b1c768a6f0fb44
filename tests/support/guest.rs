//! Test guests: domain XML files in a private scratch directory, and the
//! guard that removes the domain and everything around it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::guest_xml::{xml_escape, Boot, DomainType, GuestXml};
use super::run::{describe, run_bounded};
use super::virsh::{remove_domain, virsh_ok, HOST_URI};
use super::{ensure_assets, scratch_dir, unique_name, wait_for};

/// Printed on ttyS0 by the guest's init once acpid listens.
pub const READY_MARKER: &str = "VGLAB-READY";

/// What the ACPI guest does after boot (kernel option `vglab=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// Sleeps forever.
    Idle,
    /// Rewrites most of its RAM in a loop: a live migration without a
    /// bandwidth to spare never converges.
    Dirty,
    /// Writes to /dev/vda forever.
    DiskWrite,
}

impl GuestMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestMode::Idle => "idle",
            GuestMode::Dirty => "dirty",
            GuestMode::DiskWrite => "diskwrite",
        }
    }
}

/// The tiny filesystem under an ioerror guest's disk; `namespace_pid` names
/// the mount namespace it lives in when it is not the test's own.
#[derive(Debug)]
struct TinyFs {
    mount_point: PathBuf,
    namespace_pid: Option<u32>,
}

/// A test guest: its unique domain name and files. Dropping it destroys and
/// undefines the domain on every URI in `uris`, unmounts what it mounted and
/// deletes its directory, also when the test panicked.
#[derive(Debug)]
pub struct GuestGuard {
    pub name: String,
    /// The domain XML (give it to `virsh define` or to the agent as `config`).
    pub xml: PathBuf,
    /// The guest's serial console, written by virtlogd.
    pub console: PathBuf,
    /// The scratch directory that holds all of the above.
    pub dir: PathBuf,
    /// Hypervisors to clean up on drop; starts as `[qemu:///system]`.
    pub uris: Vec<String>,
    tiny_fs: Option<TinyFs>,
}

impl GuestGuard {
    pub(super) fn new(label: &str) -> Self {
        let name = unique_name(label);
        let dir = scratch_dir(&name);
        GuestGuard {
            xml: dir.join(format!("{name}.xml")),
            console: dir.join("console.log"),
            name,
            dir,
            uris: vec![HOST_URI.to_owned()],
            tiny_fs: None,
        }
    }

    /// Also clean up on `uri` (e.g. the target of a migration).
    pub fn track(&mut self, uri: &str) {
        if !self.uris.iter().any(|u| u == uri) {
            self.uris.push(uri.to_owned());
        }
    }

    /// `virsh define` + `virsh start` on `uri`; panics with virsh's output on failure.
    pub fn define_and_start(&mut self, uri: &str) {
        self.track(uri);
        let xml = self.xml.to_string_lossy().into_owned();
        virsh_ok(uri, &["define", &xml]);
        virsh_ok(uri, &["start", &self.name]);
    }

    /// The console log so far (empty before the guest wrote anything).
    pub fn console_text(&self) -> String {
        fs::read(&self.console).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Waits for the guest's ready marker on its console.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        wait_for(timeout, Duration::from_millis(50), || self.console_text().contains(READY_MARKER))
    }

    pub(super) fn write_xml(&self, xml: &str) {
        fs::write(&self.xml, xml).unwrap_or_else(|e| panic!("writing {}: {e}", self.xml.display()));
    }
}

impl Drop for GuestGuard {
    fn drop(&mut self) {
        for uri in &self.uris {
            remove_domain(uri, &self.name);
        }
        if let Some(tiny_fs) = &self.tiny_fs {
            unmount(tiny_fs);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A Linux guest (TCG: under this machine's nested KVM, Linux hits an
/// emulation failure) that honours ACPI power-off and prints the ready marker.
pub fn acpi_guest(name: &str, mode: GuestMode) -> GuestGuard {
    let guard = GuestGuard::new(name);
    guard.write_xml(&acpi_domain_xml(&guard, mode).build());
    guard
}

/// A guest with neither disk nor kernel: it sits in the BIOS and ignores
/// ACPI power-off. KVM when usable, TCG otherwise; 64 MiB.
pub fn firmware_guest(name: &str) -> GuestGuard {
    let guard = GuestGuard::new(name);
    let xml = GuestXml::new(&guard.name, DomainType::best_on_this_host(), 64, Boot::BiosForever)
        .console(&guard.console)
        .build();
    guard.write_xml(&xml);
    guard
}

/// An ACPI guest in diskwrite mode whose virtio disk is a sparse raw file on
/// a tiny, nearly full tmpfs mounted (in the test's mount namespace) under
/// `dir`; `error_policy='stop'` makes QEMU pause it with reason ioerror.
pub fn ioerror_guest(name: &str, dir: &Path) -> GuestGuard {
    ioerror_guest_in_namespace(name, dir, None)
}

/// Like [`ioerror_guest`], but the tiny filesystem is mounted inside the mount
/// namespace of process `namespace_pid` (a private hypervisor's), where the
/// test's own later mounts are invisible.
pub fn ioerror_guest_in_namespace(name: &str, dir: &Path, namespace_pid: Option<u32>) -> GuestGuard {
    let mut guard = GuestGuard::new(name);
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let mount_point = dir.join(format!("{}-disk", guard.name));
    fs::create_dir_all(&mount_point).unwrap_or_else(|e| panic!("creating {}: {e}", mount_point.display()));
    let mount_text = mount_point.to_string_lossy().into_owned();
    let disk = mount_point.join("disk.raw");
    let disk_text = disk.to_string_lossy().into_owned();
    // 4 MiB of filesystem, 3 MiB already taken, a 64 MiB sparse disk: the
    // guest's second megabyte fails with ENOSPC.
    let script = format!(
        "set -e; mount -t tmpfs -o size=4m,mode=0755 vglab-tiny '{mount_text}'; \
         truncate -s 64M '{disk_text}'; \
         dd if=/dev/zero of='{mount_text}/filler' bs=1M count=3 status=none"
    );
    let output = run_bounded(in_namespace(namespace_pid, &["sh", "-c", &script]), Duration::from_secs(30));
    guard.tiny_fs = Some(TinyFs { mount_point: mount_point.clone(), namespace_pid });
    assert!(output.status.success(), "mounting the tiny filesystem: {}", describe(&output));

    let disk_xml = format!(
        "<disk type='file' device='disk'>
      <driver name='qemu' type='raw' error_policy='stop'/>
      <source file='{}'/>
      <target dev='vda' bus='virtio'/>
    </disk>",
        xml_escape(&disk_text)
    );
    guard.write_xml(&acpi_domain_xml(&guard, GuestMode::DiskWrite).disk(&disk_xml).build());
    guard
}

fn acpi_domain_xml(guard: &GuestGuard, mode: GuestMode) -> GuestXml {
    let assets = ensure_assets();
    let boot = Boot::Kernel {
        kernel: assets.join("vmlinuz"),
        initrd: assets.join("initrd.img"),
        cmdline: format!("console=ttyS0 vglab={}", mode.as_str()),
    };
    GuestXml::new(&guard.name, DomainType::Qemu, 128, boot).console(&guard.console)
}

fn in_namespace(namespace_pid: Option<u32>, argv: &[&str]) -> Command {
    match namespace_pid {
        None => {
            let mut command = Command::new(argv[0]);
            command.args(&argv[1..]);
            command
        }
        Some(pid) => {
            let mut command = Command::new("nsenter");
            command.arg("-t").arg(pid.to_string()).arg("-m").arg("--").args(argv);
            command
        }
    }
}

fn unmount(tiny_fs: &TinyFs) {
    let point = tiny_fs.mount_point.to_string_lossy().into_owned();
    // QEMU may still be closing the file for a moment after destroy.
    let unmounted = wait_for(Duration::from_secs(3), Duration::from_millis(100), || {
        let output = run_bounded(in_namespace(tiny_fs.namespace_pid, &["umount", &point]), Duration::from_secs(10));
        output.status.success() || !is_mounted(tiny_fs)
    });
    if !unmounted {
        let _ = run_bounded(in_namespace(tiny_fs.namespace_pid, &["umount", "-l", &point]), Duration::from_secs(10));
    }
    let _ = fs::remove_dir(&tiny_fs.mount_point);
}

fn is_mounted(tiny_fs: &TinyFs) -> bool {
    let mounts = match tiny_fs.namespace_pid {
        None => "/proc/self/mounts".to_owned(),
        Some(pid) => format!("/proc/{pid}/mounts"),
    };
    let point = tiny_fs.mount_point.to_string_lossy();
    // A namespace that is gone took its mounts with it.
    fs::read_to_string(mounts)
        .map(|text| text.lines().any(|line| line.split_whitespace().nth(1) == Some(&*point)))
        .unwrap_or(false)
}
