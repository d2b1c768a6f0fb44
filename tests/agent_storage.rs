//! The agent's storage-related behaviours against real libvirt and QEMU:
//! snapshot save/restore, copy-on-write (backingfile, stateless), writing the
//! config back (and surviving a failed write), start_resources.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use support::{agent, agent_wrapped, describe, domstate, ensure_libvirtd, firmware_guest, run_bounded, virsh, virsh_ok, GuestGuard, PrivateHypervisor, HOST_URI};

fn env_for<'a>(guest: &'a GuestGuard, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OCF_RESKEY_config", guest.xml.to_str().unwrap()),
        ("OCF_RESKEY_hypervisor", HOST_URI),
        ("OCF_RESKEY_CRM_meta_timeout", "30000"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
    ];
    env.extend_from_slice(extra);
    env
}

fn add_devices(guest: &GuestGuard, devices: &str) {
    let xml = std::fs::read_to_string(&guest.xml).unwrap().replace("<devices>", &format!("<devices>\n{devices}"));
    std::fs::write(&guest.xml, xml).unwrap();
}

/// Gives the guest the disk that copy-on-write mode creates: the qcow2
/// overlay next to its config. Returns the overlay's path.
fn add_overlay_disk(guest: &GuestGuard) -> std::path::PathBuf {
    let overlay = guest.xml.with_extension("qcow2");
    add_devices(
        guest,
        &format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            overlay.display()
        ),
    );
    overlay
}

fn sh(script: &str) {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    let out = run_bounded(command, Duration::from_secs(60));
    assert!(out.status.success(), "{script}: {}", describe(&out));
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn snapshot_saves_on_stop_and_restores_on_start() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-snap");
    let snapdir = guest.dir.join("snapshots");
    std::fs::create_dir_all(&snapdir).unwrap();
    let snapdir = snapdir.to_string_lossy().into_owned();
    let env = env_for(&guest, &[("OCF_RESKEY_snapshot", &snapdir)]);
    let state_file = std::path::Path::new(&snapdir).join(format!("{}.state", guest.name));

    assert_eq!(agent("start", &env).code, 0);
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(state_file.exists(), "stop must save the RAM state: {}", stop.stderr);
    assert_eq!(domstate(HOST_URI, &guest.name), None);

    let start = agent("start", &env);
    assert_eq!(start.code, 0, "{}", start.stderr);
    assert!(start.stderr.contains("restored"), "{}", start.stderr);
    assert!(!state_file.exists(), "the state file is consumed by the restore");
    assert_eq!(domstate(HOST_URI, &guest.name).map(|s| s.0).as_deref(), Some("running"));
    assert_eq!(agent("monitor", &env).code, 0);

    // A state file that cannot be restored is an error, never a silent fresh boot.
    assert_eq!(agent("stop", &env).code, 0);
    std::fs::write(&state_file, b"not a libvirt save image").unwrap();
    let start = agent("start", &env);
    assert_eq!(start.code, 1, "{}", start.stderr);
    assert!(start.exit_reason().unwrap().contains("failed to restore"), "{}", start.stderr);
    assert!(state_file.exists(), "a failed restore keeps the file");
    assert_eq!(domstate(HOST_URI, &guest.name), None);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn backingfile_overlay_is_kept_or_recreated() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-cow");
    let backing = guest.dir.join("base.raw");
    sh(&format!("qemu-img create -q -f raw '{}' 16M", backing.display()));
    let overlay = add_overlay_disk(&guest);
    let backing = backing.to_string_lossy().into_owned();

    let env = env_for(&guest, &[("OCF_RESKEY_backingfile", &backing), ("OCF_RESKEY_force_stop", "true")]);
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "{}", start.stderr);
    let mut qemu_img = Command::new("qemu-img");
    qemu_img.args(["info", "-U", overlay.to_str().unwrap()]);
    let info = run_bounded(qemu_img, Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&info.stdout).contains(&backing), "overlay not on the backing file: {}", describe(&info));
    assert!(virsh_ok(HOST_URI, &["dominfo", &guest.name]).contains("Persistent:     yes"));
    let first = std::fs::metadata(&overlay).unwrap().ino();
    assert_eq!(agent("stop", &env).code, 0);
    assert_eq!(agent("start", &env).code, 0);
    assert_eq!(std::fs::metadata(&overlay).unwrap().ino(), first, "without stateless the overlay is reused");
    assert_eq!(agent("stop", &env).code, 0);

    let stateless = env_for(&guest, &[("OCF_RESKEY_backingfile", &backing), ("OCF_RESKEY_stateless", "true"), ("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(agent("start", &stateless).code, 0);
    assert_ne!(std::fs::metadata(&overlay).unwrap().ino(), first, "stateless recreates the overlay");
    assert_eq!(agent("stop", &stateless).code, 0);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn save_config_on_stop_writes_libvirts_definition_atomically() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-savecfg");
    let original = std::fs::read_to_string(&guest.xml).unwrap();
    assert!(!original.contains("<uuid>"));
    let env = env_for(&guest, &[("OCF_RESKEY_save_config_on_stop", "true"), ("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(agent("start", &env).code, 0);
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let saved = std::fs::read_to_string(&guest.xml).unwrap();
    assert!(saved.contains("<uuid>"), "the config must now be libvirt's definition: {saved}");
    assert!(saved.contains(&format!("<name>{}</name>", guest.name)));
    let leftovers: Vec<_> = std::fs::read_dir(&guest.dir).unwrap().flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("virtguard")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_failed_config_write_keeps_the_old_config() {
    ensure_libvirtd();
    let guest = firmware_guest("vg-fullfs");
    // The config on a tiny filesystem that is full: the new copy cannot be written.
    let mount = guest.dir.join("tiny");
    std::fs::create_dir_all(&mount).unwrap();
    sh(&format!("mount -t tmpfs -o size=64k vg-fullfs '{}'", mount.display()));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let config = mount.join("vm.xml");
    let original = std::fs::read_to_string(&guest.xml).unwrap();
    std::fs::write(&config, &original).unwrap();
    sh(&format!("dd if=/dev/zero of='{}/filler' bs=4k status=none || true", mount.display()));
    let config_str = config.to_string_lossy().into_owned();
    let env = vec![
        ("OCF_RESKEY_config", config_str.as_str()),
        ("OCF_RESKEY_hypervisor", HOST_URI),
        ("OCF_RESKEY_CRM_meta_timeout", "30000"),
        ("OCF_RESKEY_save_config_on_stop", "true"),
        ("OCF_RESKEY_force_stop", "true"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
    ];
    assert_eq!(agent("start", &env).code, 0);
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "a failed save must not fail the stop: {}", stop.stderr);
    assert!(stop.stderr.contains("cannot save the definition"), "{}", stop.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "the old config must survive intact");
    assert_eq!(std::fs::read_dir(&mount).unwrap().count(), 2, "no temporary file left behind");
    assert_eq!(domstate(HOST_URI, &guest.name), None);
}

struct PoolAndNetwork {
    uri: String,
    pool: String,
    network: String,
}

impl Drop for PoolAndNetwork {
    fn drop(&mut self) {
        for args in [
            ["pool-destroy", &self.pool],
            ["pool-undefine", &self.pool],
            ["net-destroy", &self.network],
            ["net-undefine", &self.network],
        ] {
            let _ = virsh(&self.uri, &args);
        }
    }
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn start_resources_starts_the_pool_and_network_first() {
    ensure_libvirtd();
    // Pools and networks defined on the host's libvirtd would be written
    // under the host's /etc/libvirt (the first pool creates storage/ there):
    // a private libvirtd has a copy of its own.
    let hv = PrivateHypervisor::start("res");
    let mut guest = firmware_guest("vg-res");
    guest.uris.clear();
    guest.track(&hv.uri);
    let id = std::process::id() % 100_000;
    let resources = PoolAndNetwork { uri: hv.uri.clone(), pool: format!("vgpool{id}"), network: format!("vgnet{id}") };
    let pool_dir = guest.dir.join("pool");
    std::fs::create_dir_all(&pool_dir).unwrap();
    sh(&format!("qemu-img create -q -f raw '{}/disk.raw' 4M", pool_dir.display()));
    let pool_xml = guest.dir.join("pool.xml");
    std::fs::write(&pool_xml, format!("<pool type='dir'><name>{}</name><target><path>{}</path></target></pool>", resources.pool, pool_dir.display())).unwrap();
    let net_xml = guest.dir.join("net.xml");
    std::fs::write(&net_xml, format!("<network><name>{}</name><bridge name='vgbr{id}'/></network>", resources.network)).unwrap();
    virsh_ok(&hv.uri, &["pool-define", pool_xml.to_str().unwrap()]);
    virsh_ok(&hv.uri, &["net-define", net_xml.to_str().unwrap()]);
    add_devices(
        &guest,
        &format!(
            "<disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='{}' volume='disk.raw'/><target dev='vda' bus='virtio'/></disk>\n\
             <interface type='network'><source network='{}'/><model type='virtio'/></interface>",
            resources.pool, resources.network
        ),
    );

    let without = env_for(&guest, &[("OCF_RESKEY_force_stop", "true"), ("OCF_RESKEY_hypervisor", &hv.uri)]);
    let start = agent("start", &without);
    assert_eq!(start.code, 1, "inactive pool and network: start must fail: {}", start.stderr);
    assert_eq!(domstate(&hv.uri, &guest.name), None);

    let with = env_for(&guest, &[("OCF_RESKEY_start_resources", "true"), ("OCF_RESKEY_force_stop", "true"), ("OCF_RESKEY_hypervisor", &hv.uri)]);
    let start = agent("start", &with);
    assert_eq!(start.code, 0, "{}", start.stderr);
    assert!(virsh_ok(&hv.uri, &["pool-info", &resources.pool]).contains("running"));
    assert!(virsh_ok(&hv.uri, &["net-info", &resources.network]).lines().any(|l| l.starts_with("Active:") && l.ends_with("yes")));
    assert_eq!(agent("stop", &with).code, 0);
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn copyindirs_lands_in_a_fresh_stateless_overlay() {
    ensure_libvirtd();
    if support::which("virt-copy-in").is_none() || support::which("mke2fs").is_none() {
        support::missing_prerequisite("virt-copy-in (libguestfs-tools) or mke2fs is not installed");
    }
    let guest = firmware_guest("vg-copyin");
    // A backing file that libguestfs recognises as an operating system.
    let root = guest.dir.join("rootfs");
    let backing = guest.dir.join("base.raw");
    sh(&format!(
        "set -e; mkdir -p '{r}/bin' '{r}/etc' '{r}/usr/bin' '{r}/tmp'; cp /bin/busybox '{r}/bin/'; \
         printf 'ID=debian\\nVERSION_ID=\"12\"\\nPRETTY_NAME=\"vglab\"\\n' > '{r}/etc/os-release'; echo 12.0 > '{r}/etc/debian_version'; \
         echo '/dev/vda / ext4 defaults 0 1' > '{r}/etc/fstab'; mke2fs -q -t ext4 -d '{r}' '{b}' 64M",
        r = root.display(),
        b = backing.display()
    ));
    let overlay = add_overlay_disk(&guest);
    let inject = guest.dir.join("inject/srv");
    std::fs::create_dir_all(&inject).unwrap();
    std::fs::write(inject.join("vg-marker"), "copied by virtguard\n").unwrap();
    let backing = backing.to_string_lossy().into_owned();
    let inject = inject.to_string_lossy().into_owned();
    let mut env = env_for(
        &guest,
        &[
            ("OCF_RESKEY_backingfile", &backing),
            ("OCF_RESKEY_stateless", "true"),
            ("OCF_RESKEY_copyindirs", &inject),
            ("OCF_RESKEY_force_stop", "true"),
            // This lab's nested KVM breaks libguestfs' appliance; TCG works.
            ("LIBGUESTFS_BACKEND", "direct"),
            ("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg"),
        ],
    );
    env.retain(|(k, _)| *k != "OCF_RESKEY_CRM_meta_timeout");
    env.push(("OCF_RESKEY_CRM_meta_timeout", "240000"));
    let start = agent("start", &env);
    assert_eq!(start.code, 0, "{}", start.stderr);
    assert_eq!(agent("stop", &env).code, 0);
    let mut cat = Command::new("virt-cat");
    cat.args(["-a", overlay.to_str().unwrap(), "/srv/vg-marker"])
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    let out = run_bounded(cat, Duration::from_secs(240));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "copied by virtguard\n", "{}", describe(&out));
}

/// A csync2 world of the test's own: `/etc` and csync2's database directory
/// seen through overlays whose upper layers live in the test's directory, in
/// a private mount namespace per command. The host's `/etc/csync2.cfg` (which
/// Debian's package ships) and `/var/lib/csync2` are never written.
struct PrivateCsync2 {
    /// Runs the rest of its arguments inside the private namespace.
    wrapper: Vec<String>,
}

impl PrivateCsync2 {
    const SETUP: &'static str = r#"set -e
dir=$1; shift
mount -t overlay vg-etc -o "lowerdir=/etc,upperdir=$dir/etc-upper,workdir=$dir/etc-work" /etc
mount -t overlay vg-csync2 -o "lowerdir=/var/lib/csync2,upperdir=$dir/db-upper,workdir=$dir/db-work" /var/lib/csync2
exec "$@""#;

    /// One group with this host alone, syncing `dir`.
    fn for_dir(dir: &std::path::Path) -> PrivateCsync2 {
        let root = dir.join("csync2-ns");
        for sub in ["etc-upper", "etc-work", "db-upper", "db-work"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let key = dir.join("csync2.key");
        sh(&format!("csync2 -k '{}'", key.display()));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
        std::fs::write(
            root.join("etc-upper/csync2.cfg"),
            format!("group vgtest {{\n  host {host};\n  key {};\n  include {};\n}}\n", key.display(), dir.display()),
        )
        .unwrap();
        let wrapper = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", Self::SETUP, "sh"]
            .into_iter()
            .map(str::to_owned)
            .chain([root.to_string_lossy().into_owned()])
            .collect();
        PrivateCsync2 { wrapper }
    }

    fn wrapper(&self) -> Vec<&str> {
        self.wrapper.iter().map(String::as_str).collect()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let wrapper = self.wrapper();
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(program).args(args);
        command
    }
}

/// Bytes and inode of a host file, or None when it does not exist.
fn host_file(path: &str) -> Option<(Vec<u8>, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((std::fs::read(path).unwrap(), meta.ino()))
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn sync_config_on_stop_saves_and_hands_the_config_to_csync2() {
    ensure_libvirtd();
    if support::which("csync2").is_none() {
        support::missing_prerequisite("csync2 is not installed");
    }
    let host_config = host_file("/etc/csync2.cfg");
    let guest = firmware_guest("vg-csync");
    let csync2 = PrivateCsync2::for_dir(&guest.dir);
    let env = env_for(&guest, &[("OCF_RESKEY_sync_config_on_stop", "true"), ("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(agent("start", &env).code, 0);
    let stop = agent_wrapped(&csync2.wrapper(), "stop", &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(std::fs::read_to_string(&guest.xml).unwrap().contains("<uuid>"), "sync_config_on_stop implies saving the config");
    let listed = run_bounded(csync2.command("csync2", &["-L"]), Duration::from_secs(30));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(guest.xml.to_str().unwrap()),
        "csync2 never checked the config: {}\nagent: {}",
        describe(&listed),
        stop.stderr
    );
    assert!(host_file("/etc/csync2.cfg") == host_config, "the host's /etc/csync2.cfg changed (bytes or inode)");
}
